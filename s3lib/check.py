"""Tolerance checks for the numbers a notebook states: :func:`expect`.

A notebook that says "held-out mIoU 0.93" checks it in the cell that computes it::

    expect("held-out mIoU", scores["miou"], 0.93, 0.02)
    # prints: held-out mIoU 0.927 (expected 0.93 +- 0.02)

and raises ``AssertionError`` when the value falls outside the tolerance. The tolerance comes
from measurement: the spread of the value across CPU kernel paths and thread counts
(``tests/spread.py``), widened to a round number, and tight enough that a real regression (a
wrong sign, a loss constant off by 1%) fails. A check is visible, so a reader sees both the
number and how far it may move on another machine. In the quick mode (``S3_QUICK=1``: smaller
data and shorter runs, for smoke and browser tests) the values differ by design, so ``expect``
prints them with ``(quick mode: not checked; ...)`` and does not raise. Explained in
``notebooks/00_overview.ipynb``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real
from typing import Any


def decimals_for(tol: float) -> int:
    """Decimals that show a value to one digit below the tolerance's leading digit
    (``0.02 -> 3``, ``0.5 -> 2``, ``3 -> 1``, ``30 -> 0``)."""
    if tol <= 0:
        return 6
    return max(0, 1 - math.floor(math.log10(tol)))


def expect(name: str, value: float, target: float, tol: float, unit: str = "",
           decimals: int | None = None) -> float:
    """Print ``name value (expected target +- tol)`` and raise past the tolerance.

    Args:
        name: what the value is, as the prose calls it (``"held-out mIoU"``).
        value: the computed number (anything ``float()`` accepts: a 0-d tensor, a NumPy scalar).
        target: the value the notebook's text states.
        tol: the largest ``|value - target|`` that is still right (absolute, same unit).
        unit: appended to the numbers (``"px"``, ``"%"``).
        decimals: digits after the point (default: one more than the tolerance shows,
            :func:`decimals_for`).

    Returns:
        ``value`` as a float, so a cell can go on with it.

    Raises:
        AssertionError: ``value`` is not within ``tol`` of ``target`` (or is NaN); never in the
            quick mode (:func:`s3lib.config.quick`), whose smaller runs give other values.
        ValueError: ``tol`` is negative or an argument is not a real number.
    """
    for arg, v in (("target", target), ("tol", tol)):
        if isinstance(v, bool) or not isinstance(v, Real):
            raise ValueError(f"expect({name!r}): {arg} must be a real number, got {v!r}")
    if tol < 0:
        raise ValueError(f"expect({name!r}): tol must be >= 0, got {tol!r}")
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"expect({name!r}): value must be a number, got {value!r}") from exc
    d = decimals_for(tol) if decimals is None else decimals
    u = f" {unit}" if unit and unit != "%" else unit
    from .config import quick

    if quick():
        print(f"{name} {value:.{d}f}{u} (quick mode: not checked; the full run expects "
              f"{target:g}{u} +- {tol:g}{u})")
        return value
    line = f"{name} {value:.{d}f}{u} (expected {target:g}{u} +- {tol:g}{u})"
    print(line)
    if not abs(value - target) <= tol:  # also catches NaN
        raise AssertionError(f"{line}: off by {value - target:+.{d}g}{u}, more than the "
                             f"tolerance; something changed the result")
    return value


def answered(namespace: Mapping[str, Any], *names: str) -> None:
    """The first line of an exercise's check cell: ``answered(globals(), "my_A", "face_err")``.

    Raises ``NotImplementedError`` naming the first of ``names`` that ``namespace`` (the
    notebook's globals) does not define yet, so that in a student copy (:mod:`s3lib.student`)
    each check fails with a message that says what to do, not with a ``NameError``, until the
    solution cell above it has been written and run.
    """
    if not names:
        raise ValueError("answered: name at least one variable the exercise defines")
    for name in names:
        if name not in namespace:
            raise NotImplementedError(f"`{name}` is not defined yet: write your solution in the "
                                      f"cell above (it defines {', '.join(names)}) and run it")


__all__ = ["answered", "expect", "decimals_for"]
