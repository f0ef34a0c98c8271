"""s3lib.data.video: shot cuts, the flow cache, sharding, and the flow-aware video dataset."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from s3lib.data import video
from s3lib.data.clips import read_frames
from s3lib.flow import warp

W, H = 64, 48
CUT = 7  # the synthetic clip: frames 0..6 shot A, frames 7..11 shot B
SPEED = 2  # pixels per frame: shot A moves right, shot B moves down


# ----------------------------------------------------------------------------- helpers
def texture(seed: int, tint, h: int = H + 40, w: int = W + 40) -> np.ndarray:
    """A smooth random texture, tinted: ``(h, w, 3)`` uint8 RGB."""
    import cv2

    rng = np.random.default_rng(seed)
    g = cv2.GaussianBlur(rng.uniform(0, 255, (h, w)).astype(np.float32), (0, 0), 2.0)
    g = cv2.normalize(g, None, 30, 230, cv2.NORM_MINMAX)
    return np.clip(g[..., None] * np.asarray(tint, np.float32), 0, 255).astype(np.uint8)


def two_shot_frames(shift: int = 0) -> np.ndarray:
    """``(12, H, W, 3)``: a green texture moving right, a cut at 7, a magenta one moving down."""
    a, b = texture(1 + shift, (0.3, 1.0, 0.35)), texture(2 + shift, (1.0, 0.25, 0.9))
    shot_a = [a[20:20 + H, 20 - SPEED * k:20 - SPEED * k + W] for k in range(CUT)]
    shot_b = [b[20 - SPEED * k:20 - SPEED * k + H, 20:20 + W] for k in range(12 - CUT)]
    return np.stack(shot_a + shot_b)


def write_video(path: Path, frames: np.ndarray, fourcc: str = "mp4v") -> Path:
    import cv2

    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} here"
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "two_shots.mp4", two_shot_frames())


@pytest.fixture(scope="module")
def cache(clip, tmp_path_factory) -> Path:
    """A cache of the synthetic clip (gap 1, DIS), shared read-only by several tests."""
    return video.prepare_video(clip, tmp_path_factory.mktemp("cache") / "two_shots",
                               progress=False)


@pytest.fixture
def own_cache(cache, tmp_path) -> Path:
    """A private copy of :func:`cache` that a test may damage."""
    return Path(shutil.copytree(cache, tmp_path / "two_shots"))


@pytest.fixture
def video_dir(tmp_path) -> Path:
    """A folder of three short videos (and a file that is not a video)."""
    d = tmp_path / "videos"
    d.mkdir()
    for k, name in enumerate(["c.mp4", "a.mp4", "b.avi"]):
        write_video(d / name, two_shot_frames(shift=10 * k)[:6], "MJPG" if name.endswith("avi")
                    else "mp4v")
    (d / "notes.txt").write_text("not a video\n")
    return d


def mtimes(folder: Path) -> dict[str, int]:
    return {f.name: f.stat().st_mtime_ns for f in sorted(folder.iterdir())}


# ----------------------------------------------------------------------------- shot cuts
def test_detect_cuts_on_synthetic_shots(clip):
    raw = two_shot_frames()
    assert video.detect_cuts(raw) == [CUT]
    decoded = read_frames(clip)  # after lossy mp4v encoding
    assert decoded.shape == (12, H, W, 3)
    assert video.detect_cuts(decoded) == [CUT]
    d = video.histogram_distances(decoded)
    assert d.shape == (11,) and d[CUT - 1] > 0.9 and np.delete(d, CUT - 1).max() < 0.15
    assert video.detect_cuts(raw[:CUT]) == [] and video.detect_cuts(raw[:1]) == []


def test_detect_cuts_on_bikes_and_bigbuckbunny():
    # bikes.mp4 has six shots. Checked by eye: a montage of frames 29|30, 75|76, 136|137,
    # 186|187 and 241|242 shows a different scene on each side (a road from above -> a man in a
    # suit; a taxi -> a cyclist; a van and cyclist -> a railing; the railing -> a pedestrian by a
    # bicycle; that bicycle -> a close-up of wheels), while frames 96..101 (the largest distance
    # inside a shot, a car crossing close to the camera) are the same scene. The distances
    # are 0.51..0.87 at the cuts and at most 0.25 elsewhere, at 32x14 to 640x272 pixels.
    bikes = read_frames("bikes", size=(64, 27))
    assert len(bikes) == 250
    assert video.detect_cuts(bikes) == [30, 76, 137, 187, 242]
    d = np.sort(video.histogram_distances(bikes))
    assert d[-5] > 0.45 and d[-6] < 0.3  # a wide margin on both sides of the threshold
    # Big Buck Bunny's 132 frames are one continuous shot (the bunny leaving his burrow)
    bunny = read_frames("bigbuckbunny", size=(64, 36))
    assert video.detect_cuts(bunny) == []
    assert video.histogram_distances(bunny).max() < 0.15


def test_shots_pairs_and_split():
    shots = video.shots_from_cuts([10], 15)
    np.testing.assert_array_equal(shots, [[0, 10], [10, 15]])
    pairs = video.pairs_in_shots(shots, 1)
    assert len(pairs) == 9 + 4 and not any(a < 10 <= b for a, b in pairs)
    np.testing.assert_array_equal(video.pairs_in_shots(shots, 3)[:, 0], [*range(7), 10, 11])
    train, held = video.split_pairs(pairs, shots, 0.2)
    # shot [0, 10): frames 8, 9 held out: train (0,1)..(6,7), held (8,9), (7,8) dropped;
    # shot [10, 15): frame 14 held out: train (10,11)..(12,13), (13,14) dropped, none held
    np.testing.assert_array_equal(pairs[train], [[t, t + 1] for t in [*range(7), 10, 11, 12]])
    np.testing.assert_array_equal(pairs[held], [[8, 9]])
    assert not set(pairs[train].ravel()) & set(pairs[held].ravel())
    train0, held0 = video.split_pairs(pairs, shots, 0.0)
    assert len(train0) == len(pairs) and len(held0) == 0
    with pytest.raises(ValueError, match="heldout_fraction"):
        video.split_pairs(pairs, shots, 1.0)


# ----------------------------------------------------------------------------- the cache
def test_prepare_writes_a_valid_cache(cache, clip):
    c = video.load_cache(cache, verify=True)
    assert c.name == "two_shots" and c.gap == 1 and c.cuts == [CUT]
    assert c.frames.shape == (12, H, W, 3) and c.frames.dtype == np.uint8
    assert c.flows.shape == (10, H, W, 2) and c.flows.dtype == np.float16
    np.testing.assert_array_equal(c.pairs, [[t, t + 1] for t in [*range(6), *range(7, 11)]])
    np.testing.assert_array_equal(c.shots, [[0, CUT], [CUT, 12]])
    np.testing.assert_array_equal(c.frames, read_frames(clip))
    idx = json.loads((cache / "index.json").read_text())
    import cv2

    assert idx["opencv"] == cv2.__version__ and idx["version"] == video.CACHE_VERSION
    assert idx["settings"] == {"size": None, "flow": "dis", "gap": 1, "max_frames": None,
                               "cut_threshold": video.CUT_THRESHOLD,
                               "hist_bins": video.HIST_BINS}
    assert idx["source"]["bytes"] == clip.stat().st_size
    assert idx["counts"] == {"frames": 12, "pairs": 10, "shots": 2}
    # the flow follows the convention: shot A moves right (+x), shot B down (+y)
    inner = (slice(8, -8), slice(8, -8))
    u_a = np.median(np.asarray(c.flows[:6], np.float32)[:, inner[0], inner[1]], axis=(0, 1, 2))
    u_b = np.median(np.asarray(c.flows[6:], np.float32)[:, inner[0], inner[1]], axis=(0, 1, 2))
    np.testing.assert_allclose(u_a, [SPEED, 0], atol=0.3)
    np.testing.assert_allclose(u_b, [0, SPEED], atol=0.3)
    assert not list(cache.parent.glob(".*"))  # no temporary folder left behind


def test_prepare_gap_size_max_frames_and_farneback(clip, tmp_path):
    c = video.load_cache(video.prepare_video(clip, tmp_path / "c", size=(32, 24), gap=2,
                                             max_frames=10, flow="farneback", progress=False))
    assert c.frames.shape == (10, 24, 32, 3) and c.flows.shape == (len(c.pairs), 24, 32, 2)
    np.testing.assert_array_equal(c.pairs, [[t, t + 2] for t in [*range(5), 7]])
    assert c.index["settings"]["flow"] == "farneback" and c.index["frame_size"] == [32, 24]


def test_rerun_skips_a_complete_cache(own_cache, clip, capsys):
    before = mtimes(own_cache)
    assert video.prepare_video(clip, own_cache, progress=True) == own_cache
    assert mtimes(own_cache) == before
    assert "skip" in capsys.readouterr().err
    os.utime(clip)  # touched, same contents: the sha256 still matches
    video.prepare_video(clip, own_cache, progress=False)
    assert mtimes(own_cache) == before


def test_rerun_rebuilds_when_settings_or_source_differ(own_cache, clip, tmp_path, capsys):
    before = mtimes(own_cache)
    video.prepare_video(clip, own_cache, gap=2, progress=True)
    assert "rebuild" in capsys.readouterr().err
    c = video.load_cache(own_cache)
    assert c.gap == 2 and len(c.pairs) == 5 + 3
    assert mtimes(own_cache)["index.json"] != before["index.json"]
    # same settings, other contents under the same name: rebuilt from the new file
    other = write_video(tmp_path / "two_shots.mp4", two_shot_frames(shift=5)[:9])
    video.prepare_video(other, own_cache, gap=2, progress=False)
    assert video.load_cache(own_cache).frames.shape[0] == 9


def test_incomplete_cache_is_not_accepted(own_cache, clip):
    (own_cache / "index.json").unlink()
    with pytest.raises(ValueError, match=r"index\.json: missing"):
        video.load_cache(own_cache)
    video.prepare_video(clip, own_cache, progress=False)  # rebuilt, not skipped
    assert video.load_cache(own_cache, verify=True).frames.shape == (12, H, W, 3)


def test_interrupted_prepare_leaves_old_cache_and_no_temp(own_cache, clip, monkeypatch):
    import s3lib.flow

    before = mtimes(own_cache)
    calls = []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return np.zeros((H, W, 2), np.float32)

    monkeypatch.setattr(s3lib.flow, "estimate_flow", dying)
    with pytest.raises(KeyboardInterrupt):
        video.prepare_video(clip, own_cache, gap=2, progress=False)
    assert mtimes(own_cache) == before and video.load_cache(own_cache).gap == 1
    assert sorted(p.name for p in own_cache.parent.iterdir()) == ["two_shots"]
    new = own_cache.parent / "new"
    with pytest.raises(KeyboardInterrupt):
        calls.clear()
        video.prepare_video(clip, new, progress=False)
    assert not new.exists() and sorted(p.name for p in own_cache.parent.iterdir()) == ["two_shots"]


def _set_index(path: Path, **changes):
    idx = json.loads((path / "index.json").read_text())
    idx.update(changes)
    (path / "index.json").write_text(json.dumps(idx))


@pytest.mark.parametrize("damage, file, message", [
    (lambda p: (p / "index.json").write_text("{not json"), "index.json", "corrupt"),
    (lambda p: (p / "index.json").write_text("[1, 2]"), "index.json", "not an s3lib video cache"),
    (lambda p: _set_index(p, version=99), "index.json", "version 99"),
    (lambda p: _set_index(p, opencv="3.0.0"), "index.json", "OpenCV 3.0.0"),
    (lambda p: _set_index(p, counts={"frames": 12, "pairs": 11, "shots": 2}), "two_shots",
     "counts"),
    (lambda p: (p / "flows.npy").write_bytes((p / "flows.npy").read_bytes()[:5000]), "flows.npy",
     "truncated"),
    (lambda p: (p / "shots.npy").unlink(), "shots.npy", "missing"),
    (lambda p: np.save(p / "frames.npy", np.zeros((12, H, W - 1, 3), np.uint8)), "frames.npy",
     r"shape \[12, 48, 63, 3\]"),
    (lambda p: np.save(p / "flows.npy", np.zeros((10, H, W, 2), np.float32)), "flows.npy",
     "dtype float32"),
    (lambda p: np.save(p / "pairs.npy", np.where(np.arange(10)[:, None] == 5, [[6, 7]],
                                                 np.load(p / "pairs.npy"))), "two_shots",
     "crosses a shot cut"),
    (lambda p: np.save(p / "pairs.npy", np.load(p / "pairs.npy") + 1), "two_shots",
     "not .t, t . 1. inside the clip"),
])
def test_corrupt_cache_raises_naming_the_file(own_cache, clip, damage, file, message):
    damage(own_cache)
    with pytest.raises(ValueError, match=message) as err:
        video.load_cache(own_cache)
    assert file in str(err.value)
    video.prepare_video(clip, own_cache, progress=False)  # a damaged cache is rebuilt
    video.load_cache(own_cache, verify=True)


def test_verify_detects_changed_contents(own_cache):
    flows = np.load(own_cache / "flows.npy")
    np.save(own_cache / "flows.npy", flows[::-1].copy())  # same shape and dtype
    video.load_cache(own_cache)  # structure is fine ...
    with pytest.raises(ValueError, match="flows.npy: contents differ"):
        video.load_cache(own_cache, verify=True)  # ... the checksum is not


def test_missing_cache_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        video.load_cache(tmp_path / "nope")


# ----------------------------------------------------------------------------- bad input
def test_bad_videos_raise_naming_the_file(tmp_path):
    junk = tmp_path / "x.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ValueError, match=r"x\.mp4"):
        video.prepare_video(junk, tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()
    short = write_video(tmp_path / "short.mp4", two_shot_frames()[:2])
    with pytest.raises(ValueError, match=r"short\.mp4: 2 frame\(s\), shorter than the gap"):
        video.prepare_video(short, tmp_path / "s", gap=2, progress=False)
    cut_only = write_video(tmp_path / "cut.mp4", two_shot_frames()[CUT - 1:CUT + 1])
    with pytest.raises(ValueError, match=r"cut\.mp4: no two frames 1 apart within one shot"):
        video.prepare_video(cut_only, tmp_path / "c", progress=False)
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"mine: exists and holds files .*notes\.txt"):
        video.prepare_video(write_video(tmp_path / "ok.mp4", two_shot_frames()[:3]), precious,
                            progress=False)
    assert (precious / "notes.txt").read_text() == "keep me"
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        video.prepare_video(tmp_path / "missing.mp4", tmp_path / "m", progress=False)
    for kwargs, what in [({"gap": 0}, "gap"), ({"flow": "lk"}, "flow"),
                         ({"size": (4, 4)}, "size"), ({"max_frames": 1}, "max_frames")]:
        with pytest.raises(ValueError, match=what):
            video.prepare_video(short, tmp_path / "s", progress=False, **kwargs)


def test_one_bad_video_among_many(video_dir, tmp_path):
    (video_dir / "broken.mp4").write_bytes(b"\x00garbage" * 300)
    with pytest.raises(ValueError, match=r"1 of 4 videos failed.*broken\.mp4"):
        video.prepare_videos(video_dir, tmp_path / "out", progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a", "b", "c"]


# ----------------------------------------------------------------------------- many videos
def test_list_videos_dir_txt_and_names(video_dir, tmp_path):
    listed = video.list_videos(video_dir)
    assert [p.name for _, p in listed] == ["a.mp4", "b.avi", "c.mp4"]
    lst = tmp_path / "list.txt"
    lst.write_text(f"# my videos\nvideos/c.mp4\n\n{video_dir / 'a.mp4'}   # absolute\nbikes\n"
                   "videos/c.mp4\n")
    labels = [label for label, _ in video.list_videos(lst)]
    assert labels == sorted([str(video_dir / "a.mp4"), "bikes", "videos/c.mp4"])
    (tmp_path / "bad.txt").write_text("videos/a.mp4\nvideos/zzz.mp4\n")
    with pytest.raises(FileNotFoundError, match=r"bad\.txt, line 2: .*zzz\.mp4"):
        video.list_videos(tmp_path / "bad.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no video files"):
        video.list_videos(tmp_path / "empty")


def test_cache_names_disambiguate_repeated_stems():
    names = video.cache_names(["x/clip.mp4", "y/clip.mp4", "y/other.avi", "z/clip.avi"])
    assert names[2] == "other"
    assert len(set(names)) == 4 and all(n.startswith("clip-") for n in names[:2] + [names[3]])
    assert video.cache_names(["y/clip.mp4", "x/clip.mp4"]) == [names[1], names[0]]  # stable


@settings(max_examples=60, deadline=None)
@given(items=st.lists(st.text(min_size=1, max_size=5), unique=True, max_size=40),
       count=st.integers(1, 9))
def test_shards_partition_the_list(items, count):
    items = sorted(items)
    shards = [video.shard_items(items, i, count) for i in range(count)]
    flat = [x for s in shards for x in s]
    assert sorted(flat) == items and len(flat) == len(set(flat))  # union = all, disjoint
    assert max(map(len, shards)) - min(map(len, shards)) <= 1  # balanced
    assert all(s == sorted(s) for s in shards)


@pytest.mark.parametrize("i, n", [(2, 2), (-1, 3), (0, 0)])
def test_bad_shard(i, n):
    with pytest.raises(ValueError, match="0 <= I < N"):
        video.shard_items([1, 2, 3], i, n)


def test_prepare_videos_shards_cover_the_folder(video_dir, tmp_path):
    out = tmp_path / "out"
    made = [video.prepare_videos(video_dir, out, shard=(i, 2), progress=False) for i in range(2)]
    assert [[p.name for p in m] for m in made] == [["a", "c"], ["b"]]
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "c"]


def test_workers_give_identical_caches(video_dir, tmp_path):
    one = video.prepare_videos(video_dir, tmp_path / "w1", workers=1, progress=False)
    two = video.prepare_videos(video_dir, tmp_path / "w2", workers=2, progress=False)
    assert [p.name for p in one] == [p.name for p in two] == ["a", "b", "c"]
    for p1, p2 in zip(one, two):
        i1, i2 = (json.loads((p / "index.json").read_text()) for p in (p1, p2))
        assert i1 == i2  # settings, sources, counts and every file's sha256
        for f in video.FILES:
            assert (p1 / f).read_bytes() == (p2 / f).read_bytes()


# ----------------------------------------------------------------------------- the dataset
def test_dataset_items(cache):
    ds = video.VideoFlowDataset(cache, frames="all")
    assert len(ds) == 10 and isinstance(ds, torch.utils.data.Dataset)
    item = ds[0]
    assert set(item) == {"image1", "image2", "flow", "video", "frame"}
    assert item["image1"].shape == item["image2"].shape == (3, H, W)
    assert item["flow"].shape == (2, H, W)
    for k in ("image1", "image2", "flow"):
        assert item[k].dtype == torch.float32
    assert 0 <= item["image1"].min() and item["image1"].max() <= 1
    assert item["image1"].max() > 0.5  # scaled from uint8, not left at 0..255 or all dark
    c = video.load_cache(cache)
    np.testing.assert_allclose(item["image2"].permute(1, 2, 0).numpy(), c.frames[1] / 255,
                               atol=1e-6)
    np.testing.assert_array_equal(item["flow"].permute(1, 2, 0).numpy(), c.flows[0])
    assert item["video"] == "two_shots" and item["frame"] == 0
    assert [ds[k]["frame"] for k in range(len(ds))] == [*range(6), *range(7, 11)]
    assert ds[-1]["frame"] == 10
    with pytest.raises(IndexError):
        ds[10]
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["image1"].shape == (4, 3, H, W) and batch["frame"].tolist() == [0, 1, 2, 3]


def test_dataset_splits_never_share_frames_or_cross_cuts(cache):
    train = video.VideoFlowDataset(cache, frames="train")
    held = video.VideoFlowDataset(cache, frames="heldout")
    # shot [0, 7): frame 6 held out (round(1.4) = 1), shot [7, 12): frame 11 (round(1.0) = 1)
    # -> no held-out pair with gap 1 inside a 1-frame tail; 0.4 holds out 3 + 2 frames
    assert [train[k]["frame"] for k in range(len(train))] == [0, 1, 2, 3, 4, 7, 8, 9]
    assert len(held) == 0
    held4 = video.VideoFlowDataset(cache, frames="heldout", heldout_fraction=0.4)
    train4 = video.VideoFlowDataset(cache, frames="train", heldout_fraction=0.4)
    f_held = {t for _, _, a, b in held4.items for t in (a, b)}
    f_train = {t for _, _, a, b in train4.items for t in (a, b)}
    assert f_held == {4, 5, 6, 10, 11} and not f_held & f_train
    for ds in (train, held4, train4, video.VideoFlowDataset(cache, frames="all")):
        assert all(not (a < CUT <= b) for _, _, a, b in ds.items)
    assert [it[2] for it in video.VideoFlowDataset(cache, frames=range(3, 9)).items] == \
        [3, 4, 5, 7, 8]
    assert len(video.VideoFlowDataset(cache, frames=(0, 2))) == 2
    assert len(video.VideoFlowDataset(cache, frames=slice(7, None))) == 4
    with pytest.raises(ValueError, match="frames"):
        video.VideoFlowDataset(cache, frames="test")


def test_dataset_from_a_folder_of_caches(video_dir, tmp_path):
    out = tmp_path / "out"
    video.prepare_videos(video_dir, out, progress=False)
    (out / ".a.tmp-123").mkdir()  # an interrupted run's temp folder is ignored
    ds = video.VideoFlowDataset(out, frames="all")
    assert sorted({ds[k]["video"] for k in range(len(ds))}) == ["a", "b", "c"]
    assert len(ds) == 3 * 5
    single = video.VideoFlowDataset([out / "a", out / "b"], frames="all")
    assert len(single) == 10
    with pytest.raises(ValueError, match="index.json"):
        video.VideoFlowDataset(out / ".a.tmp-123")


def test_dataset_pickles_without_the_arrays(cache):
    ds = video.VideoFlowDataset(cache, frames="all", crop=(32, 40), hflip=True, seed=3)
    blob = pickle.dumps(ds)
    assert len(blob) < 20_000  # paths and settings, not the frames
    ds2 = pickle.loads(blob)
    for k in (0, 7):
        a, b = ds[k], ds2[k]
        for key in ("image1", "image2", "flow"):
            assert torch.equal(a[key], b[key])


def test_augmentation_is_seeded_and_varies_with_epoch(cache):
    kw = {"frames": "all", "crop": (24, 32), "hflip": True, "vflip": True}
    a, b = video.VideoFlowDataset(cache, seed=1, **kw), video.VideoFlowDataset(cache, seed=1, **kw)
    params = [a.augment_params(k) for k in range(len(a))]
    assert params == [b.augment_params(k) for k in range(len(b))]
    assert {p["hflip"] for p in params} == {True, False}  # both happen
    assert len({(p["top"], p["left"]) for p in params}) > 3
    a.set_epoch(1)
    assert [a.augment_params(k) for k in range(len(a))] != params
    assert a[0]["image1"].shape == (3, 24, 32)
    with pytest.raises(ValueError, match="larger than the frames"):
        video.VideoFlowDataset(cache, crop=(H + 1, 8))


def test_augment_pair_flips_vectors_explicitly():
    h, w = 4, 5
    img = np.arange(h * w * 3, dtype=np.float32).reshape(h, w, 3)
    flow = np.stack([np.full((h, w), 1.5), np.full((h, w), -0.5)], -1).astype(np.float32)
    flow[0, 0] = [3.0, 2.0]  # one odd vector, top-left
    base = {"top": 0, "left": 0, "height": h, "width": w}
    _, _, f = video.augment_pair(img, img, flow, {**base, "hflip": True, "vflip": False})
    assert f[0, w - 1].tolist() == [-3.0, 2.0] and f[2, 2].tolist() == [-1.5, -0.5]
    _, _, f = video.augment_pair(img, img, flow, {**base, "hflip": False, "vflip": True})
    assert f[h - 1, 0].tolist() == [3.0, -2.0] and f[2, 2].tolist() == [1.5, 0.5]
    i1, _, f = video.augment_pair(img, img, flow, {"top": 0, "left": 0, "height": 2, "width": 3,
                                                   "hflip": False, "vflip": False})
    assert f.shape == (2, 3, 2) and f[0, 0].tolist() == [3.0, 2.0]  # a crop keeps the vectors
    np.testing.assert_array_equal(i1, img[:2, :3])


def _warp_error(item) -> float:
    """Mean |image1 - image2 warped back by flow| over pixels whose sample lies inside."""
    back, valid = warp(item["image2"], item["flow"], return_valid=True)
    return float((item["image1"] - back).abs().mean(0)[valid].mean())


@pytest.mark.parametrize("crop, hflip, vflip", [(None, True, False), (None, False, True),
                                                ((32, 40), True, True), ((24, 48), False, False)])
def test_augmented_flow_still_warps_image2_onto_image1(cache, crop, hflip, vflip):
    plain = video.VideoFlowDataset(cache, frames="all")
    aug = video.VideoFlowDataset(cache, frames="all", crop=crop, hflip=hflip, vflip=vflip,
                                 seed=0)
    checked = 0
    for k in range(len(plain)):
        p = aug.augment_params(k)
        if (hflip or vflip) and not (p["hflip"] or p["vflip"]):
            continue  # only the items this test is about
        item, ref = aug[k], plain[k]
        before, after = _warp_error(ref), _warp_error(item)
        zero = _warp_error({**item, "flow": torch.zeros_like(item["flow"])})
        assert after < 0.5 * zero  # the flow explains the motion ...
        assert after <= 1.25 * before + 0.001  # ... as well as before augmenting
        moving = item["flow"][0 if k < 6 else 1]  # shot A moves along x, shot B along y
        flipped = (hflip and p["hflip"]) if k < 6 else (vflip and p["vflip"])
        assert float(moving.median()) == pytest.approx(-SPEED if flipped else SPEED, abs=0.3)
        if flipped:  # the flow mirrored without negating the vector: clearly wrong
            wrong = item["flow"].clone()
            wrong[0 if k < 6 else 1] *= -1
            assert _warp_error({**item, "flow": wrong}) > 2 * after
        checked += 1
    assert checked >= 3


# ----------------------------------------------------------------------------- reading rows
@pytest.mark.parametrize("arr", [
    np.arange(5 * 4 * 3 * 2, dtype=np.float16).reshape(5, 4, 3, 2),
    np.random.default_rng(0).integers(0, 256, (3, 6, 7, 3), dtype=np.uint8),
    np.arange(8, dtype=np.int64).reshape(4, 2),
])
def test_npy_rows_are_the_arrays_rows(tmp_path, arr):
    np.save(tmp_path / "a.npy", arr)
    rows = video.NpyRows(tmp_path / "a.npy")
    assert len(rows) == len(arr) and rows.shape == arr.shape and rows.dtype == arr.dtype
    for i in (0, len(arr) - 1, 1):
        row = rows[i]
        np.testing.assert_array_equal(row, arr[i])
        assert row.dtype == arr.dtype and row.flags.writeable
    with pytest.raises(IndexError):
        rows[len(arr)]
    again = pickle.loads(pickle.dumps(rows))  # no open file travels
    np.testing.assert_array_equal(again[1], arr[1])
    rows.close()


def test_npy_rows_refuse_what_they_cannot_read(tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    with pytest.raises(ValueError, match="bad.npy: unreadable"):
        video.NpyRows(tmp_path / "bad.npy")
    np.save(tmp_path / "f.npy", np.asfortranarray(np.zeros((3, 4))))
    with pytest.raises(ValueError, match="f.npy: expected a C-ordered"):
        video.NpyRows(tmp_path / "f.npy")
    np.save(tmp_path / "t.npy", np.zeros((4, 100), np.float32))
    rows = video.NpyRows(tmp_path / "t.npy")
    (tmp_path / "t.npy").write_bytes((tmp_path / "t.npy").read_bytes()[:1000])
    rows.close()  # read the shortened file
    with pytest.raises(ValueError, match="t.npy: truncated at row 3"):
        rows[3]


def test_write_cache_writes_a_valid_cache_streaming_the_flows(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (9, 8, 12, 3), dtype=np.uint8)
    shots = np.array([[0, 5], [5, 9]])
    pairs = video.pairs_in_shots(shots, 2)
    flows = [rng.normal(0, 3, (8, 12, 2)).astype(np.float32) for _ in pairs]
    out = video.write_cache(tmp_path / "synth", frames, pairs, shots, iter(flows))
    c = video.load_cache(out, verify=True)
    assert c.name == "synth" and c.gap == 2 and c.cuts == [5]
    np.testing.assert_array_equal(c.frames, frames)
    np.testing.assert_array_equal(c.flows, np.stack(flows).astype(np.float16))
    with pytest.raises(ValueError, match="expected 5 arrays, got 4"):
        video.write_cache(tmp_path / "short", frames, pairs, shots, iter(flows[:4]))
    with pytest.raises(ValueError, match="shape"):
        video.write_cache(tmp_path / "wrong", frames, pairs, shots,
                          iter([np.zeros((8, 11, 2))] * 5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth"]  # no temp folders left
