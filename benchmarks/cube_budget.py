"""How long the default cube run (`s3 train cube`) takes here, against the previous default.

Usage: python benchmarks/cube_budget.py [--steps 300] [--threads 1 2]

For each thread count, trains the default :class:`~s3lib.train.TrainConfig` (width 8, whole
pictures) and two variants for ``--steps`` steps on the cube's training pairs, held-out scoring
every 100 steps as in a real run, all in this process: the previous default width (16), and
steps on 48x48 windows (``crop=0.75``, appendix 04b, A6). The time per step is measured between
the first and the last evaluation (start-up and rendering excluded, evaluations included); the
line printed gives it, the minutes the default budget of ``TrainConfig().steps`` steps takes at
that rate, and each variant's ratio variant / default (above 1: the default is faster).
Explained in notebook 04, section 3.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace

from s3lib.data.pairs import cube_pairs, heldout_cube_pairs
from s3lib.train import TrainConfig, train


def seconds_per_step(config: TrainConfig, data) -> float:
    """Wall seconds per step of ``train(config)`` between its first and last evaluation."""
    with tempfile.TemporaryDirectory() as out:
        records = train(config, out, progress=False, data=data)
    first, last = records[0], records[-1]
    return (last["elapsed"] - first["elapsed"]) / (last["step"] - first["step"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    default = TrainConfig()
    data = (cube_pairs(size=default.size, frames=default.frames, look=default.look),
            heldout_cube_pairs(default.size, look=default.look))
    for threads in args.threads:
        config = replace(default, steps=args.steps, minutes=None, eval_every=100, threads=threads)
        now = seconds_per_step(config, data)
        line = (f"{threads} thread(s): default (width {default.width}) {now * 1e3:.0f} ms/step, "
                f"{default.steps} steps = {now * default.steps / 60:.1f} min")
        for name, variant in (("width 16", replace(config, width=16)),
                              ("48x48 windows", replace(config, crop=0.75))):
            then = seconds_per_step(variant, data)
            line += (f"; {name} {then * 1e3:.0f} ms/step = {then * default.steps / 60:.1f} min, "
                     f"ratio {then / now:.2f}x")
        print(line, flush=True)


if __name__ == "__main__":
    main()
