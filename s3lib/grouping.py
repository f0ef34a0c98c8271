"""The probabilistic grouping model of S3-CNN: eq. (1) and (2) of the paper.

A segmentation ``m`` splits the pixels into ``L`` regions; inside region ``l`` the flow vectors
are i.i.d. under a motion model ``p(f_u | theta_l)``. The model's parameters are removed in one
of two ways:

- **maximised out** (eq. 2, what the paper trains with): ``prod_l max_theta prod_u p(f_u|theta)``,
  :func:`max_log_likelihood`, with a Gaussian (weighted least squares) or a Laplace (weighted
  least absolute deviations, by IRLS) residual;
- **integrated out** (eq. 1, named by the paper, done here): ``prod_l int prod_u p(f_u|theta)
  p(theta) dtheta`` with a Gaussian prior on the affine parameters, the closed-form evidence of
  Bayesian linear regression, :func:`log_evidence`.

Soft segments ``m`` in [0, 1] enter as exponents: pixel ``u`` contributes ``p(f_u|theta)^m_lu``
to region ``l`` (a hard segmentation is the special case of 0/1 masks). This tempered, weighted
likelihood is the course's own choice: the paper only says that it adapts the formulation to
soft segments.

Shapes: flow ``(B, 2, H, W)`` in pixels; masks ``(B, L, H, W)``; motion parameters
``(B, L, 2, K)`` with ``K = 3`` (affine) or ``6`` (quadratic). The fits themselves (basis,
normal equations, solve) are :mod:`s3lib.motion`'s. Explained in
``notebooks/01_grouping_model.ipynb``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch

from .motion import (DEFAULT_EPS, Model, check_inputs, homogeneous_coordinates, predict,
                     solve_motion, weighted_normal_equations)

Residual = Literal["gaussian", "laplace"]


def fit_motion(masks: torch.Tensor, flow: torch.Tensor, residual: Residual = "gaussian",
               model: Model = "affine", ridge: float = DEFAULT_EPS, irls_iterations: int = 20
               ) -> torch.Tensor:
    """The maximising parameters of eq. (2) for each region: ``(B, L, 2, K)``.

    ``"gaussian"``: weighted least squares; ``"laplace"``: weighted least absolute deviations
    (each flow component separately), by ``irls_iterations`` rounds of iteratively reweighted
    least squares (weights ``m / |residual|``).
    """
    masks, flow = check_inputs(masks, flow)
    if residual == "gaussian":
        g, r, _ = weighted_normal_equations(flow, masks, model)
        return solve_motion(g, r, ridge)
    if residual == "laplace":
        return _laplace_fit(flow, masks, model, ridge, irls_iterations)
    raise ValueError(f"residual: expected 'gaussian' or 'laplace', got {residual!r}")


def _laplace_fit(flow, masks, model, ridge, iterations):
    """Weighted least absolute deviations per region and component, by IRLS."""
    b, num_l, h, w = masks.shape
    g, r, _ = weighted_normal_equations(flow, masks, model)
    params = solve_motion(g, r, ridge)
    for _ in range(iterations):
        resid = (flow[:, None] - predict(params, h, w, model)).abs()  # (B, L, 2, H, W)
        params_c = []
        for c in range(2):  # each flow component has its own weights 1 / |r|
            wts = masks / resid[:, :, c].clamp_min(1e-6)
            gc, rc, _ = weighted_normal_equations(flow, wts, model)
            params_c.append(solve_motion(gc, rc, ridge)[:, :, c])
        params = torch.stack(params_c, dim=2)
    return params


def max_log_likelihood(masks: torch.Tensor, flow: torch.Tensor, residual: Residual = "gaussian",
                       scale: float = 1.0, model: Model = "affine", ridge: float = DEFAULT_EPS,
                       irls_iterations: int = 20, per_region: bool = False) -> torch.Tensor:
    """Log-likelihood of the flow under a segmentation, parameters maximised out (eq. 2).

    ``log p(f | m) = sum_l max_theta sum_u m_lu log p(f_u | theta)`` with
    ``p(f_u | A) = N(f_u; A phi_u, scale^2 I)`` (``"gaussian"``: the max is weighted least
    squares) or a product of two Laplace densities of scale ``scale`` (``"laplace"``: weighted
    least absolute deviations, solved by iteratively reweighted least squares).

    Args:
        masks: ``(B, L, H, W)`` soft or hard segments. flow: ``(B, 2, H, W)`` pixels.
        scale: the noise scale in pixels (sigma of the Gaussian, b of the Laplace).
        per_region: return ``(B, L)`` per-region terms instead of their sum over regions.

    Returns:
        ``(B,)`` log-likelihoods in nats (or ``(B, L)`` with ``per_region``).
    """
    masks, flow = check_inputs(masks, flow)
    if not scale > 0:
        raise ValueError(f"scale: expected a positive noise scale in pixels, got {scale!r}")
    b, num_l, h, w = masks.shape
    params = fit_motion(masks, flow, residual, model, ridge, irls_iterations)
    if residual == "gaussian":
        sq = (flow[:, None] - predict(params, h, w, model)).pow(2).sum(2)
        logp = -sq / (2 * scale**2) - math.log(2 * math.pi * scale**2)
    else:
        ab = (flow[:, None] - predict(params, h, w, model)).abs().sum(2)
        logp = -ab / scale - 2 * math.log(2 * scale)
    terms = (masks * logp).sum((-2, -1))
    return terms if per_region else terms.sum(-1)


def log_evidence(masks: torch.Tensor, flow: torch.Tensor, sigma: float = 1.0,
                 prior_std: float = 10.0, model: Model = "affine",
                 per_region: bool = False) -> torch.Tensor:
    """Log marginal likelihood of the flow under a segmentation, parameters integrated out (eq. 1).

    Each region's motion ``A_l`` (``2 x K``) has the prior ``N(0, tau^2 I)`` (``tau =
    prior_std``, in pixels per unit of normalised coordinate), the noise is ``N(0, sigma^2 I)``
    and pixel ``u`` counts with weight ``m_lu``. For one flow component ``c`` with
    ``beta = 1 / sigma^2``, ``alpha = 1 / tau^2``, the posterior precision
    ``Lambda_l = alpha I + beta sum_u m_lu phi_u phi_u^T``, ``b_l = beta sum_u m_lu f_uc phi_u``
    and the segment's mass ``N pi_l = sum_u m_lu``:

    ``log Z_lc = -N pi_l / 2 log(2 pi sigma^2) + K/2 log(alpha) - 1/2 log|Lambda_l|
    - beta/2 sum_u m_lu f_uc^2 + 1/2 b_l^T Lambda_l^-1 b_l``

    (Bayesian linear regression; Bishop, PRML, sec. 3.5). Unlike the maximised likelihood it
    charges every region for the parameters it uses (the ``log|Lambda_l|`` Occam factor), so it
    stops rewarding extra regions once the motion is explained.

    Returns:
        ``(B,)`` log evidences in nats (or ``(B, L)`` with ``per_region``).
    """
    masks, flow = check_inputs(masks, flow)
    if not (sigma > 0 and prior_std > 0):
        raise ValueError(f"sigma and prior_std: expected positive numbers, got {sigma!r}, "
                         f"{prior_std!r}")
    b, num_l, h, w = masks.shape
    n = h * w
    g, r, mass = weighted_normal_equations(flow, masks, model)
    k = g.shape[-1]
    beta, alpha = 1.0 / sigma**2, 1.0 / prior_std**2
    eye = torch.eye(k, dtype=g.dtype, device=g.device)
    s = alpha * eye + beta * n * g  # (B, L, K, K), shared by both components
    bvec = beta * n * r  # (B, L, 2, K)
    chol = torch.linalg.cholesky(s)
    sol = torch.cholesky_solve(bvec.transpose(-1, -2), chol)  # (B, L, K, 2)
    quad = (bvec.transpose(-1, -2) * sol).sum((-2, -1))  # sum over components of b^T S^-1 b
    logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    m = masks.reshape(b, num_l, n)
    fsq = torch.bmm(m, flow.reshape(b, 2, n).pow(2).sum(1, keepdim=True).transpose(1, 2))[..., 0]
    mass_px = mass * n
    terms = (-mass_px * math.log(2 * math.pi * sigma**2)  # two components, M/2 each
             + k * math.log(alpha) - logdet - beta / 2 * fsq + 0.5 * quad)
    return terms if per_region else terms.sum(-1)


@dataclass
class StripScores:
    """Eq. (2) and eq. (1) of vertical-strip segmentations of one flow field (see
    :func:`score_strips`): ``max_loglik`` and ``evidence``, each ``(P,)`` NumPy, in nats for the
    whole image (divide by ``num_pixels`` for nats per pixel)."""

    max_loglik: np.ndarray
    evidence: np.ndarray
    num_pixels: int


def score_strips(flow: torch.Tensor, cut_sets: Sequence[Sequence[int]], softness: float = 0.0,
                 sigma: float = 0.5, prior_std: float = 5.0) -> StripScores:
    """Score ``P`` vertical-strip segmentations of ``flow`` with eq. (2) and eq. (1).

    The masks are :func:`s3lib.regions.strip_masks` ``(P, L, W, W)`` of ``cut_sets`` (``P``
    sets of ``L - 1`` cuts each; sets of different lengths, i.e. different ``L``, are scored
    batch by batch and returned in their order); eq. (2) is :func:`max_log_likelihood` (Gaussian, ``scale =
    sigma``) and eq. (1) :func:`log_evidence` (noise ``sigma``, prior std ``prior_std``), the
    parameters being each strip's affine motion. The boundary explorer of
    ``notebooks/01_grouping_model.ipynb`` calls it for every boundary column at a fixed ``L``
    and for ``L = 1, 2, ...`` at a fixed boundary.

    Args:
        flow: ``(2, W, W)`` or ``(1, 2, W, W)`` pixels (a square field).
        softness: ramp width of each cut (pixels). sigma, prior_std: pixels, > 0.
    """
    from .regions import strip_masks

    f = flow[0] if flow.ndim == 4 and flow.shape[0] == 1 else flow
    if f.ndim != 3 or f.shape[0] != 2 or f.shape[1] != f.shape[2]:
        raise ValueError(f"flow: expected a square (2, W, W) field, got {tuple(flow.shape)}")
    size = f.shape[-1]
    sets = [list(c) for c in cut_sets]
    if not sets:
        raise ValueError("cut_sets: expected at least one set of cuts")
    max_ll, evidence = np.zeros(len(sets)), np.zeros(len(sets))
    for length in sorted({len(c) for c in sets}):  # one batch per number of segments
        idx = [i for i, c in enumerate(sets) if len(c) == length]
        masks = strip_masks(size, [sets[i] for i in idx], softness, dtype=f.dtype)
        flows = f[None].expand(len(idx), -1, -1, -1)
        max_ll[idx] = max_log_likelihood(masks, flows, scale=sigma).cpu().numpy()
        evidence[idx] = log_evidence(masks, flows, sigma=sigma, prior_std=prior_std).cpu().numpy()
    return StripScores(max_ll, evidence, size * size)


__all__ = ["Model", "Residual", "homogeneous_coordinates", "check_inputs", "fit_motion",
           "max_log_likelihood", "log_evidence", "StripScores", "score_strips"]
