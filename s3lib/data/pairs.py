"""Training data as frame pairs: images, forward flow and (for the cube) labels.

Two kinds of containers, with the same items and the same ``size`` / ``source``:

- :class:`FlowPairs`, every pair stacked in memory: the cube (:func:`cube_pairs`, notebook 04)
  and the notebooks' small sets (:func:`video_pairs`, :func:`sintel_pairs`, notebooks 05-06);
- :class:`LazyPairs`, a pair read from disk when asked for, so that a data set of any size
  trains in the memory of one batch: :class:`VideoPairs` over caches written by
  ``s3 prepare-video`` (estimated flow; split into training and held-out frames by
  :func:`s3lib.data.video.split_pairs`) and :class:`SintelPairs` over MPI-Sintel's training
  scenes, resized (ground-truth flow; notebook 05).

Both are torch ``Dataset`` s whose item ``i`` is a dict: ``image`` ``(3, H, W)`` float32 in
[0, 1], ``flow`` ``(2, H, W)`` float32 forward flow in pixels, ``source`` (e.g.
``"bikes:42"``) and, where there are labels, ``label`` ``(H, W)`` int64. A lazy data set's
item ``i`` is exactly (bit for bit) pair ``i`` of the in-memory stacking of the same data, so
training on either gives the same network. :func:`load_pairs` picks the lazy one for a
``--data`` argument. The network needs sides that are multiples of 4, so video and Sintel
pairs are centre-cropped to the nearest multiple (:func:`crop4_window`).
"""

from __future__ import annotations

import operator
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .cube import HELDOUT_SEEDS, TRAIN_SEEDS, render_cube_sequence

SINTEL_HELDOUT_SCENES = 3
"""Sintel: the last scenes (sorted by name) held out; the paper trains on 20 of the 23."""


@dataclass
class FlowPairs(Dataset):
    """``images (N, 3, H, W)`` float32 in [0, 1], ``flows (N, 2, H, W)`` forward flow (pixels)
    from each image to the next frame of its clip, optional ``labels (N, H, W)`` int64, and a
    ``source`` name per pair (e.g. ``"bikes:42"``), all in memory.

    Also a torch ``Dataset``: item ``i`` is ``{"image": images[i], "flow": flows[i],
    "source": source[i]}`` (and ``"label": labels[i]`` where there are labels), the items of
    :class:`LazyPairs`. Training indexes the stacked tensors directly (notebook 04)."""

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

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = _check_index(i, len(self))
        item: dict[str, Any] = {"image": self.images[i], "flow": self.flows[i],
                                "source": self.source[i] if self.source is not None else str(i)}
        if self.labels is not None:
            item["label"] = self.labels[i]
        return item

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the images."""
        return tuple(self.images.shape[-2:])


def _check_index(i, n: int) -> int:
    """``i`` as an index into ``n`` items (negative counts from the end); ``IndexError``
    outside."""
    i = operator.index(i)
    if not -n <= i < n:
        raise IndexError(f"index {i} out of range for {n} pairs")
    return i % n


def crop4_window(h: int, w: int) -> tuple[int, int, int, int]:
    """``(top, left, h4, w4)``: the centred window of the largest sides ``h4 <= h``,
    ``w4 <= w`` that are multiples of 4 (what the U-Net needs)."""
    h4, w4 = h - h % 4, w - w % 4
    return (h - h4) // 2, (w - w4) // 2, h4, w4


def _crop4(pairs: FlowPairs) -> FlowPairs:
    """Centre-crop to sides that are multiples of 4 (:func:`crop4_window`)."""
    h, w = pairs.size
    top, left, h4, w4 = crop4_window(h, w)
    if (h4, w4) == (h, w):
        return pairs
    cut = lambda x: None if x is None else x[..., top:top + h4, left:left + w4].contiguous()  # noqa: E731
    return FlowPairs(cut(pairs.images), cut(pairs.flows), cut(pairs.labels), pairs.source)


def batch_of(pairs: Dataset, idx: torch.Tensor | Sequence[int] | slice
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``images (B, 3, H, W)``, ``flows (B, 2, H, W)`` and ``labels (B, H, W)`` (or ``None``)
    of the pairs ``idx`` (indices or a slice) of ``pairs``.

    :class:`FlowPairs` (and a :class:`LazyPairs` whose ``images`` were already stacked in
    memory) are indexed as tensors; any other ``Dataset`` with this module's items has just
    the batch's items read and stacked: the same numbers (how training and
    :func:`s3lib.train.evaluate` fetch their batches).
    """
    if isinstance(pairs, LazyPairs) and pairs._stacked is not None:
        pairs = pairs._stacked
    if isinstance(pairs, FlowPairs):
        return (pairs.images[idx], pairs.flows[idx],
                None if pairs.labels is None else pairs.labels[idx])
    if isinstance(idx, slice):
        idx = range(len(pairs))[idx]
    elif isinstance(idx, torch.Tensor):
        idx = idx.tolist()
    items = [pairs[int(i)] for i in idx]
    labels = torch.stack([it["label"] for it in items]) if items and "label" in items[0] else None
    return (torch.stack([it["image"] for it in items]), torch.stack([it["flow"] for it in items]),
            labels)


class RandomBatches(torch.utils.data.Sampler):
    """An endless stream of batches of ``batch`` random pair indices (``torch.randint`` with
    its own generator, seeded with ``seed``), after skipping the first ``skip`` batches (a
    resumed run): the batch sampler of :func:`prefetched_batches`. The same stream for any
    number of reading processes."""

    def __init__(self, num_pairs: int, batch: int, seed: int, skip: int = 0) -> None:
        if num_pairs < 1 or batch < 1 or skip < 0:
            raise ValueError(f"num_pairs, batch >= 1 and skip >= 0 expected, got {num_pairs}, "
                             f"{batch}, {skip}")
        self.num_pairs, self.batch, self.seed, self.skip = num_pairs, batch, seed, skip

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator().manual_seed(self.seed)
        for _ in range(self.skip):
            torch.randint(self.num_pairs, (self.batch,), generator=gen)
        while True:
            yield torch.randint(self.num_pairs, (self.batch,), generator=gen).tolist()


def _stack_items(items: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([it["image"] for it in items]), torch.stack([it["flow"] for it in items])


def prefetched_batches(pairs: Dataset, batch: int, seed: int, workers: int, skip: int = 0
                       ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(images (B, 3, H, W), flows (B, 2, H, W))`` of random batches (:class:`RandomBatches`),
    read ahead by ``workers`` ``DataLoader`` processes while the network trains on the current
    one (``s3 train video --workers W``, notebooks 05-06). Endless; the order is the sampler's
    whatever ``workers`` is."""
    loader = torch.utils.data.DataLoader(pairs, batch_sampler=RandomBatches(len(pairs), batch,
                                                                            seed, skip),
                                         num_workers=workers, collate_fn=_stack_items)
    return iter(loader)


class LazyPairs(Dataset):
    """Frame pairs read from disk one item at a time (a torch ``Dataset``), for data sets that
    do not fit in memory: the base of :class:`VideoPairs` and :class:`SintelPairs`.

    Items as :class:`FlowPairs`'s: ``image`` ``(3, H, W)`` float32 in [0, 1], ``flow``
    ``(2, H, W)`` float32 in pixels, ``source``; no labels (``labels`` is ``None``). ``size``:
    ``(H, W)``; ``source``: a name per pair, known without reading any.

    :meth:`to_pairs` stacks them all into a :class:`FlowPairs` (what :func:`video_pairs` and
    :func:`sintel_pairs` return), and ``images`` / ``flows`` are that stacking's, made on first
    use and kept, so code written for :class:`FlowPairs` (notebooks 05-06 plot and score the
    whole split) runs unchanged; training and :func:`s3lib.train.evaluate` never touch them.
    """

    labels = None
    _stacked: FlowPairs | None = None
    _window: tuple[int, int, int, int]
    """``(top, left, height, width)`` of the crop to multiples of 4, set by the subclass."""
    _source: list[str]
    """A name per pair, set by the subclass."""

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the images."""
        return self._window[2], self._window[3]

    @property
    def source(self) -> list[str]:
        """A name per pair (``"bikes:42"``, ``"alley_1:7"``)."""
        return self._source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = _check_index(i, len(self))
        image, flow = self._read(i)
        return {"image": image, "flow": flow, "source": self.source[i]}

    def _read(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image (3, H, W), flow (2, H, W))`` of pair ``i`` (``0 <= i < len``)."""
        raise NotImplementedError

    def to_pairs(self) -> FlowPairs:
        """All pairs in memory (``N x (3 + 2) x H x W`` float32: the tensors are allocated
        once and filled pair by pair)."""
        n, (h, w) = len(self), self.size
        images, flows = torch.empty(n, 3, h, w), torch.empty(n, 2, h, w)
        for i in range(n):
            images[i], flows[i] = self._read(i)
        return FlowPairs(images, flows, None, list(self.source))

    def _stack(self) -> FlowPairs:
        if self._stacked is None:
            self._stacked = self.to_pairs()
        return self._stacked

    @property
    def images(self) -> torch.Tensor:
        """``(N, 3, H, W)``: every image, stacked in memory on first use (:meth:`to_pairs`)."""
        return self._stack().images

    @property
    def flows(self) -> torch.Tensor:
        """``(N, 2, H, W)``: every flow, stacked in memory on first use (:meth:`to_pairs`)."""
        return self._stack().flows

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_stacked", None)  # DataLoader workers read their items from disk
        return state

    def __repr__(self) -> str:
        h, w = self.size
        return f"{type(self).__name__}({len(self)} pairs of {w}x{h}, {self._where()})"

    def _where(self) -> str:
        return ""


def cube_pairs(seeds=TRAIN_SEEDS, size: int = 64, frames: int = 99, gap: int = 1,
               look: str = "hues") -> FlowPairs:
    """The frame pairs ``(t, t + gap)`` of the cube sequences ``seeds`` (``frames`` frames each)
    with their exact flow and frame ``t``'s face labels (``(frames - gap) * len(seeds)`` pairs).
    A larger ``gap`` gives larger motions, still exactly affine on each face (notebook 04);
    ``look``: the cube's textures (:func:`s3lib.data.cube.render_cube_sequence`; appendix 04b)."""
    seqs = [render_cube_sequence(frames, size, s, gap=gap, look=look) for s in seeds]
    return FlowPairs(torch.cat([q.frames[:-gap] for q in seqs]),
                     torch.cat([q.flows for q in seqs]),
                     torch.cat([q.labels[:-gap] for q in seqs]),
                     [f"cube{q.seed}:{t}" for q in seqs for t in range(frames - gap)])


def heldout_cube_pairs(size: int = 64, frames: int = 25, look: str = "hues") -> FlowPairs:
    """The held-out cube sequences (:data:`s3lib.data.cube.HELDOUT_SEEDS`) of ``look``."""
    return cube_pairs(HELDOUT_SEEDS, size, frames, look=look)


class VideoPairs(LazyPairs):
    """The pairs of ``split`` of prepare-video caches, read from the cache files per item.

    Args:
        caches: a cache folder, a folder of caches, or a list (as
            :class:`s3lib.data.video.VideoFlowDataset`); all of one frame size.
        split: ``"train"``, ``"heldout"`` (:func:`s3lib.data.video.split_pairs`) or ``"all"``.
        heldout_fraction: of each shot's frames, the last ones held out.

    Item ``i``: frame ``t`` of pair ``i`` as ``image`` ``(3, H, W)`` float32 in [0, 1] and its
    forward flow ``(2, H, W)`` (float16 on disk, float32 here), both centre-cropped to
    multiples of 4 (:func:`crop4_window`); ``source`` ``"<cache name>:<t>"``. The pairs are
    the caches' in order, each cache's in frame order. Only the rows asked for are read
    (:class:`s3lib.data.video.NpyRows`), so the memory used does not grow with the number or
    length of the videos. Explained in ``notebooks/05_sintel.ipynb`` and
    ``notebooks/06_real_video_entropy.ipynb``.

    Raises:
        FileNotFoundError, ValueError: no such folder, not a cache (or a folder of caches), a
            damaged cache (the message names the file), no pairs in ``split``, or caches of
            different frame sizes.
    """

    def __init__(self, caches, split: str = "train", heldout_fraction: float | None = None
                 ) -> None:
        from .video import HELDOUT_FRACTION, FILES, NpyRows, VideoFlowDataset

        fraction = HELDOUT_FRACTION if heldout_fraction is None else heldout_fraction
        ds = VideoFlowDataset(caches, frames=split, heldout_fraction=fraction)  # checks them
        if len(ds) == 0:
            raise ValueError(f"{caches}: no {split} frame pairs (is the clip long enough?)")
        if len(set(ds.sizes)) > 1:
            raise ValueError(f"{caches}: videos of different sizes {sorted(set(ds.sizes))}; "
                             f"prepare them with one --size")
        self.caches, self.split = caches, split
        self.paths, self.names = list(ds.paths), list(ds.names)
        self._items = [(v, p, t1) for v, p, t1, _ in ds.items]  # (cache, pair row, frame t)
        self._source = [f"{self.names[v]}:{t1}" for v, _, t1 in self._items]
        self._window = crop4_window(*ds.sizes[0])
        self._rows = [(NpyRows(p / FILES[0]), NpyRows(p / FILES[1])) for p in self.paths]

    def __len__(self) -> int:
        return len(self._items)

    def _read(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        v, p, t1 = self._items[i]
        frames, flows = self._rows[v]
        top, left, h4, w4 = self._window
        win = (slice(top, top + h4), slice(left, left + w4))
        image = np.asarray(frames[t1][win], dtype=np.float32) / 255.0  # (h4, w4, 3)
        flow = np.asarray(flows[p][win], dtype=np.float32)  # (h4, w4, 2)
        return (torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
                torch.from_numpy(np.ascontiguousarray(flow.transpose(2, 0, 1))))

    def _where(self) -> str:
        return f"{self.split!r} of {len(self.paths)} cache(s)"


def video_pairs(caches, split: str = "train") -> FlowPairs:
    """All pairs of ``split`` (``"train"``, ``"heldout"`` or ``"all"``) of prepare-video caches
    (a cache folder, a folder of caches, or a list), stacked in memory: ``images (N, 3, H, W)``,
    ``flows (N, 2, H, W)`` (:meth:`VideoPairs.to_pairs`; for the small bundled clips of
    notebooks 05-06 — training on large caches reads :class:`VideoPairs` lazily)."""
    return VideoPairs(caches, split).to_pairs()


def _resize(x: torch.Tensor, size: tuple[int, int], flow: bool) -> torch.Tensor:
    """Resize ``(C, H, W)`` to ``size`` ``(h, w)``; flow vectors are scaled with the image."""
    h, w = x.shape[-2:]
    out = F.interpolate(x[None], size=size, mode="area")[0]
    if flow:
        out = out * torch.tensor([size[1] / w, size[0] / h], dtype=out.dtype)[:, None, None]
    return out


class SintelPairs(LazyPairs):
    """MPI-Sintel training pairs resized to ``size`` ``(h, w)``, read and resized per item.

    Args:
        root: Sintel's folder (see :class:`s3lib.data.sintel.SintelFlow`).
        split: ``"heldout"``: the last ``heldout_scenes`` scenes by name; ``"train"``: the
            others (the paper trains on 20 of the 23).
        size: ``(h, w)`` of the items (area resampling; the flow vectors are scaled with the
            image), then centre-cropped to multiples of 4 (:func:`crop4_window`).
        pass_name: ``"clean"`` or ``"final"``.

    Item ``i``: ``image`` ``(3, h, w)`` float32 in [0, 1] (first frame of the pair), ``flow``
    ``(2, h, w)`` in pixels of the resized image, ``source`` ``"<scene>:<frame>"``; one PNG
    and one ``.flo`` file are read per item. Explained in ``notebooks/05_sintel.ipynb``.

    Raises:
        FileNotFoundError, ValueError: no Sintel under ``root``, an incomplete tree (the
            message names the files), a bad ``split``, or too few scenes to hold out.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train",
                 size: tuple[int, int] = (108, 256), pass_name: str = "clean",
                 heldout_scenes: int = SINTEL_HELDOUT_SCENES) -> None:
        from .sintel import SintelFlow

        if split not in ("train", "heldout"):
            raise ValueError(f"split: expected 'train' or 'heldout', got {split!r}")
        scenes = SintelFlow(root, pass_name=pass_name).scenes()
        names = sorted(dict.fromkeys(scenes))
        if len(names) <= heldout_scenes:
            raise ValueError(f"{root}: {len(names)} Sintel scene(s); need more than "
                             f"{heldout_scenes} (the last {heldout_scenes} by name are held out)")
        chosen = names[-heldout_scenes:] if split == "heldout" else names[:-heldout_scenes]
        self.root, self.split, self.resize_to = root, split, (int(size[0]), int(size[1]))
        self._ds = SintelFlow(root, pass_name=pass_name, scenes=chosen)
        self._source = [f"{scene}:{frame}" for scene, frame in self._ds.keys()]
        self._window = crop4_window(*self.resize_to)

    def _read(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        it = self._ds.read(i, image2=False)
        top, left, h4, w4 = self._window
        cut = lambda x: x[..., top:top + h4, left:left + w4].contiguous()  # noqa: E731
        return (cut(_resize(it["image1"], self.resize_to, False)),
                cut(_resize(it["flow"], self.resize_to, True)))

    def _where(self) -> str:
        return f"{self.split!r} of {self._ds.root}, {self._ds.pass_name}"


def sintel_pairs(root: str | os.PathLike, split: str = "train", size: tuple[int, int] = (108, 256),
                 pass_name: str = "clean", heldout_scenes: int = SINTEL_HELDOUT_SCENES) -> FlowPairs:
    """MPI-Sintel training pairs resized to ``size`` ``(h, w)`` (flow scaled with the image),
    stacked in memory (:meth:`SintelPairs.to_pairs`, one full-size pair read at a time);
    ``split="heldout"``: the last ``heldout_scenes`` scenes by name, ``"train"``: the others."""
    return SintelPairs(root, split, size, pass_name, heldout_scenes).to_pairs()


def is_sintel(path: str | os.PathLike) -> bool:
    """True when ``path`` holds MPI-Sintel (``training/flow`` under it, ``sintel/`` or
    ``MPI-Sintel-complete/``)."""
    p = Path(path)
    return any((q / "training" / "flow").is_dir()
               for q in (p, p / "sintel", p / "MPI-Sintel-complete"))


def load_pairs(data: str | os.PathLike, split: str) -> LazyPairs:
    """The ``split`` pairs of ``--data``, read lazily: :class:`SintelPairs` for MPI-Sintel (see
    :func:`is_sintel`), :class:`VideoPairs` for prepare-video caches (notebooks 05-06)."""
    if not Path(data).exists():
        raise FileNotFoundError(f"--data {data}: no such folder; make one with `s3 prepare-video "
                                f"VIDEO --out {data}` (or give MPI-Sintel's folder)")
    if is_sintel(data):
        return SintelPairs(data, split)
    return VideoPairs(data, split)


__all__ = ["FlowPairs", "LazyPairs", "VideoPairs", "SintelPairs", "batch_of", "crop4_window",
           "cube_pairs", "heldout_cube_pairs", "video_pairs", "sintel_pairs", "is_sintel",
           "load_pairs"]
