"""S3 pre-training of the paper's FCN-8s/VGG-16 (``s3 pretrain``), on one CPU or many GPUs.

The loop is plain PyTorch: a ``DataLoader`` with a ``DistributedSampler`` (``set_epoch`` every
epoch) reads frame pairs, the motion loss of notebooks 02-03 scores the FCN's soft segments,
and under ``torchrun`` the network is wrapped in ``DistributedDataParallel`` (NCCL on CUDA,
gloo on the CPU; ``SyncBatchNorm`` on CUDA only), so ``torchrun --nproc_per_node=N -m s3lib
pretrain ...`` runs unchanged on N processes with the same global batch: each process takes
``batch / N`` pairs of the same shuffled order, and the gradients are averaged. Rank 0 writes
``RUN/metrics.jsonl`` and, at the end, ``RUN/checkpoint.pt``: the FCN with its batch norm
re-estimated over many batches (all processes' statistics all-reduced,
:func:`s3lib.fcn.precise_batchnorm`) and folded into the convolutions
(:func:`s3lib.fcn.fold_batchnorm`), ready for ``s3 finetune``.

Data (``data``): ``shapes`` (notebook 07's world, :mod:`s3lib.data.shapes`), ``cube`` (notebook
04) or a folder of ``s3 prepare-video`` caches (read from disk as the batches need them,
:class:`s3lib.data.pairs.VideoPairs`). ``loss="supervised"`` (shapes only) trains the VGG-16
classifier on labelled stills instead: notebook 07's upper bound. ``shuffle_flow`` pairs each
image with another scene's flow: the control that has the flow's statistics but no link to the
picture.

Explained in ``notebooks/07_voc07_transfer.ipynb``.
"""

from __future__ import annotations

import json
import os
import time
import typing
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ._io import kept_log_lines, load_resumable, save_torch
from .fcn import fcn8s_vgg16, fcn_trunk_from_classifier, fold_batchnorm, vgg16_classifier
from .setup import DEFAULT_THREADS, reproducible
from .train import _opt, learning_rate, motion_loss

PretrainLoss = Literal["affine", "entropy", "supervised"]
Arch = Literal["fcn8s-vgg16"]
Amp = Literal["none", "bf16"]
LOSSES: tuple[str, ...] = typing.get_args(PretrainLoss)


@dataclass
class PretrainConfig:
    """Settings of ``s3 pretrain``. The defaults are notebook 07's CPU-scale recipe on the
    ``shapes`` world; at full scale give ``--width 1`` (VGG-16) and a budget.

    Explained in ``notebooks/07_voc07_transfer.ipynb``."""

    data: str = _opt("shapes", "shapes, cube, or a folder of `s3 prepare-video` caches")
    arch: Arch = _opt("fcn8s-vgg16", "the network: the paper's FCN-8s on VGG-16")
    width: float | None = _opt(None, "channel scale (default: 0.125 for shapes and cube, 1 = "
                                     "VGG-16 for videos)")
    num_segments: int = _opt(4, "number of segments L")
    batchnorm: bool = _opt(True, "parameter-free batch norm in the trunk (the paper); without "
                                 "it (and dropout 0) N processes give exactly one's run")
    dropout: float = _opt(0.5, "dropout after fc6 and fc7 (FCN's)")
    loss: PretrainLoss = _opt("affine", "motion loss (affine, entropy), or supervised (shapes: "
                                        "labelled stills, the upper bound)")
    shuffle_flow: bool = _opt(False, "pair each image with another scene's flow (the control)")
    steps: int | None = _opt(600, "iterations (global batches)", group="budget")
    minutes: float | None = _opt(None, "train for this many minutes", group="budget")
    batch: int = _opt(16, "global batch (split over the processes of a torchrun)")
    lr: float = _opt(1e-3, "Adam's learning rate, decayed along a cosine to 0")
    scenes: int = _opt(1280, "shapes and supervised: scenes to pre-train on")
    seed: int = _opt(0, "seed of the network, the batch order and the mirroring")
    bn_batches: int = _opt(20, "batches over which batch norm is re-estimated before folding")
    workers: int = _opt(0, "DataLoader processes per rank")
    threads: int = _opt(DEFAULT_THREADS, "CPU threads per process")
    eval_every: int = _opt(50, "iterations between log lines")
    save_every: int = _opt(1000, "iterations between training states (RUN/state.pt) that "
                                 "--resume continues from")
    amp: Amp = _opt("none", "bf16: autocast to bfloat16 (GPUs); the loss stays float32")
    device: str = _opt("cpu", "cpu or cuda (under torchrun: each rank its local GPU)")

    @property
    def schedule(self) -> str:
        """Adam's learning rate decays along a cosine (:func:`s3lib.train.learning_rate`)."""
        return "cosine"

    def resolved(self) -> PretrainConfig:
        """A copy with ``width`` filled in, validated."""
        out = self if self.width is not None else replace(
            self, width=0.125 if self.data in ("shapes", "cube") else 1.0)
        out.validate()
        return out

    def validate(self) -> None:
        """``ValueError`` naming the first setting that cannot work."""
        if self.loss not in LOSSES:
            raise ValueError(f"loss: expected one of {LOSSES}, got {self.loss!r}")
        if self.arch != "fcn8s-vgg16":
            raise ValueError(f"arch: expected fcn8s-vgg16, got {self.arch!r}")
        if self.data not in ("shapes", "cube") and not Path(self.data).is_dir():
            raise ValueError(f"data: expected shapes, cube or a folder of prepare-video caches, "
                             f"got {self.data!r} (no such folder)")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device: {self.device!r}, but this torch sees no CUDA GPU")
        if self.amp == "bf16" and not self.device.startswith("cuda"):
            raise ValueError("amp: bf16 autocast is for GPUs (--device cuda); on the CPU it is "
                             "slower than float32")
        if self.loss == "supervised" and self.data != "shapes":
            raise ValueError("loss: supervised pre-training needs labels: --data shapes")
        if self.shuffle_flow and self.loss == "supervised":
            raise ValueError("shuffle_flow: only for the motion losses")
        if (self.steps is None) == (self.minutes is None):
            raise ValueError("give one budget: steps or minutes")
        for name in ("batch", "scenes", "bn_batches", "threads", "eval_every", "save_every",
                     "num_segments"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (2 if name == "num_segments"
                                                                      else 1):
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps: expected >= 1, got {self.steps}")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"minutes: expected > 0, got {self.minutes}")
        if not self.lr > 0 or self.workers < 0:
            raise ValueError(f"lr > 0 and workers >= 0 expected, got {self.lr}, {self.workers}")


# ----------------------------------------------------------------------------- distributed
@dataclass
class Ranks:
    """Where this process stands in a ``torchrun`` (``world == 1``: a plain run)."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Ranks:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE``,
    ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``): NCCL on CUDA (each rank its local GPU), gloo on
    the CPU. Without ``torchrun`` (or with one process): :class:`Ranks` of a plain run."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks(device=device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Ranks(rank, world, device)


# ----------------------------------------------------------------------------- data
class ShuffledFlow(Dataset):
    """``pairs`` with each image given another item's flow (a fixed derangement drawn from
    ``seed``): the same flow statistics, no link between a picture and its motion."""

    def __init__(self, pairs: Dataset, seed: int = 0):
        n = len(pairs)
        if n < 2:
            raise ValueError("shuffle_flow: needs at least two pairs")
        gen = torch.Generator().manual_seed(seed)
        shift = 1 + int(torch.randint(n - 1, (1,), generator=gen))
        perm = torch.randperm(n, generator=gen)
        partner = torch.empty(n, dtype=torch.long)
        partner[perm] = perm.roll(-shift)  # a cycle through a random order: nobody keeps its own
        self.pairs, self.partner = pairs, partner

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = dict(self.pairs[i])
        item["flow"] = self.pairs[int(self.partner[i])]["flow"]
        return item


class _Mirrored(Dataset):
    """Items of ``data`` as ``(image, flow or target)``, mirrored left-right (the flow's x
    component negated) where ``flips`` (set per epoch by the loop) says so."""

    def __init__(self, data: Dataset, supervised: bool):
        self.data, self.supervised, self.flips = data, supervised, None

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.supervised:
            image, other = self.data[i]
        else:
            item = self.data[i]
            image, other = item["image"], item["flow"]
        if self.flips is not None and bool(self.flips[i]):
            image = image.flip(-1)
            if not self.supervised:
                other = other.flip(-1) * other.new_tensor([-1.0, 1.0])[:, None, None]
        return image, other


def pretrain_data(config: PretrainConfig) -> Dataset:
    """The training set of a run: shapes pairs (or labelled stills for ``supervised``), the
    cube's sequences, or the caches' training pairs read lazily; shuffled flow if asked."""
    if config.loss == "supervised":
        from .data.shapes import ShapesClassification

        return ShapesClassification(config.scenes, "supervised")
    if config.data == "shapes":
        from .data.shapes import shapes_pairs

        data: Dataset = shapes_pairs(config.scenes, "pretrain")
    elif config.data == "cube":
        from .data.pairs import cube_pairs

        data = cube_pairs()
    else:
        from .data.pairs import load_pairs

        data = load_pairs(config.data, "train")
    return ShuffledFlow(data, config.seed + 1) if config.shuffle_flow else data


class _Skipping(torch.utils.data.Sampler):
    """``inner``'s indices after the first ``skip`` (a resumed epoch), then all of them."""

    def __init__(self, inner: DistributedSampler):
        self.inner, self.skip = inner, 0

    def __iter__(self):
        it = iter(self.inner)
        for _ in range(self.skip):
            next(it)
        return it

    def __len__(self) -> int:
        return len(self.inner) - self.skip


RESUMABLE = ("steps", "minutes", "device", "workers", "threads", "eval_every", "save_every")
"""Settings a resumed run may change (the budget and how it runs, not what it computes)."""


# ----------------------------------------------------------------------------- the loop
def _loss(config: PretrainConfig, net: torch.nn.Module, images: torch.Tensor,
          other: torch.Tensor) -> torch.Tensor:
    from .finetune import multilabel_loss

    with torch.autocast(device_type=images.device.type, dtype=torch.bfloat16,
                        enabled=config.amp == "bf16"):
        logits = net(images)
    if config.loss == "supervised":
        return multilabel_loss(logits.float(), other)
    return motion_loss(config.loss, logits.float().softmax(1), other)


def _agree(value: float, ranks: Ranks, op=None) -> float:
    """``value`` reduced over the processes (mean, or ``op``)."""
    if ranks.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64,
                     device=ranks.device if ranks.device.startswith("cuda") else "cpu")
    dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return float(t) / (ranks.world if op is None else 1)


def pretrain(config: PretrainConfig, out: str | Path, progress: bool = True,
             resume: bool = False) -> list[dict[str, Any]]:
    """Pre-train an FCN-8s/VGG-16 with ``config`` and write ``out/checkpoint.pt`` (batch norm
    folded) and ``out/metrics.jsonl`` (rank 0). Every ``save_every`` iterations and at the end,
    rank 0 also writes ``out/state.pt`` (network with batch norm, optimiser, random state,
    position in the data); ``resume=True`` continues from it to exactly the network of an
    uninterrupted run (budgets in steps; the settings must match but for
    :data:`RESUMABLE`). Returns this run's log records: ``step``, ``loss`` (mean over the
    processes and the last ``eval_every`` iterations), ``lr``, ``elapsed``, ``images_per_s``."""
    config = config.resolved()
    ranks = init_distributed(config.device)
    if config.batch % ranks.world:
        raise ValueError(f"batch: {config.batch} does not split over {ranks.world} processes")
    reproducible(config.seed, threads=config.threads)
    out = Path(out)
    log_path, state_path = out / "metrics.jsonl", out / "state.pt"
    found = resume and state_path.is_file()
    if resume and ranks.world > 1:  # every rank must see the same state (a shared folder)
        seen = _agree(float(found), ranks, dist.ReduceOp.SUM)
        if 0 < seen < ranks.world:
            raise ValueError(f"{state_path}: visible to {seen:.0f} of {ranks.world} processes; "
                             f"--resume needs --out on a folder every node shares")
    state = load_resumable(state_path, asdict(config), RESUMABLE) if found else None
    if ranks.main:
        out.mkdir(parents=True, exist_ok=True)
        if state is None:
            log_path.unlink(missing_ok=True)
            state_path.unlink(missing_ok=True)  # never resume an older run's state
        elif log_path.exists():  # drop records past the state (a crash after logging)
            log_path.write_text(kept_log_lines(log_path, int(state["step"])))
    data = pretrain_data(config)
    supervised = config.loss == "supervised"
    fcn = fcn8s_vgg16(config.num_segments, config.width, config.batchnorm, config.dropout)
    model = vgg16_classifier(fcn, len(data.classes)) if supervised else fcn
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    step, epoch, offset, done_before = 0, 0, 0, 0.0
    # dropout: a stream of its own per process (the weights are rank 0's: DDP broadcasts them)
    torch.manual_seed(config.seed * 1009 + 17 + ranks.rank)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"][ranks.rank % len(state["rng"])])
        if state.get("cuda_rng") is not None and ranks.device.startswith("cuda"):
            torch.cuda.set_rng_state(state["cuda_rng"][ranks.rank % len(state["cuda_rng"])])
        step, epoch, offset = int(state["step"]), int(state["epoch"]), int(state["offset"])
        done_before = float(state["elapsed"])
    model = model.to(ranks.device)
    _optimizer_to(opt, ranks.device)
    if ranks.device.startswith("cuda"):
        model = model.to(memory_format=torch.channels_last)
        if ranks.world > 1 and config.batchnorm:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net = (torch.nn.parallel.DistributedDataParallel(model) if ranks.world > 1 else model)
    mirrored = _Mirrored(data, supervised)
    sampler = DistributedSampler(mirrored, num_replicas=ranks.world, rank=ranks.rank,
                                 shuffle=True, seed=config.seed, drop_last=True)
    local = config.batch // ranks.world
    if len(sampler) < local:
        raise ValueError(f"data: {len(mirrored)} items, fewer than one batch of {config.batch}")
    skipping = _Skipping(sampler)
    loader = DataLoader(mirrored, batch_size=local, sampler=skipping, drop_last=True,
                        num_workers=config.workers, pin_memory=ranks.device.startswith("cuda"),
                        generator=torch.Generator().manual_seed(config.seed))  # not torch's RNG
    from tqdm.auto import tqdm

    bar = tqdm(total=config.steps, initial=step, desc=f"pretrain {config.data} ({config.loss})",
               disable=not (progress and ranks.main))
    records, running = [], []
    start = time.perf_counter() - done_before
    window = time.perf_counter()

    def gathered(t: torch.Tensor) -> list[torch.Tensor]:
        """Every process's ``t`` (a random-generator state), in rank order."""
        if ranks.world == 1:
            return [t]
        items: list = [None] * ranks.world
        dist.all_gather_object(items, t)
        return items

    def save_state() -> None:
        rngs = gathered(torch.get_rng_state())
        cuda = gathered(torch.cuda.get_rng_state()) if ranks.device.startswith("cuda") else None
        if ranks.main:
            save_torch(state_path, {
                "model": {k: v.cpu() for k, v in model.state_dict().items()},
                "optimizer": opt.state_dict(), "rng": rngs, "cuda_rng": cuda, "step": step,
                "epoch": epoch, "offset": offset, "elapsed": time.perf_counter() - start,
                "config": asdict(config)})

    clock = [0.0]  # elapsed seconds, the same on every process (rank 0's clock is the max)

    def finished() -> bool:
        if config.steps is not None:
            return step >= config.steps
        clock[0] = _agree(time.perf_counter() - start, ranks, dist.ReduceOp.MAX)
        return clock[0] >= 60 * config.minutes  # every rank stops together

    while not finished():
        sampler.set_epoch(epoch)
        skipping.skip = offset * local
        mirrored.flips = torch.randint(2, (len(mirrored),),
                                       generator=torch.Generator().manual_seed(config.seed * 7919
                                                                               + epoch))
        for images, other in loader:
            if finished():
                break
            offset += 1
            model.train()
            lr = learning_rate(config, step, clock[0])  # one learning rate on every rank
            for g in opt.param_groups:
                g["lr"] = lr
            images = images.to(ranks.device, non_blocking=True)
            if ranks.device.startswith("cuda"):
                images = images.contiguous(memory_format=torch.channels_last)
            loss = _loss(config, net, images, other.to(ranks.device, non_blocking=True))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            running.append(float(loss.detach()))
            bar.update(1)
            if step % config.eval_every == 0 or (config.steps is not None and step == config.steps):
                now = time.perf_counter()
                rec = {"step": step, "loss": _agree(sum(running) / len(running), ranks),
                       "lr": lr, "elapsed": now - start,
                       "images_per_s": len(running) * config.batch / (now - window)}
                running, window = [], now
                records.append(rec)
                bar.set_postfix(loss=f"{rec['loss']:.4f}")
                if ranks.main:
                    with open(log_path, "a") as fh:
                        fh.write(json.dumps(rec) + "\n")
            if step % config.save_every == 0:
                save_state()
        else:
            epoch, offset = epoch + 1, 0  # the epoch ran out (not the budget)
    bar.close()
    save_state()
    elapsed = time.perf_counter() - start
    skipping.skip = 0
    folded = fold_batchnorm(model.cpu() if not ranks.device.startswith("cuda") else model,
                            _bn_batches(mirrored, sampler, loader, epoch), config.bn_batches)
    if supervised:
        folded = fcn_trunk_from_classifier(folded, config.num_segments)
    if ranks.main:
        from .models import save_checkpoint

        size = list(data[0][0].shape[-2:]) if supervised else list(data[0]["image"].shape[-2:])
        save_checkpoint(out / "checkpoint.pt", folded.cpu(), {
            "size": size, "loss": config.loss, "pretrain": asdict(config),
            "world": ranks.world}, extra={"step": step, "elapsed": elapsed})
    if ranks.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return records


def _optimizer_to(opt: torch.optim.Optimizer, device: str) -> None:
    """Move a loaded optimiser's state to ``device``."""
    for st in opt.state.values():
        for k, v in st.items():
            if isinstance(v, torch.Tensor) and k != "step":
                st[k] = v.to(device)


def _bn_batches(mirrored: _Mirrored, sampler: DistributedSampler, loader: DataLoader,
                epoch: int):
    """Image batches for the batch-norm statistics: this rank's share of a fresh shuffle,
    unmirrored."""
    mirrored.flips = None
    sampler.set_epoch(epoch + 1_000_003)
    for images, _ in loader:
        yield images
