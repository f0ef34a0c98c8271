"""The segment-fit explorer of ``notebooks/05_sintel.ipynb``: one segment's affine motion.

A trained network predicts soft segments ``m (L, H, W)`` for a frame; each segment gets its
affine motion ``A_l`` by weighted least squares on the frame's flow
(:func:`s3lib.losses.fit_affine`, the fit inside the affine motion loss). The explorer shows,
for a chosen frame and segment, the frame with the segment highlighted, all the segments, the
flow (DIS on Big Buck Bunny, ground truth on MPI-Sintel), the segment's fitted flow
``A_l phi_u`` on the same colour scale, and the residual ``|f_u - A_l phi_u|`` inside it.

The numbers are those of :func:`s3lib.analysis.fit_segments` for segment ``l`` of a frame:
its share of the pixels, its mask-weighted mean residual and mean speed (see
:class:`s3lib.analysis.SegmentFits`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ._controls import Explorer
from ..analysis import SegmentFits, fit_segments
from ..data.pairs import FlowPairs


@dataclass
class SegmentView:
    """What the explorer shows for one frame and segment: the picture and its numbers."""

    png: bytes
    frame: int
    segment: int
    source: str
    share: float
    mean_residual: float
    mean_speed: float

    def summary(self) -> str:
        """One line: ``frame F, segment L: mean residual ... px, ...% of the pixels, ...``."""
        return (f"frame {self.frame}, segment {self.segment}: mean residual "
                f"{self.mean_residual:.3f} px, {self.share:.1%} of the pixels, mean speed "
                f"{self.mean_speed:.3f} px ({self.source})")


def render_segment_view(image: torch.Tensor, flow: torch.Tensor, masks: torch.Tensor,
                        fits: SegmentFits, index: int, segment: int, source: str = "",
                        credit: str | None = None) -> SegmentView:
    """Draw frame ``index`` of ``fits`` with segment ``segment`` highlighted, the flow, the
    segment's affine fit and its residual.

    Args:
        image: ``(3, H, W)`` in [0, 1]. flow: ``(2, H, W)`` pixels. masks: ``(L, H, W)``.
        fits: :func:`s3lib.analysis.fit_segments` of the frames (``index`` selects this frame
            in it).
        source: where the frame comes from (printed). credit: a line under the figure.
    """
    import matplotlib.pyplot as plt

    from ..flow import flow_to_rgb
    from ..viz import colorize_labels, figure_to_png, overlay, palette, show_flow, show_image

    num = masks.shape[0]
    hard = masks.argmax(0).numpy()
    inside = hard == segment
    img = image.permute(1, 2, 0).numpy().astype(np.float64)
    colour = palette(num)[segment]
    highlight = np.where(inside[..., None], 0.45 * img + 0.55 * colour, 0.35 * img)
    scale = max(float(flow.pow(2).sum(0).sqrt().max()), 1e-6)
    fitted = fits.fitted[index, segment]
    faded = np.full(inside.shape + (3,), 0.82)
    fit_rgb = flow_to_rgb(fitted, scale).astype(np.float64) / 255.0
    fit_rgb = np.where(inside[..., None], fit_rgb, 0.3 * fit_rgb + 0.7 * faded)
    res = np.where(inside, fits.residual[index, segment].numpy(), np.nan)
    r_top = float(np.nanpercentile(res, 99)) if inside.any() else 1.0

    fig, axes = plt.subplots(1, 5, figsize=(15, 2.6),
                             gridspec_kw={"width_ratios": [1, 1, 1, 1, 1.12], "wspace": 0.06,
                                          "left": 0.01, "right": 0.97, "bottom": 0.1,
                                          "top": 0.84})  # fixed layout: fast to redraw
    show_image(axes[0], highlight, f"segment {segment}: {fits.share[index, segment]:.0%} of the "
                                   f"pixels (soft), {inside.mean():.0%} (argmax)")
    show_image(axes[1], overlay(image, colorize_labels(hard, num), 0.55),
               f"all {num} segments (argmax)")
    show_flow(axes[2], flow, f"flow ({scale:.1f} px = full colour)", max_flow=scale)
    show_image(axes[3], fit_rgb, f"affine fit A_{segment} phi (same scale)")
    if inside.any() and not inside.all():
        axes[3].contour(inside.astype(float), levels=[0.5], colors="k", linewidths=0.7)
    cmap = plt.get_cmap("magma").with_extremes(bad="0.85")
    im = axes[4].imshow(res, cmap=cmap, vmin=0, vmax=max(r_top, 1e-3))
    axes[4].set_xticks([])
    axes[4].set_yticks([])
    axes[4].set_title(f"|f - A_{segment} phi| in segment {segment} (px)")
    if not inside.any():
        axes[4].text(0.5, 0.5, f"no pixel has segment {segment}\nas its argmax", ha="center",
                     va="center", fontsize=8, transform=axes[4].transAxes)
    fig.colorbar(im, ax=axes[4], shrink=0.8, pad=0.02, label="px")
    head = f"frame {index}: {source}" if source else f"frame {index}"
    fig.suptitle(head + (f"    {credit}" if credit else ""), fontsize=8, y=0.99)
    return SegmentView(png=figure_to_png(fig), frame=index, segment=segment, source=source,
                       share=float(fits.share[index, segment]),
                       mean_residual=float(fits.mean_residual[index, segment]),
                       mean_speed=float(fits.mean_speed[index, segment]))


@dataclass
class SegmentFitExplorer(Explorer):
    """Sliders ``frame`` (index into the pairs) and ``segment``; ``image`` (the picture of
    :func:`render_segment_view`), ``info`` (Label, :meth:`SegmentView.summary`), ``widget``.

    ``masks (N, L, H, W)`` are the network's soft segments of ``pairs.images`` and ``fits``
    their :func:`s3lib.analysis.fit_segments`, computed once when the explorer is built.
    """

    pairs: FlowPairs
    masks: torch.Tensor
    initial_frame: int
    initial_segment: int
    credit: str | None
    fits: SegmentFits = field(init=False, repr=False)
    frame: object = field(init=False)
    segment: object = field(init=False)
    image: object = field(init=False)
    info: object = field(init=False)
    widget: object = field(init=False)
    last: SegmentView | None = field(init=False, default=None)
    _cache: dict = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        import ipywidgets as w

        self.fits = fit_segments(self.pairs.flows, self.masks)
        style = {"description_width": "initial"}
        self.frame = w.IntSlider(value=self.initial_frame, min=0, max=len(self.pairs) - 1,
                                 description="frame", continuous_update=False, style=style)
        self.segment = w.IntSlider(value=self.initial_segment, min=0,
                                   max=self.masks.shape[1] - 1, description="segment",
                                   continuous_update=False, style=style)
        self._assemble((self.frame, self.segment))

    @property
    def num_frames(self) -> int:
        return len(self.pairs)

    @property
    def num_segments(self) -> int:
        return int(self.masks.shape[1])

    def view(self, frame: int, segment: int) -> SegmentView:
        """The picture and numbers for ``frame`` and ``segment`` (cached; checked)."""
        _check_index("frame", frame, self.num_frames)
        _check_index("segment", segment, self.num_segments)
        key = (int(frame), int(segment))
        if key not in self._cache:
            source = self.pairs.source[key[0]] if self.pairs.source else ""
            self._cache[key] = render_segment_view(
                self.pairs.images[key[0]], self.pairs.flows[key[0]], self.masks[key[0]],
                self.fits, key[0], key[1], source, self.credit)
        return self._cache[key]

    def update(self) -> str:
        """Redraw for the current slider values; returns the summary line."""
        self.last = self.view(self.frame.value, self.segment.value)
        self.image.value = self.last.png
        self.info.value = self.last.summary()
        return self.info.value

    def show(self, frame: int, segment: int) -> str:
        """Set both sliders (one redraw) and return the summary line they produce.

        Values outside the sliders' ranges raise ``ValueError`` (a slider would clamp them).
        """
        _check_index("frame", frame, self.num_frames)
        _check_index("segment", segment, self.num_segments)
        return self._set_controls((self.frame, int(frame)), (self.segment, int(segment)))


def _check_index(name: str, value, count: int) -> None:
    if (not isinstance(value, (int, np.integer)) or isinstance(value, bool)
            or not 0 <= value < count):
        raise ValueError(f"{name}: expected an int in [0, {count - 1}], got {value!r}")


def segment_fit_explorer(model, pairs: FlowPairs, frame: int = 0, segment: int = 0,
                         masks: torch.Tensor | None = None,
                         credit: str | None = None) -> SegmentFitExplorer:
    """Build the segment-fit explorer of ``05_sintel.ipynb``.

    Args:
        model: a segmentation network (``images -> logits (N, L, H, W)``), used once to predict
            the soft segments of ``pairs.images``; may be ``None`` when ``masks`` is given.
        pairs: the frames to explore (images, flows, and ``source`` names for the label).
        frame, segment: the initial slider values.
        masks: ``(N, L, H, W)`` soft segments instead of the model's.
        credit: a line printed with the picture (e.g. the clip's licence).
    """
    if not isinstance(pairs, FlowPairs) or len(pairs) < 1:
        raise ValueError(f"pairs: expected FlowPairs with at least one frame, got {pairs!r:.80}")
    if masks is None:
        if model is None:
            raise ValueError("give a model or masks")
        from ..models import predict_masks

        masks = predict_masks(model, pairs.images)
    masks = masks.detach().float().cpu()
    if masks.ndim != 4 or masks.shape[0] != len(pairs) or masks.shape[-2:] != pairs.size \
            or masks.shape[1] < 1:
        raise ValueError(f"masks: expected ({len(pairs)}, L, {pairs.size[0]}, {pairs.size[1]}), "
                         f"got {tuple(masks.shape)}")
    _check_index("frame", frame, len(pairs))
    _check_index("segment", segment, masks.shape[1])
    return SegmentFitExplorer(pairs=pairs, masks=masks, initial_frame=int(frame),
                              initial_segment=int(segment), credit=credit)


__all__ = ["SegmentFitExplorer", "SegmentView", "render_segment_view", "segment_fit_explorer"]
