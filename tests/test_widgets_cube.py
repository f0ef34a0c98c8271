"""The cube explorer of notebook 04 without a browser: move controls, check what was redrawn.

The numbers in the label are checked against a direct computation: the network's soft segments,
the weighted least-squares fit of s3lib.losses.fit_affine, and residuals |f - A phi| built here
from the normalised coordinates (not through the expanded form the widget uses).
"""

import re

import pytest
import torch

from s3lib.analysis import frame_scores
from s3lib.data.cube import HELDOUT_SEEDS
from s3lib.data.pairs import FlowPairs, cube_pairs
from s3lib.grouping import homogeneous_coordinates
from s3lib.losses import fit_affine
from s3lib.metrics import matched_miou
from s3lib.models import SegmentationNet
from s3lib.motion import DEFAULT_EPS
from s3lib.widgets.cube import CubeExplorer, cube_explorer

PNG = b"\x89PNG\r\n\x1a\n"
SIZE = 32


@pytest.fixture(scope="module")
def pairs():
    return cube_pairs((HELDOUT_SEEDS[0],), SIZE, 4)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SegmentationNet(num_segments=3, width=4).eval()


@pytest.fixture(scope="module")
def explorer(model, pairs):
    return cube_explorer(model, pairs)


def reference(model, pairs, frame: int, segment: int, eps: float = DEFAULT_EPS) -> dict[str, float]:
    """mIoU, share and mean residual of one frame and segment, computed without the widget
    (``eps``: the fit's ridge, by default the training loss's)."""
    with torch.no_grad():
        masks = model(pairs.images[frame:frame + 1]).softmax(1)  # (1, L, H, W)
    flow = pairs.flows[frame:frame + 1]
    params = fit_affine(flow, masks, eps)[0, segment]  # (2, 3)
    phi = homogeneous_coordinates(SIZE, SIZE)  # (3, H, W)
    pred = torch.einsum("ck,khw->chw", params, phi)
    rho = (flow[0] - pred).norm(dim=0)
    m = masks[0, segment]
    hard = masks[0].argmax(0)
    return {"miou": matched_miou(hard, pairs.labels[frame]),
            "share": float((hard == segment).float().mean()),
            "residual": float((m * rho).sum() / m.sum())}


def label_numbers(text: str) -> dict[str, float]:
    found = re.fullmatch(r"frame (\d+), segment (\d+): frame mIoU (\d\.\d+), segment share "
                         r"(\d+\.\d)%, mean residual (\d+\.\d+) px", text)
    assert found, text
    return {"frame": int(found[1]), "segment": int(found[2]), "miou": float(found[3]),
            "share": float(found[4]) / 100, "residual": float(found[5])}


def test_initial_state(explorer):
    assert explorer.image.value[:8] == PNG
    assert explorer.info.value.startswith("frame 0, segment 0:")
    assert explorer.widget.children[-1] is explorer.info
    assert (explorer.frame.max, explorer.segment.max) == (2, 2)


def test_each_control_redraws(explorer):
    explorer.show(0, 0)
    for control, value, text in ((explorer.frame, 2, "frame 2, segment 0:"),
                                 (explorer.segment, 1, "frame 2, segment 1:")):
        png, info = explorer.image.value, explorer.info.value
        control.value = value
        assert explorer.image.value != png and explorer.info.value != info
        assert explorer.info.value.startswith(text)


@pytest.mark.parametrize("frame, segment", [(0, 0), (1, 2), (2, 1)])
def test_label_numbers_match_a_direct_computation(explorer, model, pairs, frame, segment):
    line = explorer.show(frame, segment)
    shown, ref = label_numbers(line), reference(model, pairs, frame, segment)
    assert (shown["frame"], shown["segment"]) == (frame, segment)
    assert shown["miou"] == pytest.approx(ref["miou"], abs=6e-4)
    assert shown["share"] == pytest.approx(ref["share"], abs=6e-4)
    assert shown["residual"] == pytest.approx(ref["residual"], abs=6e-4)
    assert explorer.last.residual == pytest.approx(ref["residual"], rel=1e-3, abs=1e-5)


def test_the_ridge_is_the_one_given(pairs):
    """The explorer fits with its ``eps``: the training loss's ridge by default, or another one
    (checkpoints made before ``TrainConfig.eps`` were trained with 1e-4). On the true faces the
    larger ridge flattens the motion of the smallest face, so its residual grows (the scores
    themselves: tests/test_analysis.py)."""
    masks = torch.nn.functional.one_hot(pairs.labels, 7).permute(0, 3, 1, 2).float()
    sizes = [(int((pairs.labels[t] == f).sum()), t, f) for t in range(len(pairs))
             for f in range(1, 7) if (pairs.labels[t] == f).sum() >= 5]
    _, t, face = min(sizes)
    residual = {eps: frame_scores(pairs.flows[t], pairs.labels[t], masks[t], face, eps=eps).residual
                for eps in (1e-4, DEFAULT_EPS)}
    assert residual[1e-4] > 1.5 * residual[DEFAULT_EPS]
    for eps, explorer in ((DEFAULT_EPS, CubeExplorer(pairs=pairs, masks=masks)),
                          (1e-4, CubeExplorer(pairs=pairs, masks=masks, eps=1e-4))):
        explorer.show(t, face)
        assert explorer.last.residual == pytest.approx(residual[eps], rel=1e-6)


def test_a_broken_observer_is_detected(monkeypatch, model, pairs):
    """The control test above fails when the observer is disabled."""
    monkeypatch.setattr(CubeExplorer, "_on_change", lambda self, change: None)
    with pytest.raises(AssertionError):
        test_each_control_redraws(cube_explorer(model, pairs))


@pytest.mark.parametrize("frame, segment", [(3, 0), (-1, 0), (0, 3), (0, -1), (1.0, 0),
                                            (True, 0), (0, None)])
def test_bad_controls(explorer, frame, segment):
    with pytest.raises(ValueError):
        explorer.show(frame, segment)


def test_bad_pairs(model, pairs):
    unlabelled = FlowPairs(pairs.images, pairs.flows)
    with pytest.raises(ValueError, match="labels"):
        cube_explorer(model, unlabelled)
    with pytest.raises(ValueError):
        cube_explorer(model, pairs.images)
    with pytest.raises(ValueError):
        cube_explorer(model, pairs, frame=5)
