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
to region ``l`` (a hard segmentation is the special case of 0/1 masks).

Shapes: flow ``(B, 2, H, W)`` in pixels; masks ``(B, L, H, W)``; motion parameters
``(B, L, 2, K)`` with ``K = 3`` (affine) or ``6`` (quadratic). Explained in
``notebooks/01_grouping_model.ipynb``.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch

from . import portable

Model = Literal["affine", "quadratic"]
Residual = Literal["gaussian", "laplace"]

NUM_BASIS = {"affine": 3, "quadratic": 6}


def homogeneous_coordinates(height: int, width: int, model: Model = "affine",
                            dtype: torch.dtype = torch.float32,
                            device: torch.device | str | None = None) -> torch.Tensor:
    """Normalised pixel coordinates and their motion-model basis, ``(K, H, W)``.

    ``x = (col - (W - 1) / 2) / s`` and ``y = (row - (H - 1) / 2) / s`` with ``s = max(H, W) / 2``:
    the image centre is 0 and the long side spans [-1, 1] (one scale for both axes, so an affine
    map stays affine). The basis is ``(x, y, 1)`` for the affine model and
    ``(x, y, 1, x^2, x y, y^2)`` for the quadratic one, so ``flow(u) = A @ basis(u)`` with
    ``A`` of shape ``(2, K)``. Because the coordinates are normalised, a ridge on ``A`` means the
    same thing at every image size.
    """
    if model not in NUM_BASIS:
        raise ValueError(f"model: expected 'affine' or 'quadratic', got {model!r}")
    if height < 1 or width < 1:
        raise ValueError(f"height/width: expected positive sizes, got {height}x{width}")
    s = max(height, width) / 2
    ys = (torch.arange(height, dtype=dtype, device=device) - (height - 1) / 2) / s
    xs = (torch.arange(width, dtype=dtype, device=device) - (width - 1) / 2) / s
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    basis = [x, y, torch.ones_like(x)]
    if model == "quadratic":
        basis += [x * x, x * y, y * y]
    return torch.stack(basis)


def check_inputs(masks: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``masks (B, L, H, W)`` and ``flow (B, 2, H, W)``; return both in a common dtype.

    Raises ``ValueError`` for wrong shapes, integer dtypes, and NaN or inf in the flow (callers
    must mask invalid flow explicitly, e.g. by giving those pixels zero mask weight and zero
    flow).
    """
    if not isinstance(masks, torch.Tensor) or not isinstance(flow, torch.Tensor):
        raise ValueError("masks and flow: expected torch tensors")
    if masks.ndim != 4:
        raise ValueError(f"masks: expected (B, L, H, W), got shape {tuple(masks.shape)}")
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow: expected (B, 2, H, W), got shape {tuple(flow.shape)}")
    if masks.shape[0] != flow.shape[0] or masks.shape[2:] != flow.shape[2:]:
        raise ValueError(f"masks {tuple(masks.shape)} and flow {tuple(flow.shape)}: batch and "
                         f"image size must match")
    if not (masks.is_floating_point() and flow.is_floating_point()):
        raise ValueError(f"masks and flow: expected floating point, got {masks.dtype} and "
                         f"{flow.dtype}")
    if masks.numel() == 0:
        raise ValueError(f"masks: empty tensor of shape {tuple(masks.shape)}; expected B, L, H, "
                         f"W >= 1")
    m = masks.detach()
    if not torch.isfinite(m.sum(dtype=torch.float64)) or m.min() < 0:
        raise ValueError("masks: expected finite, non-negative weights (e.g. a softmax)")
    # one pass: any NaN/inf makes the sum non-finite (summed in float64: no overflow of fp16)
    if not torch.isfinite(flow.detach().sum(dtype=torch.float64)):
        raise ValueError("flow: contains NaN or inf; give invalid pixels zero flow and zero "
                         "mask weight instead")
    dtype = torch.promote_types(masks.dtype, flow.dtype)
    return masks.to(dtype), flow.to(dtype)


@functools.lru_cache(maxsize=16)
def basis_products(height: int, width: int, model: Model, dtype: torch.dtype,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                  torch.Tensor]:
    """Cached ``(phi, products, rows, cols)`` for an image size and motion model.

    ``phi`` is the basis ``(K, N)``; ``products[i] = phi[rows[i]] * phi[cols[i]]`` holds the
    ``K(K+1)/2`` distinct entries of ``phi_u phi_u^T`` ``(P, N)``. They depend only on the image
    size, so a training loop computes them once.
    """
    phi = homogeneous_coordinates(height, width, model, dtype, device).reshape(-1, height * width)
    rows, cols = torch.triu_indices(phi.shape[0], phi.shape[0], device=device)
    return phi, phi[rows] * phi[cols], rows, cols


def _symmetric(upper: torch.Tensor, k: int, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``(..., K, K)`` symmetric matrices from their upper-triangle entries ``(..., P)``."""
    out = upper.new_zeros(*upper.shape[:-1], k, k)
    out[..., rows, cols] = upper
    out[..., cols, rows] = upper
    return out


def _normal_equations(flow: torch.Tensor, masks: torch.Tensor, model: Model):
    """``(G, R, mass, fphi)``: :func:`weighted_normal_equations` plus the ``(B, 2K, N)``
    products ``f_c phi_k`` (reused by the per-segment residuals)."""
    b, num_l, h, w = masks.shape
    n = h * w
    phi, products, rows, cols = basis_products(h, w, model, masks.dtype, masks.device)
    k = phi.shape[0]
    m = masks.reshape(b, num_l, n)
    g_upper = (m.reshape(b * num_l, n) @ products.T / n).reshape(b, num_l, -1)
    g = _symmetric(g_upper, k, rows, cols)
    fphi = (flow.reshape(b, 2, 1, n) * phi).reshape(b, 2 * k, n)  # (B, 2K, N)
    r = torch.bmm(m, fphi.transpose(1, 2)).reshape(b, num_l, 2, k) / n
    return g, r, m.mean(-1), fphi


def weighted_normal_equations(flow: torch.Tensor, masks: torch.Tensor, model: Model = "affine"
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-region sufficient statistics of weighted least squares, as pixel means.

    With basis ``phi_u`` (``K`` values), weights ``m_lu`` and ``N = H W`` pixels:

    - ``G[b, l] = (1/N) sum_u m_lu phi_u phi_u^T``  ``(B, L, K, K)``
    - ``R[b, l] = (1/N) sum_u m_lu f_u phi_u^T``    ``(B, L, 2, K)``
    - ``mass[b, l] = (1/N) sum_u m_lu``              ``(B, L)``

    Computed with one matmul for ``G`` (masks times the ``K(K+1)/2`` distinct basis products)
    and one batched matmul for ``R``; nothing of size ``(B, L, N, K, K)`` is formed.
    """
    return _normal_equations(flow, masks, model)[:3]


def solve_motion(g: torch.Tensor, r: torch.Tensor, ridge: float) -> torch.Tensor:
    """Solve ``A (G + ridge I) = R`` for every region: ``(B, L, 2, K)``.

    The ridge keeps an empty region's system invertible (its parameters shrink to 0).
    """
    eye = torch.eye(g.shape[-1], dtype=g.dtype, device=g.device)
    return torch.linalg.solve(g + ridge * eye, r.transpose(-1, -2)).transpose(-1, -2)


def predict(params: torch.Tensor, height: int, width: int, model: Model = "affine"
            ) -> torch.Tensor:
    """Flow of each region's motion model at every pixel: ``(B, L, 2, H, W)``."""
    phi = homogeneous_coordinates(height, width, model, params.dtype, params.device)
    return torch.einsum("blck,khw->blchw", params, phi)


def fit_motion(masks: torch.Tensor, flow: torch.Tensor, residual: Residual = "gaussian",
               model: Model = "affine", ridge: float = 1e-6, irls_iterations: int = 20
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
                       scale: float = 1.0, model: Model = "affine", ridge: float = 1e-6,
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

    Each region's motion ``A`` (``2 x K``) has the prior ``N(0, prior_std^2 I)`` (in pixels, per
    unit of normalised coordinate), the noise is ``N(0, sigma^2 I)`` and pixel ``u`` counts with
    weight ``m_lu``. For one flow component with ``beta = 1 / sigma^2``,
    ``alpha = 1 / prior_std^2``, ``S = alpha I + beta sum_u m_u phi_u phi_u^T``,
    ``b = beta sum_u m_u f_u phi_u`` and ``M = sum_u m_u``:

    ``log Z = -M/2 log(2 pi sigma^2) + K/2 log(alpha) - 1/2 log|S| - beta/2 sum_u m_u f_u^2
    + 1/2 b^T S^-1 b``

    (Bayesian linear regression; Bishop, PRML, sec. 3.5). Unlike the maximised likelihood it
    charges every region for the parameters it uses (the ``log|S|`` Occam factor), so it stops
    rewarding extra regions once the motion is explained.

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
    logdet = 2 * portable.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    m = masks.reshape(b, num_l, n)
    fsq = torch.bmm(m, flow.reshape(b, 2, n).pow(2).sum(1, keepdim=True).transpose(1, 2))[..., 0]
    mass_px = mass * n
    terms = (-mass_px * math.log(2 * math.pi * sigma**2)  # two components, M/2 each
             + k * math.log(alpha) - logdet - beta / 2 * fsq + 0.5 * quad)
    return terms if per_region else terms.sum(-1)
