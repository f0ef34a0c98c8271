"""The paper's network: FCN-8s on VGG-16, batch-norm folding, and the VGG-16 classifier.

- :class:`FCN8s` (:func:`fcn8s_vgg16`): VGG-16's 13 3x3 convolutions in five blocks, fc6 as a
  7x7 convolution (padding 3) and fc7 as a 1x1 convolution, score heads on pool3, pool4 and
  fc7 fused FCN-8s style and upsampled bilinearly to the input: ``(B, 3, H, W)`` images in
  [0, 1] -> ``(B, L, H, W)`` logits for any ``H, W >= 32``; the soft segments are the per-pixel
  softmax over ``L``. Parameter-free batch norm (``affine=False``) follows every convolution
  of the trunk, fc6 and fc7 included, during pre-training (the paper: "after every
  convolutional and fully connected layer"); the score heads have none.
- :func:`precise_batchnorm` re-estimates the batch-norm statistics over many batches (all
  processes of a distributed run together) and :func:`fold_batchnorm` absorbs them into the
  preceding convolution or linear layer: the paper's "batch normalization moments are absorbed
  into convolution filters and biases before fine-tuning".
- :class:`VGG16Classifier` (:func:`vgg16_classifier`): the classification VGG-16 whose
  trunk is the FCN's, fc6 and fc7 reshaped from convolutions into linear layers, and a new
  fc8: ``(B, 3, 224, 224) -> (B, num_classes)`` logits.

``width`` scales every channel count (VGG-16's 64 to 512 and the 4096 of fc6/fc7), so the same
code gives the full network (``width=1``: 134.26 M parameters in the trunk) and the CPU-scale
one of notebook 07 (``width=0.125``: 8 to 64 channels, fc layers 512 wide). Conv1_1 pads by 1,
not by FCN's 100: the padded constant border would enter every batch-norm statistic, and with
padding 1 the trunk is exactly the VGG-16 that is fine-tuned.

Explained in ``notebooks/07_voc07_transfer.ipynb``.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

FCN_ARCHITECTURE = "fcn8s-vgg16"
CLASSIFIER_ARCHITECTURE = "vgg16-classifier"

VGG16_BLOCKS: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256, 256, 256),
                                             (512, 512, 512), (512, 512, 512))
"""Output channels of VGG-16's convolutions, block by block (at ``width=1``)."""
FC_CHANNELS = 4096
"""Width of fc6 and fc7 at ``width=1``."""
MEAN_RGB = (0.485, 0.456, 0.406)
STD_RGB = (0.229, 0.224, 0.225)
"""The input normalisation of torchvision's ImageNet VGG-16 (so its weights would fit)."""


def scaled(channels: int, width: float, what: str = "layer") -> int:
    """``round(channels * width)``; ``ValueError`` when that leaves ``what`` empty."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"width: expected a positive number, got {width!r}")
    n = int(round(channels * width))
    if n < 1:
        raise ValueError(f"width: {width} leaves {what} ({channels} channels at width 1) with "
                         f"no channel; use width >= {0.5 / channels:.3g}")
    return n


def _vgg_features(width: float, batchnorm: bool) -> nn.Sequential:
    """VGG-16's five convolutional blocks (``block1`` .. ``block5``), each ending in a 2x2 max
    pooling; layers named ``conv{b}_{i}``, ``bn{b}_{i}``, ``relu{b}_{i}``, ``pool{b}``."""
    blocks, cin = [], 3
    for b, outs in enumerate(VGG16_BLOCKS, 1):
        layers: list[tuple[str, nn.Module]] = []
        for i, c in enumerate(outs, 1):
            cout = scaled(c, width, f"conv{b}_{i}")
            layers.append((f"conv{b}_{i}", nn.Conv2d(cin, cout, 3, padding=1)))
            if batchnorm:
                layers.append((f"bn{b}_{i}", nn.BatchNorm2d(cout, affine=False)))
            layers.append((f"relu{b}_{i}", nn.ReLU(inplace=True)))
            cin = cout
        layers.append((f"pool{b}", nn.MaxPool2d(2, 2)))
        blocks.append((f"block{b}", nn.Sequential(OrderedDict(layers))))
    return nn.Sequential(OrderedDict(blocks))


def _fc(name: str, layer: nn.Module, channels: int, batchnorm: bool, conv: bool,
        dropout: float = 0.5) -> nn.Sequential:
    """``fc6`` / ``fc7``: the layer, parameter-free batch norm, ReLU, dropout."""
    parts: list[tuple[str, nn.Module]] = [(name, layer)]
    if batchnorm:
        bn = nn.BatchNorm2d(channels, affine=False) if conv else nn.BatchNorm1d(channels, affine=False)
        parts.append((f"bn_{name}", bn))
    parts += [(f"relu_{name}", nn.ReLU(inplace=True)), (f"drop_{name}", nn.Dropout(dropout))]
    return nn.Sequential(OrderedDict(parts))


def _init_vgg(module: nn.Module) -> None:
    """torchvision's VGG initialisation: He-normal convolutions (fan out), linear layers from
    ``N(0, 0.01)``, zero biases. It keeps the signal alive through the 15 layers even
    without batch norm (PyTorch's default initialisation would let it fade)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


def _normalise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, what: str
               ) -> torch.Tensor:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected (B, 3, H, W), got {tuple(images.shape)}")
    if min(images.shape[-2:]) < 32:
        raise ValueError(f"images: {what} needs height and width >= 32 (five poolings by 2), "
                         f"got {images.shape[-2]}x{images.shape[-1]}")
    return (images - mean.to(images.dtype)) / std.to(images.dtype)


class FCN8s(nn.Module):
    """FCN-8s on VGG-16: ``(B, 3, H, W)`` images in [0, 1] -> ``(B, L, H, W)`` logits.

    ``features`` (VGG-16's blocks), ``fc6`` (7x7 convolution, padding 3), ``fc7`` (1x1) and
    the score heads ``score_fr`` (on fc7), ``score_pool4`` and ``score_pool3`` (initialised to
    zero, as in FCN, so training starts from the coarse prediction). The coarse scores are
    upsampled bilinearly to pool4's grid and added to its scores, the sum to pool3's, and that
    to the input size (FCN-8s's fixed last upsampling; here every upsampling is bilinear).

    Args:
        num_segments: ``L`` >= 2. width: channel scale (1: VGG-16). batchnorm: parameter-free
            batch norm after every trunk layer (pre-training); ``False`` is the folded network.
        dropout: after fc6 and fc7 (FCN's 0.5).

    The trunk starts from torchvision's VGG initialisation (:func:`_init_vgg`), the score
    heads from PyTorch's default.

    Explained in ``notebooks/07_voc07_transfer.ipynb``.
    """

    def __init__(self, num_segments: int = 5, width: float = 1.0, batchnorm: bool = True,
                 dropout: float = 0.5):
        super().__init__()
        if isinstance(num_segments, bool) or not isinstance(num_segments, int) or num_segments < 2:
            raise ValueError(f"num_segments: expected an int >= 2, got {num_segments!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
        self.num_segments, self.width, self.batchnorm = num_segments, float(width), bool(batchnorm)
        self.features = _vgg_features(width, batchnorm)
        c3, c4, c5 = (scaled(VGG16_BLOCKS[i][-1], width) for i in (2, 3, 4))
        fc = scaled(FC_CHANNELS, width, "fc6")
        self.fc6 = _fc("fc6", nn.Conv2d(c5, fc, 7, padding=3), fc, batchnorm, True, dropout)
        self.fc7 = _fc("fc7", nn.Conv2d(fc, fc, 1), fc, batchnorm, True, dropout)
        _init_vgg(self)
        self.score_fr = nn.Conv2d(fc, num_segments, 1)
        self.score_pool4 = nn.Conv2d(c4, num_segments, 1)
        self.score_pool3 = nn.Conv2d(c3, num_segments, 1)
        for head in (self.score_pool4, self.score_pool3):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.register_buffer("mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD_RGB).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images (B, 3, H, W)`` in [0, 1], ``H, W >= 32`` -> logits ``(B, L, H, W)``."""
        h, w = images.shape[-2:]
        x = _normalise(images, self.mean, self.std, "FCN-8s")
        b = self.features
        pool3 = b.block3(b.block2(b.block1(x)))
        pool4 = b.block4(pool3)
        fr = self.score_fr(self.fc7(self.fc6(b.block5(pool4))))
        up = lambda s, like: F.interpolate(s, size=like.shape[-2:], mode="bilinear",  # noqa: E731
                                           align_corners=False)
        s4 = up(fr, pool4) + self.score_pool4(pool4)
        s3 = up(s4, pool3) + self.score_pool3(pool3)
        return F.interpolate(s3, size=(h, w), mode="bilinear", align_corners=False)

    def config(self) -> dict[str, Any]:
        """What is needed to rebuild the network (plain data, stored in checkpoints)."""
        return {"architecture": FCN_ARCHITECTURE, "num_segments": self.num_segments,
                "width": self.width, "batchnorm": self.batchnorm}


def fcn8s_vgg16(num_segments: int = 5, width: float = 1.0, batchnorm: bool = True,
                dropout: float = 0.5) -> FCN8s:
    """The paper's network (:class:`FCN8s`): ``(B, 3, H, W) -> (B, L, H, W)`` logits."""
    return FCN8s(num_segments, width, batchnorm, dropout)


class VGG16Classifier(nn.Module):
    """VGG-16 for classification: ``(B, 3, H, W)`` images in [0, 1] -> ``(B, C)`` logits.

    ``features`` (the FCN's blocks), then pool5's map brought to 7x7 (at 224x224 it is 7x7
    already; a smaller map is zero-padded around its centre, which is what the FCN's fc6, a
    7x7 convolution with padding 3, sees at its centre pixel; a larger one is average-pooled),
    flattened in ``(C, 7, 7)`` order, ``fc6`` and ``fc7`` (linear, batch norm while it has
    some, ReLU, dropout 0.5) and ``fc8``.

    Explained in ``notebooks/07_voc07_transfer.ipynb``.
    """

    def __init__(self, num_classes: int = 20, width: float = 1.0, batchnorm: bool = False):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes: expected an int >= 1, got {num_classes!r}")
        self.num_classes, self.width, self.batchnorm = num_classes, float(width), bool(batchnorm)
        self.features = _vgg_features(width, batchnorm)
        c5 = scaled(VGG16_BLOCKS[4][-1], width)
        fc = scaled(FC_CHANNELS, width, "fc6")
        self.fc6 = _fc("fc6", nn.Linear(c5 * 49, fc), fc, batchnorm, conv=False)
        self.fc7 = _fc("fc7", nn.Linear(fc, fc), fc, batchnorm, conv=False)
        _init_vgg(self)
        self.fc8 = nn.Linear(fc, num_classes)
        nn.init.normal_(self.fc8.weight, 0.0, 0.01)
        nn.init.zeros_(self.fc8.bias)
        self.register_buffer("mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD_RGB).view(1, 3, 1, 1), persistent=False)

    def pool5(self, images: torch.Tensor) -> torch.Tensor:
        """The trunk's pool5 features brought to ``(B, C5, 7, 7)``."""
        x = self.features(_normalise(images, self.mean, self.std, "VGG-16"))
        h, w = x.shape[-2:]
        if h > 7 or w > 7:
            x = F.adaptive_avg_pool2d(x, (min(h, 7), min(w, 7)))
            h, w = x.shape[-2:]
        top, left = (7 - h) // 2, (7 - w) // 2
        return F.pad(x, (left, 7 - w - left, top, 7 - h - top))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images (B, 3, H, W)`` in [0, 1] -> logits ``(B, num_classes)``."""
        return self.fc8(self.fc7(self.fc6(self.pool5(images).flatten(1))))

    def config(self) -> dict[str, Any]:
        return {"architecture": CLASSIFIER_ARCHITECTURE, "num_classes": self.num_classes,
                "width": self.width, "batchnorm": self.batchnorm}


def vgg16_classifier(fcn: FCN8s, num_classes: int = 20) -> VGG16Classifier:
    """The classification VGG-16 initialised from ``fcn``'s trunk: the same blocks, fc6 and fc7
    reshaped from ``(out, in, 7, 7)`` / ``(out, in, 1, 1)`` convolutions into linear layers
    (the ``(C, 7, 7)`` order of the flattened pool5), batch norm with its statistics where
    ``fcn`` still has it, and a new fc8 drawn from ``N(0, 0.01)``. ``fcn`` is not changed."""
    if not isinstance(fcn, FCN8s):
        raise TypeError(f"fcn: expected an FCN8s, got {type(fcn).__name__}")
    clf = VGG16Classifier(num_classes, fcn.width, fcn.batchnorm)
    clf.features.load_state_dict(fcn.features.state_dict())
    for name in ("fc6", "fc7"):
        src, dst = getattr(fcn, name), getattr(clf, name)
        state = {k: (v.reshape(v.shape[0], -1) if k == f"{name}.weight" else v)
                 for k, v in src.state_dict().items()}
        dst.load_state_dict(state)
    return clf.to(next(fcn.parameters()).device)


def fcn_trunk_from_classifier(clf: VGG16Classifier, num_segments: int = 5) -> FCN8s:
    """The inverse of :func:`vgg16_classifier`: an :class:`FCN8s` whose trunk is ``clf``'s
    (fc6/fc7 reshaped back into convolutions) and whose score heads are new. How a network
    pre-trained with labels (notebook 07's upper bound) is stored like the S3 ones."""
    fcn = FCN8s(num_segments, clf.width, clf.batchnorm)
    fcn.features.load_state_dict(clf.features.state_dict())
    for name in ("fc6", "fc7"):
        dst = getattr(fcn, name)
        shape = getattr(dst, name).weight.shape
        state = {k: (v.reshape(shape) if k == f"{name}.weight" else v)
                 for k, v in getattr(clf, name).state_dict().items()}
        dst.load_state_dict(state)
    return fcn


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch-norm modules of ``model``, in order."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def precise_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor], num_batches: int,
                      distributed: bool | None = None) -> nn.Module:
    """Re-estimate every batch norm's statistics of ``model`` (in place; returned) over
    ``num_batches`` image batches ``(B, 3, H, W)`` from ``batches``.

    The network runs in train mode (each layer normalised by its batch's statistics, as in
    training) without gradients and without dropout; each batch norm's input is summed per
    channel over all the batches, and its running mean and (unbiased) variance set to those of
    all the pixels seen: "precise BN", not the momentum average training left, whose
    statistics lag behind the weights. In a distributed run (``distributed=None``: whenever
    ``torch.distributed`` is initialised) the sums are all-reduced, so every process folds the
    same statistics. Explained in ``notebooks/07_voc07_transfer.ipynb``.
    """
    if not isinstance(num_batches, int) or num_batches < 1:
        raise ValueError(f"num_batches: expected an int >= 1, got {num_batches!r}")
    layers = batchnorm_layers(model)
    if not layers:
        return model
    if distributed is None:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    device = next(model.parameters()).device
    sums = {id(m): None for m in layers}

    def hook(module, inputs, _output):
        x = inputs[0].detach().double()
        dims = [0] + list(range(2, x.ndim))
        stat = torch.stack([x.new_tensor(x.numel() / x.shape[1]).expand(x.shape[1]),
                            x.sum(dims), x.pow(2).sum(dims)])
        sums[id(module)] = stat if sums[id(module)] is None else sums[id(module)] + stat

    was_training = model.training
    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        model.train()
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.eval()
        seen = 0
        for images in batches:
            if seen == num_batches:
                break
            model(images.to(device))
            seen += 1
        if seen == 0:
            raise ValueError("batches: no batch to estimate the batch-norm statistics from")
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for m in layers:
        stat = sums[id(m)]
        if distributed:
            torch.distributed.all_reduce(stat)
        n, s1, s2 = stat
        mean = s1 / n
        var = (s2 / n - mean.pow(2)).clamp_min(0) * n / (n - 1).clamp_min(1)
        m.running_mean.copy_(mean.to(m.running_mean.dtype))
        m.running_var.copy_(var.to(m.running_var.dtype))
    return model


def _fold_bn(layer: nn.Conv2d | nn.Linear, bn: nn.modules.batchnorm._BatchNorm
             ) -> nn.Conv2d | nn.Linear:
    """A copy of ``layer`` equal to ``bn(layer(x))`` in eval mode: each output channel's
    weights scaled by ``1 / sqrt(var + eps)`` (times BN's weight, if any) and its bias shifted,
    computed in float64 (the fold's own rounding stays far below float32's)."""
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    shift = -bn.running_mean.double() * scale
    if bn.affine:
        scale, shift = scale * bn.weight.double(), shift * bn.weight.double() + bn.bias.double()
    bias = layer.bias.double() if layer.bias is not None else torch.zeros_like(shift)
    fused = copy.deepcopy(layer)
    shape = (-1,) + (1,) * (layer.weight.ndim - 1)
    dtype = layer.weight.dtype
    fused.weight = nn.Parameter((layer.weight.double() * scale.view(shape)).to(dtype))
    fused.bias = nn.Parameter((bias * scale + shift).to(dtype))
    return fused


@torch.no_grad()
def fold_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor] | None = None,
                   num_batches: int = 50) -> nn.Module:
    """A new network without batch norm whose eval-mode outputs equal ``model``'s (to about
    1e-5 relative): each batch norm absorbed into the convolution or linear layer before it
    (:func:`_fold_bn`, the arithmetic of ``torch.nn.utils.fusion.fuse_conv_bn_eval`` in float64,
    for convolutions and fc layers alike). ``model`` is left untouched.

    With ``batches``, the statistics are first re-estimated over ``num_batches`` of them
    (:func:`precise_batchnorm`, on a copy). Works on :class:`FCN8s` and
    :class:`VGG16Classifier` (and any network whose batch norms follow their layer inside an
    ``nn.Sequential``). Explained in ``notebooks/07_voc07_transfer.ipynb``.
    """
    folded = copy.deepcopy(model)
    if batches is not None:
        precise_batchnorm(folded, batches, num_batches)
    folded.eval()
    for seq in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for prev, name in zip(names, names[1:]):
            layer, bn = seq._modules.get(prev), seq._modules[name]
            if (isinstance(bn, nn.modules.batchnorm._BatchNorm)  # SyncBatchNorm too (DDP)
                    and isinstance(layer, (nn.Conv2d, nn.Linear))):
                seq._modules[prev] = _fold_bn(layer, bn)
            else:
                continue
            del seq._modules[name]
    left = batchnorm_layers(folded)
    if left:
        raise ValueError(f"model: {len(left)} batch norm(s) do not follow a convolution or linear "
                         f"layer in an nn.Sequential; cannot fold them")
    if hasattr(folded, "batchnorm"):
        folded.batchnorm = False
    return folded


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (``int``)."""
    return sum(p.numel() for p in module.parameters())


def trunk_parameters(model: FCN8s | VGG16Classifier) -> int:
    """Parameters of the VGG-16 trunk (13 convolutions, fc6, fc7): 134,260,544 at width 1."""
    return sum(count_parameters(m) for m in (model.features, model.fc6, model.fc7))
