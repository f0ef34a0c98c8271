"""Fine-tuning a pre-trained trunk for multi-label classification, and scoring it by mAP.

The protocol of Krahenbuhl et al. (data-dependent initialisations, ICLR 2016; their public
code), which the paper follows for PASCAL VOC 2007 (``s3 finetune voc2007``):

- SGD, learning rate 1e-3 (biases at twice that), momentum 0.9, batch 16, 80,000 iterations,
  the rate halved every 10,000, weight decay 1e-6, the gradient's global norm clipped at 10;
- training crops: a square window whose side is a random scale in [0.5, 2] times the input
  size (224), clamped to the image, at a random position, resized to 224x224, mirrored with
  probability 1/2 (:func:`random_crop`);
- loss: sigmoid cross-entropy per class, difficult labels (0) ignored (:func:`multilabel_loss`);
- test: the logits of 10 random crops of the same kind summed per image, then per class the
  non-interpolated AP of :func:`s3lib.metrics.average_precision` over the images, difficult
  ones excluded; the devkit's 11-point :func:`s3lib.metrics.voc07_ap` beside it.

``train_from`` picks what is trained: ``fc8`` (the new classifier only: a linear probe of
fc7's features), ``fc6`` (fc6 to fc8) or ``all``. The network is
:func:`s3lib.fcn.vgg16_classifier` of a pre-trained FCN-8s (``init`` a checkpoint of
``s3 pretrain``: its batch norm already folded) or of a random one (``init="random"``: batch
norm estimated on the training images and folded, so random init gets the same data-dependent
scaling). ``task="shapes"`` runs the same protocol on notebook 07's stand-in world at CPU scale
(:mod:`s3lib.data.shapes`).

Explained in ``notebooks/07_voc07_transfer.ipynb``.
"""

from __future__ import annotations

import json
import time
import typing
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._io import kept_log_lines, load_resumable, save_torch
from .fcn import (FCN_ARCHITECTURE, FCN8s, VGG16Classifier, fcn8s_vgg16, fold_batchnorm,
                  vgg16_classifier)
from .metrics import average_precision, voc07_ap
from .setup import DEFAULT_THREADS, reproducible
from .train import _opt

Task = Literal["voc2007", "shapes"]
TrainFrom = Literal["fc8", "fc6", "all"]
TRAIN_FROM: tuple[str, ...] = typing.get_args(TrainFrom)

RECIPES: dict[str, dict[str, Any]] = {
    "voc2007": {"steps": 80_000, "lr": 1e-3, "lr_step": 10_000, "size": 224, "width": 1.0},
    "shapes": {"steps": 1000, "lr": 5e-3, "lr_step": 250, "size": 48, "width": 0.125},
}
"""What a setting left at ``None`` becomes for each task: the Krahenbuhl et al. protocol for
VOC 2007, and notebook 07's CPU-scale recipe for the stand-in world."""


@dataclass
class FinetuneConfig:
    """Settings of ``s3 finetune``; ``None`` means the task's :data:`RECIPES` value.

    Explained in ``notebooks/07_voc07_transfer.ipynb``."""

    task: Task = _opt("shapes", "voc2007 (the real protocol) or shapes (notebook 07's world)")
    root: str | None = _opt(None, "voc2007: the folder holding VOCdevkit/ (or VOCdevkit/, "
                                  "VOC2007/)")
    init: str = _opt("random", "a checkpoint of `s3 pretrain` (FCN-8s), or random")
    train_from: TrainFrom = _opt("all", "train fc8 only, fc6-fc8, or every layer")
    steps: int | None = _opt(None, "SGD iterations (default: 80000 for voc2007, 1000 for shapes)")
    lr: float | None = _opt(None, "SGD learning rate, biases at twice it (default: 1e-3 "
                                  "voc2007, 5e-3 shapes)")
    lr_step: int | None = _opt(None, "halve the learning rate every LR_STEP iterations "
                                     "(default: 10000 voc2007, 250 shapes)")
    momentum: float = _opt(0.9, "SGD momentum")
    weight_decay: float = _opt(1e-6, "weight decay")
    clip: float = _opt(10.0, "clip the gradient's global norm at this value")
    batch: int = _opt(16, "images per iteration")
    size: int | None = _opt(None, "crop side the network sees (default: 224 voc2007, 48 shapes)")
    scale_min: float = _opt(0.5, "smallest crop side, as a multiple of SIZE")
    scale_max: float = _opt(2.0, "largest crop side, as a multiple of SIZE (clamped to the image)")
    test_crops: int = _opt(10, "random crops per test image (logits summed)")
    width: float | None = _opt(None, "random init: channel scale (default: 1 voc2007, 0.125 "
                                     "shapes); a checkpoint brings its own")
    labelled: int = _opt(150, "shapes: labelled training images")
    test_images: int = _opt(600, "shapes: test images")
    bn_batches: int = _opt(10, "random init: batches to estimate batch norm on before folding")
    seed: int = _opt(0, "seed of fc8, the crops and the batches")
    workers: int = _opt(0, "DataLoader processes that read and crop images ahead")
    threads: int = _opt(DEFAULT_THREADS, "CPU threads")
    eval_every: int = _opt(1000, "iterations between log lines (and checkpoints with --out)")
    device: str = _opt("cpu", "cpu or cuda")

    def resolved(self) -> FinetuneConfig:
        """A copy with every ``None`` replaced by the task's recipe, validated."""
        recipe = RECIPES.get(self.task)
        if recipe is None:
            raise ValueError(f"task: expected one of {tuple(RECIPES)}, got {self.task!r}")
        out = replace(self, **{k: v for k, v in recipe.items() if getattr(self, k) is None
                               and (k != "width" or self.init == "random")})
        out.validate()
        return out

    def validate(self) -> None:
        """``ValueError`` naming the first setting that cannot work."""
        if self.train_from not in TRAIN_FROM:
            raise ValueError(f"train_from: expected one of {TRAIN_FROM} (the first layer "
                             f"trained), got {self.train_from!r}")
        if self.task == "voc2007" and not self.root:
            raise ValueError("root: voc2007 needs --root (the folder holding VOCdevkit/; "
                             "`s3 download voc2007` puts it in data/voc2007)")
        for name in ("steps", "lr_step", "batch", "size", "test_crops", "labelled",
                     "test_images", "bn_batches", "threads", "eval_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
        if self.size < 32:
            raise ValueError(f"size: expected >= 32 (VGG-16 pools five times), got {self.size}")
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError(f"scale_min, scale_max: expected 0 < min <= max, got "
                             f"{self.scale_min}, {self.scale_max}")
        for name, low in (("lr", 0.0), ("clip", 0.0)):
            if not getattr(self, name) > low:
                raise ValueError(f"{name}: expected > 0, got {getattr(self, name)!r}")
        for name in ("momentum", "weight_decay"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: expected >= 0, got {getattr(self, name)!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device: {self.device!r}, but this torch sees no CUDA GPU")
        if self.init != "random" and not Path(self.init).is_file():
            raise ValueError(f"init: {self.init}: no such checkpoint (a checkpoint of "
                             f"`s3 pretrain`, or random)")
        if self.workers < 0:
            raise ValueError(f"workers: expected >= 0, got {self.workers}")


# ----------------------------------------------------------------------------- data
def random_crop(image: np.ndarray, size: int, rng: np.random.Generator,
                scale: tuple[float, float] = (0.5, 2.0)) -> np.ndarray:
    """The protocol's crop of ``image (H, W, 3)`` (uint8 or float32): a square window of side
    ``u * size``, ``u`` uniform in ``scale``, clamped to the image's shorter side, at a random
    position, resized to ``size x size`` (OpenCV, area averaging when shrinking) and mirrored
    with probability 1/2. Returns ``(3, size, size)`` float32 in [0, 1]."""
    import cv2

    h, w = image.shape[:2]
    side = int(round(min(rng.uniform(*scale) * size, h, w)))
    side = max(side, 1)
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = np.ascontiguousarray(image[top:top + side, left:left + side])
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    crop = cv2.resize(crop, (size, size), interpolation=interp)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = crop.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
    return np.ascontiguousarray(crop.transpose(2, 0, 1))


class _Images:
    """The labelled images of a task as ``(H, W, 3)`` arrays and ``targets (N, C)``."""

    def __init__(self, images=None, voc=None):
        self.images, self.voc = images, voc
        self.targets = voc.targets if voc is not None else None

    def __len__(self) -> int:
        return len(self.voc) if self.voc is not None else len(self.images)

    def array(self, i: int) -> np.ndarray:
        if self.voc is not None:
            return self.voc.load_image_uint8(i)
        return self.images[i]


class CropSet(torch.utils.data.Dataset):
    """Random crops of labelled images, each decided by the seed it is asked with: item
    ``(i, seed)`` is ``(crop (3, size, size), target (C,))`` (:func:`random_crop`), the same
    in any ``DataLoader`` process."""

    def __init__(self, images: _Images, targets: torch.Tensor, size: int,
                 scale: tuple[float, float]):
        self.images, self.targets, self.size, self.scale = images, targets, size, scale

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        i, seed = key
        rng = np.random.default_rng(seed)
        crop = random_crop(self.images.array(i), self.size, rng, self.scale)
        return torch.from_numpy(crop), self.targets[i]


class _SeededBatches(torch.utils.data.Sampler):
    """Endless batches of ``(index, crop seed)``: indices drawn without replacement epoch by
    epoch, crop seeds from the same stream, all from ``seed`` and skipping ``skip`` batches."""

    def __init__(self, n: int, batch: int, seed: int, skip: int = 0):
        self.n, self.batch, self.seed, self.skip = n, batch, seed, skip

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed)
        order, pos, done = torch.randperm(self.n, generator=gen), 0, 0
        while True:
            idx = []
            while len(idx) < self.batch:
                if pos == self.n:
                    order, pos = torch.randperm(self.n, generator=gen), 0
                idx.append(int(order[pos]))
                pos += 1
            seeds = torch.randint(2 ** 62, (self.batch,), generator=gen).tolist()
            if done >= self.skip:
                yield list(zip(idx, seeds))
            done += 1


def task_data(config: FinetuneConfig) -> tuple[_Images, torch.Tensor, _Images, torch.Tensor,
                                               tuple[str, ...]]:
    """``(train images, train targets (N, C), test images, test targets, class names)``."""
    if config.task == "voc2007":
        from .data.voc import CLASSES, VOC2007Classification

        train = VOC2007Classification(config.root, "trainval")
        test = VOC2007Classification(config.root, "test")
        return _Images(voc=train), train.targets, _Images(voc=test), test.targets, CLASSES
    from .data.shapes import SHAPE_CLASSES, shapes_stills

    def hwc(images: torch.Tensor) -> np.ndarray:
        return images.permute(0, 2, 3, 1).contiguous().numpy()

    images, targets = shapes_stills(config.labelled, "train", size=config.size)
    test_images, test_targets = shapes_stills(config.test_images, "test", size=config.size)
    return (_Images(images=hwc(images)), targets, _Images(images=hwc(test_images)),
            test_targets, SHAPE_CLASSES)


# ----------------------------------------------------------------------------- model
def multilabel_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sigmoid cross-entropy of ``logits (B, C)`` against ``targets (B, C)`` (1 present, -1
    absent, 0 difficult: ignored), summed over the classes and averaged over the batch, as the
    protocol's loss layer does (so the learning rate and the clip mean what they mean there)."""
    keep = targets != 0
    loss = F.softplus(-targets * logits)  # -log sigmoid(y z)
    return (loss * keep).sum() / targets.shape[0]


def initial_classifier(config: FinetuneConfig, num_classes: int, images: _Images
                       ) -> tuple[VGG16Classifier, dict[str, Any]]:
    """The network fine-tuning starts from: :func:`~s3lib.fcn.vgg16_classifier` of the FCN in
    ``config.init`` (a checkpoint of ``s3 pretrain``, batch norm folded), or of a random
    FCN-8s whose batch norm is estimated on crops of ``images`` and folded. fc8 is drawn
    with ``config.seed``. Returns the network and what it came from."""
    from .models import load_checkpoint

    if config.init == "random":
        torch.manual_seed(config.seed)
        fcn = fcn8s_vgg16(2, config.width, batchnorm=True)
        crops = CropSet(images, torch.zeros(len(images), 1), config.size,
                        (config.scale_min, config.scale_max))
        batches = (torch.stack([crops[k][0] for k in b])
                   for b in _SeededBatches(len(images), config.batch, config.seed + 7))
        fcn = fold_batchnorm(fcn, batches, config.bn_batches)
        source = {"init": "random", "width": config.width}
    else:
        fcn, cfg = load_checkpoint(config.init, expect={"architecture": FCN_ARCHITECTURE})
        if cfg.get("batchnorm"):
            raise ValueError(f"{config.init}: its batch norm is not folded; `s3 pretrain` "
                             f"writes folded checkpoints")
        if config.width is not None and float(cfg["width"]) != float(config.width):
            raise ValueError(f"{config.init}: width {cfg['width']}, but --width "
                             f"{config.width} was asked for")
        source = {"init": str(config.init), "width": float(cfg["width"]),
                  "pretrain": cfg.get("pretrain")}
    if not isinstance(fcn, FCN8s):
        raise ValueError(f"init: {config.init} is not an FCN-8s checkpoint")
    torch.manual_seed(config.seed)
    clf = vgg16_classifier(fcn, num_classes)
    with torch.no_grad():
        clf.fc8.bias.fill_(0.1)  # the protocol's re-initialised layers start with bias 0.1
    return clf, source


def trained_parameters(model: VGG16Classifier, train_from: str
                       ) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of the layers ``train_from`` trains (the others are frozen)."""
    if train_from not in TRAIN_FROM:
        raise ValueError(f"train_from: expected one of {TRAIN_FROM}, got {train_from!r}")
    prefixes = {"fc8": ("fc8.",), "fc6": ("fc6.", "fc7.", "fc8."), "all": ("",)}[train_from]
    return [(n, p) for n, p in model.named_parameters() if n.startswith(prefixes)]


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def test_scores(model: VGG16Classifier, images: _Images, size: int, crops: int = 10,
                seed: int = 0, scale: tuple[float, float] = (0.5, 2.0), batch: int = 64,
                progress: bool = False) -> torch.Tensor:
    """``(N, C)`` scores: the logits of ``crops`` random crops per image
    (:func:`random_crop`, seeds fixed by ``seed`` and the image index), summed. Each image is
    decoded once; at most ``batch`` crops go through the network at a time."""
    from tqdm.auto import tqdm

    model.eval()
    device = next(model.parameters()).device
    views, owners, scores = [], [], None
    for i in tqdm(range(len(images)), desc="test crops", disable=not progress):
        image = images.array(i)
        for k in range(crops):
            views.append(random_crop(image, size, np.random.default_rng([seed, i, k]), scale))
            owners.append(i)
        while len(views) >= batch or (i == len(images) - 1 and views):
            take = min(batch, len(views))
            logits = model(torch.from_numpy(np.stack(views[:take])).to(device)).float().cpu()
            if scores is None:
                scores = torch.zeros(len(images), logits.shape[1])
            scores.index_add_(0, torch.tensor(owners[:take]), logits)
            del views[:take], owners[:take]
    return scores


def mean_ap(scores: torch.Tensor, targets: torch.Tensor, classes: tuple[str, ...]
            ) -> dict[str, Any]:
    """``{"map", "ap": {class: AP}, "map_voc07", "ap_voc07"}`` of ``scores (N, C)`` against
    ``targets (N, C)`` (1 / 0 difficult / -1): per class the non-interpolated AP
    (:func:`~s3lib.metrics.average_precision`, difficult images excluded) and the 11-point
    :func:`~s3lib.metrics.voc07_ap`; fractions, means over the classes with a positive."""
    ap, ap07 = {}, {}
    for c, name in enumerate(classes):
        if (targets[:, c] == 1).any():
            ap[name] = average_precision(scores[:, c], targets[:, c])
            ap07[name] = voc07_ap(scores[:, c], targets[:, c])
    if not ap:
        raise ValueError("targets: no class has a positive test image")
    return {"map": float(np.mean(list(ap.values()))), "ap": ap,
            "map_voc07": float(np.mean(list(ap07.values()))), "ap_voc07": ap07}


# ----------------------------------------------------------------------------- training
def learning_rate(config: FinetuneConfig, step: int) -> float:
    """``lr * 0.5 ** (step // lr_step)``: halved every ``lr_step`` iterations."""
    return config.lr * 0.5 ** (step // config.lr_step)


RESUMABLE = ("steps", "device", "workers", "threads", "eval_every")


def finetune(config: FinetuneConfig, out: str | Path | None = None, progress: bool = True,
             resume: bool = False) -> dict[str, Any]:
    """Fine-tune and score on the test split: returns :func:`mean_ap`'s scores with
    ``steps``, ``seconds`` and the settings. With ``out``: ``out/checkpoint.pt`` (the
    classifier), ``out/metrics.jsonl`` (a line every ``eval_every`` iterations) and
    ``out/state.pt`` (network, optimiser, random state, iteration; written every
    ``eval_every`` iterations), from which ``resume=True`` continues to exactly the result of
    an uninterrupted run (the settings must match but for :data:`RESUMABLE`)."""
    config = config.resolved()
    reproducible(config.seed, threads=config.threads)
    train_images, train_targets, test_images, test_targets, classes = task_data(config)
    model, source = initial_classifier(config, len(classes), train_images)
    model = model.to(config.device)
    trained = trained_parameters(model, config.train_from)
    for p in model.parameters():
        p.requires_grad_(False)
    for _, p in trained:
        p.requires_grad_(True)
    groups = [{"params": [p for n, p in trained if not n.endswith("bias")], "lr_scale": 1.0},
              {"params": [p for n, p in trained if n.endswith("bias")], "lr_scale": 2.0}]
    opt = torch.optim.SGD([g for g in groups if g["params"]], lr=config.lr,
                          momentum=config.momentum, weight_decay=config.weight_decay)
    scale = (config.scale_min, config.scale_max)
    out = Path(out) if out is not None else None
    step, done_before = 0, 0.0
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        log_path, state_path = out / "metrics.jsonl", out / "state.pt"
        if resume and state_path.is_file():
            state = load_resumable(state_path, asdict(config), RESUMABLE)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"])
            if state.get("cuda_rng") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state(state["cuda_rng"])
            step, done_before = int(state["step"]), float(state["elapsed"])
            if log_path.exists():
                log_path.write_text(kept_log_lines(log_path, step))
        else:
            log_path.unlink(missing_ok=True)
    crops = CropSet(train_images, train_targets, config.size, scale)
    loader = torch.utils.data.DataLoader(
        crops, batch_sampler=_SeededBatches(len(crops), config.batch, config.seed + 1, skip=step),
        num_workers=config.workers,
        generator=torch.Generator().manual_seed(config.seed))  # leaves torch's RNG to dropout
    from tqdm.auto import tqdm

    bar = tqdm(total=config.steps, initial=step,
               desc=f"finetune {config.task} ({config.train_from})", disable=not progress)
    start, running = time.perf_counter() - done_before, []

    def save_state() -> None:
        save_torch(state_path, {
            "model": {k: v.cpu() for k, v in model.state_dict().items()},
            "optimizer": opt.state_dict(), "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state() if config.device.startswith("cuda") else None,
            "step": step, "elapsed": time.perf_counter() - start, "config": asdict(config)})

    for images, targets in loader:
        if step >= config.steps:
            break
        model.train()  # dropout after fc6 and fc7 also when only fc8 learns (the protocol's)
        for g in opt.param_groups:
            g["lr"] = learning_rate(config, step) * g["lr_scale"]
        loss = multilabel_loss(model(images.to(config.device)), targets.to(config.device))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in trained], config.clip)
        opt.step()
        step += 1
        running.append(float(loss.detach()))
        bar.update(1)
        if out is not None and (step % config.eval_every == 0 or step == config.steps):
            rec = {"step": step, "loss": float(np.mean(running)),
                   "lr": learning_rate(config, step - 1),
                   "elapsed": time.perf_counter() - start}
            running = []
            with open(log_path, "a") as fh:
                fh.write(json.dumps(rec) + "\n")
            save_state()
    bar.close()
    seconds = time.perf_counter() - start
    settings = {"size": config.size, "classes": list(classes), "finetune": asdict(config),
                "source": source}
    if out is not None:  # before scoring: an error there loses no training
        from .models import save_checkpoint

        save_checkpoint(out / "checkpoint.pt", model, settings,
                        extra={"step": step, "elapsed": seconds})
    scores = test_scores(model, test_images, config.size, config.test_crops, config.seed, scale,
                         progress=progress and len(test_images) > 1000)
    result = {**mean_ap(scores, test_targets, classes), "steps": step, "seconds": seconds,
              "task": config.task, "init": source["init"], "train_from": config.train_from,
              "seed": config.seed}
    if out is not None:
        save_checkpoint(out / "checkpoint.pt", model, {**settings, "test": {
            "map": result["map"], "map_voc07": result["map_voc07"]}},
            extra={"step": step, "elapsed": seconds})
    return result


def evaluate_voc2007(checkpoint: str | Path, root: str | Path | None = None,
                     split: str = "test", crops: int | None = None, seed: int | None = None,
                     device: str = "cpu", progress: bool = False) -> dict[str, Any]:
    """``s3 eval voc2007``: score a fine-tuned classifier (``s3 finetune voc2007 --out``) on
    VOC 2007's ``split`` with the protocol's test crops (``crops`` and ``seed``: the
    fine-tuning run's unless given, so the same numbers). ``root``: where VOC is (default: the
    one it was fine-tuned on)."""
    from .data.voc import CLASSES, VOC2007Classification
    from .models import CLASSIFIER_ARCHITECTURE, load_checkpoint

    model, cfg = load_checkpoint(checkpoint, expect={"architecture": CLASSIFIER_ARCHITECTURE})
    settings = cfg.get("finetune") or {}
    root = root if root is not None else settings.get("root")
    if not root:
        raise ValueError(f"{checkpoint}: no VOC root recorded; give --root")
    if model.num_classes != len(CLASSES):
        raise ValueError(f"{checkpoint}: {model.num_classes} classes, VOC 2007 has "
                         f"{len(CLASSES)}")
    data = VOC2007Classification(root, split)
    scale = (settings.get("scale_min", 0.5), settings.get("scale_max", 2.0))
    crops = crops or settings.get("test_crops", 10)
    seed = settings.get("seed", 0) if seed is None else seed
    scores = test_scores(model.to(device), _Images(voc=data), int(cfg["size"]), crops, seed,
                         scale, progress=progress)
    return {**mean_ap(scores, data.targets, CLASSES), "images": len(data), "split": split,
            "crops": crops}
