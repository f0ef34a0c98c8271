"""Speed of OpenCV flow estimation through s3lib.flow.estimate_flow, frames per second.

Usage: python benchmarks/flow.py
Times DIS (ultrafast, fast, medium) and Farneback on Big Buck Bunny frame pairs at 320x180 and
640x360 with the course's fixed thread count, and prints each one's time relative to DIS medium
at the same size (timed in this process).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median_time  # noqa: E402

from s3lib.data.clips import read_frames  # noqa: E402
from s3lib.flow import estimate_flow  # noqa: E402
from s3lib.setup import reproducible  # noqa: E402


def main() -> None:
    rep = reproducible(0)
    print(f"threads: {rep.threads}; Big Buck Bunny frames 40 -> 44; medians of 5 runs")
    for size in ((320, 180), (640, 360)):
        f = read_frames("bigbuckbunny", size=size, start=40, max_frames=5)
        base = median_time(lambda: estimate_flow(f[0], f[4], "dis", "medium"), repeats=5)
        for method, preset in (("dis", "ultrafast"), ("dis", "fast"), ("dis", "medium"),
                               ("farneback", "medium")):
            t = median_time(lambda: estimate_flow(f[0], f[4], method, preset), repeats=5)
            label = f"{method} {preset}" if method == "dis" else method
            print(f"{size[0]}x{size[1]}  {label:15s} {t * 1e3:7.1f} ms  {1 / t:6.1f} frames/s  "
                  f"x{t / base:.2f} of DIS medium")


if __name__ == "__main__":
    main()
