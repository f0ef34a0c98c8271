"""The boundary explorer of ``notebooks/01_grouping_model.ipynb``.

A flow field has two regions, left and right of a vertical boundary, each with its own affine
motion, plus Gaussian noise (:func:`s3lib.analysis.two_motion_flow`). The reader proposes a
segmentation into ``L`` vertical strips (a first boundary column, further cuts halving the
widest strip: :func:`s3lib.regions.strip_cuts`, :func:`s3lib.regions.strip_masks`), sets the
softness of the cuts, the noise in the flow and the noise ``sigma`` the model assumes, and sees
the log-likelihood of the flow with the motion parameters maximised out (eq. 2) and integrated
out (eq. 1), computed by :func:`s3lib.grouping.score_strips`:

- for a split into two strips at every boundary column (with ``L`` fixed the two differ by an
  almost constant Occam factor);
- for ``L = 1 .. MAX_SEGMENTS`` at the chosen boundary: eq. (2) keeps rising with ``L`` (every
  extra strip fits a little noise), eq. (1) peaks at the true number when ``sigma`` matches the
  noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._controls import Explorer
from ..analysis import two_motion_flow
from ..grouping import StripScores, score_strips
from ..regions import strip_cuts

MAX_SEGMENTS = 6
MAX_NOISE = 2.0
SIGMA_RANGE = (0.1, 2.0)
TRUE_SEGMENTS = 2


@dataclass
class BoundaryExplorer(Explorer):
    """Controls ``boundary`` (first cut column), ``segments`` (``L``), ``softness``, ``noise``
    (the flow's, px) and ``sigma`` (the model's, px), all sliders; ``image`` (the picture),
    ``info`` (a Label with the scores), ``widget`` (everything).

    After each redraw: ``positions`` (the boundary columns ``1 .. size-1``), ``scan`` (a
    :class:`s3lib.grouping.StripScores` of the two-strip split at each of those columns) and
    ``counts`` (one over ``L = 1 .. MAX_SEGMENTS`` at the current boundary), in nats for the
    whole image.
    """

    size: int
    true_boundary: int
    initial_sigma: float
    initial_noise: float
    prior_std: float
    boundary: object = field(init=False)
    segments: object = field(init=False)
    softness: object = field(init=False)
    noise: object = field(init=False)
    sigma: object = field(init=False)
    image: object = field(init=False)
    info: object = field(init=False)
    widget: object = field(init=False)
    positions: np.ndarray | None = field(init=False, default=None)
    scan: StripScores | None = field(init=False, default=None)
    counts: StripScores | None = field(init=False, default=None)
    _flows: dict = field(init=False, default_factory=dict, repr=False)
    _scans: dict = field(init=False, default_factory=dict, repr=False)
    _counts: dict = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        import ipywidgets as w

        style = {"description_width": "initial"}
        self.boundary = w.IntSlider(value=self.size // 4, min=1, max=self.size - 1,
                                    description="boundary column", continuous_update=False,
                                    style=style)
        self.segments = w.IntSlider(value=TRUE_SEGMENTS, min=1, max=MAX_SEGMENTS,
                                    description="segments L", continuous_update=False,
                                    style=style)
        self.softness = w.FloatSlider(value=0.0, min=0.0, max=8.0, step=0.5,
                                      description="softness (px)", continuous_update=False,
                                      style=style)
        self.noise = w.FloatSlider(value=self.initial_noise, min=0.0, max=MAX_NOISE, step=0.1,
                                   description="flow noise (px)", continuous_update=False,
                                   style=style)
        self.sigma = w.FloatSlider(value=self.initial_sigma, min=SIGMA_RANGE[0],
                                   max=SIGMA_RANGE[1], step=0.1, description="model sigma (px)",
                                   continuous_update=False, style=style)
        self.positions = np.arange(1, self.size)
        self._assemble((self.boundary, self.segments), (self.noise, self.sigma, self.softness))

    def flow(self, noise: float):
        """The explorer's flow ``(2, size, size)`` float64 at a noise level (px), cached."""
        key = round(float(noise), 4)
        if key not in self._flows:
            self._flows[key] = two_motion_flow(self.size, self.true_boundary, key)
        return self._flows[key]

    def update(self) -> str:
        """Rescore what changed and redraw; returns the summary line."""
        noise, sigma = round(float(self.noise.value), 4), round(float(self.sigma.value), 4)
        softness, num = round(float(self.softness.value), 4), int(self.segments.value)
        b = int(self.boundary.value)
        flow = self.flow(noise)
        key = (noise, sigma, softness)
        if key not in self._scans:
            self._scans[key] = score_strips(flow, [[int(p)] for p in self.positions], softness,
                                            sigma, self.prior_std)
        key_counts = (noise, sigma, softness, b)
        if key_counts not in self._counts:
            self._counts[key_counts] = score_strips(
                flow, [strip_cuts(b, self.size, k) for k in range(1, MAX_SEGMENTS + 1)],
                softness, sigma, self.prior_std)
        self.scan, self.counts = self._scans[key], self._counts[key_counts]
        i = num - 1
        self.image.value = self._draw(flow, b, num, softness, sigma)
        self.info.value = (
            f"boundary at column {b} (true: {self.true_boundary}), L = {num} (true: "
            f"{TRUE_SEGMENTS}), softness {softness:.1f} px, flow noise {noise:.1f} px, model "
            f"sigma {sigma:.1f} px: max log-likelihood {self.counts.max_loglik[i]:.1f}, log "
            f"evidence {self.counts.evidence[i]:.1f} nats; best L: "
            f"{int(np.argmax(self.counts.max_loglik)) + 1} by eq. (2), "
            f"{int(np.argmax(self.counts.evidence)) + 1} by eq. (1)")
        return self.info.value

    def _draw(self, flow, b: int, num: int, softness: float, sigma: float) -> bytes:
        import matplotlib.pyplot as plt

        from ..viz import figure_to_png, show_flow

        fig, axes = plt.subplots(1, 3, figsize=(13, 3.1), layout="constrained",
                                 gridspec_kw={"width_ratios": [1, 1.4, 1.2]})
        show_flow(axes[0], flow, "flow and the proposed strips", max_flow=3.0)
        for j, c in enumerate(strip_cuts(b, self.size, num)):
            axes[0].axvline(c - 0.5, color="k", lw=1.5 if c == b else 1.0,
                            ls="-" if c == b else "--")
            if softness > 0:
                axes[0].axvspan(c - 0.5 - softness, c - 0.5 + softness, color="k", alpha=0.12)
        s = self.scan
        for values, name, colour in ((s.max_loglik, "max over parameters (eq. 2)", "tab:blue"),
                                     (s.evidence, "integrated out (eq. 1)", "tab:orange")):
            axes[1].plot(self.positions, values, label=name, color=colour)
        axes[1].axvline(self.true_boundary, color="k", ls=":", label="true boundary")
        axes[1].axvline(b, color="tab:red", label="proposed")
        axes[1].set(title="two strips: log-likelihood for each boundary",
                    xlabel="boundary column", ylabel="log p(f | m) (nats)")
        axes[1].legend(fontsize=7, loc="lower center")

        c = self.counts
        ks = np.arange(1, MAX_SEGMENTS + 1)
        ref = c.max_loglik[TRUE_SEGMENTS - 1]
        curves = ((c.max_loglik - ref, "max over parameters (eq. 2)", "tab:blue", "o"),
                  (c.evidence - ref, "integrated out (eq. 1)", "tab:orange", "s"))
        shown = np.concatenate([v[TRUE_SEGMENTS - 1:] for v, *_ in curves])
        pad = 0.15 * max(float(np.ptp(shown)), 1.0)
        low, high = float(shown.min()) - pad, float(shown.max()) + pad
        ax = axes[2]
        for values, name, colour, marker in curves:
            ax.plot(ks, np.maximum(values, low), marker=marker, color=colour, label=name)
        xlabel = "number of segments L"
        if min(v[0] for v, *_ in curves) < low:  # L = 1 far below: drawn at the edge, stated
            xlabel += (f"\n(L = 1 off the scale: {curves[0][0][0]:.0f} for eq. 2, "
                       f"{curves[1][0][0]:.0f} for eq. 1)")
        ax.axvline(TRUE_SEGMENTS, color="k", ls=":", label="true number")
        ax.axvline(num, color="tab:red", lw=0.8, label="chosen L")
        ax.set_ylim(low, high)
        ax.set(title=f"boundary {b}: score against L (sigma {sigma:.1f} px)",
               xlabel=xlabel, ylabel=f"nats, relative to eq. (2) at L = {TRUE_SEGMENTS}")
        ax.legend(fontsize=7, loc="best")
        return figure_to_png(fig)

    def show(self, boundary: int, softness: float = 0.0, noise: float = 0.3,
             sigma: float = 0.3, segments: int = TRUE_SEGMENTS) -> str:
        """Set the five controls (one rescore) and return the summary line.

        Raises ``ValueError`` for a value outside a control's range (a slider would clamp it).
        """
        checks = (("boundary", boundary, 1, self.size - 1), ("segments", segments, 1,
                                                             MAX_SEGMENTS),
                  ("softness", softness, 0.0, 8.0), ("noise", noise, 0.0, MAX_NOISE),
                  ("sigma", sigma, *SIGMA_RANGE))
        for name, value, lo, hi in checks:
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer,
                                                                 np.floating)) \
                    or not lo <= value <= hi:
                raise ValueError(f"{name}: expected a value in [{lo}, {hi}], got {value!r}")
        for name, value in (("boundary", boundary), ("segments", segments)):
            if int(value) != value:
                raise ValueError(f"{name}: expected an integer, got {value!r}")
        return self._set_controls((self.noise, float(noise)), (self.sigma, float(sigma)),
                                  (self.softness, float(softness)),
                                  (self.segments, int(segments)), (self.boundary, int(boundary)))


def boundary_explorer(size: int = 48, true_boundary: int = 28, sigma: float = 0.3,
                      noise: float = 0.3, prior_std: float = 5.0) -> BoundaryExplorer:
    """Build the boundary explorer of ``01_grouping_model.ipynb``.

    Args:
        size: image side (pixels, >= 8). true_boundary: the column where the motion changes.
        sigma: initial model noise std (px, in [0.1, 2]). noise: initial flow noise (px, in
            [0, 2]). prior_std: ``tau``, the prior std of the affine parameters (px), for eq. (1).
    """
    if size < 8 or not 0 < true_boundary < size:
        raise ValueError(f"size >= 8 and 0 < true_boundary < size expected, got {size}, "
                         f"{true_boundary}")
    if not SIGMA_RANGE[0] <= sigma <= SIGMA_RANGE[1]:
        raise ValueError(f"sigma: expected a value in {list(SIGMA_RANGE)} px, got {sigma!r}")
    if not 0 <= noise <= MAX_NOISE:
        raise ValueError(f"noise: expected a value in [0, {MAX_NOISE}] px, got {noise!r}")
    if not prior_std > 0:
        raise ValueError(f"prior_std: expected a positive std in pixels, got {prior_std!r}")
    return BoundaryExplorer(size=size, true_boundary=true_boundary, initial_sigma=float(sigma),
                            initial_noise=float(noise), prior_std=float(prior_std))
