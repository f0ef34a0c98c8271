"""Speed of the segmentation metrics against a straightforward per-label-pair loop.

Usage: python benchmarks/metrics.py [--size 256] [--labels 8]
Prints, for matched mIoU and ARI, the median time of s3lib's version and of the loop baseline
(boolean masks per (pred, target) label pair), timed in this process, and their ratio.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import comb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median_time  # noqa: E402

from s3lib.metrics import adjusted_rand_index, matched_miou  # noqa: E402
from s3lib.setup import reproducible  # noqa: E402


def loop_table(pred, target):
    pl, tl = np.unique(pred), np.unique(target)
    return np.array([[np.sum((pred == a) & (target == b)) for b in tl] for a in pl]), pl, tl


def loop_miou(pred, target):
    table, _, tl = loop_table(pred, target)
    union = table.sum(1, keepdims=True) + table.sum(0, keepdims=True) - table
    iou = table / np.maximum(union, 1)
    r, c = linear_sum_assignment(-iou)
    return iou[r, c].sum() / len(tl)


def loop_ari(pred, target):
    table, _, _ = loop_table(pred, target)
    n = pred.size
    index = comb(table, 2).sum()
    a, b = comb(table.sum(1), 2).sum(), comb(table.sum(0), 2).sum()
    expected = a * b / comb(n, 2)
    return (index - expected) / (0.5 * (a + b) - expected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--labels", type=int, default=8)
    args = parser.parse_args()
    reproducible(0)
    rng = np.random.default_rng(0)
    target = rng.integers(0, args.labels, (args.size, args.size))
    pred = np.where(rng.random(target.shape) < 0.8, (target + 3) % args.labels,
                    rng.integers(0, args.labels, target.shape))
    assert abs(matched_miou(pred, target) - loop_miou(pred, target)) < 1e-12
    assert abs(adjusted_rand_index(pred, target) - loop_ari(pred, target)) < 1e-9
    print(f"label maps {args.size}x{args.size}, {args.labels} labels; medians of 7 runs")
    for name, ours, base in (("matched_miou", matched_miou, loop_miou),
                             ("adjusted_rand_index", adjusted_rand_index, loop_ari)):
        t_ours = median_time(lambda: ours(pred, target))
        t_base = median_time(lambda: base(pred, target))
        print(f"{name:20s} s3lib {t_ours * 1e3:7.2f} ms   loop {t_base * 1e3:7.2f} ms   "
              f"speed-up x{t_base / t_ours:.1f}")


if __name__ == "__main__":
    main()
