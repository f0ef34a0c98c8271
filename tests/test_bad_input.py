"""Bad input gets a clear ValueError naming the argument or file, never a bare traceback."""

import numpy as np
import pytest
import torch

from s3lib import flow, metrics
from s3lib.data.synthetic import add_flow_noise
from s3lib.losses import affine_motion_loss, entropy_motion_loss, marginal_likelihood_loss

LOSSES = [affine_motion_loss, entropy_motion_loss, marginal_likelihood_loss]


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("masks, message", [
    (-torch.ones(1, 2, 4, 4) / 2, "non-negative"),
    (torch.full((1, 2, 4, 4), float("nan")), "finite"),
    (torch.ones(1, 0, 4, 4), "empty"),
])
def test_losses_reject_bad_masks(loss, masks, message):
    with pytest.raises(ValueError, match=f"masks: .*{message}"):
        loss(masks, torch.zeros(1, 2, 4, 4))


def test_float16_flow_is_checked_without_overflow():
    flow16 = torch.full((1, 2, 64, 64), 10.0, dtype=torch.float16)
    assert torch.isfinite(affine_motion_loss(torch.full((1, 2, 64, 64), 0.5), flow16))


@pytest.mark.parametrize("args, message", [
    ((torch.zeros(1, 2, 9, 9), 0.5), "flow: expected a \\(2, H, W\\)"),
    ((torch.zeros(2, 5, 5), 0.5), "7x7"),
    ((torch.zeros(2, 9, 9), float("nan")), "level"),
    ((torch.zeros(2, 9, 9), -1.0), "level"),
])
def test_add_flow_noise_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        add_flow_noise(*args)


def test_ap_rejects_bool_labels_which_would_mark_negatives_difficult():
    with pytest.raises(ValueError, match="bool"):
        metrics.average_precision([0.9, 0.1], np.array([True, False]))
    with pytest.raises(ValueError, match="bool"):
        metrics.voc07_ap([0.9, 0.1], np.array([True, False]))


def test_matched_miou_rejects_empty_maps():
    with pytest.raises(ValueError, match="empty"):
        metrics.matched_miou(np.zeros(0, np.int64), np.zeros(0, np.int64))


def test_read_flo_on_a_directory_names_it(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        flow.read_flo(tmp_path)


def test_write_flo_accepts_a_course_layout_tensor(tmp_path):
    t = torch.arange(24.0).reshape(2, 3, 4).requires_grad_()
    flow.write_flo(tmp_path / "t.flo", t)
    np.testing.assert_array_equal(flow.read_flo(tmp_path / "t.flo"), t.detach().permute(1, 2, 0))
