"""Speed of a cube training step with the default network against the course's first one.

Usage: python benchmarks/models.py [--size 64] [--batch 8] [--threads 1 2]
One step = forward, softmax, affine motion loss, backward and an Adam update, as in
``s3lib.train.train``. The default ``SegmentationNet`` (four levels, width 16) and the first
network of the course (two levels, width 32) are timed alternately in this process; the printed
ratio is first / default (above 1: the default is faster). Explained in notebook 04, section 5.4.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import paired_ratio  # noqa: E402

from s3lib.losses import affine_motion_loss  # noqa: E402
from s3lib.models import SegmentationNet  # noqa: E402
from s3lib.setup import reproducible  # noqa: E402


def step_fn(net: SegmentationNet, images: torch.Tensor, flows: torch.Tensor):
    """A closure doing one training step of ``net`` on ``images (B, 3, H, W)``, ``flows``."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)

    def step() -> None:
        loss = affine_motion_loss(net(images).softmax(1), flows)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    for threads in args.threads:
        reproducible(0, threads=threads)
        images = torch.rand(args.batch, 3, args.size, args.size)
        flows = torch.randn(args.batch, 2, args.size, args.size)
        default = SegmentationNet(5)
        first = SegmentationNet(5, width=32, levels=2)
        ratio, t_first, t_default = paired_ratio(step_fn(first, images, flows),
                                                 step_fn(default, images, flows),
                                                 rounds=args.rounds)
        print(f"{threads} thread(s), B={args.batch}, {args.size}x{args.size}: default network "
              f"{t_default * 1e3:.0f} ms/step, first network {t_first * 1e3:.0f} ms/step, "
              f"ratio first/default {ratio:.2f}x")


if __name__ == "__main__":
    main()
