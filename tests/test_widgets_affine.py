"""The free-mask explorer of notebook 02, without a browser."""

import pytest
import torch

from s3lib.analysis import free_mask_flow
from s3lib.data.synthetic import add_flow_noise, piecewise_affine_flow
from s3lib.freemask import segment_flow
from s3lib.losses import affine_motion_loss
from s3lib.metrics import matched_miou
from s3lib.widgets.affine import FreeMaskExplorer, freemask_explorer


@pytest.fixture(scope="module")
def explorer():
    return freemask_explorer(size=24, steps=20, seed=1)


def test_initial_run_is_shown(explorer):
    assert explorer.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert explorer.info.value.startswith("L=3, charbonnier, noise 0.0 px, outliers 0%: matched mIoU")


def test_each_control_reruns_and_redraws(explorer):
    for control, value, text in ((explorer.segments, 2, "L=2,"), (explorer.robust, "l2", ", l2,"),
                                 (explorer.noise, 0.5, "noise 0.5 px"),
                                 (explorer.outliers, 0.1, "outliers 10%")):
        png, info = explorer.image.value, explorer.info.value
        control.value = value
        assert explorer.image.value != png and explorer.info.value != info
        assert text in explorer.info.value


def test_reported_miou_is_the_miou_of_the_masks_shown(explorer):
    line = explorer.show(3, "charbonnier", 0.0)
    scene = piecewise_affine_flow(24, 3, seed=1)
    miou = matched_miou(explorer.last.masks.argmax(0), scene.labels)
    assert f"matched mIoU {miou:.3f}" in line
    # and it is what an independent run with the same settings gives
    again = segment_flow(add_flow_noise(scene.flow, 0.0), 3,
                         lambda m, f: affine_motion_loss(m, f, robust="charbonnier"), steps=20,
                         labels=scene.labels, record_every=20, stride=4, restarts=2)
    assert torch.allclose(again.masks, explorer.last.masks)


def test_outliers_reach_the_run(explorer):
    """The outlier control corrupts the flow the run segments (add_outliers on the scene)."""
    line = explorer.show(3, "l2", 0.0, 0.1)
    assert "outliers 10%" in line
    flow = free_mask_flow(24, 0.0, 0.1, seed=1)[0]
    assert not torch.equal(flow, piecewise_affine_flow(24, 3, seed=1).flow)
    again = segment_flow(flow, 3, lambda m, f: affine_motion_loss(m, f, robust="l2"), steps=20,
                         labels=piecewise_affine_flow(24, 3, seed=1).labels, record_every=20,
                         stride=4, restarts=2)
    assert torch.allclose(again.masks, explorer.last.masks)
    assert f"matched mIoU {again.mious[-1]:.3f}" in line


@pytest.mark.parametrize("args", [(0, "l1"), (7, "l1"), (3, "huber"), (3, "l1", 1.5),
                                  (3, "l1", 0.0, 0.5), (True, "l1")])
def test_show_rejects_values_the_controls_cannot_take(explorer, args):
    with pytest.raises(ValueError):
        explorer.show(*args)


def test_a_broken_observer_is_detected(monkeypatch):
    """The control test above fails when the observer is disabled."""
    monkeypatch.setattr(FreeMaskExplorer, "_on_change", lambda self, change: None)
    with pytest.raises(AssertionError):
        test_each_control_reruns_and_redraws(freemask_explorer(size=16, steps=5))


@pytest.mark.parametrize("kwargs", [{"size": 4}, {"steps": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        freemask_explorer(**kwargs)
