"""The free-mask explorer of ``notebooks/02_affine_motion_loss.ipynb``.

One synthetic flow field is segmented by gradient descent on free mask logits with the affine
motion loss; the reader picks the number of segments, the robust function and the noise, and
sees the segments found, the loss curve and the matched mIoU against the true regions (the run
is :func:`s3lib.analysis.run_free_masks`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ._controls import Explorer
from ..analysis import run_free_masks
from ..freemask import FreeMaskResult


@dataclass
class FreeMaskExplorer(Explorer):
    """Controls ``segments`` (IntSlider), ``robust`` (Dropdown), ``noise`` (FloatSlider);
    ``image`` (masks, truth and loss curve), ``info`` (Label), ``widget`` (everything)."""

    size: int
    steps: int
    seed: int
    segments: object = field(init=False)
    robust: object = field(init=False)
    noise: object = field(init=False)
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
        self._assemble((self.segments, self.robust, self.noise))

    def update(self) -> str:
        """Run (or reuse) the optimisation for the current controls and redraw."""
        key = (self.segments.value, self.robust.value, round(self.noise.value, 2))
        if key not in self._cache:
            result, labels = run_free_masks(self.size, key[0], key[1], key[2], self.steps,
                                            self.seed, stride=4, restarts=2)
            self._cache[key] = (result, labels, self._draw(result, labels, key))
        self.last, labels, png = self._cache[key]
        self.image.value = png
        self.info.value = (f"L={key[0]}, {key[1]}, noise {key[2]:.1f} px: matched mIoU "
                           f"{self.last.mious[-1]:.3f}, final loss {self.last.losses[-1]:.4f} "
                           f"after {self.steps} steps")
        return self.info.value

    @staticmethod
    def _draw(result: FreeMaskResult, labels: torch.Tensor, key) -> bytes:
        import matplotlib.pyplot as plt

        from ..viz import colorize_labels, colorize_masks, figure_to_png, show_image

        fig, axes = plt.subplots(1, 3, figsize=(10, 2.9), layout="constrained")
        show_image(axes[0], colorize_labels(labels), "true regions")
        show_image(axes[1], colorize_masks(result.masks), f"{key[0]} soft segments found")
        axes[2].plot(result.steps, result.losses, color="tab:blue")
        axes[2].set(title="affine loss", xlabel="step", ylabel=f"loss ({key[1]})", yscale="log")
        twin = axes[2].twinx()
        twin.plot(result.steps, result.mious, color="tab:green")
        twin.set_ylabel("matched mIoU", color="tab:green")
        twin.set_ylim(0, 1.02)
        return figure_to_png(fig)

    def show(self, segments: int, robust: str = "charbonnier", noise: float = 0.0) -> str:
        """Set the controls (one run for the three changes) and return the summary line."""
        return self._set_controls((self.segments, segments), (self.robust, robust),
                                  (self.noise, noise))


def freemask_explorer(size: int = 48, steps: int = 200, seed: int = 2) -> FreeMaskExplorer:
    """Build the free-mask explorer of ``02_affine_motion_loss.ipynb``."""
    if size < 8 or steps < 1:
        raise ValueError(f"size >= 8 and steps >= 1 expected, got {size}, {steps}")
    return FreeMaskExplorer(size=size, steps=steps, seed=seed)
