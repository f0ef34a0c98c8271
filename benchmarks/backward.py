"""Does the affine loss's hand-written backward earn its place in a whole training step?

Usage: python benchmarks/backward.py [--size 64] [--batch 8] [--threads 1]

Times one cube training step (forward, softmax, affine motion loss with ``combine="segments"``,
backward, Adam) of the default ``SegmentationNet``, alternately with the loss as the library
computes it (``s3lib.losses._SegmentsLoss``: the backward w.r.t. the masks written by hand) and
with the same loss left to autograd (the library's own autograd branch, built here from
``s3lib.motion``: fit, squared residuals, Charbonnier, mask-weighted mean). Prints both step
times and the ratio autograd / hand-written (above 1: the hand-written backward is faster),
and the same for the loss alone (forward + backward through the masks).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import paired_ratio  # noqa: E402

from s3lib import motion  # noqa: E402
from s3lib.losses import DEFAULT_DELTA, affine_motion_loss  # noqa: E402
from s3lib.models import SegmentationNet  # noqa: E402
from s3lib.setup import reproducible  # noqa: E402


def autograd_loss(masks: torch.Tensor, flow: torch.Tensor, delta: float = DEFAULT_DELTA):
    """The ``segments`` Charbonnier loss through autograd (no hand-written backward)."""
    b, _, h, w = masks.shape
    params, fphi, _ = motion.fit(flow, masks)
    sq = motion.squared_residuals(params, flow, fphi=fphi, offset=delta * delta)
    rho = (sq.sqrt() - delta).clamp_min(0)
    return torch.dot(masks.reshape(-1), rho.reshape(-1)) / (b * h * w)


def step_fn(loss_fn, images: torch.Tensor, flows: torch.Tensor):
    """One training step of a fresh default network with ``loss_fn``."""
    torch.manual_seed(0)
    net = SegmentationNet(5)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)

    def step() -> None:
        loss = loss_fn(net(images).softmax(1), flows)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def loss_fn_only(loss_fn, logits: torch.Tensor, flows: torch.Tensor):
    def run() -> None:
        loss_fn(logits.softmax(1), flows).backward()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    reproducible(0, threads=args.threads)
    images = torch.rand(args.batch, 3, args.size, args.size)
    flows = torch.randn(args.batch, 2, args.size, args.size) * 2
    logits = torch.randn(args.batch, 5, args.size, args.size, requires_grad=True)
    hand = lambda m, f: affine_motion_loss(m, f)  # noqa: E731
    torch.testing.assert_close(autograd_loss(logits.softmax(1), flows), hand(logits.softmax(1), flows))
    ratio, t_auto, t_hand = paired_ratio(loss_fn_only(autograd_loss, logits, flows),
                                         loss_fn_only(hand, logits, flows), rounds=args.rounds * 2)
    print(f"loss alone, B={args.batch}, {args.size}x{args.size}, {args.threads} thread(s): "
          f"hand-written {t_hand * 1e3:.1f} ms, autograd {t_auto * 1e3:.1f} ms, "
          f"ratio autograd/hand {ratio:.2f}x")
    ratio, t_auto, t_hand = paired_ratio(step_fn(autograd_loss, images, flows),
                                         step_fn(hand, images, flows), rounds=args.rounds)
    print(f"training step: hand-written {t_hand * 1e3:.0f} ms, autograd {t_auto * 1e3:.0f} ms, "
          f"ratio autograd/hand {ratio:.2f}x")


if __name__ == "__main__":
    main()
