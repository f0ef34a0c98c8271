"""Notebook 03 in a real browser: run it in quick mode, move the entropy explorer's sliders.

Same harness as tests/test_browser.py (JupyterLab + headless Debian chromium via Playwright). A
second run with the widget's observer broken on purpose checks that the test can fail.
"""

import pytest

from browser import LabServer, NotebookPage, lab_page, stripped_copy
from conftest import REPO

pytestmark = pytest.mark.browser
ARTIFACTS = REPO / "tests" / "_artifacts"
NOTEBOOK = "03_entropy_motion_loss.ipynb"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab-root")
    state = tmp_path_factory.mktemp("lab-state")
    with LabServer(root, state, quick=True) as server:
        yield server


def _run_entropy(lab, name: str, inject=None, change_timeout: float = 60) -> None:
    sub = lab.root / name
    sub.mkdir()
    stripped_copy(REPO / "notebooks" / NOTEBOOK, sub, inject)
    with lab_page(lab, ARTIFACTS, f"03-{name}") as page:
        nb = NotebookPage(page, lab, f"{name}/{NOTEBOOK}", workspace=f"03-{name}")
        nb.open()
        nb.wait_kernel_ready()
        nb.run_all()
        page.locator(".widget-image").first.wait_for(state="visible")
        before = nb.widget_state()
        assert before["images"] and before["images"][0], "the entropy explorer shows no picture"
        # the checked cell after the widget left it at 16 bins, noise 0.4 px, segment 1
        labels = before["labels"]
        assert any(t.startswith("bins 16, noise 0.40 px:") for t in labels), labels
        nb.set_slider("bins", 8)
        after = nb.wait_widget_change(before, change_timeout)
        assert any(t.startswith("bins 8, noise 0.40 px:") for t in after["labels"]), after["labels"]
        nb.set_slider("noise", 0.2)
        after_noise = nb.wait_widget_change(after, change_timeout)
        assert any(t.startswith("bins 8, noise 0.20 px:") for t in after_noise["labels"]), (
            after_noise["labels"])


def test_entropy_widget_updates_in_the_browser(lab):
    _run_entropy(lab, "ok")


def test_browser_test_fails_when_the_callback_is_broken(lab):
    sabotage = ("import s3lib.widgets.entropy as _e\n"
                "_e.EntropyExplorer._on_change = lambda self, change: None  # broken on purpose")
    with pytest.raises(AssertionError, match="did not change"):
        _run_entropy(lab, "broken", [sabotage], change_timeout=15)
