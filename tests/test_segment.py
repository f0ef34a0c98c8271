"""``s3 segment`` and the contact sheets of notebooks 05-06; ``s3 train|eval video`` end to end."""

import json

import cv2
import numpy as np
import pytest
import torch

from conftest import s3
from s3lib.models import SegmentationNet, save_checkpoint
from s3lib.segment import checkpoint_size, contact_sheet, segment_to_png


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    net = SegmentationNet(3, width=4)
    path = tmp_path / "net.pt"
    save_checkpoint(path, net, {"size": [32, 48]})
    return path


pytestmark = pytest.mark.usefixtures("restore_global_state")


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


def test_segment_a_video_contact_sheet(checkpoint, slide_video, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = s3(capsys, "segment", "--checkpoint", checkpoint, slide_video,
                        "--out", tmp_path / "s.png", "--frames", "4", "--size", "24x16")
    assert code == 0, err
    assert "[0, 6, 13, 19]" in out
    assert cv2.imread(str(tmp_path / "s.png")).shape == (2 * 16 + 2, 4 * 24 + 3 * 2, 3)


@pytest.mark.parametrize("make_args, message", [
    (lambda c, t: ["--checkpoint", c, t / "missing.png", "--out", t / "o.png"], "missing.png"),
    (lambda c, t: ["--checkpoint", c, t / "bad.png", "--out", t / "o.png"], "bad.png"),
    (lambda c, t: ["--checkpoint", c, t / "bad.png", "--out", t / "o.jpg"], "o.jpg"),
    (lambda c, t: ["--checkpoint", t / "none.pt", t / "bad.png", "--out", t / "o.png"], "none.pt"),
])
def test_segment_bad_input(checkpoint, tmp_path, monkeypatch, capsys, make_args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    code, out, err = s3(capsys, "segment", *make_args(checkpoint, tmp_path))
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "o.png").exists()


def test_train_and_eval_video_cli(video_cache, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = s3(capsys, "train", "video", "--data", video_cache, "--loss", "entropy",
                        "--out", tmp_path / "r", "--steps", "2", "--num-segments", "3", "--quiet")
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["step"] == 2 and "miou" not in summary
    code, out, err = s3(capsys, "eval", "video", "--data", video_cache,
                        "--checkpoint", tmp_path / "r" / "checkpoint.pt", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["loss_name"] == "entropy" and len(result["segment_fractions"]) == 3
    assert result["loss"] == pytest.approx(summary["heldout_loss"], rel=1e-5)


@pytest.mark.parametrize("args, message", [
    (["train", "video", "--out", "r", "--steps", "1"], "--data"),
    (["train", "video", "--data", "nowhere", "--out", "r", "--steps", "1"], "nowhere"),
    (["eval", "video", "--checkpoint", "x.pt"], "--data"),
])
def test_video_cli_bad_input(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = s3(capsys, *args)
    assert code == 2 and message in err and "Traceback" not in err
