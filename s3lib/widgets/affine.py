"""The free-mask explorer of ``notebooks/02_affine_motion_loss.ipynb``.

One synthetic flow field is segmented by gradient descent on free mask logits with the affine
motion loss; the reader picks the number of segments, the robust function, the dense noise and
the share of outlier pixels, and sees the flow the loss is given, the segments found, the loss
curve and the matched mIoU against the true regions (the run is
:func:`s3lib.analysis.run_free_masks`, the flow :func:`s3lib.analysis.free_mask_flow`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ._controls import Explorer
from ..analysis import free_mask_flow, run_free_masks
from ..freemask import FreeMaskResult


@dataclass
class FreeMaskExplorer(Explorer):
    """Controls ``segments`` (IntSlider), ``robust`` (Dropdown), ``noise`` (FloatSlider, px of
    dense noise), ``outliers`` (FloatSlider, share of the pixels given gross errors); ``image``
    (flow, truth, masks and loss curve), ``info`` (Label), ``widget`` (everything)."""

    size: int
    steps: int
    seed: int
    segments: object = field(init=False)
    robust: object = field(init=False)
    noise: object = field(init=False)
    outliers: object = field(init=False)
    image: object = field(init=False)
    info: object = field(init=False)
    widget: object = field(init=False)
    last: FreeMaskResult | None = field(init=False, default=None)
    _cache: dict = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        import ipywidgets as w

        style = {"description_width": "initial"}
        self.segments = w.IntSlider(value=3, min=1, max=6, description="segments L",
                                    continuous_update=False, style=style)
        self.robust = w.Dropdown(options=["charbonnier", "l1", "l2"], value="charbonnier",
                                 description="robust")
        self.noise = w.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.1, description="noise (px)",
                                   continuous_update=False, style=style)
        self.outliers = w.FloatSlider(value=0.0, min=0.0, max=0.2, step=0.01,
                                      description="outliers (share)", readout_format=".2f",
                                      continuous_update=False, style=style)
        self._assemble((self.segments, self.robust), (self.noise, self.outliers))

    def update(self) -> str:
        """Run (or reuse) the optimisation for the current controls and redraw."""
        key = (self.segments.value, self.robust.value, round(self.noise.value, 2),
               round(self.outliers.value, 2))
        if key not in self._cache:
            result, labels = run_free_masks(self.size, key[0], key[1], key[2], self.steps,
                                            self.seed, stride=4, restarts=2, outliers=key[3])
            flow = free_mask_flow(self.size, key[2], key[3], self.seed)[0]
            self._cache[key] = (result, labels, self._draw(result, labels, flow, key))
        self.last, labels, png = self._cache[key]
        self.image.value = png
        self.info.value = (f"L={key[0]}, {key[1]}, noise {key[2]:.1f} px, outliers {key[3]:.0%}: "
                           f"matched mIoU {self.last.mious[-1]:.3f}, final loss "
                           f"{self.last.losses[-1]:.4f} after {self.steps} steps")
        return self.info.value

    def _draw(self, result: FreeMaskResult, labels: torch.Tensor, flow: torch.Tensor,
              key) -> bytes:
        import matplotlib.pyplot as plt

        from ..viz import colorize_labels, colorize_masks, figure_to_png, show_flow, show_image

        clean = free_mask_flow(self.size, 0.0, 0.0, self.seed)[0]
        fig, axes = plt.subplots(1, 4, figsize=(13, 2.9), layout="constrained",
                                 gridspec_kw={"width_ratios": [1, 1, 1, 1.4]})
        top = show_flow(axes[0], flow, None, max_flow=float(clean.norm(dim=0).max()))
        axes[0].set_title(f"flow given to the loss\n(saturated at {top:.1f} px)", fontsize=9)
        show_image(axes[1], colorize_labels(labels), "true regions")
        show_image(axes[2], colorize_masks(result.masks), f"{key[0]} soft segments found")
        axes[3].plot(result.steps, result.losses, color="tab:blue")
        axes[3].set(title="affine loss and mIoU", xlabel="step", ylabel=f"loss ({key[1]})",
                    yscale="log")
        twin = axes[3].twinx()
        twin.plot(result.steps, result.mious, color="tab:green")
        twin.set_ylabel("matched mIoU", color="tab:green")
        twin.set_ylim(0, 1.02)
        return figure_to_png(fig)

    def show(self, segments: int, robust: str = "charbonnier", noise: float = 0.0,
             outliers: float = 0.0) -> str:
        """Set the controls (one run for the four changes) and return the summary line.

        Raises ``ValueError`` for a value the controls cannot take (a slider would clamp it)."""
        if isinstance(segments, bool) or not isinstance(segments, int) \
                or not self.segments.min <= segments <= self.segments.max:
            raise ValueError(f"segments: expected an int in {self.segments.min}.."
                             f"{self.segments.max}, got {segments!r}")
        if robust not in self.robust.options:
            raise ValueError(f"robust: expected one of {list(self.robust.options)}, got {robust!r}")
        for name, value, control in (("noise", noise, self.noise),
                                     ("outliers", outliers, self.outliers)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not control.min <= value <= control.max:
                raise ValueError(f"{name}: expected a number in {control.min}..{control.max}, "
                                 f"got {value!r}")
        return self._set_controls((self.segments, segments), (self.robust, robust),
                                  (self.noise, noise), (self.outliers, outliers))


def freemask_explorer(size: int = 48, steps: int = 200, seed: int = 2) -> FreeMaskExplorer:
    """Build the free-mask explorer of ``02_affine_motion_loss.ipynb``: the scene
    ``piecewise_affine_flow(size, 3, seed)``, ``steps`` Adam steps per run, smooth masks
    (``stride=4``), the best of two restarts by the loss; outlier vectors up to
    :data:`s3lib.analysis.OUTLIER_SIZE` px."""
    if size < 8 or steps < 1:
        raise ValueError(f"size >= 8 and steps >= 1 expected, got {size}, {steps}")
    return FreeMaskExplorer(size=size, steps=steps, seed=seed)
