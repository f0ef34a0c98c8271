"""Segmenting ONE flow field by gradient descent on free mask logits (no network yet).

The masks are ``softmax(logits)`` with the logits themselves the parameters: the cleanest way
to see what a loss rewards, before a network has to predict the masks from an image.
Explained in ``notebooks/02_affine_motion_loss.ipynb`` and ``03_entropy_motion_loss.ipynb``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from .metrics import matched_miou

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class FreeMaskResult:
    """The optimised ``masks (L, H, W)`` and the history of the run (one entry per record)."""

    masks: torch.Tensor
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    mious: list[float] = field(default_factory=list)
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def labels(self) -> torch.Tensor:
        """Hard segmentation ``(H, W)``: each pixel's most likely segment."""
        return self.masks.argmax(0)


def segment_flow(flow: torch.Tensor, num_segments: int, loss_fn: LossFn, steps: int = 300,
                 lr: float = 0.1, seed: int = 0, init_scale: float = 0.1,
                 labels: torch.Tensor | None = None, record_every: int = 10,
                 progress: bool = False, restarts: int = 1, stride: int = 1,
                 snapshots: tuple[int, ...] = ()) -> FreeMaskResult:
    """Minimise ``loss_fn(softmax(logits), flow)`` over free logits ``(1, L, H, W)`` with Adam.

    Args:
        flow: ``(2, H, W)`` pixels. num_segments: ``L``.
        loss_fn: e.g. ``lambda m, f: affine_motion_loss(m, f)`` (batched ``(1, L, H, W)`` masks).
        steps, lr: Adam iterations and learning rate.
        seed: seed of the random initial logits (``init_scale`` times a standard normal): the
            only thing that breaks the symmetry between segments.
        labels: true regions ``(H, W)``; if given, the matched mIoU is recorded.
        record_every: record loss (and mIoU) every this many steps (and at the last step).
        progress: show a ``tqdm`` progress bar of the ``steps`` Adam steps (it is left on
            screen, full when the run is done).
        stride: keep the logits at ``1/stride`` of the resolution and upsample them bilinearly:
            smooth masks, a stand-in for the spatial prior a network brings (``1``: one free
            logit per pixel and segment).
        snapshots: steps at which to keep a copy of the masks (``result.snapshots[step]``).
        restarts: run this many random initialisations (seeds ``seed, seed + 1, ...``) and keep
            the one with the lowest final loss: model selection by the loss alone, no labels.

    Returns:
        A :class:`FreeMaskResult` (the kept run's).
    """
    if restarts < 1:
        raise ValueError(f"restarts: expected >= 1, got {restarts}")
    if restarts > 1:
        runs = [segment_flow(flow, num_segments, loss_fn, steps, lr, seed + i, init_scale, labels,
                             record_every, progress, 1, stride, snapshots)
                for i in range(restarts)]
        return min(runs, key=lambda r: r.losses[-1])
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise ValueError(f"flow: expected (2, H, W), got shape {tuple(flow.shape)}")
    if num_segments < 1 or steps < 0:
        raise ValueError(f"num_segments >= 1 and steps >= 0 expected, got {num_segments}, {steps}")
    if stride < 1:
        raise ValueError(f"stride: expected >= 1, got {stride}")
    h, w = flow.shape[1:]
    gen = torch.Generator().manual_seed(seed)
    small = (-(-h // stride), -(-w // stride))
    logits = (torch.randn(1, num_segments, *small, generator=gen, dtype=flow.dtype)
              * init_scale).requires_grad_()

    def masks_of(lg: torch.Tensor) -> torch.Tensor:
        if stride > 1:
            lg = torch.nn.functional.interpolate(lg, size=(h, w), mode="bilinear",
                                                 align_corners=False)
        return lg.softmax(1)

    opt = torch.optim.Adam([logits], lr=lr)
    result = FreeMaskResult(masks=masks_of(logits.detach())[0])
    bar = None
    if progress:  # one tick per Adam step: the bar ends full at steps/steps
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="free masks")
    for step in range(steps + 1):  # steps Adam steps; the loss is evaluated once more after them
        masks = masks_of(logits)
        loss = loss_fn(masks, flow[None])
        if step in snapshots:
            result.snapshots[step] = masks.detach()[0].clone()
        if step % record_every == 0 or step == steps:
            result.steps.append(step)
            result.losses.append(float(loss.detach()))
            if labels is not None:
                result.mious.append(matched_miou(masks.detach()[0].argmax(0), labels))
        if step < steps:
            opt.zero_grad()
            loss.backward()
            opt.step()
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    result.masks = masks_of(logits.detach())[0]
    return result
