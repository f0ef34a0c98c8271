"""The entropy explorer of ``notebooks/03_entropy_motion_loss.ipynb``: histogram bins and noise.

One synthetic flow field with known regions (:func:`s3lib.data.synthetic.piecewise_affine_flow`,
corrupted by :func:`s3lib.data.synthetic.add_flow_noise`); for three segmentations of it
(``true``, ``mixed``, ``uniform``: :func:`s3lib.analysis.comparison_masks`), the per-segment soft
histograms of the speed ``|f|`` and the low-entropy motion loss
(:func:`s3lib.losses.entropy_motion_loss`), computed by :func:`s3lib.analysis.speed_entropies`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ._controls import Explorer
from ..analysis import MASK_KINDS, comparison_masks, speed_entropies
from ..data.synthetic import add_flow_noise, piecewise_affine_flow

MAX_BINS = 64
MAX_NOISE = 1.0


@dataclass
class EntropyView:
    """What the entropy explorer shows for one setting (see :func:`render_entropy_view`).

    ``losses[kind]``: the entropy loss (nats) of each mask set; ``segment_entropies[kind]``:
    ``H_l`` of each of its segments; ``max_speed``: the speed of the last bin centre (px).
    """

    png: bytes
    bins: int
    noise: float
    segment: int | None
    losses: dict[str, float]
    segment_entropies: dict[str, list[float]]
    max_speed: float

    def summary(self) -> str:
        """One line: the setting and the loss of the three segmentations (4 decimals)."""
        line = (f"bins {self.bins}, noise {self.noise:.2f} px: entropy loss "
                + ", ".join(f"{k} {self.losses[k]:.4f}" for k in MASK_KINDS)
                + f" nats (uniform = H(speed); log {self.bins} = {math.log(self.bins):.4f})")
        if self.segment is not None:
            line += f"; segment {self.segment}: H = " + ", ".join(
                f"{k} {self.segment_entropies[k][self.segment]:.4f}" for k in MASK_KINDS)
        return line


def render_entropy_view(flow: torch.Tensor, labels: torch.Tensor, bins: int, noise: float = 0.0,
                        segment: int | None = None, num_segments: int | None = None
                        ) -> EntropyView:
    """Per-segment speed histograms and entropy losses of the three comparison segmentations.

    Args:
        flow: ``(2, H, W)`` pixels (already noisy; ``noise`` is only reported).
        labels: ``(H, W)`` int64 true regions ``0..L-1``.
        bins: histogram bins (>= 2), as in :func:`s3lib.losses.entropy_motion_loss`.
        segment: ``None`` to draw all segments stacked (each bar's total is the image's
            histogram; colours show how the segments share it), or one segment index to draw
            only its normalised histogram ``p_l``.
        num_segments: ``L`` (default: the largest label + 1).

    Returns:
        An :class:`EntropyView` with the PNG and the numbers.
    """
    import matplotlib.pyplot as plt

    from ..viz import figure_to_png, palette

    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 2:
        raise ValueError(f"bins: expected an int >= 2, got {bins!r}")
    masks = comparison_masks(labels, flow.dtype, num_segments)
    num = masks["true"].shape[1]
    if segment is not None and not 0 <= segment < num:
        raise ValueError(f"segment: expected None or 0..{num - 1}, got {segment!r}")
    f = flow[None]
    speed = torch.sqrt(f.pow(2).sum(1) + 1e-12)
    n = speed.numel()
    scores = speed_entropies(masks, flow, bins)
    losses = {kind: s.loss for kind, s in scores.items()}
    entropies = {kind: s.entropies for kind, s in scores.items()}
    shares = {}
    for kind, s in scores.items():
        p = s.hist / s.hist.sum(-1, keepdim=True).clamp_min(1e-12)
        shares[kind] = (s.hist / n).numpy() if segment is None else p[segment].numpy()
    top = scores["true"].top  # the image's largest speed: one range for every mask set
    centres = np.linspace(0.0, float(top), bins)
    width = centres[1] - centres[0]
    edges = np.concatenate([centres - width / 2, centres[-1:] + width / 2])
    colours = palette(num)

    fig, axes = plt.subplots(1, 4, figsize=(12.5, 2.8),
                             gridspec_kw={"width_ratios": [1.0, 1.25, 1.25, 1.25], "wspace": 0.3,
                                          "left": 0.02, "right": 0.99, "bottom": 0.17,
                                          "top": 0.83})  # fixed layout: fast to redraw
    im = axes[0].imshow(speed[0].numpy(), cmap="magma", vmin=0)
    axes[0].contour(labels.numpy(), levels=np.arange(num - 1) + 0.5, colors="white",
                    linewidths=0.8)
    axes[0].set_title(f"speed |f| (px), noise {noise:.2f} px")
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    fig.colorbar(im, ax=axes[0], shrink=0.85, pad=0.03, label="speed (px)")
    top_y = max(float(np.max(s.sum(0) if segment is None else s)) for s in shares.values())
    for ax, kind in zip(axes[1:], MASK_KINDS):
        if segment is None:
            bottom = np.zeros(bins)
            for l in range(num):  # stacked: one filled step patch per segment (fast to draw)
                ax.stairs(bottom + shares[kind][l], edges, baseline=bottom, fill=True,
                          color=colours[l], label=f"seg {l}: H={entropies[kind][l]:.2f}")
                bottom = bottom + shares[kind][l]
            ax.set_ylabel("share of pixels")
        else:
            ax.stairs(shares[kind], edges, fill=True, color=colours[segment],
                      label=f"seg {segment}: H={entropies[kind][segment]:.2f}")
            ax.set_ylabel(f"p (segment {segment})")
        ax.set_ylim(0, top_y * 1.08)
        ax.set_xlabel("speed (px)")
        ax.set_title(f"{kind} masks: loss {losses[kind]:.3f} nats")
        ax.legend(fontsize=7, loc="upper left", frameon=False)
    fig.suptitle(f"{bins} bins of width {width:.2f} px over [0, {float(top):.2f}] px; "
                 f"the loss is at most log {bins} = {math.log(bins):.2f} nats", fontsize=9)
    return EntropyView(png=figure_to_png(fig), bins=bins, noise=float(noise), segment=segment,
                       losses=losses, segment_entropies=entropies, max_speed=float(top))


@dataclass
class EntropyExplorer(Explorer):
    """Sliders over the number of bins and the flow noise, a segment choice, picture and numbers.

    The flow is ``add_flow_noise(piecewise_affine_flow(size, num_regions, seed, max_motion,
    deformation=deformation).flow, noise, seed=seed)`` and the masks are those of
    :func:`s3lib.analysis.comparison_masks` for its labels.

    Parts: ``bins`` (IntSlider), ``noise`` (FloatSlider, px), ``segment`` (Dropdown: all
    segments stacked, or one segment's normalised histogram), ``image`` (Image, the PNG of
    :func:`render_entropy_view`), ``info`` (Label, the summary line), ``widget`` (the whole box).
    """

    size: int
    num_regions: int
    seed: int
    max_motion: float
    deformation: float
    initial_bins: int
    initial_noise: float
    bins: object = field(init=False)
    noise: object = field(init=False)
    segment: object = field(init=False)
    image: object = field(init=False)
    info: object = field(init=False)
    widget: object = field(init=False)
    labels: torch.Tensor = field(init=False, repr=False)
    last: EntropyView | None = field(init=False, default=None)
    _clean: torch.Tensor = field(init=False, repr=False)
    _flows: dict = field(init=False, default_factory=dict, repr=False)
    _cache: dict = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        import ipywidgets as w

        synthetic = piecewise_affine_flow(self.size, self.num_regions, seed=self.seed,
                                          max_motion=self.max_motion,
                                          deformation=self.deformation)
        self._clean, self.labels = synthetic.flow, synthetic.labels
        style = {"description_width": "initial"}
        self.bins = w.IntSlider(value=self.initial_bins, min=2, max=MAX_BINS, description="bins",
                                continuous_update=False, style=style)
        self.noise = w.FloatSlider(value=self.initial_noise, min=0.0, max=MAX_NOISE, step=0.05,
                                   description="noise (px)", readout_format=".2f",
                                   continuous_update=False, style=style)
        self.segment = w.Dropdown(options=[("all (stacked)", -1)]
                                  + [(str(l), l) for l in range(self.num_regions)],
                                  value=-1, description="segment", style=style)
        self._assemble((self.bins, self.noise, self.segment))

    def flow(self, noise: float) -> torch.Tensor:
        """The explorer's flow ``(2, H, W)`` at a noise level (px), cached."""
        key = round(float(noise), 4)
        if key not in self._flows:
            self._flows[key] = add_flow_noise(self._clean, key, seed=self.seed)
        return self._flows[key]

    def update(self) -> EntropyView:
        """Redraw for the current control values; returns what is shown."""
        segment = None if self.segment.value < 0 else int(self.segment.value)
        noise = round(float(self.noise.value), 4)
        key = (int(self.bins.value), noise, segment)
        if key not in self._cache:
            self._cache[key] = render_entropy_view(self.flow(noise), self.labels, key[0], noise,
                                                   segment, self.num_regions)
        self.last = self._cache[key]
        self.image.value = self.last.png
        self.info.value = self.last.summary()
        return self.last

    def show(self, bins: int | None = None, noise: float | None = None,
             segment: int | None = None) -> str:
        """Set the controls (as a reader would) and return the summary line they produce.

        Arguments left ``None`` keep their control's value; ``segment=-1`` shows all segments.
        Values outside the controls' ranges raise ``ValueError`` (a slider would clamp them).
        """
        if bins is not None:
            _check_bins(bins)
        if noise is not None:
            _check_noise(noise)
        if segment is not None and segment not in [v for _, v in self.segment.options]:
            raise ValueError(f"segment: expected -1 (all) or 0..{self.num_regions - 1}, "
                             f"got {segment!r}")
        moves = [(self.bins, None if bins is None else int(bins)),
                 (self.noise, None if noise is None else float(noise)),
                 (self.segment, segment)]
        return self._set_controls(*[(c, v) for c, v in moves if v is not None])


def _check_bins(bins) -> None:
    if (not isinstance(bins, (int, np.integer)) or isinstance(bins, bool)
            or not 2 <= bins <= MAX_BINS):
        raise ValueError(f"bins: expected an int in [2, {MAX_BINS}], got {bins!r}")


def _check_noise(noise) -> None:
    if isinstance(noise, bool) or not isinstance(noise, (int, float, np.floating, np.integer)) \
            or not 0 <= noise <= MAX_NOISE:
        raise ValueError(f"noise: expected a level in [0, {MAX_NOISE}] px, got {noise!r}")


def entropy_explorer(size: int = 64, num_regions: int = 3, seed: int = 0,
                     max_motion: float = 4.0, deformation: float = 0.0, bins: int = 16,
                     noise: float = 0.0) -> EntropyExplorer:
    """Build the entropy explorer of ``03_entropy_motion_loss.ipynb``.

    Args:
        size: image side (pixels, >= 8). num_regions: regions and segments (2..10).
        seed: layout, motions and noise seed. max_motion: about the largest speed (px).
        deformation: 0 for pure translations (one speed per region); larger values give each
            region a range of speeds (see :func:`s3lib.data.synthetic.piecewise_affine_flow`).
        bins: initial number of histogram bins (2..64). noise: initial noise level (0..1 px).
    """
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size: expected an int >= 8, got {size!r}")
    if not isinstance(num_regions, int) or not 2 <= num_regions <= 10:
        raise ValueError(f"num_regions: expected an int in [2, 10], got {num_regions!r}")
    if not max_motion > 0:
        raise ValueError(f"max_motion: expected a positive speed in pixels, got {max_motion!r}")
    if not deformation >= 0:
        raise ValueError(f"deformation: expected a non-negative number, got {deformation!r}")
    _check_bins(bins)
    _check_noise(noise)
    return EntropyExplorer(size=size, num_regions=num_regions, seed=seed,
                           max_motion=float(max_motion), deformation=float(deformation),
                           initial_bins=int(bins), initial_noise=float(noise))


__all__ = ["EntropyExplorer", "EntropyView", "entropy_explorer", "render_entropy_view"]
