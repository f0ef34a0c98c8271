"""One training loop for the segmentation network, used by ``s3 train`` and the notebooks.

Seeded and deterministic on the CPU; ``tqdm`` progress; periodic evaluation; checkpoints
written atomically (temp file, then rename) with the optimiser and random-generator state, so
``resume=True`` continues to exactly the result of an uninterrupted run; metrics appended to a
JSON-lines file. Dead segments (almost no pixels) are re-seeded from the worst-fitting segment,
which breaks the symmetry the affine loss otherwise leaves (notebook 04).

Explained in ``notebooks/04_cube_toy.ipynb``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data.cube import HELDOUT_SEEDS, TRAIN_SEEDS, render_cube_sequence
from .losses import affine_motion_loss, fit_affine, segment_squared_residuals
from .metrics import adjusted_rand_index, matched_miou
from .models import SegmentationNet, load_checkpoint, save_checkpoint
from .setup import reproducible


@dataclass
class TrainConfig:
    """Settings of a cube training run (``s3 train cube`` flags)."""

    size: int = 64
    num_segments: int = 7
    steps: int | None = None
    minutes: float | None = 15.0
    batch: int = 16
    lr: float = 2e-3
    seed: int = 0
    width: int = 32
    frames: int = 99
    eval_every: int = 100
    reseed_every: int = 50
    dead_usage: float = 0.01
    threads: int = 1

    def validate(self) -> None:
        if self.num_segments < 2:
            raise ValueError(f"num_segments: expected >= 2, got {self.num_segments}")
        if self.size < 8 or self.size % 4:
            raise ValueError(f"size: expected a multiple of 4, >= 8, got {self.size}")
        if self.steps is None and self.minutes is None:
            raise ValueError("give steps or minutes")
        if self.batch < 1 or self.frames < 2:
            raise ValueError(f"batch >= 1 and frames >= 2 expected, got {self.batch}, {self.frames}")


def cube_data(seeds, size: int, frames: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frame pairs of the cube sequences ``seeds``: ``images (N, 3, H, W)``, ``flows (N, 2, H,
    W)`` (exact, to the next frame) and ``labels (N, H, W)``."""
    seqs = [render_cube_sequence(frames, size, s) for s in seeds]
    return (torch.cat([q.frames[:-1] for q in seqs]), torch.cat([q.flows for q in seqs]),
            torch.cat([q.labels[:-1] for q in seqs]))


@torch.no_grad()
def evaluate(model: SegmentationNet, images: torch.Tensor, labels: torch.Tensor,
             batch: int = 32) -> dict[str, float]:
    """Mean matched mIoU and FG-ARI of the hard segments over the frames."""
    model.eval()
    mious, aris = [], []
    for i in range(0, len(images), batch):
        pred = model(images[i:i + batch]).argmax(1)
        for p, t in zip(pred, labels[i:i + batch]):
            mious.append(matched_miou(p, t))
            if (t > 0).any():
                aris.append(adjusted_rand_index(p, t, ignore_background=True))
    return {"miou": float(np.mean(mious)), "fg_ari": float(np.mean(aris)) if aris else float("nan")}


@torch.no_grad()
def reseed_dead_segments(model: SegmentationNet, masks: torch.Tensor, flows: torch.Tensor,
                         dead_usage: float, gen: torch.Generator) -> list[int]:
    """Give every segment used by less than ``dead_usage`` of the pixels the head weights of the
    worst-fitting segment plus noise; returns the re-seeded segment indices."""
    usage = masks.mean((0, 2, 3))
    dead = torch.nonzero(usage < dead_usage).flatten().tolist()
    if not dead:
        return []
    params = fit_affine(flows, masks)
    rho = segment_squared_residuals(params, flows).sqrt()  # (B, L, N)
    m = masks.flatten(2)
    cost = (m * rho).sum((0, 2)) / m.sum((0, 2)).clamp_min(1e-6)
    cost[dead] = -1
    worst = int(cost.argmax())
    w, b = model.head.weight, model.head.bias
    for d in dead:
        w[d] = w[worst] + 0.1 * w[worst].abs().mean() * torch.randn(w[worst].shape, generator=gen)
        b[d] = b[worst]
    return dead


def train(config: TrainConfig, out: str | Path, resume: bool = False, progress: bool = True,
          heldout: tuple[torch.Tensor, torch.Tensor] | None = None) -> list[dict[str, Any]]:
    """Train on the cube's training sequences; write ``out/checkpoint.pt`` and ``out/metrics.jsonl``.

    Returns the metric records of this run (one per evaluation).
    """
    config.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = out / "checkpoint.pt", out / "metrics.jsonl"
    reproducible(config.seed, threads=config.threads)
    images, flows, _ = cube_data(TRAIN_SEEDS, config.size, config.frames)
    if heldout is None:
        h_img, _, h_lab = cube_data(HELDOUT_SEEDS, config.size, 25)
        heldout = (h_img, h_lab)
    model = SegmentationNet(config.num_segments, config.width)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    step, elapsed = 0, 0.0
    if resume and ckpt_path.is_file():
        payload = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        budget = ("steps", "minutes")  # the only settings a resumed run may change
        saved = {k: v for k, v in payload["config"]["train"].items() if k not in budget}
        if saved != {k: v for k, v in asdict(config).items() if k not in budget}:
            raise ValueError(f"{ckpt_path}: written with other settings; use another --out")
        model.load_state_dict(payload["model"])
        opt.load_state_dict(payload["optimizer"])
        gen.set_state(payload["generator"])
        step, elapsed = int(payload["step"]), float(payload["elapsed"])
        if log_path.exists():  # drop records past the checkpoint (a crash after logging)
            keep = [ln for ln in log_path.read_text().splitlines() if json.loads(ln)["step"] <= step]
            log_path.write_text("".join(k + "\n" for k in keep))
    elif log_path.exists():
        log_path.unlink()
    records: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=step, desc="train cube")
    start = time.perf_counter() - elapsed

    def done() -> bool:
        if config.steps is not None and step >= config.steps:
            return True
        return config.minutes is not None and time.perf_counter() - start >= config.minutes * 60

    def save() -> None:
        cfg = {"size": config.size, "train": asdict(config)}
        save_checkpoint(ckpt_path, model, cfg, extra={
            "optimizer": opt.state_dict(), "generator": gen.get_state(), "step": step,
            "elapsed": time.perf_counter() - start})

    loss_value = float("nan")
    while not done():
        model.train()
        idx = torch.randint(len(images), (config.batch,), generator=gen)
        masks = model(images[idx]).softmax(1)
        loss = affine_motion_loss(masks, flows[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        loss_value = float(loss.detach())
        if config.reseed_every and step % config.reseed_every == 0:
            reseed_dead_segments(model, masks.detach(), flows[idx], config.dead_usage, gen)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}")
        if step % config.eval_every == 0 or done():
            rec = {"step": step, "loss": loss_value, "elapsed": time.perf_counter() - start,
                   **evaluate(model, *heldout)}
            records.append(rec)
            with open(log_path, "a") as fh:
                fh.write(json.dumps(rec) + "\n")
            save()
    if bar is not None:
        bar.close()
    if not records or records[-1]["step"] != step:
        save()
    return records


def evaluate_checkpoint(path: str | Path, frames: int = 25) -> dict[str, Any]:
    """``s3 eval cube``: load a checkpoint and score it on the held-out sequences."""
    model, config = load_checkpoint(path)
    images, _, labels = cube_data(HELDOUT_SEEDS, int(config["size"]), frames)
    return {**evaluate(model, images, labels), "frames": len(images),
            "heldout_seeds": list(HELDOUT_SEEDS), "size": config["size"],
            "num_segments": config["num_segments"]}
