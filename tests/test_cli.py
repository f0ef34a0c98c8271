"""The `s3` command (console script and `python -m s3lib`)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from s3lib.flow import read_flo


def run(*args, check=True):
    return subprocess.run([sys.executable, "-m", "s3lib", *args], capture_output=True,
                          text=True, check=check)


def test_help_lists_the_subcommands():
    out = run("--help").stdout
    for cmd in ("env", "clips", "flow"):
        assert cmd in out


def test_console_script_is_installed():
    script = Path(sys.executable).parent / ("s3.exe" if os.name == "nt" else "s3")
    assert script.is_file(), "pip install -e . should create the s3 console script"
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    assert "usage: s3" in out.stdout


def test_env_prints_json():
    rep = json.loads(run("env").stdout)
    assert rep["torch_threads"] >= 1 and "opencv" in rep


def test_clips_lists_the_bundled_clips_with_credit():
    out = run("clips").stdout
    assert "bigbuckbunny" in out and "1280x720" in out and "Blender Foundation" in out


def test_flow_writes_a_readable_flo_file(tmp_path):
    out = tmp_path / "f.flo"
    res = run("flow", "bigbuckbunny", "--frame", "40", "--gap", "2", "--size", "96x54",
              "--out", str(out))
    flow = read_flo(out)
    assert flow.shape == (54, 96, 2)
    mean = float(np.hypot(flow[..., 0], flow[..., 1]).mean())
    assert f"mean |flow| {mean:.2f} px" in res.stdout


def test_flow_writes_a_png(tmp_path):
    import cv2

    out = tmp_path / "f.png"
    run("flow", "bigbuckbunny", "--frame", "40", "--size", "64x36", "--out", str(out))
    assert cv2.imread(str(out)).shape == (36, 64, 3)


@pytest.mark.parametrize("args, message", [
    (["flow", "no_such_clip", "--out", "x.flo"], "not a clip bundled"),
    (["flow", "bigbuckbunny", "--out", "x.txt"], "expected a .flo or .png"),
    (["flow", "bigbuckbunny", "--frame", "131", "--out", "x.flo"], "lower --frame or --gap"),
    (["flow", "bigbuckbunny", "--size", "12", "--out", "x.flo"], "WIDTHxHEIGHT"),
    (["flow", "bigbuckbunny", "--gap", "0", "--out", "x.flo"], "--gap"),
])
def test_bad_input_gives_a_one_line_error(tmp_path, args, message):
    res = subprocess.run([sys.executable, "-m", "s3lib", *args], capture_output=True, text=True,
                         cwd=tmp_path)
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr


def test_train_and_eval_cube_tiny(tmp_path):
    run_dir = tmp_path / "run"
    res = run("train", "cube", "--out", str(run_dir), "--steps", "2", "--size", "16",
              "--segments", "3", "--quiet")
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["step"] == 2 and 0 <= summary["miou"] <= 1
    assert (run_dir / "checkpoint.pt").is_file()
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 2
    out = json.loads(run("eval", "cube", "--checkpoint", str(run_dir / "checkpoint.pt"),
                         "--json").stdout)
    assert set(out) >= {"miou", "fg_ari"} and 0 <= out["miou"] <= 1


@pytest.mark.parametrize("args, message", [
    (["train", "cube", "--out", "r", "--steps", "1", "--segments", "1"], "num_segments"),
    (["train", "cube", "--out", "r", "--steps", "1", "--size", "18"], "size"),
    (["eval", "cube", "--checkpoint", "missing.pt"], "missing.pt"),
])
def test_train_and_eval_bad_input(tmp_path, args, message):
    res = subprocess.run([sys.executable, "-m", "s3lib", *args], capture_output=True, text=True,
                         cwd=tmp_path)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr
