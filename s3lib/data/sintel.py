"""MPI-Sintel (Butler et al., ECCV 2012) as a torch ``Dataset`` of frame pairs with their flow.

Layout read (as in ``MPI-Sintel-complete.zip``; ``s3 download sintel`` puts it in
``data/sintel/``, see ``data/README.md``)::

    <root>/training/clean/<scene>/frame_0001.png ...   rendered frames, "clean" pass
    <root>/training/final/<scene>/frame_0001.png ...   the same frames with blur, fog, ...
    <root>/training/flow/<scene>/frame_0001.flo ...    forward flow, frame i -> frame i + 1

The last frame of a scene has no flow, so a scene of ``n`` frames gives ``n - 1`` items. Both
passes share the same flow. The ``test`` split ships no flow and is refused. Items are read
from disk when asked for; :class:`s3lib.data.pairs.SintelPairs` resizes them for training.

Explained in ``notebooks/05_sintel.ipynb``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, TypedDict

import numpy as np
import torch
from torch.utils.data import Dataset

from ..flow import read_flo

PASSES = ("clean", "final")
"""The two rendering passes of Sintel."""
SPLITS = ("training", "test")
FOLDER_NAMES = ("sintel", "MPI-Sintel-complete")
"""Folders under a data root that may hold the unpacked data set (first found wins)."""

_FRAME = re.compile(r"^frame_(\d+)\.png$")
_FLOW = re.compile(r"^frame_(\d+)\.flo$")
_HOW_TO_GET = ("get it with `s3 download sintel` (about 5.3 GB), or download "
               "MPI-Sintel-complete.zip by hand and unpack it into data/sintel/ so that "
               "data/sintel/training/clean/ exists; see data/README.md")


class SintelItem(TypedDict):
    """One item of :class:`SintelFlow`."""

    image1: torch.Tensor  # (3, H, W) float32 in [0, 1], RGB: frame ``frame``
    image2: torch.Tensor  # (3, H, W) float32 in [0, 1], RGB: frame ``frame + 1``
    flow: torch.Tensor  # (2, H, W) float32, pixels, channel 0 = x (right), 1 = y (down)
    scene: str
    frame: int


def resolve_root(root: str | os.PathLike, split: str = "training") -> Path:
    """The folder that holds ``training/`` (or ``split``) for a user-given ``root``.

    ``root`` may be that folder itself, or a data root under which ``sintel/`` or
    ``MPI-Sintel-complete/`` holds it (so both ``data/sintel`` and ``data`` work).

    Raises:
        FileNotFoundError: nothing Sintel-like under ``root``; the message names ``root`` and
            says how to get the data.
    """
    root = Path(root).expanduser()
    candidates = [root] + [root / name for name in FOLDER_NAMES]
    for cand in candidates:
        if (cand / split).is_dir():
            return cand
    if not root.exists():
        problem = f"{root}: no such folder"
    else:
        looked = ", ".join(str(c / split) for c in candidates)
        problem = f"{root}: no MPI-Sintel data found (looked for {looked})"
    raise FileNotFoundError(f"{problem}. MPI-Sintel is not bundled with the course: {_HOW_TO_GET}")


def _numbered(folder: Path, pattern: re.Pattern) -> dict[int, Path]:
    """``{number: path}`` of the files in ``folder`` whose names match ``pattern``."""
    out: dict[int, Path] = {}
    for entry in folder.iterdir():
        m = pattern.match(entry.name)
        if m and entry.is_file():
            out[int(m.group(1))] = entry
    return out


def _list_problems(kind: str, paths: list[Path], limit: int = 10) -> str:
    shown = ", ".join(str(p) for p in paths[:limit])
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return f"{len(paths)} {kind}: {shown}{more}"


class SintelFlow(Dataset):
    """MPI-Sintel frame pairs with ground-truth forward flow.

    Args:
        root: the folder holding ``training/`` (e.g. ``data/sintel``), or a data root with a
            ``sintel/`` or ``MPI-Sintel-complete/`` folder inside (e.g. ``data``).
        split: ``"training"`` (the only split with flow; ``"test"`` raises ``ValueError``).
        pass_name: ``"clean"`` or ``"final"``.
        scenes: keep only these scenes (names as in ``training/clean/``); all when ``None``.

    Items are dicts (:class:`SintelItem`): ``image1``, ``image2`` ``(3, H, W)`` float32 RGB in
    [0, 1], ``flow`` ``(2, H, W)`` float32 (frame ``frame`` -> ``frame + 1``), ``scene`` (str)
    and ``frame`` (int, the number in the first frame's file name, so Sintel's first pair has
    ``frame == 1``). Sintel frames are 1024x436.

    Raises:
        FileNotFoundError: no Sintel data under ``root`` (the message names it and says how to
            get the data).
        ValueError: bad ``split`` / ``pass_name`` / ``scenes``; a pass folder with no frames;
            frame pairs without their ``.flo`` file or ``.flo`` files without a frame pair
            (the message names the files).

    Explained in ``notebooks/05_sintel.ipynb``.
    """

    def __init__(self, root: str | os.PathLike, split: str = "training",
                 pass_name: str = "clean", scenes: Iterable[str] | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: expected 'training' (the split with flow)")
        if split == "test":
            raise ValueError("split='test': MPI-Sintel publishes no ground-truth flow for the "
                             "test split; use split='training'")
        if pass_name not in PASSES:
            raise ValueError(f"pass_name={pass_name!r}: expected one of {', '.join(PASSES)}")
        if isinstance(scenes, str):
            scenes = [scenes]
        self.root = resolve_root(root, split)
        self.split = split
        self.pass_name = pass_name
        image_dir = self.root / split / pass_name
        flow_dir = self.root / split / "flow"
        if not image_dir.is_dir():
            raise FileNotFoundError(f"{image_dir}: no such folder (the {pass_name!r} pass of "
                                    f"MPI-Sintel); {_HOW_TO_GET}")
        if not flow_dir.is_dir():
            raise ValueError(f"{flow_dir}: no such folder: the MPI-Sintel tree has frames but "
                             f"no ground-truth flow; {_HOW_TO_GET}")
        available = sorted(p.name for p in image_dir.iterdir() if p.is_dir())
        if scenes is None:
            chosen = available
        else:
            chosen = list(dict.fromkeys(scenes))
            unknown = [s for s in chosen if s not in available]
            if unknown:
                raise ValueError(f"scenes {unknown} not in {image_dir} (available: "
                                 f"{', '.join(available) or 'none'})")
        self._pairs: list[tuple[str, int, Path, Path, Path]] = []
        missing_flow: list[Path] = []
        orphan_flow: list[Path] = []
        for scene in chosen:
            frames = _numbered(image_dir / scene, _FRAME)
            flows = _numbered(flow_dir / scene, _FLOW) if (flow_dir / scene).is_dir() else {}
            for number in sorted(frames):
                if number + 1 not in frames:
                    continue  # the last frame (or a gap): no pair starts here
                flo = flow_dir / scene / f"{frames[number].stem}.flo"
                if number not in flows:
                    missing_flow.append(flo)
                    continue
                self._pairs.append((scene, number, frames[number], frames[number + 1],
                                    flows[number]))
            orphan_flow += [flows[n] for n in sorted(flows)
                            if n not in frames or n + 1 not in frames]
        if scenes is None:  # flow of a scene that has no frames in this pass
            for extra in sorted(p for p in flow_dir.iterdir()
                                if p.is_dir() and p.name not in available):
                orphan_flow += sorted(_numbered(extra, _FLOW).values())
        problems = []
        if missing_flow:
            problems.append(_list_problems("frame pairs without their flow file (missing)",
                                           missing_flow))
        if orphan_flow:
            problems.append(_list_problems(
                f"flow files without both frames in {image_dir}", orphan_flow))
        if problems:
            raise ValueError(f"{self.root}: incomplete MPI-Sintel tree: " + "; ".join(problems)
                             + f". Re-download or re-unpack it ({_HOW_TO_GET})")
        if not self._pairs:
            raise ValueError(f"{image_dir}: no frame pairs (frame_NNNN.png) found in "
                             f"{len(chosen)} scene folder(s); {_HOW_TO_GET}")
        self._scenes = list(dict.fromkeys(p[0] for p in self._pairs))

    def scenes(self) -> list[str]:
        """The scene names of this dataset, in the order of its items."""
        return list(self._scenes)

    def __len__(self) -> int:
        return len(self._pairs)

    def keys(self) -> list[tuple[str, int]]:
        """``(scene, frame)`` of every item, in order, without reading any file."""
        return [(scene, number) for scene, number, *_ in self._pairs]

    def __getitem__(self, index: int) -> SintelItem:
        return self.read(index)

    def read(self, index: int, image2: bool = True) -> SintelItem:
        """Item ``index``; ``image2=False`` leaves out the second frame (and does not read its
        file): what training on frame pairs needs (:class:`s3lib.data.pairs.SintelPairs`)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} Sintel pairs")
        scene, number, path1, path2, flo = self._pairs[index]
        image1 = _read_rgb(path1)
        second = _read_rgb(path2) if image2 else image1
        flow = read_flo(flo)
        if second.shape[1:] != image1.shape[1:] or flow.shape[:2] != image1.shape[1:]:
            raise ValueError(f"{flo}: flow of size {flow.shape[1]}x{flow.shape[0]} does not "
                             f"match frames {path1.name}, {path2.name} of size "
                             f"{image1.shape[2]}x{image1.shape[1]} / "
                             f"{second.shape[2]}x{second.shape[1]}")
        item = {"image1": image1, "image2": second,
                "flow": torch.from_numpy(np.ascontiguousarray(flow.transpose(2, 0, 1))),
                "scene": scene, "frame": number}
        if not image2:
            del item["image2"]
        return item

    def __repr__(self) -> str:
        return (f"SintelFlow(root={str(self.root)!r}, split={self.split!r}, "
                f"pass_name={self.pass_name!r}: {len(self)} pairs in {len(self._scenes)} scenes)")


def _read_rgb(path: Path) -> torch.Tensor:
    """``(3, H, W)`` float32 RGB in [0, 1] from an image file (OpenCV reads BGR)."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: not a readable image (corrupt or truncated PNG?)")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # IMREAD_COLOR gives 8-bit BGR
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0)
