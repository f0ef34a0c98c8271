"""``s3 segment`` and the contact sheets of notebooks 05-06; ``s3 train|eval video`` end to end."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from s3lib.models import SegmentationNet, save_checkpoint
from s3lib.segment import checkpoint_size, contact_sheet, segment_to_png


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    net = SegmentationNet(3, width=4)
    path = tmp_path / "net.pt"
    save_checkpoint(path, net, {"size": [32, 48]})
    return path


def s3(*args, cwd):
    return subprocess.run([sys.executable, "-m", "s3lib", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


def test_contact_sheet_layout():
    frames = np.zeros((3, 4, 5, 3), np.uint8)
    frames[1] = 200
    labels = np.zeros((3, 4, 5), np.int64)
    sheet = contact_sheet(frames, labels, 2, gap=1)
    assert sheet.shape == (9, 17, 3)
    assert (sheet[:4, 6:11] == 200).all() and (sheet[4] == 255).all()  # frame 1, white gap row
    assert not (sheet[5:, :5] == 0).all()  # the overlay colours the segments


def test_checkpoint_size_of_cube_and_video():
    assert checkpoint_size({"size": 64}) == (64, 64)
    assert checkpoint_size({"size": [32, 48]}) == (32, 48)


def test_segment_an_image(checkpoint, tmp_path):
    img = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "in.png"), img)
    line = segment_to_png(checkpoint, tmp_path / "in.png", tmp_path / "out.png")
    out = cv2.imread(str(tmp_path / "out.png"))
    assert out.shape == (2 * 32 + 2, 48, 3)  # resized to the training size, frame over segments
    shares = [float(v) for v in line.split("segment shares")[1].split()]
    assert len(shares) == 3 and sum(shares) == pytest.approx(1, abs=0.02)


def test_segment_a_video_contact_sheet(checkpoint, slide_video, tmp_path):
    res = s3("segment", "--checkpoint", checkpoint, slide_video, "--out", tmp_path / "s.png",
             "--frames", "4", "--size", "24x16", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "[0, 6, 13, 19]" in res.stdout
    assert cv2.imread(str(tmp_path / "s.png")).shape == (2 * 16 + 2, 4 * 24 + 3 * 2, 3)


@pytest.mark.parametrize("make_args, message", [
    (lambda c, t: ["--checkpoint", c, t / "missing.png", "--out", t / "o.png"], "missing.png"),
    (lambda c, t: ["--checkpoint", c, t / "bad.png", "--out", t / "o.png"], "bad.png"),
    (lambda c, t: ["--checkpoint", c, t / "bad.png", "--out", t / "o.jpg"], "o.jpg"),
    (lambda c, t: ["--checkpoint", t / "none.pt", t / "bad.png", "--out", t / "o.png"], "none.pt"),
])
def test_segment_bad_input(checkpoint, tmp_path, make_args, message):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    res = s3("segment", *make_args(checkpoint, tmp_path), cwd=tmp_path)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o.png").exists()


def test_train_and_eval_video_cli(video_cache, tmp_path):
    res = s3("train", "video", "--data", video_cache, "--loss", "entropy", "--out", tmp_path / "r",
             "--steps", "2", "--segments", "3", "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["step"] == 2 and "miou" not in summary
    res = s3("eval", "video", "--data", video_cache, "--checkpoint", tmp_path / "r" / "checkpoint.pt",
             "--json", cwd=tmp_path)
    out = json.loads(res.stdout)
    assert out["loss_name"] == "entropy" and len(out["segment_fractions"]) == 3
    assert out["loss"] == pytest.approx(summary["heldout_loss"], rel=1e-5)


@pytest.mark.parametrize("args, message", [
    (["train", "video", "--out", "r", "--steps", "1"], "--data"),
    (["train", "video", "--data", "nowhere", "--out", "r", "--steps", "1"], "nowhere"),
    (["eval", "video", "--checkpoint", "x.pt"], "--data"),
])
def test_video_cli_bad_input(tmp_path, args, message):
    res = s3(*args, cwd=tmp_path)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr
