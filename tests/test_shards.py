"""Shards of ``s3 prepare-video`` written in parallel into one folder.

Several processes (or machines) split a folder of videos with ``--shard I/N`` and write into
the same ``--out`` without talking to each other. Each cache folder is written under a
dot-prefixed temporary name (``.<name>.tmp-*``) and renamed into place with ``index.json``
written last, so a reader listing the folder while the writers run sees only complete caches.

Checked here:

- two concurrent ``s3 prepare-video --shard 0/2`` and ``--shard 1/2`` processes, while this
  process polls the output folder: every folder visible under a final (non-dot) name loads
  and verifies completely (:func:`s3lib.data.video.load_cache` with ``verify=True``), never
  changes once seen, and the readers (:class:`~s3lib.data.video.VideoFlowDataset`,
  :func:`s3lib.data.pairs.load_pairs`) read every pair of it; temporary folders are
  recognisably temporary and skipped;
- the union of the two shards is byte-for-byte the single-process run of all videos (same
  names, identical index.json and arrays: DIS flow is bit-exact for the same input on the
  same machine, whatever the number of OpenCV threads; checked in
  :func:`test_dis_flow_is_bit_exact_across_threads`);
- the shards are disjoint and cover every video (also two videos with the same stem);
- a writer that fails after some files are in its temp folder (an exception in-process, or a
  ``SIGKILL`` of a real process) leaves no visible cache: a new target does not appear, an
  old complete cache is untouched, and the temp leftovers are ignored by the readers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from s3lib.data import video
from s3lib.data.pairs import load_pairs

REPO = Path(__file__).resolve().parent.parent
W, H = 64, 48  # the synthetic videos' native size
SIZE = (48, 36)  # --size: the caches' frame size (width, height)
FRAMES = 8
# (file name, texture seed, velocity (dx, dy) in px/frame, fourcc). "a.avi" and "a.mp4" share a
# stem, so both become "a-<sha1 of label>" (cache_names): the shards must agree on that too.
VIDEOS = [("a.avi", 1, (2, 0), "MJPG"), ("a.mp4", 2, (0, 2), "mp4v"),
          ("b.avi", 3, (-1, 1), "MJPG"), ("c.mp4", 4, (1, -2), "mp4v")]
TEMP = re.compile(r"^\.(?P<name>.+)\.(tmp|old)-[^/]+$")  # _replace_dir / write_cache temp names
DEADLINE_S = 120.0


# ----------------------------------------------------------------------------- helpers
def moving_frames(seed: int, velocity: tuple[int, int]) -> np.ndarray:
    """``(FRAMES, H, W, 3)`` uint8 RGB: a smooth colour texture translating by ``velocity``."""
    import cv2

    margin = 2 * FRAMES + 4
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.uniform(0, 255, (H + 2 * margin, W + 2 * margin, 3))
                           .astype(np.float32), (0, 0), 2.0)
    tex = cv2.normalize(tex, None, 20, 235, cv2.NORM_MINMAX).astype(np.uint8)
    dx, dy = velocity
    return np.stack([tex[margin - dy * t:margin - dy * t + H, margin - dx * t:margin - dx * t + W]
                     for t in range(FRAMES)])


def write_video(path: Path, frames: np.ndarray, fourcc: str) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (W, H))
    assert writer.isOpened(), f"OpenCV {cv2.__version__} cannot write {fourcc} here"
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == FRAMES, f"{path}: wrote {FRAMES} frames, OpenCV reads back {n}"
    return path


def expected_names(videos: Path) -> list[str]:
    return video.cache_names([label for label, _ in video.list_videos(videos)])


def shard_names(videos: Path, i: int, n: int) -> list[str]:
    return video.shard_items(expected_names(videos), i, n)


def visible(out: Path) -> list[str]:
    """What a reader takes as caches: the non-dot sub-folders (as _find_caches lists them)."""
    return sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) \
        if out.is_dir() else []


def temp_entries(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".")) \
        if out.is_dir() else []


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def s3_command(*args) -> list[str]:
    return [sys.executable, "-m", "s3lib", *map(str, args)]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


def check_reader(out: Path, seen: dict, problems: list[str]) -> None:
    """One look at ``out`` while writers run: every visible folder must be a complete cache."""
    names = visible(out)
    for name in temp_entries(out):
        m = TEMP.match(name)
        if not m:
            problems.append(f"{name}: a dot entry that is not a writer's temp folder")
        seen["temp"].add(name)
    for name in names:
        path = out / name
        try:
            cache = video.load_cache(path, verify=True)
            digest = {f: m["sha256"] for f, m in cache.index["files"].items()}
            n_pairs = len(cache.pairs)
        except Exception as exc:  # noqa: BLE001 - every failure is a finding
            problems.append(f"{name}: visible but not a complete cache: {exc!r}")
            continue
        if name in seen["caches"] and seen["caches"][name] != digest:
            problems.append(f"{name}: changed after it became visible")
        seen["caches"][name] = digest
        seen["pairs"][name] = n_pairs
    if not names:
        return
    try:
        ds = video.VideoFlowDataset(out, frames="all")
        listed = {p.name for p in ds.paths}
        if not set(names) <= listed:  # caches only appear, so a later listing holds these
            problems.append(f"VideoFlowDataset listed {sorted(listed)}, visible were {names}")
        if any(p.name.startswith(".") for p in ds.paths):
            problems.append(f"VideoFlowDataset took a temp folder: {ds.paths}")
        for k in range(len(ds)):
            item = ds[k]
            if not np.isfinite(item["flow"].numpy()).all():
                problems.append(f"{item['video']}:{item['frame']}: non-finite flow")
        pairs = load_pairs(out, "all")  # lists the folder again: maybe more caches by now
        if not listed <= {p.name for p in pairs.paths} or any(
                p.name.startswith(".") for p in pairs.paths):
            problems.append(f"load_pairs listed {pairs.paths} after {sorted(listed)}")
        if len(pairs) != (FRAMES - 1) * len(pairs.paths):
            problems.append(f"load_pairs has {len(pairs)} pairs in {len(pairs.paths)} caches")
        for k in range(len(pairs)):
            pairs[k]
        seen["reads"] += 1
    except Exception as exc:  # noqa: BLE001
        problems.append(f"reader failed on {names}: {exc!r}")


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("videos")
    for name, seed, velocity, fourcc in VIDEOS:
        write_video(d / name, moving_frames(seed, velocity), fourcc)
    return d


@pytest.fixture(scope="module")
def reference(videos, tmp_path_factory) -> Path:
    """One single-process run of all videos (in this process)."""
    out = tmp_path_factory.mktemp("single") / "caches"
    made = video.prepare_videos(videos, out, size=SIZE, progress=False)
    assert [p.name for p in made] == expected_names(videos)
    return out


@pytest.fixture(scope="module")
def parallel(videos, tmp_path_factory) -> dict:
    """Both shards as concurrent ``s3 prepare-video`` processes, polled until both exit."""
    root = tmp_path_factory.mktemp("parallel")
    out = root / "caches"
    seen = {"temp": set(), "caches": {}, "pairs": {}, "reads": 0, "polls": 0,
            "polls_while_running": 0, "first_seen": {}}
    problems: list[str] = []
    procs, logs = [], []
    start = time.monotonic()
    try:
        for i in range(2):
            log = open(root / f"shard{i}.log", "w+")
            logs.append(log)
            procs.append(subprocess.Popen(
                s3_command("prepare-video", videos, "--out", out, "--shard", f"{i}/2",
                           "--size", f"{SIZE[0]}x{SIZE[1]}", "--quiet"),
                stdout=log, stderr=subprocess.STDOUT, cwd=root, env=subprocess_env()))
        while True:
            running = [p.poll() is None for p in procs]
            check_reader(out, seen, problems)
            seen["polls"] += 1
            if any(running):
                seen["polls_while_running"] += 1
                for name in seen["caches"]:
                    seen["first_seen"].setdefault(name, time.monotonic() - start)
            else:
                break
            if time.monotonic() - start > DEADLINE_S:
                pytest.fail(f"prepare-video shards still running after {DEADLINE_S:.0f} s")
            time.sleep(0.005)
        check_reader(out, seen, problems)  # and once more after both exited
        outputs = []
        for log in logs:
            log.seek(0)
            outputs.append(log.read())
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for log in logs:
            log.close()
    return {"out": out, "returncodes": [p.returncode for p in procs], "outputs": outputs,
            "seen": seen, "problems": problems, "seconds": time.monotonic() - start}


# ----------------------------------------------------------------------------- tests
def test_dis_flow_is_bit_exact_across_threads():
    """The premise of comparing shards with np.array_equal: DIS gives the same bits whatever
    OpenCV's thread count (the shard processes and this one may use different ones)."""
    import cv2

    from s3lib.flow import estimate_flow

    frames = moving_frames(7, (2, 1))
    before = cv2.getNumThreads()
    try:
        flows = []
        for n in (1, 2, 4):
            cv2.setNumThreads(n)
            flows.append(estimate_flow(frames[0], frames[1]))
            flows.append(estimate_flow(frames[0], frames[1]))
    finally:
        cv2.setNumThreads(before)
    assert all(np.array_equal(flows[0], f) for f in flows[1:])


def test_parallel_shards_exit_cleanly(parallel):
    assert parallel["returncodes"] == [0, 0], parallel["outputs"]
    assert parallel["seen"]["polls_while_running"] >= 1  # the reader really ran alongside
    assert temp_entries(parallel["out"]) == []  # each writer removed its temp folders


def test_reader_never_sees_a_half_written_cache(parallel):
    seen = parallel["seen"]
    assert parallel["problems"] == []
    assert seen["reads"] >= 1  # the readers read the final folder at least once
    for name in seen["temp"]:  # any temp folder glimpsed belongs to a real cache name
        assert TEMP.match(name).group("name") in set(visible(parallel["out"]))


def test_shards_are_disjoint_and_cover_all_videos(parallel, videos):
    names = expected_names(videos)
    assert len(names) == len(VIDEOS) == len(set(names))
    assert sum(n.startswith("a-") for n in names) == 2  # the two "a" stems got hashed names
    made = []
    for i, text in enumerate(parallel["outputs"]):
        printed = [Path(line.split(": ", 1)[0]).name for line in text.splitlines()
                   if line.startswith(str(parallel["out"]))]
        assert printed == shard_names(videos, i, 2), text
        made.append(set(printed))
    assert made[0].isdisjoint(made[1])
    assert made[0] | made[1] == set(names) == set(visible(parallel["out"]))
    assert all(len(m) == 2 for m in made)


def test_union_of_shards_equals_one_single_process_run(parallel, reference):
    out = parallel["out"]
    assert visible(out) == visible(reference)
    for name in visible(reference):
        a, b = video.load_cache(out / name, verify=True), video.load_cache(reference / name,
                                                                           verify=True)
        ia, ib = (json.loads((p / name / "index.json").read_text()) for p in (out, reference))
        assert ia == ib  # settings, source identity, counts, shapes and every sha256
        assert a.frames.shape == (FRAMES, SIZE[1], SIZE[0], 3)
        assert len(a.pairs) == FRAMES - 1  # one shot, gap 1
        for field in ("frames", "flows", "pairs", "shots"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), f"{name}: {field}"
        assert np.abs(np.asarray(a.flows, np.float32)).max() > 0.5  # real motion, not zeros
    assert len(load_pairs(out, "all")) == len(load_pairs(reference, "all")) == \
        len(VIDEOS) * (FRAMES - 1)


@pytest.mark.parametrize("existing", [False, True], ids=["new-target", "old-cache-kept"])
def test_failure_after_files_are_written_leaves_no_visible_cache(reference, videos, tmp_path,
                                                                 monkeypatch, existing):
    """An exception in the writer once frames.npy and flows.npy are in the temp folder."""
    out = tmp_path / "caches"
    names = visible(reference)
    keep, target = names[0], names[1]
    video.prepare_video(videos / "a.avi", out / keep, size=SIZE, progress=False)  # a bystander
    label_of = dict(zip(expected_names(videos), (p for _, p in video.list_videos(videos))))
    if existing:  # a complete cache the failing rebuild (gap 2) must not harm
        video.prepare_video(label_of[target], out / target, size=SIZE, progress=False)
        before = tree_bytes(out / target)
    state = {}
    real_save = video._save_npy

    def failing_save(path, arr):
        if Path(path).name == "pairs.npy":
            tmp = Path(path).parent
            state["temp"] = tmp.name
            state["temp_files"] = sorted(p.name for p in tmp.iterdir())
            state["visible"] = visible(out)
            state["dataset"] = sorted(p.name for p in video.VideoFlowDataset(out, "all").paths)
            raise OSError(28, "No space left on device (simulated)")
        return real_save(path, arr)

    monkeypatch.setattr(video, "_save_npy", failing_save)
    with pytest.raises(OSError, match="simulated"):
        video.prepare_video(label_of[target], out / target, size=SIZE, gap=2, progress=False)
    monkeypatch.undo()

    # mid-write: the half-written folder existed only under a temp name, and was skipped
    assert TEMP.match(state["temp"]).group("name") == target
    assert state["temp_files"] == ["flows.npy", "frames.npy"]
    assert state["visible"] == state["dataset"] == sorted([keep] + [target] * existing)
    # afterwards: nothing new visible, the old cache intact, no temp leftovers
    assert temp_entries(out) == []
    if existing:
        assert tree_bytes(out / target) == before
        assert video.load_cache(out / target, verify=True).gap == 1
        assert visible(out) == sorted([keep, target])
    else:
        assert not (out / target).exists() and visible(out) == [keep]
    assert [p.name for p in video.VideoFlowDataset(out, "all").paths] == visible(out)


_STALLING_WRITER = r"""
import json, sys, time
from pathlib import Path
import s3lib.flow
from s3lib.data import video

job = json.loads(sys.argv[1])
real, calls = s3lib.flow.estimate_flow, []

def stalling(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:  # frames.npy written, two flow rows in flows.npy: stall mid-write
        Path(job["marker"]).write_text("stalled")
        time.sleep(600)
    return real(*args, **kwargs)

s3lib.flow.estimate_flow = stalling  # prepare_video imports it at call time
video.prepare_video(job["video"], job["out_dir"], size=tuple(job["size"]), gap=2,
                    progress=False)
"""


def test_killed_writer_leaves_old_cache_and_an_ignored_temp(reference, videos, tmp_path):
    """A real process SIGKILLed halfway through rebuilding a cache (no cleanup can run)."""
    out = tmp_path / "caches"
    names = visible(reference)
    target, other = names[2], names[3]
    label_of = dict(zip(expected_names(videos), (p for _, p in video.list_videos(videos))))
    for name in (target, other):
        video.prepare_video(label_of[name], out / name, size=SIZE, progress=False)
    before = tree_bytes(out / target)
    marker = tmp_path / "stalled"
    job = {"video": str(label_of[target]), "out_dir": str(out / target), "size": list(SIZE),
           "marker": str(marker)}
    proc = subprocess.Popen([sys.executable, "-c", _STALLING_WRITER, json.dumps(job)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=subprocess_env(), cwd=tmp_path)
    try:
        start = time.monotonic()
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"the writer exited early: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() - start > DEADLINE_S:
                pytest.fail("the writer never reached the middle of its write")
            time.sleep(0.02)
        temps = temp_entries(out)
        assert len(temps) == 1 and TEMP.match(temps[0]).group("name") == target
        assert sorted(p.name for p in (out / temps[0]).iterdir()) == ["flows.npy", "frames.npy"]
        assert visible(out) == sorted([target, other])
        assert tree_bytes(out / target) == before  # the old cache, untouched
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    # the killed writer's temp folder stays behind, recognisably temporary, and is ignored
    assert temp_entries(out) == temps and (out / temps[0] / "index.json").exists() is False
    assert tree_bytes(out / target) == before
    assert video.load_cache(out / target, verify=True).gap == 1
    ds = video.VideoFlowDataset(out, frames="all")
    assert [p.name for p in ds.paths] == sorted([target, other])
    assert len(load_pairs(out, "all")) == len(ds) == 2 * (FRAMES - 1)
    with pytest.raises(ValueError, match="index.json"):
        video.load_cache(out / temps[0])
    # a rerun completes the rebuild beside the leftover
    video.prepare_video(label_of[target], out / target, size=SIZE, gap=2, progress=False)
    assert video.load_cache(out / target, verify=True).gap == 2
    assert [p.name for p in video.VideoFlowDataset(out, frames="all").paths] == \
        sorted([target, other])
