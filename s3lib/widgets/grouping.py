"""The boundary explorer of ``notebooks/01_grouping_model.ipynb``.

A flow field has two regions, left and right of a vertical boundary, each with its own affine
motion. The reader moves a *proposed* boundary (and its softness, and the noise) and sees the
log-likelihood of the segmentation with the motion parameters maximised out (eq. 2) and
integrated out (eq. 1), for every boundary position at once. The flow, the masks and the scores
are :func:`s3lib.analysis.two_motion_flow`, :func:`s3lib.analysis.boundary_masks` and
:func:`s3lib.analysis.scan_boundaries`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._controls import Explorer
from ..analysis import BoundaryScan, boundary_masks, scan_boundaries, two_motion_flow


@dataclass
class BoundaryExplorer(Explorer):
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
        self._assemble((self.boundary, self.softness, self.noise))

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
