"""Student copies of the course notebooks (``make student``, ``s3 student``): nbgrader's format.

Every exercise of a course notebook is two code cells: a **solution cell**, whose solution lies
between nbgrader's markers ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (lines before and
after the markers are kept: set-up the student is given), and the **check cell** right after
it, whose assertions say whether the answer is right. :func:`student_copy` replaces each marked
region by nbgrader's stub::

    # YOUR CODE HERE
    raise NotImplementedError()

and clears the outputs of both cells of every exercise (a check's output prints the answer);
every other cell (text, figures, outputs, the checks' code) is kept as it is, so a copy runs
top to bottom exactly like the instructor's notebook up to its exercises. Check cells begin
with :func:`s3lib.check.answered`, so each fails with ``NotImplementedError`` until the student
has written the cell above.

:func:`nbgrader_metadata` is what the course notebooks carry in each exercise cell's
``metadata["nbgrader"]`` (nbgrader's schema 3: the solution cell an ungraded answer, the check
cell a locked, autograded test worth one point), so an instructor who uses nbgrader takes
``notebooks/`` as its source folder as it is (``nbgrader generate_assignment`` then does what
this module does, and grades the checks). This module is nbgrader's semantics on ``nbformat``
alone, without nbgrader's dependency tree. Explained in the README (for instructors).
"""

from __future__ import annotations

import argparse
import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from ._io import atomic_write

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
NOTEBOOK_GLOB = "[0-9][0-9]*_*.ipynb"
"""The course notebooks (``00_overview.ipynb`` ...), as ``make notebooks`` runs them."""


@dataclass(frozen=True)
class Exercise:
    """One exercise of a notebook: ``number`` (1, 2, ... in the notebook's order), the indices
    of its ``solution`` and ``check`` cells in ``nb.cells``, and the ``solution_lines``: the
    source lines between the markers (what a student copy must not contain)."""

    number: int
    solution: int
    check: int
    solution_lines: tuple[str, ...]


def _markers(line: str) -> str | None:
    stripped = line.strip()
    return stripped if stripped in (BEGIN, END) else None


def solution_regions(source: str, where: str = "cell") -> list[tuple[int, int]]:
    """Line ranges ``(begin, end)`` of the marked regions of ``source`` (the marker lines'
    indices). ``ValueError`` naming ``where`` for a marker without its pair, nested markers or
    an empty region."""
    regions, start = [], None
    for i, line in enumerate(source.splitlines()):
        mark = _markers(line)
        if mark == BEGIN:
            if start is not None:
                raise ValueError(f"{where}: line {i + 1}: {BEGIN!r} inside another solution "
                                 f"region (begun on line {start + 1})")
            start = i
        elif mark == END:
            if start is None:
                raise ValueError(f"{where}: line {i + 1}: {END!r} without {BEGIN!r}")
            if i == start + 1:
                raise ValueError(f"{where}: lines {start + 1}-{i + 1}: an empty solution region")
            regions.append((start, i))
            start = None
    if start is not None:
        raise ValueError(f"{where}: line {start + 1}: {BEGIN!r} without {END!r}")
    return regions


def blank_solutions(source: str, where: str = "cell") -> str:
    """``source`` with each marked region (markers included) replaced by :data:`STUB`, indented
    like its ``### BEGIN SOLUTION`` line."""
    lines = source.splitlines()
    out, last = [], 0
    for begin, end in solution_regions(source, where):
        indent = re.match(r"\s*", lines[begin]).group(0)
        out += lines[last:begin] + [indent + s for s in STUB]
        last = end + 1
    return "\n".join(out + lines[last:])


def exercises(nb: Any, where: str = "notebook") -> list[Exercise]:
    """The exercises of ``nb`` (an ``nbformat`` notebook): each code cell with a marked region
    and the code cell right after it (its checks). ``ValueError`` naming ``where`` and the cell
    when a solution cell has no check cell after it (or the check cell has markers itself)."""
    found: list[Exercise] = []
    cells = nb.cells
    for i, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        regions = solution_regions(cell.source, f"{where}, cell {i}")
        if not regions:
            continue
        nxt = cells[i + 1] if i + 1 < len(cells) else None
        if nxt is None or nxt.cell_type != "code" or solution_regions(nxt.source):
            raise ValueError(f"{where}, cell {i}: a solution cell must be followed by a code cell "
                             f"of checks (nbgrader's autograded test)")
        lines = cell.source.splitlines()
        body = tuple(ln for b, e in regions for ln in lines[b + 1:e])
        found.append(Exercise(len(found) + 1, i, i + 1, body))
    return found


def nbgrader_metadata(notebook: str, exercise: Exercise, role: str) -> dict[str, Any]:
    """The ``metadata["nbgrader"]`` of an exercise cell (nbgrader's schema 3): ``role`` is
    ``"solution"`` (an answer cell, not graded) or ``"check"`` (a locked test cell worth 1
    point). ``grade_id`` is ``<notebook stem>-ex<number>-<role>``, unique in the course."""
    if role not in ("solution", "check"):
        raise ValueError(f"role: expected 'solution' or 'check', got {role!r}")
    check = role == "check"
    meta: dict[str, Any] = {"grade": check, "grade_id": f"{notebook}-ex{exercise.number}-{role}",
                            "locked": check, "schema_version": 3, "solution": not check,
                            "task": False}
    if check:
        meta["points"] = 1
    return meta


def student_copy(nb: Any, where: str = "notebook") -> Any:
    """A student copy of ``nb`` (not modified): solutions blanked (:func:`blank_solutions`),
    the outputs of every exercise's two cells cleared, everything else kept."""
    out = copy.deepcopy(nb)
    for ex in exercises(out, where):
        sol, chk = out.cells[ex.solution], out.cells[ex.check]
        sol.source = blank_solutions(sol.source, f"{where}, cell {ex.solution}")
        for cell in (sol, chk):
            cell.outputs, cell.execution_count = [], None
    return out


def write_student_copies(src: str | Path, out: str | Path) -> list[Path]:
    """Write a student copy of every course notebook of ``src`` (:data:`NOTEBOOK_GLOB`) to
    ``out`` under the same name (atomically); returns the paths written. ``ValueError`` when
    ``src`` holds no course notebook or a notebook's markers are malformed."""
    src, out = Path(src), Path(out)
    paths = sorted(src.glob(NOTEBOOK_GLOB))
    if not paths:
        raise ValueError(f"{src}: no course notebooks ({NOTEBOOK_GLOB}) to copy")
    written = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        copy_ = student_copy(nb, str(path))
        target = out / path.name
        with atomic_write(target, "w") as fh:
            nbformat.write(copy_, fh)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m s3lib.student [--src notebooks] [--out student]`` (``make student``)."""
    parser = argparse.ArgumentParser(description="write student copies of the course notebooks "
                                                 "(solutions blanked, nbgrader's markers)")
    parser.add_argument("--src", default="notebooks", help="folder of the course notebooks")
    parser.add_argument("--out", default="student", help="folder for the student copies")
    args = parser.parse_args(argv)
    written = write_student_copies(args.src, args.out)
    count = sum(len(exercises(nbformat.read(p, as_version=4))) for p in
                sorted(Path(args.src).glob(NOTEBOOK_GLOB)))
    print(f"{len(written)} student notebooks with {count} exercises -> {args.out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
