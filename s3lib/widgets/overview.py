"""The flow explorer of ``notebooks/00_overview.ipynb``: frame pairs, gap, flow method."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._controls import Explorer
from ..analysis import flow_pair_scores
from ..flow import estimate_flow


@dataclass
class FlowPairView:
    """What the flow explorer shows for one frame pair (see :func:`render_flow_pair`; the numbers
    are :func:`s3lib.analysis.flow_pair_scores`)."""

    png: bytes
    mean_magnitude: float
    max_magnitude: float
    error_no_motion: float
    error_warped: float

    def summary(self, t: int, gap: int, method: str) -> str:
        """One line of text: the pair, the flow's size, and how well it explains the motion."""
        return (f"frames {t} -> {t + gap} ({method}): mean |flow| {self.mean_magnitude:.2f} px, "
                f"max {self.max_magnitude:.1f} px; frame difference {self.error_no_motion:.1f} "
                f"-> {self.error_warped:.1f} grey levels after warping")


def render_flow_pair(frames: np.ndarray, t: int, gap: int = 1, method: str = "dis",
                     credit: str | None = None, flow: np.ndarray | None = None) -> FlowPairView:
    """Estimate the flow between ``frames[t]`` and ``frames[t + gap]`` and draw the pair.

    Args:
        frames: ``(T, H, W, 3)`` uint8 RGB (from :func:`s3lib.data.clips.read_frames`).
        t: index of the first frame; ``gap``: frame step.
        method: ``"dis"`` or ``"farneback"`` (see :func:`s3lib.flow.estimate_flow`).
        credit: a line printed under the picture (licence of the footage).
        flow: a precomputed ``(H, W, 2)`` flow, to skip estimation.

    Returns:
        A :class:`FlowPairView` with the PNG and the numbers shown under it.
    """
    import matplotlib.pyplot as plt

    from ..viz import figure_to_png, show_flow, show_image

    if not 0 <= t < len(frames) - gap:
        raise ValueError(f"t: expected 0 <= t < {len(frames) - gap} for {len(frames)} frames "
                         f"and gap {gap}, got {t}")
    f0, f1 = frames[t], frames[t + gap]
    if flow is None:
        flow = estimate_flow(f0, f1, method=method)
    fig, axes = plt.subplots(1, 3, figsize=(11, 2.9), layout="constrained")
    show_image(axes[0], f0, f"frame {t}")
    show_image(axes[1], f1, f"frame {t + gap}")
    show_flow(axes[2], flow, f"{method.upper() if method == 'dis' else method} flow {t} -> {t + gap}")
    if credit:
        fig.supxlabel(credit, fontsize=8)
    return FlowPairView(png=figure_to_png(fig), **flow_pair_scores(f0, f1, flow))


@dataclass
class FlowExplorer(Explorer):
    """Sliders over frame pairs and frame gap, a flow-method toggle, the picture and its numbers.

    Parts: ``pair`` (IntSlider, first frame index), ``gap`` (IntSlider, frames between the two;
    the paper pairs frames 1 and 5), ``method`` (ToggleButtons, DIS/Farneback), ``image``
    (Image, the PNG of :func:`render_flow_pair`), ``info`` (Label, the summary line), ``widget``
    (the whole box to display).
    """

    frames: np.ndarray
    initial_gap: int
    credit: str | None
    max_gap: int = 8
    pair: object = field(init=False)
    gap: object = field(init=False)
    method: object = field(init=False)
    image: object = field(init=False)
    info: object = field(init=False)
    widget: object = field(init=False)
    last: FlowPairView | None = field(init=False, default=None)
    _cache: dict = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        import ipywidgets as w

        style = {"description_width": "initial"}
        max_gap = max(self.initial_gap, min(self.max_gap, len(self.frames) - 1))
        self.gap = w.IntSlider(value=self.initial_gap, min=1, max=max_gap, description="gap",
                               continuous_update=False, style=style)
        self.pair = w.IntSlider(value=0, min=0, max=len(self.frames) - 1 - self.initial_gap,
                                description="first frame", continuous_update=False, style=style)
        self.method = w.ToggleButtons(options=[("DIS", "dis"), ("Farneback", "farneback")],
                                      value="dis", description="flow")
        self._assemble((self.pair, self.gap), (self.method,))

    def _constrain(self, change) -> None:
        if change["owner"] is self.gap:  # keep t + gap inside the clip
            self.pair.max = len(self.frames) - 1 - self.gap.value

    def update(self) -> FlowPairView:
        """Redraw for the current control values; returns what is shown."""
        key = (self.pair.value, self.gap.value, self.method.value)
        if key not in self._cache:
            self._cache[key] = render_flow_pair(self.frames, *key, credit=self.credit)
        self.last = self._cache[key]
        self.image.value = self.last.png
        self.info.value = self.last.summary(*key)
        return self.last

    def show(self, t: int, gap: int = 1, method: str = "dis") -> str:
        """Set the controls (as a reader would) and return the summary line they produce."""
        # the gap before the first frame: it moves the first frame's maximum; one redraw
        return self._set_controls((self.method, method), (self.gap, gap), (self.pair, t))


def flow_explorer(frames: np.ndarray, gap: int = 1, credit: str | None = None) -> FlowExplorer:
    """Build the flow explorer of ``00_overview.ipynb`` over ``(T, H, W, 3)`` uint8 frames."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames: expected (T, H, W, 3) uint8, got {frames.dtype} {frames.shape}")
    if gap < 1 or len(frames) <= gap:
        raise ValueError(f"gap: expected 1 <= gap < number of frames ({len(frames)}), got {gap}")
    return FlowExplorer(frames=frames, initial_gap=gap, credit=credit)
