"""benchmarks/gpu.py, the prepared check for a GPU machine, runs at a tiny size on the CPU."""

import json
import subprocess
import sys

from conftest import REPO


def test_gpu_check_prints_one_json_line():
    cmd = [sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--device", "cpu", "--width",
           "0.0625", "--size", "64", "--batch", "2", "--iters", "1", "--finetune-iters", "2",
           "--no-amp"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["device"] == "cpu" and line["amp"] == "none" and line["finetune_iters"] == 2
    assert line["s3_images_per_s"] > 0 and line["plain_images_per_s"] > 0
    assert line["trunk_parameters"] == 525_284 and 0 <= line["finetune_fixture_map"] <= 1
