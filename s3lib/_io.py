"""Small file helpers shared by the library: atomic writes (temp file, then rename)."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it onto ``path``.

    A crash or an exception leaves ``path`` as it was (never half-written) and removes the
    temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # keep an existing file's permissions; a new file gets the usual umask default
        perms = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        perms = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, perms)
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_torch(path: str | os.PathLike, payload: dict) -> None:
    """``torch.save(payload)`` to ``path`` atomically (:func:`atomic_write`)."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(payload, buf)
    with atomic_write(path) as fh:
        fh.write(buf.getvalue())


def load_resumable(path: Path, settings: dict, may_change: tuple[str, ...]) -> dict:
    """The training state in ``path`` (``torch.load(..., weights_only=True)``), refused with a
    ``ValueError`` naming the settings that differ from ``settings`` (those in ``may_change``
    aside: the budget, the device). Resuming ``s3 pretrain`` / ``s3 finetune``."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    mine = {k: v for k, v in settings.items() if k not in may_change}
    theirs = {k: v for k, v in state.get("config", {}).items() if k not in may_change}
    if mine != theirs:
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise ValueError(f"{path}: written with other settings ({', '.join(diff)}); use another "
                         f"--out or the same settings")
    return state


def kept_log_lines(path: Path, step: int) -> str:
    """The lines of the JSON-lines log ``path`` up to ``step`` (records past a resumed state,
    and a line a crash cut short, are dropped)."""
    import json

    keep = []
    for line in path.read_text().splitlines():
        try:
            logged = int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
        if logged <= step:
            keep.append(line + "\n")
    return "".join(keep)
