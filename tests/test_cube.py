"""The cube renderer: exact, per-face affine flow; warping consistency; seeds."""

import numpy as np
import pytest
import torch

from s3lib.data.cube import HELDOUT_SEEDS, TRAIN_SEEDS, render_cube_sequence
from s3lib.flow import warp


@pytest.fixture(scope="module", params=[0, 7])
def seq(request):
    return render_cube_sequence(num_frames=24, size=64, seed=request.param)


def test_shapes_dtypes_and_ranges(seq):
    assert seq.frames.shape == (24, 3, 64, 64) and seq.frames.dtype == torch.float32
    assert seq.flows.shape == (23, 2, 64, 64) and seq.flows.dtype == torch.float32
    assert seq.labels.shape == (24, 64, 64) and seq.labels.dtype == torch.int64
    assert seq.frames.min() >= 0 and seq.frames.max() <= 1
    assert set(seq.labels.unique().tolist()) <= set(range(7))
    assert torch.isfinite(seq.flows).all()


def test_the_cube_turns_several_faces_to_the_camera(seq):
    seen = set(seq.labels.unique().tolist()) - {0}
    assert len(seen) >= 3, f"faces seen over the sequence: {seen}"
    per_frame = [len(set(seq.labels[t].unique().tolist()) - {0}) for t in range(24)]
    assert max(per_frame) >= 2


def _lstsq_fit(labels, flow, k):
    ys, xs = np.mgrid[0 : labels.shape[0], 0 : labels.shape[1]]
    sel = labels == k
    design = np.stack([xs[sel], ys[sel], np.ones(sel.sum())], 1).astype(np.float64)
    target = flow[:, sel].T.astype(np.float64)
    params, *_ = np.linalg.lstsq(design, target, rcond=None)
    return params, np.abs(design @ params - target).max(), design


def test_each_face_and_the_background_move_exactly_affinely(seq):
    labels, flows = seq.labels.numpy(), seq.flows.numpy()
    checked = 0
    for t in range(23):
        for k in np.unique(labels[t]):
            params, resid, design = _lstsq_fit(labels[t], flows[t], k)
            if np.linalg.matrix_rank(design) < 3:
                continue  # a sliver of collinear pixels: any affine map fits
            assert resid < 1e-3, f"frame {t}, label {k}: affine residual {resid:.2e} px"
            checked += 1
    assert checked >= 40


def test_faces_move_differently_not_one_in_plane_motion(seq):
    labels, flows = seq.labels.numpy(), seq.flows.numpy()
    differs = 0
    for t in range(23):
        faces = [k for k in np.unique(labels[t]) if k > 0 and (labels[t] == k).sum() > 30]
        fits = [_lstsq_fit(labels[t], flows[t], k)[0] for k in faces]
        for i in range(len(fits)):
            for j in range(i + 1, len(fits)):
                differs += np.abs(fits[i] - fits[j]).max() > 1e-3
    assert differs > 0, "two visible faces always shared one affine motion"


def test_frames_warped_back_with_the_flow_match_where_visible(seq):
    h = w = 64
    for t in (3, 12, 20):
        f0, f1, flow = seq.frames[t], seq.frames[t + 1], seq.flows[t]
        warped, valid = warp(f1[None], flow[None], return_valid=True)
        xs = torch.arange(w).expand(h, w) + 0.5 + flow[0]
        ys = torch.arange(h)[:, None].expand(h, w) + 0.5 + flow[1]
        dest = seq.labels[t + 1][ys.long().clamp(0, h - 1), xs.long().clamp(0, w - 1)]
        visible = valid[0] & (dest == seq.labels[t])
        # keep away from label boundaries, where bilinear sampling mixes two surfaces
        lab = seq.labels[t]
        inner = torch.ones_like(visible)
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            inner &= lab == lab.roll((dy, dx), (0, 1))
        ok = visible & inner
        assert ok.float().mean() > 0.6
        err = (warped[0] - f0).abs().mean(0)[ok].mean().item()
        still = (f1 - f0).abs().mean(0)[ok].mean().item()
        assert err < 0.01 and err < still / 2, (t, err, still)


def test_seeds_are_reproducible_and_distinct():
    a = render_cube_sequence(5, 32, seed=3)
    b = render_cube_sequence(5, 32, seed=3)
    c = render_cube_sequence(5, 32, seed=4)
    assert torch.equal(a.frames, b.frames) and torch.equal(a.flows, b.flows)
    assert not torch.equal(a.frames, c.frames) and not torch.allclose(a.flows, c.flows)
    assert not set(TRAIN_SEEDS) & set(HELDOUT_SEEDS)
    assert len(TRAIN_SEEDS) == 5  # the paper: five sequences


def test_flow_scales_with_the_image_size():
    small = render_cube_sequence(6, 32, seed=1).flows.norm(dim=1).mean()
    large = render_cube_sequence(6, 64, seed=1).flows.norm(dim=1).mean()
    assert 1.6 < (large / small).item() < 2.4


@pytest.mark.parametrize("kwargs", [{"num_frames": 1}, {"size": 4}, {"num_frames": 2.5}])
def test_bad_arguments(kwargs):
    args = {"num_frames": 4, "size": 32, "seed": 0} | kwargs
    with pytest.raises(ValueError):
        render_cube_sequence(**args)
