"""The entropy explorer of notebook 03 without a browser: move controls, check what was redrawn.

The numbers in the label are checked against s3lib.losses.entropy_motion_loss on masks and flow
built here independently from the explorer's documented recipe.
"""

import math
import re

import pytest
import torch

from s3lib.data.synthetic import add_flow_noise, piecewise_affine_flow
from s3lib.losses import entropy_motion_loss
from s3lib.widgets.entropy import EntropyExplorer, entropy_explorer

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def explorer():
    return entropy_explorer(size=48, num_regions=3, seed=0, max_motion=4.0, deformation=0.0,
                            bins=16, noise=0.0)


def reference_losses(bins: int, noise: float, size: int = 48, seed: int = 0) -> dict[str, float]:
    """The three losses, computed without the widget module (one-hot, half/half, 1/L masks)."""
    syn = piecewise_affine_flow(size, 3, seed=seed, max_motion=4.0, deformation=0.0)
    flow = add_flow_noise(syn.flow, noise, seed=seed)[None]
    y = syn.labels
    true = torch.stack([(y == k).float() for k in range(3)])[None]
    mixed = torch.stack([0.5 * (y == k).float() + 0.5 * (y == (k + 1) % 3).float()
                         for k in range(3)])[None]
    uniform = torch.full((1, 3, size, size), 1 / 3)
    return {name: float(entropy_motion_loss(m, flow, bins=bins))
            for name, m in (("true", true), ("mixed", mixed), ("uniform", uniform))}


def label_numbers(text: str) -> dict[str, float]:
    return {k: float(re.search(rf"\b{k} (\d+\.\d+)", text).group(1))
            for k in ("true", "mixed", "uniform")}


def test_initial_state(explorer):
    explorer.show(bins=16, noise=0.0, segment=-1)
    assert explorer.image.value[:8] == PNG
    assert explorer.info.value.startswith("bins 16, noise 0.00 px:")
    assert explorer.widget.children[-1] is explorer.info


@pytest.mark.parametrize("bins, noise", [(16, 0.0), (8, 0.0), (8, 0.4), (40, 0.8)])
def test_label_numbers_match_the_loss(explorer, bins, noise):
    explorer.show(bins=bins, noise=noise, segment=-1)
    shown = label_numbers(explorer.info.value)
    ref = reference_losses(bins, noise)
    for kind in ("true", "mixed", "uniform"):
        assert shown[kind] == pytest.approx(ref[kind], abs=6e-5), kind
        assert explorer.last.losses[kind] == pytest.approx(ref[kind], rel=1e-6), kind
    assert f"log {bins} = {math.log(bins):.4f}" in explorer.info.value
    # conditional entropy: no segmentation beats the truth here, none is worse than uniform
    assert shown["true"] <= shown["mixed"] <= shown["uniform"] <= math.log(bins) + 1e-4


def test_moving_the_bins_slider_redraws(explorer):
    explorer.show(bins=16, noise=0.0, segment=-1)
    before_png, before_info = explorer.image.value, explorer.info.value
    explorer.bins.value = 32  # the observer, as a reader moving the slider
    assert explorer.image.value != before_png
    assert explorer.info.value != before_info
    assert explorer.info.value.startswith("bins 32, noise 0.00 px:")
    assert label_numbers(explorer.info.value)["true"] == pytest.approx(
        reference_losses(32, 0.0)["true"], abs=6e-5)


def test_moving_the_noise_slider_redraws_and_raises_the_loss(explorer):
    explorer.show(bins=16, noise=0.0, segment=-1)
    before_png, before = explorer.image.value, label_numbers(explorer.info.value)
    explorer.noise.value = 0.4
    assert explorer.image.value != before_png
    assert explorer.info.value.startswith("bins 16, noise 0.40 px:")
    after = label_numbers(explorer.info.value)
    assert after["true"] > before["true"]  # noise spreads each region's speed over more bins
    assert after == pytest.approx(reference_losses(16, 0.4), abs=6e-5)


def test_segment_choice_adds_that_segments_entropies(explorer):
    explorer.show(bins=16, noise=0.2, segment=-1)
    before_png = explorer.image.value
    explorer.segment.value = 1
    assert explorer.image.value != before_png
    assert "; segment 1: H = true" in explorer.info.value
    h = explorer.last.segment_entropies
    assert h["uniform"][0] == pytest.approx(h["uniform"][1])  # every segment sees the whole image
    explorer.segment.value = -1


def test_show_sets_the_controls_and_returns_the_summary(explorer):
    line = explorer.show(bins=24, noise=0.25, segment=2)
    assert (explorer.bins.value, explorer.noise.value, explorer.segment.value) == (24, 0.25, 2)
    assert line == explorer.info.value and line.startswith("bins 24, noise 0.25 px:")
    line = explorer.show(segment=-1)  # None keeps the other controls
    assert line.startswith("bins 24, noise 0.25 px:") and "segment" not in line


@pytest.mark.parametrize("kwargs", [{"bins": 1}, {"bins": 65}, {"bins": 2.5}, {"noise": -0.1},
                                    {"noise": 1.5}, {"segment": 3}, {"segment": "all"}])
def test_show_rejects_values_outside_the_controls(explorer, kwargs):
    with pytest.raises(ValueError):
        explorer.show(**kwargs)


@pytest.mark.parametrize("kwargs", [{"size": 4}, {"num_regions": 1}, {"num_regions": 11},
                                    {"max_motion": 0}, {"deformation": -1}, {"bins": 1},
                                    {"noise": 2.0}])
def test_bad_builder_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError):
        entropy_explorer(**kwargs)


def test_a_broken_callback_is_detected(monkeypatch):
    """The slider tests above fail when the observer's redraw is disabled."""
    broken = entropy_explorer(size=32, bins=16, noise=0.0)
    monkeypatch.setattr(EntropyExplorer, "update", lambda self: None)
    with pytest.raises(AssertionError):
        test_moving_the_bins_slider_redraws(broken)
    with pytest.raises(AssertionError):
        test_moving_the_noise_slider_redraws_and_raises_the_loss(broken)