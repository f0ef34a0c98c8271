"""Per-segment motion models: basis, weighted normal equations, solve, residuals.

Everything that fits a parametric motion to the pixels of a (soft) segment lives here, and both
the likelihoods of eq. (1)-(2) (:mod:`s3lib.grouping`) and the motion losses
(:mod:`s3lib.losses`) call it. A segment ``l`` with weights ``m_lu`` has the motion
``flow_l(u) = A_l phi_u`` with ``A_l`` of shape ``(2, K)`` and the basis ``phi_u`` of normalised
coordinates (:func:`homogeneous_coordinates`); weighted least squares gives ``A_l`` in closed
form from two pixel-mean statistics (:func:`weighted_normal_equations`, :func:`solve_motion`).

Shapes: flow ``(B, 2, H, W)`` in pixels; masks ``(B, L, H, W)``; motion parameters
``(B, L, 2, K)`` with ``K = 3`` (affine) or ``6`` (quadratic). Explained in
``notebooks/01_grouping_model.ipynb`` (the model) and ``02_affine_motion_loss.ipynb`` (the fit
inside the forward pass).
"""

from __future__ import annotations

import functools
from typing import Literal

import torch

Model = Literal["affine", "quadratic"]

NUM_BASIS = {"affine": 3, "quadratic": 6}

DEFAULT_EPS = 1e-6
"""The ridge of every weighted least-squares fit (:func:`fit`, and so of every loss, score and
widget), relative to pixel-mean statistics. Chosen by measurement (``benchmarks/ridge.py``,
checked by ``tests/test_motion.py``): on random soft masks the float32 fit then agrees with
unregularised weighted least squares to 2.5e-5 relative at worst (2.5e-3 with 1e-4), a compact
face of 60 of 64x64 pixels keeps 98.6% of its slope (54.6% with 1e-4), and an empty segment's
system stays invertible (its motion shrinks to zero). The larger ridge made the loss rank a
worse cube segmentation above a better one (notebook 04)."""


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


def symmetric(upper: torch.Tensor, k: int, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``(..., K, K)`` symmetric matrices from their upper-triangle entries ``(..., P)``."""
    out = upper.new_zeros(*upper.shape[:-1], k, k)
    out[..., rows, cols] = upper
    out[..., cols, rows] = upper
    return out


def normal_equations(flow: torch.Tensor, masks: torch.Tensor, model: Model = "affine"
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(G, R, mass, fphi)``: :func:`weighted_normal_equations` plus the ``(B, 2K, N)``
    products ``f_c phi_k`` (reused by :func:`squared_residuals`). Inputs already checked."""
    b, num_l, h, w = masks.shape
    n = h * w
    phi, products, rows, cols = basis_products(h, w, model, masks.dtype, masks.device)
    k = phi.shape[0]
    m = masks.reshape(b, num_l, n)
    g_upper = (m.reshape(b * num_l, n) @ products.T / n).reshape(b, num_l, -1)
    g = symmetric(g_upper, k, rows, cols)
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
    return normal_equations(flow, masks, model)[:3]


def solve_motion(g: torch.Tensor, r: torch.Tensor, ridge: float = DEFAULT_EPS) -> torch.Tensor:
    """Solve ``A (G + ridge I) = R`` for every region: ``(B, L, 2, K)``.

    The ridge keeps an empty region's system invertible (its parameters shrink to 0).
    """
    if not ridge > 0:
        raise ValueError(f"eps: expected a positive ridge, got {ridge!r}")
    eye = torch.eye(g.shape[-1], dtype=g.dtype, device=g.device)
    return torch.linalg.solve(g + ridge * eye, r.transpose(-1, -2)).transpose(-1, -2)


def fit(flow: torch.Tensor, masks: torch.Tensor, eps: float = DEFAULT_EPS,
        model: Model = "affine") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(A, fphi, G)``: the weighted least-squares motion of every segment of checked inputs,
    the products ``f_c phi_k`` and the Gram matrices (see :func:`s3lib.losses.fit_affine`)."""
    g, r, _, fphi = normal_equations(flow, masks, model)
    return solve_motion(g, r, eps), fphi, g


def predict(params: torch.Tensor, height: int, width: int, model: Model = "affine"
            ) -> torch.Tensor:
    """Flow of each region's motion model at every pixel: ``(B, L, 2, H, W)``."""
    phi = homogeneous_coordinates(height, width, model, params.dtype, params.device)
    return torch.einsum("blck,khw->blchw", params, phi)


def blend(params: torch.Tensor, masks: torch.Tensor, model: Model = "affine") -> torch.Tensor:
    """``sum_l m_lu A_l phi_u`` via per-pixel blended coefficients: ``(B, 2, H, W)``."""
    b, num_l, h, w = masks.shape
    k = params.shape[-1]
    phi = basis_products(h, w, model, masks.dtype, masks.device)[0]
    coeff = torch.bmm(params.reshape(b, num_l, 2 * k).transpose(1, 2),
                      masks.reshape(b, num_l, h * w))  # (B, 2K, N): each pixel's own 2 x K map
    return (coeff.reshape(b, 2, k, h * w) * phi).sum(2).reshape(b, 2, h, w)


def squared_residuals(params: torch.Tensor, flow: torch.Tensor, model: Model = "affine",
                      fphi: torch.Tensor | None = None, offset: float = 0.0) -> torch.Tensor:
    """``|f_u - A_l phi_u|^2 (+ offset)`` for every segment and pixel: ``(B, L, H*W)``, >= offset.

    Expanded as ``|f_u|^2 - 2 <A_l, f_u phi_u^T> + phi_u^T A_l^T A_l phi_u``: two batched
    matrix products of small per-segment coefficients (``-2 A_l`` and the distinct entries of
    ``A_l^T A_l``) with per-pixel products that do not depend on the segment (``f_c phi_k`` and
    ``phi_j phi_k``, cached per image size). Nothing of size ``(B, L, 2, N)`` is formed, which
    makes the per-segment loss about as cheap as the blended one. The expansion loses precision
    in proportion to ``|f|^2``, so the image's mean flow ``t`` is taken out first (``f - t``
    against ``A - [0 0 t]``, the constant basis function being 1), and rounding below zero is
    clamped.

    Args:
        params: ``(B, L, 2, K)``. flow: ``(B, 2, H, W)``.
        fphi: the ``(B, 2K, N)`` products ``f_c phi_k`` of the uncentred flow, if already built.
        offset: a constant added after clamping (Charbonnier's ``delta^2``).
    """
    h, w = flow.shape[-2:]
    basis = basis_products(h, w, model, flow.dtype, flow.device)
    centred, fphi_c, flow_sq = centre(params, flow, fphi, basis[0])
    return expanded_squares(centred, fphi_c, flow_sq, basis).clamp_min(0) + offset


def centre(params: torch.Tensor, flow: torch.Tensor, fphi: torch.Tensor | None,
           phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(A - [0 0 t], (f - t) phi^T products (B, 2K, N), |f - t|^2 (B, 1, N))``, t = mean flow."""
    b, num_l, _, k = params.shape
    n = phi.shape[-1]
    f = flow.reshape(b, 2, n)
    t = f.mean(-1, keepdim=True)  # (B, 2, 1)
    if fphi is None:
        fphi = (f[:, :, None] * phi).reshape(b, 2 * k, n)
    fphi_c = fphi - (t[:, :, None] * phi).reshape(b, 2 * k, n)
    shift = torch.zeros_like(params)
    shift[..., 2] = t[:, None, :, 0]  # column 2 multiplies the constant basis function
    return params - shift, fphi_c, (f - t).pow(2).sum(1, keepdim=True)


def expanded_squares(params: torch.Tensor, fphi: torch.Tensor, flow_sq: torch.Tensor,
                     basis: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``|f|^2 - 2 <A, f phi^T> + phi^T A^T A phi`` as two ``baddbmm`` calls: ``(B, L, N)``."""
    _, products, rows, cols = basis
    b, num_l, _, k = params.shape
    sq = torch.baddbmm(flow_sq, params.reshape(b, num_l, 2 * k), fphi, alpha=-2.0)
    ata = params.transpose(-1, -2) @ params  # (B, L, K, K)
    twice = torch.where(rows == cols, 1.0, 2.0).to(params.dtype)
    return torch.baddbmm(sq, ata[..., rows, cols] * twice, products.expand(b, -1, -1))


def segment_residuals(params: torch.Tensor, flow: torch.Tensor, model: Model = "affine"
                      ) -> torch.Tensor:
    """``|f_u - A_l phi_u|`` in pixels for every segment and pixel: ``(B, L, H, W)``."""
    b, num_l = params.shape[:2]
    h, w = flow.shape[-2:]
    return squared_residuals(params, flow, model).sqrt().reshape(b, num_l, h, w)


__all__ = ["DEFAULT_EPS", "Model", "NUM_BASIS", "homogeneous_coordinates", "check_inputs",
           "basis_products", "weighted_normal_equations", "solve_motion", "fit", "predict",
           "blend", "squared_residuals", "segment_residuals"]
