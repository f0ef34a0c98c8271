"""The boundary explorer of ``notebooks/01_grouping_model.ipynb``.

A flow field has two regions, left and right of a vertical boundary, each with its own affine
motion. The reader moves a *proposed* boundary (and its softness, and the noise) and sees the
log-likelihood of the segmentation with the motion parameters maximised out (eq. 2) and
integrated out (eq. 1), for every boundary position at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ._controls import QuietControls
from ..grouping import homogeneous_coordinates, log_evidence, max_log_likelihood


def two_motion_flow(size: int = 48, boundary: int = 28, noise: float = 0.0, seed: int = 0
                    ) -> torch.Tensor:
    """``(2, size, size)`` float64 flow: left of column ``boundary`` a rotation plus a
    translation to the right, right of it a zoom plus a translation up; Gaussian noise of std
    ``noise`` px (seeded)."""
    if not 0 < boundary < size:
        raise ValueError(f"boundary: expected 0 < boundary < size={size}, got {boundary}")
    phi = homogeneous_coordinates(size, size, dtype=torch.float64)
    left = torch.tensor([[0.0, -1.0, 1.5], [1.0, 0.0, 0.0]], dtype=torch.float64)
    right = torch.tensor([[1.2, 0.0, 0.0], [0.0, 1.2, -1.5]], dtype=torch.float64)
    flow = torch.where(torch.arange(size) < boundary, torch.einsum("ck,khw->chw", left, phi),
                       torch.einsum("ck,khw->chw", right, phi))
    if noise > 0:
        gen = torch.Generator().manual_seed(seed)
        flow = flow + noise * torch.randn(flow.shape, generator=gen, dtype=torch.float64)
    return flow


def boundary_masks(size: int, positions, softness: float) -> torch.Tensor:
    """Two-segment masks ``(P, 2, size, size)`` split at each column in ``positions``.

    ``softness`` (pixels) is the width of the sigmoid ramp between the segments; 0 gives hard
    masks.
    """
    x = torch.arange(size, dtype=torch.float64) + 0.5
    pos = torch.as_tensor(positions, dtype=torch.float64).reshape(-1, 1)
    if softness > 0:
        right = torch.sigmoid((x - pos) / softness)
    else:
        right = (x > pos).to(torch.float64)
    right = right[:, None, :].expand(-1, size, -1)
    return torch.stack([1 - right, right], 1)


@dataclass
class BoundaryScan:
    """Log-likelihoods (nats per pixel) of the two-segment split at every column."""

    positions: np.ndarray
    max_loglik: np.ndarray
    evidence: np.ndarray


def scan_boundaries(flow: torch.Tensor, softness: float, sigma: float = 0.5,
                    prior_std: float = 5.0) -> BoundaryScan:
    """Score the split at every column 1..W-1 with eq. (2) (Gaussian, max) and eq. (1) (evidence).

    Returns per-pixel values so that images of any size compare.
    """
    size = flow.shape[-1]
    positions = np.arange(1, size)
    masks = boundary_masks(size, positions, softness)
    flows = flow[None].expand(len(positions), -1, -1, -1)
    n = size * size
    return BoundaryScan(positions,
                        (max_log_likelihood(masks, flows, scale=sigma) / n).numpy(),
                        (log_evidence(masks, flows, sigma=sigma, prior_std=prior_std) / n).numpy())


@dataclass
class BoundaryExplorer(QuietControls):
    """Controls ``boundary``, ``softness``, ``noise`` (sliders); ``image`` (the picture),
    ``info`` (a Label with the two log-likelihoods), ``widget`` (everything)."""

    size: int
    true_boundary: int
    sigma: float
    boundary: object = field(init=False)
    softness: object = field(init=False)
    noise: object = field(init=False)
    image: object = field(init=False)
    info: object = field(init=False)
    widget: object = field(init=False)
    scan: BoundaryScan | None = field(init=False, default=None)
    _key: tuple | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        import ipywidgets as w

        style = {"description_width": "initial"}
        self.boundary = w.IntSlider(value=self.size // 4, min=1, max=self.size - 1,
                                    description="boundary column", continuous_update=False,
                                    style=style)
        self.softness = w.FloatSlider(value=0.0, min=0.0, max=8.0, step=0.5,
                                      description="softness (px)", continuous_update=False,
                                      style=style)
        self.noise = w.FloatSlider(value=0.3, min=0.0, max=2.0, step=0.1,
                                   description="noise (px)", continuous_update=False, style=style)
        self.image = w.Image(format="png", layout=w.Layout(max_width="100%"))
        self.info = w.Label()
        for control in (self.boundary, self.softness, self.noise):
            control.observe(self._on_change, names="value")
        self.widget = w.VBox([w.HBox([self.boundary, self.softness, self.noise]), self.image,
                              self.info])
        self.update()

    def update(self) -> str:
        """Rescore (when noise or softness changed) and redraw; returns the summary line."""
        key = (round(self.noise.value, 3), round(self.softness.value, 3))
        if key != self._key:
            flow = two_motion_flow(self.size, self.true_boundary, self.noise.value)
            self.scan = scan_boundaries(flow, self.softness.value, self.sigma)
            self._flow, self._key = flow, key
        i = self.boundary.value - 1
        self.image.value = self._draw()
        self.info.value = (
            f"boundary at column {self.boundary.value} (true: {self.true_boundary}), softness "
            f"{self.softness.value:.1f} px, noise {self.noise.value:.1f} px: max log-likelihood "
            f"{self.scan.max_loglik[i]:.3f}, log evidence {self.scan.evidence[i]:.3f} nats/pixel")
        return self.info.value

    def _draw(self) -> bytes:
        import matplotlib.pyplot as plt

        from ..viz import figure_to_png, show_flow

        fig, axes = plt.subplots(1, 2, figsize=(10, 3), layout="constrained",
                                 gridspec_kw={"width_ratios": [1, 1.6]})
        show_flow(axes[0], self._flow, "flow and the proposed split", max_flow=3.0)
        masks = boundary_masks(self.size, [self.boundary.value], self.softness.value)[0]
        axes[0].contour(masks[1].numpy(), levels=[0.1, 0.5, 0.9], colors="k",
                        linewidths=[0.6, 1.5, 0.6])
        s = self.scan
        for values, name, colour in ((s.max_loglik, "max over parameters (eq. 2)", "tab:blue"),
                                     (s.evidence, "integrated out (eq. 1)", "tab:orange")):
            axes[1].plot(s.positions, values, label=name, color=colour)
        axes[1].axvline(self.true_boundary, color="k", ls=":", label="true boundary")
        axes[1].axvline(self.boundary.value, color="tab:red", label="proposed")
        axes[1].set(title="log-likelihood of the split at each column",
                    xlabel="boundary column", ylabel="nats / pixel")
        axes[1].legend(fontsize=8, loc="lower center")
        return figure_to_png(fig)

    def show(self, boundary: int, softness: float = 0.0, noise: float = 0.3) -> str:
        """Set the three controls (one rescore) and return the summary line."""
        return self._set_controls((self.noise, noise), (self.softness, softness),
                                  (self.boundary, boundary))


def boundary_explorer(size: int = 48, true_boundary: int = 28, sigma: float = 0.5
                      ) -> BoundaryExplorer:
    """Build the boundary explorer of ``01_grouping_model.ipynb``."""
    if size < 8 or not 0 < true_boundary < size:
        raise ValueError(f"size >= 8 and 0 < true_boundary < size expected, got {size}, "
                         f"{true_boundary}")
    return BoundaryExplorer(size=size, true_boundary=true_boundary, sigma=sigma)
