"""Forward-backward consistency of flow (s3lib.flow.forward_backward_error / _consistent).

Checked on flows whose round trip is known: a translation and its inverse (error 0 inside),
a rotation and its exact inverse (error 0 up to interpolation), a flow and a wrong backward
flow (error = the mismatch), and on real DIS flow of a moving texture.
"""

import numpy as np
import pytest
import torch

from s3lib.flow import estimate_flow, forward_backward_consistent, forward_backward_error


def constant(h, w, u, v):
    return np.broadcast_to(np.array([u, v], np.float32), (h, w, 2)).copy()


def test_translation_and_its_inverse_agree_where_the_pixel_stays_inside():
    fw, bw = constant(20, 30, 2.5, -1.0), constant(20, 30, -2.5, 1.0)
    err, valid = forward_backward_error(fw, bw, return_valid=True)
    assert err.shape == (20, 30) and err.dtype == np.float32
    assert np.allclose(err, 0, atol=1e-6)
    # landing points u + (2.5, -1) leave the image in the last 3 columns and the first row
    assert not valid[:, -2:].any() and not valid[0].any()
    assert valid[1:, :27].all()
    ok = forward_backward_consistent(fw, bw)
    assert np.array_equal(ok, valid)


def test_error_is_the_size_of_the_mismatch():
    fw = constant(16, 16, 1.0, 0.0)
    bw = constant(16, 16, -1.0, 0.0) + np.array([0.3, 0.4], np.float32)  # off by (0.3, 0.4)
    err, valid = forward_backward_error(fw, bw, return_valid=True)
    assert np.allclose(err[valid], 0.5, atol=1e-5)


def test_tolerances_follow_the_sundaram_rule():
    fw = constant(12, 12, 0.0, 0.0)
    for off, expected in ((0.6, True), (0.8, False)):  # |e|^2 = 0.36 < 0.5, 0.64 > 0.5
        bw = constant(12, 12, off, 0.0)
        assert forward_backward_consistent(fw, bw).all() == expected
    # the relative part lets fast motion err more: 10 px each way, off by 1.2 px
    fw, bw = constant(40, 60, 10.0, 0.0), constant(40, 60, -8.8, 0.0)
    # |e|^2 = 1.44 < 0.01 (100 + 77.44) + 0.5 = 2.27
    ok = forward_backward_consistent(fw, bw)
    assert ok[:, :49].all() and not ok[:, 50:].any()
    assert not forward_backward_consistent(fw, bw, rel_tol=0.0).any()


def test_rotation_and_its_inverse_round_trip():
    h = w = 41
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    cx = cy = 20.0
    a = np.deg2rad(4.0)

    def rotation(angle):
        x, y = xs - cx, ys - cy
        return np.stack([np.cos(angle) * x - np.sin(angle) * y - x,
                         np.sin(angle) * x + np.cos(angle) * y - y], -1).astype(np.float32)

    err, valid = forward_backward_error(rotation(a), rotation(-a), return_valid=True)
    inner = (np.hypot(xs - cx, ys - cy) < 15) & valid
    # bilinear sampling of a linear field is exact, up to OpenCV's 1/32-px interpolation grid
    assert err[inner].max() < 5e-3
    assert forward_backward_consistent(rotation(a), rotation(-a))[inner].all()


def test_torch_layout_gives_the_same_answer():
    rng = np.random.default_rng(0)
    fw = rng.normal(0, 1, (10, 14, 2)).astype(np.float32)
    bw = rng.normal(0, 1, (10, 14, 2)).astype(np.float32)
    t = lambda a: torch.from_numpy(a).permute(2, 0, 1)  # noqa: E731
    assert np.array_equal(forward_backward_error(fw, bw), forward_backward_error(t(fw), t(bw)))
    assert np.array_equal(forward_backward_consistent(fw, bw),
                          forward_backward_consistent(t(fw), t(bw)))


def test_estimated_flow_of_a_moving_texture_is_mostly_consistent(moving_texture_frames):
    f0, f1 = moving_texture_frames[2], moving_texture_frames[3]  # moves 3 px right
    fw, bw = estimate_flow(f0, f1), estimate_flow(f1, f0)
    err = forward_backward_error(fw, bw)
    ok = forward_backward_consistent(fw, bw)
    interior = (slice(8, -8), slice(8, -8))
    assert np.median(err[interior]) < 0.3
    assert ok[interior].mean() > 0.9
    # a backward flow from the wrong frames fails
    assert forward_backward_consistent(fw, -bw)[interior].mean() < 0.1


@pytest.mark.parametrize("fw, bw", [
    (np.zeros((8, 8, 2)), np.zeros((8, 9, 2))),          # sizes differ
    (np.zeros((8, 8, 3)), np.zeros((8, 8, 3))),          # not (H, W, 2)
    (np.zeros((8, 8)), np.zeros((8, 8))),                # no channel axis
    (np.full((8, 8, 2), np.nan), np.zeros((8, 8, 2))),   # NaN
    (np.zeros((8, 8, 2)), np.full((8, 8, 2), np.inf)),   # inf
    (np.zeros((8, 8, 2), bool), np.zeros((8, 8, 2))),    # not a number type
    (torch.zeros(3, 8, 8), torch.zeros(3, 8, 8)),        # torch layout is (2, H, W)
])
def test_bad_flows_raise_value_error(fw, bw):
    with pytest.raises(ValueError):
        forward_backward_error(fw, bw)
    with pytest.raises(ValueError):
        forward_backward_consistent(fw, bw)


@pytest.mark.parametrize("rel, abs_", [(-0.1, 0.5), (0.01, -1.0), (0.0, 0.0)])
def test_bad_tolerances_raise_value_error(rel, abs_):
    with pytest.raises(ValueError):
        forward_backward_consistent(np.zeros((4, 4, 2)), np.zeros((4, 4, 2)), rel, abs_)
