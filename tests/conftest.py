"""Shared fixtures of the test suite."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/browser.py, the browser harness

# One thread from the start, also for module- and session-scoped fixtures (built before the
# per-test fixture below runs), as s3lib.setup.reproducible sets in the notebooks.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread per test, as s3lib.setup.reproducible sets: the tensors are small, and
    on a loaded 2-core machine two threads' spin-waits made small products 100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def moving_texture_frames() -> np.ndarray:
    """``(8, 48, 64, 3)`` uint8 frames of a smooth texture moving right by ``t`` px at step t.

    Frame k is the texture shifted by 0 + 1 + ... + k pixels, so the flow between frames t and
    t + 1 is a known constant ``(t + 1, 0)`` on the interior.
    """
    import cv2

    rng = np.random.default_rng(1)
    base = cv2.GaussianBlur(rng.uniform(0, 255, (48, 64, 3)).astype(np.float32), (0, 0), 1.5)
    base = cv2.normalize(base, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    offsets = np.cumsum([0] + list(range(1, 8)))
    return np.stack([np.roll(base, int(o), axis=1) for o in offsets])


@pytest.fixture(scope="session")
def slide_video(tmp_path_factory):
    """A synthetic clip (MJPG .avi, 20 frames, 48x32): a textured square sliding right over
    a background sliding down."""
    import cv2

    rng = np.random.default_rng(0)
    bg = (rng.random((80, 96, 3)) * 255).astype(np.uint8)
    fg = (rng.random((12, 12, 3)) * 255).astype(np.uint8)
    frames = []
    for t in range(20):
        f = bg[t:t + 32, 10:58].copy()
        f[10:22, 4 + t:16 + t] = fg
        frames.append(f)
    path = tmp_path_factory.mktemp("clip") / "slide.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 32))
    for f in frames:
        out.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    out.release()
    return path


@pytest.fixture(scope="session")
def video_cache(slide_video, tmp_path_factory):
    """The prepare-video cache (DIS flow, gap 1) of :func:`slide_video`."""
    from s3lib.data.video import prepare_video

    return prepare_video(slide_video, tmp_path_factory.mktemp("cache") / "slide", progress=False)


@pytest.fixture
def restore_global_state():
    """Tests that run :func:`s3lib.setup.reproducible` in this process (``s3 train``, ``s3
    eval``, the setup tests): put back what it sets (torch and OpenCV threads, deterministic
    algorithms, the RNGs) so that no later test runs under it. Use it with
    ``pytestmark = pytest.mark.usefixtures("restore_global_state")``."""
    import os
    import random

    import cv2

    threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    rngs = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    yield
    torch.set_num_threads(threads)
    cv2.setNumThreads(cv2_threads)
    if (torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled()) != (deterministic, warn_only):
        # only when changed: the call imports torch._inductor's config (seconds)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.backends.cudnn.benchmark = benchmark
    random.setstate(rngs[0])
    np.random.set_state(rngs[1])
    torch.set_rng_state(rngs[2])
    if cublas is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = cublas


class Result(NamedTuple):
    """What an in-process ``s3`` command did: exit status, stdout, stderr."""

    returncode: int
    stdout: str
    stderr: str


def s3(capsys, *args, check: bool = False) -> Result:
    """``s3 ARGS...`` in this process (no interpreter start): its exit status (argparse's
    ``SystemExit`` too: 2 for a bad flag, 0 for ``--help``), stdout and stderr. An exception
    that ``main`` lets through fails the test, as its traceback would have in a subprocess.
    ``check``: assert the status is 0."""
    from s3lib.cli import main

    capsys.readouterr()  # only this command's output
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    if check:
        assert code == 0, err
    return Result(code, out, err)
