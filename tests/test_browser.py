"""Notebooks in a real browser: JupyterLab + headless Debian chromium, driven by Playwright.

Each notebook is run top to bottom in quick mode (``S3_QUICK=1``); then its widget controls are
moved and the test checks that the picture and the text below it changed. A second run with the
widget's callback broken on purpose checks that the test can fail.
"""

from pathlib import Path

import pytest

from browser import LabServer, NotebookPage, lab_page, stripped_copy
from conftest import REPO

pytestmark = pytest.mark.browser
ARTIFACTS = REPO / "tests" / "_artifacts"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab-root")
    state = tmp_path_factory.mktemp("lab-state")
    with LabServer(root, state, quick=True) as server:
        yield server


def _run_overview(lab, name: str, inject=None, change_timeout: float = 60) -> None:
    sub = lab.root / name
    sub.mkdir()
    stripped_copy(REPO / "notebooks" / "00_overview.ipynb", sub, inject)
    with lab_page(lab, ARTIFACTS, name) as page:
        nb = NotebookPage(page, lab, f"{name}/00_overview.ipynb", workspace=name)
        nb.open()
        nb.wait_kernel_ready()
        nb.run_all()
        page.locator(".widget-image").first.wait_for(state="visible")
        before = nb.widget_state()
        assert before["images"] and before["images"][0], "the flow explorer shows no picture"
        # the checked cell after the widget left it at frames 40 -> 44, Farneback
        assert any(t.startswith("frames 40 -> 44") for t in before["labels"]), before["labels"]
        nb.set_slider("first frame", 20)
        after = nb.wait_widget_change(before, change_timeout)
        assert any(t.startswith("frames 20 -> 24") for t in after["labels"]), after["labels"]
        nb.set_slider("gap", 2)
        after_gap = nb.wait_widget_change(after, change_timeout)
        assert any(t.startswith("frames 20 -> 22") for t in after_gap["labels"])


def test_overview_widget_updates_in_the_browser(lab):
    _run_overview(lab, "ok")


def test_browser_test_fails_when_the_callback_is_broken(lab):
    sabotage = ("import s3lib.widgets as _w\n"
                "_w.FlowExplorer._on_change = lambda self, change: None  # broken on purpose")
    with pytest.raises(AssertionError, match="did not change"):
        _run_overview(lab, "broken", [sabotage], change_timeout=15)
