"""Scores and baselines the notebooks print: speed splits, stripes, segment fits.

Everything here computes numbers (or the tensors they are computed from); the explorers of
:mod:`s3lib.widgets` call these functions and only draw and lay out what they return, so a
widget's label and a notebook's table are computed the same way. By notebook:

- ``00_overview``: :func:`flow_pair_scores` (how well a flow field explains a frame pair).
- ``01_grouping_model``: :func:`two_motion_flow`, :func:`boundary_masks`,
  :func:`scan_boundaries` / :class:`BoundaryScan` (eq. (1)-(2) of every vertical split).
- ``02_affine_motion_loss``: :func:`run_free_masks` (free-mask segmentation, the baseline
  without a network, of the flow :func:`free_mask_flow` builds), :func:`add_outliers` and
  :func:`penalty_trial` / :class:`PenaltyTrial` (robust penalties against noise and outliers).
- ``03_entropy_motion_loss``: :func:`comparison_masks` (true / mixed / uniform segments) and
  :func:`speed_entropies` (their speed histograms, entropies and losses).
- ``04_cube_toy``: :func:`frame_scores` / :class:`CubeScores` (mIoU, share, mean residual).
- ``05_sintel``: :func:`fit_segments` / :class:`SegmentFits` (each segment's affine motion).
- ``06_real_video_entropy``: :func:`one_hot`, :func:`speed_bands`, :func:`stripes`,
  :func:`explained_variance`, :func:`segmentation_scores`, :func:`segment_speed_shares`.

Every affine fit is :func:`s3lib.losses.fit_affine` (:func:`s3lib.motion.fit` on checked
inputs) with the ridge :data:`s3lib.motion.DEFAULT_EPS` unless an ``eps`` is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import numpy as np
import torch

from . import motion
from .data.synthetic import add_flow_noise, piecewise_affine_flow
from .flow import max_magnitude, warp_error
from .freemask import FreeMaskResult, segment_flow
from .grouping import log_evidence, max_log_likelihood
from .losses import (affine_motion_loss, entropy_motion_loss, fit_affine, histogram_entropy,
                     speed_histograms)
from .metrics import matched_miou
from .motion import DEFAULT_EPS


# ----------------------------------------------------------------------------- 00: flow pairs
def flow_pair_scores(first: np.ndarray, second: np.ndarray, flow: np.ndarray) -> dict[str, float]:
    """How large a flow field is and how well it explains a frame pair (``00_overview``).

    Args:
        first, second: ``(H, W, 3)`` uint8 RGB frames. flow: ``(H, W, 2)`` from ``first`` to
            ``second`` in pixels.

    Returns:
        ``mean_magnitude`` and ``max_magnitude`` of ``|flow|`` (px); ``error_no_motion`` and
        ``error_warped``: :func:`s3lib.flow.warp_error` (grey levels) of ``second`` against
        ``first`` with zero flow and with ``flow``.
    """
    mag = np.hypot(flow[..., 0], flow[..., 1])
    return {"mean_magnitude": float(mag.mean()), "max_magnitude": max_magnitude(flow),
            "error_no_motion": warp_error(first, second, np.zeros_like(flow)),
            "error_warped": warp_error(first, second, flow)}


# ----------------------------------------------------------------------------- 01: boundaries
def two_motion_flow(size: int = 48, boundary: int = 28, noise: float = 0.0, seed: int = 0
                    ) -> torch.Tensor:
    """``(2, size, size)`` float64 flow: left of column ``boundary`` a rotation plus a
    translation to the right, right of it a zoom plus a translation up; Gaussian noise of std
    ``noise`` px (seeded). The field of ``01_grouping_model``'s boundary explorer."""
    if not 0 < boundary < size:
        raise ValueError(f"boundary: expected 0 < boundary < size={size}, got {boundary}")
    phi = motion.homogeneous_coordinates(size, size, dtype=torch.float64)
    left = torch.tensor([[0.0, -1.0, 1.5], [1.0, 0.0, 0.0]], dtype=torch.float64)
    right = torch.tensor([[1.2, 0.0, 0.0], [0.0, 1.2, -1.5]], dtype=torch.float64)
    flow = torch.where(torch.arange(size) < boundary, torch.einsum("ck,khw->chw", left, phi),
                       torch.einsum("ck,khw->chw", right, phi))
    if noise > 0:
        gen = torch.Generator().manual_seed(seed)
        flow = flow + noise * torch.randn(flow.shape, generator=gen, dtype=torch.float64)
    return flow


def boundary_masks(size: int, positions, softness: float) -> torch.Tensor:
    """Two-segment masks ``(P, 2, size, size)`` float64 split at each column in ``positions``
    (``P`` of them; segment 0 on the left), as in ``01_grouping_model``.

    ``softness`` (pixels) is the width of the sigmoid ramp between the segments; 0 gives hard
    masks.
    """
    x = torch.arange(size, dtype=torch.float64) + 0.5
    pos = torch.as_tensor(positions, dtype=torch.float64).reshape(-1, 1)
    if softness > 0:
        right = torch.sigmoid((x - pos) / softness)
    else:
        right = (x > pos).to(torch.float64)
    right = right[:, None, :].expand(-1, size, -1)
    return torch.stack([1 - right, right], 1)


@dataclass
class BoundaryScan:
    """Log-likelihoods (nats per pixel) of the two-segment split at every column (see
    :func:`scan_boundaries`): ``positions``, ``max_loglik`` (eq. 2) and ``evidence`` (eq. 1),
    each ``(W - 1,)``."""

    positions: np.ndarray
    max_loglik: np.ndarray
    evidence: np.ndarray


def scan_boundaries(flow: torch.Tensor, softness: float, sigma: float = 0.5,
                    prior_std: float = 5.0) -> BoundaryScan:
    """Score the split at every column 1..W-1 of ``flow (2, W, W)`` with eq. (2) (Gaussian, max)
    and eq. (1) (evidence), as in ``01_grouping_model``.

    Returns per-pixel values so that images of any size compare.
    """
    size = flow.shape[-1]
    positions = np.arange(1, size)
    masks = boundary_masks(size, positions, softness)
    flows = flow[None].expand(len(positions), -1, -1, -1)
    n = size * size
    return BoundaryScan(positions,
                        (max_log_likelihood(masks, flows, scale=sigma) / n).numpy(),
                        (log_evidence(masks, flows, sigma=sigma, prior_std=prior_std) / n).numpy())


# ----------------------------------------------------------------------------- 02: free masks
OUTLIER_SIZE = 10.0
"""Largest component (px) of the random vectors :func:`add_outliers` puts on outlier pixels in
``02_affine_motion_loss`` (its fields move by at most about 4.5 px)."""


def add_outliers(flow: torch.Tensor, fraction: float, size: float = OUTLIER_SIZE,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gross errors without dense noise: a random ``fraction`` of the pixels of ``flow
    (2, H, W)`` (px) get random vectors whose two components are uniform in ``[-size, size]``
    px, as estimated flow has at occlusions; every other pixel keeps its flow exactly
    (``02_affine_motion_loss``).

    Returns:
        ``(corrupted flow (2, H, W)`` in ``flow``'s dtype, ``outliers (H, W)`` bool: the pixels
        replaced``)``; seeded by ``seed``, so the same call gives the same pixels.
    """
    if not isinstance(flow, torch.Tensor) or flow.ndim != 3 or flow.shape[0] != 2:
        raise ValueError(f"flow: expected a (2, H, W) tensor, got "
                         f"{tuple(flow.shape) if hasattr(flow, 'shape') else type(flow).__name__}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
            or not 0 <= fraction <= 1:
        raise ValueError(f"fraction: expected a share of the pixels in [0, 1], got {fraction!r}")
    if isinstance(size, bool) or not isinstance(size, (int, float)) or not 0 <= size < math.inf:
        raise ValueError(f"size: expected a finite, non-negative number of pixels, got {size!r}")
    gen = torch.Generator().manual_seed(seed)
    h, w = flow.shape[1:]
    bad = torch.rand(h, w, generator=gen, dtype=torch.float64) < fraction
    wild = (torch.rand(2, h, w, generator=gen, dtype=torch.float64) * 2 - 1) * size
    return torch.where(bad, wild.to(flow.dtype), flow), bad


def free_mask_flow(size: int, noise: float = 0.0, outliers: float = 0.0, seed: int = 0
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The flow the free-mask explorer of ``02_affine_motion_loss`` segments: the scene
    ``piecewise_affine_flow(size, 3, seed)``, with ``noise`` px of estimated-flow-like noise
    (:func:`s3lib.data.synthetic.add_flow_noise`), then a share ``outliers`` of the pixels
    replaced by gross errors (:func:`add_outliers`, components up to :data:`OUTLIER_SIZE` px).

    Returns ``(flow (2, size, size)`` float32 px, ``labels (size, size)`` int64 true regions``)``.
    """
    scene = piecewise_affine_flow(size, 3, seed=seed)
    flow = add_flow_noise(scene.flow, noise, seed=seed)
    if outliers > 0:
        flow = add_outliers(flow, outliers, OUTLIER_SIZE, seed=seed)[0]
    return flow, scene.labels


def run_free_masks(size: int, num_segments: int, robust: str, noise: float, steps: int,
                   seed: int = 0, stride: int = 1, restarts: int = 1, outliers: float = 0.0
                   ) -> tuple[FreeMaskResult, torch.Tensor]:
    """Segment the flow of :func:`free_mask_flow` (``size``, ``noise``, ``outliers``,
    ``seed``) into ``num_segments`` with the affine loss and the penalty ``robust``; returns the
    result (masks ``(L, size, size)``, losses and mIoUs along the way) and the true labels
    ``(size, size)`` int64. The free-mask baseline of ``02_affine_motion_loss``."""
    flow, labels = free_mask_flow(size, noise, outliers, seed)
    result = segment_flow(flow, num_segments, lambda m, f: affine_motion_loss(m, f, robust=robust),
                          steps=steps, labels=labels, record_every=max(steps // 30, 1),
                          stride=stride, restarts=restarts)
    return result, labels


@dataclass
class PenaltyTrial:
    """One free-mask run of :func:`penalty_trial`: ``masks (L, H, W)`` found, ``miou`` (their
    matched mIoU), ``found_loss`` (their loss) and ``true_loss`` (the loss of the true regions as
    one-hot masks), both with the run's penalty and in its unit (px; px^2 for L2).

    ``true_loss < found_loss``: the loss ranks the true regions first and the optimiser missed
    them; ``true_loss >= found_loss``: the loss itself prefers the wrong segmentation."""

    masks: torch.Tensor
    miou: float
    found_loss: float
    true_loss: float

    @property
    def loss_prefers_truth(self) -> bool:
        """Whether the true regions score lower than the masks found."""
        return self.true_loss < self.found_loss


def penalty_trial(flow: torch.Tensor, labels: torch.Tensor, robust: str, steps: int,
                  restarts: int = 2, stride: int = 4) -> PenaltyTrial:
    """Segment ``flow (2, H, W)`` (px) into as many segments as ``labels (H, W)`` (int64,
    ``0..R-1``) has regions, by free masks (:func:`s3lib.freemask.segment_flow`, seed 0,
    ``restarts`` kept by the loss) with the affine loss and the penalty ``robust``; score the
    masks found against ``labels`` and against the true regions' own loss
    (``02_affine_motion_loss``, robust penalties against noise and outliers)."""
    flow = check_flow(flow)
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 \
            or labels.shape != flow.shape[1:]:
        raise ValueError(f"labels: expected an int64 map of shape {tuple(flow.shape[1:])}, got "
                         f"{getattr(labels, 'dtype', type(labels).__name__)} "
                         f"{tuple(getattr(labels, 'shape', ()))}")
    num = int(labels.max()) + 1
    loss = lambda m, f: affine_motion_loss(m, f, robust=robust)  # noqa: E731
    run = segment_flow(flow, num, loss, steps=steps, labels=labels, record_every=max(steps, 1),
                       stride=stride, restarts=restarts)
    true = one_hot(labels, num).to(flow.dtype)
    return PenaltyTrial(masks=run.masks, miou=run.mious[-1],
                        found_loss=float(loss(run.masks[None], flow[None])),
                        true_loss=float(loss(true, flow[None])))


# ----------------------------------------------------------------------------- 03: entropy
MASK_KINDS = ("true", "mixed", "uniform")
"""The three segmentations :func:`comparison_masks` builds, in display order."""


def comparison_masks(labels: torch.Tensor, dtype: torch.dtype = torch.float32,
                     num: int | None = None) -> dict[str, torch.Tensor]:
    """The ``true``, ``mixed`` and ``uniform`` soft segments of a label map ``(H, W)``
    (``03_entropy_motion_loss``).

    Returns a dict of masks ``(1, L, H, W)`` with ``L = num`` (default: the largest label + 1,
    at least 2), each summing to 1 over ``L`` at every pixel:

    - ``true``: the regions themselves (one-hot masks);
    - ``mixed``: each segment takes half of two regions
      (``m_l = 0.5 [y = l] + 0.5 [y = l + 1 mod L]``), so every segment straddles two motions;
    - ``uniform``: every pixel shared equally by all segments (``m_l = 1 / L``), so each
      segment's histogram is the histogram of the whole image: the entropy loss is then the
      entropy of the speed itself, the largest value any segmentation can reach.
    """
    if labels.ndim != 2 or labels.dtype != torch.int64:
        raise ValueError(f"labels: expected an (H, W) int64 label map, got {labels.dtype} "
                         f"{tuple(labels.shape)}")
    num = int(labels.max()) + 1 if num is None else num
    if num < 2 or int(labels.min()) < 0 or int(labels.max()) >= num:
        raise ValueError(f"labels: expected labels in 0..L-1 with L = {num} >= 2, got "
                         f"{labels.unique().tolist()}")
    true = torch.nn.functional.one_hot(labels, num).permute(2, 0, 1)[None].to(dtype)
    mixed = 0.5 * true + 0.5 * torch.roll(true, shifts=-1, dims=1)  # m_l: half of l, half of l+1
    uniform = torch.full_like(true, 1.0 / num)
    return {"true": true, "mixed": mixed, "uniform": uniform}


@dataclass
class SpeedEntropies:
    """One segmentation's speed histograms (see :func:`speed_entropies`): ``loss`` (nats, the
    entropy motion loss), ``hist (L, bins)`` float64 soft counts, ``entropies`` (``H_l`` of
    each segment, nats) and ``top`` (the speed of the last bin centre, px)."""

    loss: float
    hist: torch.Tensor
    entropies: list[float]
    top: float


def speed_entropies(masks: dict[str, torch.Tensor], flow: torch.Tensor,
                    bins: int) -> dict[str, SpeedEntropies]:
    """Per-segment speed histograms, their entropies and the entropy loss of each
    segmentation in ``masks`` (name -> ``(1, L, H, W)``, e.g. :func:`comparison_masks`) of
    ``flow (2, H, W)`` (px), with ``bins`` bins: exactly the histograms of
    :func:`s3lib.losses.entropy_motion_loss` (``03_entropy_motion_loss``)."""
    f = flow[None]
    out = {}
    for kind, m in masks.items():
        loss = float(entropy_motion_loss(m, f, bins=bins))
        hist, top = speed_histograms(m, f, bins)  # exactly the loss's histograms
        hist = hist[0].double()  # (L, bins)
        out[kind] = SpeedEntropies(loss=loss, hist=hist,
                                   entropies=[float(v) for v in histogram_entropy(hist)],
                                   top=float(top))
    return out


# ----------------------------------------------------------------------------- 04: cube scores
@dataclass
class CubeScores:
    """What the cube explorer reports for one frame and segment (see :func:`frame_scores`)."""

    frame: int
    segment: int
    miou: float
    share: float
    residual: float

    def summary(self) -> str:
        """``frame F, segment L: frame mIoU ..., segment share ...%, mean residual ... px``."""
        return (f"frame {self.frame}, segment {self.segment}: frame mIoU {self.miou:.3f}, "
                f"segment share {self.share:.1%}, mean residual {self.residual:.3f} px")


@torch.no_grad()
def frame_scores(flow: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor, segment: int,
                 frame: int = 0, eps: float = DEFAULT_EPS) -> CubeScores:
    """Scores of one frame of ``04_cube_toy``: ``flow (2, H, W)``, ``labels (H, W)`` int64 (0
    background, 1..6 faces), ``masks (L, H, W)`` soft segments, ``segment`` in ``0..L-1``.

    - ``miou``: :func:`s3lib.metrics.matched_miou` of ``masks.argmax(0)`` against ``labels``;
    - ``share``: fraction of the pixels where ``segment`` has the largest mask;
    - ``residual``: ``sum_u m_lu |f_u - A_l phi_u| / sum_u m_lu`` (pixels), the segment's
      mask-weighted mean residual (as :func:`s3lib.train.segment_costs` computes it: ``A_l``
      from :func:`s3lib.losses.fit_affine` with the ridge ``eps``, the residual from
      :func:`s3lib.motion.segment_residuals`).
    """
    num = masks.shape[0]
    if not isinstance(segment, int) or isinstance(segment, bool) or not 0 <= segment < num:
        raise ValueError(f"segment: expected an int in 0..{num - 1}, got {segment!r}")
    hard = masks.argmax(0)
    params = fit_affine(flow[None], masks[None], eps)  # (1, L, 2, 3)
    rho = motion.segment_residuals(params, flow[None])[0, segment]  # (H, W) px
    m = masks[segment]
    return CubeScores(frame=frame, segment=segment, miou=matched_miou(hard, labels),
                      share=float((hard == segment).float().mean()),
                      residual=float((m * rho).sum() / m.sum().clamp_min(1e-6)))


# ----------------------------------------------------------------------------- 05: segment fits
@dataclass
class SegmentFits:
    """Per-segment affine fits of ``N`` frames (see :func:`fit_segments`).

    ``params (N, L, 2, 3)``: ``A_l`` per frame; ``fitted (N, L, 2, H, W)``: ``A_l phi_u`` at
    every pixel (pixels); ``residual (N, L, H, W)``: ``|f_u - A_l phi_u|`` (pixels);
    ``share``, ``mean_residual``, ``mean_speed``: ``(N, L)`` float64:

    - ``share``: ``pi_l = mean_u m_lu``, the segment's (soft) share of the pixels;
    - ``mean_residual``: ``sum_u m_lu |f_u - A_l phi_u| / sum_u m_lu`` in pixels, the
      mask-weighted mean length of the residual vector (what ``s3lib.train.segment_costs``
      reports per segment);
    - ``mean_speed``: ``sum_u m_lu |f_u| / sum_u m_lu``, the mask-weighted mean speed, so the
      residual can be read against the motion it has to explain.
    """

    params: torch.Tensor
    fitted: torch.Tensor
    residual: torch.Tensor
    share: torch.Tensor
    mean_residual: torch.Tensor
    mean_speed: torch.Tensor


@torch.no_grad()
def fit_segments(flows: torch.Tensor, masks: torch.Tensor) -> SegmentFits:
    """Fit each segment's affine motion and measure how well it explains the flow
    (``05_sintel``).

    Args:
        flows: ``(N, 2, H, W)`` forward flow in pixels.
        masks: ``(N, L, H, W)`` soft segments (summing to 1 over ``L``).

    Returns:
        A :class:`SegmentFits` (float64 for the means, so they do not depend on summation
        order in their last printed digits).
    """
    if flows.ndim != 4 or masks.ndim != 4 or flows.shape[1] != 2 \
            or flows.shape[0] != masks.shape[0] or flows.shape[-2:] != masks.shape[-2:]:
        raise ValueError(f"flows (N, 2, H, W) and masks (N, L, H, W) of one size expected, got "
                         f"{tuple(flows.shape)} and {tuple(masks.shape)}")
    flows, masks = flows.float(), masks.float()
    h, w = flows.shape[-2:]
    params = fit_affine(flows, masks)                                  # (N, L, 2, 3)
    fitted = motion.predict(params, h, w)                              # (N, L, 2, H, W)
    residual = torch.sqrt((flows[:, None] - fitted).pow(2).sum(2))  # (N, L, H, W)
    m = masks.double()
    mass = m.sum((2, 3))
    weight = mass.clamp_min(1e-9)
    speed = flows.double().pow(2).sum(1, keepdim=True).sqrt()          # (N, 1, H, W)
    return SegmentFits(params=params, fitted=fitted, residual=residual,
                       share=mass / (h * w),
                       mean_residual=(m * residual.double()).sum((2, 3)) / weight,
                       mean_speed=(m * speed).sum((2, 3)) / weight)


# ----------------------------------------------------------------------------- 06: hard segments
def one_hot(labels: torch.Tensor, num: int) -> torch.Tensor:
    """Hard segments as masks: label map ``(H, W)`` (or ``(B, H, W)``) int64 in ``0..num-1``
    -> ``(B, num, H, W)`` float32 one-hot masks (B = 1 for a single map);
    ``06_real_video_entropy``."""
    if labels.dtype != torch.int64 or labels.ndim not in (2, 3):
        raise ValueError(f"labels: expected an (H, W) or (B, H, W) int64 map, got {labels.dtype} "
                         f"{tuple(labels.shape)}")
    if not isinstance(num, int) or num < 1:
        raise ValueError(f"num: expected an int >= 1, got {num!r}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num):
        raise ValueError(f"labels: expected values in 0..{num - 1}, got "
                         f"{int(labels.min())}..{int(labels.max())}")
    lab = labels[None] if labels.ndim == 2 else labels
    return torch.nn.functional.one_hot(lab, num).permute(0, 3, 1, 2).float()


def check_flow(flow: torch.Tensor) -> torch.Tensor:
    """A finite ``(2, H, W)`` flow as float32; ``ValueError`` otherwise."""
    if not isinstance(flow, torch.Tensor) or flow.ndim != 3 or flow.shape[0] != 2:
        raise ValueError(f"flow: expected a (2, H, W) tensor, got "
                         f"{tuple(flow.shape) if hasattr(flow, 'shape') else type(flow).__name__}")
    if not torch.isfinite(flow).all():
        raise ValueError("flow: contains NaN or inf")
    return flow.float()


def speed_bands(flow: torch.Tensor, num: int) -> torch.Tensor:
    """``num`` equal-count bands of the speed ``|f|`` of ``flow (2, H, W)``: label map
    ``(H, W)`` int64, band 0 the slowest. Thresholds are the speed's ``k / num`` quantiles
    (ties may leave a band empty).

    For any hard segmentation ``S``, ``H(V | S) >= H(V) - H(S) >= H(V) - log L``, and the bands
    reach ``H(S) = log L`` with ``S`` a function of the speed, so they come close to the lowest
    entropy loss any ``L`` hard segments can have (``06_real_video_entropy``)."""
    flow = check_flow(flow)
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise ValueError(f"num: expected an int >= 1, got {num!r}")
    speed = flow.norm(dim=0)
    if num == 1:
        return torch.zeros(speed.shape, dtype=torch.int64)
    q = torch.quantile(speed.flatten().double(), torch.arange(1, num, dtype=torch.float64) / num)
    return torch.bucketize(speed.double(), q, right=True).clamp_max(num - 1)


def stripes(height: int, width: int, num: int) -> torch.Tensor:
    """A fixed partition that ignores the picture: ``num`` vertical stripes of (nearly) equal
    width, label map ``(height, width)`` int64 (stripe 0 on the left). The baseline of
    ``06_real_video_entropy``'s held-out comparison."""
    if min(height, width) < 1 or not isinstance(num, int) or not 1 <= num <= width:
        raise ValueError(f"expected height, width >= 1 and 1 <= num <= width, got {height}, "
                         f"{width}, {num!r}")
    cols = torch.arange(width) * num // width
    return cols.expand(height, width).clone()


def explained_variance(labels: torch.Tensor, flow: torch.Tensor) -> float:
    """Share of the variance of ``flow (2, H, W)`` explained by the mean flow vectors of the
    segments ``labels (H, W)`` int64 (R^2 of a piecewise-constant flow):
    ``1 - sum_u |f_u - mean_{S(u)}|^2 / sum_u |f_u - mean|^2``.

    Neither motion loss optimises it (the entropy loss sees speeds only, the affine loss fits
    an affine motion per segment), so it is a neutral score of how well the segments follow
    the motion: 0 for one segment, 1 when every segment moves as one translation
    (``06_real_video_entropy``)."""
    flow = check_flow(flow).double()
    if labels.shape != flow.shape[1:] or labels.dtype != torch.int64:
        raise ValueError(f"labels: expected an int64 map of shape {tuple(flow.shape[1:])}, got "
                         f"{labels.dtype} {tuple(labels.shape)}")
    f = flow.reshape(2, -1)
    lab = labels.flatten()
    num = int(lab.max()) + 1
    sums = torch.zeros(2, num, dtype=torch.float64).index_add_(1, lab, f)
    counts = torch.bincount(lab, minlength=num).clamp_min(1).double()
    resid = (f - (sums / counts)[:, lab]).pow(2).sum()
    total = (f - f.mean(1, keepdim=True)).pow(2).sum()
    return float(1 - resid / total) if float(total) > 0 else 0.0


def segmentation_scores(labels: torch.Tensor, flow: torch.Tensor, num: int,
                        bins: int = 32) -> dict[str, float]:
    """Score a hard segmentation ``labels (H, W)`` (``0..num-1``) of ``flow (2, H, W)``
    (``06_real_video_entropy``):

    - ``entropy``: :func:`s3lib.losses.entropy_motion_loss` of its one-hot masks, ``bins`` bins
      (nats; lower: each segment's speeds more peaked);
    - ``affine``: :func:`s3lib.losses.affine_motion_loss` (Charbonnier, per segment; px;
      lower: each segment closer to one affine motion);
    - ``explained``: :func:`explained_variance` (higher is better).
    """
    flow = check_flow(flow)
    masks = one_hot(labels, num)
    if masks.shape[-2:] != flow.shape[-2:]:
        raise ValueError(f"labels {tuple(labels.shape)} and flow {tuple(flow.shape)} differ in "
                         f"size")
    f = flow[None]
    return {"entropy": float(entropy_motion_loss(masks, f, bins=bins)),
            "affine": float(affine_motion_loss(masks, f)),
            "explained": explained_variance(labels, flow)}


def segment_speed_shares(labels: torch.Tensor, flow: torch.Tensor, num: int,
                         bins: int) -> tuple[np.ndarray, float]:
    """Each segment's soft speed histogram (the entropy loss's, :func:`s3lib.losses.
    speed_histograms`) as shares of all pixels: ``((num, bins) float64, top)`` with ``top`` the
    speed of the last bin centre (px); ``labels (H, W)`` int64, ``flow (2, H, W)``
    (``06_real_video_entropy``)."""
    flow = check_flow(flow)
    hist, top = speed_histograms(one_hot(labels, num), flow[None], bins)
    return (hist[0].double() / labels.numel()).numpy(), float(top[0])


__all__ = ["BoundaryScan", "CubeScores", "MASK_KINDS", "OUTLIER_SIZE", "PenaltyTrial",
           "SegmentFits", "SpeedEntropies", "add_outliers", "boundary_masks", "check_flow",
           "comparison_masks", "explained_variance", "fit_segments", "flow_pair_scores",
           "frame_scores", "free_mask_flow", "one_hot", "penalty_trial", "run_free_masks",
           "scan_boundaries", "segment_speed_shares", "segmentation_scores", "speed_bands",
           "speed_entropies", "stripes", "two_motion_flow"]
