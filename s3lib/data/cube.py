"""The paper's toy: a textured cube rotating and translating under an orthographic camera.

:func:`render_cube_sequence` ray-casts every pixel into the cube (or the background), so the
face seen at each pixel, its texture and its exact motion are known. The flow from frame ``t``
to ``t + 1`` is the image motion of the very surface point seen at each pixel (``R_{t+1} q +
c_{t+1} - (R_t q + c_t)`` for the cube point ``q``), not an estimate. Under an orthographic
camera the pixels of one planar face map to the face affinely, and the face moves rigidly, so
each face's flow is exactly affine in image coordinates: what the affine motion loss assumes.
The background is a textured plane with its own affine (similarity) motion, so that no segment
can explain it with zero motion for free.

Three looks. ``look="hues"`` (the renderer's default, the course's first cube) gives every face
a saturated hue of its own: colour alone segments it nearly as well as a network (k-means on
pixel colours; notebook 04). ``look="pairs"`` (what ``s3 train cube`` trains on: the default of
:class:`~s3lib.train.TrainConfig`) paints every face with stripes of two
of the cube's three colours, each colour on two of the three faces in view, lit by a fixed
light: no colour belongs to one face, while a few neighbouring pixels show which pair a face
has. ``look="material"`` gives the whole cube one hue; faces differ only in their stripes'
direction and their shading. Appendix notebook 04b measures all three.

Explained in ``notebooks/04_cube_toy.ipynb``.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

TRAIN_SEEDS = (0, 1, 2, 3, 4)
"""The paper's training set: five sequences (of 99 frames each by default)."""
HELDOUT_SEEDS = (1000, 1001, 1002)
"""Held-out sequences: seeds never used for training (new textures, new motions)."""
NUM_FACES = 6
Look = Literal["hues", "pairs", "material"]
LOOKS: tuple[str, ...] = ("hues", "pairs", "material")
LIGHT = (-0.45, -0.55, -0.70)
"""Direction towards the light in camera coordinates (the camera looks along +z)."""
SHADE = {"pairs": (0.55, 0.45), "material": (0.3, 0.7)}
"""Lambertian shading of the shaded looks: ``ambient + diffuse * max(n . light, 0)``."""


@dataclass
class CubeSequence:
    """A rendered sequence: ``frames (T, 3, H, W)`` float32 in [0, 1], ``flows (T-gap, 2, H, W)``
    (exact forward flow, pixels), ``labels (T, H, W)`` int64 (0 background, 1..6 faces)."""

    frames: torch.Tensor
    flows: torch.Tensor
    labels: torch.Tensor
    seed: int


def _rodrigues(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrix ``(3, 3)`` of the rotation vector ``axis_angle`` (radians)."""
    theta = float(axis_angle.norm())
    if theta < 1e-12:
        return torch.eye(3, dtype=torch.float64)
    k = axis_angle / theta
    kx = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(theta) * kx + (1 - math.cos(theta)) * kx @ kx


def _smooth_noise(gen: torch.Generator, cells: int, size: int, mode: str) -> torch.Tensor:
    """``(1, size, size)`` noise in [0, 1]: a random ``cells`` x ``cells`` grid interpolated."""
    low = torch.rand(1, 1, cells, cells, generator=gen, dtype=torch.float64)
    return F.interpolate(low, size=(size, size), mode=mode, align_corners=True)[0]


def _grating(gen: torch.Generator, size: int, freq_min: float, freq_span: float) -> torch.Tensor:
    """``(size, size)`` ``sin`` stripes in a random direction, ``freq_min`` to ``freq_min +
    freq_span`` periods across the texture."""
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size, dtype=torch.float64),
                            torch.linspace(0, 1, size, dtype=torch.float64), indexing="ij")
    angle = float(torch.rand((), generator=gen)) * math.pi
    freq = freq_min + freq_span * float(torch.rand((), generator=gen))
    return torch.sin(2 * math.pi * freq * (xs * math.cos(angle) + ys * math.sin(angle)))


def _tint(hue: float, saturation: float) -> torch.Tensor:
    """``(3, 1, 1)`` RGB of a hue (turns, wrapped) at full value."""
    return torch.tensor(colorsys.hsv_to_rgb(hue % 1.0, saturation, 1.0),
                        dtype=torch.float64)[:, None, None]


def _texture(gen: torch.Generator, size: int, hue: float, saturation: float = 0.8,
             stripes_weight: float = 0.15, base: float = 0.45) -> torch.Tensor:
    """A ``(3, size, size)`` texture: one saturated hue modulated by grey-level blobs and by
    stripes in a random direction: brightness ``base + 0.25 blobs + 0.15 detail +
    stripes_weight stripes``."""
    blobs = _smooth_noise(gen, 6, size, "bicubic")
    detail = _smooth_noise(gen, 16, size, "bilinear")
    stripes = 0.5 + 0.5 * _grating(gen, size, 3, 5)
    tex = _tint(hue, saturation) * (base + 0.25 * blobs + 0.15 * detail + stripes_weight * stripes)
    return tex.clamp(0, 1)


def _pair_texture(gen: torch.Generator, size: int, hue_a: float, hue_b: float,
                  saturation: float = 0.8) -> torch.Tensor:
    """A ``(3, size, size)`` texture of stripes alternating between two saturated hues, in a
    random direction, modulated in brightness by soft blobs."""
    blobs = _smooth_noise(gen, 6, size, "bicubic")
    mix = (0.5 + 0.5 * torch.tanh(3 * _grating(gen, size, 4, 3)))[None]  # 1: colour a, 0: b
    tex = (_tint(hue_a, saturation) * mix + _tint(hue_b, saturation) * (1 - mix)) * (0.75 + 0.25 * blobs)
    return tex.clamp(0, 1)


def _sample(texture: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup of ``texture (3, S, S)`` at ``uv (N, 2)`` in [0, 1]^2 -> ``(N, 3)``."""
    grid = (uv * 2 - 1).reshape(1, 1, -1, 2)
    out = F.grid_sample(texture[None], grid, mode="bilinear", padding_mode="border",
                        align_corners=True)
    return out[0, :, 0].T


def render_cube_sequence(num_frames: int = 99, size: int = 64, seed: int = 0,
                         gap: int = 1, look: Look = "hues") -> CubeSequence:
    """Render a textured cube moving over a moving textured background, with exact flow.

    Orthographic camera along +z; image coordinates are pixels (x right, y down). The cube
    (half-side about 0.22 ``size``) spins about an axis with a large out-of-plane component, so
    its faces turn towards and away from the camera and move differently (a spin about the
    viewing axis alone would give every face the same flow), and it translates on a smooth path;
    the background plane translates, rotates and scales. Typical flows are 1-4 px per frame at
    64x64 and scale with ``size``.

    Args:
        num_frames: ``T`` >= 2. size: image side ``H = W`` >= 8. seed: textures and motion.
        gap: the flow's frame step (``s3 train cube --gap``).
        look: ``"hues"`` (a hue per face, no shading), ``"pairs"`` (stripes of two of three
            colours on every face, Lambertian shading by :data:`LIGHT`) or ``"material"`` (one
            hue for the whole cube, stripes in a direction of each face's own, shaded).

    Returns:
        A :class:`CubeSequence`; ``flows[t]`` is the exact forward flow from frame ``t`` to
        ``t + gap`` at every pixel (cube and background), ``labels[t]`` the face seen (0 =
        background).
    """
    if not isinstance(num_frames, int) or num_frames < 2:
        raise ValueError(f"num_frames: expected an int >= 2, got {num_frames!r}")
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size: expected an int >= 8, got {size!r}")
    if look not in LOOKS:
        raise ValueError(f"look: expected one of {LOOKS}, got {look!r}")
    if not isinstance(gap, int) or isinstance(gap, bool) or not 1 <= gap < num_frames:
        raise ValueError(f"gap: expected an int in [1, num_frames - 1 = {num_frames - 1}], "
                         f"got {gap!r}")
    gen = torch.Generator().manual_seed(int(seed))
    rnd = lambda *shape: torch.rand(*shape, generator=gen, dtype=torch.float64)  # noqa: E731
    tex_size = 64
    hues = (torch.arange(NUM_FACES + 1, dtype=torch.float64) / (NUM_FACES + 1)
            + float(rnd(()))).tolist()
    perm = torch.randperm(NUM_FACES + 1, generator=gen).tolist()
    # the earlier cube draws its textures from the seed's stream (its sequences are unchanged);
    # the other looks from a stream of their own, so they share a seed's geometry and motion
    tex_gen = gen if look == "hues" else torch.Generator().manual_seed(int(seed) + 7_000_003)
    if look == "hues":
        textures = [_texture(tex_gen, tex_size, hues[perm[i]]) for i in range(NUM_FACES + 1)]
    elif look == "material":  # the cube's hue on every face, stronger stripes to show the faces
        textures = [_texture(tex_gen, tex_size, hues[perm[1]], stripes_weight=0.3, base=0.2)
                    for i in range(NUM_FACES + 1)]
    else:  # face 2a+1 or 2a+2 (axis a): stripes of colours a and a+1 of three
        palette = [hues[perm[1]], hues[perm[1]] + 1 / 3, hues[perm[1]] + 2 / 3]
        textures = [None] + [_pair_texture(tex_gen, tex_size, palette[(f // 2) % 3],
                                           palette[(f // 2 + 1) % 3]) for f in range(NUM_FACES)]
    background = _texture(tex_gen, 2 * tex_size, hues[perm[0]] + 0.5) * 0.8
    light = torch.tensor(LIGHT, dtype=torch.float64)
    light = light / light.norm()

    half = 0.22 * size
    r0 = _rodrigues((rnd(3) * 2 - 1) * math.pi)
    axis = torch.cat([rnd(2) * 2 - 1, (rnd(1) * 2 - 1) * 0.3])  # mostly out of the image plane
    axis = axis / axis.norm()
    spin = (0.10 + 0.06 * float(rnd(()))) * (1 if float(rnd(())) < 0.5 else -1)  # rad/frame
    wobble = rnd(2) * 2 * math.pi
    amp = 0.12 * size
    centre0 = torch.tensor([size / 2, size / 2], dtype=torch.float64)
    freq = (0.02 + 0.02 * rnd(2)) * 2 * math.pi

    def pose(t: float) -> tuple[torch.Tensor, torch.Tensor]:
        rot = _rodrigues(axis * spin * t) @ r0
        centre = centre0 + amp * torch.sin(freq * t + wobble)
        return rot, torch.cat([centre, torch.zeros(1, dtype=torch.float64)])

    bg_rate = (rnd(3) * 2 - 1) * torch.tensor([0.01, 0.02, 0.0], dtype=torch.float64)
    bg_vel = (rnd(2) * 2 - 1) * 1.2 * size / 64  # px/frame, in proportion to the image

    def bg_map(t: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Image point = M w + b for texture coordinate w (pixels around the image centre)."""
        ang, logscale = bg_rate[0] * t, bg_rate[1] * t * 0.2
        m = math.exp(logscale) * torch.tensor([[math.cos(ang), -math.sin(ang)],
                                               [math.sin(ang), math.cos(ang)]], dtype=torch.float64)
        return m, centre0 + bg_vel * t

    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64) + 0.5,
                            torch.arange(size, dtype=torch.float64) + 0.5, indexing="ij")
    pix = torch.stack([xs.flatten(), ys.flatten()], 1)  # (N, 2) pixel centres
    n = pix.shape[0]
    frames, flows, labels = [], [], []
    for t in range(num_frames):
        rot, centre = pose(t)
        rot1, centre1 = pose(t + gap)
        # rays along +z from far in front; in the cube's frame: o + s d
        origin = torch.cat([pix, torch.full((n, 1), -10.0 * size, dtype=torch.float64)], 1)
        o = (origin - centre) @ rot  # rot^T (origin - c), row-wise
        d = rot[2].expand(n, 3)  # rot^T (0, 0, 1)
        d = torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
        t1, t2 = (-half - o) / d, (half - o) / d
        near, far = torch.minimum(t1, t2), torch.maximum(t1, t2)
        t_in, axis_in = near.max(1)
        t_out = far.min(1).values
        hit = t_in <= t_out
        q = o + t_in[:, None] * d  # local hit point
        entered_low = d.gather(1, axis_in[:, None])[:, 0] > 0  # entering through -half
        face = 1 + 2 * axis_in + (~entered_low).long()
        label = torch.where(hit, face, torch.zeros_like(face))
        # colours: cube faces from their textures, background from its moving texture
        colour = torch.zeros(n, 3, dtype=torch.float64)
        for f_id in range(1, NUM_FACES + 1):
            sel = label == f_id
            if sel.any():
                other = [a for a in range(3) if a != (f_id - 1) // 2]
                uv = (q[sel][:, other] + half) / (2 * half)
                colour[sel] = _sample(textures[f_id], uv.clamp(0, 1))
                if look != "hues":  # Lambertian: ambient plus the light along the normal
                    normal = rot[:, (f_id - 1) // 2] * (-1.0 if f_id % 2 else 1.0)  # 2a+1: -half
                    ambient, diffuse = SHADE[look]
                    colour[sel] *= ambient + diffuse * max(float(normal @ light), 0.0)
        m_t, b_t = bg_map(t)
        m_t1, b_t1 = bg_map(t + gap)
        w = (pix - b_t) @ torch.linalg.inv(m_t).T  # texture coordinate of each pixel
        bg = label == 0
        colour[bg] = _sample(background, (w[bg] / (2 * size) + 0.5).clamp(0, 1))
        # exact flow: where the same surface point is one frame later
        world1 = q @ rot1.T + centre1
        flow = torch.where(hit[:, None], world1[:, :2] - pix, w @ m_t1.T + b_t1 - pix)
        frames.append(colour.T.reshape(3, size, size))
        labels.append(label.reshape(size, size))
        if t < num_frames - gap:
            flows.append(flow.T.reshape(2, size, size))
    return CubeSequence(frames=torch.stack(frames).float(), flows=torch.stack(flows).float(),
                        labels=torch.stack(labels), seed=int(seed))
