"""The cube explorer of ``notebooks/04_cube_toy.ipynb``: scrub through a held-out sequence.

For each frame pair of a cube sequence (:func:`s3lib.data.pairs.cube_pairs`, exact flow and face
labels) the explorer shows what a trained network (:class:`s3lib.models.SegmentationNet`) makes
of it: the image, the true faces, the predicted soft segments, the exact flow, the flow rebuilt
from the segments (:func:`s3lib.losses.affine_reconstruction`: one affine motion per segment,
fitted by weighted least squares, recombined by the masks) and, for the chosen segment ``l``, the
residual ``|f_u - A_l phi_u|`` of its affine motion at every pixel (inside the segment's outline
it is what the loss pays; outside it shows where that motion would be wrong).

The numbers under the picture (:func:`s3lib.analysis.frame_scores`) are the frame's matched mIoU
(hard segments, argmax, against the faces and the background), the share of the pixels the
segment wins, and its mask-weighted mean residual in pixels, the cost by which
:func:`s3lib.train.reseed_dead_segments` finds the worst-fitting segment. Every fit uses the
ridge of the training loss (``eps``, by default :data:`s3lib.motion.DEFAULT_EPS`; notebook 04,
section 5.5).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .. import motion
from ._controls import Explorer
from ..analysis import CubeScores, frame_scores
from ..data.cube import NUM_FACES
from ..data.pairs import FlowPairs
from ..losses import affine_reconstruction, fit_affine
from ..models import predict_masks
from ..motion import DEFAULT_EPS


def render_cube_frame(image: torch.Tensor, flow: torch.Tensor, labels: torch.Tensor,
                      masks: torch.Tensor, segment: int, max_flow: float,
                      title: str = "", eps: float = DEFAULT_EPS) -> bytes:
    """The explorer's picture (PNG bytes) of one frame: image, true faces, soft segments (the
    chosen one outlined), exact flow, rebuilt flow (both on the colour wheel scaled to
    ``max_flow`` px) and the chosen segment's residual map with its colour bar (px); ``eps``:
    the ridge of the affine fits."""
    import matplotlib.pyplot as plt

    from ..viz import colorize_labels, colorize_masks, figure_to_png, show_flow, show_image

    recon = affine_reconstruction(flow[None], masks[None], eps)[0]
    with torch.no_grad():
        params = fit_affine(flow[None], masks[None], eps)  # (1, L, 2, 3)
        rho = motion.segment_residuals(params, flow[None])[0, segment]  # (H, W) px
    outline = (masks.argmax(0) == segment).numpy().astype(float)
    fig, axes = plt.subplots(1, 6, figsize=(14.5, 2.75),
                             gridspec_kw={"width_ratios": [1, 1, 1, 1, 1, 1.25], "wspace": 0.08,
                                          "left": 0.01, "right": 0.97, "bottom": 0.02,
                                          "top": 0.84})  # fixed layout: fast to redraw
    show_image(axes[0], image, "image")
    show_image(axes[1], colorize_labels(labels, NUM_FACES + 1), "true faces (0 = background)")
    show_image(axes[2], colorize_masks(masks), f"{masks.shape[0]} predicted segments")
    for ax in (axes[2], axes[5]):
        if outline.any():
            ax.contour(outline, levels=[0.5], colors="white", linewidths=1.2)
    show_flow(axes[3], flow, "exact flow", max_flow=max_flow)
    show_flow(axes[4], recon, "rebuilt from the segments", max_flow=max_flow)
    im = axes[5].imshow(rho.numpy(), cmap="magma", vmin=0, vmax=max_flow / 2)
    axes[5].set_xticks([])
    axes[5].set_yticks([])
    axes[5].set_title(f"segment {segment}: |f - A phi| (px)")
    fig.colorbar(im, ax=axes[5], shrink=0.9, pad=0.03, label="px")
    if title:
        fig.suptitle(title, fontsize=10, y=0.99)
    return figure_to_png(fig)


@dataclass
class CubeExplorer(Explorer):
    """Controls ``frame`` and ``segment`` (IntSliders); ``image`` (the picture), ``info``
    (Label: :meth:`s3lib.analysis.CubeScores.summary`), ``widget`` (everything).
    ``masks (N, L, H, W)``: the network's soft segments of every pair, computed once; ``eps``:
    the ridge of the affine fits; ``last``: the scores shown."""

    pairs: FlowPairs
    masks: torch.Tensor
    eps: float = DEFAULT_EPS
    frame: object = field(init=False)
    segment: object = field(init=False)
    image: object = field(init=False)
    info: object = field(init=False)
    widget: object = field(init=False)
    last: CubeScores | None = field(init=False, default=None)
    max_flow: float = field(init=False)
    _cache: dict = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        import ipywidgets as w

        self.max_flow = max(float(self.pairs.flows.norm(dim=1).max()), 1e-6)
        self.frame = w.IntSlider(value=0, min=0, max=len(self.pairs) - 1, description="frame",
                                 continuous_update=False)
        self.segment = w.IntSlider(value=0, min=0, max=self.masks.shape[1] - 1,
                                   description="segment", continuous_update=False)
        self._assemble((self.frame, self.segment))

    def update(self) -> str:
        """Score and draw (or reuse) the current frame and segment."""
        t, l = int(self.frame.value), int(self.segment.value)
        if (t, l) not in self._cache:
            flow, labels, masks = self.pairs.flows[t], self.pairs.labels[t], self.masks[t]
            scores = frame_scores(flow, labels, masks, l, frame=t, eps=self.eps)
            source = self.pairs.source[t] if self.pairs.source else f"pair {t}"
            png = render_cube_frame(self.pairs.images[t], flow, labels, masks, l, self.max_flow,
                                    f"{source}: {scores.summary()}", eps=self.eps)
            self._cache[t, l] = (scores, png)
        self.last, self.image.value = self._cache[t, l]
        self.info.value = self.last.summary()
        return self.info.value

    def show(self, frame: int, segment: int = 0) -> str:
        """Set both controls (one redraw) and return the summary line."""
        n, num = len(self.pairs), self.masks.shape[1]
        if not isinstance(frame, int) or isinstance(frame, bool) or not 0 <= frame < n:
            raise ValueError(f"frame: expected an int in 0..{n - 1}, got {frame!r}")
        if not isinstance(segment, int) or isinstance(segment, bool) or not 0 <= segment < num:
            raise ValueError(f"segment: expected an int in 0..{num - 1}, got {segment!r}")
        return self._set_controls((self.frame, frame), (self.segment, segment))


def cube_explorer(model: torch.nn.Module, pairs: FlowPairs, frame: int = 0,
                  segment: int = 0, eps: float = DEFAULT_EPS) -> CubeExplorer:
    """Build the cube explorer of ``04_cube_toy.ipynb``.

    Args:
        model: a segmentation network (``images (B, 3, H, W) -> logits (B, L, H, W)``), e.g.
            from :func:`s3lib.models.load_checkpoint`; its soft segments of every pair are
            computed once (:func:`s3lib.models.predict_masks`, eval mode).
        pairs: cube frame pairs with labels, e.g. one held-out sequence,
            ``cube_pairs((HELDOUT_SEEDS[0],), size, frames)``.
        frame, segment: the controls' first values.
        eps: the ridge of the affine fits: the one the network was trained with
            (``TrainConfig.eps``; 1e-4 for checkpoints made before the setting existed).
    """
    if not isinstance(pairs, FlowPairs) or pairs.labels is None or len(pairs) == 0:
        raise ValueError("pairs: expected non-empty FlowPairs with face labels (cube_pairs)")
    masks = predict_masks(model, pairs.images)
    explorer = CubeExplorer(pairs=pairs, masks=masks, eps=eps)
    if (frame, segment) != (0, 0):
        explorer.show(frame, segment)
    return explorer


__all__ = ["CubeExplorer", "cube_explorer", "render_cube_frame"]
