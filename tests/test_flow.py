"""s3lib.flow: .flo I/O, atomic writes, the Middlebury colour wheel, OpenCV flow, warping.

Every check compares against an independent reference: hand-made bytes, OpenCV's own .flo
reader/writer, the ``flow_vis`` package, a NumPy bilinear sampler written here, or facts about
the synthetic data (a texture shifted by a known integer amount).
"""

from __future__ import annotations

import os
import struct

import cv2
import numpy as np
import pytest
import torch

from s3lib import flow as F
from s3lib._io import atomic_write

MAGIC_BYTES = struct.pack("<f", 202021.25)


# ----------------------------------------------------------------------------- helpers
def texture(seed: int, h: int = 96, w: int = 128, channels: int = 3, sigma: float = 2.0):
    """A smooth random uint8 texture: Gaussian-blurred uniform noise stretched to 0..255."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (h, w, channels)).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), sigma)
    if blurred.ndim == 2:
        blurred = blurred[..., None]
    lo, hi = blurred.min(), blurred.max()
    out = np.rint((blurred - lo) / (hi - lo) * 255).astype(np.uint8)
    return out if channels > 1 else out[..., 0]


def flo_bytes(arr: np.ndarray) -> bytes:
    """The .flo encoding of ``arr`` (H, W, 2), built with struct (independent of the library)."""
    h, w, _ = arr.shape
    out = [MAGIC_BYTES, struct.pack("<ii", w, h)]
    for y in range(h):
        for x in range(w):
            out.append(struct.pack("<ff", float(arr[y, x, 0]), float(arr[y, x, 1])))
    return b"".join(out)


def bilinear_reference(img: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Textbook bilinear sampling of ``img`` (H, W, C) at (px, py), float64, clamped to border."""
    h, w = img.shape[:2]
    px = np.clip(px, 0, w - 1)
    py = np.clip(py, 0, h - 1)
    x0 = np.clip(np.floor(px).astype(int), 0, w - 2)
    y0 = np.clip(np.floor(py).astype(int), 0, h - 2)
    ax = (px - x0)[..., None]
    ay = (py - y0)[..., None]
    img = img.astype(np.float64)
    return ((1 - ax) * (1 - ay) * img[y0, x0] + ax * (1 - ay) * img[y0, x0 + 1]
            + (1 - ax) * ay * img[y0 + 1, x0] + ax * ay * img[y0 + 1, x0 + 1])


# ----------------------------------------------------------------------------- .flo I/O
@pytest.mark.parametrize("seed,h,w", [(0, 1, 1), (1, 7, 5), (2, 32, 48), (3, 3, 100)])
def test_flo_round_trip_is_exact(tmp_path, seed, h, w):
    rng = np.random.default_rng(seed)
    flow = (rng.standard_normal((h, w, 2)) * 50).astype(np.float32)
    path = tmp_path / "a.flo"
    F.write_flo(path, flow)
    back = F.read_flo(path)
    assert back.dtype == np.float32 and back.shape == (h, w, 2)
    assert np.array_equal(back.view(np.uint32), flow.view(np.uint32))  # bit-exact


def test_flo_hand_made_bytes_read_and_written(tmp_path):
    # 2 rows x 3 columns; (u, v) of pixel (y, x) = (10*y + x, -(10*y + x) - 0.5)
    expected = np.zeros((2, 3, 2), np.float32)
    payload = b""
    for y in range(2):
        for x in range(3):
            u, v = 10.0 * y + x, -(10.0 * y + x) - 0.5
            expected[y, x] = (u, v)
            payload += struct.pack("<ff", u, v)
    raw = struct.pack("<f", 202021.25) + struct.pack("<i", 3) + struct.pack("<i", 2) + payload
    assert raw[:4] == b"PIEH"
    src = tmp_path / "hand.flo"
    src.write_bytes(raw)
    got = F.read_flo(src)
    assert got.shape == (2, 3, 2) and got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)

    out = tmp_path / "out.flo"
    F.write_flo(out, expected)
    assert out.read_bytes() == raw
    # float64 and integer inputs are written as float32 too
    F.write_flo(out, expected.astype(np.float64))
    assert out.read_bytes() == raw


@pytest.mark.parametrize("seed", [0, 1])
def test_flo_writer_matches_struct_encoding(tmp_path, seed):
    flow = np.random.default_rng(seed).uniform(-20, 20, (4, 6, 2)).astype(np.float32)
    F.write_flo(tmp_path / "x.flo", flow)
    assert (tmp_path / "x.flo").read_bytes() == flo_bytes(flow)


@pytest.mark.parametrize("seed,h,w", [(0, 5, 7), (1, 40, 30)])
def test_flo_opencv_cross_check(tmp_path, seed, h, w):
    flow = (np.random.default_rng(seed).standard_normal((h, w, 2)) * 10).astype(np.float32)
    ours = tmp_path / "ours.flo"
    F.write_flo(ours, flow)
    np.testing.assert_array_equal(cv2.readOpticalFlow(str(ours)), flow)

    theirs = tmp_path / "theirs.flo"
    assert cv2.writeOpticalFlow(str(theirs), flow)
    np.testing.assert_array_equal(F.read_flo(theirs), flow)


def _bad_files():
    good_header = MAGIC_BYTES + struct.pack("<ii", 3, 2)
    data = struct.pack("<12f", *range(12))
    return {
        "empty": b"",
        "five_bytes": b"PIEH\x00",
        "wrong_magic": struct.pack("<f", 202021.0) + struct.pack("<ii", 3, 2) + data,
        "text_magic": b"NOPE" + struct.pack("<ii", 3, 2) + data,
        "negative_width": MAGIC_BYTES + struct.pack("<ii", -3, 2) + data,
        "zero_height": MAGIC_BYTES + struct.pack("<ii", 3, 0),
        "absurd_size": MAGIC_BYTES + struct.pack("<ii", 100000, 100000) + data,
        "header_only": good_header,
        "truncated": good_header + data[:-4],
        "trailing_bytes": good_header + data + b"\x00",
    }


@pytest.mark.parametrize("kind", sorted(_bad_files()))
def test_read_flo_bad_file_raises_value_error_naming_it(tmp_path, kind):
    path = tmp_path / f"bad_{kind}.flo"
    path.write_bytes(_bad_files()[kind])
    with pytest.raises(ValueError) as info:
        F.read_flo(path)
    assert str(path) in str(info.value)


def test_read_flo_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "missing.flo"
    with pytest.raises(FileNotFoundError) as info:
        F.read_flo(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("shape", [(4, 5, 3), (2, 4, 5), (4, 5), (0, 5, 2), (4, 5, 2, 1)])
def test_write_flo_rejects_bad_shapes(tmp_path, shape):
    path = tmp_path / "x.flo"
    with pytest.raises(ValueError, match="flow"):
        F.write_flo(path, np.zeros(shape, np.float32))
    assert not path.exists()
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- atomic writes
def test_atomic_write_exception_keeps_old_content(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old content")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(target) as fh:
            fh.write(b"new half-written content")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old content"
    assert os.listdir(tmp_path) == ["file.bin"]


def test_atomic_write_success_replaces_and_cleans_up(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    with atomic_write(target, "w") as fh:
        fh.write("hello")
    assert target.read_text() == "hello"
    assert os.listdir(target.parent) == ["file.txt"]


def test_write_flo_replaces_existing_file(tmp_path):
    path = tmp_path / "f.flo"
    path.write_bytes(b"something else entirely, much longer than the new file" * 10)
    flow = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    F.write_flo(path, flow)
    assert path.read_bytes() == flo_bytes(flow)
    assert os.listdir(tmp_path) == ["f.flo"]
    flow2 = -flow[:1]
    F.write_flo(path, flow2)
    np.testing.assert_array_equal(F.read_flo(path), flow2)
    assert os.listdir(tmp_path) == ["f.flo"]


# ----------------------------------------------------------------------------- colour wheel
def test_wheel_equals_flow_vis():
    flow_vis = pytest.importorskip("flow_vis")
    np.testing.assert_array_equal(F._WHEEL * 255, flow_vis.make_colorwheel())


@pytest.mark.parametrize("seed,scale", [(0, 1.0), (1, 7.5), (2, 0.01), (3, 300.0)])
def test_flow_to_rgb_equals_flow_vis(seed, scale):
    flow_vis = pytest.importorskip("flow_vis")
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((23, 31, 2)) * scale
    expected = flow_vis.flow_to_color(f)
    mx = float(np.sqrt(f[..., 0] ** 2 + f[..., 1] ** 2).max())
    got = F.flow_to_rgb(f, max_flow=mx + 1e-5)
    assert got.dtype == np.uint8 and got.shape == (23, 31, 3)
    np.testing.assert_array_equal(got, expected)
    # default max_flow = largest magnitude; flow_vis' epsilon can shift a channel by one level
    default = F.flow_to_rgb(f).astype(int)
    assert np.abs(default - expected.astype(int)).max() <= 1


@pytest.mark.parametrize("seed", [0, 1])
def test_flow_to_rgb_torch_layout_matches_numpy(seed):
    f = np.random.default_rng(seed).standard_normal((9, 13, 2)).astype(np.float32) * 3
    t = torch.from_numpy(f).permute(2, 0, 1).contiguous()
    np.testing.assert_array_equal(F.flow_to_rgb(t), F.flow_to_rgb(f))
    np.testing.assert_array_equal(F.flow_to_rgb(t, max_flow=2.0), F.flow_to_rgb(f, max_flow=2.0))


def test_flow_to_rgb_special_values():
    f = np.zeros((3, 4, 2))
    assert (F.flow_to_rgb(f) == 255).all()  # zero flow: white
    assert (F.flow_to_rgb(f, max_flow=1.0) == 255).all()

    f = np.zeros((2, 3, 2))
    f[0, 0] = (np.nan, 0)
    f[0, 1] = (0, np.inf)
    f[0, 2] = (-np.inf, 1)
    f[1, 0] = (2e9, 0)  # Sintel's "unknown" marker
    f[1, 1] = (1.0, 0.0)  # exactly right, full saturation
    img = F.flow_to_rgb(f)
    assert (img[0] == 0).all() and (img[1, 0] == 0).all()  # invalid vectors black
    # rightwards: angle atan2(-0, -1) = -pi, wheel position 0 = pure red (255, 0, 0)
    assert tuple(img[1, 1]) == (255, 0, 0)
    assert (img[1, 2] == 255).all()  # zero vector beside them stays white


def test_flow_to_rgb_right_pointing_is_red():
    # The hue index is fk = (atan2(-v, -u) / pi + 1) / 2 * 54, so "right" sits at both ends of
    # the wheel: fk = 0 (entry 0, pure red (255, 0, 0)) when approached from below (v >= +0),
    # and fk -> 54 (entry 54, last of the magenta->red ramp: B = 255 - floor(255 * 5 / 6) = 43)
    # when approached from above (v < 0). At full saturation the wheel colour is drawn as is.
    f = np.array([[[1.0, 0.0], [1.0, 1e-6], [1.0, -1e-6], [-1.0, 0.0]]])
    img = F.flow_to_rgb(f, max_flow=float(np.hypot(1.0, 1e-6)))
    assert tuple(int(c) for c in img[0, 0]) == (255, 0, 0)  # fk = 0 exactly
    r, g, b = (int(c) for c in img[0, 1])  # fk just above 0: between (255,0,0) and (255,17,0)
    assert r == 255 and g < 30 and b == 0
    r, g, b = (int(c) for c in img[0, 2])  # fk just below 54: between (255,0,85) and (255,0,43)
    assert r == 255 and g == 0 and b == 43
    # leftwards: the opposite hue, cyan-ish (little red, much green and blue)
    r, g, b = (int(c) for c in img[0, 3])
    assert r < 30 and g > 200 and b > 100
    # downwards is yellow-ish (R and G high, B low); upwards blue/violet (B high, G low)
    down = F.flow_to_rgb(np.array([[[0.0, 1.0]]]), max_flow=1.0)[0, 0].astype(int)
    up = F.flow_to_rgb(np.array([[[0.0, -1.0]]]), max_flow=1.0)[0, 0].astype(int)
    assert down[0] > 150 and down[1] > 150 and down[2] < 30
    assert up[2] > 150 and up[1] < 30


def test_flow_to_rgb_saturation_and_darkening():
    # half the maximum magnitude: half-way between white and the wheel colour (red)
    img = F.flow_to_rgb(np.array([[[0.5, 0.0]]]), max_flow=1.0)
    assert tuple(img[0, 0]) == (255, 127, 127)
    # longer than max_flow: the wheel colour at 75 %
    img = F.flow_to_rgb(np.array([[[5.0, 0.0]]]), max_flow=1.0)
    assert tuple(img[0, 0]) == (191, 0, 0)


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, float("nan")])
def test_flow_to_rgb_rejects_non_positive_max_flow(bad):
    with pytest.raises(ValueError, match="max_flow"):
        F.flow_to_rgb(np.zeros((2, 2, 2)), max_flow=bad)


@pytest.mark.parametrize("size", [3, 4, 21, 64])
def test_color_wheel(size):
    img = F.color_wheel(size)
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    for y, x in [(0, 0), (0, size - 1), (size - 1, 0), (size - 1, size - 1)]:
        assert (img[y, x] == 255).all()
    if size % 2:
        c = size // 2
        assert (img[c, c] == 255).all()
        if size >= 21:
            r, g, b = (int(v) for v in img[c, -1])  # right edge of the disc: red
            assert r == 255 and g < 30 and b < 30
    else:  # the four centre pixels sit at relative radius hypot(0.5, 0.5) / r: pale
        c, r = size // 2, (size - 1) / 2
        assert img[c - 1:c + 1, c - 1:c + 1].min() >= np.floor(255 * (1 - np.hypot(.5, .5) / r))


def test_color_wheel_too_small():
    with pytest.raises(ValueError):
        F.color_wheel(2)


# ----------------------------------------------------------------------------- estimation
@pytest.fixture(scope="module")
def base_texture():
    return texture(7)


def shifted(img, dx, dy):
    """Content moved right by dx and down by dy (so the forward flow is (dx, dy))."""
    return np.roll(img, (dy, dx), axis=(0, 1))


@pytest.mark.parametrize("method", ["dis", "farneback"])
@pytest.mark.parametrize("dx,dy", [(3, 0), (-2, 1), (1, -3)])
def test_estimate_flow_recovers_integer_shift(base_texture, method, dx, dy):
    f0 = base_texture
    f1 = shifted(f0, dx, dy)
    # sanity of the test data itself: content moved right by dx
    assert np.array_equal(f1[20, 20 + dx], f0[20 - dy, 20])
    flow = F.estimate_flow(f0, f1, method=method)
    assert flow.shape == f0.shape[:2] + (2,) and flow.dtype == np.float32
    inner = flow[16:-16, 16:-16]
    assert abs(np.median(inner[..., 0]) - dx) < 0.25
    assert abs(np.median(inner[..., 1]) - dy) < 0.25


def test_estimate_flow_grey_and_presets(base_texture):
    g0 = cv2.cvtColor(base_texture, cv2.COLOR_RGB2GRAY)
    g1 = shifted(g0, 2, 0)
    for preset in ["ultrafast", "fast", "medium"]:
        flow = F.estimate_flow(g0, g1, preset=preset)
        inner = flow[16:-16, 16:-16]
        assert abs(np.median(inner[..., 0]) - 2) < 0.5
        assert abs(np.median(inner[..., 1])) < 0.5


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_estimate_flow_torch_input_matches_uint8(base_texture, method):
    f0 = base_texture
    f1 = shifted(f0, -2, 1)
    t0 = torch.from_numpy(f0).permute(2, 0, 1).float() / 255
    t1 = torch.from_numpy(f1).permute(2, 0, 1).float() / 255
    a = F.estimate_flow(f0, f1, method=method)
    b = F.estimate_flow(t0, t1, method=method)
    np.testing.assert_allclose(b, a, atol=1e-5)
    # float NumPy RGB in [0, 1] too
    c = F.estimate_flow(f0 / 255.0, f1 / 255.0, method=method)
    np.testing.assert_allclose(c, a, atol=1e-5)


def test_estimate_flow_errors(base_texture):
    f0 = base_texture
    with pytest.raises(ValueError, match="method"):
        F.estimate_flow(f0, f0, method="nope")
    with pytest.raises(ValueError, match="preset"):
        F.estimate_flow(f0, f0, preset="nope")
    with pytest.raises(ValueError):
        F.estimate_flow(f0, f0[:-1])
    rgba = np.dstack([f0, np.full(f0.shape[:2], 255, np.uint8)])
    with pytest.raises(ValueError):
        F.estimate_flow(rgba, rgba)
    tiny = np.zeros((7, 20, 3), np.uint8)
    with pytest.raises(ValueError):
        F.estimate_flow(tiny, tiny)
    tiny = np.zeros((20, 5), np.uint8)
    with pytest.raises(ValueError):
        F.estimate_flow(tiny, tiny)
    nan = f0 / 255.0
    nan[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        F.estimate_flow(f0 / 255.0, nan)


# ----------------------------------------------------------------------------- warping
@pytest.mark.parametrize("dx,dy", [(3, 0), (-2, 4), (0, -1)])
def test_warp_numpy_integer_shift_reproduces_frame0(base_texture, dx, dy):
    f0 = base_texture
    f1 = shifted(f0, dx, dy)
    flow = np.zeros(f0.shape[:2] + (2,), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    out = F.warp(f1, flow)
    assert out.shape == f0.shape and out.dtype == f0.dtype
    np.testing.assert_array_equal(out[8:-8, 8:-8], f0[8:-8, 8:-8])
    # single-channel and 2-D images keep their shapes
    out1 = F.warp(f1[..., :1], flow)
    assert out1.shape == f0[..., :1].shape
    np.testing.assert_array_equal(out1[8:-8, 8:-8], f0[8:-8, 8:-8, :1])
    out2 = F.warp(f1[..., 0], flow)
    assert out2.shape == f0.shape[:2]
    np.testing.assert_array_equal(out2[8:-8, 8:-8], f0[8:-8, 8:-8, 0])


def smooth_flow(seed, h, w, amp=3.0):
    rng = np.random.default_rng(seed)
    f = cv2.GaussianBlur(rng.standard_normal((h, w, 2)).astype(np.float32), (0, 0), 6)
    f = f / np.abs(f).max() * amp
    return f.astype(np.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_warp_torch_matches_numpy_and_reference(seed):
    h, w = 40, 56
    img = texture(seed + 10, h, w, sigma=3.0).astype(np.float32) / 255
    flow = smooth_flow(seed, h, w)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    ref = bilinear_reference(img, xs + flow[..., 0], ys + flow[..., 1])

    timg = torch.from_numpy(img).permute(2, 0, 1)[None].double()
    tflow = torch.from_numpy(flow).permute(2, 0, 1)[None]
    out_t = F.warp(timg, tflow)
    assert out_t.shape == timg.shape and out_t.dtype == torch.float64
    out_t = out_t[0].permute(1, 2, 0).numpy()
    out_n = F.warp(img, flow.astype(np.float32))
    assert out_n.shape == img.shape and out_n.dtype == np.float32

    inner = (slice(4, -4), slice(4, -4))
    np.testing.assert_allclose(out_t[inner], ref[inner], atol=1e-9)  # exact bilinear
    np.testing.assert_allclose(out_t[inner], out_n[inner], atol=1e-3)  # cv2.remap (1/32 px steps)
    # unbatched (C, H, W) with (2, H, W)
    out_u = F.warp(timg[0], tflow[0])
    assert out_u.shape == timg[0].shape
    np.testing.assert_allclose(out_u.permute(1, 2, 0).numpy(), out_t, atol=1e-12)


def test_warp_torch_is_differentiable():
    h, w = 16, 20
    img = torch.from_numpy(texture(3, h, w).astype(np.float64) / 255).permute(2, 0, 1)[None]
    img.requires_grad_(True)
    flow = torch.from_numpy(smooth_flow(4, h, w, amp=1.5)).permute(2, 0, 1)[None]
    flow.requires_grad_(True)
    out = F.warp(img, flow)
    (out ** 2).sum().backward()
    for g in (img.grad, flow.grad):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_warp_torch_gradcheck():
    h, w = 5, 6
    rng = np.random.default_rng(5)
    # sample points strictly inside, with fractional parts in [0.2, 0.8] (off pixel boundaries)
    px = rng.integers(0, w - 1, (h, w)) + rng.uniform(0.2, 0.8, (h, w))
    py = rng.integers(0, h - 1, (h, w)) + rng.uniform(0.2, 0.8, (h, w))
    ys, xs = np.mgrid[0:h, 0:w]
    flow = torch.from_numpy(np.stack([px - xs, py - ys])[None]).requires_grad_(True)
    img = torch.from_numpy(rng.uniform(0, 1, (1, 1, h, w))).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda i, f: F.warp(i, f), (img, flow), eps=1e-6, atol=1e-5)


def _boundary_flow(h, w):
    """Flow with sample points on, just inside and just outside the image edges (exact floats)."""
    rng = np.random.default_rng(11)
    choices = np.array([-0.25, 0.0, 0.25, -1.0, 1.0, 2.5, -2.5])
    f = rng.choice(choices, (h, w, 2))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    # force a few points exactly on the edges and just outside
    f[0, 0] = (-0.0, 0.0)
    f[0, 1] = (-1.0, 0.0)  # x = 0 exactly: valid
    f[0, 2] = (-2.25, 0.0)  # x = -0.25: invalid
    f[1, w - 1] = (0.0, 0.0)
    f[2, w - 1] = (0.25, 0.0)  # x = w - 0.75: invalid
    f[h - 1, 3] = (0.0, 0.25)  # y = h - 0.75: invalid
    f[h - 2, 3] = (0.0, 1.0)  # y = h - 1: valid
    sx, sy = xs + f[..., 0], ys + f[..., 1]
    valid = (sx >= 0) & (sx <= w - 1) & (sy >= 0) & (sy <= h - 1)
    assert valid.any() and not valid.all()
    return f, valid


def test_warp_return_valid_numpy_and_torch():
    h, w = 9, 11
    f, expected = _boundary_flow(h, w)
    img = np.random.default_rng(0).uniform(0, 1, (h, w, 3)).astype(np.float32)
    out, valid = F.warp(img, f.astype(np.float32), return_valid=True)
    assert valid.dtype == bool and valid.shape == (h, w)
    np.testing.assert_array_equal(valid, expected)
    np.testing.assert_array_equal(out, F.warp(img, f.astype(np.float32)))

    timg = torch.from_numpy(img).permute(2, 0, 1)[None].repeat(2, 1, 1, 1)
    tflow = torch.from_numpy(f).permute(2, 0, 1)[None].repeat(2, 1, 1, 1)
    tflow[1] = 0.0
    tout, tvalid = F.warp(timg, tflow, return_valid=True)
    assert tvalid.dtype == torch.bool and tvalid.shape == (2, h, w)
    np.testing.assert_array_equal(tvalid[0].numpy(), expected)
    assert tvalid[1].all()
    np.testing.assert_allclose(tout[1].numpy(), timg[1].numpy(), atol=1e-5)  # zero flow
    _, v3 = F.warp(timg[0], tflow[0], return_valid=True)
    assert v3.shape == (h, w)
    np.testing.assert_array_equal(v3.numpy(), expected)


def test_warp_errors():
    img = np.zeros((6, 7, 3), np.float32)
    flow = np.zeros((6, 7, 2), np.float32)
    with pytest.raises(ValueError):
        F.warp(img, torch.zeros(2, 6, 7))
    with pytest.raises(ValueError):
        F.warp(torch.zeros(1, 3, 6, 7), flow)
    with pytest.raises(ValueError):
        F.warp(img, np.zeros((6, 8, 2), np.float32))
    with pytest.raises(ValueError):
        F.warp(img, np.zeros((6, 7, 3), np.float32))
    with pytest.raises(ValueError):
        F.warp(torch.zeros(1, 3, 6, 7), torch.zeros(1, 2, 6, 8))
    with pytest.raises(ValueError):
        F.warp(torch.zeros(2, 3, 6, 7), torch.zeros(1, 2, 6, 7))
    with pytest.raises(ValueError):
        F.warp(torch.zeros(1, 3, 6, 7), torch.zeros(1, 3, 6, 7))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, bool, np.float16])
def test_warp_rejects_dtypes_opencv_cannot_interpolate(dtype):
    with pytest.raises(ValueError, match="image: dtype"):
        F.warp(np.zeros((6, 7), dtype), np.zeros((6, 7, 2), np.float32))


def test_estimate_flow_rejects_float_frames_outside_unit_range(base_texture):
    frame = base_texture.astype(np.float32)  # 0..255 floats: a common mistake
    with pytest.raises(ValueError, match=r"frame0: float images must lie in \[0, 1\]"):
        F.estimate_flow(frame, frame)


def test_atomic_write_keeps_permissions(tmp_path):
    import os
    import stat

    target = tmp_path / "f.flo"
    F.write_flo(target, np.zeros((2, 3, 2), np.float32))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    os.chmod(target, 0o640)
    F.write_flo(target, np.ones((2, 3, 2), np.float32))
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_warp_error(base_texture):
    f0 = base_texture
    zero = np.zeros(f0.shape[:2] + (2,), np.float32)
    assert F.warp_error(f0, f0, zero) == 0.0
    dx, dy = 3, -2
    f1 = shifted(f0, dx, dy)
    true = zero.copy()
    true[..., 0], true[..., 1] = dx, dy
    e_true = F.warp_error(f0, f1, true)
    e_zero = F.warp_error(f0, f1, zero)
    # reference for the zero-flow baseline: the plain mean absolute difference
    np.testing.assert_allclose(e_zero, np.abs(f0.astype(float) - f1.astype(float)).mean(),
                               rtol=1e-9)
    assert e_zero > 5
    assert e_true < e_zero / 4
    assert e_true < 1e-9  # np.roll is circular, so every valid sample matches exactly
