"""Speed of the motion losses, in softmax-equivalents, and against a per-segment loop.

Usage: python benchmarks/losses.py [--size 128] [--batch 8] [--segments 5]

For forward + backward at B=8, L=5, 128x128 on one thread, prints each loss's median time as a
multiple of the forward + backward of a softmax over the same logits (the network's own output
layer: ``(logits.softmax(1) * flow[:, :1]).sum().backward()``), and the ratio against a
straightforward per-segment loop (one weighted least-squares fit per segment with explicit
per-pixel design matrices). Then the loss's share of one training step of a small FCN at 64x64
and 128x128. Everything is timed in this process.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median_time, paired_ratio  # noqa: E402

from s3lib.grouping import homogeneous_coordinates  # noqa: E402
from s3lib.losses import (affine_motion_loss, entropy_motion_loss,  # noqa: E402
                          marginal_likelihood_loss)
from s3lib.setup import reproducible  # noqa: E402


def loop_affine_loss(masks, flow, eps=1e-4, delta=0.1):
    """Baseline: one segment at a time, design matrix per pixel, Charbonnier per segment."""
    b, num_l, h, w = masks.shape
    n = h * w
    phi = homogeneous_coordinates(h, w, dtype=masks.dtype).reshape(3, n).T  # (N, 3)
    f = flow.reshape(b, 2, n).transpose(1, 2)  # (B, N, 2)
    total = masks.new_zeros(())
    for i in range(b):
        for l in range(num_l):
            m = masks[i, l].reshape(n, 1)
            g = (phi * m).T @ phi / n + eps * torch.eye(3)
            a = torch.linalg.solve(g, (phi * m).T @ f[i] / n)  # (3, 2)
            r = (f[i] - phi @ a).pow(2).sum(1)
            total = total + (m[:, 0] * (torch.sqrt(r + delta**2) - delta)).sum()
    return total / (b * n)


def loop_entropy_loss(masks, flow, bins=32):
    """Baseline: one segment at a time, dense (N, bins) triangular weights."""
    b, num_l, h, w = masks.shape
    n = h * w
    speed = flow.pow(2).sum(1).add(1e-12).sqrt().reshape(b, n)
    total = masks.new_zeros(())
    for i in range(b):
        pos = speed[i] / speed[i].max() * (bins - 1)
        centres = torch.arange(bins, dtype=masks.dtype)
        wts = (1 - (pos[:, None] - centres).abs()).clamp_min(0)  # (N, bins)
        for l in range(num_l):
            hist = masks[i, l].reshape(n) @ wts
            p = hist / hist.sum()
            total = total + hist.sum() / n * -(p * torch.log(p + 1e-12)).sum()
    return total / b


def small_fcn(segments: int) -> torch.nn.Module:
    def block(i, o):
        return [torch.nn.Conv2d(i, o, 3, padding=1), torch.nn.BatchNorm2d(o), torch.nn.ReLU()]
    return torch.nn.Sequential(*block(3, 32), *block(32, 64), *block(64, 64), *block(64, 32),
                               torch.nn.Conv2d(32, segments, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--segments", type=int, default=5)
    args = parser.parse_args()
    reproducible(0, threads=1)
    b, num_l, s = args.batch, args.segments, args.size
    logits = torch.randn(b, num_l, s, s, requires_grad=True)
    flow = torch.randn(b, 2, s, s) * 3

    def softmax_step():
        logits.grad = None
        (logits.softmax(1) * flow[:, :1]).sum().backward()

    def loss_step(fn):
        def step():
            logits.grad = None
            fn(logits.softmax(1), flow).backward()
        return step

    print(f"B={b}, L={num_l}, {s}x{s}, 1 thread; forward+backward; medians of 21 rounds, each "
          f"timing the softmax unit and the loss back to back")
    losses = {
        "affine charbonnier, segments": lambda m, f: affine_motion_loss(m, f),
        "affine charbonnier, blend": lambda m, f: affine_motion_loss(m, f, combine="blend"),
        "affine l2, segments": lambda m, f: affine_motion_loss(m, f, robust="l2"),
        "quadratic charbonnier, segments": lambda m, f: affine_motion_loss(m, f, model="quadratic"),
        "entropy, 32 bins": lambda m, f: entropy_motion_loss(m, f, bins=32),
        "marginal likelihood": lambda m, f: marginal_likelihood_loss(m, f),
    }
    times = {}
    for name, fn in losses.items():
        ratio, t, unit = paired_ratio(loss_step(fn), softmax_step, subtract_unit=True)
        times[name] = t
        print(f"{name:32s} {t * 1e3:7.2f} ms = {ratio:5.2f} softmax-equivalents "
              f"(softmax {unit * 1e3:.2f} ms)")
    for name, ours, loop in (("affine charbonnier, segments", affine_motion_loss, loop_affine_loss),
                             ("entropy, 32 bins", entropy_motion_loss, loop_entropy_loss)):
        assert torch.allclose(ours(logits.softmax(1), flow), loop(logits.softmax(1), flow),
                              rtol=1e-3), name
        ratio, t_loop, _ = paired_ratio(loss_step(loop), loss_step(losses[name]), rounds=7)
        print(f"per-segment loop, {name:28s} {t_loop * 1e3:7.2f} ms: s3lib is x{ratio:.1f} faster")

    for size in (64, 128):
        net = small_fcn(num_l)
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        images = torch.rand(b, 3, size, size)
        fl = torch.randn(b, 2, size, size)

        def train_step():
            opt.zero_grad()
            affine_motion_loss(net(images).softmax(1), fl).backward()
            opt.step()

        lg = torch.randn(b, num_l, size, size, requires_grad=True)

        def loss_only():
            lg.grad = None
            affine_motion_loss(lg.softmax(1), fl).backward()

        share, t_loss, t_step = paired_ratio(loss_only, train_step, rounds=7)
        params = sum(p.numel() for p in net.parameters())
        print(f"training step, FCN {params / 1e3:.0f}k params, {size}x{size}: "
              f"{t_step * 1e3:.0f} ms, affine loss (with its softmax) {share:.0%} of it")


if __name__ == "__main__":
    main()
