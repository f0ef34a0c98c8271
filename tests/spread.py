"""Measure how much the notebooks' printed numbers move across kernel paths and thread counts.

The tolerances of the notebooks' checks (:func:`s3lib.check.expect`) come from this script:

    # execute every notebook under one configuration (the kernel inherits the environment)
    python tests/spread.py run --out runs/spread/native-1
    python tests/spread.py run --out runs/spread/default-2 --threads 2 \\
        --env ATEN_CPU_CAPABILITY=default --env MKL_CBWR=AUTO --env ONEDNN_MAX_CPU_ISA=ALL
    # compare the numbers every code cell printed, run against run
    python tests/spread.py compare runs/spread/*

``compare`` lists, per notebook and cell, each printed number that is not the same in every
run: its value in each run, the spread (max - min) and the spread relative to the value. A
number that no run changes is not listed. Not a test: the course's tests check the notebooks'
``expect`` lines, which this script helps to set.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")


def run(out: Path, threads: int, env: list[str], notebooks: list[Path], timeout: int) -> None:
    """Execute ``notebooks`` into ``out`` with ``S3_THREADS=threads`` and ``env`` (KEY=VALUE)."""
    out.mkdir(parents=True, exist_ok=True)
    environ = {k: v for k, v in os.environ.items() if k != "S3_QUICK"}
    environ.update({"S3_THREADS": str(threads), "PYTHONHASHSEED": "0"})
    environ.update(dict(e.split("=", 1) for e in env))
    (out / "config.json").write_text(json.dumps({"threads": threads, "env": env}))
    for nb in notebooks:
        start = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook",
                              "--execute", "--ExecutePreprocessor.kernel_name=s3course",
                              f"--ExecutePreprocessor.timeout={timeout}", "--output-dir",
                              str(out), str(nb)], env=environ, capture_output=True, text=True)
        status = "ok" if res.returncode == 0 else f"FAILED\n{res.stderr[-3000:]}"
        print(f"{nb.name}: {time.perf_counter() - start:.0f} s {status}", flush=True)


def cell_numbers(path: Path) -> list[tuple[int, str, list[float], str]]:
    """``(cell index, first line of output, numbers, text)`` of every code cell's outputs."""
    nb = json.loads(path.read_text())
    rows = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        text = []
        for o in cell.get("outputs", []):
            t = o.get("text") or o.get("data", {}).get("text/plain") or ""
            t = "".join(t) if isinstance(t, list) else t
            if o.get("name") == "stderr" or "it/s]" in t or "s/it]" in t:
                continue  # progress bars and timings
            text.append(t)
        joined = "\n".join(text)
        rows.append((i, joined.strip().splitlines()[0][:70] if joined.strip() else "",
                     [float(x) for x in NUMBER.findall(joined)], joined))
    return rows


def compare(dirs: list[Path]) -> None:
    """Print every printed number that differs between the runs in ``dirs``."""
    names = sorted({p.name for d in dirs for p in d.glob("[0-9][0-9]*_*.ipynb")})
    print("runs:", ", ".join(d.name for d in dirs))
    for name in names:
        runs = [cell_numbers(d / name) for d in dirs if (d / name).exists()]
        if len(runs) < 2:
            continue
        print(f"== {name}")
        for cells in zip(*runs):
            idx, head = cells[0][0], cells[0][1]
            lists = [c[2] for c in cells]
            if any(len(v) != len(lists[0]) for v in lists):
                print(f"  [{idx}] different number of printed numbers: "
                      f"{[len(v) for v in lists]} ({head})")
                continue
            for j, values in enumerate(zip(*lists)):
                if max(values) != min(values):
                    spread = max(values) - min(values)
                    rel = spread / max(abs(v) for v in values)
                    context = _context(cells[0][3], j)
                    print(f"  [{idx}] #{j} {context!r}: {' / '.join(f'{v:g}' for v in values)}"
                          f"  spread {spread:.3g} ({rel:.2%})")


def _context(text: str, j: int) -> str:
    """A few characters around the ``j``-th number of ``text``."""
    m = list(NUMBER.finditer(text))[j]
    return text[max(0, m.start() - 40):m.end() + 10].replace("\n", " | ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="execute the notebooks under one configuration")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the kernel")
    p.add_argument("--timeout", type=int, default=1800)
    p.add_argument("notebooks", nargs="*", type=Path)
    p = sub.add_parser("compare", help="compare the numbers of several runs")
    p.add_argument("dirs", nargs="+", type=Path)
    args = parser.parse_args()
    if args.cmd == "run":
        nbs = args.notebooks or sorted((REPO / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
        run(args.out, args.threads, args.env, nbs, args.timeout)
    else:
        compare(args.dirs)


if __name__ == "__main__":
    main()
