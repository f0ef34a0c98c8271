"""s3lib.setup.reproducible and s3lib.config (quick mode)."""

import dataclasses
import random
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from s3lib import config
from s3lib.setup import Reproducibility, environment_report, reproducible


pytestmark = pytest.mark.usefixtures("restore_global_state")


def _draws():
    cv = np.zeros(1, np.float32)
    cv2.randu(cv, 0, 1)
    return random.random(), float(np.random.rand()), float(torch.rand(())), float(cv[0])


def test_same_seed_same_draws_and_different_seed_differs():
    reproducible(5)
    a = _draws()
    reproducible(5)
    b = _draws()
    reproducible(6)
    c = _draws()
    assert a == b
    assert all(x != y for x, y in zip(a, c))


def test_threads_and_deterministic_flags_are_set():
    torch.use_deterministic_algorithms(False)
    rec = reproducible(0, threads=2)
    assert torch.get_num_threads() == 2 and rec.threads == 2
    assert torch.are_deterministic_algorithms_enabled()
    assert cv2.getNumThreads() == 2
    assert reproducible(0).threads == torch.get_num_threads() == 1  # the course default


def test_the_record_says_what_was_set():
    assert reproducible(4, threads=2) == Reproducibility(seed=4, threads=2, deterministic=True)
    assert [f.name for f in dataclasses.fields(Reproducibility)] == [
        "seed", "threads", "deterministic"]


@pytest.mark.parametrize("kwargs", [{"seed": -1}, {"seed": 1.5}, {"seed": True}, {"threads": 0},
                                    {"threads": 1.5}, {"threads": True}])
def test_bad_arguments_are_named(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        reproducible(**kwargs)


def test_a_training_step_repeats_bit_for_bit_in_fresh_processes():
    """The point is a fresh interpreter each (as a notebook kernel or `s3 train` starts), so
    these stay subprocesses; the two run side by side to halve the wait."""
    code = (
        "import torch; from s3lib.setup import reproducible; reproducible(3)\n"
        "net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3))\n"
        "x = torch.rand(4, 3, 32, 32); opt = torch.optim.SGD(net.parameters(), lr=0.1)\n"
        "for _ in range(3):\n"
        "    opt.zero_grad(); loss = net(x).softmax(1).pow(2).mean(); loss.backward(); opt.step()\n"
        "print(repr(loss.item()))\n")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [proc.communicate(timeout=300) for proc in procs]
    for proc, (_, err) in zip(procs, results):
        assert proc.returncode == 0, err
    outs = {out for out, _ in results}
    assert len(outs) == 1, outs
    assert float(outs.pop()) > 0  # a loss was printed


def test_environment_report_has_the_documented_keys():
    rep = environment_report()
    for key in ("python", "torch", "numpy", "opencv", "scipy", "matplotlib", "ipywidgets",
                "torch_threads", "cpu_count", "gpu", "quick"):
        assert key in rep
    assert rep["torch"].startswith(torch.__version__.split("+")[0])


@pytest.mark.parametrize("raw, expected", [("", False), ("0", False), ("no", False),
                                           ("1", True), ("TRUE", True), (" yes ", True)])
def test_quick_mode_reads_the_environment(monkeypatch, raw, expected):
    monkeypatch.setenv("S3_QUICK", raw)
    assert config.quick() is expected
    assert config.pick(full="full", quick_value="quick") == ("quick" if expected else "full")


def test_quick_mode_typo_is_an_error(monkeypatch):
    monkeypatch.setenv("S3_QUICK", "maybe")
    with pytest.raises(ValueError, match="S3_QUICK"):
        config.quick()


def test_quick_mode_is_off_without_the_variable(monkeypatch):
    monkeypatch.delenv("S3_QUICK", raising=False)
    assert config.quick() is False


def test_data_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("S3_DATA", str(tmp_path))
    assert config.data_root() == tmp_path
    monkeypatch.delenv("S3_DATA")
    assert config.data_root() == config.repo_root() / "data"
    assert (config.repo_root() / "s3lib" / "config.py").is_file()
