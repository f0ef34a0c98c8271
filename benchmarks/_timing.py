"""Timing helper shared by the benchmark scripts: median of repeated runs after a warm-up."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def median_time(fn: Callable[[], object], repeats: int = 7, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paired_ratio(fn: Callable[[], object], unit: Callable[[], object], rounds: int = 21,
                 warmup: int = 2, subtract_unit: bool = False) -> tuple[float, float, float]:
    """Time ``fn`` and ``unit`` alternately (A B A B ...) and return medians.

    Returns ``(median ratio, median fn seconds, median unit seconds)`` where each round's ratio
    is ``fn / unit`` (or ``(fn - unit) / unit`` with ``subtract_unit``, when ``fn`` includes
    ``unit``). Pairing cancels the drift of a shared, noisy machine.
    """
    for _ in range(warmup):
        fn()
        unit()
    ratios, t_fn, t_unit = [], [], []
    for _ in range(rounds):
        start = time.perf_counter()
        unit()
        u = time.perf_counter() - start
        start = time.perf_counter()
        fn()
        f = time.perf_counter() - start
        t_unit.append(u)
        t_fn.append(f - u if subtract_unit else f)
        ratios.append((f - u) / u if subtract_unit else f / u)
    return statistics.median(ratios), statistics.median(t_fn), statistics.median(t_unit)
