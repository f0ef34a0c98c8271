"""Peak memory of ``s3 train video`` on a prepare-video cache 10x larger than bikes.

Usage: python benchmarks/memory_video.py [--times 10] [--steps 20] [--size 160x68] [--repeats 3]
                                         [--keep DIR] [--no-old]

Prepares the bundled ``bikes`` clip at ``--size`` (notebook 06's 160x68) and writes a cache
``--times`` as long: the clip's frames, flows, pairs and shots repeated end to end, written by
the cache writer of ``s3 prepare-video`` (:func:`s3lib.data.video.write_cache`, flows streamed).
Then it runs ``s3 train video --data DIR --steps N`` on each cache in a fresh process and prints
that process's peak resident memory (``ru_maxrss``; the median of ``--repeats`` runs, and
their range: the allocator's pool varies by some 10 % from run to run) and the ratio
large / small. The baseline
is the small cache, measured by the same command in the same run. For comparison, the same
training on the same pairs held in memory: ``video_pairs`` (stacked into preallocated tensors)
and the stacking ``video_pairs`` did before the data streamed (every item's two frames and flow
in a list, then ``torch.stack``). Training reads its pairs lazily (:class:`s3lib.data.pairs.
VideoPairs`), so its peak should not grow with the cache; the in-memory ones grow with it.
Memory, not time: the wall seconds are printed for information only.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from s3lib.data import video

# Runs its arguments as a command and prints the command's peak RSS. A small process in
# between: Linux keeps a process's peak RSS across exec, so a child started straight from this
# process (which holds the long clip's frames) would start at this process's size.
PEAK = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""

# Training on pairs stacked in memory first: "now" with video_pairs, "old" as it stacked before.
IN_MEMORY = """
import sys
import torch
from s3lib.cli import train_config
from s3lib.data.pairs import FlowPairs, _crop4, video_pairs
from s3lib.data.video import VideoFlowDataset
from s3lib.train import train

def old_video_pairs(caches, split):
    ds = VideoFlowDataset(caches, frames=split)
    items = [ds[i] for i in range(len(ds))]
    return _crop4(FlowPairs(torch.stack([it["image1"] for it in items]),
                            torch.stack([it["flow"] for it in items]), None,
                            [f"{it['video']}:{it['frame']}" for it in items]))

how, argv = sys.argv[1], sys.argv[2:]
config = train_config(argv)
stack = old_video_pairs if how == "old" else video_pairs
train(config, argv[argv.index("--out") + 1], progress=False,
      data=(stack(config.data, "train"), stack(config.data, "heldout")))
"""


def tiled_cache(small: Path, out: Path, times: int) -> Path:
    """``small`` repeated ``times`` times end to end (its shots, pairs and flows shifted)."""
    c = video.load_cache(small)
    t = len(c.frames)
    frames = np.concatenate([np.asarray(c.frames)] * times)
    pairs = np.concatenate([c.pairs + k * t for k in range(times)])
    shots = np.concatenate([c.shots + k * t for k in range(times)])
    flows = (c.flows[p] for _ in range(times) for p in range(len(c.pairs)))
    return video.write_cache(out, frames, pairs, shots, flows, settings=c.index["settings"],
                             source=c.index["source"])


def s3_command() -> list[str]:
    s3 = Path(sys.executable).with_name("s3")
    return [str(s3)] if s3.is_file() else [sys.executable, "-m", "s3lib.cli"]


def peak_mb(cmd: list[str]) -> tuple[float, float]:
    """``(peak RSS in MB, wall seconds)`` of ``cmd`` run in a fresh process."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK, *cmd], capture_output=True, text=True,
                          check=True)
    kb = int(done.stdout.split()[-1])
    return (kb / 2 ** 20 if sys.platform == "darwin" else kb / 1024,  # macOS: bytes
            time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--times", type=int, default=10, help="the large cache: bikes repeated")
    parser.add_argument("--steps", type=int, default=20, help="training steps per run")
    parser.add_argument("--size", default="160x68", help="WIDTHxHEIGHT of the frames")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--keep", default=None, help="a folder for the caches (kept; default: "
                                                      "a temporary one)")
    parser.add_argument("--no-old", action="store_true", help="skip the in-memory runs")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="s3-memory-"))
    small = video.prepare_video("bikes", root / "bikes", size=size, progress=False)
    large = root / f"bikes_x{args.times}"
    if not (large / "index.json").is_file():
        tiled_cache(small, large, args.times)
    cs, cl = video.load_cache(small), video.load_cache(large)
    mb = lambda c: sum((c.path / f).stat().st_size for f in video.FILES) / 2 ** 20  # noqa: E731
    print(f"caches of bikes at {size[0]}x{size[1]}: {len(cs.frames)} frames, {len(cs.pairs)} "
          f"pairs ({mb(cs):.0f} MB on disk); x{args.times}: {len(cl.frames)} frames, "
          f"{len(cl.pairs)} pairs ({mb(cl):.0f} MB)")
    ways = [("lazy (s3 train video)", None)]
    if not args.no_old:
        ways += [("in memory: video_pairs", "now"), ("in memory: old stacking", "old")]
    print(f"peak RSS of `s3 train video --data DIR --steps {args.steps} --threads 1` "
          f"(one held-out evaluation at the end), one fresh process each; median (range) of "
          f"{args.repeats} runs\n")
    print(f"{'data':24s} {'bikes':>20s} {f'bikes x{args.times}':>22s} {'ratio':>6s}   seconds")
    lazy = {}
    for name, how in ways:
        cells = []
        for cache in (small, large):
            flags = ["video", "--data", str(cache), "--steps", str(args.steps), "--eval-every",
                     str(args.steps), "--threads", "1", "--out", str(root / "run")]
            cmd = (s3_command() + ["train", *flags, "--quiet"] if how is None else
                   [sys.executable, "-c", IN_MEMORY, how, *flags])
            runs = [peak_mb(cmd) for _ in range(args.repeats)]
            peaks = [p for p, _ in runs]
            cells.append((statistics.median(peaks), min(peaks), max(peaks),
                          statistics.median(s for _, s in runs)))
        (ps, lo_s, hi_s, ss), (pl, lo_l, hi_l, sl) = cells
        lazy.setdefault("small", ps)
        lazy.setdefault("large", pl)
        print(f"{name:24s} {ps:5.0f} MB ({lo_s:4.0f}-{hi_s:4.0f}) {pl:7.0f} MB ({lo_l:4.0f}-"
              f"{hi_l:4.0f}) {pl / ps:5.2f}x   {ss:.0f} / {sl:.0f}")
        if how is not None:
            print(f"{'':24s} {ps / lazy['small']:12.2f}x of lazy {pl / lazy['large']:14.2f}x of "
                  f"lazy")
    print(f"\ncaches in {root}" + ("" if args.keep else " (temporary; --keep DIR to keep them)"))
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
