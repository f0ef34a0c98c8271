"""s3 pretrain (one process and a 2-process gloo torchrun), s3 finetune on VOC-layout and
shapes fixtures, s3 eval voc2007, and the transfer grid's summary (notebook 07)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import s3
from s3lib.fcn import FCN8s, VGG16Classifier, batchnorm_layers
from s3lib.finetune import (FinetuneConfig, _SeededBatches, learning_rate, mean_ap,
                            multilabel_loss, random_crop, trained_parameters)
from s3lib.models import load_checkpoint, save_checkpoint
from s3lib.pretrain import ShuffledFlow
from s3lib.transfer import format_table, summarise, verdict
from voc_fixture import write_voc_fixture

pytestmark = pytest.mark.usefixtures("restore_global_state")
REPO = Path(__file__).resolve().parents[1]
TINY = ["--data", "shapes", "--scenes", "16", "--batch", "4", "--width", "0.0625",
        "--bn-batches", "2", "--eval-every", "1"]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """A tiny S3 pre-training run (affine loss), BN folded."""
    run = tmp_path_factory.mktemp("pretrain") / "run"
    from s3lib.cli import main

    assert main(["pretrain", *TINY, "--steps", "3", "--out", str(run), "--quiet"]) == 0
    return run


def test_pretrain_writes_a_folded_fcn(pretrained, tmp_path, capsys):
    model, config = load_checkpoint(pretrained / "checkpoint.pt")
    assert isinstance(model, FCN8s) and not batchnorm_layers(model)
    assert config["batchnorm"] is False and config["width"] == 0.0625
    assert config["pretrain"]["loss"] == "affine" and config["size"] == [48, 48]
    log = _log(pretrained)
    assert [r["step"] for r in log] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in log)
    # the same seed gives the same network; another seed another one
    again = tmp_path / "again"
    s3(capsys, "pretrain", *TINY, "--steps", "3", "--out", again, "--quiet", check=True)
    other = tmp_path / "other"
    s3(capsys, "pretrain", *TINY, "--steps", "3", "--seed", "1", "--out", other, "--quiet",
       check=True)
    a, b, c = (_weights(p / "checkpoint.pt") for p in (pretrained, again, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["score_fr.weight"], c["score_fr.weight"])


def test_pretrain_variants_and_bad_settings(tmp_path, capsys):
    for flags in (["--loss", "entropy"], ["--shuffle-flow"], ["--loss", "supervised"]):
        run = tmp_path / flags[-1].strip("-")
        s3(capsys, "pretrain", *TINY, *flags, "--steps", "2", "--out", run, "--quiet",
           check=True)
        model, config = load_checkpoint(run / "checkpoint.pt")
        assert isinstance(model, FCN8s) and config["batchnorm"] is False
    bad = s3(capsys, "pretrain", "--data", "cube", "--loss", "supervised", "--out", tmp_path / "x")
    assert bad.returncode == 2 and "supervised pre-training needs labels" in bad.stderr
    bad = s3(capsys, "pretrain", "--data", str(tmp_path / "nowhere"), "--out", tmp_path / "x")
    assert bad.returncode == 2 and "nowhere" in bad.stderr
    bad = s3(capsys, "pretrain", *TINY, "--width", "0.001", "--steps", "1", "--out",
             tmp_path / "x")
    assert bad.returncode == 2 and "width: 0.001 leaves conv1_1" in bad.stderr


def test_shuffled_flow_is_a_derangement():
    from s3lib.data.pairs import FlowPairs

    n = 9
    flows = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 2, 4, 4).clone()
    pairs = FlowPairs(torch.rand(n, 3, 4, 4), flows)
    shuffled = ShuffledFlow(pairs, seed=3)
    got = [int(shuffled[i]["flow"][0, 0, 0]) for i in range(n)]
    assert sorted(got) == list(range(n)) and all(g != i for i, g in enumerate(got))
    assert torch.equal(shuffled[4]["image"], pairs[4]["image"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(nproc: int, out: Path, *flags: str, tiny: list[str] = TINY) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "s3lib",
           "pretrain", *tiny, *flags, "--out", str(out), "--quiet"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count('"checkpoint"') == 1  # rank 0 reports, once


def test_two_gloo_processes_train_the_network_of_one(tmp_path, capsys):
    """Without batch norm (whose statistics are per process on the CPU) and dropout (whose
    masks are), 2 processes with 2 pairs each give the run of 1 process with the batch of 4:
    the same losses, and weights that differ by far less than the training moved them.

    On the cube's 64x64 pairs: on 48x48 shapes pool5 is 1x1, so with the zero-initialised skip
    heads the first logits are the same at every pixel, every segment fits the same motion,
    and the loss's gradient is rounding noise (about 1e-11): Adam's first steps then follow
    that noise, which two batch splits (and two kernel paths) do not share."""
    flags = ["--steps", "4", "--no-batchnorm", "--dropout", "0", "--lr", "3e-3"]
    cube = [*TINY[TINY.index("--batch"):], "--data", "cube"]
    s3(capsys, "pretrain", *cube, *flags, "--out", tmp_path / "one", "--quiet", check=True)
    _torchrun(2, tmp_path / "two", *flags, tiny=cube)
    one, two = _log(tmp_path / "one"), _log(tmp_path / "two")
    np.testing.assert_allclose([r["loss"] for r in two], [r["loss"] for r in one], rtol=1e-4)
    assert one[-1]["loss"] < 0.8 * one[0]["loss"]  # a real descent, not a walk on a saddle
    s3(capsys, "pretrain", *cube, "--steps", "1", "--lr", "1e-12", "--no-batchnorm", "--dropout", "0", "--out",
       tmp_path / "start", "--quiet", check=True)
    w1, w2, w0 = (_weights(tmp_path / p / "checkpoint.pt") for p in ("one", "two", "start"))
    moved = sum(float((w1[k] - w0[k]).norm() ** 2) for k in w1) ** 0.5
    apart = sum(float((w1[k] - w2[k]).norm() ** 2) for k in w1) ** 0.5
    assert moved > 1e-3 and apart < 0.02 * moved, (apart, moved)


def test_two_gloo_processes_with_batchnorm_fold_shared_statistics(tmp_path):
    _torchrun(2, tmp_path / "bn", "--steps", "2")
    model, config = load_checkpoint(tmp_path / "bn" / "checkpoint.pt")
    assert config["world"] == 2 and not batchnorm_layers(model)
    assert [r["step"] for r in _log(tmp_path / "bn")] == [1, 2]


# ----------------------------------------------------------------------------- fine-tuning
@pytest.fixture(scope="module")
def voc_root(tmp_path_factory) -> Path:
    return write_voc_fixture(tmp_path_factory.mktemp("voc"), n_trainval=12, n_test=10)


FT = ["--steps", "3", "--batch", "4", "--size", "32", "--test-crops", "2", "--bn-batches", "2",
      "--quiet"]


def test_finetune_voc2007_then_eval(pretrained, voc_root, tmp_path, capsys):
    run = tmp_path / "ft"
    got = s3(capsys, "finetune", "voc2007", "--root", voc_root, "--init",
             pretrained / "checkpoint.pt", "--train-from", "fc6", "--out", run, "--json", *FT,
             check=True)
    result = json.loads(got.stdout)
    assert set(result["ap"]) <= set(__import__("s3lib.data.voc", fromlist=["CLASSES"]).CLASSES)
    assert 0 <= result["map"] <= 1 and result["steps"] == 3
    clf, config = load_checkpoint(run / "checkpoint.pt")
    assert isinstance(clf, VGG16Classifier) and clf.num_classes == 20
    # fc6 onwards trained, the blocks frozen: exactly the pre-trained ones
    trunk = _weights(pretrained / "checkpoint.pt")
    mine = _weights(run / "checkpoint.pt")
    assert all(torch.equal(mine[k], trunk[k]) for k in trunk if k.startswith("features."))
    assert not torch.equal(mine["fc6.fc6.weight"], trunk["fc6.fc6.weight"].flatten(1))
    # s3 eval voc2007 scores it again to the same numbers
    again = json.loads(s3(capsys, "eval", "voc2007", "--checkpoint", run / "checkpoint.pt",
                          "--json", check=True).stdout)
    assert again["map"] == pytest.approx(result["map"], abs=1e-9) and again["images"] == 10


def test_finetune_refuses_what_cannot_work(pretrained, voc_root, tmp_path, capsys):
    bad = s3(capsys, "finetune", "voc2007", "--root", voc_root, "--train-from", "conv3", *FT)
    assert bad.returncode == 2 and "conv3" in bad.stderr  # argparse names the choices
    bad = s3(capsys, "finetune", "voc2007", "--root", voc_root, "--init",
             pretrained / "checkpoint.pt", "--width", "0.125", *FT)
    assert bad.returncode == 2 and "width 0.0625" in bad.stderr and "0.125" in bad.stderr
    from s3lib.models import SegmentationNet

    unet = tmp_path / "unet.pt"
    save_checkpoint(unet, SegmentationNet(3, 4, levels=1), {"size": 32})
    bad = s3(capsys, "finetune", "voc2007", "--root", voc_root, "--init", unet, *FT)
    assert bad.returncode == 2 and "architecture is 's3-unet-v1', expected 'fcn8s-vgg16'" in bad.stderr
    bad = s3(capsys, "finetune", "voc2007", "--root", tmp_path / "novoc", *FT)
    assert bad.returncode == 2 and "s3 download voc2007" in bad.stderr
    bad = s3(capsys, "finetune", "voc2007", *FT)
    assert bad.returncode == 2 and "--root" in bad.stderr
    with pytest.raises(ValueError, match="train_from"):
        FinetuneConfig(train_from="fc9").resolved()


def test_finetune_shapes_prints_map_and_per_class_ap(capsys):
    got = s3(capsys, "finetune", "shapes", "--labelled", "16", "--test-images", "24",
             "--width", "0.0625", "--json", *FT, check=True)
    result = json.loads(got.stdout)
    assert len(result["ap"]) == 6 and result["map"] == pytest.approx(np.mean(list(
        result["ap"].values())))


def test_recipes_follow_the_protocol():
    voc = FinetuneConfig(task="voc2007", root="x").resolved()
    assert (voc.steps, voc.lr, voc.lr_step, voc.batch, voc.size, voc.momentum) == \
        (80_000, 1e-3, 10_000, 16, 224, 0.9)
    assert (voc.weight_decay, voc.clip, voc.test_crops, voc.scale_min, voc.scale_max) == \
        (1e-6, 10.0, 10, 0.5, 2.0)
    assert learning_rate(voc, 9_999) == 1e-3 and learning_rate(voc, 10_000) == 5e-4
    assert learning_rate(voc, 79_999) == pytest.approx(1e-3 / 2 ** 7)


def test_trained_parameters_per_regime():
    from s3lib.fcn import VGG16Classifier

    clf = VGG16Classifier(20, 0.0625)
    names = lambda r: {n.split(".")[0] for n, _ in trained_parameters(clf, r)}  # noqa: E731
    assert names("fc8") == {"fc8"} and names("fc6") == {"fc6", "fc7", "fc8"}
    assert names("all") == {"features", "fc6", "fc7", "fc8"}


def test_multilabel_loss_ignores_difficult_labels():
    """Summed over the classes, averaged over the images (the protocol's loss layer)."""
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0]])
    targets = torch.tensor([[1.0, -1.0, 0.0], [1.0, 1.0, -1.0]])
    expect = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0)) + 3 * np.log(2)) / 2
    assert float(multilabel_loss(logits, targets)) == pytest.approx(expect, rel=1e-6)
    changed = multilabel_loss(torch.tensor([[2.0, -1.0, 50.0], [0.0, 0.0, 0.0]]), targets)
    assert float(changed) == pytest.approx(expect, rel=1e-6)


def test_random_crop_is_the_protocols_window():
    image = np.zeros((60, 90, 3), np.uint8)
    image[:, :45] = 255  # left half white
    sides = []
    for seed in range(200):
        crop = random_crop(image, 32, np.random.default_rng(seed))
        assert crop.shape == (3, 32, 32) and crop.dtype == np.float32
        assert 0 <= crop.min() and crop.max() <= 1
        sides.append(crop)
    again = random_crop(image, 32, np.random.default_rng(5))
    assert np.array_equal(again, sides[5])
    # mirrored about half the time: white on the right
    right_white = np.mean([c[0, :, -1].mean() > c[0, :, 0].mean() for c in sides
                           if abs(c[0, :, -1].mean() - c[0, :, 0].mean()) > 0.5])
    assert 0.3 < right_white < 0.7


def test_seeded_batches_repeat_and_cover():
    a = list(zip(range(5), _SeededBatches(10, 4, seed=1)))
    b = list(zip(range(5), _SeededBatches(10, 4, seed=1)))
    assert [x for _, x in a] == [x for _, x in b]
    first = [i for _, batch in a[:2] for i, _ in batch[:]] + [i for i, _ in a[2][1][:2]]
    assert sorted(first) == list(range(10))  # an epoch without replacement
    skipped = list(zip(range(3), _SeededBatches(10, 4, seed=1, skip=2)))
    assert [x for _, x in skipped] == [x for _, x in a[2:5]]


def test_mean_ap_excludes_difficult_and_matches_metrics():
    from s3lib.metrics import average_precision

    scores = torch.tensor([[0.9, 0.1], [0.8, 0.7], [0.1, 0.2], [0.5, 0.9]])
    targets = torch.tensor([[1, -1], [0, 1], [-1, -1], [-1, 1]], dtype=torch.float32)
    result = mean_ap(scores, targets, ("a", "b"))
    assert result["ap"]["a"] == pytest.approx(average_precision(scores[:, 0], targets[:, 0]))
    assert result["ap"]["a"] == 1.0 and result["map"] == pytest.approx((1.0 + 1.0) / 2)


# ----------------------------------------------------------------------------- the grid
def _records(gains: dict[str, list[float]]) -> list[dict]:
    """Grid records whose paired differences against random init are ``gains[arm]``."""
    base = [0.40, 0.43, 0.38]
    return [{"arm": arm, "regime": "all", "seed": seed, "map": base[seed] + g[seed]}
            for arm, g in {"random": [0.0] * 3, **gains}.items() for seed in range(3)]


def test_summary_and_verdict():
    records = _records({"s3-affine": [0.10, 0.12, 0.08], "shuffled-flow": [0.01, -0.02, 0.0]})
    table = summarise(records)
    row = table[("s3-affine", "all")]
    assert row["n"] == 3 and row["diffs"] == pytest.approx([0.10, 0.12, 0.08])
    assert row["diff_mean"] == pytest.approx(0.10) and row["diff_std"] == pytest.approx(0.02)
    assert row["mean"] == pytest.approx(np.mean([0.50, 0.55, 0.46]))
    assert verdict(table, "s3-affine", "all") == "helps"
    assert verdict(table, "shuffled-flow", "all").startswith("no evidence")
    # just above and just below the spread
    assert verdict(summarise(_records({"s3-affine": [0.02, 0.04, 0.07]})), "s3-affine", "all") == "helps"
    assert verdict(summarise(_records({"s3-affine": [0.005, 0.01, 0.08]})), "s3-affine",
                   "all").startswith("no evidence")
    # a control that helps as much takes the claim away
    table = summarise(_records({"s3-affine": [0.10, 0.12, 0.08],
                                "shuffled-flow": [0.09, 0.1, 0.11]}))
    assert "control" in verdict(table, "s3-affine", "all")
    # a gain inside the spread is no evidence, nor is one seed that loses
    for gains in ([0.01, 0.06, 0.0005], [0.2, 0.2, -0.01]):
        table = summarise(_records({"s3-affine": gains, "shuffled-flow": [0.0] * 3}))
        assert verdict(table, "s3-affine", "all").startswith("no evidence"), gains
    assert "s3-affine" in format_table(table)


def test_pretrain_streams_video_caches_with_workers(video_cache, tmp_path, capsys):
    run = tmp_path / "video"
    s3(capsys, "pretrain", "--data", video_cache.parent, "--width", "0.0625", "--batch", "2",
       "--steps", "2", "--workers", "2", "--bn-batches", "1", "--loss", "entropy", "--out", run,
       "--quiet", check=True)
    model, config = load_checkpoint(run / "checkpoint.pt")
    assert config["size"] == [32, 48] and config["pretrain"]["width"] == 0.0625
    assert isinstance(model, FCN8s) and config["pretrain"]["data"] == str(video_cache.parent)


def test_resumed_pretraining_is_the_uninterrupted_run(tmp_path, monkeypatch, capsys):
    import s3lib.pretrain as pre

    flags = [*TINY, "--steps", "6", "--save-every", "2", "--quiet"]
    s3(capsys, "pretrain", *flags, "--out", tmp_path / "whole", check=True)
    real, calls = pre._loss, []

    def crash(*args):
        calls.append(1)
        if len(calls) == 4:  # the 4th iteration: after the state of step 2 was written
            raise OSError("simulated crash")
        return real(*args)

    monkeypatch.setattr(pre, "_loss", crash)
    assert s3(capsys, "pretrain", *flags, "--out", tmp_path / "cut").returncode == 2
    assert torch.load(tmp_path / "cut" / "state.pt", weights_only=True)["step"] == 2
    monkeypatch.setattr(pre, "_loss", real)
    s3(capsys, "pretrain", *flags, "--resume", "--out", tmp_path / "cut", check=True)
    a, b = _weights(tmp_path / "whole" / "checkpoint.pt"), _weights(tmp_path / "cut" / "checkpoint.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in _log(tmp_path / "cut")] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in _log(tmp_path / "cut")] == [r["loss"] for r in _log(tmp_path / "whole")]
    other = s3(capsys, "pretrain", *TINY, "--steps", "6", "--lr", "1e-2", "--resume", "--out",
               tmp_path / "cut", "--quiet")
    assert other.returncode == 2 and "written with other settings (lr)" in other.stderr


def test_resumed_finetuning_is_the_uninterrupted_run(voc_root, tmp_path, monkeypatch, capsys):
    import s3lib.finetune as ft

    flags = ["voc2007", "--root", voc_root, "--width", "0.0625", "--steps", "6",
             "--eval-every", "2", "--batch", "4", "--size", "32", "--test-crops", "2",
             "--bn-batches", "2", "--json", "--quiet"]
    whole = json.loads(s3(capsys, "finetune", *flags, "--out", tmp_path / "whole",
                          check=True).stdout)
    real, calls = ft.multilabel_loss, []

    def crash(*args):
        calls.append(1)
        if len(calls) == 4:
            raise OSError("simulated crash")
        return real(*args)

    monkeypatch.setattr(ft, "multilabel_loss", crash)
    assert s3(capsys, "finetune", *flags, "--out", tmp_path / "cut").returncode == 2
    monkeypatch.setattr(ft, "multilabel_loss", real)
    again = json.loads(s3(capsys, "finetune", *flags, "--resume", "--out", tmp_path / "cut",
                          check=True).stdout)
    assert again["map"] == whole["map"] and again["steps"] == 6
    a, b = _weights(tmp_path / "whole" / "checkpoint.pt"), _weights(tmp_path / "cut" / "checkpoint.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in _log(tmp_path / "cut")] == [r["loss"] for r in _log(tmp_path / "whole")]
