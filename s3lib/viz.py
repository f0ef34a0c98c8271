"""Pictures used by every notebook: segment colours, overlays, flow with its colour wheel.

Images given to these helpers may be NumPy ``(H, W, 3)`` (uint8 or float in [0, 1]) or torch
``(3, H, W)`` float in [0, 1]; segments are soft masks ``(L, H, W)`` or label maps ``(H, W)``.
Explained in ``notebooks/00_overview.ipynb``.
"""

from __future__ import annotations

import colorsys
import io

import numpy as np

from .flow import color_wheel, flow_to_rgb, max_magnitude

_BASE = np.array([  # Tableau 10, then 10 lighter variants: distinct, colour-blind-aware
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
    (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
], dtype=np.float64) / 255.0


def use_course_style(dpi: int = 110) -> None:
    """Matplotlib settings of the course notebooks: figures at ``dpi`` (110: crisp on a laptop's
    high-density screen, notebooks still a few MB), readable labels."""
    import matplotlib as mpl

    mpl.rcParams.update({"figure.dpi": dpi, "savefig.dpi": dpi, "font.size": 10,
                         "axes.titlesize": 10, "image.interpolation": "nearest"})


def palette(num: int) -> np.ndarray:
    """``(num, 3)`` float RGB colours in [0, 1], one per segment (stable across notebooks)."""
    if num < 1:
        raise ValueError(f"num: expected at least 1 colour, got {num}")
    if num <= len(_BASE):
        return _BASE[:num].copy()
    extra = [colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65, 0.9)
             for i in range(num - len(_BASE))]
    return np.concatenate([_BASE, np.array(extra)])


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def as_rgb_float(image) -> np.ndarray:
    """An image as ``(H, W, 3)`` float64 in [0, 1] from uint8/float NumPy ``(H, W, 3)`` or torch
    ``(3, H, W)``."""
    arr = _numpy(image)
    if hasattr(image, "detach") and arr.ndim == 3 and arr.shape[0] == 3:
        arr = arr.transpose(1, 2, 0)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"image: expected (H, W, 3) or a (3, H, W) tensor, got {arr.shape}")
    return arr / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float64).clip(0, 1)


def colorize_labels(labels, num: int | None = None) -> np.ndarray:
    """Colour a label map ``(H, W)`` (ints >= 0): ``(H, W, 3)`` uint8, label k gets palette[k]."""
    lab = _numpy(labels)
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels: expected an (H, W) integer map, got {lab.dtype} {lab.shape}")
    if lab.size and lab.min() < 0:
        raise ValueError("labels: expected non-negative labels")
    pal = palette(num if num is not None else int(lab.max(initial=0)) + 1)
    if lab.size and lab.max() >= len(pal):
        raise ValueError(f"labels: label {int(lab.max())} but only num={len(pal)} colours")
    return (pal[lab] * 255).round().astype(np.uint8)


def colorize_masks(masks) -> np.ndarray:
    """Colour soft segments ``(L, H, W)`` by blending the palette with the mask weights.

    A pixel shared 50/50 by two segments gets the mix of their colours, so uncertain pixels
    look muddy. Returns ``(H, W, 3)`` uint8.
    """
    m = _numpy(masks).astype(np.float64)
    if m.ndim != 3:
        raise ValueError(f"masks: expected (L, H, W) soft segments, got shape {m.shape}")
    rgb = np.einsum("lhw,lc->hwc", m, palette(m.shape[0]))
    return (rgb.clip(0, 1) * 255).round().astype(np.uint8)


def overlay(image, segments, alpha: float = 0.5) -> np.ndarray:
    """Blend segment colours over an image: ``(H, W, 3)`` uint8.

    Args:
        image: the frame (see :func:`as_rgb_float` for accepted layouts).
        segments: soft masks ``(L, H, W)``, a label map ``(H, W)``, or an RGB picture.
        alpha: weight of the segment colours, in [0, 1].
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha: expected a number in [0, 1], got {alpha}")
    img = as_rgb_float(image)
    seg = _numpy(segments)
    if seg.ndim == 2:
        col = colorize_labels(seg)
    elif seg.ndim == 3 and seg.shape[-1] == 3 and seg.dtype == np.uint8:
        col = seg
    else:
        col = colorize_masks(seg)
    if col.shape[:2] != img.shape[:2]:
        raise ValueError(f"image {img.shape[:2]} and segments {col.shape[:2]} differ in size")
    return (((1 - alpha) * img + alpha * col / 255.0) * 255).round().astype(np.uint8)


def show_image(ax, image, title: str | None = None) -> None:
    """Draw an image on ``ax`` without ticks, with an optional title."""
    ax.imshow(as_rgb_float(image) if _numpy(image).ndim == 3 else _numpy(image))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)


def show_flow(ax, flow, title: str | None = None, max_flow: float | None = None,
              wheel: bool = True) -> float:
    """Draw a flow field colour-coded with the Middlebury wheel, the wheel as an inset legend.

    Args:
        flow: ``(H, W, 2)`` NumPy or ``(2, H, W)`` torch, pixels.
        max_flow: magnitude drawn fully saturated (``None``: the field's maximum).
        wheel: draw the colour-wheel legend in the top-right corner.

    Returns:
        The ``max_flow`` used (pixels), so a caption can state the scale.
    """
    used = max_magnitude(flow) if max_flow is None else float(max_flow)
    ax.imshow(flow_to_rgb(flow, max_flow))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    if wheel:
        inset = ax.inset_axes([0.78, 0.62, 0.2, 0.36])
        inset.imshow(color_wheel(64))
        inset.set_axis_off()
        inset.set_title(f"{used:.1f} px", fontsize=7, pad=1)
    return used


def figure_to_png(fig, dpi: int | None = None) -> bytes:
    """Render a Matplotlib figure to PNG bytes (for ``ipywidgets.Image``) and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def show_color_wheel(ax, size: int = 151, title: str = "flow colour wheel") -> None:
    """Draw the Middlebury colour wheel as a legend with the image axes (x right, y down).

    The colour at offset ``(dx, dy)`` from the centre is the colour of a flow vector
    ``(dx, dy)``; white at the centre means no motion, full colour means the largest motion.
    """
    ax.imshow(color_wheel(size), extent=(-1, 1, 1, -1))
    ax.annotate("", xy=(1.05, 0), xytext=(0, 0), arrowprops={"arrowstyle": "->"})
    ax.annotate("", xy=(0, 1.05), xytext=(0, 0), arrowprops={"arrowstyle": "->"})
    ax.text(1.08, 0.0, "+x (right)", va="center", fontsize=8)
    ax.text(0.0, 1.12, "+y (down)", ha="center", va="top", fontsize=8)
    ax.set_xlim(-1.1, 1.6)
    ax.set_ylim(1.3, -1.1)
    ax.set_axis_off()
    ax.set_title(title)
