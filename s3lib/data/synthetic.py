"""Synthetic flow fields with known regions, for notebooks 01-03.

:func:`piecewise_affine_flow` makes a field where each region moves by its own affine (or
quadratic) motion, with the true label map; :func:`add_flow_noise` corrupts it the way
estimated flow is corrupted (smooth, spatially correlated errors, blurred motion boundaries,
outliers). Explained in ``notebooks/01_grouping_model.ipynb``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..grouping import Model, homogeneous_coordinates


@dataclass
class SyntheticFlow:
    """A flow field ``flow (2, H, W)`` (pixels), its regions ``labels (H, W)`` int64 (0..R-1)
    and each region's motion ``params (R, 2, K)`` in normalised coordinates."""

    flow: torch.Tensor
    labels: torch.Tensor
    params: torch.Tensor


def region_layout(size: int, num_regions: int = 3, seed: int = 0) -> torch.Tensor:
    """A label map ``(size, size)``: background 0 and ``num_regions - 1`` random ellipses and
    rectangles drawn on top (later shapes occlude earlier ones, like objects in a scene)."""
    if size < 1 or num_regions < 1:
        raise ValueError(f"size and num_regions: expected positive ints, got {size}, {num_regions}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    labels = np.zeros((size, size), np.int64)
    for r in range(1, num_regions):
        for _ in range(100):  # redraw until the shape is visible enough
            cx, cy = rng.uniform(0.2, 0.8, 2)
            ax, ay = rng.uniform(0.15, 0.35, 2)
            if rng.random() < 0.5:
                inside = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1
            else:
                inside = (np.abs(xx - cx) <= ax * 0.8) & (np.abs(yy - cy) <= ay * 0.8)
            trial = np.where(inside, r, labels)
            if all((trial == k).mean() > 0.04 for k in range(r + 1)):
                labels = trial
                break
    return torch.from_numpy(labels)


def piecewise_affine_flow(size: int = 64, num_regions: int = 3, seed: int = 0,
                          max_motion: float = 3.0, model: Model = "affine",
                          deformation: float = 1.0,
                          dtype: torch.dtype = torch.float32) -> SyntheticFlow:
    """A flow field made of ``num_regions`` regions, each moving by its own random motion.

    Each region's parameters are drawn so that its flow stays within about ``max_motion``
    pixels (translation, rotation, scaling and shear mixed); regions are made to differ from
    one another by at least ``max_motion / 3`` px on average, so every region is visible in
    the flow. ``deformation`` scales the non-translation coefficients: 0 gives pure
    translations (one speed per region, the case the entropy loss of notebook 03 is made for).
    """
    labels = region_layout(size, num_regions, seed)
    gen = torch.Generator().manual_seed(seed + 1000)
    phi = homogeneous_coordinates(size, size, model, torch.float64)
    k = phi.shape[0]
    params = []
    for r in range(num_regions):
        for _ in range(200):
            a = (torch.rand(2, k, generator=gen, dtype=torch.float64) * 2 - 1) * max_motion / 2
            a[:, :2] *= deformation
            a[:, 3:] *= deformation
            if deformation < 1:  # keep the regions apart through their translations
                a[:, 2] *= 1.5
            field = torch.einsum("ck,khw->chw", a, phi)
            far = all((field - torch.einsum("ck,khw->chw", p, phi)).norm(dim=0).mean()
                      > max_motion / 3 for p in params)
            if far and field.norm(dim=0).max() <= max_motion * 1.5:
                break
        params.append(a)
    params = torch.stack(params)
    all_fields = torch.einsum("rck,khw->rchw", params, phi)
    flow = torch.gather(all_fields, 0, labels[None, None].expand(1, 2, size, size))[0]
    return SyntheticFlow(flow.to(dtype), labels, params.to(dtype))


def add_flow_noise(flow: torch.Tensor, level: float, seed: int = 0,
                   outliers: float = 0.02) -> torch.Tensor:
    """Corrupt a flow field ``(2, H, W)`` like an estimated one, with strength ``level`` (px).

    Three kinds of error, as flow estimators make them: a smooth, spatially correlated error
    (Gaussian noise blurred over ~4 px, std ``level``), blurred motion boundaries (the field is
    averaged over a ``2r+1`` window, ``r = round(min(level, 3))``: no blur below 0.5 px), and a
    fraction ``outliers`` of pixels (scaled by ``min(level, 1)``) replaced by random vectors of
    up to ``3 level + 1`` px.
    ``level = 0`` returns the flow unchanged.
    """
    if not (isinstance(flow, torch.Tensor) and flow.ndim == 3 and flow.shape[0] == 2):
        raise ValueError(f"flow: expected a (2, H, W) tensor, got "
                         f"{tuple(flow.shape) if isinstance(flow, torch.Tensor) else type(flow)}")
    if not (level >= 0 and math.isfinite(level)):  # also rejects NaN
        raise ValueError(f"level: expected a finite, non-negative noise level in pixels, got {level}")
    if level > 0 and min(flow.shape[1:]) < 7:
        raise ValueError(f"flow: at least 7x7 pixels needed for the noise blur, got "
                         f"{tuple(flow.shape[1:])}")
    if level == 0:
        return flow.clone()
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    _, h, w = flow.shape
    x = flow[None].to(torch.float64)
    radius = int(round(min(level, 3.0)))
    if radius > 0:  # boundary blur
        x = F.avg_pool2d(F.pad(x, (radius,) * 4, mode="replicate"), 2 * radius + 1, stride=1)
    noise = torch.randn(1, 2, h, w, generator=gen, dtype=torch.float64)
    kernel = torch.exp(-torch.arange(-6, 7, dtype=torch.float64) ** 2 / (2 * 2.0**2))
    kernel = kernel / kernel.sum()
    for dim in (2, 3):  # separable Gaussian blur, sigma 2 px
        shape = [1, 1, 1, 1]
        shape[dim] = -1
        noise = F.conv2d(F.pad(noise, (6, 6, 0, 0) if dim == 3 else (0, 0, 6, 6), mode="reflect"),
                         kernel.reshape(shape).expand(2, 1, *shape[2:]), groups=2)
    noise = noise / noise.std() * level
    x = x + noise
    bad = torch.rand(1, 1, h, w, generator=gen, dtype=torch.float64) < outliers * min(level, 1.0)
    wild = (torch.rand(1, 2, h, w, generator=gen, dtype=torch.float64) * 2 - 1) * (3 * level + 1)
    x = torch.where(bad, wild, x)
    return x[0].to(flow.dtype)


def relabel(labels: torch.Tensor, num_segments: int) -> torch.Tensor:
    """A segmentation of the same image with ``num_segments`` labels, made from ``labels``.

    Fewer segments than regions: the highest labels are merged into label 0 (the background);
    more: the largest segment is split in two at its median column, repeatedly. Used to score
    under- and over-segmentations against the true one (notebook 01).
    """
    if num_segments < 1:
        raise ValueError(f"num_segments: expected >= 1, got {num_segments}")
    out = labels.clone()
    present = int(out.max()) + 1
    if num_segments < present:
        out[out >= num_segments] = 0
    for new in range(present, num_segments):
        counts = torch.bincount(out.flatten(), minlength=new)
        big = int(counts.argmax())
        cols = torch.nonzero(out == big)[:, 1]
        cut = int(cols.float().median())
        out[(out == big) & (torch.arange(out.shape[1]) > cut)] = new
    return out
