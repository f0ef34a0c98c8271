"""The segment-fit explorer of notebook 05 without a browser: move sliders, check the redraw.

A tiny synthetic set-up: three frames of a piecewise-affine flow field (known regions), and
a random network or hand-made soft masks. The numbers in the label are checked against a
direct computation (fit_affine on that frame's masks, residuals written out here).
"""

import re

import numpy as np
import pytest
import torch

from s3lib.data.pairs import FlowPairs
from s3lib.data.synthetic import piecewise_affine_flow
from s3lib.losses import fit_affine
from s3lib.models import SegmentationNet
from s3lib.widgets.sintel import SegmentFitExplorer, segment_fit_explorer

PNG = b"\x89PNG\r\n\x1a\n"
SIZE, FRAMES, SEGMENTS = 24, 3, 3


@pytest.fixture(scope="module")
def pairs():
    scenes = [piecewise_affine_flow(SIZE, 3, seed=s, max_motion=3.0) for s in range(FRAMES)]
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(FRAMES, 3, SIZE, SIZE, generator=gen)
    flows = torch.stack([s.flow for s in scenes])
    return FlowPairs(images, flows, None, [f"toy:{t}" for t in range(FRAMES)])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SegmentationNet(SEGMENTS, width=4).eval()


@pytest.fixture(scope="module")
def explorer(model, pairs):
    return segment_fit_explorer(model, pairs, frame=0, segment=0, credit="toy data")


def soft_true_masks(seed: int) -> torch.Tensor:
    """Softened one-hot masks of a scene's regions: ``(L, H, W)``, summing to 1."""
    labels = piecewise_affine_flow(SIZE, 3, seed=seed, max_motion=3.0).labels
    one_hot = torch.nn.functional.one_hot(labels, SEGMENTS).permute(2, 0, 1).float()
    return 0.9 * one_hot + 0.1 / SEGMENTS


def reference(flow: torch.Tensor, masks: torch.Tensor, segment: int) -> dict[str, float]:
    """Mean residual, share and mean speed of one segment, written out from fit_affine."""
    a = fit_affine(flow[None], masks[None])[0, segment].double()          # (2, 3)
    h, w = flow.shape[-2:]
    s = max(h, w) / 2
    ys = (torch.arange(h, dtype=torch.float64) - (h - 1) / 2) / s
    xs = (torch.arange(w, dtype=torch.float64) - (w - 1) / 2) / s
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    fitted = a[:, 0, None, None] * x + a[:, 1, None, None] * y + a[:, 2, None, None]
    f = flow.double()
    m = masks[segment].double()
    res = (f - fitted).pow(2).sum(0).sqrt()
    return {"residual": float((m * res).sum() / m.sum()), "share": float(m.mean()),
            "speed": float((m * f.pow(2).sum(0).sqrt()).sum() / m.sum())}


def label_numbers(text: str) -> dict[str, float]:
    match = re.match(r"frame (\d+), segment (\d+): mean residual (\d+\.\d+) px, (\d+\.\d)% of "
                     r"the pixels, mean speed (\d+\.\d+) px \((.*)\)$", text)
    assert match, text
    f, l, r, p, v, src = match.groups()
    return {"frame": int(f), "segment": int(l), "residual": float(r), "share": float(p) / 100,
            "speed": float(v), "source": src}


def test_initial_state(explorer):
    assert isinstance(explorer, SegmentFitExplorer)
    assert explorer.image.value[:8] == PNG
    assert explorer.info.value.startswith("frame 0, segment 0:")
    assert explorer.widget.children[-1] is explorer.info
    assert (explorer.frame.max, explorer.segment.max) == (FRAMES - 1, SEGMENTS - 1)


def test_label_numbers_match_a_direct_fit(explorer, model, pairs):
    masks = model(pairs.images).softmax(1).detach()
    for frame, segment in [(0, 0), (1, 2), (2, 1)]:
        shown = label_numbers(explorer.show(frame, segment))
        ref = reference(pairs.flows[frame], masks[frame], segment)
        assert (shown["frame"], shown["segment"]) == (frame, segment)
        assert shown["source"] == f"toy:{frame}"
        assert shown["residual"] == pytest.approx(ref["residual"], abs=6e-4)
        assert shown["share"] == pytest.approx(ref["share"], abs=6e-4)
        assert shown["speed"] == pytest.approx(ref["speed"], abs=6e-4)
        assert explorer.last.mean_residual == pytest.approx(ref["residual"], rel=1e-4, abs=1e-6)


def test_given_masks_give_the_direct_fit_and_explain_their_regions(pairs):
    masks = torch.stack([soft_true_masks(s) for s in range(FRAMES)])
    ex = segment_fit_explorer(None, pairs, masks=masks)
    for segment in range(SEGMENTS):
        shown = label_numbers(ex.show(1, segment))
        ref = reference(pairs.flows[1], masks[1], segment)
        assert shown["residual"] == pytest.approx(ref["residual"], abs=6e-4)
        assert shown["share"] == pytest.approx(ref["share"], abs=6e-4)
    # near-true segments of a piecewise-affine field: the fit explains most of the motion
    fits = ex.fits  # s3lib.analysis.fit_segments of the pairs and masks (tests/test_analysis.py)
    assert torch.all(fits.mean_residual < fits.mean_speed)
    assert torch.allclose(fits.share.sum(1), torch.ones(FRAMES, dtype=fits.share.dtype))


def test_moving_the_frame_slider_redraws(explorer):
    explorer.show(0, 1)
    before_png, before_info = explorer.image.value, explorer.info.value
    explorer.frame.value = 2  # the observer, as a reader moving the slider
    assert explorer.image.value != before_png
    assert explorer.info.value != before_info
    assert explorer.info.value.startswith("frame 2, segment 1:")
    assert explorer.info.value.endswith("(toy:2)")


def test_moving_the_segment_slider_redraws(explorer):
    explorer.show(1, 0)
    before_png = explorer.image.value
    explorer.segment.value = 2
    assert explorer.image.value != before_png
    assert explorer.info.value.startswith("frame 1, segment 2:")


def test_show_sets_both_sliders_and_returns_the_label(explorer):
    line = explorer.show(2, 1)
    assert (explorer.frame.value, explorer.segment.value) == (2, 1)
    assert line == explorer.info.value


@pytest.mark.parametrize("frame, segment", [(-1, 0), (FRAMES, 0), (0, -1), (0, SEGMENTS),
                                            (1.0, 0), (0, "1"), (True, 0)])
def test_show_rejects_values_outside_the_sliders(explorer, frame, segment):
    explorer.show(0, 0)
    with pytest.raises(ValueError):
        explorer.show(frame, segment)
    assert (explorer.frame.value, explorer.segment.value) == (0, 0)  # nothing moved


@pytest.mark.parametrize("kwargs", [{"frame": FRAMES}, {"segment": SEGMENTS}, {"frame": -1}])
def test_bad_builder_arguments_are_rejected(model, pairs, kwargs):
    with pytest.raises(ValueError):
        segment_fit_explorer(model, pairs, **kwargs)


def test_bad_masks_and_pairs_are_rejected(pairs):
    with pytest.raises(ValueError, match="model or masks"):
        segment_fit_explorer(None, pairs)
    with pytest.raises(ValueError, match="masks"):
        segment_fit_explorer(None, pairs, masks=torch.ones(FRAMES + 1, 2, SIZE, SIZE) / 2)
    with pytest.raises(ValueError, match="pairs"):
        segment_fit_explorer(None, np.zeros(3), masks=torch.ones(1, 2, SIZE, SIZE) / 2)
