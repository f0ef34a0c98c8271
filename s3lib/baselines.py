"""Segmentations that use no motion, to give a network's scores their context (notebook 04).

:func:`colour_kmeans` clusters each image's pixels by colour alone (k-means in RGB, or in a
hue-saturation-value space where hue is an angle); :func:`foreground_split` is the answer of a
perfect cube/background split that finds no face. A network trained by motion should beat both:
the first shows how far colour alone gets, the second what finding the object without its
parts is worth. Explained in ``notebooks/04_cube_toy.ipynb``, section 4.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
import torch

ColourSpace = Literal["rgb", "hsv"]
COLOUR_SPACES: tuple[str, ...] = ("rgb", "hsv")


def colour_features(image: torch.Tensor, space: ColourSpace = "rgb") -> np.ndarray:
    """Per-pixel colour features of ``image (3, H, W)`` in [0, 1]: ``(H*W, 3)`` float32.

    ``"rgb"``: the values themselves. ``"hsv"``: ``(s cos h, s sin h, v)``, hue ``h`` as an
    angle weighted by the saturation ``s`` (so hue distances wrap around the colour wheel and
    grey pixels have no hue), and the value ``v``.
    """
    if space not in COLOUR_SPACES:
        raise ValueError(f"space: expected one of {COLOUR_SPACES}, got {space!r}")
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image: expected (3, H, W), got {tuple(image.shape)}")
    rgb = image.detach().cpu().permute(1, 2, 0).numpy().astype(np.float32)
    if space == "hsv":
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)  # h in degrees, s and v in [0, 1]
        angle = np.deg2rad(hsv[..., 0])
        rgb = np.stack([hsv[..., 1] * np.cos(angle), hsv[..., 1] * np.sin(angle), hsv[..., 2]], -1)
    return rgb.reshape(-1, 3).astype(np.float32)


def colour_kmeans(images: torch.Tensor, k: int, space: ColourSpace = "rgb", seed: int = 0,
                  attempts: int = 5) -> torch.Tensor:
    """Cluster every image's pixels by colour alone: ``images (N, 3, H, W)`` -> ``(N, H, W)``
    int64 cluster labels in ``[0, k)``.

    OpenCV's k-means (k-means++ starts, the best of ``attempts``), seeded by ``seed`` so the
    result repeats; each image is clustered on its own, as a segmentation network sees one image.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected an int >= 1, got {k!r}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected (N, 3, H, W), got {tuple(images.shape)}")
    n, _, h, w = images.shape
    cv2.setRNGSeed(int(seed))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-4)
    out = torch.empty(n, h, w, dtype=torch.int64)
    for i in range(n):
        data = colour_features(images[i], space)
        _, labels, _ = cv2.kmeans(data, k, None, criteria, attempts, cv2.KMEANS_PP_CENTERS)
        out[i] = torch.from_numpy(labels.reshape(h, w).astype(np.int64))
    return out


def foreground_split(labels: torch.Tensor) -> torch.Tensor:
    """The perfect object/background split of true ``labels (..., H, W)`` (0 = background):
    1 on every object pixel, whatever part it belongs to."""
    return (labels > 0).long()


__all__ = ["colour_features", "colour_kmeans", "foreground_split", "COLOUR_SPACES"]
