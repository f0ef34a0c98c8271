"""s3lib.regions against references written here: OpenCV's Otsu as notebook 00 called it and a
NumPy between-class-variance search; SciPy's Gaussian filter; masks built by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from s3lib.analysis import boundary_masks
from s3lib.regions import blur_masks, otsu_speed_split, strip_cuts, strip_masks


# ----------------------------------------------------------------------------- Otsu
def two_speed_flow(seed: int = 0, shape=(40, 56)) -> np.ndarray:
    """(H, W, 2) float32: a slow noisy background and a fast noisy square."""
    rng = np.random.default_rng(seed)
    flow = rng.normal(0.0, 0.4, (*shape, 2)) + [0.5, 0.2]
    flow[10:25, 20:40] = rng.normal(0.0, 0.8, (15, 20, 2)) + [4.0, -3.0]
    return flow.astype(np.float32)


def ref_otsu_level(levels: np.ndarray) -> int:
    """The grey level t (0..255) maximising w0 w1 (mu0 - mu1)^2, class 0 = levels <= t (first
    maximum), by exhaustive search."""
    hist = np.bincount(levels.ravel(), minlength=256).astype(np.float64)
    p = hist / hist.sum()
    g = np.arange(256)
    best, best_t = -1.0, 0
    for t in range(256):
        w0 = p[:t + 1].sum()
        w1 = 1 - w0
        if w0 <= 0 or w1 <= 0:
            continue
        mu0 = (p[:t + 1] * g[:t + 1]).sum() / w0
        mu1 = (p[t + 1:] * g[t + 1:]).sum() / w1
        var = w0 * w1 * (mu0 - mu1) ** 2
        if var > best * (1 + 1e-12):
            best, best_t = var, t
    return best_t


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_otsu_matches_opencv_as_the_notebooks_called_it(seed):
    import cv2

    flow = two_speed_flow(seed)
    magnitude = np.hypot(flow[..., 0], flow[..., 1])
    speed8 = np.clip(magnitude / magnitude.max() * 255, 0, 255).astype(np.uint8)
    level, _ = cv2.threshold(speed8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    threshold, moving = otsu_speed_split(flow)
    assert threshold == pytest.approx(level / 255 * magnitude.max(), rel=1e-6)
    assert moving.dtype == bool and moving.shape == magnitude.shape
    np.testing.assert_array_equal(moving, magnitude > threshold)
    # the between-class variance search on the same 256 levels finds the same level
    assert round(threshold / magnitude.max() * 255) == ref_otsu_level(speed8)


def test_otsu_finds_the_fast_square():
    threshold, moving = otsu_speed_split(two_speed_flow(0))
    truth = np.zeros((40, 56), bool)
    truth[10:25, 20:40] = True
    assert 1.0 < threshold < 4.0
    assert (moving == truth).mean() > 0.99


def test_otsu_torch_input_gives_a_torch_mask_and_the_same_split():
    flow = two_speed_flow(1)
    t_np, m_np = otsu_speed_split(flow)
    torch_flow = torch.from_numpy(flow).permute(2, 0, 1)
    for f in (torch_flow, torch_flow[None], torch_flow.double()):
        t, m = otsu_speed_split(f)
        assert isinstance(m, torch.Tensor) and m.dtype == torch.bool and m.shape == (40, 56)
        assert t == pytest.approx(t_np, rel=1e-6)
        assert (m.numpy() == m_np).mean() > 0.999  # float32 vs float64 speed at the threshold


def test_otsu_still_field_has_no_moving_pixels():
    threshold, moving = otsu_speed_split(np.zeros((8, 9, 2), np.float32))
    assert threshold == 0.0 and not moving.any()


@pytest.mark.parametrize("flow", [np.zeros((8, 9, 3)), np.zeros((2, 8, 9)), torch.zeros(8, 9, 2),
                                  [[0.0, 1.0]], np.full((4, 4, 2), np.nan)])
def test_otsu_bad_flow_raises(flow):
    with pytest.raises(ValueError, match="flow"):
        otsu_speed_split(flow)


# ----------------------------------------------------------------------------- blur
def hard_masks(seed: int = 0, num: int = 3, shape=(20, 27)) -> torch.Tensor:
    labels = torch.from_numpy(np.random.default_rng(seed).integers(0, num, shape))
    labels[5:15, 5:20] = 0
    return torch.nn.functional.one_hot(labels, num).permute(2, 0, 1)[None].double()


@pytest.mark.parametrize("width", [1, 2, 4, 1.5, 0.7])
def test_blur_matches_scipy_gaussian_filter(width):
    masks = hard_masks()
    ref = ndimage.gaussian_filter1d(masks.numpy(), width, axis=3, mode="nearest", truncate=3.0)
    ref = ndimage.gaussian_filter1d(ref, width, axis=2, mode="nearest", truncate=3.0)
    out = blur_masks(masks, width)
    assert out.shape == masks.shape and out.dtype == masks.dtype
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-12)


def test_blur_keeps_masks_summing_to_one_and_zero_width_is_identity():
    masks = hard_masks(1, num=4).float()
    out = blur_masks(masks, 3)
    torch.testing.assert_close(out.sum(1), torch.ones(1, 20, 27), atol=1e-6, rtol=0)
    assert (out >= 0).all() and ((out > 0) & (out < 1)).any()
    assert blur_masks(masks, 0) is masks


@pytest.mark.parametrize("masks, width", [(torch.zeros(3, 8, 8), 1), (torch.zeros(1, 2, 8, 8,
                                          dtype=torch.int64), 1), (torch.zeros(1, 2, 8, 8), -1),
                                          (torch.zeros(1, 2, 8, 8), float("nan")),
                                          (torch.zeros(1, 2, 8, 8), True)])
def test_blur_bad_input_raises(masks, width):
    with pytest.raises(ValueError, match="masks|width"):
        blur_masks(masks, width)


# ----------------------------------------------------------------------------- strips
def test_strip_cuts_halve_the_widest_strip():
    assert [strip_cuts(28, 48, n) for n in range(1, 7)] == [
        [], [28], [14, 28], [14, 28, 38], [7, 14, 28, 38], [7, 14, 21, 28, 38]]
    assert strip_cuts(1, 8, 8) == [1, 2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize("args", [(0, 48, 2), (48, 48, 2), (10, 48, 0), (10, 48, 49),
                                  (10, 48, 2.5)])
def test_strip_cuts_bad_arguments(args):
    with pytest.raises(ValueError, match="first|num_segments"):
        strip_cuts(*args)


@pytest.mark.parametrize("softness", [0.0, 2.5])
def test_one_cut_is_the_two_segment_boundary_mask(softness):
    positions = [3, 11, 20]
    ours = strip_masks(24, [[p] for p in positions], softness)
    torch.testing.assert_close(ours, boundary_masks(24, positions, softness), rtol=0, atol=1e-15)


def test_hard_strips_are_one_hot_column_labels():
    cuts = [[5, 9, 17], [2, 3, 20]]
    masks = strip_masks(24, cuts)
    for m, c in zip(masks, cuts):
        labels = np.digitize(np.arange(24), c)  # column x is in strip #cuts <= x
        ref = np.eye(4)[np.broadcast_to(labels, (24, 24))].transpose(2, 0, 1)
        np.testing.assert_array_equal(m.numpy(), ref)


def test_soft_strips_sum_to_one_and_stay_non_negative():
    masks = strip_masks(30, [[4, 10, 25]], softness=3.0, dtype=torch.float32)
    assert masks.shape == (1, 4, 30, 30) and masks.dtype == torch.float32
    torch.testing.assert_close(masks.sum(1), torch.ones(1, 30, 30), atol=1e-6, rtol=0)
    assert (masks >= 0).all()
    assert strip_masks(8, [[]]).shape == (1, 1, 8, 8) and (strip_masks(8, [[]]) == 1).all()


@pytest.mark.parametrize("cut_sets, softness", [([], 0.0), ([[3], [3, 5]], 0.0), ([[5, 3]], 0.0),
                                                ([[0]], 0.0), ([[24]], 0.0), ([[4]], -1.0)])
def test_strip_masks_bad_arguments(cut_sets, softness):
    with pytest.raises(ValueError, match="cut_sets|softness"):
        strip_masks(24, cut_sets, softness)
