"""Video data pipeline: decode, cut into shots, estimate flow, cache, and serve training pairs.

Explained in ``notebooks/05_sintel.ipynb`` and ``notebooks/06_real_video_entropy.ipynb``.

A video becomes a *cache folder* that training reads many times without decoding or estimating
flow again:

.. code-block:: text

    <cache>/frames.npy   (T, H, W, 3) uint8 RGB frames (resized to ``size``)
    <cache>/flows.npy    (P, H, W, 2) float16 forward flow in pixels, pair p: frame
                         pairs[p, 0] -> frame pairs[p, 1] (x right, y down). float16 halves the
                         disk; its spacing is at most 1/32 px below 64 px, far below the error of
                         DIS or Farneback. The dataset hands it out as float32.
    <cache>/pairs.npy    (P, 2) int64 frame indices (t, t + gap), t and t + gap in one shot
    <cache>/shots.npy    (S, 2) int64 half-open frame ranges [start, end) of the shots
    <cache>/index.json   settings, source identity, versions, counts, shapes and sha256 of
                         every file above; written LAST, so a folder without it is incomplete

The folder is written under a temporary name beside the target (``.<name>.tmp-*``) and renamed
into place, so an interrupted run never leaves a folder that looks complete. :func:`load_cache`
checks the index against the arrays; :func:`prepare_video` skips a complete cache made with the
same settings from the same source file and rebuilds anything else.

Shot cuts (:func:`detect_cuts`) are found from colour histograms: the total-variation distance
between the joint 8x8x8-bin HSV histograms of consecutive frames, a cut where it exceeds
:data:`CUT_THRESHOLD` = 0.35. On ``bikes.mp4`` the five real cuts score 0.51-0.87 and the
largest distance inside a shot (a car passing close to the camera) 0.17-0.25 depending on the
frame size; Big Buck Bunny's 132 frames are one shot (largest distance 0.07). Gradual
transitions (fades, dissolves) are not detected. No flow pair ever spans a cut.

Training reads a cache lazily, one frame and one flow row per pair (:class:`NpyRows`, used by
:class:`s3lib.data.pairs.VideoPairs`), so a cache of any length trains in the memory of one
batch. :func:`write_cache` is the writer (also for caches made without a video: tests,
``benchmarks/memory_video.py``).

Held-out split (:func:`split_pairs`): in every shot the last ``heldout_fraction`` (20 %) of the
frames are held out; training pairs use only earlier frames, held-out pairs only those frames,
and the ``gap`` pairs that would straddle the boundary are dropped, so a network evaluated on
held-out pairs has never seen any of their frames.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .clips import clip_path, read_frames

log = logging.getLogger(__name__)

CACHE_FORMAT = "s3lib-video-cache"
CACHE_VERSION = 1
"""Version of the cache layout; a cache of another version is rebuilt (or refused on load)."""
CUT_THRESHOLD = 0.35
"""Total-variation distance between consecutive frames' HSV histograms above which
:func:`detect_cuts` reports a cut (see the module docstring for how it was chosen)."""
HIST_BINS = 8
"""Bins per HSV channel of the cut detector's joint histogram (8**3 = 512 bins)."""
HELDOUT_FRACTION = 0.2
"""Fraction of each shot's frames (the last ones) held out by :func:`split_pairs`."""
VIDEO_EXTENSIONS = (".avi", ".flv", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".webm",
                    ".wmv")
"""File name endings taken as videos when a directory is given to :func:`prepare_videos`."""
FLOW_METHODS = ("dis", "farneback")
FILES = ("frames.npy", "flows.npy", "pairs.npy", "shots.npy")
_CACHE_NAMES = frozenset(FILES) | {"index.json"}

_FIX = "rebuild it with `s3 prepare-video VIDEO --out DIR` (or prepare_video)"


# ----------------------------------------------------------------------------- shot cuts
def histogram_distances(frames: np.ndarray, bins: int = HIST_BINS) -> np.ndarray:
    """Distance between consecutive frames' colour histograms, the cut detector's score.

    Args:
        frames: ``(T, H, W, 3)`` uint8 RGB frames.
        bins: bins per HSV channel of the joint histogram.

    Returns:
        ``(T - 1,)`` float64: entry ``t`` is the total-variation distance (half the L1 distance,
        in [0, 1]) between the normalised histograms of frames ``t`` and ``t + 1``.
    """
    import cv2

    arr = np.asarray(frames)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"frames: expected uint8 (T, H, W, 3), got {arr.dtype} {arr.shape}")
    hists = np.empty((len(arr), bins ** 3))
    for t, frame in enumerate(arr):
        hsv = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2HSV)
        h = cv2.calcHist([hsv], [0, 1, 2], None, [bins] * 3, [0, 180, 0, 256, 0, 256]).ravel()
        hists[t] = h / max(h.sum(), 1.0)
    return 0.5 * np.abs(np.diff(hists, axis=0)).sum(axis=1)


def detect_cuts(frames: np.ndarray, threshold: float = CUT_THRESHOLD,
                bins: int = HIST_BINS) -> list[int]:
    """Hard shot cuts of a clip.

    Args:
        frames: ``(T, H, W, 3)`` uint8 RGB frames.
        threshold: a cut where :func:`histogram_distances` exceeds it (default
            :data:`CUT_THRESHOLD`).

    Returns:
        Sorted frame indices ``c`` (``1 <= c < T``) that start a new shot: the cut lies between
        frames ``c - 1`` and ``c``. ``bikes`` gives ``[30, 76, 137, 187, 242]``.
    """
    d = histogram_distances(frames, bins)
    return [int(i) + 1 for i in np.nonzero(d > threshold)[0]]


def shots_from_cuts(cuts: Sequence[int], num_frames: int) -> np.ndarray:
    """``(S, 2)`` int64 half-open frame ranges ``[start, end)`` between the cuts."""
    bounds = [0, *sorted(int(c) for c in cuts), int(num_frames)]
    return np.array([(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a],
                    dtype=np.int64).reshape(-1, 2)


def pairs_in_shots(shots: np.ndarray, gap: int) -> np.ndarray:
    """``(P, 2)`` int64 pairs ``(t, t + gap)`` with both frames in the same shot, in order."""
    pairs = [(t, t + gap) for s, e in np.asarray(shots) for t in range(int(s), int(e) - gap)]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def split_pairs(pairs: np.ndarray, shots: np.ndarray,
                heldout_fraction: float = HELDOUT_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Split a clip's pairs into training and held-out pairs (the later part of every shot).

    In each shot ``[s, e)`` the last ``k = round(heldout_fraction * (e - s))`` frames, from
    ``b = e - k`` on, are held out. A pair ``(t, t2)`` is for training when ``t2 < b``, held out
    when ``t >= b``, and dropped when it straddles ``b``: no frame is in both sets.

    Args:
        pairs: ``(P, 2)`` frame indices (first, second frame) of the clip's pairs.
        shots: ``(S, 2)`` half-open frame ranges of its shots.
        heldout_fraction: in [0, 1).

    Returns:
        ``(train, heldout)``: int64 index arrays into ``pairs``, ascending.
    """
    if not 0 <= heldout_fraction < 1:
        raise ValueError(f"heldout_fraction: expected a number in [0, 1), got {heldout_fraction!r}")
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    train, heldout = [], []
    for s, e in np.asarray(shots, dtype=np.int64).reshape(-1, 2):
        b = int(e) - int(math.floor(heldout_fraction * (int(e) - int(s)) + 0.5))
        inside = (pairs[:, 0] >= s) & (pairs[:, 1] < e)
        train.append(np.nonzero(inside & (pairs[:, 1] < b))[0])
        heldout.append(np.nonzero(inside & (pairs[:, 0] >= b))[0])
    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)

    return cat(train), cat(heldout)


# ----------------------------------------------------------------------------- cache
@dataclass
class VideoCache:
    """A loaded, validated cache folder (see the module docstring for the layout).

    ``frames`` ``(T, H, W, 3)`` uint8 and ``flows`` ``(P, H, W, 2)`` float16 are read-only
    memory maps; ``pairs`` ``(P, 2)`` and ``shots`` ``(S, 2)`` are int64 arrays.
    """

    path: Path
    index: dict
    frames: np.ndarray
    flows: np.ndarray
    pairs: np.ndarray
    shots: np.ndarray

    @property
    def name(self) -> str:
        return str(self.index["name"])

    @property
    def gap(self) -> int:
        return int(self.index["settings"]["gap"])

    @property
    def cuts(self) -> list[int]:
        return [int(s) for s in self.shots[1:, 0]]


def _opencv_version() -> str:
    import cv2

    return cv2.__version__


def _sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _source_identity(path: Path, with_hash: bool = True) -> dict:
    st = path.stat()
    ident = {"path": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    if with_hash:
        ident["sha256"] = _sha256(path)
    return ident


def _settings(size, flow, gap, max_frames) -> dict:
    if size is not None:
        if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and v >= 8 for v in size):
            raise ValueError(f"size: expected (width, height), both ints >= 8, got {size!r}")
        size = [int(size[0]), int(size[1])]
    if flow not in FLOW_METHODS:
        raise ValueError(f"flow: expected one of {FLOW_METHODS}, got {flow!r}")
    if not isinstance(gap, (int, np.integer)) or gap < 1:
        raise ValueError(f"gap: expected an int >= 1, got {gap!r}")
    if max_frames is not None and (not isinstance(max_frames, (int, np.integer)) or max_frames < 2):
        raise ValueError(f"max_frames: expected an int >= 2 or None, got {max_frames!r}")
    return {"size": size, "flow": flow, "gap": int(gap),
            "max_frames": None if max_frames is None else int(max_frames),
            "cut_threshold": CUT_THRESHOLD, "hist_bins": HIST_BINS}


def _read_index(path: Path) -> dict:
    index_path = path / "index.json"
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such cache folder; {_FIX}")
    if not index_path.is_file():
        raise ValueError(f"{index_path}: missing, so the cache is incomplete (an interrupted "
                         f"run?); {_FIX}")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{index_path}: corrupt cache index ({exc}); {_FIX}") from None
    if not isinstance(index, dict) or index.get("format") != CACHE_FORMAT:
        raise ValueError(f"{index_path}: not an s3lib video cache index (format "
                         f"{index.get('format') if isinstance(index, dict) else None!r}, "
                         f"expected {CACHE_FORMAT!r}); {_FIX}")
    if index.get("version") != CACHE_VERSION:
        raise ValueError(f"{index_path}: cache format version {index.get('version')!r}, this "
                         f"s3lib reads version {CACHE_VERSION}; {_FIX}")
    needed = ("name", "settings", "source", "opencv", "counts", "files", "frame_size")
    missing = [k for k in needed if k not in index]
    if missing:
        raise ValueError(f"{index_path}: corrupt cache index, missing {missing}; {_FIX}")
    return index


def load_cache(path: str | os.PathLike, verify: bool = False,
               check_opencv: bool = True) -> VideoCache:
    """Open a cache folder written by :func:`prepare_video` and check it.

    Args:
        path: the cache folder (holding ``index.json``).
        verify: also compare every file's sha256 with the index (reads everything).
        check_opencv: refuse a cache made with another OpenCV version (decoding, resizing
            and flow estimation may differ between versions).

    Raises:
        FileNotFoundError: no such folder.
        ValueError: the index is missing (an incomplete cache) or corrupt, of another format
            version or OpenCV version, or an array file is missing, unreadable, or its shape,
            dtype or contents differ from the index; the message names the file.
    """
    path = Path(path)
    index = _read_index(path)
    index_path = path / "index.json"
    if check_opencv and index["opencv"] != _opencv_version():
        raise ValueError(f"{index_path}: made with OpenCV {index['opencv']}, this is OpenCV "
                         f"{_opencv_version()}; {_FIX}")
    arrays = {}
    for fname in FILES:
        fpath = path / fname
        meta = index["files"].get(fname) if isinstance(index["files"], dict) else None
        if not isinstance(meta, dict):
            raise ValueError(f"{index_path}: corrupt cache index, no entry for {fname}; {_FIX}")
        if not fpath.is_file():
            raise ValueError(f"{fpath}: missing from the cache; {_FIX}")
        try:
            arr = np.load(fpath, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise ValueError(f"{fpath}: unreadable or truncated ({exc}); {_FIX}") from None
        if list(arr.shape) != list(meta.get("shape", [])) or str(arr.dtype) != meta.get("dtype"):
            raise ValueError(f"{fpath}: shape {list(arr.shape)} dtype {arr.dtype}, but "
                             f"{index_path} says shape {meta.get('shape')} dtype "
                             f"{meta.get('dtype')}; {_FIX}")
        if verify and _sha256(fpath) != meta.get("sha256"):
            raise ValueError(f"{fpath}: contents differ from the sha256 in {index_path} "
                             f"(the file changed or is corrupt); {_FIX}")
        arrays[fname[:-4]] = arr
    pairs, shots = np.array(arrays["pairs"]), np.array(arrays["shots"])
    frames, flows = arrays["frames"], arrays["flows"]
    counts, gap = index["counts"], index["settings"].get("gap")
    t, h, w = frames.shape[:3]
    problems = []
    if [w, h] != list(index["frame_size"]):
        problems.append(f"frames.npy is {w}x{h}, the index says {index['frame_size']}")
    if flows.shape[1:3] != (h, w):
        problems.append(f"flows.npy is {flows.shape[2]}x{flows.shape[1]}, frames {w}x{h}")
    if (t, len(pairs), len(shots)) != (counts.get("frames"), counts.get("pairs"),
                                       counts.get("shots")) or len(flows) != len(pairs):
        problems.append(f"counts frames/pairs/shots/flows {t}/{len(pairs)}/{len(shots)}/"
                        f"{len(flows)} differ from the index's {counts}")
    elif len(pairs) and (np.any(pairs[:, 1] - pairs[:, 0] != gap) or pairs.min() < 0
                         or pairs.max() >= t):
        problems.append(f"pairs.npy holds pairs that are not (t, t + {gap}) inside the clip")
    elif len(shots) and (shots[0, 0] != 0 or shots[-1, 1] != t
                         or np.any(shots[1:, 0] != shots[:-1, 1])):
        problems.append("shots.npy does not cover the clip in order")
    elif len(pairs):
        shot_of = np.searchsorted(shots[:, 1], pairs, side="right")
        if np.any(shot_of[:, 0] != shot_of[:, 1]):
            problems.append("pairs.npy holds a pair that crosses a shot cut")
    if problems:
        raise ValueError(f"{path}: cache does not match {index_path}: {'; '.join(problems)}; "
                         f"{_FIX}")
    return VideoCache(path=path, index=index, frames=frames, flows=flows, pairs=pairs,
                      shots=shots)


def _differences(index: dict, settings: dict, source: Path) -> list[str]:
    """Why an existing, valid cache does not fit these settings and this source (empty: fits)."""
    diffs = [f"{k} {index['settings'].get(k)!r} -> {v!r}" for k, v in settings.items()
             if index["settings"].get(k) != v]
    old = index["source"]
    new = _source_identity(source, with_hash=False)
    if (old.get("bytes"), old.get("mtime_ns")) != (new["bytes"], new["mtime_ns"]):
        # the file was touched or copied: the same contents still fit
        if old.get("bytes") != new["bytes"] or old.get("sha256") != _sha256(source):
            diffs.append(f"source {source} changed since the cache was made")
    return diffs


def _say(message: str, progress: bool) -> None:
    log.info(message)
    if progress:
        from tqdm.auto import tqdm

        tqdm.write(message, file=sys.stderr)


def _save_npy(path: Path, arr: np.ndarray) -> dict:
    with open(path, "wb") as fh:
        np.save(fh, arr, allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())
    return {"shape": list(arr.shape), "dtype": str(arr.dtype), "sha256": _sha256(path)}


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prepare_video(video: str | os.PathLike, out_dir: str | os.PathLike,
                  size: tuple[int, int] | None = None, flow: str = "dis", gap: int = 1,
                  max_frames: int | None = None, progress: bool = True) -> Path:
    """Decode a video, find its shots, estimate flow within shots, and cache it all.

    Args:
        video: a bundled clip name (``"bikes"``) or a video file path.
        out_dir: the cache folder to write (created; its parent too).
        size: ``(width, height)`` to resize the frames to, or ``None`` for native size.
        flow: ``"dis"`` (default) or ``"farneback"``, see :func:`s3lib.flow.estimate_flow`.
        gap: pairs are frames ``(t, t + gap)``; their forward flow is stored.
        max_frames: use only the first ``max_frames`` frames (``None``: all).
        progress: show a progress bar over the pairs and say when a cache is skipped.

    Returns:
        ``out_dir``. When it already holds a complete, valid cache made with the same settings
        from the same source (same size and mtime, or same sha256) by the same OpenCV, nothing
        is recomputed ("skip"); otherwise it is rebuilt and replaced atomically.

    Raises:
        FileNotFoundError: no such video or clip.
        ValueError: bad settings, a video OpenCV cannot decode, or one with no two frames
            ``gap`` apart in one shot; the message names the file.

    Memory: all frames are held at once (``T x H x W x 3`` bytes); flows are streamed to disk
    (:func:`write_cache`).
    """
    from ..flow import estimate_flow

    settings = _settings(size, flow, gap, max_frames)
    source = clip_path(video)
    out_dir = Path(out_dir)
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir():
            raise ValueError(f"{out_dir}: exists and is not a folder; choose another output")
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in _CACHE_NAMES)
        if foreign:
            raise ValueError(f"{out_dir}: exists and holds files that are not part of a video "
                             f"cache ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}"
                             f"); refusing to replace it, choose another output folder")
        try:
            cache = load_cache(out_dir)
        except (ValueError, OSError) as exc:
            _say(f"{out_dir}: rebuild ({exc})", progress)
        else:
            diffs = _differences(cache.index, settings, source)
            if not diffs:
                _say(f"{out_dir}: skip, complete cache of {source.name} with the same settings",
                     progress)
                return out_dir
            _say(f"{out_dir}: rebuild ({'; '.join(diffs)})", progress)

    ident = _source_identity(source)
    frames = read_frames(source, size=None if size is None else tuple(settings["size"]),
                         max_frames=max_frames)
    if len(frames) <= gap:
        raise ValueError(f"{source}: {len(frames)} frame(s), shorter than the gap ({gap}) + 1; "
                         f"lower --gap or use a longer video")
    cuts = detect_cuts(frames)
    shots = shots_from_cuts(cuts, len(frames))
    pairs = pairs_in_shots(shots, gap)
    if len(pairs) == 0:
        raise ValueError(f"{source}: no two frames {gap} apart within one shot ({len(shots)} "
                         f"shots, cuts at {cuts}); lower --gap")

    def estimated():
        for a, b in pairs:
            f = estimate_flow(frames[a], frames[b], method=flow)
            if not np.isfinite(f).all():
                raise ValueError(f"{source}: flow estimation gave NaN/inf for frames {a}->{b}")
            yield f

    return write_cache(out_dir, frames, pairs, shots, estimated(), settings=settings,
                       source=ident, cuts=cuts, progress=progress)


def write_cache(out_dir: str | os.PathLike, frames: np.ndarray, pairs: np.ndarray,
                shots: np.ndarray, flows: Iterable[np.ndarray], settings: dict | None = None,
                source: dict | None = None, cuts: Sequence[int] | None = None,
                progress: bool = False) -> Path:
    """Write a cache folder (the layout of the module docstring) atomically: the writer of
    :func:`prepare_video`, also for caches made without decoding a video (tests, benchmarks).

    Args:
        out_dir: the cache folder (replaced if it exists; its parent is created).
        frames: ``(T, H, W, 3)`` uint8 RGB frames.
        pairs: ``(P, 2)`` frame indices ``(t, t + gap)``, inside one shot each.
        shots: ``(S, 2)`` half-open frame ranges covering ``[0, T)`` in order.
        flows: ``P`` arrays ``(H, W, 2)`` (forward flow of each pair, pixels), consumed one at
            a time and streamed to disk as float16 (clipped to +-65000), so they are never all
            in memory.
        settings: recorded in the index (default: :func:`prepare_video`'s defaults with this
            gap). source: the source identity recorded (default: none).
        cuts: the shot cuts (default: the shots' starts after the first).
        progress: a progress bar over the pairs.

    Returns:
        ``out_dir``.
    """
    from tqdm.auto import tqdm

    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames: expected uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    shots = np.asarray(shots, dtype=np.int64).reshape(-1, 2)
    if settings is None:
        settings = _settings(None, "dis", int(pairs[0, 1] - pairs[0, 0]) if len(pairs) else 1,
                             None)
    if source is None:
        source = {"path": None, "bytes": 0, "mtime_ns": 0}
    cuts = [int(s) for s in shots[1:, 0]] if cuts is None else [int(c) for c in cuts]
    out_dir = Path(out_dir)
    t, h, w = frames.shape[:3]

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a cache is an ordinary folder
        files = {"frames.npy": _save_npy(tmp / "frames.npy", frames)}
        out = np.lib.format.open_memmap(tmp / "flows.npy", mode="w+", dtype=np.float16,
                                        shape=(len(pairs), h, w, 2))
        written = 0
        for p, f in enumerate(tqdm(flows, total=len(pairs), desc=out_dir.name, unit="pair",
                                   leave=False, disable=not progress)):
            if p >= len(pairs) or np.shape(f) != (h, w, 2):
                raise ValueError(f"flows: expected {len(pairs)} arrays of shape {(h, w, 2)}, "
                                 f"got {np.shape(f)} as number {p + 1}")
            out[p] = np.clip(f, -65000, 65000)
            written = p + 1
        if written != len(pairs):
            raise ValueError(f"flows: expected {len(pairs)} arrays, got {written}")
        out.flush()
        del out
        with open(tmp / "flows.npy", "rb+") as fh:
            os.fsync(fh.fileno())
        files["flows.npy"] = {"shape": [len(pairs), h, w, 2], "dtype": "float16",
                              "sha256": _sha256(tmp / "flows.npy")}
        files["pairs.npy"] = _save_npy(tmp / "pairs.npy", pairs)
        files["shots.npy"] = _save_npy(tmp / "shots.npy", shots)
        index = {
            "format": CACHE_FORMAT, "version": CACHE_VERSION, "name": out_dir.name,
            "settings": settings, "source": source, "opencv": _opencv_version(),
            "numpy": np.__version__, "frame_size": [w, h],
            "counts": {"frames": t, "pairs": len(pairs), "shots": len(shots)},
            "cuts": cuts, "files": files,
        }
        with open(tmp / "index.json", "w", encoding="utf-8") as fh:  # last: marks it complete
            json.dump(index, fh, indent=1)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(out_dir.parent)
    return out_dir


def _replace_dir(tmp: Path, target: Path) -> None:
    """Move the finished folder ``tmp`` onto ``target``, replacing an old one if any."""
    old = None
    if target.exists() or target.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / "cache")  # a rename: the target briefly does not exist
    try:
        os.rename(tmp, target)
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- many videos
def list_videos(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[tuple[str, Path]]:
    """The videos named by ``inputs``, sorted by label and without duplicates.

    ``inputs``: one video (file or bundled clip name), a directory (its files ending in
    :data:`VIDEO_EXTENSIONS`, not recursive), a ``.txt`` file listing videos one per line
    (blank lines and ``#`` comments skipped; relative paths are relative to the list file),
    or a list of any of these.

    Returns:
        ``(label, path)`` pairs: the label is the video as named (a line of a list file,
        ``DIR/NAME`` for a directory's files), the key that :func:`shard_items` and
        :func:`cache_names` use; give every machine the same inputs and they agree on both.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: dict[str, Path] = {}
    for item in inputs:
        p = Path(os.fspath(item)).expanduser()
        if p.is_dir():
            for f in sorted(p.iterdir()):
                if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS:
                    found.setdefault(str(p / f.name), f)
        elif p.suffix.lower() == ".txt":
            if not p.is_file():
                raise FileNotFoundError(f"{p}: no such list of videos")
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
                text = line.split("#", 1)[0].strip()
                if not text:
                    continue
                entry = Path(text).expanduser()
                looks_like_name = not (os.sep in text or "/" in text or entry.suffix)
                if looks_like_name:
                    found.setdefault(text, clip_path(text))
                else:
                    path = entry if entry.is_absolute() else p.parent / entry
                    if not path.is_file():
                        raise FileNotFoundError(f"{p}, line {n}: {path}: no such video file")
                    found.setdefault(text, path)
        else:
            found.setdefault(os.fspath(item), clip_path(item))
    if not found:
        raise ValueError(f"{', '.join(map(os.fspath, inputs))}: no video files found (looked "
                         f"for {', '.join(VIDEO_EXTENSIONS)})")
    return sorted(found.items())


def cache_names(labels: Sequence[str]) -> list[str]:
    """Cache folder name per video label: its file stem, made unique when stems repeat.

    A stem shared by several labels becomes ``<stem>-<first 8 hex digits of sha1(label)>`` for
    each of them, so the name depends only on the label (stable across machines and shards).
    """
    stems = [Path(label).stem or "video" for label in labels]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    return [s if counts[s] == 1 else f"{s}-{hashlib.sha1(label.encode()).hexdigest()[:8]}"
            for s, label in zip(stems, labels)]


def shard_items(items: Sequence, index: int, count: int) -> list:
    """Shard ``index`` of ``count`` of a sorted list: the items at positions ``p`` with
    ``p % count == index``. The ``count`` shards partition the list exactly, so ``count``
    machines given the same list split it without talking to each other."""
    if not (isinstance(count, (int, np.integer)) and count >= 1
            and isinstance(index, (int, np.integer)) and 0 <= index < count):
        raise ValueError(f"shard: expected 0 <= I < N, got {index}/{count}")
    return [x for p, x in enumerate(items) if p % count == index]


def _prepare_worker(job: dict) -> str:
    """Process-pool entry point (top level, so ``spawn`` can import it)."""
    import cv2

    cv2.setNumThreads(1)  # the pool is the parallelism
    return str(prepare_video(**job))


def prepare_videos(inputs, out: str | os.PathLike, size: tuple[int, int] | None = None,
                   flow: str = "dis", gap: int = 1, max_frames: int | None = None,
                   workers: int = 1, shard: tuple[int, int] = (0, 1),
                   progress: bool = True) -> list[Path]:
    """Prepare many videos: one cache folder ``out/<name>/`` each (see :func:`cache_names`).

    Args:
        inputs: see :func:`list_videos` (a video, a directory, a ``.txt`` list, or a list).
        out: the folder that receives the cache folders.
        size, flow, gap, max_frames: as for :func:`prepare_video`.
        workers: processes to use (a ``spawn`` process pool when > 1).
        shard: ``(i, n)``: prepare only shard ``i`` of ``n`` of the sorted list
            (see :func:`shard_items`).
        progress: a progress bar over the videos (and over pairs when ``workers == 1``).

    Returns:
        The cache folders of this shard, in list order.

    Raises:
        The error of the video when a single video fails; otherwise, after all the others
        are done, a ``ValueError`` naming each video that failed and why.

    With ``workers > 1`` the pool starts fresh interpreters (``spawn``, the same on every
    platform and safe with torch's threads); a script that calls this must do so under
    ``if __name__ == "__main__":``. Notebooks and ``s3 prepare-video`` need nothing.
    """
    from tqdm.auto import tqdm

    _settings(size, flow, gap, max_frames)  # fail before any work
    if not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers: expected an int >= 1, got {workers!r}")
    i, n = shard
    videos = list_videos(inputs)
    names = cache_names([label for label, _ in videos])
    jobs = shard_items(list(zip(videos, names)), i, n)
    out = Path(out)
    common = {"size": size, "flow": flow, "gap": gap, "max_frames": max_frames}
    results: dict[int, Path] = {}
    errors: list[tuple[str, BaseException]] = []
    bar = tqdm(total=len(jobs), desc="videos", unit="video", disable=not progress)
    try:
        if workers == 1 or len(jobs) <= 1:
            for k, ((label, path), name) in enumerate(jobs):
                try:
                    results[k] = prepare_video(path, out / name, progress=progress, **common)
                except (ValueError, OSError) as exc:
                    errors.append((label, exc))
                bar.update()
        else:
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
                futures = {pool.submit(_prepare_worker, {"video": str(path),
                                                         "out_dir": str(out / name),
                                                         "progress": False, **common}): k
                           for k, ((label, path), name) in enumerate(jobs)}
                for fut in as_completed(futures):
                    k = futures[fut]
                    try:
                        results[k] = Path(fut.result())
                    except (ValueError, OSError) as exc:
                        errors.append((jobs[k][0][0], exc))
                    bar.update()
    finally:
        bar.close()
    if errors:
        if len(jobs) == 1:
            raise errors[0][1]
        lines = "; ".join(f"{label}: {exc}" for label, exc in sorted(errors, key=lambda e: e[0]))
        raise ValueError(f"{len(errors)} of {len(jobs)} videos failed (the others are cached "
                         f"in {out}): {lines}")
    return [results[k] for k in sorted(results)]


# ----------------------------------------------------------------------------- dataset
class NpyRows:
    """The rows ``arr[i]`` of a C-ordered ``.npy`` file, each read from disk when asked for.

    ``NpyRows(path)[i]`` is ``np.load(path)[i]`` (a fresh, writable array) without loading
    the rest: one positioned read of ``prod(shape[1:])`` items. Unlike a memory map, the rows
    read do not stay mapped into the process (a map's pages count towards its resident memory
    until it is closed), so a pass over a large cache keeps the process's memory flat; the
    operating system's page cache still keeps the file's hot parts. The file is opened on the
    first read in each process, so the object is cheap to send to ``DataLoader`` workers.

    ``shape`` and ``dtype`` are the array's.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            with open(self.path, "rb") as fh:
                version = np.lib.format.read_magic(fh)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(fh)
                self.offset = fh.tell()
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.path}: unreadable .npy file ({exc}); {_FIX}") from None
        if fortran or dtype.hasobject or not shape:
            raise ValueError(f"{self.path}: expected a C-ordered numeric array of rows; {_FIX}")
        self.shape, self.dtype = tuple(shape), dtype
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        self._fh, self._pid = None, None

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fh"], state["_pid"] = None, None  # reopened in the receiving process
        return state

    def __getitem__(self, i: int) -> np.ndarray:
        i = int(i)
        if not 0 <= i < self.shape[0]:
            raise IndexError(f"row {i} out of range for {self.path} ({self.shape[0]} rows)")
        if self._fh is None or self._pid != os.getpid():  # a forked worker opens its own
            self._fh, self._pid = open(self.path, "rb"), os.getpid()
        start = self.offset + i * self.row_bytes
        if hasattr(os, "pread"):
            data = os.pread(self._fh.fileno(), self.row_bytes, start)
        else:  # pragma: no cover - Windows
            self._fh.seek(start)
            data = self._fh.read(self.row_bytes)
        if len(data) != self.row_bytes:
            raise ValueError(f"{self.path}: truncated at row {i}; {_FIX}")
        return np.frombuffer(bytearray(data), dtype=self.dtype).reshape(self.shape[1:])

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


def _find_caches(spec) -> list[Path]:
    """Cache folders from a cache folder, a folder of cache folders, or a list of either."""
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    found: list[Path] = []
    for item in items:
        p = Path(item)
        if (p / "index.json").is_file() or not p.is_dir():
            found.append(p)  # load_cache names what is wrong with it
            continue
        subs = sorted(d for d in p.iterdir()
                      if d.is_dir() and not d.name.startswith(".") and (d / "index.json").is_file())
        if not subs:
            raise ValueError(f"{p}: neither a video cache (no index.json) nor a folder of "
                             f"caches; {_FIX}")
        found.extend(subs)
    if not found:
        raise ValueError("cache_dir_or_dirs: no cache folders given")
    return found


class VideoFlowDataset(Dataset):
    """Frame pairs and their forward flow from one or more cache folders (a torch ``Dataset``).

    Items are dicts:

    - ``image1``, ``image2``: ``(3, H, W)`` float32 RGB in [0, 1], frames ``t`` and ``t + gap``;
    - ``flow``: ``(2, H, W)`` float32 forward flow in pixels (channel 0 = x right, 1 = y down);
    - ``video``: the cache name; ``frame``: ``t``.

    Args:
        cache_dir_or_dirs: a cache folder, a folder of cache folders (the ``out`` of
            :func:`prepare_videos`), or a list of either.
        frames: ``"train"`` / ``"heldout"`` (see :func:`split_pairs`), ``"all"``, or a
            ``range`` / ``slice`` / ``(start, stop)`` of first-frame indices ``t`` (per video).
        crop: ``(h, w)``: a random crop of that size (the same window on both images and the
            flow; the flow values are unchanged), or ``None``.
        hflip: mirror left-right with probability 1/2 (flow: mirrored and ``u`` negated).
        vflip: mirror top-bottom with probability 1/2 (flow: mirrored and ``v`` negated).
        seed: the augmentation of item ``i`` is drawn from ``(seed, epoch, i)``; call
            :meth:`set_epoch` to vary it between epochs. Same seed, same items.

    Frames and flows are memory-mapped and opened lazily in each process, so the dataset is
    cheap to send to ``DataLoader`` workers.
    """

    def __init__(self, cache_dir_or_dirs, frames="train", crop: tuple[int, int] | None = None,
                 hflip: bool = False, vflip: bool = False, seed: int = 0,
                 heldout_fraction: float = HELDOUT_FRACTION) -> None:
        self.paths = _find_caches(cache_dir_or_dirs)
        caches = [load_cache(p) for p in self.paths]
        self.names = [c.name for c in caches]
        self.gaps = [c.gap for c in caches]
        self.sizes = [(c.frames.shape[1], c.frames.shape[2]) for c in caches]  # (H, W)
        if crop is not None:
            if len(crop) != 2 or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in crop):
                raise ValueError(f"crop: expected (height, width) positive ints, got {crop!r}")
            for c, (h, w) in zip(caches, self.sizes):
                if crop[0] > h or crop[1] > w:
                    raise ValueError(f"crop {tuple(crop)} (h, w) is larger than the frames of "
                                     f"{c.path} ({h}x{w} as h x w)")
        elif len(set(self.sizes)) > 1:
            log.info("videos of different sizes: batch them with crop=(h, w) or batch_size=1")
        self.crop, self.hflip, self.vflip = crop, bool(hflip), bool(vflip)
        self.seed, self.epoch = int(seed), 0
        self.frames_spec = frames
        items = []
        for v, c in enumerate(caches):
            for p in self._select(c, frames, heldout_fraction):
                items.append((v, int(p), int(c.pairs[p, 0]), int(c.pairs[p, 1])))
        self.items = items
        self._caches: list[VideoCache] | None = caches

    @staticmethod
    def _select(cache: VideoCache, frames, heldout_fraction: float) -> np.ndarray:
        pairs = cache.pairs
        if isinstance(frames, str):
            if frames == "all":
                return np.arange(len(pairs))
            train, heldout = split_pairs(pairs, cache.shots, heldout_fraction)
            if frames == "train":
                return train
            if frames == "heldout":
                return heldout
            raise ValueError(f"frames: expected 'train', 'heldout', 'all' or a range, got "
                             f"{frames!r}")
        if isinstance(frames, slice):
            frames = range(*frames.indices(len(cache.frames)))
        elif isinstance(frames, tuple) and len(frames) == 2:
            frames = range(int(frames[0]), int(frames[1]))
        if not isinstance(frames, range):
            raise ValueError(f"frames: expected 'train', 'heldout', 'all' or a range, got "
                             f"{frames!r}")
        return np.array([p for p, t in enumerate(pairs[:, 0]) if int(t) in frames], np.int64)

    def set_epoch(self, epoch: int) -> None:
        """Draw new augmentations (crop position, flips) for this epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_caches"] = None  # memory maps are reopened in the receiving process
        return state

    def _cache(self, v: int) -> VideoCache:
        if self._caches is None:
            self._caches = [load_cache(p) for p in self.paths]
        return self._caches[v]

    def augment_params(self, i: int) -> dict[str, Any]:
        """The augmentation of item ``i`` this epoch: ``top``, ``left``, ``hflip``, ``vflip``."""
        v = self.items[i][0]
        h, w = self.sizes[v]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        ch, cw = self.crop if self.crop is not None else (h, w)
        top = int(rng.integers(0, h - ch + 1))
        left = int(rng.integers(0, w - cw + 1))
        hf = bool(rng.random() < 0.5) and self.hflip
        vf = bool(rng.random() < 0.5) and self.vflip
        return {"top": top, "left": left, "height": ch, "width": cw, "hflip": hf, "vflip": vf}

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} pairs")
        i = i % len(self)
        v, p, t1, t2 = self.items[i]
        cache = self._cache(v)
        a = self.augment_params(i)
        img1 = np.asarray(cache.frames[t1], dtype=np.float32) / 255.0  # (H, W, 3)
        img2 = np.asarray(cache.frames[t2], dtype=np.float32) / 255.0
        flow = np.asarray(cache.flows[p], dtype=np.float32)  # (H, W, 2)
        img1, img2, flow = augment_pair(img1, img2, flow, a)
        def to_chw(x: np.ndarray) -> torch.Tensor:  # (H, W, C) -> (C, H, W)
            return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))

        return {"image1": to_chw(img1), "image2": to_chw(img2), "flow": to_chw(flow),
                "video": self.names[v], "frame": t1}


def augment_pair(img1: np.ndarray, img2: np.ndarray, flow: np.ndarray,
                 params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop and flip two frames and their forward flow consistently.

    Args:
        img1, img2: ``(H, W, C)`` arrays; flow: ``(H, W, 2)`` forward flow img1 -> img2.
        params: ``top``, ``left``, ``height``, ``width`` (the crop window), ``hflip``, ``vflip``.

    Returns:
        The three arrays, cropped (flow vectors unchanged: a crop only moves the origin), then
        mirrored: a left-right flip maps pixel ``x`` to ``W - 1 - x``, so its motion ``u``
        becomes ``-u`` (and ``v`` becomes ``-v`` for a top-bottom flip).
    """
    top, left = params["top"], params["left"]
    win = (slice(top, top + params["height"]), slice(left, left + params["width"]))
    img1, img2, flow = img1[win], img2[win], flow[win]
    if params.get("hflip"):
        img1, img2 = img1[:, ::-1], img2[:, ::-1]
        flow = flow[:, ::-1] * np.array([-1.0, 1.0], dtype=flow.dtype)
    if params.get("vflip"):
        img1, img2 = img1[::-1], img2[::-1]
        flow = flow[::-1] * np.array([1.0, -1.0], dtype=flow.dtype)
    return img1, img2, flow
