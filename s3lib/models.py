"""Segmentation networks of the course and their checkpoints.

:class:`SegmentationNet` is a small U-Net for the CPU (about half a million parameters at
the default width and depth): an image ``(B, 3, H, W)`` in, ``L`` logits ``(B, L, H, W)`` out;
the soft segments are ``logits.softmax(1)``. :func:`save_checkpoint` / :func:`load_checkpoint`
store the weights of any of the course's networks with a plain-data ``config`` (loaded with
``torch.load(..., weights_only=True)``: a checkpoint is untrusted input), also notebook 07's
FCN-8s on VGG-16 and its VGG-16 classifier (:mod:`s3lib.fcn`, re-exported here);
:func:`predict_masks` applies a network. Explained in ``notebooks/04_cube_toy.ipynb``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._io import save_torch
from .fcn import (CLASSIFIER_ARCHITECTURE, FCN_ARCHITECTURE, FCN8s, VGG16Classifier,
                  fcn8s_vgg16, fcn_trunk_from_classifier, fold_batchnorm, precise_batchnorm,
                  vgg16_classifier)

__all__ = ["ARCHITECTURE", "ARCHITECTURES", "CLASSIFIER_ARCHITECTURE", "FCN_ARCHITECTURE", "FCN8s",
           "SegmentationNet", "VGG16Classifier", "build_model", "export_checkpoint",
           "fcn8s_vgg16", "fcn_trunk_from_classifier", "fold_batchnorm", "level_channels",
           "load_checkpoint", "precise_batchnorm", "predict_masks", "save_checkpoint",
           "vgg16_classifier"]

ARCHITECTURE = "s3-unet-v1"
ARCHITECTURES = (ARCHITECTURE, FCN_ARCHITECTURE, CLASSIFIER_ARCHITECTURE)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def level_channels(width: int, levels: int) -> list[int]:
    """Channels of each level of :class:`SegmentationNet`, finest first: ``width * 2**i``,
    capped at ``4 * width`` (``levels + 1`` numbers: the encoder levels, then the bottleneck).
    The cap keeps the coarse levels, which see little of a 64x64 image, cheap in parameters."""
    return [width * 2 ** min(i, 2) for i in range(levels + 1)]


class SegmentationNet(nn.Module):
    """A U-Net: ``(B, 3, H, W)`` images in [0, 1] -> ``(B, L, H, W)`` logits.

    ``levels`` poolings by 2 between the full-resolution encoder block and the bottleneck, with
    :func:`level_channels` channels; each decoder block sees the upsampled coarser level and the
    encoder's skip connection. Four levels (the default) give the bottleneck a view of the
    whole 64x64 cube for 0.3 GFLOP per 64x64 image; two levels with ``width=32`` are the
    network of the course's first checkpoints (still loaded), which sees less of the cube for
    three times the compute (0.9 GFLOP) and as many parameters. Images whose
    sides are not multiples of ``2**levels`` are padded (edge values) and the logits cropped.

    Args:
        num_segments: ``L`` >= 2.
        width: channels of the full-resolution level (the next ones double it, up to 4x).
        coords: append the normalised pixel coordinates as two input channels, so segments can
            also depend on position (CoordConv).
        levels: number of poolings (1-5).

    Explained in ``notebooks/04_cube_toy.ipynb``.
    """

    def __init__(self, num_segments: int = 5, width: int = 16, coords: bool = True,
                 levels: int = 4):
        super().__init__()
        if not isinstance(num_segments, int) or num_segments < 2:
            raise ValueError(f"num_segments: expected an int >= 2, got {num_segments!r}")
        if not isinstance(width, int) or width < 4:
            raise ValueError(f"width: expected an int >= 4, got {width!r}")
        if not isinstance(levels, int) or not 1 <= levels <= 5:
            raise ValueError(f"levels: expected an int from 1 to 5, got {levels!r}")
        self.num_segments, self.width, self.coords = num_segments, width, coords
        self.levels = levels
        ch = level_channels(width, levels)
        cin = 3 + (2 if coords else 0)
        for i in range(levels):  # enc1 .. enc{levels}
            self.add_module(f"enc{i + 1}", _block(cin if i == 0 else ch[i - 1], ch[i]))
        self.mid = _block(ch[levels - 1], ch[levels])
        for i in reversed(range(levels)):  # dec{levels} .. dec1
            self.add_module(f"dec{i + 1}", _block(ch[i + 1] + ch[i], ch[i]))
        self.head = nn.Conv2d(ch[0], num_segments, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images (B, 3, H, W)`` in [0, 1], ``H, W`` multiples of 4 and >= 8 -> logits
        ``(B, L, H, W)``."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images: expected (B, 3, H, W), got {tuple(images.shape)}")
        h, w = images.shape[-2:]
        if h < 8 or w < 8 or h % 4 or w % 4:
            raise ValueError(f"images: height and width must be multiples of 4 and >= 8 for "
                             f"this network, got {h}x{w}")
        x = images
        if self.coords:
            ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
            xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
            grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"))[[1, 0]]
            x = torch.cat([x, grid.expand(x.shape[0], -1, -1, -1)], 1)
        step = 2 ** self.levels
        pad_h, pad_w = -h % step, -w % step
        if pad_h or pad_w:
            x = nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        skips = []
        for i in range(self.levels):
            x = getattr(self, f"enc{i + 1}")(x if i == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        x = self.mid(nn.functional.max_pool2d(x, 2))
        for i in reversed(range(self.levels)):
            up = nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = getattr(self, f"dec{i + 1}")(torch.cat([up, skips[i]], 1))
        return self.head(x)[..., :h, :w]

    def config(self) -> dict[str, Any]:
        """What is needed to rebuild the network (plain data, stored in checkpoints)."""
        return {"architecture": ARCHITECTURE, "num_segments": self.num_segments,
                "width": self.width, "coords": self.coords, "levels": self.levels}


@torch.no_grad()
def predict_masks(model: nn.Module, images: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """Soft segments ``(N, L, H, W)`` of ``images (N, 3, H, W)``: the softmax of the logits,
    in batches of ``batch``, in eval mode, on the model's device (returned on the CPU)."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model(images[i:i + batch].to(device)).softmax(1).cpu()
                      for i in range(0, len(images), batch)])


def save_checkpoint(path: str | os.PathLike, model: nn.Module, config: dict[str, Any],
                    extra: dict[str, Any] | None = None) -> None:
    """Write ``model``'s weights and ``config`` (must include ``size``) atomically to ``path``."""
    if "size" not in config:
        raise ValueError("config: must include the training image 'size'")
    save_torch(path, {"config": {**model.config(), **config}, "model": model.state_dict(),
                      **(extra or {})})


def build_model(config: dict[str, Any], where: str = "config") -> nn.Module:
    """A fresh network of a checkpoint's ``config``: its ``architecture`` is one of
    :data:`ARCHITECTURES` (the U-Net of notebooks 04-06, or notebook 07's FCN-8s / VGG-16
    classifier). ``ValueError`` naming ``where`` and the missing settings otherwise."""
    arch = config.get("architecture")
    if arch not in ARCHITECTURES:
        raise ValueError(f"{where}: architecture {arch!r}, expected one of {ARCHITECTURES}")
    needs = {ARCHITECTURE: ("size", "num_segments", "width", "coords", "levels"),
             FCN_ARCHITECTURE: ("size", "num_segments", "width", "batchnorm"),
             CLASSIFIER_ARCHITECTURE: ("size", "num_classes", "width", "batchnorm")}[arch]
    missing = [k for k in needs if k not in config]
    if missing:
        raise ValueError(f"{where}: config lacks {missing}")
    if arch == FCN_ARCHITECTURE:
        return FCN8s(config["num_segments"], config["width"], config["batchnorm"])
    if arch == CLASSIFIER_ARCHITECTURE:
        return VGG16Classifier(config["num_classes"], config["width"], config["batchnorm"])
    return SegmentationNet(config["num_segments"], config["width"], config["coords"],
                           config["levels"])


def load_checkpoint(path: str | os.PathLike, expect: dict[str, Any] | None = None
                    ) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`: ``(model in eval mode, config)``.

    ``config`` holds at least ``size`` and the network's settings (``architecture``,
    ``width``, ...; :func:`build_model`). ``expect``: settings the caller needs, e.g.
    ``{"architecture": "fcn8s-vgg16", "width": 0.125}``. Raises ``FileNotFoundError`` for a
    missing file and ``ValueError`` naming the file and what differs for a file that is not
    such a checkpoint (another architecture or width, other shapes, missing keys).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which, not a pickle traceback
        raise ValueError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(payload, dict) or "config" not in payload or "model" not in payload:
        raise ValueError(f"{path}: not an s3lib checkpoint (expected keys 'config' and 'model')")
    config = dict(payload["config"])
    model = build_model(config, str(path))
    own = model.state_dict()
    state = payload["model"]
    diffs = [f"{k}: missing" for k in own if k not in state]
    diffs += [f"{k}: unexpected" for k in state if k not in own]
    diffs += [f"{k}: shape {tuple(state[k].shape)} != {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if diffs:
        raise ValueError(f"{path}: weights do not fit the network in its config: "
                         + "; ".join(diffs[:5]) + (" ..." if len(diffs) > 5 else ""))
    model.load_state_dict(state)
    wrong = {k: (config.get(k), v) for k, v in (expect or {}).items() if config.get(k) != v}
    if wrong:
        raise ValueError(f"{path}: " + "; ".join(f"{k} is {got!r}, expected {want!r}"
                                                  for k, (got, want) in wrong.items()))
    return model.eval(), config


def export_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy a training checkpoint without its optimiser and random-generator state (about a
    third of the size): what the notebooks load and what the course commits (``s3 export``).

    The result loads with :func:`load_checkpoint` to the same network; ``step`` and
    ``elapsed`` (training seconds) are kept so the notebooks can say how it was made.
    """
    model, config = load_checkpoint(src)
    payload = torch.load(Path(src), map_location="cpu", weights_only=True)
    keep = {k: payload[k] for k in ("step", "elapsed") if k in payload}
    save_checkpoint(dst, model, config, extra=keep)
    return Path(dst)
