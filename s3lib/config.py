"""Course-wide configuration read in one place.

The quick mode (d2l's ``demo = True``) is one environment variable, ``S3_QUICK``. When it is
set to ``1``/``true``/``yes``, every notebook and command shrinks its data and training runs so
that a browser test or a smoke run takes seconds. Committed notebook outputs always come from
the full configuration (``make notebooks`` and nbval unset the variable).

Explained in ``notebooks/00_overview.ipynb``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

QUICK_ENV = "S3_QUICK"
DATA_ENV = "S3_DATA"
THREADS_ENV = "S3_THREADS"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def quick() -> bool:
    """True when the quick mode is on (environment variable ``S3_QUICK``).

    Raises ``ValueError`` when the variable holds something other than a yes/no word, so a typo
    never silently runs the long configuration.
    """
    raw = os.environ.get(QUICK_ENV, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(
        f"environment variable {QUICK_ENV}={raw!r}: expected one of 1/0, true/false, yes/no, on/off"
    )


def threads(default: int = 1) -> int:
    """The thread count :func:`s3lib.setup.reproducible` uses when none is given: environment
    variable ``S3_THREADS``, or ``default`` (1). A laptop with more cores may set it; results
    then differ in their last digits, within the tolerances the notebooks check (and
    ``tests/spread.py`` runs the notebooks with it to measure that spread).

    Raises ``ValueError`` when the variable is not a positive integer.
    """
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"environment variable {THREADS_ENV}={raw!r}: expected a positive "
                         f"integer (the torch/OpenCV thread count)")
    return int(raw)


def pick(full: T, quick_value: T) -> T:
    """Return ``quick_value`` in quick mode and ``full`` otherwise.

    >>> pick(full=48, quick_value=8)  # doctest: +SKIP
    """
    return quick_value if quick() else full


def repo_root() -> Path:
    """The course checkout this package was imported from (the folder holding ``s3lib/``)."""
    return Path(__file__).resolve().parent.parent


def data_root() -> Path:
    """Where real data sets and caches live: ``$S3_DATA`` or ``<repo>/data``."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else repo_root() / "data"
