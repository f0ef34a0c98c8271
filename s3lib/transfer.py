"""Notebook 07's transfer experiment: does S3 pre-training help recognition, at CPU scale?

Arms (:data:`ARMS`), each pre-trained by ``s3 pretrain --data shapes`` with its own seed and
then fine-tuned by ``s3 finetune shapes`` in two regimes (``all`` layers, ``fc8`` only):

- ``random``: no pre-training (batch norm estimated on the labelled images and folded);
- ``s3-affine``, ``s3-entropy``: S3 with the affine or the entropy motion loss;
- ``shuffled-flow``: the affine loss on another scene's flow (same statistics, no link to the
  picture): if this helped as much, the gain would not come from grouping by motion;
- ``supervised``: pre-trained with labels (5,120 labelled stills, 2,400 iterations: four times
  the S3 arms' budget, as ImageNet is a much larger labelled set than the videos; the stand-in
  for the paper's ImageNet row).

:func:`run_grid` runs every command (``jobs`` at a time, each in its own process, skipping
results already on disk) and writes ``OUT/grid.json``; :func:`summarise` gives mean +- std over
the seeds and the paired differences against random init, and :func:`verdict` the rule the
notebook states: an arm helps only where it beats random init at every seed by more than the
spread of the paired differences (:func:`beats_baseline`) and the shuffled-flow control does
not.

``s3 transfer --out DIR [--seeds 0 1 2 3 4] [--jobs 2]`` runs it. Explained in
``notebooks/07_voc07_transfer.ipynb``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ._io import atomic_write

ARMS: dict[str, list[str] | None] = {
    "random": None,
    "s3-affine": ["--loss", "affine"],
    "s3-entropy": ["--loss", "entropy"],
    "shuffled-flow": ["--loss", "affine", "--shuffle-flow"],
    "supervised": ["--loss", "supervised", "--scenes", "5120", "--steps", "2400"],
}
"""Each arm's ``s3 pretrain --data shapes`` flags (``None``: no pre-training)."""
REGIMES = ("all", "fc8")


def pretrain_command(arm: str, seed: int, out: Path) -> list[str] | None:
    """The ``s3 pretrain`` arguments of ``arm`` at ``seed`` (``None`` for random init)."""
    flags = ARMS[arm]
    if flags is None:
        return None
    return ["pretrain", "--data", "shapes", *flags, "--seed", str(seed), "--out", str(out),
            "--quiet"]


def finetune_command(arm: str, regime: str, seed: int, init: Path | None) -> list[str]:
    """The ``s3 finetune shapes`` arguments of one cell of the grid."""
    return ["finetune", "shapes", "--init", "random" if init is None else str(init),
            "--train-from", regime, "--seed", str(seed), "--json", "--quiet"]


def _s3(args: Sequence[str]) -> str:
    done = subprocess.run([sys.executable, "-m", "s3lib", *args], capture_output=True,
                          text=True)
    if done.returncode:
        raise RuntimeError(f"s3 {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def run_grid(out: str | Path, seeds: Sequence[int] = (0, 1, 2, 3, 4), jobs: int = 2,
             arms: Sequence[str] = tuple(ARMS), regimes: Sequence[str] = REGIMES,
             progress: bool = True) -> list[dict[str, Any]]:
    """Run (or complete) the grid in ``out``: ``out/pretrain/<arm>-s<seed>/`` runs,
    ``out/finetune/<arm>-<regime>-s<seed>.json`` results, and ``out/grid.json`` with one
    record per cell (``arm``, ``regime``, ``seed``, ``map``, ``ap``, ``pretrain_seconds``,
    ``finetune_seconds``). ``jobs`` commands run at a time (one CPU thread each)."""
    from tqdm.auto import tqdm

    out = Path(out)
    unknown = [a for a in arms if a not in ARMS] + [r for r in regimes if r not in REGIMES]
    if unknown:
        raise ValueError(f"arms/regimes: unknown {unknown}; expected {tuple(ARMS)} / {REGIMES}")
    (out / "finetune").mkdir(parents=True, exist_ok=True)

    def pretrained(arm: str, seed: int) -> Path | None:
        run = out / "pretrain" / f"{arm}-s{seed}"
        cmd = pretrain_command(arm, seed, run)
        if cmd is None:
            return None
        if not (run / "checkpoint.pt").is_file():
            _s3(cmd)
        return run / "checkpoint.pt"

    def cell(key: tuple[str, str, int]) -> dict[str, Any]:
        arm, regime, seed = key
        path = out / "finetune" / f"{arm}-{regime}-s{seed}.json"
        if not path.is_file():
            result = json.loads(_s3(finetune_command(arm, regime, seed, inits[(arm, seed)])))
            with atomic_write(path, "w") as fh:
                fh.write(json.dumps(result))
        result = json.loads(path.read_text())
        pre = out / "pretrain" / f"{arm}-s{seed}" / "metrics.jsonl"
        seconds = (json.loads(pre.read_text().splitlines()[-1])["elapsed"]
                   if pre.is_file() else 0.0)
        return {"arm": arm, "regime": regime, "seed": seed, "map": result["map"],
                "ap": result["ap"], "map_voc07": result["map_voc07"],
                "pretrain_seconds": seconds, "finetune_seconds": result["seconds"]}

    keys = [(a, s) for a in arms for s in seeds]
    with ThreadPoolExecutor(jobs) as pool:
        inits = dict(zip(keys, tqdm(pool.map(lambda k: pretrained(*k), keys), total=len(keys),
                                    desc="pretrain", disable=not progress)))
        cells = [(a, r, s) for a in arms for r in regimes for s in seeds]
        records = list(tqdm(pool.map(cell, cells), total=len(cells), desc="finetune",
                            disable=not progress))
    with atomic_write(out / "grid.json", "w") as fh:
        fh.write(json.dumps(records, indent=1))
    return records


def summarise(records: Sequence[dict[str, Any]], baseline: str = "random"
              ) -> dict[tuple[str, str], dict[str, Any]]:
    """Per ``(arm, regime)``: ``mean`` and ``std`` (over seeds, ddof 1) of the mAP, ``n``,
    and the paired differences against ``baseline`` at the same seed: ``diff_mean``,
    ``diff_std``, ``diffs``. Fractions, not per cent."""
    table: dict[tuple[str, str], dict[str, Any]] = {}
    by = {(r["arm"], r["regime"], r["seed"]): r["map"] for r in records}
    for arm, regime in sorted({(r["arm"], r["regime"]) for r in records}):
        seeds = sorted(s for (a, g, s) in by if (a, g) == (arm, regime))
        maps = np.array([by[(arm, regime, s)] for s in seeds])
        paired = [s for s in seeds if (baseline, regime, s) in by]
        diffs = np.array([by[(arm, regime, s)] - by[(baseline, regime, s)] for s in paired])
        table[(arm, regime)] = {
            "n": len(maps), "mean": float(maps.mean()),
            "std": float(maps.std(ddof=1)) if len(maps) > 1 else float("nan"),
            "diffs": diffs.tolist(), "diff_mean": float(diffs.mean()) if len(diffs) else 0.0,
            "diff_std": float(diffs.std(ddof=1)) if len(diffs) > 1 else float("nan")}
    return table


def beats_baseline(row: dict[str, Any]) -> bool:
    """The rule of notebook 07: every seed's paired difference is positive and their mean
    exceeds their spread (the standard deviation of the differences, ddof 1). With five seeds
    that is stricter than a one-sided paired t-test at 5%, which asks for 0.95 standard
    deviations."""
    return (len(row["diffs"]) > 1 and min(row["diffs"]) > 0
            and row["diff_mean"] > row["diff_std"])


def verdict(table: dict[tuple[str, str], dict[str, Any]], arm: str, regime: str,
            control: str = "shuffled-flow") -> str:
    """``"helps"`` where ``arm`` beats random init (:func:`beats_baseline`) in ``regime`` and
    the ``control`` does not; ``"no evidence"`` otherwise (with the reason)."""
    row, ctrl = table[(arm, regime)], table.get((control, regime))
    if not beats_baseline(row):
        return "no evidence: not above random init by more than the spread"
    if ctrl is not None and beats_baseline(ctrl):
        return "no evidence: the shuffled-flow control helps as much"
    return "helps"


def format_table(table: dict[tuple[str, str], dict[str, Any]]) -> str:
    """The summary as text: mAP % mean +- std and the paired difference, per arm and regime."""
    lines = [f"{'arm':15s} {'regime':6s} {'mAP %':>14s} {'vs random':>16s}  n"]
    for (arm, regime), row in sorted(table.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        diff = ("" if arm == "random" else
                f"{100 * row['diff_mean']:+6.1f} +- {100 * row['diff_std']:4.1f}")
        lines.append(f"{arm:15s} {regime:6s} {100 * row['mean']:7.1f} +- {100 * row['std']:4.1f} "
                     f"{diff:>16s}  {row['n']}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- features
BLOCKS = ("block1", "block2", "block3", "block4", "block5")


@torch.no_grad()
def block_features(model: torch.nn.Module, images: torch.Tensor, block: int) -> torch.Tensor:
    """``(B, C, h, w)``: the output of VGG block ``block`` (1-5, after its pooling) of an
    :class:`~s3lib.fcn.FCN8s` or :class:`~s3lib.fcn.VGG16Classifier` for ``images
    (B, 3, H, W)`` in [0, 1], in eval mode."""
    if not 1 <= block <= 5:
        raise ValueError(f"block: expected 1 to 5, got {block!r}")
    model.eval()
    x = (images - model.mean) / model.std
    for name in BLOCKS[:block]:
        x = getattr(model.features, name)(x)
    return x


def channel_objectness(features: torch.Tensor, layers: torch.Tensor) -> torch.Tensor:
    """How much more each channel fires on objects than on the background: ``(C,)`` = mean
    activation over object pixels / mean over all pixels (1: indifferent), from ``features
    (C, h, w)`` upsampled to ``layers (H, W)`` (0 background, >0 objects). Channels that never
    fire get 1."""
    up = F.interpolate(features[None], size=layers.shape, mode="bilinear",
                       align_corners=False)[0]
    obj = layers > 0
    if not obj.any() or obj.all():
        raise ValueError("layers: need both object and background pixels")
    overall = up.mean((1, 2))
    inside = up[:, obj].mean(1)
    return torch.where(overall > 1e-8, inside / overall.clamp_min(1e-8), torch.ones_like(overall))


def top_channels(features: torch.Tensor, k: int = 6) -> torch.Tensor:
    """Indices of the ``k`` channels of ``features (C, h, w)`` with the largest mean."""
    return features.mean((1, 2)).argsort(descending=True)[:k]


PAPER_TABLE1 = {"ImageNet": 86.9, "Random (~ [2])": 59.85, "k-means [34]": 56.5,
                "Colorization [2]": 77.2, "S3-CNN": 76.35}
"""The paper's Table 1: VOC 2007 classification, % mAP on the test split, VGG-16 fine-tuned
(its AlexNet S3-CNN: 57.37, against 61 for Pathak et al.)."""


def full_scale_commands(videos: str = "data/videos", caches: str = "data/cache/videos",
                        voc: str = "data/voc2007", gpus: int = 8, shards: int = 4) -> list[str]:
    """The commands of notebook 07's full-scale recipe, in order: prepare the videos in
    ``shards`` parallel shards, pre-train the full FCN-8s/VGG-16 on ``gpus`` GPUs, fine-tune
    on VOC 2007 with the protocol, and score it."""
    prepare = [f"s3 prepare-video {videos} --out {caches} --size 320x224 --gap 4 "
               f"--workers 8 --shard {i}/{shards} &" for i in range(shards)]
    return [*prepare, "wait",
            f"torchrun --nproc_per_node={gpus} -m s3lib pretrain --data {caches} --width 1 "
            f"--num-segments 5 --loss entropy --batch {16 * gpus} --steps 100000 --workers 8 "
            f"--device cuda --amp bf16 --out runs/s3-vgg16",
            f"s3 finetune voc2007 --root {voc} --init runs/s3-vgg16/checkpoint.pt "
            f"--train-from all --workers 8 --device cuda --out runs/voc07-s3",
            "s3 eval voc2007 --checkpoint runs/voc07-s3/checkpoint.pt --device cuda --json"]
