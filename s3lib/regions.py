"""Hand-made segmentations that notebooks 00, 01 and 03 share.

- :func:`otsu_speed_split`: still / moving pixels split at Otsu's threshold on the speed
  ``|f_u|`` (``00_overview``, ``01_grouping_model``, ``03_entropy_motion_loss``);
- :func:`blur_masks`: soft masks made from hard ones by a Gaussian blur that keeps
  ``sum_l m_lu = 1`` (``01_grouping_model``, section 3);
- :func:`strip_cuts` and :func:`strip_masks`: vertical strips, the segmentations the boundary
  explorer of ``01_grouping_model`` scores with ``L = 1, 2, ...`` segments.

One-hot masks of a label map are :func:`s3lib.analysis.one_hot`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch


def _speed(flow: np.ndarray | torch.Tensor) -> np.ndarray:
    """``|f_u|`` as a float64 NumPy ``(H, W)`` of NumPy ``(H, W, 2)`` or torch ``(2, H, W)`` /
    ``(1, 2, H, W)`` flow (the course's two layouts, as :func:`s3lib.viz.show_flow`)."""
    if isinstance(flow, torch.Tensor):
        f = flow.detach().cpu().double()
        if f.ndim == 4 and f.shape[0] == 1:
            f = f[0]
        if f.ndim != 3 or f.shape[0] != 2:
            raise ValueError(f"flow: expected a torch (2, H, W) or (1, 2, H, W) field, got "
                             f"{tuple(flow.shape)}")
        speed = torch.linalg.vector_norm(f, dim=0).numpy()
    elif isinstance(flow, np.ndarray):
        if flow.ndim != 3 or flow.shape[-1] != 2:
            raise ValueError(f"flow: expected a NumPy (H, W, 2) field, got {flow.shape}")
        speed = np.hypot(flow[..., 0].astype(np.float64), flow[..., 1].astype(np.float64))
    else:
        raise ValueError(f"flow: expected a NumPy (H, W, 2) or torch (2, H, W) array, got "
                         f"{type(flow).__name__}")
    if not np.isfinite(speed).all():
        raise ValueError("flow: contains NaN or inf")
    return speed


def otsu_speed_split(flow: np.ndarray | torch.Tensor
                     ) -> tuple[float, np.ndarray | torch.Tensor]:
    """Split the pixels into still and moving ones at Otsu's threshold on the speed.

    The speed ``v_u = |f_u|`` is scaled by its maximum to ``0..255`` and truncated to 256 grey
    levels (``uint8``), as OpenCV's ``cv2.threshold(..., cv2.THRESH_BINARY + cv2.THRESH_OTSU)``
    needs; Otsu's method picks the level ``t`` that maximises the between-class variance of
    that 256-level histogram. The threshold in pixels is ``t / 255 * max_u v_u`` (so it is
    known to a step of ``max_u v_u / 255``), and a pixel is moving when its (unquantised) speed
    is above it. Explained in ``notebooks/00_overview.ipynb``, section 8.

    Args:
        flow: NumPy ``(H, W, 2)`` (as :func:`s3lib.flow.estimate_flow` returns it) or torch
            ``(2, H, W)`` / ``(1, 2, H, W)``, pixels.

    Returns:
        ``(threshold, moving)``: the threshold in pixels and the moving mask ``(H, W)`` bool,
        NumPy for NumPy flow and torch for torch flow. A still field (all speeds 0) gives
        ``(0.0, all False)``.

    Raises:
        ValueError: ``flow`` has another shape or type, or holds NaN/inf.
    """
    import cv2

    speed = _speed(flow)
    top = float(speed.max())
    if top > 0:
        speed8 = np.clip(speed / top * 255, 0, 255).astype(np.uint8)
        level, _ = cv2.threshold(speed8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        threshold = float(level) / 255 * top
    else:
        threshold = 0.0
    moving = speed > threshold
    if isinstance(flow, torch.Tensor):
        return threshold, torch.from_numpy(moving).to(flow.device)
    return threshold, moving


def _gaussian_kernel(width: float, dtype: torch.dtype) -> torch.Tensor:
    """Normalised 1-D Gaussian of std ``width``, radius ``round(3 width)`` (SciPy's
    ``truncate=3``)."""
    radius = int(3.0 * width + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-x**2 / (2 * width**2))
    return (k / k.sum()).to(dtype)


def blur_masks(masks: torch.Tensor, width: float) -> torch.Tensor:
    """Soft masks ``(B, L, H, W)``: each segment's mask blurred by a Gaussian of std ``width``.

    Separable: a 1-D Gaussian of radius ``round(3 width)`` pixels along the rows, then along the
    columns, the image edges padded by repeating the border pixel (SciPy's
    ``gaussian_filter(..., mode="nearest", truncate=3)`` per segment). A blur is linear and
    keeps a constant image constant, so masks that sum to 1 over ``L`` at every pixel still do:
    hard segments become soft ones that share the pixels near each boundary. ``width = 0``
    returns ``masks`` unchanged. Explained in ``notebooks/01_grouping_model.ipynb``, section 3.

    Args:
        masks: ``(B, L, H, W)`` float segments. width: the blur's std in pixels (>= 0).

    Raises:
        ValueError: ``masks`` is not a 4-D float tensor, or ``width`` is negative or not finite.
    """
    if not isinstance(masks, torch.Tensor) or masks.ndim != 4 or not masks.is_floating_point():
        raise ValueError(f"masks: expected a float (B, L, H, W) tensor, got "
                         f"{getattr(masks, 'dtype', type(masks).__name__)} "
                         f"{tuple(getattr(masks, 'shape', ()))}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) \
            or width < 0:
        raise ValueError(f"width: expected a finite std >= 0 in pixels, got {width!r}")
    if width == 0:
        return masks
    import torch.nn.functional as F

    k = _gaussian_kernel(float(width), masks.dtype).to(masks.device)
    c, r = masks.shape[1], len(k) // 2
    out = F.conv2d(F.pad(masks, (r, r, 0, 0), mode="replicate"),
                   k.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(out, (0, 0, r, r), mode="replicate"),
                    k.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def strip_cuts(first: int, size: int, num_segments: int) -> list[int]:
    """The cut columns of ``num_segments`` vertical strips of an image ``size`` pixels wide.

    The first cut is at column ``first``; each further one halves the widest strip (the
    leftmost of equally wide ones; its middle rounded down). ``num_segments = 1``: no cut.
    Returns the cuts sorted, ``num_segments - 1`` of them; used by the boundary explorer of
    ``notebooks/01_grouping_model.ipynb``.

    Raises:
        ValueError: ``not 0 < first < size``, or ``num_segments`` is not in ``1..size``.
    """
    if isinstance(num_segments, bool) or not isinstance(num_segments, (int, np.integer)) \
            or not 1 <= num_segments <= size:
        raise ValueError(f"num_segments: expected an int in [1, {size}], got {num_segments!r}")
    if not 0 < first < size:
        raise ValueError(f"first: expected a column with 0 < first < size={size}, got {first!r}")
    if num_segments == 1:
        return []
    cuts = [int(first)]
    while len(cuts) < num_segments - 1:
        edges = [0, *sorted(cuts), size]
        widths = np.diff(edges)
        i = int(np.argmax(widths))
        cuts.append(int(edges[i] + widths[i] // 2))
    return sorted(cuts)


def strip_masks(size: int, cut_sets: Sequence[Sequence[int]], softness: float = 0.0,
                dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Vertical-strip segmentations ``(P, L, size, size)`` of a square image, one per cut set.

    Cut set ``p`` holds ``L - 1`` columns ``c_1 < ... < c_{L-1}``; segment ``l`` is the strip
    between ``c_l`` and ``c_{l+1}`` (segment 0 on the left). With ``r_l(x) =
    sigmoid((x - c_l) / softness)`` at the pixel centres ``x = column + 1/2`` (a step for
    ``softness = 0``), ``r_0 = 1`` and ``r_L = 0``, the masks are ``m_l = r_l - r_{l+1}``: non-
    negative and summing to 1. With one cut they are
    :func:`s3lib.analysis.boundary_masks`. Explained in ``notebooks/01_grouping_model.ipynb``.

    Args:
        size: image side (pixels). cut_sets: ``P`` sequences of ``L - 1`` cuts each (``[]``:
            one segment). softness: width of each ramp in pixels (>= 0).

    Raises:
        ValueError: no cut sets, sets of different lengths, cuts not strictly increasing
            inside ``(0, size)``, or a negative softness.
    """
    sets = [list(c) for c in cut_sets]
    if not sets or len({len(c) for c in sets}) != 1:
        raise ValueError(f"cut_sets: expected one or more cut lists of equal length, got {sets!r}")
    for cuts in sets:
        if any(not 0 < c < size for c in cuts) or any(b <= a for a, b in zip(cuts, cuts[1:])):
            raise ValueError(f"cut_sets: expected increasing cuts in (0, {size}), got {cuts!r}")
    if not softness >= 0:
        raise ValueError(f"softness: expected a width >= 0 in pixels, got {softness!r}")
    x = torch.arange(size, dtype=torch.float64) + 0.5
    cuts = torch.tensor(sets, dtype=torch.float64).reshape(len(sets), -1, 1)  # (P, L-1, 1)
    ramps = (torch.sigmoid((x - cuts) / softness) if softness > 0
             else (x > cuts).to(torch.float64))  # (P, L-1, W)
    p = len(sets)
    ones, zeros = torch.ones(p, 1, size, dtype=torch.float64), torch.zeros(p, 1, size,
                                                                          dtype=torch.float64)
    r = torch.cat([ones, ramps, zeros], 1)  # (P, L+1, W)
    m = (r[:, :-1] - r[:, 1:]).clamp_min(0)
    return m[:, :, None, :].expand(-1, -1, size, -1).to(dtype)


__all__ = ["blur_masks", "otsu_speed_split", "strip_cuts", "strip_masks"]
