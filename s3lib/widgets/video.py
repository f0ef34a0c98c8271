"""The video explorer of ``notebooks/06_real_video_entropy.ipynb``: bins, segments, frame, range.

For one frame of a prepare-video cache (:mod:`s3lib.data.video`) and its cached forward flow,
the explorer shows the hard segments (argmax) of trained networks next to a reference that
*knows the flow*, ``segments`` equal-count **speed bands** (:func:`s3lib.analysis.speed_bands`),
and below each segmentation its per-segment speed histograms with ``bins`` bins, stacked, as the
entropy loss builds them (:func:`s3lib.losses.speed_histograms`). The line under the picture
scores every segmentation, plus one segment for the whole frame, with both motion losses
(:func:`s3lib.analysis.segmentation_scores`). ``max speed``: where the last bin sits, ``0`` for
each frame's largest speed (what training does by default), or a fixed speed in pixels
(``s3 train --max-speed``): on an almost still frame the first stretches a fraction of a pixel
of noise over all the bins, the second puts it into the first bins.

Why speed bands: for any hard segmentation ``z`` (``z_u`` the segment of pixel ``u``),
``H(V | z) = H(V) - I(V; z) >= H(V) - H(z) >= H(V) - log L``, and equal-count bands of the
speed reach ``H(z) = log L`` with ``z`` a
function of the speed, so they come close to the lowest entropy loss any ``L`` hard segments of
that frame can have. A network sees only the image, never the flow; the bands show how far the
loss could go, and that it keeps falling as ``L`` grows whether or not the bands are objects.

The scores (:func:`s3lib.analysis.speed_bands`, :func:`s3lib.analysis.segmentation_scores`,
:func:`s3lib.analysis.segment_speed_shares`) are also what the notebook's held-out comparison
uses, so the widget's numbers and the table's are computed the same way.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ._controls import Explorer
from ..analysis import (check_flow, one_hot, segment_speed_shares, segmentation_scores,
                        speed_bands)
from ..data.video import VideoCache, load_cache, split_pairs
from ..losses import entropy_motion_loss, speed_histograms

MAX_BINS = 64
MAX_SEGMENTS = 10
MAX_SPEED = 16.0
"""The largest fixed speed of the last bin the explorer offers (px)."""
BANDS = "speed bands"
ONE = "one segment"


# ----------------------------------------------------------------------------- frames
def _crop4(h: int, w: int) -> tuple[slice, slice]:
    """The centre window with sides cut to multiples of 4 (as :mod:`s3lib.data.pairs` does)."""
    h4, w4 = h - h % 4, w - w % 4
    top, left = (h - h4) // 2, (w - w4) // 2
    return slice(top, top + h4), slice(left, left + w4)


def frame_status(cache: VideoCache, t: int) -> str:
    """Where frame ``t`` of ``cache`` stands: ``held-out``, ``training``, ``between training
    and held-out`` (its pair straddles the split), or ``last frame of shot k`` (no pair: the
    next frame is across a cut, or the clip ends)."""
    pairs = np.where(cache.pairs[:, 0] == t)[0]
    if len(pairs) == 0:
        k = int(np.searchsorted(cache.shots[:, 1], t, side="right"))
        return f"last frame of shot {k}"
    train, heldout = split_pairs(cache.pairs, cache.shots)
    if pairs[0] in heldout:
        return "held-out"
    if pairs[0] in train:
        return "training"
    return "between training and held-out"


@dataclass
class VideoFrameView:
    """What the explorer shows for one setting: ``entropy[name]`` / ``affine[name]`` /
    ``explained[name]`` for every segmentation (the networks, ``"speed bands"``,
    ``"one segment"``; empty when the frame has no flow pair); ``max_speed`` the setting (0:
    the frame's largest speed) and ``top`` the speed of the last bin it gives (px; ``None``
    without a pair)."""

    png: bytes
    frame: int
    bins: int
    segments: int
    status: str
    entropy: dict[str, float]
    affine: dict[str, float]
    explained: dict[str, float]
    speed_entropy: float | None
    max_speed: float = 0.0
    top: float | None = None

    def summary(self) -> str:
        """One line: the setting, where the frame stands, both losses of every segmentation."""
        head = f"frame {self.frame}, bins {self.bins}, segments {self.segments}: {self.status}"
        if not self.entropy:
            return head + "; no flow pair (the next frame is across a cut or past the end)"

        def fmt(d: dict[str, float]) -> str:
            return ", ".join(f"{k} {v:.4f}" for k, v in d.items())

        scale = ("the frame's largest speed" if not self.max_speed else "fixed")
        return (f"{head}; bins to {self.top:.2f} px ({scale}); entropy loss (nats) "
                f"{fmt(self.entropy)}; affine loss (px) {fmt(self.affine)}")


def render_video_frame(image: np.ndarray, flow: torch.Tensor | None,
                       model_labels: dict[str, torch.Tensor], num_model_segments: int,
                       bins: int, segments: int, frame: int, status: str,
                       next_image: np.ndarray | None = None,
                       max_speed: float = 0.0) -> VideoFrameView:
    """Draw a frame, its flow, the networks' segments and ``segments`` speed bands, with their
    stacked per-segment speed histograms (``bins`` bins), and score them.

    Args:
        image: ``(H, W, 3)`` uint8 frame. flow: ``(2, H, W)`` forward flow (px), or ``None``
            when the frame has no pair (then only the frame and the networks' segments).
        model_labels: name -> hard segments ``(H, W)`` int64 in ``0..num_model_segments-1``.
        bins: histogram bins (2..64). segments: speed bands (1..10). frame, status: for titles.
        next_image: the frame after ``image``, drawn when ``flow`` is ``None`` (across a cut).
        max_speed: speed of the last bin (px, up to 16); 0: the frame's largest speed (the
            entropy loss's default, :func:`s3lib.losses.speed_histograms`).
    """
    import matplotlib.pyplot as plt

    from ..viz import figure_to_png, overlay, palette, show_flow, show_image

    _check_bins(bins)
    _check_segments(segments)
    _check_max_speed(max_speed)
    names = list(model_labels)
    columns = [(n, model_labels[n], num_model_segments) for n in names]
    entropy, affine, explained, speed_h = {}, {}, {}, None
    hists = {}
    if flow is not None:
        flow = check_flow(flow)
        columns.append((f"{segments} {BANDS}", speed_bands(flow, segments), segments))
        one = torch.zeros(flow.shape[1:], dtype=torch.int64)
        for name, lab, num in columns + [(ONE, one, 1)]:
            s = segmentation_scores(lab, flow, num, bins)
            entropy[name], affine[name], explained[name] = s["entropy"], s["affine"], s["explained"]
            hists[name] = segment_speed_shares(lab, flow, num, bins)
            if max_speed:  # the same histograms, the last bin at a fixed speed
                masks = one_hot(lab, num)
                entropy[name] = float(entropy_motion_loss(masks, flow[None], bins, max_speed))
                hist, _ = speed_histograms(masks, flow[None], bins, max_speed)
                hists[name] = ((hist[0].double() / lab.numel()).numpy(), float(max_speed))
        speed_h = entropy[ONE]
    ncol = 3 + len(names)  # frame | flow | networks | speed bands
    fig, axes = plt.subplots(2, ncol, figsize=(2.55 * ncol, 3.7),
                             gridspec_kw={"hspace": 0.45, "wspace": 0.3, "left": 0.03,
                                          "right": 0.99, "top": 0.84, "bottom": 0.13})
    show_image(axes[0, 0], image, f"frame {frame} ({status})")
    if flow is not None:
        show_flow(axes[0, 1], flow, "DIS flow (cached)")
        speed = flow.norm(dim=0).numpy()
        im = axes[1, 0].imshow(speed, cmap="magma", vmin=0)
        axes[1, 0].set_title("speed |f| (px)")
        axes[1, 0].set_xticks([])
        axes[1, 0].set_yticks([])
        fig.colorbar(im, ax=axes[1, 0], shrink=0.8, pad=0.02, label="px")
        h1, top = hists[ONE]
        centres = np.linspace(0.0, top, bins)
        width = centres[1] - centres[0]
        edges = np.concatenate([centres - width / 2, centres[-1:] + width / 2])
        axes[1, 1].stairs(h1[0], edges, fill=True, color="0.55")
        axes[1, 1].set_title(f"one segment: H(V) = {entropy[ONE]:.3f}", fontsize=9)
        axes[1, 1].set_xlabel("speed (px)")
        axes[1, 1].set_ylabel("share of pixels")
        ymax = float(h1[0].max()) * 1.08
        axes[1, 1].set_ylim(0, ymax)
        for j, (name, lab, num) in enumerate(columns):
            ax = axes[1, 2 + j]
            h, _ = hists[name]
            bottom = np.zeros(bins)
            colours = palette(num)
            for l in range(num):
                ax.stairs(bottom + h[l], edges, baseline=bottom, fill=True, color=colours[l])
                bottom = bottom + h[l]
            ax.set_ylim(0, ymax)
            ax.set_xlabel("speed (px)")
            ax.set_title(f"H(V|z) {entropy[name]:.3f}, affine {affine[name]:.3f}", fontsize=9)
        fig.suptitle(f"{bins} bins over [0, {top:.2f}] px "
                     f"({'fixed' if max_speed else 'the frame' + chr(39) + 's largest speed'}). "
                     f"No {segments} segments, soft or "
                     f"hard, can score below H(V) - log {segments} = "
                     f"{speed_h - math.log(segments):.3f} nats", fontsize=9)
    else:
        if next_image is not None:
            show_image(axes[0, 1], next_image, f"frame {frame + 1} (after the cut)")
        else:
            axes[0, 1].set_axis_off()
        axes[0, -1].set_axis_off()
        for ax in axes[1]:
            ax.set_axis_off()
        axes[1, 0].text(0.0, 0.5, "no flow pair: the next frame is across a cut (or past the "
                        "end),\nso there is no flow and no loss to compute",
                        transform=axes[1, 0].transAxes, fontsize=9, va="center")
    for j, (name, lab, num) in enumerate(columns):
        share = np.bincount(lab.flatten().numpy(), minlength=num) / lab.numel()
        show_image(axes[0, 2 + j], overlay(image, lab.numpy(), 0.55),
                   f"{name}\n(largest segment {share.max():.0%})")
    return VideoFrameView(png=figure_to_png(fig), frame=int(frame), bins=int(bins),
                          segments=int(segments), status=status, entropy=entropy, affine=affine,
                          explained=explained, speed_entropy=speed_h,
                          max_speed=float(max_speed), top=hists[ONE][1] if hists else None)


# ----------------------------------------------------------------------------- explorer
@dataclass
class VideoExplorer(Explorer):
    """Sliders ``bins`` (histogram bins), ``segments`` (speed bands of the reference),
    ``frame`` (any frame of the cache) and ``max_speed`` (the last bin's speed in px; 0: each
    frame's largest); ``image`` (Image), ``info`` (Label), ``widget`` (VBox).

    ``models``: name -> :class:`~s3lib.models.SegmentationNet` (all with the same number of
    segments), applied to the frame (centre-cropped to multiples of 4, as in training).
    """

    cache: VideoCache
    models: dict
    initial_bins: int
    initial_segments: int
    initial_frame: int
    initial_max_speed: float = 0.0
    bins: object = field(init=False)
    segments: object = field(init=False)
    frame: object = field(init=False)
    max_speed: object = field(init=False)
    image: object = field(init=False)
    info: object = field(init=False)
    widget: object = field(init=False)
    last: VideoFrameView | None = field(init=False, default=None)
    _labels: dict = field(init=False, default_factory=dict, repr=False)
    _views: dict = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        import ipywidgets as w

        nums = {int(m.num_segments) for m in self.models.values()}
        if len(nums) != 1:
            raise ValueError(f"models: expected networks with one number of segments, got {nums}")
        self.num_model_segments = nums.pop()
        self.window = _crop4(*self.cache.frames.shape[1:3])
        style = {"description_width": "initial"}
        self.bins = w.IntSlider(value=self.initial_bins, min=2, max=MAX_BINS, description="bins",
                                continuous_update=False, style=style)
        self.segments = w.IntSlider(value=self.initial_segments, min=1, max=MAX_SEGMENTS,
                                    description="segments", continuous_update=False, style=style)
        self.frame = w.IntSlider(value=self.initial_frame, min=0,
                                 max=len(self.cache.frames) - 1, description="frame",
                                 continuous_update=False, style=style)
        self.max_speed = w.FloatSlider(value=self.initial_max_speed, min=0.0, max=MAX_SPEED,
                                       step=0.5, description="max speed (0: per frame)",
                                       continuous_update=False, style=style)
        self._assemble((self.bins, self.segments, self.frame), (self.max_speed,))

    def pair(self, t: int) -> tuple[np.ndarray, torch.Tensor | None]:
        """Frame ``t`` as ``(H, W, 3)`` uint8 and its cached forward flow ``(2, H, W)`` float32
        (``None`` when the frame has no pair), both centre-cropped to multiples of 4."""
        image = np.asarray(self.cache.frames[t][self.window])
        p = np.where(self.cache.pairs[:, 0] == t)[0]
        if len(p) == 0:
            return image, None
        flow = np.asarray(self.cache.flows[p[0]][self.window], dtype=np.float32)
        return image, torch.from_numpy(flow).permute(2, 0, 1).contiguous()

    def model_labels(self, t: int) -> dict[str, torch.Tensor]:
        """Each network's hard segments ``(H, W)`` of frame ``t`` (cached)."""
        if t not in self._labels:
            from ..models import predict_masks

            frame = torch.from_numpy(np.array(self.pair(t)[0]))  # a writable copy
            image = frame.permute(2, 0, 1)[None].float() / 255.0
            self._labels[t] = {name: predict_masks(m, image)[0].argmax(0)
                               for name, m in self.models.items()}
        return self._labels[t]

    def update(self) -> str:
        """Redraw for the current control values; returns the summary line."""
        key = (int(self.bins.value), int(self.segments.value), int(self.frame.value),
               float(self.max_speed.value))
        if key not in self._views:
            image, flow = self.pair(key[2])
            after = (np.asarray(self.cache.frames[key[2] + 1][self.window])
                     if flow is None and key[2] + 1 < len(self.cache.frames) else None)
            self._views[key] = render_video_frame(
                image, flow, self.model_labels(key[2]), self.num_model_segments, key[0], key[1],
                key[2], frame_status(self.cache, key[2]), after, key[3])
        self.last = self._views[key]
        self.image.value = self.last.png
        self.info.value = self.last.summary()
        return self.info.value

    def show(self, bins: int | None = None, segments: int | None = None,
             frame: int | None = None, max_speed: float | None = None) -> str:
        """Set the controls (as a reader would; ``None`` keeps a control) with one redraw and
        return the summary line. Values outside the sliders' ranges raise ``ValueError``."""
        if bins is not None:
            _check_bins(bins)
        if segments is not None:
            _check_segments(segments)
        if frame is not None:
            _check_frame(frame, len(self.cache.frames))
        if max_speed is not None:
            _check_max_speed(max_speed)
        moves = [(c, int(v)) for c, v in ((self.bins, bins), (self.segments, segments),
                                          (self.frame, frame)) if v is not None]
        if max_speed is not None:
            moves.append((self.max_speed, float(max_speed)))
        return self._set_controls(*moves)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_bins(bins) -> None:
    if not _is_int(bins) or not 2 <= bins <= MAX_BINS:
        raise ValueError(f"bins: expected an int in [2, {MAX_BINS}], got {bins!r}")


def _check_segments(segments) -> None:
    if not _is_int(segments) or not 1 <= segments <= MAX_SEGMENTS:
        raise ValueError(f"segments: expected an int in [1, {MAX_SEGMENTS}], got {segments!r}")


def _check_max_speed(max_speed) -> None:
    if (isinstance(max_speed, bool) or not isinstance(max_speed, (int, float, np.floating))
            or not 0 <= max_speed <= MAX_SPEED or (max_speed * 2) % 1):
        raise ValueError(f"max_speed: expected 0 (each frame's largest speed) or a speed in "
                         f"(0, {MAX_SPEED:g}] px in steps of 0.5, got {max_speed!r}")


def _check_frame(frame, num_frames: int) -> None:
    if not _is_int(frame) or not 0 <= frame < num_frames:
        raise ValueError(f"frame: expected an int in [0, {num_frames - 1}], got {frame!r}")


def video_explorer(cache: str | os.PathLike | VideoCache, models: dict, bins: int = 32,
                   segments: int = 5, frame: int | None = None, max_speed: float = 0.0
                   ) -> VideoExplorer:
    """Build the video explorer of ``06_real_video_entropy.ipynb``.

    Args:
        cache: a prepare-video cache folder (or a loaded :class:`~s3lib.data.video.VideoCache`).
        models: name -> network, or name -> checkpoint path (loaded with
            :func:`s3lib.models.load_checkpoint`); at least one, all with the same ``L``.
        bins: initial histogram bins (2..64; the entropy loss trains with 32).
        segments: initial number of speed bands (1..10).
        frame: initial frame (default: the first held-out frame).
        max_speed: initial speed of the last bin (px, 0..16 in steps of 0.5; 0: each frame's
            largest speed, the entropy loss's default).
    """
    from ..models import load_checkpoint

    if not isinstance(cache, VideoCache):
        cache = load_cache(Path(cache))
    if not isinstance(models, dict) or not models:
        raise ValueError("models: expected a dict name -> network (or checkpoint path), not empty")
    nets = {}
    for name, m in models.items():
        nets[str(name)] = load_checkpoint(m)[0] if isinstance(m, (str, os.PathLike)) else m
        if not isinstance(nets[str(name)], torch.nn.Module):
            raise ValueError(f"models[{name!r}]: expected a network or a checkpoint path")
    _check_bins(bins)
    _check_segments(segments)
    if frame is None:
        heldout = split_pairs(cache.pairs, cache.shots)[1]
        frame = int(cache.pairs[heldout[0], 0]) if len(heldout) else 0
    _check_frame(frame, len(cache.frames))
    _check_max_speed(max_speed)
    return VideoExplorer(cache=cache, models=nets, initial_bins=int(bins),
                         initial_segments=int(segments), initial_frame=int(frame),
                         initial_max_speed=float(max_speed))


__all__ = ["VideoExplorer", "VideoFrameView", "frame_status", "render_video_frame",
           "video_explorer"]
