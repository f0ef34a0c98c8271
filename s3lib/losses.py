"""The self-supervised motion losses of S3-CNN, computed from soft segments and optical flow.

All losses take ``masks (B, L, H, W)`` (soft segments: non-negative, summing to 1 over ``L``)
and ``flow (B, 2, H, W)`` (pixels) and return a scalar tensor whose dtype follows the inputs.
NaN or inf in the flow raises ``ValueError``.

- :func:`affine_motion_loss`: fit an affine (or quadratic) motion to each segment by weighted
  least squares *inside the forward pass* (:func:`fit_affine`), then a robust residual.
  ``notebooks/02_affine_motion_loss.ipynb``.
- :func:`entropy_motion_loss`: entropy of a soft histogram of flow magnitude per segment.
  ``notebooks/03_entropy_motion_loss.ipynb``.
- :func:`marginal_likelihood_loss`: negative log evidence of eq. (1), parameters integrated out
  (:func:`s3lib.grouping.log_evidence`). ``notebooks/01_grouping_model.ipynb``.
"""

from __future__ import annotations

from typing import Literal

import torch

from . import motion
from .grouping import log_evidence
from .motion import DEFAULT_EPS, Model, check_inputs

Robust = Literal["charbonnier", "l1", "l2"]
Combine = Literal["segments", "blend"]

DEFAULT_DELTA = 0.1
"""Charbonnier's delta in pixels: quadratic below it, linear (robust) above it."""


def fit_affine(flow: torch.Tensor, masks: torch.Tensor, eps: float = DEFAULT_EPS,
               model: Model = "affine") -> torch.Tensor:
    """Fit one motion model per segment by weighted least squares: ``(B, L, 2, K)``.

    For segment ``l``, with the basis ``phi_u = (x, y, 1)`` of normalised coordinates
    (``(x, y, 1, x^2, xy, y^2)`` for ``model="quadratic"``) and weights ``m_lu`` (the mask
    itself, not its square), ``A_l`` minimises

    ``(1/N) sum_u m_lu |f_u - A_l phi_u|^2 + eps |A_l|^2``,

    i.e. solves the weighted normal equations ``A_l (G_l + eps I) = R_l`` with
    ``G_l = (1/N) sum_u m_lu phi_u phi_u^T`` and ``R_l = (1/N) sum_u m_lu f_u phi_u^T``. The
    small ridge keeps an empty segment finite (its model shrinks to zero motion); since the
    statistics are pixel means over normalised coordinates, ``eps`` means the same at every
    image size. They are means over *all* pixels, though, so the ridge weighs more against a
    small segment: the default (:data:`s3lib.motion.DEFAULT_EPS`, 1e-6) is small enough that a
    face of 60 of 64x64 pixels keeps 99% of its slope (notebook 04). The fit itself is
    :func:`s3lib.motion.fit`: all ``B x L`` systems built with two matrix products and solved
    at once;
    the result is differentiable w.r.t. ``masks`` and ``flow``.

    Args:
        flow: ``(B, 2, H, W)`` in pixels. masks: ``(B, L, H, W)``.
        eps: ridge (> 0). model: ``"affine"`` (K = 3) or ``"quadratic"`` (K = 6).

    Returns:
        ``A`` of shape ``(B, L, 2, K)``: ``flow_l(u) = A[b, l] @ phi_u`` (row 0 = x, row 1 = y).
    """
    masks, flow = check_inputs(masks, flow)
    return motion.fit(flow, masks, eps, model)[0]


def affine_reconstruction(flow: torch.Tensor, masks: torch.Tensor, eps: float = DEFAULT_EPS,
                          model: Model = "affine") -> torch.Tensor:
    """The flow rebuilt from the segments' motion models: ``(B, 2, H, W)``.

    ``recon(u) = sum_l m_lu A_l phi_u`` with ``A = fit_affine(flow, masks, eps, model)``
    (the paper's fig. 1b: one affine map per region, recombined by the soft masks).
    """
    masks, flow = check_inputs(masks, flow)
    return motion.blend(motion.fit(flow, masks, eps, model)[0], masks, model)


def robust_penalty(sq_norm: torch.Tensor, robust: Robust = "charbonnier",
                   delta: float = DEFAULT_DELTA) -> torch.Tensor:
    """Penalty of a residual vector from its squared length ``|e|^2`` (pixels^2).

    - ``"charbonnier"``: ``sqrt(|e|^2 + delta^2) - delta`` (0 at 0, quadratic for small errors,
      linear for large ones: outliers such as occlusions pull less);
    - ``"l1"``: ``|e|`` (computed as ``sqrt(|e|^2 + 1e-12)`` so its gradient exists at 0);
    - ``"l2"``: ``|e|^2``.
    """
    if robust == "charbonnier":
        if not delta > 0:
            raise ValueError(f"delta: expected a positive number of pixels, got {delta!r}")
        return torch.sqrt(sq_norm + delta * delta) - delta
    if robust == "l1":
        return torch.sqrt(sq_norm.clamp_min(0) + 1e-12)
    if robust == "l2":
        return sq_norm
    raise ValueError(f"robust: expected 'charbonnier', 'l1' or 'l2', got {robust!r}")


def affine_motion_loss(masks: torch.Tensor, flow: torch.Tensor, robust: Robust = "charbonnier",
                       combine: Combine = "segments", eps: float = DEFAULT_EPS,
                       delta: float = DEFAULT_DELTA, model: Model = "affine") -> torch.Tensor:
    """The affine motion loss: how badly each segment's best affine motion explains its flow.

    Args:
        masks: ``(B, L, H, W)`` soft segments. flow: ``(B, 2, H, W)`` pixels.
        robust: ``"charbonnier"`` (default), ``"l1"`` or ``"l2"`` (:func:`robust_penalty`).
        combine: how segments are combined:

            - ``"segments"`` (default): ``mean_u sum_l m_lu rho(f_u - A_l phi_u)``, each pixel
              pays the residual of every segment in proportion to its mask: the expected
              residual when the pixel's segment is drawn from ``m_u``. A pixel shared by two
              segments pays for both, so the loss pushes masks towards hard decisions.
            - ``"blend"``: ``mean_u rho(f_u - sum_l m_lu A_l phi_u)``, the residual of the
              blended reconstruction (the paper's fig. 1b). Mixing two motions can fit a third,
              so soft, shared segments are not penalised.

            Notebook 02 measures both on the same free-mask experiment: the blend fits
            exact flow with softer, shared masks; ``"segments"`` gives harder masks, which a
            segmentation needs, so it is the default.
        eps: ridge of the fit (:func:`fit_affine`). delta: Charbonnier's delta (pixels).
        model: ``"affine"`` or ``"quadratic"``.

    Returns:
        A scalar: the mean over pixels and batch, in pixels (``"l2"``: pixels^2).

    Autograd differentiates it: a hand-written backward through the fit was 1.6-1.75x faster
    for the loss alone but only 1.00-1.02x for a whole training step (``benchmarks/backward.py``
    at commit 9e90ea5), so it was removed.
    """
    masks, flow = check_inputs(masks, flow)
    b, num_l, h, w = masks.shape
    if combine == "blend":
        params = motion.fit(flow, masks, eps, model)[0]
        sq = (flow - motion.blend(params, masks, model)).pow(2).sum(1)
        return robust_penalty(sq, robust, delta).mean()
    if combine != "segments":
        raise ValueError(f"combine: expected 'segments' or 'blend', got {combine!r}")
    if robust == "charbonnier" and not delta > 0:
        raise ValueError(f"delta: expected a positive number of pixels, got {delta!r}")
    if robust not in ("charbonnier", "l1", "l2"):
        raise ValueError(f"robust: expected 'charbonnier', 'l1' or 'l2', got {robust!r}")
    params, fphi, _ = motion.fit(flow, masks, eps, model)
    m = masks.reshape(-1)
    if robust == "charbonnier":  # sqrt(|e|^2 + delta^2) - delta, with delta^2 folded in
        rho = (torch.sqrt(motion.squared_residuals(params, flow, model, fphi, delta * delta))
               - delta).clamp_min(0)
        return torch.dot(m, rho.reshape(-1)) / (b * h * w)
    rho = robust_penalty(motion.squared_residuals(params, flow, model, fphi), robust, delta)
    return torch.dot(m, rho.reshape(-1)) / (b * h * w)


def soft_histogram(masks: torch.Tensor, values: torch.Tensor, bins: int,
                   max_value: torch.Tensor) -> torch.Tensor:
    """Per-segment soft histograms of a per-pixel value: ``(B, L, bins)``.

    Bin centres are ``0, d, 2d, ..., max_value`` (``d = max_value / (bins - 1)``); a pixel with
    value ``v`` between centres ``k`` and ``k + 1`` adds ``m_lu (1 - t)`` to bin ``k`` and
    ``m_lu t`` to bin ``k + 1``, ``t`` the fractional position (a linear, triangular kernel):
    the histogram is the masks times a sparse bin-weight matrix with two entries per pixel, so
    it is differentiable w.r.t. the masks and (through ``t``) the values.

    Args:
        masks: ``(B, L, H, W)``. values: ``(B, H, W)`` non-negative.
        max_value: ``(B,)`` value of the last bin centre (larger values go to the last bin).
    """
    b, num_l, h, w = masks.shape
    pos = values.reshape(b, 1, h * w) / max_value.reshape(b, 1, 1) * (bins - 1)
    pos = pos.clamp(0, bins - 1)
    k0 = pos.detach().floor().clamp(max=bins - 2)
    t = pos - k0  # in [0, 1]; gradient flows through the values
    k0 = k0.long().expand(b, num_l, h * w)
    m = masks.reshape(b, num_l, h * w)
    hist = masks.new_zeros(b, num_l, bins)
    hist = hist.scatter_add(2, k0, m * (1 - t)).scatter_add(2, k0 + 1, m * t)
    return hist


def speed_histograms(masks: torch.Tensor, flow: torch.Tensor, bins: int = 32,
                     max_magnitude: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-segment soft histograms of flow speed, as the entropy loss builds them.

    Returns ``(hist, top)``: ``hist`` ``(B, L, bins)`` (bin ``k`` centred at ``k top / (bins-1)``,
    unnormalised: each segment's histogram sums to its mask mass) and ``top`` ``(B,)``, the
    speed of the last bin centre (``max_magnitude``, or each image's largest speed).
    """
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 2:
        raise ValueError(f"bins: expected an int >= 2, got {bins!r}")
    speed = torch.sqrt(flow.pow(2).sum(1) + 1e-12)  # (B, H, W); finite gradient at 0
    if max_magnitude is None:
        top = speed.flatten(1).amax(1).clamp_min(1e-6)
    elif max_magnitude > 0:
        top = speed.new_full((speed.shape[0],), float(max_magnitude))
    else:
        raise ValueError(f"max_magnitude: expected a positive speed or None, got {max_magnitude!r}")
    return soft_histogram(masks, speed, bins, top), top


def histogram_entropy(hist: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each histogram after normalising it to sum 1: ``(..., bins) -> (...)``.

    An empty histogram has entropy 0.
    """
    p = hist / hist.sum(-1, keepdim=True).clamp_min(1e-12)
    return -(p * torch.log(p + 1e-12)).sum(-1)


def entropy_motion_loss(masks: torch.Tensor, flow: torch.Tensor, bins: int = 32,
                        max_magnitude: float | None = None) -> torch.Tensor:
    """The low-entropy motion loss: entropy of each segment's histogram of flow magnitude.

    ``loss = sum_l pi_l H(h_l)`` with ``h_l`` the soft histogram of ``|f_u|`` weighted by
    ``m_lu`` (:func:`speed_histograms`), ``H`` its entropy in nats after normalising it to
    sum 1 (:func:`histogram_entropy`), and ``pi_l = mean_u m_lu`` the segment's share of the
    pixels: the conditional entropy of the speed given the segment. A segment holding one
    object moving at one speed has a peaked, low-entropy histogram; one straddling objects with
    different speeds does not.

    Args:
        masks: ``(B, L, H, W)``. flow: ``(B, 2, H, W)`` pixels.
        bins: number of histogram bins (>= 2).
        max_magnitude: speed of the last bin (pixels); ``None``: each image's largest speed.

    Returns:
        A scalar: the batch mean, in nats (between 0 and ``log(bins)``).
    """
    masks, flow = check_inputs(masks, flow)
    hist, _ = speed_histograms(masks, flow, bins, max_magnitude)
    n = masks.shape[-2] * masks.shape[-1]
    return (hist.sum(-1) / n * histogram_entropy(hist)).sum(-1).mean()


def marginal_likelihood_loss(masks: torch.Tensor, flow: torch.Tensor, sigma: float = 1.0,
                             prior_std: float = 10.0, model: Model = "affine") -> torch.Tensor:
    """Negative log evidence of eq. (1) per pixel: motion parameters integrated out.

    ``-log p(f | m) / (H W)`` averaged over the batch, with :func:`s3lib.grouping.log_evidence`
    (Gaussian noise ``sigma`` pixels, Gaussian prior ``prior_std`` on the affine parameters).
    """
    masks, flow = check_inputs(masks, flow)
    n = masks.shape[-2] * masks.shape[-1]
    return -log_evidence(masks, flow, sigma, prior_std, model).mean() / n


__all__ = ["fit_affine", "affine_reconstruction", "affine_motion_loss", "entropy_motion_loss",
           "marginal_likelihood_loss", "robust_penalty", "soft_histogram", "speed_histograms",
           "histogram_entropy"]
