"""s3lib.analysis: the scores and baselines the notebooks (and their explorers) print.

Each score is checked against a direct computation or a case with a known answer; the explorers'
tests (tests/test_widgets*.py) check that the widgets show these numbers.
"""

import importlib
import math

import numpy as np
import pytest
import torch

from s3lib import motion
from s3lib.analysis import (MASK_KINDS, OUTLIER_SIZE, add_outliers, boundary_masks,
                            comparison_masks, explained_variance, fit_segments, flow_pair_scores,
                            frame_scores, free_mask_flow, one_hot, penalty_trial, run_free_masks,
                            scan_boundaries, segment_speed_shares, segmentation_scores,
                            speed_bands, speed_entropies, stripes, two_motion_flow)
from s3lib.data.cube import HELDOUT_SEEDS
from s3lib.data.pairs import cube_pairs
from s3lib.data.synthetic import add_flow_noise, piecewise_affine_flow
from s3lib.freemask import segment_flow
from s3lib.losses import affine_motion_loss
from s3lib.flow import warp_error
from s3lib.losses import entropy_motion_loss, fit_affine, histogram_entropy, speed_histograms
from s3lib.metrics import matched_miou
from s3lib.motion import DEFAULT_EPS

SIZE = 24


# ----------------------------------------------------------------------------- 00: flow pairs
def test_flow_pair_scores_of_a_known_shift(moving_texture_frames):
    f0, f1 = moving_texture_frames[2], moving_texture_frames[3]  # moves 3 px to the right
    flow = np.zeros(f0.shape[:2] + (2,), np.float32)
    flow[..., 0] = 3.0
    s = flow_pair_scores(f0, f1, flow)
    assert s["mean_magnitude"] == pytest.approx(3.0) and s["max_magnitude"] == pytest.approx(3.0)
    assert s["error_no_motion"] == pytest.approx(warp_error(f0, f1, np.zeros_like(flow)))
    assert s["error_warped"] == pytest.approx(warp_error(f0, f1, flow))
    assert s["error_warped"] < 0.5 * s["error_no_motion"]


# ----------------------------------------------------------------------------- 01: boundaries
def test_the_true_boundary_scores_best_with_little_noise():
    scan = scan_boundaries(two_motion_flow(24, 14, 0.1), softness=0.0)
    assert scan.positions[scan.max_loglik.argmax()] == 14
    assert scan.positions[scan.evidence.argmax()] == 14
    assert scan.positions.shape == scan.max_loglik.shape == scan.evidence.shape == (23,)


def test_soft_masks_sum_to_one_and_hard_ones_split_at_the_column():
    m = boundary_masks(10, [4, 6], 2.0)
    assert m.shape == (2, 2, 10, 10)
    assert torch.allclose(m.sum(1), torch.ones(2, 10, 10, dtype=torch.float64))
    hard = boundary_masks(10, [4], 0.0)[0]
    assert hard[1, :, :4].sum() == 0 and hard[1, :, 4:].min() == 1


def test_two_motion_flow_is_seeded_and_checks_the_boundary():
    clean = two_motion_flow(16, 6)
    assert clean.shape == (2, 16, 16) and clean.dtype == torch.float64
    assert torch.equal(two_motion_flow(16, 6, 0.5, seed=3), two_motion_flow(16, 6, 0.5, seed=3))
    assert not torch.equal(two_motion_flow(16, 6, 0.5, seed=3), clean)
    with pytest.raises(ValueError, match="boundary"):
        two_motion_flow(16, 16)


# ----------------------------------------------------------------------------- 02: free masks
def test_run_free_masks_reports_the_miou_of_its_masks():
    result, labels = run_free_masks(16, 3, "charbonnier", 0.0, 10, seed=1, stride=4)
    assert labels.shape == (16, 16) and result.masks.shape == (3, 16, 16)
    assert result.mious[-1] == pytest.approx(matched_miou(result.masks.argmax(0), labels))
    assert torch.equal(labels, piecewise_affine_flow(16, 3, seed=1).labels)


def test_the_free_mask_progress_bar_ends_full(monkeypatch):
    """One tick per Adam step: the bar closes at steps/steps (it ended at 300/301, red, when it
    counted the evaluations and the loop broke out before the last tick)."""
    import tqdm.auto

    bars = []

    class Recorder(tqdm.auto.tqdm):
        def close(self):
            if not self.disable:  # the first close (a closed bar is disabled)
                bars.append((self.n, self.total))
            super().close()

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorder)
    flow = piecewise_affine_flow(16, 3, seed=0).flow
    run = segment_flow(flow, 3, lambda m, f: affine_motion_loss(m, f), steps=7, progress=True,
                       record_every=7)
    assert bars == [(7, 7)]
    assert run.steps == [0, 7]


def test_add_outliers_replaces_only_the_chosen_pixels():
    flow = piecewise_affine_flow(32, 3, seed=0).flow
    noisy, bad = add_outliers(flow, 0.1, 5.0, seed=3)
    assert bad.shape == (32, 32) and bad.dtype == torch.bool and noisy.dtype == flow.dtype
    assert 0.05 < bad.float().mean() < 0.15                       # about 10 % of 1024 pixels
    assert torch.equal(noisy[:, ~bad], flow[:, ~bad])            # the rest untouched
    assert noisy[:, bad].abs().max() <= 5.0 and not torch.equal(noisy[:, bad], flow[:, bad])
    # the reference: the same generator draws, written out
    gen = torch.Generator().manual_seed(3)
    ref_bad = torch.rand(32, 32, generator=gen, dtype=torch.float64) < 0.1
    ref_vec = (torch.rand(2, 32, 32, generator=gen, dtype=torch.float64) * 2 - 1) * 5.0
    assert torch.equal(bad, ref_bad)
    assert torch.equal(noisy[:, bad], ref_vec.float()[:, bad])
    same, same_bad = add_outliers(flow, 0.1, 5.0, seed=3)
    assert torch.equal(same, noisy) and torch.equal(same_bad, bad)
    assert torch.equal(add_outliers(flow, 0.0)[0], flow)


def test_free_mask_flow_is_the_scene_with_noise_then_outliers():
    scene = piecewise_affine_flow(24, 3, seed=1)
    flow, labels = free_mask_flow(24, 0.3, 0.05, seed=1)
    ref = add_outliers(add_flow_noise(scene.flow, 0.3, seed=1), 0.05, OUTLIER_SIZE, seed=1)[0]
    assert torch.equal(flow, ref) and torch.equal(labels, scene.labels)
    assert torch.equal(free_mask_flow(24, 0.0, 0.0, seed=1)[0], scene.flow)


def test_run_free_masks_with_outliers_is_segment_flow_on_that_flow():
    result, labels = run_free_masks(16, 3, "l2", 0.0, 8, seed=1, stride=4, outliers=0.1)
    flow = free_mask_flow(16, 0.0, 0.1, seed=1)[0]
    again = segment_flow(flow, 3, lambda m, f: affine_motion_loss(m, f, robust="l2"), steps=8,
                         labels=labels, stride=4)
    assert torch.allclose(result.masks, again.masks)


def test_penalty_trial_scores_against_a_direct_computation():
    scene = piecewise_affine_flow(24, 3, seed=0)
    flow = add_outliers(scene.flow, 0.05, seed=0)[0]
    trial = penalty_trial(flow, scene.labels, "charbonnier", steps=15, restarts=1)
    run = segment_flow(flow, 3, lambda m, f: affine_motion_loss(m, f), steps=15,
                       labels=scene.labels, stride=4)
    assert torch.allclose(trial.masks, run.masks)
    assert trial.miou == pytest.approx(matched_miou(run.masks.argmax(0), scene.labels))
    assert trial.found_loss == pytest.approx(float(affine_motion_loss(run.masks[None],
                                                                      flow[None])))
    true = torch.nn.functional.one_hot(scene.labels, 3).permute(2, 0, 1)[None].float()
    assert trial.true_loss == pytest.approx(float(affine_motion_loss(true, flow[None])))
    assert trial.loss_prefers_truth == (trial.true_loss < trial.found_loss)
    l2 = penalty_trial(flow, scene.labels, "l2", steps=2, restarts=1)
    assert l2.true_loss == pytest.approx(float(affine_motion_loss(true, flow[None], robust="l2")))


# ----------------------------------------------------------------------------- 03: entropy
def test_comparison_masks_sum_to_one_and_reject_bad_labels():
    labels = torch.tensor([[0, 1], [2, 2]])
    masks = comparison_masks(labels)
    assert tuple(masks) == MASK_KINDS
    for m in masks.values():
        assert m.shape == (1, 3, 2, 2)
        assert torch.allclose(m.sum(1), torch.ones(1, 2, 2))
    assert masks["mixed"][0, :, 0, 0].tolist() == [0.5, 0.0, 0.5]  # label 0: segments 0 and 2
    with pytest.raises(ValueError):
        comparison_masks(torch.zeros(2, 2, dtype=torch.int64))  # one label
    with pytest.raises(ValueError):
        comparison_masks(labels.float().long()[None])  # not (H, W)


def test_speed_entropies_are_the_losses_histograms():
    syn = piecewise_affine_flow(32, 3, seed=0, max_motion=4.0, deformation=0.2)
    masks = comparison_masks(syn.labels)
    scores = speed_entropies(masks, syn.flow, 12)
    assert tuple(scores) == MASK_KINDS
    for kind, m in masks.items():
        hist, top = speed_histograms(m, syn.flow[None], 12)
        s = scores[kind]
        assert s.loss == pytest.approx(float(entropy_motion_loss(m, syn.flow[None], bins=12)))
        assert s.hist.dtype == torch.float64 and torch.equal(s.hist, hist[0].double())
        assert s.entropies == pytest.approx(histogram_entropy(hist[0].double()).tolist())
        assert s.top == pytest.approx(float(top))
    # the uniform masks see the whole image: the loss is the entropy of the speed, the largest
    assert scores["true"].loss <= scores["mixed"].loss <= scores["uniform"].loss


# ----------------------------------------------------------------------------- 04: cube scores
@pytest.fixture(scope="module")
def cube():
    pairs = cube_pairs((HELDOUT_SEEDS[0],), 32, 3)
    masks = torch.nn.functional.one_hot(pairs.labels, 7).permute(0, 3, 1, 2).float()
    return pairs, masks


def test_the_true_faces_score_perfectly(cube):
    """With the faces as segments, mIoU is 1 and every large face's affine fit is exact (the
    ridge of the fit shrinks the motion of a face of a few pixels towards zero)."""
    pairs, _ = cube
    labels = pairs.labels[0]
    masks = torch.nn.functional.one_hot(labels, 7).permute(2, 0, 1).double()
    for face in labels.unique().tolist():
        scores = frame_scores(pairs.flows[0].double(), labels, masks, face)
        assert scores.miou == pytest.approx(1.0)
        assert scores.share == pytest.approx(float((labels == face).float().mean()))
        if scores.share > 0.1:
            assert scores.residual < 0.05


def test_frame_scores_residual_is_the_direct_mean_residual(cube):
    """``residual``: the mask-weighted mean of |f - A phi| with A from fit_affine, written out
    here from the normalised coordinates (not through motion's expanded squares)."""
    pairs, _ = cube
    torch.manual_seed(0)
    masks = torch.rand(3, 32, 32).softmax(0)
    flow = pairs.flows[1]
    for segment in range(3):
        a = fit_affine(flow[None], masks[None])[0, segment].double()
        phi = motion.homogeneous_coordinates(32, 32, dtype=torch.float64)
        rho = (flow.double() - torch.einsum("ck,khw->chw", a, phi)).norm(dim=0)
        m = masks[segment].double()
        s = frame_scores(flow, pairs.labels[1], masks, segment, frame=1)
        assert (s.frame, s.segment) == (1, segment)
        assert s.residual == pytest.approx(float((m * rho).sum() / m.sum()), rel=1e-4)
        assert s.summary().startswith(f"frame 1, segment {segment}: frame mIoU ")


def test_frame_scores_use_the_ridge_given(cube):
    """A larger ridge flattens the motion of the smallest face, so its residual grows
    (checkpoints made before ``TrainConfig.eps`` were trained with 1e-4)."""
    pairs, masks = cube
    sizes = [(int((pairs.labels[t] == f).sum()), t, f) for t in range(len(pairs))
             for f in range(1, 7) if (pairs.labels[t] == f).sum() >= 5]
    _, t, face = min(sizes)
    residual = {eps: frame_scores(pairs.flows[t], pairs.labels[t], masks[t], face, eps=eps).residual
                for eps in (1e-4, DEFAULT_EPS)}
    assert residual[1e-4] > 1.5 * residual[DEFAULT_EPS]


@pytest.mark.parametrize("segment", [-1, 7, 1.0, True, None])
def test_frame_scores_reject_a_bad_segment(cube, segment):
    pairs, masks = cube
    with pytest.raises(ValueError, match="segment"):
        frame_scores(pairs.flows[0], pairs.labels[0], masks[0], segment)


# ----------------------------------------------------------------------------- 05: segment fits
def soft_true_masks(frames: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Flows ``(N, 2, S, S)`` of piecewise-affine scenes and softened one-hot masks of their
    regions ``(N, 3, S, S)``, summing to 1."""
    scenes = [piecewise_affine_flow(SIZE, 3, seed=s, max_motion=3.0) for s in range(frames)]
    hot = torch.stack([torch.nn.functional.one_hot(s.labels, 3).permute(2, 0, 1).float()
                       for s in scenes])
    return torch.stack([s.flow for s in scenes]), 0.9 * hot + 0.1 / 3


def test_fit_segments_shapes_and_params():
    flows, masks = soft_true_masks()
    fits = fit_segments(flows, masks)
    assert fits.params.shape == (3, 3, 2, 3)
    assert fits.fitted.shape == (3, 3, 2, SIZE, SIZE)
    assert fits.residual.shape == (3, 3, SIZE, SIZE)
    for name in ("share", "mean_residual", "mean_speed"):
        assert getattr(fits, name).shape == (3, 3) and getattr(fits, name).dtype == torch.float64
    assert torch.allclose(fits.params, fit_affine(flows, masks))


def test_fit_segments_explain_near_true_regions():
    flows, masks = soft_true_masks()
    fits = fit_segments(flows, masks)
    # near-true segments of a piecewise-affine field: the fit explains most of the motion
    assert torch.all(fits.mean_residual < fits.mean_speed)
    assert torch.allclose(fits.share.sum(1), torch.ones(3, dtype=fits.share.dtype))
    m = masks[1, 2].double()
    direct = (m * (flows[1:2, None] - fits.fitted[1:2]).pow(2).sum(2).sqrt()[0, 2]).sum() / m.sum()
    assert float(fits.mean_residual[1, 2]) == pytest.approx(float(direct), rel=1e-5)


def test_fit_segments_rejects_mismatched_inputs():
    flows, masks = soft_true_masks(2)
    with pytest.raises(ValueError):
        fit_segments(flows, torch.ones(2, 2, SIZE + 1, SIZE) / 2)
    with pytest.raises(ValueError):
        fit_segments(flows[0], masks[0])


# ----------------------------------------------------------------------------- 06: hard segments
def test_one_hot_speed_bands_and_stripes():
    lab = torch.tensor([[0, 1], [2, 1]])
    m = one_hot(lab, 3)
    assert m.shape == (1, 3, 2, 2) and torch.equal(m.sum(1), torch.ones(1, 2, 2))
    flow = torch.stack([torch.arange(40.0).reshape(5, 8), torch.zeros(5, 8)])
    bands = speed_bands(flow, 4)
    assert torch.equal(torch.bincount(bands.flatten()), torch.tensor([10, 10, 10, 10]))
    assert torch.equal(bands, (torch.arange(40).reshape(5, 8) // 10))
    assert torch.equal(speed_bands(flow, 1), torch.zeros(5, 8, dtype=torch.int64))
    s = stripes(3, 10, 5)
    assert s[0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4] and torch.equal(s[0], s[2])


def test_explained_variance_and_scores():
    lab = stripes(6, 8, 2)
    flow = torch.stack([lab.float() * 3 - 1, torch.zeros(6, 8)])  # two translations
    assert explained_variance(lab, flow) == pytest.approx(1.0)
    assert explained_variance(torch.zeros(6, 8, dtype=torch.int64), flow) == pytest.approx(0.0)
    noisy = flow + 0.1 * torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(0))
    assert 0.9 < explained_variance(lab, noisy) < 1.0
    # speeds 1 and 2 px fall on bin centres 0, 1, 2 of three bins: one full bin per segment
    s = segmentation_scores(lab, flow, 2, bins=3)
    assert s["entropy"] == pytest.approx(0.0, abs=1e-6) and s["affine"] < 1e-3
    one = segmentation_scores(torch.zeros(6, 8, dtype=torch.int64), flow, 1, bins=3)
    assert one["entropy"] == pytest.approx(math.log(2), abs=1e-5)  # two equal speeds


def test_segment_speed_shares_split_the_image_histogram():
    lab = stripes(6, 8, 2)
    flow = torch.stack([lab.float() + 1, torch.zeros(6, 8)])  # speeds 1 and 2 px
    shares, top = segment_speed_shares(lab, flow, 2, 3)
    assert shares.shape == (2, 3) and shares.dtype == np.float64 and top == pytest.approx(2.0)
    assert shares.sum() == pytest.approx(1.0)
    assert shares[0] == pytest.approx([0, 0.5, 0], abs=1e-6)  # speed 1 on the middle centre
    assert shares[1] == pytest.approx([0, 0, 0.5], abs=1e-6)


@pytest.mark.parametrize("call", [
    lambda: one_hot(torch.tensor([[0, 3]]), 3),                  # label out of range
    lambda: one_hot(torch.tensor([[0.0, 1.0]]), 2),              # not int64
    lambda: speed_bands(torch.zeros(3, 4, 4), 2),                # not (2, H, W)
    lambda: speed_bands(torch.full((2, 4, 4), float("nan")), 2), # NaN flow
    lambda: speed_bands(torch.zeros(2, 4, 4), 0),                # no bands
    lambda: stripes(4, 3, 5),                                    # more stripes than columns
    lambda: explained_variance(torch.zeros(4, 5, dtype=torch.int64), torch.zeros(2, 4, 4)),
    lambda: segmentation_scores(torch.zeros(4, 4, dtype=torch.int64), torch.zeros(2, 4, 4), 1,
                                bins=1),
    lambda: segment_speed_shares(torch.zeros(4, 4, dtype=torch.int64), torch.zeros(4, 4), 1, 8),
    lambda: add_outliers(torch.zeros(3, 8, 8), 0.1),                # not (2, H, W)
    lambda: add_outliers(torch.zeros(2, 8, 8), 1.5),                # not a share
    lambda: add_outliers(torch.zeros(2, 8, 8), 0.1, size=-1.0),     # negative size
    lambda: penalty_trial(torch.zeros(2, 8, 8), torch.zeros(8, 7, dtype=torch.int64), "l1", 1),
    lambda: penalty_trial(torch.zeros(2, 8, 8), torch.zeros(8, 8), "l1", 1),  # float labels
])
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()


# ----------------------------------------------------------------------------- where things live
WIDGET_MODULES = ["affine", "cube", "entropy", "grouping", "overview", "sintel", "video"]


@pytest.mark.parametrize("name", WIDGET_MODULES)
def test_widget_modules_do_not_re_export_the_scores(name):
    """The scores live in s3lib.analysis; a widget module imports them for its own use only."""
    import s3lib.analysis as analysis

    module = importlib.import_module(f"s3lib.widgets.{name}")
    assert not set(getattr(module, "__all__", [])) & set(analysis.__all__)
