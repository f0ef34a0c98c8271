"""Training data that streams from disk (issue 11): :class:`s3lib.data.pairs.VideoPairs` reads a
prepare-video cache one pair at a time and gives, bit for bit, the pairs the in-memory stacking
gave; training and evaluation on it give the same records; its peak memory does not grow with
the size of the cache. (MPI-Sintel's lazy pairs: tests/test_sintel.py.)"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from s3lib.data import video
from s3lib.data.pairs import (FlowPairs, LazyPairs, VideoPairs, batch_of, crop4_window,
                              cube_pairs, heldout_cube_pairs, load_pairs, video_pairs)
from s3lib.models import SegmentationNet
from s3lib.train import TrainConfig, _batch, evaluate, train

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def odd_cache(slide_video, tmp_path_factory):
    """The slide clip at 46x30: sides that are not multiples of 4 (cropped to 44x28)."""
    return video.prepare_video(slide_video, tmp_path_factory.mktemp("odd") / "odd",
                               size=(46, 30), progress=False)


def old_stacking(cache: Path, split: str) -> FlowPairs:
    """The reference: the split's pairs stacked in memory straight from the cache files, as
    ``video_pairs`` did before it streamed (frame t / 255 in float32, float16 flow as float32,
    centre-cropped to multiples of 4)."""
    frames = np.load(cache / "frames.npy")
    flows = np.load(cache / "flows.npy")
    pairs, shots = np.load(cache / "pairs.npy"), np.load(cache / "shots.npy")
    train_idx, held_idx = video.split_pairs(pairs, shots)
    sel = {"train": train_idx, "heldout": held_idx, "all": np.arange(len(pairs))}[split]
    images = torch.from_numpy(frames[pairs[sel, 0]].astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    flow = torch.from_numpy(flows[sel].astype(np.float32)).permute(0, 3, 1, 2)
    h, w = images.shape[-2:]
    h4, w4 = h // 4 * 4, w // 4 * 4
    top, left = (h - h4) // 2, (w - w4) // 2
    cut = lambda x: x[..., top:top + h4, left:left + w4].contiguous()  # noqa: E731
    name = json.loads((cache / "index.json").read_text())["name"]
    return FlowPairs(cut(images), cut(flow), None, [f"{name}:{t}" for t in pairs[sel, 0]])


def run_records(records):
    return [{k: v for k, v in r.items() if k != "elapsed"} for r in records]


# ----------------------------------------------------------------------------- the items
@pytest.mark.parametrize("which", ["video_cache", "odd_cache"])
@pytest.mark.parametrize("split", ["train", "heldout", "all"])
def test_lazy_items_are_the_old_stacking(request, which, split):
    cache = request.getfixturevalue(which)
    ref = old_stacking(cache, split)
    ds = VideoPairs(cache, split)
    assert isinstance(ds, torch.utils.data.Dataset) and isinstance(ds, LazyPairs)
    assert len(ds) == len(ref) > 0 and ds.size == ref.size and ds.source == ref.source
    assert ds.size == ((32, 48) if which == "video_cache" else (28, 44)) and ds.labels is None
    for i in range(len(ds)):
        item = ds[i]
        assert set(item) == {"image", "flow", "source"} and item["source"] == ref.source[i]
        assert item["image"].dtype == item["flow"].dtype == torch.float32
        assert torch.equal(item["image"], ref.images[i]) and torch.equal(item["flow"], ref.flows[i])
    mem = video_pairs(cache, split)  # the in-memory version: the same tensors
    assert isinstance(mem, FlowPairs) and mem.source == ref.source
    assert torch.equal(mem.images, ref.images) and torch.equal(mem.flows, ref.flows)
    if split != "all":
        assert isinstance(load_pairs(cache, split), VideoPairs)


def test_split_is_the_old_split_and_frames_are_never_shared(video_cache):
    pairs, shots = np.load(video_cache / "pairs.npy"), np.load(video_cache / "shots.npy")
    train_idx, held_idx = video.split_pairs(pairs, shots)
    train_p, held = load_pairs(video_cache, "train"), load_pairs(video_cache, "heldout")
    first = lambda p: [int(s.split(":")[1]) for s in p.source]  # noqa: E731
    assert first(train_p) == pairs[train_idx, 0].tolist()
    assert first(held) == pairs[held_idx, 0].tolist()
    assert max(first(train_p)) + 1 < min(first(held))  # gap 1: no frame in both


def test_a_folder_of_caches_streams_them_in_order(video_cache, tmp_path):
    import shutil

    for name in ("b", "a"):
        shutil.copytree(video_cache, tmp_path / "caches" / name)
    ds = VideoPairs(tmp_path / "caches", "train")
    one = old_stacking(video_cache, "train")
    assert len(ds) == 2 * len(one)  # the index names the cache "slide" in both copies
    assert ds.source == one.source * 2 and [p.name for p in ds.paths] == ["a", "b"]
    assert torch.equal(ds.images, torch.cat([one.images, one.images]))


def test_images_and_flows_are_stacked_once_on_first_use(video_cache):
    ds = VideoPairs(video_cache, "train")
    assert ds._stacked is None
    images = ds.images
    assert images is ds.images and ds.flows.shape == (len(ds), 2, *ds.size)
    assert torch.equal(images, old_stacking(video_cache, "train").images)
    assert "VideoPairs" in repr(ds) and "48x32" in repr(ds)


def test_lazy_pairs_pickle_without_arrays_and_load_in_workers(video_cache):
    ds = VideoPairs(video_cache, "all")
    ds.images  # stacked here: not sent along
    blob = pickle.dumps(ds)
    assert len(blob) < 20_000
    again = pickle.loads(blob)
    assert again._stacked is None and torch.equal(again[3]["flow"], ds[3]["flow"])
    loader = torch.utils.data.DataLoader(again, batch_size=4, num_workers=2)
    batches = list(loader)
    assert torch.equal(torch.cat([b["image"] for b in batches]), ds.images)
    assert sum((b["source"] for b in batches), []) == ds.source


def test_flow_pairs_are_a_dataset_with_the_same_items():
    pairs = cube_pairs((0,), 16, 4)
    assert isinstance(pairs, torch.utils.data.Dataset) and len(pairs) == 3
    item = pairs[1]
    assert set(item) == {"image", "flow", "label", "source"} and item["source"] == "cube0:1"
    assert torch.equal(item["image"], pairs.images[1])
    assert torch.equal(item["label"], pairs.labels[1])
    assert pairs[-1]["source"] == "cube0:2" and pairs[np.int64(0)]["source"] == "cube0:0"
    with pytest.raises(IndexError):
        pairs[3]
    batch = next(iter(torch.utils.data.DataLoader(pairs, batch_size=3)))
    assert torch.equal(batch["image"], pairs.images) and torch.equal(batch["label"], pairs.labels)
    unnamed = FlowPairs(pairs.images, pairs.flows)
    assert set(unnamed[0]) == {"image", "flow", "source"}


class Wrapped(torch.utils.data.Dataset):
    """Any Dataset with this module's items (not a FlowPairs): the generic path."""

    def __init__(self, pairs: FlowPairs) -> None:
        self.pairs, self.size = pairs, pairs.size
        self.reads = 0

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i):
        self.reads += 1
        return {k: (v.clone() if isinstance(v, torch.Tensor) else v)
                for k, v in self.pairs[i].items()}


def test_batch_of_any_dataset_is_the_tensor_indexing():
    pairs = cube_pairs((0,), 16, 6)
    idx = torch.tensor([4, 0, 4, 2])
    for a, b in zip(batch_of(pairs, idx), batch_of(Wrapped(pairs), idx)):
        assert torch.equal(a, b)
    for a, b in zip(batch_of(pairs, slice(3, 9)), batch_of(Wrapped(pairs), slice(3, 9))):
        assert torch.equal(a, b) and len(a) == 2
    sym, zoom = torch.tensor([1, 0, 1, 1]), (torch.full((4,), 1.3), torch.zeros(4, 2))
    for a, b in zip(_batch(pairs, idx, sym, "cpu", torch.ones(4), zoom),
                    _batch(Wrapped(pairs), idx, sym, "cpu", torch.ones(4), zoom)):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("which", ["video_cache", "odd_cache"])
def test_two_steps_on_the_lazy_cache_equal_two_steps_in_memory(request, which, tmp_path):
    cache = request.getfixturevalue(which)
    config = TrainConfig(dataset="video", data=str(cache), num_segments=3, steps=2, minutes=None,
                         batch=3, eval_every=1, width=4, levels=2, zoom=1.5, reseed_every=1)
    lazy = train(config, tmp_path / "lazy", progress=False)  # load_pairs: VideoPairs
    mem = train(config, tmp_path / "mem", progress=False,
                data=(video_pairs(cache, "train"), video_pairs(cache, "heldout")))
    assert run_records(lazy) == run_records(mem) and len(lazy) == 2
    a = torch.load(tmp_path / "lazy" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "mem" / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert torch.equal(a["generator"], b["generator"])  # the same random numbers drawn
    assert a["config"]["size"] == list(VideoPairs(cache).size)


def test_reading_ahead_gives_the_same_run_for_any_worker_count_and_resumes(video_cache,
                                                                          tmp_path):
    """``workers``: DataLoader processes read the next batches; the indices come from their own
    stream (RandomBatches), so 1 and 2 workers train the same network, a resumed run skips the
    batches already used, and the stream differs from the one of ``workers=0``."""
    base = dict(dataset="video", data=str(video_cache), num_segments=3, minutes=None, batch=3,
                eval_every=1, width=4, levels=2, reseed_every=1, reseed_until=1.0,
                merge_below=0.0, schedule="constant")
    # nothing that depends on the budget, so a resumed run equals an uninterrupted one (a run
    # re-seeds at its last step only when it has more budget left: the merge rule would)
    one = train(TrainConfig(steps=4, workers=1, **base), tmp_path / "w1", progress=False)
    two = train(TrainConfig(steps=4, workers=2, **base), tmp_path / "w2", progress=False)
    assert run_records(one) == run_records(two) and len(one) == 4
    train(TrainConfig(steps=2, workers=2, **base), tmp_path / "r", progress=False)
    resumed = train(TrainConfig(steps=4, workers=2, **base), tmp_path / "r", resume=True,
                    progress=False)
    assert run_records(resumed) == run_records(two)[2:]
    none = train(TrainConfig(steps=4, workers=0, **base), tmp_path / "w0", progress=False)
    assert run_records(none) != run_records(one)


def test_random_batches_are_one_stream_and_skip_on_resume():
    from s3lib.data.pairs import RandomBatches

    full = iter(RandomBatches(10, 3, seed=5))
    batches = [next(full) for _ in range(4)]
    later = iter(RandomBatches(10, 3, seed=5, skip=2))
    assert [next(later), next(later)] == batches[2:]
    assert all(len(b) == 3 and all(0 <= i < 10 for i in b) for b in batches)
    with pytest.raises(ValueError, match="skip"):
        RandomBatches(10, 3, seed=5, skip=-1)


@pytest.mark.parametrize("kwargs, message", [({"workers": -1}, "workers"),
                                             ({"workers": 2}, "cube is rendered in memory")])
def test_bad_workers_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(steps=1, **kwargs).validate()


def test_cube_training_through_any_dataset_is_bit_identical(tmp_path):
    """The cube keeps its fast path (tensor indexing), and a Dataset of the same items draws
    the same random numbers and gives the same network, scores and labels-based metrics."""
    config = TrainConfig(size=16, num_segments=3, steps=3, minutes=None, batch=2, frames=4,
                         eval_every=1, width=4, levels=2, reseed_every=2, zoom=1.5)
    pairs, held = cube_pairs((0,), 16, 4), heldout_cube_pairs(16, 3)
    fast = train(config, tmp_path / "fast", progress=False, data=(pairs, held))
    wrapped = Wrapped(pairs)
    slow = train(config, tmp_path / "slow", progress=False, data=(wrapped, Wrapped(held)))
    assert run_records(fast) == run_records(slow) and "miou" in slow[-1]
    assert wrapped.reads == 3 * config.batch  # the batches' items only


def test_evaluate_streams_and_gives_the_in_memory_numbers(odd_cache):
    torch.manual_seed(0)
    model = SegmentationNet(3, 4, levels=2)
    lazy, mem = VideoPairs(odd_cache, "all"), video_pairs(odd_cache, "all")
    for loss in ("affine", "entropy"):
        for batch in (1, 4, 32):
            assert evaluate(model, lazy, loss, batch=batch) == \
                evaluate(model, mem, loss, batch=batch)
    assert lazy._stacked is None  # read in batches, never stacked
    cube = heldout_cube_pairs(16, 3)
    assert evaluate(model, Wrapped(cube), batch=2) == evaluate(model, cube, batch=2)


# ----------------------------------------------------------------------------- bad input
def test_bad_data_raises_naming_the_path(tmp_path, video_cache):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_pairs(tmp_path / "missing", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=f"{tmp_path / 'empty'}: neither a video cache"):
        load_pairs(tmp_path / "empty", "train")
    with pytest.raises(ValueError, match="frames: expected 'train'"):
        VideoPairs(video_cache, "test")
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(video_cache, broken)
    (broken / "index.json").unlink()
    with pytest.raises(ValueError, match=f"{broken}: neither a video cache"):
        load_pairs(broken, "train")
    shutil.copy(video_cache / "index.json", broken / "index.json")
    (broken / "flows.npy").write_bytes(b"not an array")
    with pytest.raises(ValueError, match=f"{broken / 'flows.npy'}: unreadable"):
        load_pairs(broken, "train")


def test_crop4_window():
    assert crop4_window(32, 48) == (0, 0, 32, 48)
    assert crop4_window(30, 46) == (1, 1, 28, 44)
    assert crop4_window(31, 47) == (1, 1, 28, 44)
    assert crop4_window(272 // 4, 640 // 4) == (0, 0, 68, 160)


# ----------------------------------------------------------------------------- memory
def synthetic_cache(path: Path, frames: int, h: int = 48, w: int = 64) -> Path:
    """A cache of ``frames`` random frames in one shot with random flow (gap 1), written by the
    cache writer of prepare-video."""
    rng = np.random.default_rng(frames)
    pixels = rng.integers(0, 256, (frames, h, w, 3), dtype=np.uint8)
    pairs = video.pairs_in_shots(np.array([[0, frames]]), 1)
    flows = (rng.normal(0, 2, (h, w, 2)).astype(np.float32) for _ in range(len(pairs)))
    return video.write_cache(path, pixels, pairs, np.array([[0, frames]]), flows)


CHILD = """
import sys
from s3lib.data.pairs import load_pairs
from s3lib.train import TrainConfig, train
data, out, stack = sys.argv[1], sys.argv[2], sys.argv[3] == "stack"
if stack:  # what training in memory would have held
    train_p = load_pairs(data, "train")
    train_p.images, train_p.flows
config = TrainConfig(dataset="video", data=data, num_segments=2, steps=3, minutes=None,
                     batch=4, eval_every=3, width=4, levels=2, threads=1)
train(config, out, progress=False)
"""

# Runs its arguments as a command and prints the command's peak RSS. A fresh, small process
# in between: Linux keeps a process's peak RSS across exec, so a child started straight from
# this (large) test process would start at this process's size.
PEAK = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss_mb(data: Path, out: Path, stack: bool = False) -> float:
    """Peak resident memory (MB) of a fresh process that trains 3 steps on ``data`` (and
    evaluates on all its held-out pairs)."""
    done = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-c", CHILD, str(data),
                           str(out), "stack" if stack else "lazy"], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=True)
    kb = int(done.stdout.split()[-1])
    return kb / (1 << 20) if sys.platform == "darwin" else kb / 1024  # macOS: bytes


@pytest.mark.skipif(sys.platform == "win32", reason="resource is POSIX only")
def test_peak_memory_does_not_grow_with_the_data_size(tmp_path):
    # held-out pairs: 80 and 800, so both runs evaluate in several batches of 32 (the first
    # few batches grow the allocator's pool, by up to 20 MB, and then it stays)
    small = synthetic_cache(tmp_path / "small", 400)
    big = synthetic_cache(tmp_path / "big", 4000)  # 10x: 3200 training pairs, 188 MB as float32
    stacked_mb = 3200 * 5 * 48 * 64 * 4 / 2 ** 20
    lazy_small = peak_rss_mb(small, tmp_path / "run_small")
    lazy_big = peak_rss_mb(big, tmp_path / "run_big")
    in_memory_big = peak_rss_mb(big, tmp_path / "run_stack", stack=True)
    message = (f"peak RSS: lazy {lazy_small:.0f} MB (small) / {lazy_big:.0f} MB (10x), "
               f"stacked 10x {in_memory_big:.0f} MB (its tensors: {stacked_mb:.0f} MB)")
    assert lazy_big - lazy_small < 0.15 * stacked_mb, message  # measured: -2 % to 5 %
    assert in_memory_big - lazy_big > 0.6 * stacked_mb, message  # the measure sees the data
