"""Apply a trained network to new pictures: ``s3 segment`` and the notebooks' galleries.

:func:`segment_images` runs a checkpoint on images ``(N, 3, H, W)``; :func:`contact_sheet`
lays frames out with their segments (frame above, segments overlaid below);
:func:`segment_to_png` does both for an image file or for frames spread over a video.
Used in ``notebooks/05_sintel.ipynb`` and ``notebooks/06_real_video_entropy.ipynb``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .models import SegmentationNet, load_checkpoint
from .models import predict_masks
from .viz import colorize_labels, overlay

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def checkpoint_size(config: dict) -> tuple[int, int]:
    """The ``(H, W)`` a checkpoint was trained at (``size`` is an int for the cube)."""
    size = config["size"]
    return (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))


def _fit4(hw: tuple[int, int]) -> tuple[int, int]:
    return max(8, hw[0] - hw[0] % 4), max(8, hw[1] - hw[1] % 4)


def segment_images(model: SegmentationNet, images: torch.Tensor) -> torch.Tensor:
    """Hard segments ``(N, H, W)`` int64 of ``images (N, 3, H, W)`` (argmax of the soft ones)."""
    return predict_masks(model, images).argmax(1)


def contact_sheet(frames: np.ndarray, labels: np.ndarray, num_segments: int,
                  alpha: float = 0.6, gap: int = 2) -> np.ndarray:
    """Frames ``(N, H, W, 3)`` uint8 in a row, their segments ``(N, H, W)`` overlaid below:
    ``(2 H + gap, N W + (N - 1) gap, 3)`` uint8 on white."""
    n, h, w, _ = frames.shape
    sheet = np.full((2 * h + gap, n * w + (n - 1) * gap, 3), 255, np.uint8)
    for i in range(n):
        x = i * (w + gap)
        sheet[:h, x:x + w] = frames[i]
        col = colorize_labels(labels[i], num_segments)
        sheet[h + gap:, x:x + w] = overlay(frames[i], col, alpha)
    return sheet


def _read_input(path_or_clip: str | os.PathLike, frames: int,
                size_wh: tuple[int, int]) -> tuple[np.ndarray, list[int]]:
    """``(N, H, W, 3)`` uint8 RGB frames of an image file or spread over a video, resized."""
    import cv2

    from .data.clips import read_frames

    p = Path(path_or_clip)
    if p.suffix.lower() in IMAGE_SUFFIXES:
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such image")
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{p}: OpenCV cannot read this image (corrupt or not an image)")
        rgb = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size_wh,
                         interpolation=cv2.INTER_AREA)
        return rgb[None], [0]
    if frames < 1:
        raise ValueError(f"frames: expected >= 1, got {frames}")
    video = read_frames(path_or_clip, size=size_wh)
    picks = np.unique(np.linspace(0, len(video) - 1, frames).round().astype(int)).tolist()
    return video[picks], picks


def segment_to_png(checkpoint: str | os.PathLike, input: str | os.PathLike,
                   out: str | os.PathLike, frames: int = 8,
                   size: tuple[int, int] | None = None) -> str:
    """``s3 segment``: colour the segments of an image, or of ``frames`` frames spread evenly
    over a video, and write a contact sheet to ``out`` (``.png``). ``size`` ``(W, H)``: resize
    to it (default: the checkpoint's training size). Returns a one-line summary."""
    import cv2

    from ._io import atomic_write

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out {out}: expected a .png file name")
    model, config = load_checkpoint(checkpoint)
    h, w = _fit4((size[1], size[0]) if size is not None else checkpoint_size(config))
    pictures, picks = _read_input(input, frames, (w, h))
    images = torch.from_numpy(pictures).permute(0, 3, 1, 2).float() / 255.0
    labels = segment_images(model, images).numpy()
    sheet = contact_sheet(pictures, labels, config["num_segments"])
    ok, png = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"{out}: could not encode the picture")
    with atomic_write(out) as fh:
        fh.write(png.tobytes())
    shares = np.bincount(labels.ravel(), minlength=config["num_segments"]) / labels.size
    return (f"{out}: {len(picks)} frame(s) {picks} of {input} at {w}x{h}, segment shares "
            + " ".join(f"{s:.2f}" for s in shares))
