"""How far the ridge ``eps`` moves the affine fit from plain weighted least squares.

Usage: python benchmarks/ridge.py [--size 20x28] [--segments 4] [--trials 20]

For random flow and random soft masks (a softmax of smooth logits, so every segment is
well-posed: it covers the image with weights of its own), prints for each ridge the median and
largest relative difference ``|recon_eps - recon_0| / |recon_0|`` of
:func:`s3lib.losses.affine_reconstruction` against the unregularised solution (float64, solved
without a ridge), and for a cube face of 60 of 64x64 pixels the share of its slope the fit
keeps. The default :data:`s3lib.motion.DEFAULT_EPS` was chosen from this table: the largest
ridge that keeps the reconstruction within 1e-4 relative and the small face's slope above 99%.
Not a timing: the baseline is the exact solution computed in the same process.
"""

from __future__ import annotations

import argparse

import torch

from s3lib import motion
from s3lib.losses import affine_reconstruction


def random_case(h: int, w: int, num_l: int, gen: torch.Generator):
    """Smooth random soft masks ``(1, L, H, W)`` and random flow ``(1, 2, H, W)`` (float64)."""
    logits = torch.randn(1, num_l, max(2, h // 4), max(2, w // 4), generator=gen, dtype=torch.float64)
    logits = torch.nn.functional.interpolate(logits * 3, size=(h, w), mode="bilinear",
                                             align_corners=False)
    flow = torch.randn(1, 2, h, w, generator=gen, dtype=torch.float64) * 2
    return logits.softmax(1), flow


def exact_reconstruction(flow, masks):
    """Weighted least squares without a ridge (float64 ``lstsq``)."""
    g, r, _ = motion.weighted_normal_equations(flow, masks)
    params = torch.linalg.solve(g, r.transpose(-1, -2)).transpose(-1, -2)
    return motion.blend(params, masks)


def relative_difference(eps: float, h: int, w: int, num_l: int, trials: int) -> list[float]:
    """``|recon_eps - recon_0| / |recon_0|`` for ``trials`` random cases (float32 fit)."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(trials):
        masks, flow = random_case(h, w, num_l, gen)
        exact = exact_reconstruction(flow, masks)
        fitted = affine_reconstruction(flow.float(), masks.float(), eps=eps).double()
        out.append(float((fitted - exact).norm() / exact.norm()))
    return out


def slope_kept(eps: float, size: int = 64, face: int = 60) -> float:
    """Share of a small face's slope the fit keeps: ``var / (var + eps)`` per unit of slope,
    measured by fitting ``flow = x`` on a compact face of ``face`` pixels."""
    phi = motion.homogeneous_coordinates(size, size, dtype=torch.float64)
    mask = torch.zeros(1, 1, size, size, dtype=torch.float64)
    side = int(face ** 0.5)
    mask[..., :side, : face // side] = 1
    flow = torch.stack([phi[0], torch.zeros_like(phi[0])])[None]
    params = motion.fit(flow, mask, eps)[0]
    return float(params[0, 0, 0, 0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="20x28", help="HxW of the random cases")
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    torch.set_num_threads(1)
    print(f"random soft masks, L={args.segments}, {h}x{w}, {args.trials} trials; "
          f"default eps {motion.DEFAULT_EPS:g}")
    print(f"{'eps':>8} {'median rel. diff':>17} {'max rel. diff':>14} {'small face slope kept':>22}")
    for eps in (1e-3, 1e-4, 1e-5, 1e-6, 1e-7):
        diffs = sorted(relative_difference(eps, h, w, args.segments, args.trials))
        print(f"{eps:8.0e} {diffs[len(diffs) // 2]:17.2e} {diffs[-1]:14.2e} "
              f"{slope_kept(eps):22.1%}")


if __name__ == "__main__":
    main()
