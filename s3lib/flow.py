"""Optical flow: ``.flo`` files, the Middlebury colour wheel, OpenCV estimation, warping,
forward-backward consistency.

Conventions (``COURSE.md``): a flow field stores, for each pixel ``u`` of frame ``t``, the
displacement in pixels to where it is in frame ``t+1`` (forward flow); channel 0 is x (right),
channel 1 is y (down). NumPy arrays here use OpenCV's layout ``(H, W, 2)``; torch tensors use the
course layout ``(B, 2, H, W)`` or ``(2, H, W)``.

Explained in ``notebooks/00_overview.ipynb``; how noisy estimated flow is (forward-backward
consistency, DIS vs Farneback) in ``notebooks/06_real_video_entropy.ipynb``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np

from ._io import atomic_write

FLO_MAGIC = 202021.25
"""The float32 tag at the start of every ``.flo`` file (its bytes read ``PIEH``)."""
MAX_FLO_PIXELS = 1 << 28
"""Largest width x height accepted when reading a ``.flo`` header (guards absurd sizes)."""

FlowMethod = Literal["dis", "farneback"]


# ----------------------------------------------------------------------------- .flo I/O
def read_flo(path: str | os.PathLike) -> np.ndarray:
    """Read a Middlebury/Sintel ``.flo`` file.

    Returns:
        ``(H, W, 2)`` float32 array (x then y displacement, pixels).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is empty, truncated, too long, has the wrong magic number or an
            absurd size; the message names the file.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, expected a .flo file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such .flo file")
    raw = path.read_bytes()
    if len(raw) < 12:
        raise ValueError(
            f"{path}: empty or truncated .flo file ({len(raw)} bytes; the header alone needs 12)"
        )
    magic = float(np.frombuffer(raw, "<f4", count=1)[0])
    if magic != FLO_MAGIC:
        raise ValueError(
            f"{path}: not a .flo file (magic number {magic!r}, expected {FLO_MAGIC} = b'PIEH')"
        )
    width, height = (int(v) for v in np.frombuffer(raw, "<i4", count=2, offset=4))
    if width <= 0 or height <= 0 or width * height > MAX_FLO_PIXELS:
        raise ValueError(
            f"{path}: absurd .flo size {width}x{height} (expected positive, at most "
            f"{MAX_FLO_PIXELS} pixels); the file is corrupt"
        )
    expected = 12 + 8 * width * height
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: .flo file {what}: {len(raw)} bytes, expected {expected} for {width}x{height}"
        )
    return np.frombuffer(raw, "<f4", offset=12).reshape(height, width, 2).astype(np.float32)


def write_flo(path: str | os.PathLike, flow: np.ndarray) -> None:
    """Write ``flow`` ``(H, W, 2)`` to a ``.flo`` file, atomically (temp file, then rename).

    ``flow`` may be a NumPy array ``(H, W, 2)`` or a torch tensor in the course layout
    ``(2, H, W)``. Raises ``ValueError`` naming ``flow`` when it is not a real flow field.
    """
    arr = _to_hw2(flow) if hasattr(flow, "detach") else np.asarray(flow)
    if arr.ndim != 3 or arr.shape[2] != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"flow: expected an (H, W, 2) array, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"flow: expected a real-valued array, got dtype {arr.dtype}")
    height, width = arr.shape[:2]
    with atomic_write(path) as fh:
        fh.write(np.array([FLO_MAGIC], "<f4").tobytes())
        fh.write(np.array([width, height], "<i4").tobytes())
        fh.write(np.ascontiguousarray(arr, dtype="<f4").tobytes())


# ----------------------------------------------------------------------------- layouts
def _to_hw2(flow) -> np.ndarray:
    """Flow as a NumPy ``(H, W, 2)`` array from ``(H, W, 2)`` NumPy or ``(2, H, W)`` torch."""
    if hasattr(flow, "detach"):  # torch tensor, course layout (2, H, W)
        if flow.ndim != 3 or flow.shape[0] != 2:
            raise ValueError(f"flow: expected a (2, H, W) tensor, got shape {tuple(flow.shape)}")
        return flow.detach().cpu().permute(1, 2, 0).numpy()
    arr = np.asarray(flow)
    if arr.ndim != 3 or arr.shape[2] != 2:
        raise ValueError(f"flow: expected an (H, W, 2) array, got shape {arr.shape}")
    return arr


# ----------------------------------------------------------------------------- colour wheel
def _middlebury_wheel() -> np.ndarray:
    """The 55-colour Middlebury wheel (Baker et al., IJCV 2011) as ``(55, 3)`` floats in [0, 1].

    Six ramps, red -> yellow -> green -> cyan -> blue -> magenta -> red, with 15, 6, 4, 11, 13
    and 6 steps, quantised to 8 bits exactly as the original ``colorcode`` code does.
    """
    ramps = [(15, (1, 0, 0), (1, 1, 0)), (6, (1, 1, 0), (0, 1, 0)), (4, (0, 1, 0), (0, 1, 1)),
             (11, (0, 1, 1), (0, 0, 1)), (13, (0, 0, 1), (1, 0, 1)), (6, (1, 0, 1), (1, 0, 0))]
    rows = []
    for n, start, end in ramps:
        up = np.floor(255 * np.arange(n) / n)[:, None]  # the rising channel, 0 .. 255
        s, e = np.array(start, float), np.array(end, float)
        rows.append(255 * s * e + up * (e - s).clip(0) + (255 - up) * (s - e).clip(0))
    return np.concatenate(rows) / 255.0


_WHEEL = _middlebury_wheel()


def _valid_uv(flow) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(u, v, bad)``: float64 components with non-finite and "unknown" (> 1e9) vectors zeroed."""
    f = _to_hw2(flow).astype(np.float64)
    u, v = f[..., 0], f[..., 1]
    bad = ~np.isfinite(u) | ~np.isfinite(v) | (np.abs(u) > 1e9) | (np.abs(v) > 1e9)
    return np.where(bad, 0.0, u), np.where(bad, 0.0, v), bad


def max_magnitude(flow) -> float:
    """Largest finite flow magnitude (pixels), ignoring NaN/inf and Sintel's unknown values."""
    u, v, _ = _valid_uv(flow)
    return float(np.hypot(u, v).max()) if u.size else 0.0


def flow_to_rgb(flow, max_flow: float | None = None) -> np.ndarray:
    """Colour-code a flow field with the Middlebury colour wheel (as Sintel and flow papers do).

    Hue gives the direction (right = red, down = yellow, left = cyan, up = blue/violet),
    saturation the magnitude relative to ``max_flow`` (the largest finite magnitude in ``flow``
    when ``None``); vectors longer than ``max_flow`` are darkened to 75 %.
    Non-finite vectors (and Sintel's "unknown" values above 1e9) are drawn black.

    Args:
        flow: ``(H, W, 2)`` NumPy array or ``(2, H, W)`` torch tensor, in pixels.
        max_flow: magnitude mapped to full saturation.

    Returns:
        ``(H, W, 3)`` uint8 RGB image.
    """
    u, v, bad = _valid_uv(flow)
    rad = np.hypot(u, v)
    if max_flow is None:
        max_flow = float(rad.max()) if rad.size else 0.0
    elif not max_flow > 0:
        raise ValueError(f"max_flow: expected a positive number or None, got {max_flow!r}")
    scale = max_flow if max_flow > 0 else 1.0
    rad = rad / scale
    ncols = len(_WHEEL)
    angle = np.arctan2(-v, -u) / np.pi  # in [-1, 1]
    fk = (angle + 1) / 2 * (ncols - 1)
    k0 = np.floor(fk).astype(int)
    k1 = (k0 + 1) % ncols
    frac = (fk - k0)[..., None]
    col = (1 - frac) * _WHEEL[k0] + frac * _WHEEL[k1]
    inside = (rad <= 1)[..., None]
    col = np.where(inside, 1 - rad[..., None] * (1 - col), col * 0.75)
    col[bad] = 0.0
    return np.clip(np.floor(255 * col), 0, 255).astype(np.uint8)


def color_wheel(size: int = 101) -> np.ndarray:
    """The colour-wheel legend: ``(size, size, 3)`` uint8, white outside the unit disc.

    A pixel at offset ``(dx, dy)`` from the centre shows the colour of flow ``(dx, dy)`` with
    ``max_flow`` = the radius (right = x positive, down = y positive, as in images).
    """
    if size < 3:
        raise ValueError(f"size: expected at least 3 pixels, got {size}")
    r = (size - 1) / 2
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) - r
    img = flow_to_rgb(np.stack([x, y], -1), max_flow=r)
    img[np.hypot(x, y) > r] = 255
    return img


# ----------------------------------------------------------------------------- estimation
def _to_gray_u8(frame, name: str) -> np.ndarray:
    """A frame as a ``(H, W)`` uint8 grey image (OpenCV's flow methods want one)."""
    import cv2

    if hasattr(frame, "detach"):  # torch (3, H, W) or (H, W) in [0, 1]
        t = frame.detach().cpu()
        frame = t.permute(1, 2, 0).numpy() if t.ndim == 3 else t.numpy()
    arr = np.asarray(frame)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(
            f"{name}: expected an (H, W, 3) RGB or (H, W) grey image, got shape {arr.shape}"
        )
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"{name}: expected uint8 or float in [0, 1], got dtype {arr.dtype}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}: contains NaN or inf")
        if arr.size and (arr.min() < -1e-3 or arr.max() > 1 + 1e-3):
            raise ValueError(f"{name}: float images must lie in [0, 1], got values in "
                             f"[{arr.min():.3g}, {arr.max():.3g}]; pass uint8 or divide by 255")
        arr = np.clip(np.rint(arr * 255), 0, 255).astype(np.uint8)
    if arr.ndim == 3:
        arr = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(arr)


def estimate_flow(frame0, frame1, method: FlowMethod = "dis", preset: str = "medium") -> np.ndarray:
    """Estimate the forward flow from ``frame0`` to ``frame1`` with OpenCV.

    Args:
        frame0, frame1: ``(H, W, 3)`` RGB (uint8, or float in [0, 1]) or ``(H, W)`` grey NumPy
            images, or ``(3, H, W)`` torch tensors in [0, 1]; both of the same size.
        method: ``"dis"`` (Dense Inverse Search, Kroeger et al. 2016; fast, the course default)
            or ``"farneback"`` (polynomial expansion, Farneback 2003; smoother, slower).
        preset: DIS preset, ``"ultrafast"``, ``"fast"`` or ``"medium"`` (ignored by Farneback).

    Returns:
        ``(H, W, 2)`` float32 flow in pixels: pixel ``u`` of ``frame0`` is near
        ``u + flow[u]`` in ``frame1``.
    """
    import cv2

    g0 = _to_gray_u8(frame0, "frame0")
    g1 = _to_gray_u8(frame1, "frame1")
    if g0.shape != g1.shape:
        raise ValueError(f"frame0 and frame1 differ in size: {g0.shape} vs {g1.shape}")
    if min(g0.shape) < 8:
        raise ValueError(f"frame0: at least 8x8 pixels needed for flow, got {g0.shape}")
    if method == "dis":
        presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
                   "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                   "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
        if preset not in presets:
            raise ValueError(f"preset: expected one of {sorted(presets)}, got {preset!r}")
        flow = cv2.DISOpticalFlow_create(presets[preset]).calc(g0, g1, None)
    elif method == "farneback":
        flow = cv2.calcOpticalFlowFarneback(
            g0, g1, None, pyr_scale=0.5, levels=4, winsize=15, iterations=3,
            poly_n=5, poly_sigma=1.1, flags=0)
    else:
        raise ValueError(f"method: expected 'dis' or 'farneback', got {method!r}")
    return flow.astype(np.float32)


# ----------------------------------------------------------------------------- warping
def warp(image, flow, return_valid: bool = False):
    """Backward-warp ``image`` by ``flow``: ``out[u] = image[u + flow[u]]`` (bilinear).

    With the forward flow from frame t to t+1, ``warp(frame_t1, flow)`` looks like frame t
    wherever the pixel is visible in both frames: the check that a flow field is right.

    Args:
        image: NumPy ``(H, W, C)``/``(H, W)`` with flow ``(H, W, 2)`` (OpenCV ``remap``), or
            torch ``(B, C, H, W)``/``(C, H, W)`` with flow ``(B, 2, H, W)``/``(2, H, W)``
            (``grid_sample``; differentiable w.r.t. both).
        return_valid: also return a mask of pixels whose sample point falls inside the image.

    Returns:
        The warped image (same type, shape and dtype as ``image``), and the validity mask
        (``(H, W)`` bool, or ``(B, H, W)`` for tensors) when ``return_valid``.
    """
    if hasattr(image, "detach") != hasattr(flow, "detach"):
        raise ValueError("image and flow: pass both as NumPy arrays or both as torch tensors")
    if hasattr(image, "detach"):
        return _warp_torch(image, flow, return_valid)
    return _warp_numpy(image, flow, return_valid)


def _warp_numpy(image, flow, return_valid):
    import cv2

    img = np.asarray(image)
    if img.dtype not in (np.uint8, np.uint16, np.int16, np.float32, np.float64):
        raise ValueError(f"image: dtype {img.dtype} cannot be interpolated by OpenCV; cast it "
                         f"to float32 (bilinear warping of label maps mixes labels anyway)")
    f = _to_hw2(flow).astype(np.float32)
    if img.shape[:2] != f.shape[:2]:
        raise ValueError(f"image {img.shape[:2]} and flow {f.shape[:2]} differ in size")
    h, w = f.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    mx, my = xs + f[..., 0], ys + f[..., 1]
    out = cv2.remap(img, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if out.ndim == 2 and img.ndim == 3:
        out = out[..., None]
    if not return_valid:
        return out
    valid = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    return out, valid


def _warp_torch(image, flow, return_valid):
    import torch
    import torch.nn.functional as F

    squeeze = image.ndim == 3
    img = image[None] if squeeze else image
    fl = flow[None] if flow.ndim == 3 else flow
    if img.ndim != 4 or fl.ndim != 4 or fl.shape[1] != 2:
        raise ValueError(
            f"image/flow: expected (B, C, H, W) and (B, 2, H, W), got {tuple(image.shape)} "
            f"and {tuple(flow.shape)}")
    if img.shape[-2:] != fl.shape[-2:] or img.shape[0] != fl.shape[0]:
        raise ValueError(f"image {tuple(img.shape)} and flow {tuple(fl.shape)} do not match")
    b, _, h, w = fl.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=fl.dtype, device=fl.device),
                            torch.arange(w, dtype=fl.dtype, device=fl.device), indexing="ij")
    px, py = xs + fl[:, 0], ys + fl[:, 1]
    gx = 2 * px / max(w - 1, 1) - 1
    gy = 2 * py / max(h - 1, 1) - 1
    grid = torch.stack([gx, gy], dim=-1).to(img.dtype)
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=True)
    out = out[0] if squeeze else out
    if not return_valid:
        return out
    valid = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
    return out, (valid[0] if squeeze else valid)


def warp_error(frame0, frame1, flow) -> float:
    """Mean absolute colour difference between ``frame0`` and ``frame1`` warped back by ``flow``.

    Only pixels whose sample point lies inside ``frame1`` count. Frames are NumPy
    ``(H, W, 3)`` uint8 (errors in grey levels, 0-255) or float (same units as the frames);
    ``flow`` is the forward flow ``(H, W, 2)`` from ``frame0`` to ``frame1``. A zero flow gives
    the plain frame difference, the baseline a good flow must beat.
    """
    f0 = np.asarray(frame0, np.float64)
    warped, valid = warp(np.asarray(frame1), flow, return_valid=True)
    if f0.shape != warped.shape:
        raise ValueError(f"frame0 {f0.shape} and frame1 {warped.shape} differ in shape")
    diff = np.abs(f0 - warped.astype(np.float64))
    diff = diff.mean(-1) if diff.ndim == 3 else diff
    return float(diff[valid].mean()) if valid.any() else float("nan")


# ----------------------------------------------------------------------------- consistency
def forward_backward_error(flow_fw, flow_bw, return_valid: bool = False):
    """Round-trip error of a forward and a backward flow: how far a pixel lands from where it
    started after following ``flow_fw`` to the next frame and ``flow_bw`` back.

    ``err(u) = |f_fw(u) + f_bw(u + f_fw(u))|`` pixels, the backward flow sampled bilinearly at
    the (sub-pixel) landing point (:func:`warp`). Exact flow gives 0 wherever the pixel is
    visible in both frames; estimated flow gives a positive error whose size says how far the
    two estimates disagree. Occluded pixels (visible in one frame only) have no true backward
    flow and fail the check even for exact flow. Explained in
    ``notebooks/06_real_video_entropy.ipynb``.

    Args:
        flow_fw: forward flow frame t -> t+1, NumPy ``(H, W, 2)`` or torch ``(2, H, W)``.
        flow_bw: backward flow frame t+1 -> t, same layout and size.
        return_valid: also return where the landing point ``u + f_fw(u)`` lies inside frame
            t+1 (elsewhere the backward flow is sampled at the border, and the error means
            little).

    Returns:
        ``(H, W)`` float32 error in pixels, and the ``(H, W)`` bool validity mask when
        ``return_valid``.
    """
    fw = _finite_hw2(flow_fw, "flow_fw")
    bw = _finite_hw2(flow_bw, "flow_bw")
    if fw.shape != bw.shape:
        raise ValueError(f"flow_fw {fw.shape} and flow_bw {bw.shape} differ in size")
    back, valid = warp(bw, fw, return_valid=True)  # back[u] = f_bw(u + f_fw(u))
    err = np.sqrt(((fw + back) ** 2).sum(-1)).astype(np.float32)
    return (err, valid) if return_valid else err


def forward_backward_consistent(flow_fw, flow_bw, rel_tol: float = 0.01,
                                abs_tol: float = 0.5) -> np.ndarray:
    """Pixels whose forward and backward flow agree (Sundaram, Brox & Keutzer, ECCV 2010):

    ``|f_fw(u) + f_bw(u')|^2 < rel_tol (|f_fw(u)|^2 + |f_bw(u')|^2) + abs_tol``, with
    ``u' = u + f_fw(u)`` inside the image. ``abs_tol`` is in squared pixels (0.5 px^2: a
    round trip of up to about 0.7 px passes); ``rel_tol`` lets fast motion err a little more.

    Args:
        flow_fw, flow_bw: as in :func:`forward_backward_error`.
        rel_tol, abs_tol: the two tolerances (>= 0, not both 0).

    Returns:
        ``(H, W)`` bool: True where the two flows are consistent (and the pixel stays inside).
    """
    if not (rel_tol >= 0 and abs_tol >= 0 and rel_tol + abs_tol > 0):
        raise ValueError(f"rel_tol, abs_tol: expected non-negative tolerances, not both 0, got "
                         f"{rel_tol!r}, {abs_tol!r}")
    fw = _finite_hw2(flow_fw, "flow_fw")
    bw = _finite_hw2(flow_bw, "flow_bw")
    if fw.shape != bw.shape:
        raise ValueError(f"flow_fw {fw.shape} and flow_bw {bw.shape} differ in size")
    back, valid = warp(bw, fw, return_valid=True)
    fw64, back64 = fw.astype(np.float64), back.astype(np.float64)
    lhs = ((fw64 + back64) ** 2).sum(-1)
    rhs = rel_tol * ((fw64 ** 2).sum(-1) + (back64 ** 2).sum(-1)) + abs_tol
    return (lhs < rhs) & valid


def _finite_hw2(flow, name: str) -> np.ndarray:
    """A finite flow as float32 ``(H, W, 2)`` (NumPy, or torch ``(2, H, W)``); else ValueError."""
    if hasattr(flow, "detach"):
        if flow.ndim != 3 or flow.shape[0] != 2:
            raise ValueError(f"{name}: expected a (2, H, W) tensor, got shape {tuple(flow.shape)}")
        arr = flow.detach().cpu().permute(1, 2, 0).numpy()
    else:
        arr = np.asarray(flow)
    if arr.ndim != 3 or arr.shape[2] != 2 or min(arr.shape[:2]) < 1:
        raise ValueError(f"{name}: expected an (H, W, 2) flow, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name}: expected a real-valued flow, got dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return arr
