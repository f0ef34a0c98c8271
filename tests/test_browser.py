"""Notebooks in a real browser: JupyterLab + headless Debian chromium, driven by Playwright.

Each notebook is run top to bottom in quick mode (``S3_QUICK=1``); then its widget controls are
moved and the test checks that the picture and the text below it changed. A run with a
widget's callback broken on purpose checks that the test can fail.
"""

import pytest

from browser import LabServer, NotebookPage, lab_page, stripped_copy
from conftest import REPO

pytestmark = pytest.mark.browser
ARTIFACTS = REPO / "tests" / "_artifacts"

# notebook -> (label text the checked cells leave on screen, [(slider, value, text the label
# then contains)])
CASES = {
    "00_overview.ipynb": ("frames 40 -> 44", [("first frame", 20, "frames 20 -> 24"),
                                              ("gap", 2, "frames 20 -> 22")]),
    "01_grouping_model.ipynb": ("boundary at column 28", [
        ("boundary column", 20, "boundary at column 20"),
        ("segments L", 4, "boundary at column 20 (true: 28), L = 4")]),
    "02_affine_motion_loss.ipynb": ("L=3, charbonnier, noise 0.5", [
        ("segments L", 2, "L=2, charbonnier"),
        ("outliers (share)", 0.05, "L=2, charbonnier, noise 0.5 px, outliers 5%:")]),
    "03_entropy_motion_loss.ipynb": ("bins 16, noise 0.40 px:", [
        ("bins", 8, "bins 8, noise 0.40 px:"), ("noise", 0.2, "bins 8, noise 0.20 px:")]),
    "04_cube_toy.ipynb": ("frame 12, segment 2:", [("frame", 20, "frame 20, segment 2:"),
                                                   ("segment", 1, "frame 20, segment 1:")]),
    "05_sintel.ipynb": ("frame 6, segment 2:", [("frame", 2, "frame 2, segment 2:"),
                                                ("segment", 1, "frame 2, segment 1:")]),
    "06_real_video_entropy.ipynb": ("frame 70, bins 32, segments 5:", [
        ("bins", 16, "frame 70, bins 16, segments 5:"),
        ("segments", 3, "frame 70, bins 16, segments 3:"),
        ("frame", 71, "frame 71, bins 16, segments 3:"),
        ("max speed", 4.0, "bins to 4.00 px (fixed)")]),
    "07_voc07_transfer.ipynb": ("scene 0, block 5:", [("scene", 3, "scene 3, block 5:"),
                                                      ("block", 2, "scene 3, block 2:")]),
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab-root")
    state = tmp_path_factory.mktemp("lab-state")
    with LabServer(root, state, quick=True) as server:
        yield server


def run_and_move(lab, notebook: str, name: str, inject=None, change_timeout: float = 60) -> None:
    """Run ``notebook`` in JupyterLab, then move each slider of ``CASES[notebook]`` in turn."""
    initial, moves = CASES[notebook]
    sub = lab.root / name
    sub.mkdir()
    stripped_copy(REPO / "notebooks" / notebook, sub, inject)
    with lab_page(lab, ARTIFACTS, name) as page:
        nb = NotebookPage(page, lab, f"{name}/{notebook}", workspace=name)
        nb.open()
        nb.wait_kernel_ready()
        nb.run_all()
        page.locator(".widget-image").first.wait_for(state="visible")
        state = nb.widget_state()
        assert state["images"] and state["images"][0], "the widget shows no picture"
        assert any(t.startswith(initial) for t in state["labels"]), state["labels"]
        for slider, value, expected in moves:
            nb.set_slider(slider, value)
            state = nb.wait_widget_change(state, change_timeout)
            assert any(expected in t for t in state["labels"]), state["labels"]


@pytest.mark.parametrize("notebook", sorted(CASES))
def test_widgets_update_in_the_browser(lab, notebook):
    run_and_move(lab, notebook, notebook.split("_")[0])


def test_browser_test_fails_when_the_callback_is_broken(lab):
    sabotage = ("import s3lib.widgets as _w\n"
                "_w.FlowExplorer._on_change = lambda self, change: None  # broken on purpose")
    with pytest.raises(AssertionError, match="did not change"):
        run_and_move(lab, "00_overview.ipynb", "broken", [sabotage], change_timeout=15)


def test_every_notebook_has_a_browser_case():
    notebooks = {p.name for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert notebooks <= set(CASES), f"notebooks without a browser test: {notebooks - set(CASES)}"
