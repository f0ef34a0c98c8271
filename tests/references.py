"""Straightforward reference implementations shared by the tests (written from the docs)."""

from __future__ import annotations

import numpy as np


def ref_basis(h: int, w: int, model: str = "affine") -> np.ndarray:
    """(K, H, W) float64 motion basis from the documented formula, pixel by pixel:
    x = (col - (W-1)/2) / s, y = (row - (H-1)/2) / s, s = max(H, W)/2; (x, y, 1[, x^2, xy, y^2])."""
    s = max(h, w) / 2.0
    out = np.zeros((3 if model == "affine" else 6, h, w))
    for row in range(h):
        for col in range(w):
            x = (col - (w - 1) / 2.0) / s
            y = (row - (h - 1) / 2.0) / s
            quad = [x * x, x * y, y * y] if model == "quadratic" else []
            out[:, row, col] = [x, y, 1.0] + quad
    return out
