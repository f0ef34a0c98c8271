"""One call that makes a notebook or a run reproducible: :func:`reproducible`.

Every notebook calls ``s3lib.setup.reproducible(seed)`` in its first code cell; the training
commands call it too. See ``notebooks/00_overview.ipynb``.
"""

from __future__ import annotations

import os
import platform
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_THREADS = 1
"""Torch/OpenCV thread count of the notebooks and tests. The course's tensors are small: with
two threads, a machine whose other core is busy made each small matrix product wait for a
descheduled thread (0.6 ms -> 130 ms per loss evaluation, measured here). A fixed count also
makes a run repeat exactly on one machine; other counts, CPUs and torch releases agree within
the tolerances the notebooks check (:func:`s3lib.check.expect`). Training commands may ask for
more (``reproducible(seed, threads=N)``)."""


@dataclass(frozen=True)
class Reproducibility:
    """What :func:`reproducible` set (returned so a notebook can print it)."""

    seed: int
    threads: int
    deterministic: bool


def reproducible(seed: int = 0, threads: int | None = None) -> Reproducibility:
    """Seed Python, NumPy, torch and OpenCV; fix thread counts; turn on deterministic algorithms.

    A run then repeats exactly on the same machine and software. Nothing pins CPU kernels: on
    another CPU (x86 or ARM), thread count or torch release the last digits may differ, which
    is why the notebooks check their numbers with tolerances (:func:`s3lib.check.expect`).

    Args:
        seed: the seed for ``random``, ``numpy.random``, ``torch`` and OpenCV's RNG.
        threads: intra-op thread count for torch and OpenCV; ``None``: ``$S3_THREADS`` or
            :data:`DEFAULT_THREADS` (:func:`s3lib.config.threads`).

    Returns:
        A :class:`Reproducibility` record of what was set.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
    if threads is None:
        from .config import threads as configured

        threads = configured(DEFAULT_THREADS)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads: expected a positive int, got {threads!r}")
    import cv2
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    cv2.setRNGSeed(seed)
    # Needed by some CUDA kernels to be deterministic (harmless on CPU).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = False
    return Reproducibility(seed=seed, threads=threads, deterministic=True)


def environment_report() -> dict[str, Any]:
    """Versions and hardware the course depends on, for the environment check of notebook 00.

    Returns a dict with ``python``, ``torch``, ``numpy``, ``opencv``, ``scipy``, ``matplotlib``,
    ``ipywidgets``, ``torch_threads``, ``cpu_count``, ``gpu`` (device name or ``None``) and
    ``quick`` (whether ``S3_QUICK`` is on).
    """
    import cv2
    import ipywidgets
    import matplotlib
    import scipy
    import torch

    from . import config

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "scipy": scipy.__version__,
        "matplotlib": matplotlib.__version__,
        "ipywidgets": ipywidgets.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu,
        "quick": config.quick(),
    }
