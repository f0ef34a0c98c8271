"""One training loop for the segmentation network, used by ``s3 train`` and the notebooks.

Seeded and deterministic on the CPU; ``tqdm`` progress; periodic evaluation on held-out pairs;
checkpoints written atomically (temp file, then rename) with the optimiser and random-generator
state, so ``resume=True`` continues to exactly the result of an uninterrupted run (of a run
budgeted in steps: one budgeted in minutes depends on the machine's speed anyway); metrics
appended to a JSON-lines file. Adam's learning rate decays along a cosine over the budget. Dead
segments (winning almost no pixels) are re-seeded from the worst-fitting segment during the
first three quarters of the budget, while some segment still fits badly (``split_above``), which
breaks the symmetry the motion losses otherwise leave.

The data are frame pairs: the cube in memory (:class:`~s3lib.data.pairs.FlowPairs`,
``dataset="cube"``, notebook 04), or frames of real video / MPI-Sintel read from disk a batch at
a time (:class:`~s3lib.data.pairs.VideoPairs`, :class:`~s3lib.data.pairs.SintelPairs`;
``dataset="video"``, notebooks 05-06). The loss is one of
the motion losses of notebooks 02-03 (``affine``, ``entropy``) or eq. (1) of notebook 01
(``marginal``).

Explained in ``notebooks/04_cube_toy.ipynb``.
"""

from __future__ import annotations

import json
import math
import time
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from . import motion
from .data.cube import HELDOUT_SEEDS
from .data.cube import Look as CubeLook
from .data.pairs import (FlowPairs, LazyPairs, batch_of, cube_pairs, heldout_cube_pairs,
                         load_pairs, prefetched_batches)
from .losses import (affine_motion_loss, entropy_motion_loss, fit_affine, histogram_entropy,
                     marginal_likelihood_loss, speed_histograms)
from .metrics import adjusted_rand_index, matched_miou
from .models import SegmentationNet, load_checkpoint, save_checkpoint
from .motion import DEFAULT_EPS
from .setup import DEFAULT_THREADS, reproducible

Dataset = Literal["cube", "video"]
Loss = Literal["affine", "entropy", "marginal"]
Schedule = Literal["cosine", "constant"]
DeadBy = Literal["wins", "mass"]
Combine = Literal["segments", "blend"]

LOSSES: tuple[str, ...] = typing.get_args(Loss)
DATASETS: tuple[str, ...] = typing.get_args(Dataset)
DEAD_BY: tuple[str, ...] = typing.get_args(DeadBy)
SCHEDULES: tuple[str, ...] = typing.get_args(Schedule)


ADDED_SETTINGS: dict[str, Any] = {"weight_decay": 0.0, "crop": 1.0, "split_above": 0.0}
"""Settings that ``TrainConfig`` gained after checkpoints had been written, with the value
those runs used (they trained without the feature)."""


def _opt(default: Any, help: str, **meta: Any) -> Any:
    """A :class:`TrainConfig` field with its ``s3 train`` help text (and ``group``: fields of
    one group are alternatives, e.g. the budget)."""
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class TrainConfig:
    """Settings of a training run: the one place where their defaults live.

    ``s3 train`` builds its flags from these fields (:func:`s3lib.cli.build_parser`: a field
    ``dead_by`` is the flag ``--dead-by``, its type and ``Literal`` choices are the flag's,
    its ``help`` metadata the flag's help), and checkpoints store them (``config["train"]``).

    ``dataset="cube"`` renders the cube at ``size`` x ``size`` (``frames`` frames per training
    sequence; the training flow spans frames ``t -> t + gap``, larger motions that are still
    exactly affine per face; held-out scores always use ``gap`` 1); ``dataset="video"`` reads
    ``data`` (prepare-video caches or MPI-Sintel; their gap is ``prepare-video``'s).
    The network is a :class:`~s3lib.models.SegmentationNet` of ``width`` and ``levels``.
    ``lr``: Adam's learning rate, decayed to 0 over the budget with ``schedule="cosine"``
    (:func:`learning_rate`); ``weight_decay > 0``: AdamW's decay on the convolutions that batch
    norm follows (:func:`make_optimizer`). ``reseed_every`` steps, segments with less than ``dead_usage`` of
    the pixels (``dead_by``: pixels won, or soft mass; :func:`segment_usage`) are re-seeded,
    until ``reseed_until`` of the budget is spent (:func:`budget_spent`; 1: to the end): a
    re-seeded segment takes pixels from the worst one, a jolt the decayed learning rate of the
    last steps could not repair. ``split_above``: only while some live segment's cost
    (:func:`segment_costs`: px for the affine loss, nats for the entropy loss) is above it (0:
    always), so once every motion has its model the spare segment stays
    dead instead of being re-seeded onto a face again and again (appendix 04b, A7).
    ``eps``: the ridge of the affine loss's per-segment fit (:data:`s3lib.motion.DEFAULT_EPS`).
    ``augment``: each training pair is zoomed in by a random factor in ``[1, zoom]``
    (:func:`zoom_crop`) and transformed by a random symmetry (:func:`dihedral`: all eight of
    the square for the cube, left-right mirroring for video), its flow transformed with it;
    the cube's colours are rotated by a random angle in ``[-hue, hue]`` radians
    (:func:`rotate_hue`; 0: off; video keeps its colours). ``plain_steps``: the first steps
    without any augmentation (a curriculum: faces first, then invariance). Augmentations
    change the pictures, never the grouping the flow implies. ``crop < 1`` (cube): every step
    trains on a random square window of each pair, its side that share of the image's
    (:func:`crop_side`, :func:`crop_windows`): a cheaper step on fewer pixels; held-out scores
    always see whole pictures (video trains on whole frames). ``threads``: CPU threads (the
    results repeat exactly for a fixed count). ``workers``: video and Sintel only, processes
    that read the next batches from disk while the network trains
    (:func:`~s3lib.data.pairs.prefetched_batches`); their indices then come from a random
    stream of their own (seed + 1), the same for any number of workers. Explained in ``notebooks/04_cube_toy.ipynb``.
    """

    dataset: Dataset = _opt("cube", "what to train on: the cube toy or video caches / Sintel")
    data: str | None = _opt(None, "video: caches of `s3 prepare-video` (or MPI-Sintel's folder)")
    loss: Loss = _opt("affine", "the motion loss (notebooks 01-03)")
    size: int = _opt(64, "cube: image side in pixels (a multiple of 4)")
    num_segments: int = _opt(5, "number of segments L (>= 2)")
    steps: int | None = _opt(8000, "train for this many steps", group="budget")
    minutes: float | None = _opt(None, "train for this many minutes (then the number of steps "
                                       "depends on the machine)", group="budget")
    batch: int = _opt(8, "pairs per step")
    lr: float = _opt(3e-3, "Adam's learning rate")
    weight_decay: float = _opt(0.0, "decoupled weight decay (AdamW) of the convolutions that "
                                    "batch norm follows (0: plain Adam)")
    schedule: Schedule = _opt("cosine", "learning rate: cosine decay to 0 over the budget, or "
                                        "constant")
    seed: int = _opt(0, "seed of the network's initialisation, batches and augmentations")
    width: int = _opt(8, "channels of the network's full-resolution level")
    levels: int = _opt(4, "poolings of the U-Net (1-5)")
    coords: bool = _opt(True, "the network also sees the pixel coordinates (--no-coords: colour "
                              "only)")
    frames: int = _opt(99, "cube: frames per training sequence")
    look: CubeLook = _opt("pairs", "cube: the textures (pairs, material: colour alone cannot "
                                   "tell the faces apart; hues: a hue per face; notebook 04)")
    gap: int = _opt(1, "cube: train on the flow from frame t to t + GAP (larger motions)")
    eps: float = _opt(DEFAULT_EPS, "ridge of the affine loss's per-segment fit")
    bins: int = _opt(32, "entropy loss: bins of the speed histograms")
    max_speed: float = _opt(0.0, "entropy loss: speed (px) of the last bin; 0: each frame's "
                                 "largest speed")
    eval_every: int = _opt(100, "steps between held-out evaluations (and checkpoints)")
    reseed_every: int = _opt(50, "steps between re-seedings of dead segments (0: never)")
    dead_usage: float = _opt(0.01, "a segment with less than this share of the pixels is dead")
    dead_by: DeadBy = _opt("wins", "share of the pixels a segment wins (argmax), or of the soft "
                                   "mass")
    reseed_until: float = _opt(0.75, "stop re-seeding once this share of the budget is spent "
                                     "(1: to the end)")
    merge_below: float = _opt(0.02, "also re-seed one of two segments whose merge would cost "
                                    "less than this per pixel, while another fits worse (0: off)")
    split_above: float = _opt(0.1, "re-seed only while the worst-fitting live segment's cost "
                                   "is above this (affine: mean residual, px; entropy: mean "
                                   "histogram entropy, nats; 0: always)")
    threads: int = _opt(DEFAULT_THREADS, "CPU threads (results repeat exactly for a fixed count)")
    combine: Combine = _opt("segments", "affine loss: per-segment residuals, or the residual of "
                                        "the blended flow")
    augment: bool = _opt(True, "random symmetries, zoom and (cube) hue rotation")
    hue: float = _opt(math.pi, "cube: largest hue rotation in radians (0: off)")
    zoom: float = _opt(1.0, "largest random zoom-in factor (1: off)")
    plain_steps: int = _opt(0, "first steps without augmentation")
    crop: float = _opt(1.0, "cube: train on random square windows of this share of the image "
                            "side (1: whole pictures)")
    workers: int = _opt(0, "video: processes that read the next batches ahead (0: none; more "
                           "draws the batches from a stream of their own)")
    device: str = _opt("cpu", "cpu or cuda")

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting that cannot work."""
        hints = typing.get_type_hints(TrainConfig)
        for f in fields(self):
            choices = typing.get_args(hints[f.name]) if typing.get_origin(hints[f.name]) is \
                Literal else ()
            if choices and getattr(self, f.name) not in choices:
                raise ValueError(f"{f.name}: expected one of {choices}, got "
                                 f"{getattr(self, f.name)!r}")
        if self.dataset == "video" and not self.data:
            raise ValueError("data: a video run needs --data (prepare-video caches or Sintel)")
        if not isinstance(self.num_segments, int) or self.num_segments < 2:
            raise ValueError(f"num_segments: expected >= 2, got {self.num_segments}")
        if self.size < 8 or self.size % 4:
            raise ValueError(f"size: expected a multiple of 4, >= 8, got {self.size}")
        if self.steps is None and self.minutes is None:
            raise ValueError("give steps or minutes")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps: expected >= 1, got {self.steps}")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"minutes: expected > 0, got {self.minutes}")
        if not 0.0 <= self.reseed_until <= 1.0:
            raise ValueError(f"reseed_until: expected a share of the budget in [0, 1], "
                             f"got {self.reseed_until!r}")
        if self.batch < 1 or self.frames < 2:
            raise ValueError(f"batch >= 1 and frames >= 2 expected, got {self.batch}, {self.frames}")
        if self.threads < 1 or self.eval_every < 1 or self.reseed_every < 0:
            raise ValueError(f"threads >= 1, eval_every >= 1 and reseed_every >= 0 expected, "
                             f"got {self.threads}, {self.eval_every}, {self.reseed_every}")
        if (isinstance(self.eps, bool) or not isinstance(self.eps, (int, float))
                or not 0 < self.eps < math.inf):
            raise ValueError(f"eps: expected a positive ridge, got {self.eps!r}")
        if not isinstance(self.workers, int) or self.workers < 0:
            raise ValueError(f"workers: expected an int >= 0, got {self.workers!r}")
        if self.workers and self.dataset == "cube":
            raise ValueError("workers: the cube is rendered in memory; reading ahead is for "
                             "video and Sintel (use 0)")
        if isinstance(self.bins, bool) or not isinstance(self.bins, int) or self.bins < 2:
            raise ValueError(f"bins: expected an int >= 2, got {self.bins!r}")
        for name in ("max_speed", "merge_below", "weight_decay", "split_above"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
        if (isinstance(self.crop, bool) or not isinstance(self.crop, (int, float))
                or not 0 < self.crop <= 1):
            raise ValueError(f"crop: expected a share of the image side in (0, 1], "
                             f"got {self.crop!r}")
        if not self.zoom >= 1:
            raise ValueError(f"zoom: expected a factor >= 1, got {self.zoom!r}")
        if not 1 <= self.gap < self.frames or (self.dataset != "cube" and self.gap != 1):
            raise ValueError(f"gap: expected 1 <= gap < frames ({self.frames}), and 1 for video "
                             f"(prepare-video sets its gap), got {self.gap!r}")

    @classmethod
    def from_dict(cls, settings: dict[str, Any], where: str = "settings") -> TrainConfig:
        """The config stored in a checkpoint (``config["train"]``); ``ValueError`` naming
        ``where`` when a setting is missing or unknown (a checkpoint of another version).
        Settings added after a checkpoint was written take the value its run had
        (:data:`ADDED_SETTINGS`)."""
        names = {f.name for f in fields(cls)}
        settings = {**{k: v for k, v in ADDED_SETTINGS.items() if k in names}, **settings}
        missing, unknown = sorted(names - set(settings)), sorted(set(settings) - names)
        if missing or unknown:
            raise ValueError(f"{where}: training settings do not match this s3lib's TrainConfig "
                             f"(missing {missing}, unknown {unknown}); re-export the checkpoint "
                             f"with its settings")
        return cls(**settings)


def motion_loss(name: str, masks: torch.Tensor, flows: torch.Tensor,
                combine: str = "segments", eps: float = DEFAULT_EPS, *, bins: int = 32,
                max_speed: float = 0.0) -> torch.Tensor:
    """The loss ``name`` (``affine``, ``entropy``, ``marginal``) of ``masks (B, L, H, W)``
    against ``flows (B, 2, H, W)``: a scalar. ``eps``: the affine fit's ridge; ``bins`` and
    ``max_speed`` (0: each frame's largest speed): the entropy loss's histograms."""
    if name == "affine":
        return affine_motion_loss(masks, flows, combine=combine, eps=eps)
    if name == "entropy":
        return entropy_motion_loss(masks, flows, bins, max_speed or None)
    if name == "marginal":
        return marginal_likelihood_loss(masks, flows)
    raise ValueError(f"loss: expected one of {LOSSES}, got {name!r}")


@torch.no_grad()
def segment_costs(name: str, masks: torch.Tensor, flows: torch.Tensor,
                  eps: float = DEFAULT_EPS, *, bins: int = 32, max_speed: float = 0.0
                  ) -> torch.Tensor:
    """How badly each segment explains its flow, ``(L,)``: the mask-weighted mean affine
    residual (pixels), or for the entropy loss the mean entropy of its speed histogram
    (``bins``, ``max_speed``: as in :func:`motion_loss`)."""
    if name == "entropy":
        hist, _ = speed_histograms(masks, flows, bins, max_speed or None)
        return histogram_entropy(hist).mean(0)
    rho = motion.segment_residuals(fit_affine(flows, masks, eps), flows)  # (B, L, H, W)
    return (masks * rho).sum((0, 2, 3)) / masks.sum((0, 2, 3)).clamp_min(1e-6)


@torch.no_grad()
def merge_costs(name: str, masks: torch.Tensor, flows: torch.Tensor, eps: float = DEFAULT_EPS,
                *, bins: int = 32, max_speed: float = 0.0) -> torch.Tensor:
    """What merging two segments would cost, ``(L, L)`` (``inf`` on the diagonal): for the pair
    ``(i, j)``, the union's :func:`segment_costs` minus the two segments' own, both weighted by
    their masses and divided by the union's mass. About 0 for two pieces of one motion (one
    model explains both as well as two), large for two different motions. ``masks (B, L, H, W)``,
    ``flows (B, 2, H, W)``. Used by :func:`reseed_dead_segments` (notebook 04)."""
    num = masks.shape[1]
    i, j = torch.triu_indices(num, num, 1)
    unions = masks[:, i] + masks[:, j]                                  # (B, P, H, W)
    mass = masks.sum((0, 2, 3))
    own = segment_costs(name, masks, flows, eps, bins=bins, max_speed=max_speed) * mass
    union = segment_costs(name, unions, flows, eps, bins=bins, max_speed=max_speed)
    delta = union - (own[i] + own[j]) / (mass[i] + mass[j]).clamp_min(1e-6)
    out = torch.full((num, num), math.inf, dtype=delta.dtype, device=delta.device)
    out[i, j] = delta
    out[j, i] = delta
    return out


def segment_usage(masks: torch.Tensor, by: str = "wins") -> torch.Tensor:
    """How much of ``masks (B, L, H, W)`` each segment holds, ``(L,)``: the share of the pixels
    it wins (``by="wins"``: it is the argmax there) or its share of the soft mass
    (``by="mass"``). A segment can keep a few per cent of the mass everywhere and never win a
    pixel: a "zombie" that only ``wins`` sees as dead (notebook 04)."""
    if by == "wins":
        won = torch.bincount(masks.argmax(1).flatten(), minlength=masks.shape[1])
        return won.to(masks.dtype) / won.sum()
    if by == "mass":
        return masks.mean((0, 2, 3))
    raise ValueError(f"by: expected one of {DEAD_BY}, got {by!r}")


@torch.no_grad()
def reseed_dead_segments(model: SegmentationNet, masks: torch.Tensor, flows: torch.Tensor,
                         dead_usage: float, gen: torch.Generator, loss: str = "affine",
                         by: str = "wins", eps: float = DEFAULT_EPS, merge_below: float = 0.0,
                         *, bins: int = 32, max_speed: float = 0.0,
                         split_above: float = 0.0) -> list[int]:
    """Give every segment whose :func:`segment_usage` is below ``dead_usage`` the head weights
    of the worst-explained segment (:func:`segment_costs`) plus noise; returns the re-seeded
    indices.

    ``masks (B, L, H, W)``, ``flows (B, 2, H, W)``: the current batch. ``by``: ``"wins"``
    (share of the pixels won, the default) or ``"mass"`` (share of the soft mass, the rule of
    the course's first checkpoints). ``merge_below > 0``: when no segment is dead, the smaller
    of the two segments whose merge costs least (:func:`merge_costs`) is re-seeded as if dead,
    provided that cost is below ``merge_below`` and the worst segment's cost above it: a
    redundant piece moves to where a model is missing (split and merge; notebook 04).
    ``split_above > 0``: nothing is re-seeded while every live segment's cost is at most
    ``split_above`` (every motion has its model, and the spare segment of a good solution is
    left dead instead of being re-seeded onto a face, again and again).
    """
    usage = segment_usage(masks, by)
    dead = torch.nonzero(usage < dead_usage).flatten().tolist()
    kw = {"bins": bins, "max_speed": max_speed}
    cost = None
    if not dead and merge_below > 0:
        cost = segment_costs(loss, masks, flows, eps, **kw)
        merge = merge_costs(loss, masks, flows, eps, **kw)
        a, b = divmod(int(merge.argmin()), merge.shape[1])
        smaller = a if usage[a] <= usage[b] else b
        others = cost.clone()
        others[[a, b]] = -float("inf")
        if float(merge[a, b]) < merge_below < float(others.max()):
            dead = [smaller]
    if not dead:
        return []
    cost = (segment_costs(loss, masks, flows, eps, **kw) if cost is None else cost).clone()
    cost[dead] = -float("inf")
    worst = int(cost.argmax())
    if split_above > 0 and not float(cost[worst]) > split_above:
        return []
    w, b = model.head.weight, model.head.bias
    for d in dead:
        noise = torch.randn(w[worst].shape, generator=gen).to(w.device)
        w[d] = w[worst] + 0.1 * w[worst].abs().mean() * noise
        b[d] = b[worst]
    return dead


@torch.no_grad()
def evaluate(model: SegmentationNet, pairs: FlowPairs | LazyPairs, loss: str = "affine",
             batch: int = 32, combine: str = "segments", eps: float = DEFAULT_EPS,
             *, bins: int = 32, max_speed: float = 0.0) -> dict[str, Any]:
    """Scores of the network on ``pairs``: ``loss`` (mean over batches; ``eps``: the affine
    fit's ridge; ``bins``, ``max_speed``: the entropy loss's histograms), ``segment_fractions`` (share of the pixels each segment wins, as argmax), and
    where ``pairs`` has labels, the mean matched ``miou`` and ``fg_ari`` of the hard segments
    over the frames. ``pairs``: in memory, or a lazy data set (video caches, Sintel) read
    ``batch`` pairs at a time (:func:`s3lib.data.pairs.batch_of`: the same numbers)."""
    model.eval()
    device = next(model.parameters()).device
    losses, wins, mious, aris, labelled = [], None, [], [], False
    for i in range(0, len(pairs), batch):
        images, flows, labels = batch_of(pairs, slice(i, i + batch))
        masks = model(images.to(device)).softmax(1)
        flows = flows.to(device)
        losses.append(float(motion_loss(loss, masks, flows, combine, eps, bins=bins,
                                        max_speed=max_speed)) * len(masks))
        pred = masks.argmax(1).cpu()
        counts = torch.bincount(pred.flatten(), minlength=masks.shape[1])
        wins = counts if wins is None else wins + counts
        if labels is not None:
            labelled = True
            for p, t in zip(pred, labels):
                mious.append(matched_miou(p, t))
                if (t > 0).any():
                    aris.append(adjusted_rand_index(p, t, ignore_background=True))
    out: dict[str, Any] = {"loss": sum(losses) / len(pairs),
                           "segment_fractions": (wins / wins.sum()).tolist()}
    if labelled:
        out["miou"] = float(np.mean(mious))
        out["fg_ari"] = float(np.mean(aris)) if aris else float("nan")
    return out


def budget_spent(config: TrainConfig, step: int, elapsed: float) -> float:
    """The share of the run's budget spent after ``step`` steps and ``elapsed`` seconds, in
    [0, 1]: ``step / steps``, or ``elapsed / (60 * minutes)`` for a run budgeted in minutes
    (then it depends on the machine's speed, like the number of steps)."""
    if config.steps is not None:
        progress = step / config.steps
    else:
        progress = elapsed / (60.0 * config.minutes)
    return min(max(progress, 0.0), 1.0)


def learning_rate(config: TrainConfig, step: int, elapsed: float) -> float:
    """The learning rate of step ``step`` (0-based) after ``elapsed`` seconds: ``config.lr``,
    or with ``schedule="cosine"`` ``lr * (1 + cos(pi * p)) / 2``, ``p`` the share of the
    budget spent (:func:`budget_spent`). Decaying to zero lets the last steps settle the
    segment boundaries (notebook 04)."""
    if config.schedule == "constant":
        return config.lr
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * budget_spent(config, step, elapsed)))


def training_data(config: TrainConfig) -> tuple[FlowPairs | LazyPairs, FlowPairs | LazyPairs]:
    """``(train, heldout)`` pairs of a run: cube sequences in memory, or ``config.data``'s
    frames read from disk per batch (:func:`s3lib.data.pairs.load_pairs`; notebooks 05-06)."""
    if config.dataset == "cube":
        return (cube_pairs(size=config.size, frames=config.frames, gap=config.gap,
                           look=config.look),
                heldout_cube_pairs(config.size, look=config.look))
    return load_pairs(config.data, "train"), load_pairs(config.data, "heldout")


def rotate_hue(images: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate the colours of ``images (B, 3, H, W)`` about the grey axis by ``angles (B,)``
    radians (a hue shift that keeps grey grey), clipped to [0, 1]. The flow is unchanged: a
    photometric augmentation that makes the network group by colour *differences*, not by
    which colours a face had in the training videos."""
    k = torch.full((3,), 3 ** -0.5, dtype=images.dtype)
    kx = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]], dtype=images.dtype)
    c, s = angles.cos()[:, None, None], angles.sin()[:, None, None]
    rot = torch.eye(3, dtype=images.dtype) + s * kx + (1 - c) * (kx @ kx)  # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", rot, images).clamp(0, 1)


def dihedral(image: torch.Tensor, flow: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply symmetry ``k`` (0-7) of the square to ``image (C, H, W)`` and its flow
    ``(2, H, W)``: bit 0 mirrors left-right (``u -> -u``), bit 1 top-bottom (``v -> -v``),
    bit 2 swaps the axes (``(u, v) -> (v, u)``, square images only). The flow stays the true
    motion of the transformed picture."""
    if k & 1:
        image, flow = image.flip(-1), flow.flip(-1) * flow.new_tensor([-1.0, 1.0])[:, None, None]
    if k & 2:
        image, flow = image.flip(-2), flow.flip(-2) * flow.new_tensor([1.0, -1.0])[:, None, None]
    if k & 4:
        image, flow = image.transpose(-1, -2), flow.transpose(-1, -2).flip(0)
    return image, flow


def crop_side(size: int, share: float) -> int:
    """The side of :func:`crop_windows`' windows for pictures of side ``size``: ``share *
    size`` rounded to a multiple of 4 (the network's need), at least 8; 0 when that is the
    whole picture (``share = 1``, or a picture too small to cut). ``crop_side(64, 0.75) = 48``."""
    side = max(8, 4 * round(share * size / 4))
    return 0 if side >= size else side


def crop_windows(images: torch.Tensor, flows: torch.Tensor, size: int,
                 corners: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``size`` x ``size`` window of each pair whose top-left pixel is ``corners (B, 2)``
    (row, column): ``images (B, 3, H, W)``, ``flows (B, 2, H, W)`` -> ``(B, 3, size, size)``,
    ``(B, 2, size, size)``. A window only translates the picture, so the flow's values stay
    as they are (``s3 train --crop``: a step on fewer pixels costs less; appendix 04b, A6)."""
    rows = [slice(int(r), int(r) + size) for r in corners[:, 0]]
    cols = [slice(int(c), int(c) + size) for c in corners[:, 1]]
    pick = lambda x: torch.stack([x[i, :, r, c] for i, (r, c) in enumerate(zip(rows, cols))])  # noqa: E731
    return pick(images), pick(flows)


def zoom_crop(images: torch.Tensor, flows: torch.Tensor, zoom: torch.Tensor,
              centre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop a window ``1 / zoom`` of the picture's side around ``centre`` and resize it back:
    ``images (B, 3, H, W)``, ``flows (B, 2, H, W)``, ``zoom (B,)`` >= 1, ``centre (B, 2)``
    in [-1, 1] (x, y; scaled so the window stays inside). Bilinear resampling; the flow is
    resampled the same way and multiplied by ``zoom`` (a motion of 1 px becomes ``zoom`` px)."""
    b = images.shape[0]
    s = 1.0 / zoom
    theta = torch.zeros(b, 2, 3, dtype=images.dtype)
    theta[:, 0, 0], theta[:, 1, 1] = s, s
    theta[:, :, 2] = centre * (1 - s)[:, None]
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    sample = lambda x: torch.nn.functional.grid_sample(  # noqa: E731
        x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return sample(images), sample(flows) * zoom[:, None, None, None]


def _batch(pairs: FlowPairs | LazyPairs, idx: torch.Tensor, sym: torch.Tensor | None,
           device: str, hue: torch.Tensor | None = None,
           zoom: tuple[torch.Tensor, torch.Tensor] | None = None,
           window: tuple[int, torch.Tensor] | None = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and flows of ``idx``: cut to a window (:func:`crop_windows`, ``window = (size,
    corners)``), zoomed in (:func:`zoom_crop`, ``zoom = (factors,
    centres)``), transformed by their symmetry ``sym`` (:func:`dihedral`), colours rotated by
    ``hue`` radians (:func:`rotate_hue`). ``pairs`` in memory are indexed as tensors; a lazy
    data set has just these pairs read (:func:`s3lib.data.pairs.batch_of`: the same numbers)."""
    images, flows, _ = batch_of(pairs, idx)
    return _augment(images, flows, sym, device, hue, zoom, window)


def _augment(images: torch.Tensor, flows: torch.Tensor, sym: torch.Tensor | None, device: str,
             hue: torch.Tensor | None = None,
             zoom: tuple[torch.Tensor, torch.Tensor] | None = None,
             window: tuple[int, torch.Tensor] | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_batch`'s augmentations of ``images (B, 3, H, W)`` and ``flows (B, 2, H, W)``."""
    if window is not None:
        images, flows = crop_windows(images, flows, *window)
    if zoom is not None:
        images, flows = zoom_crop(images, flows, *zoom)
    if hue is not None:
        images = rotate_hue(images, hue)
    if sym is not None and bool(sym.any()):
        moved = [dihedral(i, f, int(k)) for i, f, k in zip(images, flows, sym)]
        images = torch.stack([m[0] for m in moved])
        flows = torch.stack([m[1] for m in moved])
    return images.to(device), flows.to(device)


def normalised_weights(model: SegmentationNet) -> tuple[list[torch.nn.Parameter],
                                                         list[torch.nn.Parameter]]:
    """Split ``model``'s parameters into the convolution weights that a batch norm follows
    (their scale does not change the network's output) and all the others (the head, biases,
    the batch norms' own weights). Explained in ``notebooks/04b_making_the_cube_train.ipynb``, A5."""
    scaled = []
    for module in model.modules():
        if isinstance(module, torch.nn.Sequential):
            layers = list(module)
            for conv, norm in zip(layers, layers[1:]):
                if isinstance(conv, torch.nn.Conv2d) and isinstance(norm, torch.nn.BatchNorm2d):
                    scaled.append(conv.weight)
    ids = {id(p) for p in scaled}
    other = [p for p in model.parameters() if id(p) not in ids]
    return scaled, other


def make_optimizer(model: SegmentationNet, lr: float, weight_decay: float = 0.0
                   ) -> torch.optim.Optimizer:
    """Adam at ``lr``; with ``weight_decay > 0``, AdamW whose decoupled decay shrinks only the
    convolution weights that batch norm follows (:func:`normalised_weights`).

    Batch norm makes those weights scale-free, and Adam's steps, orthogonal to them on
    average, make their norm grow, so the step's *angle*, what changes the network, shrinks
    like ``lr / |w|``: training slows down by itself. Decay holds the norm at an equilibrium
    where the angle per step stays near ``sqrt(2 * lr * weight_decay)`` (notebook 04b, A5: on
    the cube it did not shorten the plateau)."""
    if weight_decay == 0:
        return torch.optim.Adam(model.parameters(), lr=lr)
    scaled, other = normalised_weights(model)
    return torch.optim.AdamW([{"params": scaled, "weight_decay": weight_decay},
                              {"params": other, "weight_decay": 0.0}], lr=lr)


def train(config: TrainConfig, out: str | Path, resume: bool = False, progress: bool = True,
          data: tuple[FlowPairs | LazyPairs, FlowPairs | LazyPairs] | None = None
          ) -> list[dict[str, Any]]:
    """Train a :class:`~s3lib.models.SegmentationNet`; write ``out/checkpoint.pt`` and
    ``out/metrics.jsonl``.

    Args:
        config: the settings. out: the run folder. resume: continue the run in ``out`` (the
            settings must match, except ``steps`` / ``minutes``).
        progress: a ``tqdm`` bar. data: ``(train, heldout)`` pairs instead of
            :func:`training_data` (tests, notebooks).

    Returns the metric records of this run (one per evaluation): ``step``, ``loss`` (the last
    training batch), ``elapsed`` seconds, and :func:`evaluate`'s scores on the held-out pairs
    (``heldout_loss``, ``segment_fractions``; ``miou`` and ``fg_ari`` for the cube).
    """
    config.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = out / "checkpoint.pt", out / "metrics.jsonl"
    reproducible(config.seed, threads=config.threads)
    pairs, heldout = training_data(config) if data is None else data
    model = SegmentationNet(config.num_segments, config.width, coords=config.coords,
                            levels=config.levels)
    model = model.to(config.device)
    opt = make_optimizer(model, config.lr, config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    step, elapsed = 0, 0.0
    if resume and ckpt_path.is_file():
        payload = torch.load(ckpt_path, map_location=config.device, weights_only=True)
        budget = ("steps", "minutes", "device")  # what a resumed run may change
        stored = TrainConfig.from_dict(payload["config"].get("train", {}), str(ckpt_path))
        saved = {k: v for k, v in asdict(stored).items() if k not in budget}
        if saved != {k: v for k, v in asdict(config).items() if k not in budget}:
            raise ValueError(f"{ckpt_path}: written with other settings; use another --out")
        model.load_state_dict(payload["model"])
        opt.load_state_dict(payload["optimizer"])
        gen.set_state(payload["generator"].cpu())
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

        bar = tqdm(total=config.steps, initial=step, desc=f"train {config.dataset}")
    start = time.perf_counter() - elapsed

    def done() -> bool:
        if config.steps is not None and step >= config.steps:
            return True
        return config.minutes is not None and time.perf_counter() - start >= config.minutes * 60

    def save() -> None:
        size = config.size if config.dataset == "cube" else list(pairs.size)
        cfg = {"size": size, "dataset": config.dataset, "loss": config.loss, "train": asdict(config)}
        save_checkpoint(ckpt_path, model, cfg, extra={
            "optimizer": opt.state_dict(), "generator": gen.get_state(), "step": step,
            "elapsed": time.perf_counter() - start})

    # symmetries that keep the data plausible: all 8 of the square for the cube (no up or
    # down in space), left-right mirroring only for video
    num_sym = 8 if config.dataset == "cube" and pairs.size[0] == pairs.size[1] else 2
    # video trains on whole frames; the cube on windows of crop_side pixels (0: whole)
    crop = crop_side(min(pairs.size), config.crop) if config.dataset == "cube" else 0
    # read ahead (video): the batches' indices from a stream of their own, resumed at `step`
    ahead = (prefetched_batches(pairs, config.batch, config.seed + 1, config.workers, skip=step)
             if config.workers else None)
    while not done():
        model.train()
        idx = torch.randint(len(pairs), (config.batch,), generator=gen) if ahead is None else None
        augment = config.augment and step >= config.plain_steps
        sym = torch.randint(num_sym, (config.batch,), generator=gen) if augment else None
        hue = ((torch.rand(config.batch, generator=gen) * 2 - 1) * config.hue
               if augment and config.hue and config.dataset == "cube" else None)
        zoom = ((1 + torch.rand(config.batch, generator=gen) * (config.zoom - 1),
                 torch.rand(config.batch, 2, generator=gen) * 2 - 1)
                if augment and config.zoom > 1 else None)
        window = ((crop, torch.stack([torch.randint(side - crop + 1, (config.batch,), generator=gen)
                                      for side in pairs.size], 1)) if crop else None)
        images, flows = (_batch(pairs, idx, sym, config.device, hue, zoom, window)
                         if ahead is None
                         else _augment(*next(ahead), sym, config.device, hue, zoom, window))
        for group in opt.param_groups:
            group["lr"] = learning_rate(config, step, time.perf_counter() - start)
        masks = model(images).softmax(1)
        loss = motion_loss(config.loss, masks, flows, config.combine, config.eps,
                           bins=config.bins, max_speed=config.max_speed)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        loss_value = float(loss.detach())
        if (config.reseed_every and step % config.reseed_every == 0
                and budget_spent(config, step, time.perf_counter() - start) < config.reseed_until):
            reseed_dead_segments(model, masks.detach(), flows, config.dead_usage, gen, config.loss,
                                 config.dead_by, config.eps, config.merge_below,
                                 bins=config.bins, max_speed=config.max_speed,
                                 split_above=config.split_above)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}")
        if step % config.eval_every == 0 or done():
            rec = {"step": step, "loss": loss_value, "elapsed": time.perf_counter() - start}
            rec.update({("heldout_loss" if k == "loss" else k): v for k, v in
                        evaluate(model, heldout, config.loss, combine=config.combine,
                                 eps=config.eps, bins=config.bins,
                                 max_speed=config.max_speed).items()})
            records.append(rec)
            with open(log_path, "a") as fh:
                fh.write(json.dumps(rec) + "\n")
            save()
    if bar is not None:
        bar.close()
    if not records or records[-1]["step"] != step:
        save()
    return records


def evaluate_checkpoint(path: str | Path, data: str | Path | None = None, frames: int = 25,
                        split: str = "heldout") -> dict[str, Any]:
    """``s3 eval cube|video``: load a checkpoint and score it on held-out data.

    Cube checkpoints (``data=None``) are scored on the held-out sequences (``frames`` frames
    each): ``miou``, ``fg_ari``, ``loss``, ``segment_fractions``. Video checkpoints need
    ``data`` (the caches or Sintel folder) and are scored on its ``split`` pairs. The loss is
    the one the network trained with, ridge (``eps``) included.
    """
    model, config = load_checkpoint(path)
    loss = config.get("loss", "affine")
    if data is None:
        if config.get("dataset", "cube") != "cube":
            raise ValueError(f"{path}: a {config.get('dataset')} checkpoint; give --data")
        look = config.get("train", {}).get("look", "hues")
        pairs = heldout_cube_pairs(int(config["size"]), frames, look=look)
        where = {"heldout_seeds": list(HELDOUT_SEEDS)}
    else:
        pairs = load_pairs(data, split)
        where = {"data": str(data), "split": split}
    run = TrainConfig.from_dict(config.get("train", {}), str(path))  # the loss it trained on
    result = evaluate(model, pairs, loss, combine=run.combine, eps=run.eps, bins=run.bins,
                      max_speed=run.max_speed)
    return {**result, "frames": len(pairs), **where, "size": config["size"],
            "num_segments": config["num_segments"], "loss_name": loss}
