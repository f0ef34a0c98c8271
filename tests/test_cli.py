"""The `s3` command (console script and `python -m s3lib`).

Most tests call :func:`s3lib.cli.main` in this process (:func:`s3`): an interpreter with torch
takes seconds to start. Three keep a real process, for what only one can show: ``python -m
s3lib`` and the console script start, and a tiny ``train cube`` + ``eval cube --json`` end to
end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import s3lib.train
from conftest import Result, s3 as _s3
from s3lib.flow import read_flo


def run(*args, check=True):
    """``python -m s3lib ARGS...`` in a fresh interpreter (only for the entry-point tests)."""
    return subprocess.run([sys.executable, "-m", "s3lib", *args], capture_output=True,
                          text=True, check=check)


pytestmark = pytest.mark.usefixtures("restore_global_state")


def s3(capsys, *args, check=True) -> Result:
    """:func:`conftest.s3`, checking the status by default."""
    return _s3(capsys, *args, check=check)


def test_help_lists_the_subcommands():
    out = run("--help").stdout  # a real `python -m s3lib`
    for cmd in ("env", "clips", "flow"):
        assert cmd in out


def test_console_script_is_installed():
    script = Path(sys.executable).parent / ("s3.exe" if os.name == "nt" else "s3")
    assert script.is_file(), "pip install -e . should create the s3 console script"
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    assert "usage: s3" in out.stdout


def test_env_prints_json(capsys):
    rep = json.loads(s3(capsys, "env").stdout)
    assert rep["torch_threads"] >= 1 and "opencv" in rep


def test_clips_lists_the_bundled_clips_with_credit(capsys):
    out = s3(capsys, "clips").stdout
    assert "bigbuckbunny" in out and "1280x720" in out and "Blender Foundation" in out


def test_flow_writes_a_readable_flo_file(tmp_path, capsys):
    out = tmp_path / "f.flo"
    res = s3(capsys, "flow", "bigbuckbunny", "--frame", "40", "--gap", "2", "--size", "96x54",
             "--out", out)
    flow = read_flo(out)
    assert flow.shape == (54, 96, 2)
    mean = float(np.hypot(flow[..., 0], flow[..., 1]).mean())
    assert f"mean |flow| {mean:.2f} px" in res.stdout


def test_flow_writes_a_png(tmp_path, capsys):
    import cv2

    out = tmp_path / "f.png"
    s3(capsys, "flow", "bigbuckbunny", "--frame", "40", "--size", "64x36", "--out", out)
    assert cv2.imread(str(out)).shape == (36, 64, 3)


@pytest.mark.parametrize("args, message", [
    (["flow", "no_such_clip", "--out", "x.flo"], "not a clip bundled"),
    (["flow", "bigbuckbunny", "--out", "x.txt"], "expected a .flo or .png"),
    (["flow", "bigbuckbunny", "--frame", "131", "--out", "x.flo"], "lower --frame or --gap"),
    (["flow", "bigbuckbunny", "--size", "12", "--out", "x.flo"], "WIDTHxHEIGHT"),
    (["flow", "bigbuckbunny", "--gap", "0", "--out", "x.flo"], "--gap"),
])
def test_bad_input_gives_a_one_line_error(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    res = s3(capsys, *args, check=False)
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr


def test_train_and_eval_cube_tiny(tmp_path):
    """End to end in real processes: `python -m s3lib train cube`, then `eval cube --json`."""
    run_dir = tmp_path / "run"
    res = run("train", "cube", "--out", str(run_dir), "--steps", "2", "--size", "16",
              "--num-segments", "3", "--quiet")
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["step"] == 2 and 0 <= summary["miou"] <= 1
    assert (run_dir / "checkpoint.pt").is_file()
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 2
    out = json.loads(run("eval", "cube", "--checkpoint", str(run_dir / "checkpoint.pt"),
                         "--json").stdout)
    assert set(out) >= {"miou", "fg_ari"} and 0 <= out["miou"] <= 1


@pytest.mark.parametrize("args, message", [
    (["train", "cube", "--out", "r", "--steps", "1", "--num-segments", "1"], "num_segments"),
    (["train", "cube", "--out", "r", "--steps", "1", "--size", "18"], "size"),
    (["eval", "cube", "--checkpoint", "missing.pt"], "missing.pt"),
])
def test_train_and_eval_bad_input(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    res = s3(capsys, *args, check=False)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


def test_help_lists_the_data_subcommands(capsys):
    out = s3(capsys, "--help").stdout
    assert "prepare-video" in out and "download" in out
    assert "--shard I/N" in s3(capsys, "prepare-video", "--help").stdout


def test_prepare_video_on_bikes_then_skips(tmp_path, capsys):
    # bikes' first cut is between frames 29 and 30 (see tests/test_video.py): 40 frames make
    # two shots, 30 + 10 frames, so 29 + 9 = 38 pairs with gap 1 and none across the cut
    out = tmp_path / "cache"
    args = ("prepare-video", "bikes", "--out", str(out), "--size", "80x34", "--max-frames", "40",
            "--quiet")
    res = s3(capsys, *args)
    assert f"{out / 'bikes'}: 40 frames 80x34, 2 shot(s), 38 flow pairs (dis, gap 1)" in res.stdout
    index = json.loads((out / "bikes" / "index.json").read_text())
    assert index["cuts"] == [30] and index["settings"]["max_frames"] == 40
    stamp = (out / "bikes" / "flows.npy").stat().st_mtime_ns
    again = s3(capsys, *args[:-1])  # with progress: says it skips
    assert "skip" in again.stderr and (out / "bikes" / "flows.npy").stat().st_mtime_ns == stamp
    assert again.stdout == res.stdout


def test_prepare_video_shard_and_workers(tmp_path, capsys):
    import cv2

    videos = tmp_path / "videos"
    videos.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        writer = cv2.VideoWriter(str(videos / f"{name}.avi"), cv2.VideoWriter_fourcc(*"MJPG"),
                                 10, (32, 24))
        base = cv2.GaussianBlur(rng.uniform(0, 255, (24, 48, 3)).astype(np.uint8), (0, 0), 2)
        for k in range(4):
            writer.write(np.ascontiguousarray(base[:, 8 - k:40 - k]))
        writer.release()
    res = s3(capsys, "prepare-video", videos, "--out", tmp_path / "out", "--shard", "1/2",
             "--workers", "2", "--quiet")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["b"]
    assert "b: 4 frames 32x24, 1 shot(s), 3 flow pairs" in res.stdout
    res = s3(capsys, "prepare-video", videos, "--out", tmp_path / "out", "--shard", "5/7",
             "--quiet")
    assert "no videos in this shard" in res.stdout


@pytest.mark.parametrize("shard", ["2/2", "-1/3", "0/0", "1", "a/b"])
def test_prepare_video_bad_shard(tmp_path, capsys, shard):
    res = s3(capsys, "prepare-video", "bikes", "--out", tmp_path, "--shard", shard, check=False)
    assert res.returncode == 2 and "--shard" in res.stderr and "I/N" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("extra, message", [
    (["--gap", "0"], "--gap"), (["--workers", "0"], "--workers"), (["--size", "4x4"], "8x8"),
    (["--flow", "lk"], "--flow"), (["--max-frames", "1"], "max_frames"),
])
def test_prepare_video_bad_options(tmp_path, capsys, extra, message):
    res = s3(capsys, "prepare-video", "bikes", "--out", tmp_path, *extra, check=False)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


def test_prepare_video_corrupt_file_is_a_one_line_error(tmp_path, capsys):
    junk = tmp_path / "x.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(4000))
    res = s3(capsys, "prepare-video", junk, "--out", tmp_path / "out", "--quiet", check=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    error = [line for line in res.stderr.splitlines() if line.startswith("s3 prepare-video")]
    assert len(error) == 1 and "x.mp4" in error[0] and "OpenCV cannot" in error[0]


@pytest.fixture
def fake_download(monkeypatch):
    """A stand-in for s3lib.download (tests the wiring only, without the network)."""
    import types

    from s3lib import cli

    calls = []
    fake = types.ModuleType("s3lib.download")

    def download_dataset(name, root=None, manifest=None, progress=True):
        calls.append({"name": name, "root": root, "manifest": manifest, "progress": progress})
        if name == "voc2007" and root == "fail-os":
            raise OSError("HTTP 404 for http://example.invalid/VOC.tar")
        if name == "voc2007" and root == "fail-value":
            raise ValueError("VOC.tar: sha256 mismatch")
        return Path(root or "data") / name

    fake.download_dataset = download_dataset
    monkeypatch.setitem(sys.modules, "s3lib.download", fake)
    return cli, calls


def test_download_calls_download_dataset(fake_download, tmp_path, capsys):
    cli, calls = fake_download
    assert cli.main(["download", "sintel", "--root", str(tmp_path), "--quiet"]) == 0
    assert calls == [{"name": "sintel", "root": str(tmp_path), "manifest": None,
                      "progress": False}]
    assert capsys.readouterr().out.strip() == f"sintel: {tmp_path / 'sintel'}"
    assert cli.main(["download", "voc2007", "--manifest", "m.json"]) == 0
    assert calls[-1] == {"name": "voc2007", "root": None, "manifest": "m.json", "progress": True}


@pytest.mark.parametrize("root, message", [("fail-os", "HTTP 404"), ("fail-value", "sha256")])
def test_download_errors_are_one_line(fake_download, capsys, root, message):
    cli, _ = fake_download
    assert cli.main(["download", "voc2007", "--root", root]) == 2
    err = capsys.readouterr().err
    assert err.startswith("s3 download: error:") and message in err and len(err.splitlines()) == 1


def test_download_rejects_unknown_names(fake_download, capsys):
    cli, calls = fake_download
    with pytest.raises(SystemExit) as exc:
        cli.main(["download", "imagenet"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err and not calls


def test_train_flags_reach_the_config():
    from s3lib.cli import train_config

    default = train_config(["cube", "--out", "runs/x"])
    assert default == s3lib.train.TrainConfig()  # the CLI adds no defaults of its own
    first = train_config(["cube", "--out", "runs/x", "--levels", "2", "--width", "32", "--lr",
                          "2e-3", "--schedule", "constant", "--dead-by", "mass",
                          "--reseed-until", "1", "--threads", "3", "--steps", "10",
                          "--no-augment", "--num-segments", "4", "--eps", "1e-7",
                          "--gap", "5", "--combine", "blend"])
    assert (first.levels, first.width, first.lr, first.schedule, first.dead_by,
            first.reseed_until, first.threads, first.steps, first.minutes, first.augment,
            first.num_segments, first.eps, first.gap, first.combine) == (
        2, 32, 2e-3, "constant", "mass", 1.0, 3, 10, None, False, 4, 1e-7, 5, "blend")
    assert train_config(["cube", "--out", "x", "--minutes", "2"]).steps is None


def test_every_train_flag_is_a_config_field_and_every_field_a_flag():
    """The `train` flags are generated from TrainConfig: none written by hand (a flag that is
    no field would be dropped or crash), and no field without its flag."""
    import dataclasses
    import typing

    from s3lib.cli import build_parser

    parser = build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices.items()
                 if a[0] == "train")[1]
    dests = {a.dest for a in train._actions} - {"help", "out", "resume", "quiet"}
    fields = {f.name: f for f in dataclasses.fields(s3lib.train.TrainConfig)}
    assert dests == set(fields)
    hints = typing.get_type_hints(s3lib.train.TrainConfig)
    for action in train._actions:
        if action.dest in fields:
            kind = hints[action.dest]
            if typing.get_origin(kind) is typing.Literal:
                assert list(action.choices) == list(typing.get_args(kind)), action.dest
            assert fields[action.dest].metadata["help"], f"{action.dest}: no help"


def test_a_hand_written_train_flag_fails_the_generation_check(monkeypatch):
    """The check above can fail: a flag added by hand to `s3 train` is caught."""
    import dataclasses

    from s3lib import cli

    real = cli.add_config_arguments

    def with_extra(parser, cls, positional=()):
        real(parser, cls, positional)
        if cls is s3lib.train.TrainConfig:  # (s3 finetune has a --momentum of its own)
            parser.add_argument("--momentum", type=float, default=0.9)

    monkeypatch.setattr(cli, "add_config_arguments", with_extra)
    train = cli.build_parser()._subparsers._group_actions[0].choices["train"]
    dests = {a.dest for a in train._actions} - {"help", "out", "resume", "quiet"}
    assert dests - {f.name for f in dataclasses.fields(s3lib.train.TrainConfig)} == {"momentum"}


def test_flow_noise_tiny_writes_the_grid_and_its_verdicts(tmp_path, capsys):
    """`s3 flow-noise` (notebook 06): the grid's JSON, the end-point errors, the table and a
    verdict per flow and measure; the default grid is the committed one's."""
    from s3lib import cli
    from s3lib.flow_noise import GRID_SIZE, GRID_STEPS

    out = tmp_path / "grid.json"
    res = s3(capsys, "flow-noise", "--out", out, "--seeds", 0, 1, "--steps", 10, "--size", 16,
             "--flows", "exact", "farneback", "--quiet")
    grid = json.loads(out.read_text())
    assert len(grid["runs"]) == 8 and set(grid["epe"]) == {"farneback"}
    assert {r["train"]["size"] for r in grid["runs"]} == {16}
    assert "farneback: mean end-point error" in res.stdout
    for flow in ("exact", "farneback"):
        assert any(line.startswith(f"{flow}: mIoU ") and ", FG-ARI " in line
                   for line in res.stdout.splitlines())
    assert f"{out}: 8 runs" in res.stdout
    parser = cli.build_parser()._subparsers._group_actions[0].choices["flow-noise"]
    defaults = {a.dest: a.default for a in parser._actions}
    assert (defaults["steps"], defaults["size"], defaults["seeds"]) == (GRID_STEPS, GRID_SIZE,
                                                                        [0, 1, 2])


@pytest.mark.parametrize("args, message", [
    (["--size", "18"], "size"),
    (["--flows", "sintel"], "invalid choice"),
])
def test_flow_noise_bad_input(tmp_path, capsys, args, message):
    res = s3(capsys, "flow-noise", "--out", tmp_path / "g.json", "--steps", 1, *args, check=False)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr
