"""Notebook 06's test of the paper's entropy claim where labels exist: the cube with estimated flow.

The paper (section 4): with "large systematic noise in automatically computed optical flow
... the histogram entropy loss works best". Real footage has no labels, so the claim is
tested on the cube of notebook 04, whose faces are the labels: both losses (``affine``,
``entropy``) are trained on the same rendered frames with three flows (:data:`FLOWS`):

- ``exact``: the rendered flow (:func:`s3lib.data.pairs.cube_pairs`);
- ``dis``, ``farneback``: the flow OpenCV estimates from the rendered frames
  (:func:`estimated_cube_pairs`, :func:`s3lib.flow.estimate_flow`): real estimation noise,
  exact labels.

Each run is scored on the held-out cube sequences (:func:`s3lib.data.pairs.heldout_cube_pairs`;
the network sees only images there, so the held-out flow does not enter the mIoU) by matched
mIoU and FG-ARI. :func:`flow_errors` says how noisy each estimate is (end-point error against
the exact flow), :func:`run_grid` trains the grid (``losses x flows x seeds``, one run at a
time, the JSON rewritten atomically after each run, so a crash loses nothing and a rerun
resumes), :func:`summarise` gives mean +- std over the seeds and :func:`verdict` the rule the
notebook states: one loss works better on a flow only where every seed's paired difference has
the same sign and the mean difference exceeds its standard deviation.

``s3 flow-noise --out FILE.json [--seeds 0 1 2] [--steps N] [--size S]`` runs it. Explained
in ``notebooks/06_real_video_entropy.ipynb``.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from ._io import atomic_write
from .data.cube import TRAIN_SEEDS, render_cube_sequence
from .data.pairs import FlowPairs, cube_pairs, heldout_cube_pairs

if TYPE_CHECKING:
    from .train import TrainConfig

FLOWS: tuple[str, ...] = ("exact", "dis", "farneback")
"""The training flows of the grid: rendered, and estimated by OpenCV's DIS and Farneback."""
GRID_LOSSES: tuple[str, ...] = ("affine", "entropy")
MEASURES: tuple[str, ...] = ("miou", "fg_ari")
GRID_STEPS = 600
"""Training steps of each run of the committed grid (``s3 flow-noise``'s default)."""
GRID_SIZE = 64
"""Cube image side of the committed grid (``s3 flow-noise``'s default)."""

GRID_SETTINGS: dict[str, Any] = dict(
    dataset="cube", data=None, look="hues", num_segments=5, minutes=None, batch=8, lr=3e-3,
    schedule="cosine", width=16, levels=4, coords=True, frames=99, gap=1, eps=1e-6, bins=32,
    max_speed=0.0, reseed_every=50, dead_usage=0.01, dead_by="wins", reseed_until=0.75,
    merge_below=0.0, threads=1, combine="segments", augment=True, hue=math.pi, zoom=1.0,
    plain_steps=0, workers=0, device="cpu", weight_decay=0.0, crop=1.0, split_above=0.0)
"""Every :class:`~s3lib.train.TrainConfig` setting of a grid run except ``loss``, ``seed``,
``steps``, ``size`` and ``eval_every`` (set per run): spelled out, so the grid does not move
when the defaults do."""


def _check_method(method: str) -> None:
    if method not in FLOWS:
        raise ValueError(f"method: expected one of {FLOWS}, got {method!r}")


def estimated_cube_pairs(method: str, seeds: Sequence[int] = TRAIN_SEEDS, size: int = 64,
                         frames: int = 99, look: str = "hues") -> FlowPairs:
    """The cube's training pairs of :func:`~s3lib.data.pairs.cube_pairs` (``frames - 1`` pairs
    ``(t, t + 1)`` per sequence of ``seeds``, images ``(N, 3, H, W)``, labels ``(N, H, W)``),
    with ``flows (N, 2, H, W)`` estimated from the rendered frames ``t``, ``t + 1`` by OpenCV
    (``method`` ``"dis"`` or ``"farneback"``, :func:`s3lib.flow.estimate_flow`), or the exact
    rendered flow (``"exact"``); ``look``: the cube's textures (:func:`s3lib.data.cube.
    render_cube_sequence`). Images, labels and sources are those of ``cube_pairs``; only the
    flow differs. Explained in ``notebooks/06_real_video_entropy.ipynb``."""
    from .flow import estimate_flow

    _check_method(method)
    if method == "exact":
        return cube_pairs(seeds, size=size, frames=frames, look=look)
    seqs = [render_cube_sequence(frames, size, s, look=look) for s in seeds]
    flows = [torch.from_numpy(estimate_flow(q.frames[t], q.frames[t + 1], method)).permute(2, 0, 1)
             for q in seqs for t in range(frames - 1)]
    return FlowPairs(torch.cat([q.frames[:-1] for q in seqs]), torch.stack(flows),
                     torch.cat([q.labels[:-1] for q in seqs]),
                     [f"cube{q.seed}:{t}" for q in seqs for t in range(frames - 1)])


def endpoint_errors(estimate: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """Per-pixel end-point error ``||f_est_u - f_u||`` (pixels), ``(B, H, W)``, of flows
    ``estimate`` and ``exact`` ``(B, 2, H, W)``."""
    if estimate.shape != exact.shape or estimate.ndim != 4 or estimate.shape[1] != 2:
        raise ValueError(f"estimate: expected the shape (B, 2, H, W) of exact "
                         f"{tuple(exact.shape)}, got {tuple(estimate.shape)}")
    return (estimate - exact).norm(dim=1)


def flow_errors(estimated: FlowPairs, exact: FlowPairs) -> dict[str, float]:
    """How far ``estimated``'s flows are from ``exact``'s (the same pairs): ``epe`` (mean
    end-point error over all pixels, px), ``epe_median``, ``epe_faces`` and ``epe_background``
    (mean over the cube's / the background's pixels), ``over_1px`` (share of the pixels off by
    more than 1 px), and ``speed`` (mean exact speed, px) for scale."""
    if estimated.source != exact.source:
        raise ValueError("estimated: not the same pairs as exact (their sources differ)")
    err = endpoint_errors(estimated.flows, exact.flows)
    faces = exact.labels > 0
    return {"epe": float(err.mean()), "epe_median": float(err.median()),
            "epe_faces": float(err[faces].mean()), "epe_background": float(err[~faces].mean()),
            "over_1px": float((err > 1).float().mean()),
            "speed": float(exact.flows.norm(dim=1).mean())}


def grid_config(loss: str, seed: int, steps: int, size: int) -> TrainConfig:
    """The :class:`~s3lib.train.TrainConfig` of one grid run: :data:`GRID_SETTINGS` with
    ``loss``, ``seed``, ``steps``, ``size`` (one held-out evaluation, at the end)."""
    from .train import TrainConfig

    if loss not in GRID_LOSSES:
        raise ValueError(f"loss: expected one of {GRID_LOSSES}, got {loss!r}")
    config = TrainConfig(loss=loss, seed=seed, steps=steps, size=size, eval_every=steps,
                         **GRID_SETTINGS)
    config.validate()
    return config


def _write(path: Path, payload: dict[str, Any]) -> None:
    with atomic_write(path, "w") as fh:
        fh.write(json.dumps(payload, indent=1) + "\n")


def run_grid(out: str | Path, seeds: Sequence[int] = (0, 1, 2), steps: int = GRID_STEPS,
             size: int = GRID_SIZE, losses: Sequence[str] = GRID_LOSSES,
             flows: Sequence[str] = FLOWS, progress: bool = True) -> dict[str, Any]:
    """Train and score every ``(loss, flow, seed)`` run of the grid; write ``out`` (JSON).

    ``out`` holds ``settings`` (the grid's ``steps``, ``size``, ``seeds`` and the
    :data:`GRID_SETTINGS`, the cube's ``look`` among them), ``epe`` (:func:`flow_errors` per
    estimated flow, on the training pairs), ``estimate_seconds`` and ``runs``: one record per
    run with ``loss``, ``flow``, ``seed``, the held-out ``miou``, ``fg_ari``,
    ``segment_fractions``, ``heldout_loss``, ``seconds`` (of training, wall clock) and
    ``train`` (its every setting). It is rewritten atomically after every run; runs already in
    an existing ``out`` of the same settings are kept and skipped (a rerun resumes). Runs go
    one at a time, on one thread, in temporary folders. Returns the final JSON object."""
    from tqdm.auto import tqdm

    from .setup import reproducible
    from .train import train

    out = Path(out)
    unknown = ([x for x in losses if x not in GRID_LOSSES] + [x for x in flows if x not in FLOWS])
    if unknown:
        raise ValueError(f"losses/flows: unknown {unknown}; expected {GRID_LOSSES} / {FLOWS}")
    if not seeds:
        raise ValueError("seeds: give at least one seed")
    settings = {"steps": int(steps), "size": int(size), "seeds": [int(s) for s in seeds],
                **GRID_SETTINGS}
    grid_config(losses[0], int(seeds[0]), int(steps), int(size))  # fails early on bad settings
    payload: dict[str, Any] = {"settings": settings, "epe": {}, "estimate_seconds": {},
                               "runs": []}
    if out.is_file():
        old = json.loads(out.read_text())
        if old.get("settings") == settings:
            payload = old
    reproducible(0, threads=GRID_SETTINGS["threads"])  # OpenCV and torch on one thread, as training
    look, frames = GRID_SETTINGS["look"], GRID_SETTINGS["frames"]
    exact = cube_pairs(TRAIN_SEEDS, size=size, frames=frames, look=look)
    heldout = heldout_cube_pairs(size, look=look)
    data = {"exact": exact}
    for flow in flows:
        if flow == "exact":
            continue
        start = time.perf_counter()
        data[flow] = estimated_cube_pairs(flow, TRAIN_SEEDS, size, frames, look)
        payload["estimate_seconds"].setdefault(flow, time.perf_counter() - start)
        payload["epe"][flow] = flow_errors(data[flow], exact)
    _write(out, payload)
    done = {(r["loss"], r["flow"], r["seed"]) for r in payload["runs"]}
    todo = [(loss, flow, int(seed)) for seed in seeds for flow in flows for loss in losses
            if (loss, flow, int(seed)) not in done]
    for loss, flow, seed in tqdm(todo, desc="flow-noise grid", disable=not progress):
        config = grid_config(loss, seed, steps, size)
        with tempfile.TemporaryDirectory(prefix="s3-flow-noise-") as run:
            start = time.perf_counter()
            rec = train(config, run, progress=False, data=(data[flow], heldout))[-1]
            seconds = time.perf_counter() - start
        payload["runs"].append({"loss": loss, "flow": flow, "seed": seed, "miou": rec["miou"],
                                "fg_ari": rec["fg_ari"], "heldout_loss": rec["heldout_loss"],
                                "segment_fractions": rec["segment_fractions"],
                                "seconds": seconds, "train": asdict(config)})
        _write(out, payload)
    return payload


def _records(grid: dict[str, Any] | Sequence[dict[str, Any]]) -> Sequence[dict[str, Any]]:
    return grid["runs"] if isinstance(grid, dict) else grid


def summarise(grid: dict[str, Any] | Sequence[dict[str, Any]]
              ) -> dict[tuple[str, str], dict[str, Any]]:
    """Per ``(loss, flow)`` of ``grid`` (:func:`run_grid`'s object, or its ``runs``): ``n``,
    ``seeds``, and for each measure ``m`` of :data:`MEASURES` its values over the seeds
    (``m``, in seed order), ``m_mean`` and ``m_std`` (ddof 1; NaN for one seed)."""
    table: dict[tuple[str, str], dict[str, Any]] = {}
    runs = _records(grid)
    for loss, flow in sorted({(r["loss"], r["flow"]) for r in runs}):
        rows = sorted((r for r in runs if (r["loss"], r["flow"]) == (loss, flow)),
                      key=lambda r: r["seed"])
        row: dict[str, Any] = {"n": len(rows), "seeds": [r["seed"] for r in rows]}
        for m in MEASURES:
            values = np.array([r[m] for r in rows], dtype=float)
            row[m] = values.tolist()
            row[f"{m}_mean"] = float(values.mean())
            row[f"{m}_std"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
        table[(loss, flow)] = row
    return table


def paired_differences(grid: dict[str, Any] | Sequence[dict[str, Any]], flow: str,
                       measure: str = "miou", first: str = "entropy", second: str = "affine"
                       ) -> dict[int, float]:
    """``{seed: first - second}``: the ``measure`` of the ``first`` loss minus that of the
    ``second`` at the same seed and ``flow``, for the seeds both have."""
    if measure not in MEASURES:
        raise ValueError(f"measure: expected one of {MEASURES}, got {measure!r}")
    by = {(r["loss"], r["flow"], r["seed"]): r[measure] for r in _records(grid)}
    seeds = sorted(s for (l, f, s) in by if (l, f) == (first, flow)
                   and (second, flow, s) in by)
    return {s: by[(first, flow, s)] - by[(second, flow, s)] for s in seeds}


def works_better(diffs: Sequence[float]) -> int:
    """The rule for a claim: ``+1`` when every paired difference is positive and their mean
    exceeds their standard deviation (ddof 1), ``-1`` for the mirror case, ``0`` otherwise
    (inconclusive; also with fewer than two differences)."""
    d = np.asarray(list(diffs), dtype=float)
    if len(d) < 2:
        return 0
    mean, std = float(d.mean()), float(d.std(ddof=1))
    if (d > 0).all() and mean > std:
        return 1
    if (d < 0).all() and -mean > std:
        return -1
    return 0


def verdict(grid: dict[str, Any] | Sequence[dict[str, Any]], flow: str, measure: str = "miou"
            ) -> str:
    """``"entropy"`` or ``"affine"``: the loss that works better on ``flow`` by ``measure``
    under :func:`works_better`'s rule (every seed's entropy-minus-affine difference of one
    sign, mean larger than the std); ``"inconclusive"`` otherwise. Notebook 06 states it."""
    return {1: "entropy", -1: "affine", 0: "inconclusive"}[
        works_better(list(paired_differences(grid, flow, measure).values()))]


def format_table(grid: dict[str, Any]) -> str:
    """The grid as text: per flow, each loss's held-out mIoU and FG-ARI (mean +- std over the
    seeds), the paired entropy - affine differences and the verdict per measure."""
    table = summarise(grid)
    flows = [f for f in FLOWS if any(k[1] == f for k in table)]
    lines = [f"{'flow':10s} {'loss':8s} {'mIoU':>15s} {'FG-ARI':>15s}  n"]
    for flow in flows:
        for loss in GRID_LOSSES:
            row = table.get((loss, flow))
            if row:
                lines.append(f"{flow:10s} {loss:8s} {row['miou_mean']:7.3f} +- "
                             f"{row['miou_std']:.3f} {row['fg_ari_mean']:7.3f} +- "
                             f"{row['fg_ari_std']:.3f}  {row['n']}")
        for m in MEASURES:
            d = list(paired_differences(grid, flow, m).values())
            if d:
                lines.append(f"{'':10s} entropy - affine {m}: " + " ".join(f"{x:+.3f}" for x in d)
                             + f" -> {verdict(grid, flow, m)}")
    return "\n".join(lines)


__all__ = ["FLOWS", "GRID_LOSSES", "MEASURES", "GRID_STEPS", "GRID_SIZE", "GRID_SETTINGS",
           "estimated_cube_pairs", "endpoint_errors", "flow_errors", "grid_config", "run_grid",
           "summarise", "paired_differences", "works_better", "verdict", "format_table"]
