"""Conventions every committed notebook keeps (nbval re-executes them separately, in lax mode)."""

import json
import re

import pytest

from conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
# the lessons; an appendix (04b_...) tells how a lesson's recipe was found, with no exercises
LESSONS = [p for p in NOTEBOOKS if p.name[2] == "_"]
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
DECIMAL = re.compile(r"(?<![\w.])(\d+\.\d+)(?![\w.])")
EXPECT_LINE = re.compile(r"\(expected [-+0-9.e]+.*? \+- [0-9.e]+")


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:1] == ["00_overview.ipynb"]
    assert "04b_making_the_cube_train.ipynb" in [p.name for p in NOTEBOOKS]
    assert len(LESSONS) == len(NOTEBOOKS) - 1


def _load(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    text = "\n".join("".join(c["source"]) for c in nb["cells"])
    return nb, code, text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_outputs_come_from_one_fresh_run(path):
    nb, code, _ = _load(path)
    counts = [c["execution_count"] for c in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{path.name}: execution counts {counts}; run `make notebooks` to refresh the outputs")
    errors = [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, f"{path.name}: a committed output is an error"
    assert nb["metadata"]["kernelspec"]["name"] == "s3course"
    assert path.stat().st_size < 5_000_000, f"{path.name} is too large; lower figure sizes"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_makes_the_session_reproducible(path):
    _, code, _ = _load(path)
    assert re.search(r"\breproducible\(", "".join(code[0]["source"])), (
        f"{path.name}: the first code cell must call s3lib.setup.reproducible(seed)")


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_widget_cells_are_excluded_from_nbval_and_tested_elsewhere(path):
    _, code, _ = _load(path)
    # cells that display an s3lib widget (tqdm progress bars are widgets too: not counted)
    widget_cells = [c for c in code if "explorer(" in "".join(c["source"])
                    and any(WIDGET_MIME in o.get("data", {}) for o in c["outputs"])]
    assert widget_cells, f"{path.name}: every notebook has at least one s3lib widget"
    for c in widget_cells:
        assert "nbval-ignore-output" in c["metadata"].get("tags", []), (
            f"{path.name}: widget cell {''.join(c['source'])[:60]!r} lacks the nbval-ignore-output tag")
    ignored = [c for c in code if "nbval-ignore-output" in c["metadata"].get("tags", [])]
    for c in ignored:  # every other escape must be a cell that only shows progress or timings
        src = "".join(c["source"])
        assert c in widget_cells or any(k in src for k in ("tqdm", "progress=True", "perf_counter",
                                                            "environment_report")), (
            f"{path.name}: cell {src[:60]!r} escapes nbval without showing a widget, progress "
            f"bars or timings")


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_story_structure(path):
    _, _, text = _load(path)
    for needed in ("Learning goals", "Exercise", "Full scale", "What to try"):
        assert needed.lower() in text.lower(), f"{path.name}: no {needed!r} section"
    assert "$" in text, f"{path.name}: the math belongs in Markdown (LaTeX) next to the code"
    asserts = len(re.findall(r"^\s*assert ", text, re.M))
    assert asserts >= 3, f"{path.name}: exercises need self-checks (asserts)"


def test_big_buck_bunny_is_credited_wherever_it_appears():
    showing = [p for p in NOTEBOOKS if "bigbuckbunny" in _load(p)[2]]
    assert showing, "notebook 00 shows Big Buck Bunny frames"
    for path in showing:
        text = _load(path)[2]
        assert "Blender Foundation" in text and "CC-BY 3.0" in text, f"{path.name}: credit it"


def _text_outputs(cell) -> str:
    out = []
    for o in cell.get("outputs", []):
        t = o.get("text") or o.get("data", {}).get("text/plain") or ""
        out.append("".join(t) if isinstance(t, list) else t)
    return "\n".join(out)


def unbacked_prose_numbers(nb: dict) -> list[str]:
    """Decimal numbers in the Markdown that no output prints to the same precision (LaTeX,
    code spans, headings, references to the paper and section numbers aside)."""
    printed = [float(x) for c in nb["cells"] for x in DECIMAL.findall(_text_outputs(c))]
    missing = []
    for c in nb["cells"]:
        if c["cell_type"] != "markdown":
            continue
        md = re.sub(r"\$\$.*?\$\$|\$[^$]*\$|`[^`]*`", " ", "".join(c["source"]), flags=re.S)
        for line in md.splitlines():
            if line.lstrip().startswith("#") or re.search(r"(?i)paper|table 1|et al|arxiv|"
                                                          r"version|CC-BY", line):
                continue
            for m in DECIMAL.finditer(line):
                if re.search(r"(?i)(sections?|§|notebooks?|steps?|cells?|figs?\.?|figures?|eq\.?)"
                             r"\s*$", line[:m.start()]):
                    continue
                v, dec = float(m.group(1)), len(m.group(1).split(".")[1])
                if not any(abs(x - v) <= 0.5 * 10 ** -dec + 1e-12 for x in printed):
                    missing.append(m.group(1))
    return missing


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_number_in_the_prose_is_printed_by_a_cell(path):
    nb, _, _ = _load(path)
    missing = unbacked_prose_numbers(nb)
    assert not missing, f"{path.name}: the text states {missing} but no output prints them"


def test_the_prose_check_can_fail():
    nb = {"cells": [{"cell_type": "markdown", "source": ["The loss is 0.431 here (section 5.2)."]},
                    {"cell_type": "code", "source": [], "outputs": [
                        {"output_type": "stream", "name": "stdout", "text": "loss 0.4309\n"}]}]}
    assert unbacked_prose_numbers(nb) == []
    nb["cells"][1]["outputs"][0]["text"] = "loss 0.4321\n"
    assert unbacked_prose_numbers(nb) == ["0.431"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_results_are_checked_by_tolerance(path):
    """Each notebook checks its numbers with s3lib.check.expect (visible in its outputs), and
    every cell nbval compares digit for digit prints nothing but exact values."""
    nb, code, _ = _load(path)
    expects = [ln for c in code for ln in _text_outputs(c).splitlines() if EXPECT_LINE.search(ln)]
    assert len(expects) >= 3, f"{path.name}: only {len(expects)} expect(...) checks in its outputs"
    compared = [c for c in code if "nbval-check-output" in c["metadata"].get("tags", [])]
    assert compared, f"{path.name}: no cell is compared by nbval (tag nbval-check-output)"
    for c in compared:
        text = _text_outputs(c)
        assert not DECIMAL.search(text), (
            f"{path.name}: cell {''.join(c['source'])[:50]!r} is compared digit for digit but "
            f"prints a measured number ({DECIMAL.search(text).group(0)}): check it with expect")
        assert not any("image/png" in o.get("data", {}) or WIDGET_MIME in o.get("data", {})
                       for o in c["outputs"]), f"{path.name}: a compared cell shows a figure"


def _calls(source: str, name: str) -> list[str]:
    """The full text of every call ``name(...)`` in ``source`` (parentheses matched)."""
    out = []
    for m in re.finditer(re.escape(name) + r"\(", source):
        depth, i = 0, m.end() - 1
        for i in range(m.end() - 1, len(source)):
            depth += {"(": 1, ")": -1}.get(source[i], 0)
            if depth == 0:
                break
        out.append(source[m.start():i + 1])
    return out


def figure_problems(source: str) -> list[str]:
    """Colour bars without a label; flow pictures without a colour wheel in their figure (a
    ``show_flow(..., wheel=False)`` needs a ``show_color_wheel`` or a wheeled ``show_flow``
    in the same cell)."""
    problems = [c for c in _calls(source, "colorbar") if "label=" not in c]
    flows = _calls(source, "show_flow")
    wheeled = [c for c in flows if "wheel=False" not in c]
    if len(flows) > len(wheeled) and not wheeled and "show_color_wheel(" not in source:
        problems += [c for c in flows if "wheel=False" in c]
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_colour_bar_is_labelled_and_every_flow_has_a_wheel(path):
    bad = [p for c in _load(path)[1] for p in figure_problems("".join(c["source"]))]
    assert not bad, f"{path.name}: {bad}"


def test_widget_figures_label_their_colour_bars_and_flows():
    bad = {p.name: figure_problems(p.read_text()) for p in (REPO / "s3lib" / "widgets").glob("*.py")}
    assert not any(bad.values()), bad


def test_the_figure_check_can_fail():
    assert figure_problems("fig.colorbar(im, ax=ax,\n shrink=0.8)")
    assert figure_problems("viz.show_flow(ax, f, 'flow', wheel=False)")
    assert not figure_problems("viz.show_flow(ax, f, wheel=False)\nviz.show_color_wheel(ax2)")
    assert not figure_problems("fig.colorbar(im, ax=ax, label='px')")
