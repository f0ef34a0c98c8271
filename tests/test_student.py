"""Student copies (``make student``, :mod:`s3lib.student`) and the exercises' checks.

Fast tests read the notebooks: every exercise is marked for nbgrader, a student copy keeps
every cell but the solutions, and no solution line survives. The kernel test executes each
student copy top to bottom (as a student would) and asserts where it fails: every cell but the
exercises runs (those whose output is exact by nature, tagged ``nbval-check-output``, print what
the instructor's notebook printed), each solution cell raises ``NotImplementedError`` and each
check cell ``NotImplementedError`` or ``AssertionError``. Then, in the same kernel, it feeds every exercise
one plausible wrong answer (:data:`WRONG`: the typical mistake, written as an edit of the
instructor's solution) and asserts that the check rejects it with a message that names the
mistake, and finally the instructor's solution, which the check must accept.
"""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from s3lib.check import answered
from s3lib.student import (BEGIN, END, STUB, blank_solutions, exercises, nbgrader_metadata,
                           solution_regions, student_copy, write_student_copies)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
KERNEL = "s3course"  # installed by `make setup` (Makefile: ipykernel install --name s3course)

# (notebook prefix, exercise number) -> (edits of the solution: (old, new) pairs, words that the
# check's message must contain). Each is the typical mistake the exercise is about.
WRONG: dict[tuple[str, int], tuple[tuple[tuple[str, str], ...], str]] = {
    ("00", 1): ((("shift=(-2, 3)", "shift=(2, 3)"),), "y should be about -2"),
    ("00", 2): ((("round_trip = flow + warp(backward, flow)", "round_trip = flow + backward"),),
                "sample b at u + f(u)"),
    ("00", 3): ((("ratio = np.hypot(*flow_big.transpose(2, 0, 1)).mean() / "
                  "np.hypot(*flow_small.transpose(2, 0, 1)).mean()",
                  "ratio = np.hypot(*flow_small.transpose(2, 0, 1)).mean() / "
                  "np.hypot(*flow_big.transpose(2, 0, 1)).mean()"),), "halving the size"),
    ("01", 1): ((("np.log(2 * np.pi * SIGMA**2)", "0.5 * np.log(2 * np.pi * SIGMA**2)"),),
                "2-D Gaussian constant"),
    ("01", 2): ((("true_masks[:, :1] / 2, true_masks[:, :1] / 2",
                  "true_masks[:, :1], true_masks[:, :1]"),), "half-weight copies"),
    ("01", 3): ((("two_motion_flow(48, 28, 3.0), softness=0.0, sigma=3.0)",
                  "two_motion_flow(48, 28, 3.0), softness=0.0, sigma=0.2)"),),
                "matched to more noise"),
    ("02", 1): ((("w = masks[0, 1].reshape(-1).double().numpy()",
                  "w = masks[0, 1].reshape(-1).double().numpy() ** 2"),), "weights m, not m^2"),
    ("02", 2): ((("noisy = add_flow_noise(scene.flow, 0.3)[None]", "noisy = scene.flow[None]"),),
                "use the noisy flow"),
    ("02", 3): ((("pushed_to = int(wrong_masks.grad[0, :, 10, 40].argmin())",
                  "pushed_to = int(wrong_masks.grad[0, :, 10, 40].argmax())"),),
                "most negative partial derivative"),
    ("03", 1): ((("W[np.arange(len(v)), j0] += 1 - t\nW[np.arange(len(v)), j0 + 1] += t",
                  "W[np.arange(len(v)), np.rint(q).astype(int)] = 1.0"),), "two nearest bins"),
    ("03", 2): ((("    p = p / p.sum()\n", ""),), "a flat histogram"),
    ("03", 3): ((("m3.reshape(1, REGIONS, -1)[..., perm]", "m3.reshape(1, REGIONS, -1)[..., perm.flip(0)]"),),
                "one shuffle of masks and flow together"),
    ("04", 1): ((("rows, cols = np.nonzero(labels == face)", "rows, cols = np.nonzero(labels > 0)"),),
                "restricted to its pixels"),
    ("04", 2): ((("torch.stack([-turned[1], turned[0]])", "turned"),),
                "the flow vectors must turn with the picture"),
    ("04", 3): ((("seg_idx, region_idx = linear_sum_assignment(iou, maximize=True)",
                  "seg_idx, region_idx = iou.argmax(0), np.arange(iou.shape[1])"),),
                "matched to one region at most"),
    ("04b", 1): ((("my_cost = (weighted_cost(union) - weighted_cost(pair[:, :1]) - "
                   "weighted_cost(pair[:, 1:])) / float(union.sum())",
                   "my_cost = weighted_cost(union) / float(union.sum())"),), "merge_costs gives"),
    ("05", 1): ((("w = m_ex.ravel()", "w = np.ones(H * W)"),), "weight each pixel"),
    ("05", 2): ((("elif t + gap_ex < b:", "else:"),), "must end before the held-out frames"),
    ("05", 3): ((("gains = 1 - net_losses / one_losses", "gains = net_losses / one_losses"),),
                "the fraction of the one-segment loss removed"),
    ("06", 1): ((("back = warp(f_bw, f_fw)", "back = f_bw"),), "sample f_bw at u + f_fw(u)"),
    ("06", 2): ((("for s, e in zip(bounds[:-1], bounds[1:]) for t in range(s, e - GAP)",
                  "for t in range(len(frames) - GAP)"),), "a pair spans a cut"),
    ("06", 3): ((("flow70, bins=BINS))\nband_loss", "flow70, bins=16))\nband_loss"),),
                "hard one-hot masks, 32 bins"),
    ("07", 1): ((('by[("s3-entropy", "all", s)] - by[("random", "all", s)]',
                  'by[("random", "all", s)] - by[("s3-entropy", "all", s)]'),), "arm minus random"),
    ("07", 2): ((("my_bias = (conv.bias.detach() - bn.running_mean) * scale",
                  "my_bias = conv.bias.detach() - bn.running_mean"),), "(b - mean) / sqrt(var + eps)"),
    ("07", 3): ((("my_ap = float((precision_at * hits).sum() / hits.sum())",
                  "my_ap = float(precision_at.mean())"),), "precision at each positive"),
}


def _prefix(path: Path) -> str:
    return path.name.split("_")[0]


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _solution_text(source: str) -> str:
    """The code of a solution cell without its markers (what the instructor's answer runs)."""
    return "\n".join(ln for ln in source.splitlines() if ln.strip() not in (BEGIN, END))


def _wrong_answer(source: str, edits: tuple[tuple[str, str], ...], where: str) -> str:
    code = _solution_text(source)
    for old, new in edits:
        assert code.count(old) == 1, f"{where}: the wrong answer's edit {old!r} no longer applies"
        code = code.replace(old, new)
    return code


def test_there_are_exercises_and_a_wrong_answer_for_each():
    found = {(_prefix(p), e.number) for p in NOTEBOOKS for e in exercises(_read(p), str(p))}
    assert len(found) >= 20, sorted(found)
    assert found == set(WRONG), (f"exercises without a wrong answer: {sorted(found - set(WRONG))}; "
                                 f"wrong answers without an exercise: {sorted(set(WRONG) - found)}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_exercise_cells_carry_nbgrader_metadata_and_checks_start_with_answered(path):
    nb = _read(path)
    for ex in exercises(nb, str(path)):
        sol, chk = nb.cells[ex.solution], nb.cells[ex.check]
        assert sol.metadata.get("nbgrader") == nbgrader_metadata(path.stem, ex, "solution")
        assert chk.metadata.get("nbgrader") == nbgrader_metadata(path.stem, ex, "check")
        first = chk.source.splitlines()[0]
        assert first.startswith("answered(globals(), "), f"{path.name}, cell {ex.check}: {first}"


def test_grade_ids_are_unique_across_the_course():
    ids = [c.metadata["nbgrader"]["grade_id"] for p in NOTEBOOKS for c in _read(p).cells
           if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids)) and ids


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_student_copy_keeps_everything_but_the_solutions(path):
    nb = _read(path)
    copy_ = student_copy(nb, str(path))
    assert len(copy_.cells) == len(nb.cells)
    exs = exercises(nb, str(path))
    in_exercise = {i for e in exs for i in (e.solution, e.check)}
    for i, (a, b) in enumerate(zip(nb.cells, copy_.cells)):
        if i not in in_exercise:
            assert a == b, f"{path.name}, cell {i} changed in the student copy"
    kept = "\n".join(c.source for i, c in enumerate(nb.cells) if i not in in_exercise)
    code = "\n".join(c.source for c in copy_.cells if c.cell_type == "code")
    for e in exs:
        sol, chk = copy_.cells[e.solution], copy_.cells[e.check]
        assert sol.outputs == [] and chk.outputs == [] and sol.execution_count is None
        assert chk.source == nb.cells[e.check].source, "the checks are kept"
        lines = [ln.strip() for ln in sol.source.splitlines()]
        assert [s for s in STUB] == [ln for ln in lines if ln in STUB], sol.source
        assert BEGIN not in code and END not in code
        for line in e.solution_lines:
            text = line.strip()
            if text and text not in kept:  # lines the notebook shows elsewhere may stay
                assert text not in code, f"{path.name}: solution line survives: {text!r}"


def test_blanking_keeps_lines_around_the_markers_and_their_indentation():
    source = "x = 1\nif True:\n    ### BEGIN SOLUTION\n    y = 2\n    ### END SOLUTION\nprint(y)"
    assert blank_solutions(source) == ("x = 1\nif True:\n    # YOUR CODE HERE\n"
                                       "    raise NotImplementedError()\nprint(y)")
    assert solution_regions(source) == [(2, 4)]


@pytest.mark.parametrize("source, message", [
    (f"{BEGIN}\nx = 1", "without"),
    (f"x = 1\n{END}", "without"),
    (f"{BEGIN}\n{BEGIN}\nx\n{END}", "inside another"),
    (f"{BEGIN}\n{END}", "empty solution region"),
])
def test_malformed_markers_are_refused_naming_the_cell(source, message):
    with pytest.raises(ValueError, match=message) as err:
        solution_regions(source, "nb.ipynb, cell 3")
    assert "nb.ipynb, cell 3" in str(err.value)


def test_a_solution_cell_without_a_check_cell_is_refused():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"{BEGIN}\nx = 1\n{END}"),
                                         nbformat.v4.new_markdown_cell("text")])
    with pytest.raises(ValueError, match="followed by a code cell of checks"):
        exercises(nb, "nb.ipynb")


def test_answered_names_what_is_missing():
    answered({"a": 1}, "a")
    with pytest.raises(NotImplementedError, match="`b` is not defined yet"):
        answered({"a": 1}, "a", "b")
    with pytest.raises(ValueError):
        answered({})


def test_write_student_copies_refuses_a_folder_without_notebooks(tmp_path):
    with pytest.raises(ValueError, match=str(tmp_path)):
        write_student_copies(tmp_path, tmp_path / "out")


def test_make_students_command_writes_every_notebook(tmp_path):
    out = tmp_path / "student"
    run = subprocess.run([sys.executable, "-m", "s3lib.student", "--src", str(ROOT / "notebooks"),
                          "--out", str(out)], capture_output=True, text=True, check=True)
    assert sorted(p.name for p in out.glob("*.ipynb")) == [p.name for p in NOTEBOOKS]
    total = sum(len(exercises(_read(p))) for p in NOTEBOOKS)
    assert f"{len(NOTEBOOKS)} student notebooks with {total} exercises" in run.stdout
    assert "student/" in (ROOT / ".gitignore").read_text().split()
    assert "student:" in (ROOT / "Makefile").read_text()


def _sanitizers() -> list[tuple[re.Pattern, str]]:
    """nbval's sanitizers of ``notebooks/sanitize.cfg`` (what may differ between fresh runs)."""
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "notebooks" / "sanitize.cfg")
    return [(re.compile(cfg[s]["regex"]), cfg[s]["replace"]) for s in cfg.sections()]


def _shown(cell, sanitizers) -> str:
    """The text a cell printed (stdout and plain-text results), sanitized like nbval's."""
    text = "".join(o.get("text", "") if o.get("output_type") == "stream" and o.get("name") == "stdout"
                   else o.get("data", {}).get("text/plain", "") for o in cell.get("outputs", [])
                   if o.get("output_type") in ("stream", "execute_result"))
    for pattern, replace in sanitizers:
        text = pattern.sub(replace, text)
    return text


def _run(client, cell, index):
    """Execute ``cell``; ``None`` when it ran, else the error's ``(name, value)``."""
    from nbclient.exceptions import CellExecutionError

    try:
        client.execute_cell(cell, index)
    except CellExecutionError as exc:
        return exc.ename, exc.evalue
    return None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_student_copy_runs_up_to_its_exercises_and_its_checks_reject_a_wrong_answer(path, tmp_path):
    from nbclient import NotebookClient

    folder = tmp_path / "student"
    write_student_copies(path.parent, folder)
    nb = _read(folder / path.name)
    instructor = _read(path)
    exs = exercises(instructor, str(path))
    solutions = {e.solution: e for e in exs}
    checks = {e.check: e for e in exs}
    client = NotebookClient(nb, kernel_name=KERNEL, timeout=900,
                            resources={"metadata": {"path": str(folder)}})
    sanitizers, compared = _sanitizers(), 0
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            outcome = _run(client, cell, i)
            if i in solutions:
                assert outcome is not None and outcome[0] == "NotImplementedError", \
                    f"{path.name}, cell {i}: the blank should raise NotImplementedError, got {outcome}"
            elif i in checks:
                assert outcome is not None and outcome[0] in ("NotImplementedError", "AssertionError"), \
                    f"{path.name}, cell {i}: an unanswered check should fail, got {outcome}"
            else:
                assert outcome is None, f"{path.name}, cell {i} failed in the student copy: {outcome}"
                if "nbval-check-output" in cell.metadata.get("tags", []):  # exact by nature
                    assert _shown(cell, sanitizers) == _shown(instructor.cells[i], sanitizers), \
                        f"{path.name}, cell {i}: the student copy printed other than the instructor's"
                    compared += 1
        for e in exs:
            where = f"{path.name}, exercise {e.number}"
            edits, words = WRONG[_prefix(path), e.number]
            source = instructor.cells[e.solution].source
            wrong = nbformat.v4.new_code_cell(_wrong_answer(source, edits, where))
            assert _run(client, wrong, e.solution) is None, f"{where}: the wrong answer should run"
            outcome = _run(client, nb.cells[e.check], e.check)
            assert outcome is not None and outcome[0] == "AssertionError", \
                f"{where}: the check accepted a wrong answer ({edits}): {outcome}"
            assert words in outcome[1], f"{where}: the check's message {outcome[1]!r} lacks {words!r}"
            right = nbformat.v4.new_code_cell(_solution_text(source))
            assert _run(client, right, e.solution) is None, f"{where}: the solution should run"
            check = nb.cells[e.check]
            assert _run(client, check, e.check) is None, \
                f"{where}: the check should accept the instructor's solution"
            if "nbval-check-output" in check.metadata.get("tags", []):
                assert _shown(check, sanitizers) == _shown(instructor.cells[e.check], sanitizers), \
                    f"{where}: the check printed other than in the instructor's notebook"
                compared += 1
        assert compared >= 1, f"{path.name}: no exact-by-nature output was compared"
