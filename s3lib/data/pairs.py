"""Training data as frame pairs held in memory: images, forward flow and (for the cube) labels.

One small container, :class:`FlowPairs`, for every data source the training loop knows:

- :func:`cube_pairs`: the rendered cube sequences (exact flow, face labels; notebook 04);
- :func:`video_pairs`: caches written by ``s3 prepare-video`` (estimated flow; notebooks 05-06),
  split into training and held-out frames by :func:`s3lib.data.video.split_pairs`;
- :func:`sintel_pairs`: MPI-Sintel's training scenes, resized (ground-truth flow; notebook 05).

:func:`load_pairs` picks one from a ``--data`` argument. The network needs sides that are
multiples of 4, so video and Sintel pairs are centre-cropped to the nearest multiple.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .cube import HELDOUT_SEEDS, TRAIN_SEEDS, render_cube_sequence

SINTEL_HELDOUT_SCENES = 3
"""Sintel: the last scenes (sorted by name) held out; the paper trains on 20 of the 23."""


@dataclass
class FlowPairs:
    """``images (N, 3, H, W)`` float32 in [0, 1], ``flows (N, 2, H, W)`` forward flow (pixels)
    from each image to the next frame of its clip, optional ``labels (N, H, W)`` int64, and a
    ``source`` name per pair (e.g. ``"bikes:42"``)."""

    images: torch.Tensor
    flows: torch.Tensor
    labels: torch.Tensor | None = None
    source: list[str] | None = None

    def __post_init__(self) -> None:
        n, _, h, w = self.images.shape
        if self.flows.shape != (n, 2, h, w):
            raise ValueError(f"flows: expected {(n, 2, h, w)}, got {tuple(self.flows.shape)}")
        if self.labels is not None and self.labels.shape != (n, h, w):
            raise ValueError(f"labels: expected {(n, h, w)}, got {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the images."""
        return tuple(self.images.shape[-2:])


def _crop4(pairs: FlowPairs) -> FlowPairs:
    """Centre-crop to sides that are multiples of 4 (what the U-Net needs)."""
    h, w = pairs.size
    h4, w4 = h - h % 4, w - w % 4
    if (h4, w4) == (h, w):
        return pairs
    top, left = (h - h4) // 2, (w - w4) // 2
    cut = lambda x: None if x is None else x[..., top:top + h4, left:left + w4].contiguous()  # noqa: E731
    return FlowPairs(cut(pairs.images), cut(pairs.flows), cut(pairs.labels), pairs.source)


def cube_pairs(seeds=TRAIN_SEEDS, size: int = 64, frames: int = 99, gap: int = 1) -> FlowPairs:
    """The frame pairs ``(t, t + gap)`` of the cube sequences ``seeds`` (``frames`` frames each)
    with their exact flow and frame ``t``'s face labels (``(frames - gap) * len(seeds)`` pairs).
    A larger ``gap`` gives larger motions, still exactly affine on each face (notebook 04)."""
    seqs = [render_cube_sequence(frames, size, s, gap=gap) for s in seeds]
    return FlowPairs(torch.cat([q.frames[:-gap] for q in seqs]),
                     torch.cat([q.flows for q in seqs]),
                     torch.cat([q.labels[:-gap] for q in seqs]),
                     [f"cube{q.seed}:{t}" for q in seqs for t in range(frames - gap)])


def heldout_cube_pairs(size: int = 64, frames: int = 25) -> FlowPairs:
    """The held-out cube sequences (:data:`s3lib.data.cube.HELDOUT_SEEDS`)."""
    return cube_pairs(HELDOUT_SEEDS, size, frames)


def video_pairs(caches, split: str = "train") -> FlowPairs:
    """All pairs of ``split`` (``"train"``, ``"heldout"`` or ``"all"``) of prepare-video caches
    (a cache folder, a folder of caches, or a list), as tensors."""
    from .video import VideoFlowDataset

    ds = VideoFlowDataset(caches, frames=split)
    if len(ds) == 0:
        raise ValueError(f"{caches}: no {split} frame pairs (is the clip long enough?)")
    if len(set(ds.sizes)) > 1:
        raise ValueError(f"{caches}: videos of different sizes {sorted(set(ds.sizes))}; prepare "
                         f"them with one --size")
    items = [ds[i] for i in range(len(ds))]
    return _crop4(FlowPairs(torch.stack([it["image1"] for it in items]),
                            torch.stack([it["flow"] for it in items]), None,
                            [f"{it['video']}:{it['frame']}" for it in items]))


def _resize(x: torch.Tensor, size: tuple[int, int], flow: bool) -> torch.Tensor:
    """Resize ``(C, H, W)`` to ``size`` ``(h, w)``; flow vectors are scaled with the image."""
    h, w = x.shape[-2:]
    out = F.interpolate(x[None], size=size, mode="area")[0]
    if flow:
        out = out * torch.tensor([size[1] / w, size[0] / h], dtype=out.dtype)[:, None, None]
    return out


def sintel_pairs(root: str | os.PathLike, split: str = "train", size: tuple[int, int] = (108, 256),
                 pass_name: str = "clean", heldout_scenes: int = SINTEL_HELDOUT_SCENES) -> FlowPairs:
    """MPI-Sintel training pairs resized to ``size`` ``(h, w)`` (flow scaled with the image);
    ``split="heldout"``: the last ``heldout_scenes`` scenes by name, ``"train"``: the others."""
    from .sintel import SintelFlow

    if split not in ("train", "heldout"):
        raise ValueError(f"split: expected 'train' or 'heldout', got {split!r}")
    scenes = SintelFlow(root, pass_name=pass_name).scenes()
    names = sorted(dict.fromkeys(scenes))
    if len(names) <= heldout_scenes:
        raise ValueError(f"{root}: {len(names)} Sintel scene(s); need more than {heldout_scenes} "
                         f"(the last {heldout_scenes} by name are held out)")
    chosen = names[-heldout_scenes:] if split == "heldout" else names[:-heldout_scenes]
    ds = SintelFlow(root, pass_name=pass_name, scenes=chosen)
    items = [ds[i] for i in range(len(ds))]
    return _crop4(FlowPairs(torch.stack([_resize(it["image1"], size, False) for it in items]),
                            torch.stack([_resize(it["flow"], size, True) for it in items]), None,
                            [f"{it['scene']}:{it['frame']}" for it in items]))


def is_sintel(path: str | os.PathLike) -> bool:
    """True when ``path`` holds MPI-Sintel (``training/flow`` under it, ``sintel/`` or
    ``MPI-Sintel-complete/``)."""
    p = Path(path)
    return any((q / "training" / "flow").is_dir()
               for q in (p, p / "sintel", p / "MPI-Sintel-complete"))


def load_pairs(data: str | os.PathLike, split: str) -> FlowPairs:
    """The ``split`` pairs of ``--data``: MPI-Sintel (see :func:`is_sintel`) or prepare-video
    caches."""
    if not Path(data).exists():
        raise FileNotFoundError(f"--data {data}: no such folder; make one with `s3 prepare-video "
                                f"VIDEO --out {data}` (or give MPI-Sintel's folder)")
    if is_sintel(data):
        return sintel_pairs(data, split)
    return video_pairs(data, split)


__all__ = ["FlowPairs", "cube_pairs", "heldout_cube_pairs", "video_pairs", "sintel_pairs",
           "is_sintel", "load_pairs"]
