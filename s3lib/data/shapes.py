"""The ``shapes`` world: moving textured shapes, for pre-training by motion and transfer.

A CPU-scale stand-in for the paper's transfer experiment ("pre-train a network on video by
grouping motion, then fine-tune it on a labelled classification data set and measure
multi-label mAP", PASCAL VOC 2007 in the paper). Explained in
``notebooks/07_voc07_transfer.ipynb``.

**The world.** A scene is 1-3 objects over a textured background, ``size`` x ``size`` pixels
(48 by default). Each object is one of the ``K = 6`` classes of :data:`SHAPE_CLASSES` (disc,
square, triangle, ring, cross, bar) with a random size (a bounding radius of 7-13 px at 48 px,
in proportion at other sizes), position and orientation, drawn in painter's order (later
objects on top; they may overlap, but every object stays well visible). Every layer, objects
and background alike, gets a texture drawn from *one* distribution: two random colours of
close hue blended by smooth blobs, shaded by finer noise and, for some, stripes. So colour
never tells a class from another, nor an object from the background: the class of an object
is its *shape*, and nothing else.

**Why labels depend on shape.** Grouping motion can teach a network where objects are (the
pixels that move together) and what outline they have, but nothing about colour that the
labels would reward. A network pre-trained by grouping the flow of ``shapes`` videos
(:func:`shapes_pairs`) has learnt objectness and shape; fine-tuning it on labelled stills
(:func:`shapes_stills`, :class:`ShapesClassification`) asks which shapes are present, and its
mAP against a network trained from scratch measures what the motion taught.

**Motion and exact flow.** For a frame pair every layer gets its own random similarity motion
``A(x) = c + t + (1 + s) R(phi) (x - c)`` about its centre ``c`` (the image centre for the
background), independent per layer: objects translate by 0.5-3 px, turn by up to 0.1 rad and
scale by up to 5 %; the background translates by up to 2 px, turns by up to 0.02 rad and
scales by up to 2 % (px in proportion to ``size / 48``). Frame 2 is rendered with each layer
moved by its motion (each layer's texture is attached to it), and the forward flow of frame 1
at pixel ``x`` is ``A(x) - x`` of the topmost layer there: exact, and exactly affine on each
layer (occlusions at the borders between layers are not marked). Flow follows the course's
convention (:mod:`s3lib.flow`): pixel ``(row i, column j)`` sits at ``x = j, y = i``, channel 0
is the horizontal (right) and channel 1 the vertical (down) displacement in pixels, so that
``s3lib.flow.warp(image2, flow)`` looks like ``image1``.

**Rendering.** Vectorised in torch by inverse mapping: each pixel is mapped into each layer's
own coordinates, tested against the shape's analytic signed distance (a one-pixel linear ramp
of coverage: modest anti-aliasing) and coloured by ``grid_sample`` of the layer's noise
lattices. Every random number of scene ``i`` of a split comes from its own generator seeded by
``(split base + seed, i)``, and each scene is rendered by the same arithmetic whatever it is
batched with, so scene ``i`` is bit for bit the same whatever ``n`` is asked for
(``shapes_pairs(10)`` is the first 10 of ``shapes_pairs(20)``). The scene layout, colours and
motion are drawn in units of the image side, so one scene at another ``size`` is the same
scene at another resolution. 1,280 pairs of 48 x 48 render in about 2 s on one CPU thread.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .pairs import FlowPairs

SHAPE_CLASSES = ("disc", "square", "triangle", "ring", "cross", "bar")
"""The ``K = 6`` object classes, in the order of the columns of the stills' targets."""
SPLITS = ("pretrain", "train", "test", "supervised")
"""The scene sets: ``pretrain`` (frame pairs, no labels used), ``train`` / ``test`` (labelled
stills for fine-tuning and for mAP) and ``supervised`` (for a supervised baseline); their scene
seeds are disjoint."""
SPLIT_BASES = {"pretrain": 0, "train": 10**6, "test": 2 * 10**6, "supervised": 3 * 10**6}
"""Base seed of each split: scene ``i`` of ``split`` draws from ``(base + seed, i)``."""
MAX_OBJECTS = 3
MIN_SIZE = 32

_REF = 48.0  # the motion and texture ranges are given in pixels at this size
_RADIUS = (7.0 / _REF, 13.0 / _REF)  # bounding radius, fraction of the image side
_SEPARATION = 0.75  # centres at least this times the sum of the radii apart
_LATTICE_SPAN = 1.5  # a layer's noise lattices cover 1.5 image sides
_COARSE, _FINE = 13, 25  # lattice points per side: blobs every 6 px, detail every 3 px at 48
_CHUNK = 32  # scenes rendered together (the result does not depend on it)


@dataclass
class ShapesScene:
    """One rendered pair: ``image1``, ``image2`` ``(3, H, W)`` float32 in [0, 1], ``flow``
    ``(2, H, W)`` float32 (exact forward flow of frame 1, pixels; channel 0 x, channel 1 y),
    ``layers`` ``(H, W)`` int64 (the layer seen in frame 1: 0 background, ``k`` the ``k``-th
    object in painter's order) and ``classes``, each object's class index into
    :data:`SHAPE_CLASSES` (``classes[k - 1]`` is layer ``k``'s)."""

    image1: torch.Tensor
    image2: torch.Tensor
    flow: torch.Tensor
    layers: torch.Tensor
    classes: list[int]


# ----------------------------------------------------------------------------- arguments
def _check_split(split) -> str:
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    return split


def _check_int(value, name: str, low: int, what: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name}: expected an int >= {low}{what}, got {value!r}")
    return int(value)


def _check_args(n, split, size, seed) -> tuple[int, str, int, int]:
    return (_check_int(n, "n", 1), _check_split(split),
            _check_int(size, "size", MIN_SIZE, " (the image side in pixels)"),
            _check_int(seed, "seed", 0))


# ----------------------------------------------------------------------------- one scene's draws
def _layer_draws(rng: np.random.Generator, background: bool) -> dict:
    """A layer's texture and motion, from one vector of uniforms, drawn the same way for
    every layer (objects and background) except for the motion's ranges."""
    (hue, s1, v1, dh, s2, v2, detail, striped, amp, angle, period, phase, mag, direction, turn,
     scale) = rng.random(16)
    tint1 = colorsys.hsv_to_rgb(hue, 0.2 + 0.7 * s1, 0.55 + 0.45 * v1)
    tint2 = colorsys.hsv_to_rgb((hue + 0.24 * dh - 0.12) % 1.0, 0.2 + 0.7 * s2, 0.35 + 0.65 * v2)
    # a similarity about the layer's centre: translation |t| px (at 48 px), turn, scale change
    shift, max_turn, max_scale = ((0.0, 2.0), 0.02, 0.02) if background else ((0.5, 3.0), 0.1, 0.05)
    mag = (shift[0] + (shift[1] - shift[0]) * mag) / _REF
    direction *= 2 * math.pi
    return {"tints": (tint1, tint2), "detail": 0.3 * detail,
            "stripes": 0.1 + 0.2 * amp if striped < 0.5 else 0.0,
            "stripe_angle": math.pi * angle, "stripe_period": (5.0 + 4.0 * period) / _REF,
            "stripe_phase": phase,
            "motion": (mag * math.cos(direction), mag * math.sin(direction),
                       max_turn * (2 * turn - 1), max_scale * (2 * scale - 1))}


def _draw_scene(split: str, index: int, seed: int) -> dict:
    """Every random number of scene ``index`` of ``split``, in units of the image side.

    Layer 0 is the background, layers ``1..m`` the objects in painter's order. Positions are
    fractions of the side (pixel ``j`` of ``size`` is at ``(j + 0.5) / size``), radii and
    translations fractions of the side."""
    rng = np.random.default_rng([SPLIT_BASES[split] + seed, index])
    m = int(rng.integers(1, MAX_OBJECTS + 1))
    objects = []
    for _ in range(m):
        cls = int(rng.integers(len(SHAPE_CLASSES)))
        for _attempt in range(200):
            r, cx, cy, angle = rng.random(4)
            r = _RADIUS[0] + (_RADIUS[1] - _RADIUS[0]) * r
            c = 0.75 * r + (1 - 1.5 * r) * np.array([cx, cy])
            if all(math.dist(c, o["centre"]) >= _SEPARATION * (r + o["radius"])
                   for o in objects):
                break
        else:  # no room left (rare): the scene keeps the objects placed so far
            continue
        objects.append({"cls": cls, "radius": r, "centre": c, "angle": 2 * math.pi * angle})
    layers = [{"cls": -1, "radius": 0.0, "centre": np.array([0.5, 0.5]), "angle": 0.0}]
    layers += objects
    for k, layer in enumerate(layers):
        layer.update(_layer_draws(rng, k == 0))
    for layer in layers:  # last, so that the lattices never shift the other draws
        layer["coarse"] = rng.random((_COARSE, _COARSE))
        layer["fine"] = rng.random((_FINE, _FINE))
    return {"layers": layers, "classes": [o["cls"] for o in objects]}


def _rot(a: float) -> np.ndarray:
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def _layer_maps(layer: dict, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(inv1, inv2, fwd)`` ``(2, 3)`` float64: image pixel -> layer coordinates (pixels, about
    the object's centre; the background's are frame 1's pixels) in frames 1 and 2, and the
    layer's motion from frame 1 to frame 2 in pixels (``x2 = fwd @ (x, y, 1)``)."""
    c = layer["centre"] * size - 0.5
    if layer["cls"] < 0:  # background: frame 1 is its own coordinates, turns about the centre
        c = np.full(2, (size - 1) / 2)
        p1 = np.concatenate([np.eye(2), np.zeros((2, 1))], 1)  # u -> x
    else:
        p1 = np.concatenate([_rot(layer["angle"]), c[:, None]], 1)
    tx, ty, phi, s = layer["motion"]
    q = (1 + s) * _rot(phi)
    fwd = np.concatenate([q, (c + np.array([tx, ty]) * size - q @ c)[:, None]], 1)
    p2 = np.concatenate([fwd[:, :2] @ p1[:, :2], (fwd[:, :2] @ p1[:, 2] + fwd[:, 2])[:, None]], 1)

    def inverse(p: np.ndarray) -> np.ndarray:
        (a, b), (c_, d) = p[:, :2]
        inv = np.array([[d, -b], [-c_, a]]) / (a * d - b * c_)
        return np.concatenate([inv, (-inv @ p[:, 2])[:, None]], 1)

    return inverse(p1), inverse(p2), fwd


# ----------------------------------------------------------------------------- rendering
def _signed_distance(cls: int, ux: torch.Tensor, uy: torch.Tensor,
                     r: torch.Tensor) -> torch.Tensor:
    """Signed distance (pixels, < 0 inside) of layer points ``(ux, uy)`` to a shape of class
    ``cls`` and bounding radius ``r`` (broadcast), max/min of exact distances to its parts."""
    ax, ay = ux.abs(), uy.abs()
    name = SHAPE_CLASSES[cls]
    if name in ("disc", "ring"):
        rho = torch.sqrt(ux * ux + uy * uy)
        if name == "disc":
            return rho - r * 0.85
        return torch.maximum(rho - r * 0.95, r * 0.55 - rho)
    if name == "square":
        return torch.maximum(ax, ay) - r * 0.75
    if name == "triangle":  # equilateral, circumradius 1.05 r: three half-planes
        side = torch.maximum(ax * (math.sqrt(3) / 2) + uy * 0.5, -uy)
        return side - r * (1.05 / 2)
    if name == "cross":
        arm, half = r * 0.95, r * 0.3
        return torch.minimum(torch.maximum(ax - arm, ay - half), torch.maximum(ax - half, ay - arm))
    if name == "bar":
        return torch.maximum(ax - r, ay - r * 0.32)
    raise AssertionError(name)


def _render_layers(inv: torch.Tensor, lay: dict, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour ``(N, 3, H, W)`` and signed distance ``(N, H, W)`` of the ``N`` layers listed in
    ``lay``, mapped into the image by ``inv (N, 2, 3)`` (pixel -> layer coordinates)."""
    n = inv.shape[0]
    pix = torch.arange(size, dtype=torch.float32)
    xs, ys = pix[None, None, :], pix[None, :, None]
    col = lambda t: t[:, None, None]  # noqa: E731  (N,) -> (N, 1, 1)
    ux = col(inv[:, 0, 0]) * xs + col(inv[:, 0, 1]) * ys + col(inv[:, 0, 2])
    uy = col(inv[:, 1, 0]) * xs + col(inv[:, 1, 1]) * ys + col(inv[:, 1, 2])
    sd = torch.full((n, size, size), -1e4)  # the background covers everything
    for c in range(len(SHAPE_CLASSES)):
        sel = (lay["cls"] == c).nonzero()[:, 0]
        if len(sel):
            sd[sel] = _signed_distance(c, ux[sel], uy[sel], col(lay["radius"][sel]))
    # noise lattices: layer coordinates -> [-1, 1] over the lattice span
    gx = ux * col(lay["grid_scale"]) + col(lay["grid_offset"][:, 0])
    gy = uy * col(lay["grid_scale"]) + col(lay["grid_offset"][:, 1])
    grid = torch.stack([gx, gy], -1)
    blob = F.grid_sample(lay["coarse"], grid, mode="bicubic", padding_mode="border",
                         align_corners=True)[:, 0].clamp(0, 1)
    detail = F.grid_sample(lay["fine"], grid, mode="bilinear", padding_mode="border",
                           align_corners=True)[:, 0]
    t = (ux * col(lay["stripe_dir"][:, 0]) + uy * col(lay["stripe_dir"][:, 1])) \
        + col(lay["stripe_phase"])
    tri = (t - torch.floor(t) - 0.5).abs() * 2  # triangle wave in [0, 1]
    stripe = tri * tri * (3 - tri * 2)
    shade = 1 - col(lay["detail"]) * detail - col(lay["stripes"]) * stripe
    t1, t2 = lay["tint1"][:, :, None, None], lay["tint2"][:, :, None, None]
    colour = (t1 + (t2 - t1) * blob[:, None]) * shade[:, None]
    return colour, sd


def _composite(colour: torch.Tensor, sd: torch.Tensor, slot: torch.Tensor, b: int,
               size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Painter's order over the layers of ``b`` scenes (layer ``slot[j] = (scene, k)`` has
    ``colour[j]``, ``sd[j]``): ``(B, 3, H, W)`` image and ``(B, H, W)`` topmost layer index
    (the one whose shape covers the pixel centre)."""
    pad_colour = torch.zeros(b, MAX_OBJECTS + 1, 3, size, size)
    pad_sd = torch.full((b, MAX_OBJECTS + 1, size, size), 1e4)  # absent layers cover nothing
    pad_colour[slot[:, 0], slot[:, 1]] = colour
    pad_sd[slot[:, 0], slot[:, 1]] = sd
    alpha = (0.5 - pad_sd).clamp(0, 1)[:, :, None]
    image = pad_colour[:, 0]
    top = torch.zeros(b, size, size, dtype=torch.int64)
    for k in range(1, MAX_OBJECTS + 1):
        image = image + (pad_colour[:, k] - image) * alpha[:, k]
        top = torch.where(pad_sd[:, k] < 0, k, top)
    return image.clamp(0, 1), top


def _render(indices: range, split: str, size: int, seed: int, pairs: bool) -> dict:
    """Render scenes ``indices`` of ``split``: ``image1 (B, 3, H, W)``, ``classes`` and, when
    ``pairs``, ``image2``, ``flow (B, 2, H, W)`` and ``layers (B, H, W)``."""
    scenes = [_draw_scene(split, i, seed) for i in indices]
    slot, cls, radius, inv1, inv2, fwd, rest = [], [], [], [], [], [], []
    span = _LATTICE_SPAN * size
    for b, scene in enumerate(scenes):
        for k, layer in enumerate(scene["layers"]):
            a1, a2, f = _layer_maps(layer, size)
            slot.append((b, k))
            cls.append(layer["cls"])
            radius.append(layer["radius"] * size)
            inv1.append(a1)
            inv2.append(a2)
            fwd.append(f)
            # background coordinates run over the image, objects' about their centre
            origin = (size - 1) / 2 if k == 0 else 0.0
            ang = layer["stripe_angle"]
            period = layer["stripe_period"] * size
            rest.append([2 / span, -2 * origin / span, -2 * origin / span,
                         math.cos(ang) / period, math.sin(ang) / period, layer["stripe_phase"],
                         layer["detail"], layer["stripes"], *layer["tints"][0],
                         *layer["tints"][1]])
    rest = torch.tensor(rest, dtype=torch.float32)
    lay = {"cls": torch.tensor(cls), "radius": torch.tensor(radius, dtype=torch.float32),
           "grid_scale": rest[:, 0], "grid_offset": rest[:, 1:3], "stripe_dir": rest[:, 3:5],
           "stripe_phase": rest[:, 5], "detail": rest[:, 6], "stripes": rest[:, 7],
           "tint1": rest[:, 8:11], "tint2": rest[:, 11:14]}
    lay["coarse"] = torch.tensor(np.stack([ly["coarse"] for s in scenes for ly in s["layers"]]),
                                 dtype=torch.float32)[:, None]
    lay["fine"] = torch.tensor(np.stack([ly["fine"] for s in scenes for ly in s["layers"]]),
                               dtype=torch.float32)[:, None]
    slot = torch.tensor(slot)
    b = len(scenes)
    colour, sd = _render_layers(torch.tensor(np.stack(inv1), dtype=torch.float32), lay, size)
    image1, top = _composite(colour, sd, slot, b, size)
    out = {"image1": image1, "classes": [s["classes"] for s in scenes]}
    if not pairs:
        return out
    colour, sd = _render_layers(torch.tensor(np.stack(inv2), dtype=torch.float32), lay, size)
    out["image2"] = _composite(colour, sd, slot, b, size)[0]
    # exact flow of the layer seen in frame 1: (fwd - I) x, in float64
    motion = torch.tensor(np.stack(fwd))  # (N, 2, 3) float64
    motion[:, 0, 0] -= 1
    motion[:, 1, 1] -= 1
    first = torch.zeros(b, dtype=torch.int64)  # row of each scene's background in `motion`
    first[slot[slot[:, 1] == 0, 0]] = (slot[:, 1] == 0).nonzero()[:, 0]
    per_pixel = motion[first[:, None, None] + top]  # (B, H, W, 2, 3)
    pix = torch.arange(size, dtype=torch.float64)
    xs, ys = pix[None, None, :, None], pix[None, :, None, None]
    flow = per_pixel[..., 0] * xs + per_pixel[..., 1] * ys + per_pixel[..., 2]
    out["flow"] = flow.permute(0, 3, 1, 2).float().contiguous()
    out["layers"] = top
    return out


def _render_many(n: int, split: str, size: int, seed: int, pairs: bool) -> dict:
    chunks = [_render(range(i, min(i + _CHUNK, n)), split, size, seed, pairs)
              for i in range(0, n, _CHUNK)]
    out = {k: torch.cat([c[k] for c in chunks]) for k in chunks[0] if k != "classes"}
    out["classes"] = [cl for c in chunks for cl in c["classes"]]
    return out


def _source(split: str, seed: int, i: int) -> str:
    return f"shapes-{split}:{i}" if seed == 0 else f"shapes-{split}-seed{seed}:{i}"


# ----------------------------------------------------------------------------- public API
def render_scene(index: int, split: str = "pretrain", size: int = 48, seed: int = 0
                 ) -> ShapesScene:
    """Scene ``index`` of ``split``: both frames, exact flow, layers and classes.

    Args:
        index: the scene, an int >= 0 (scene ``i`` is the same whatever else is rendered).
        split: one of :data:`SPLITS`. size: the image side ``H = W`` >= 32.
        seed: an int >= 0 added to the split's base seed (another world of the same kind).

    Returns:
        A :class:`ShapesScene`: ``image1``, ``image2`` ``(3, H, W)`` float32 in [0, 1],
        ``flow`` ``(2, H, W)`` float32 (forward, pixels, channel 0 x), ``layers`` ``(H, W)``
        int64, ``classes`` (one class index per object). Item ``index`` of
        :func:`shapes_pairs` is its ``image1``, ``flow`` and ``layers``, bit for bit.

    Raises:
        ValueError: a bad ``index``, ``split``, ``size`` or ``seed`` (the message names it).
    """
    index = _check_int(index, "index", 0)
    _, split, size, seed = _check_args(1, split, size, seed)
    out = _render(range(index, index + 1), split, size, seed, pairs=True)
    return ShapesScene(image1=out["image1"][0], image2=out["image2"][0], flow=out["flow"][0],
                       layers=out["layers"][0], classes=list(out["classes"][0]))


def shapes_pairs(n: int, split: str = "pretrain", size: int = 48, seed: int = 0) -> FlowPairs:
    """The first ``n`` scenes of ``split`` as frame pairs for motion grouping (notebook 07).

    Returns:
        :class:`s3lib.data.pairs.FlowPairs` with ``images (n, 3, H, W)`` float32 in [0, 1]
        (frame 1), ``flows (n, 2, H, W)`` float32 (exact forward flow, pixels; channel 0 x,
        channel 1 y), ``labels (n, H, W)`` int64 (0 background, ``k`` the ``k``-th object in
        painter's order) and ``source`` ``"shapes-<split>:<i>"`` (``"shapes-<split>-seed<s>:<i>"``
        for ``seed`` s > 0). The first ``m`` of ``n`` pairs are ``shapes_pairs(m, ...)``.

    Raises:
        ValueError: ``n`` < 1, an unknown ``split``, ``size`` < 32 or not an int, a bad ``seed``.
    """
    n, split, size, seed = _check_args(n, split, size, seed)
    out = _render_many(n, split, size, seed, pairs=True)
    return FlowPairs(out["image1"], out["flow"], out["layers"],
                     [_source(split, seed, i) for i in range(n)])


def shapes_stills(n: int, split: str = "train", size: int = 48, seed: int = 0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` scenes of ``split`` as labelled stills (frame 1 only), for fine-tuning
    and multi-label mAP (notebook 07).

    Returns:
        ``images (n, 3, H, W)`` float32 in [0, 1] and ``targets (n, K)`` float32, ``K =
        len(SHAPE_CLASSES)``: 1 where the class is present, -1 where absent (PASCAL VOC's
        convention, without its "difficult" 0s). ``images[i]`` is ``render_scene(i, split,
        size, seed).image1``.

    Raises:
        ValueError: ``n`` < 1, an unknown ``split``, ``size`` < 32 or not an int, a bad ``seed``.
    """
    n, split, size, seed = _check_args(n, split, size, seed)
    out = _render_many(n, split, size, seed, pairs=False)
    targets = -torch.ones(n, len(SHAPE_CLASSES))
    for i, classes in enumerate(out["classes"]):
        targets[i, classes] = 1.0
    return out["image1"], targets


class ShapesClassification(Dataset):
    """Labelled ``shapes`` stills as a torch ``Dataset`` (notebook 07): item ``i`` is
    ``(image (3, H, W) float32 in [0, 1], target (K,) float32 of 1 / -1)``, from
    :func:`shapes_stills`; ``images (n, 3, H, W)`` and ``targets (n, K)`` are the stacked
    tensors and ``classes`` is :data:`SHAPE_CLASSES`.

    Raises:
        ValueError: as :func:`shapes_stills`.
    """

    classes = SHAPE_CLASSES

    def __init__(self, n: int, split: str, size: int = 48, seed: int = 0) -> None:
        self.images, self.targets = shapes_stills(n, split, size, seed)
        self.split, self.seed = split, seed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.targets[i]

    def __repr__(self) -> str:
        h, w = self.images.shape[-2:]
        return f"ShapesClassification({len(self)} stills of {w}x{h}, {self.split!r})"


__all__ = ["SHAPE_CLASSES", "SPLITS", "SPLIT_BASES", "ShapesScene", "render_scene",
           "shapes_pairs", "shapes_stills", "ShapesClassification"]
