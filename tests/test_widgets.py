"""Widget builders without a browser: set control values, check what the observers updated."""

import numpy as np
import pytest

from s3lib import widgets


@pytest.fixture
def explorer(moving_texture_frames):
    return widgets.flow_explorer(moving_texture_frames, gap=1, credit="test credit")


def test_initial_state_shows_the_first_pair(explorer):
    assert explorer.pair.value == 0 and explorer.gap.value == 1 and explorer.method.value == "dis"
    assert explorer.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert explorer.info.value.startswith("frames 0 -> 1 (dis)")
    assert explorer.pair.max == len(explorer.frames) - 2


def test_moving_the_slider_redraws_with_the_right_motion(explorer):
    before_png, before_info = explorer.image.value, explorer.info.value
    explorer.pair.value = 4  # frames 4 -> 5: the texture moves 5 px to the right
    assert explorer.image.value != before_png
    assert explorer.info.value != before_info
    assert explorer.info.value.startswith("frames 4 -> 5 (dis)")
    assert explorer.last.mean_magnitude == pytest.approx(5.0, abs=0.6)
    assert explorer.last.error_warped < 0.5 * explorer.last.error_no_motion


def test_gap_changes_motion_and_keeps_the_pair_inside_the_clip(explorer):
    explorer.pair.value = 1
    one = explorer.last.mean_magnitude  # 2 px
    explorer.gap.value = 2  # frames 1 -> 3: 2 + 3 = 5 px
    assert explorer.info.value.startswith("frames 1 -> 3")
    assert explorer.last.mean_magnitude == pytest.approx(5.0, abs=0.8)
    assert explorer.last.mean_magnitude > 2 * one
    assert explorer.pair.max == len(explorer.frames) - 1 - 2
    explorer.pair.value = explorer.pair.max
    explorer.gap.value = 4  # the slider clamps the pair so t + gap stays in the clip
    assert explorer.pair.value + explorer.gap.value <= len(explorer.frames) - 1


def test_method_toggle_recomputes_with_farneback(explorer):
    explorer.method.value = "farneback"
    assert "(farneback)" in explorer.info.value


def test_show_sets_the_controls_and_returns_the_summary(explorer):
    line = explorer.show(3, gap=2, method="farneback")
    assert (explorer.pair.value, explorer.gap.value, explorer.method.value) == (3, 2, "farneback")
    assert line == explorer.info.value and line.startswith("frames 3 -> 5 (farneback)")


def test_a_broken_callback_is_detected(moving_texture_frames, monkeypatch):
    """The slider test above fails when the observer's redraw is disabled."""
    monkeypatch.setattr(widgets.FlowExplorer, "update", lambda self: None)
    broken = widgets.flow_explorer(moving_texture_frames, gap=1)
    with pytest.raises(AssertionError):
        test_moving_the_slider_redraws_with_the_right_motion(broken)


def test_render_flow_pair_summary_matches_its_numbers(moving_texture_frames):
    view = widgets.render_flow_pair(moving_texture_frames, 2, gap=1)
    line = view.summary(2, 1, "dis")
    assert f"{view.mean_magnitude:.2f} px" in line and f"{view.error_warped:.1f}" in line
    with pytest.raises(ValueError, match="t:"):
        widgets.render_flow_pair(moving_texture_frames, 7, gap=1)


@pytest.mark.parametrize("frames, gap", [
    (np.zeros((4, 16, 16, 3), np.float32), 1),
    (np.zeros((4, 16, 16), np.uint8), 1),
    (np.zeros((4, 16, 16, 3), np.uint8), 4),
    (np.zeros((4, 16, 16, 3), np.uint8), 0),
])
def test_bad_frames_or_gap_are_rejected(frames, gap):
    with pytest.raises(ValueError):
        widgets.flow_explorer(frames, gap=gap)


# ----------------------------------------------------------------------------- the base class
EXPLORERS = ["BoundaryExplorer", "CubeExplorer", "EntropyExplorer", "FlowExplorer",
             "FreeMaskExplorer", "SegmentFitExplorer", "VideoExplorer"]


@pytest.mark.parametrize("name", EXPLORERS)
def test_every_explorer_uses_the_one_base_class(name):
    from s3lib.widgets._controls import Explorer

    cls = getattr(widgets, name)
    assert issubclass(cls, Explorer)
    for method in ("_on_change", "_set_controls", "_assemble"):  # inherited, not hand-rolled
        assert method not in vars(cls), f"{name} defines its own {method}"
    assert "update" in vars(cls) and "show" in vars(cls)


def test_set_controls_redraws_once_and_constrain_runs_while_quiet():
    from dataclasses import dataclass, field

    import ipywidgets as w

    from s3lib.widgets._controls import Explorer

    @dataclass
    class Counter(Explorer):
        redraws: int = 0
        constrained: list = field(default_factory=list)

        def __post_init__(self):
            self.a, self.b = w.IntSlider(value=0, max=10), w.IntSlider(value=0, max=10)
            self._assemble((self.a, self.b))

        def _constrain(self, change):
            self.constrained.append(change["owner"] is self.a)

        def update(self):
            self.redraws += 1
            self.info.value = f"a {self.a.value}, b {self.b.value}"
            return self.info.value

        def show(self, a, b):
            return self._set_controls((self.a, a), (self.b, b))

    c = Counter()
    assert c.redraws == 1 and c.controls == (c.a, c.b)
    assert c.widget.children[0].children == (c.a, c.b) and c.widget.children[1:] == (c.image,
                                                                                    c.info)
    c.a.value = 3  # an observer: one redraw per move
    assert c.redraws == 2 and c.info.value == "a 3, b 0"
    assert c.show(5, 7) == "a 5, b 7" and c.redraws == 3  # two moves, one redraw
    assert c.constrained == [True, True, False] and not c._quiet


def test_notebooks_import_only_explorer_builders_from_widgets():
    """The scores a notebook prints come from s3lib.analysis; from s3lib.widgets a notebook
    imports the explorers (``*_explorer``) or the widgets package itself."""
    import ast
    import json

    from conftest import REPO

    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"])
            lines = [l for l in source.splitlines() if not l.lstrip().startswith(("%", "!"))]
            for node in ast.walk(ast.parse("\n".join(lines))):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                        "s3lib.widgets"):
                    names = [a.name for a in node.names]
                    assert all(n.endswith("_explorer") for n in names), (path.name, names)
