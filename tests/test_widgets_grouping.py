"""The boundary explorer of notebook 01, without a browser.

The numbers in the label are checked against eq. (2) and eq. (1) of masks and flow built here
independently (one-hot column masks, :func:`s3lib.analysis.two_motion_flow`)."""

import re

import numpy as np
import pytest
import torch

from s3lib.analysis import boundary_masks, two_motion_flow
from s3lib.grouping import log_evidence, max_log_likelihood
from s3lib.widgets.grouping import MAX_SEGMENTS, boundary_explorer

SIZE, TRUE = 24, 14


@pytest.fixture(scope="module")
def explorer():
    return boundary_explorer(size=SIZE, true_boundary=TRUE)


def column_masks(cuts, size=SIZE):
    """(1, L, size, size) one-hot masks of the vertical strips between ``cuts``."""
    labels = np.broadcast_to(np.digitize(np.arange(size), cuts), (size, size))
    return torch.from_numpy(np.eye(len(cuts) + 1)[labels].transpose(2, 0, 1).copy())[None]


def reference(cuts, noise, sigma, prior_std=5.0):
    flow = two_motion_flow(SIZE, TRUE, noise)[None]
    masks = column_masks(cuts)
    return (max_log_likelihood(masks, flow, scale=sigma).item(),
            log_evidence(masks, flow, sigma=sigma, prior_std=prior_std).item())


def label_scores(text):
    ll = float(re.search(r"max log-likelihood (-?\d+\.\d)", text).group(1))
    ev = float(re.search(r"log evidence (-?\d+\.\d)", text).group(1))
    best = re.search(r"best L: (\d) by eq\. \(2\), (\d) by eq\. \(1\)", text)
    return ll, ev, int(best.group(1)), int(best.group(2))


def test_moving_the_boundary_redraws_and_reports_the_scores(explorer):
    explorer.show(6, softness=0.0, noise=0.3, sigma=0.3, segments=2)
    before_png, before = explorer.image.value, explorer.info.value
    explorer.boundary.value = TRUE
    assert explorer.image.value != before_png and explorer.info.value != before
    assert explorer.info.value.startswith(f"boundary at column {TRUE} (true: {TRUE}), L = 2")
    # the numbers shown are the scores of that split, computed here independently
    ll, ev = reference([TRUE], explorer.noise.value, explorer.sigma.value)
    shown_ll, shown_ev, _, _ = label_scores(explorer.info.value)
    assert shown_ll == pytest.approx(ll, abs=0.051) and shown_ev == pytest.approx(ev, abs=0.051)


@pytest.mark.parametrize("segments, cuts", [(1, []), (3, [7, 14]), (4, [7, 14, 19])])
def test_more_segments_score_their_strips(explorer, segments, cuts):
    line = explorer.show(TRUE, noise=0.3, sigma=0.3, segments=segments)
    assert f"L = {segments} (true: 2)" in line
    ll, ev = reference(cuts, 0.3, 0.3)
    shown_ll, shown_ev, _, _ = label_scores(line)
    assert shown_ll == pytest.approx(ll, abs=0.051) and shown_ev == pytest.approx(ev, abs=0.051)


def test_eq2_keeps_rising_with_l_while_eq1_peaks_at_the_true_number(explorer):
    line = explorer.show(TRUE, noise=0.3, sigma=0.3, segments=2)
    c = explorer.counts
    assert len(c.max_loglik) == MAX_SEGMENTS
    assert np.all(np.diff(c.max_loglik) > 0), "eq. (2) fits a little more noise with every strip"
    assert label_scores(line)[2:] == (MAX_SEGMENTS, 2)
    # a model sure of itself (sigma far below the noise) over-segments under eq. (1) too
    line = explorer.show(TRUE, noise=1.0, sigma=0.3, segments=2)
    assert label_scores(line)[3] > 2
    line = explorer.show(TRUE, noise=1.0, sigma=1.0, segments=2)
    assert label_scores(line)[3] == 2


def test_the_scan_is_the_two_strip_split_at_every_column(explorer):
    explorer.show(10, softness=2.0, noise=0.5, sigma=0.5, segments=3)
    masks = boundary_masks(SIZE, explorer.positions, 2.0)
    flows = two_motion_flow(SIZE, TRUE, 0.5)[None].expand(len(masks), -1, -1, -1)
    np.testing.assert_allclose(explorer.scan.max_loglik,
                               max_log_likelihood(masks, flows, scale=0.5).numpy(), rtol=1e-9)
    np.testing.assert_allclose(explorer.scan.evidence,
                               log_evidence(masks, flows, sigma=0.5, prior_std=5.0).numpy(),
                               rtol=1e-9)
    explorer.show(10, softness=0.0, noise=0.3, sigma=0.3, segments=3)
    assert explorer.positions[np.argmax(explorer.scan.evidence)] == TRUE


def test_sigma_and_noise_change_the_scores(explorer):
    a = explorer.show(TRUE, noise=0.3, sigma=0.3)
    b = explorer.show(TRUE, noise=0.3, sigma=1.0)
    c = explorer.show(TRUE, noise=1.0, sigma=1.0)
    assert len({a, b, c}) == 3
    assert "model sigma 1.0 px" in b and "flow noise 1.0 px" in c
    explorer.softness.value = 3.0
    assert "softness 3.0 px" in explorer.info.value


def test_a_broken_observer_is_detected(monkeypatch):
    """The boundary test above fails when the observer is disabled."""
    from s3lib.widgets.grouping import BoundaryExplorer

    monkeypatch.setattr(BoundaryExplorer, "_on_change", lambda self, change: None)
    with pytest.raises(AssertionError):
        test_moving_the_boundary_redraws_and_reports_the_scores(
            boundary_explorer(size=SIZE, true_boundary=TRUE))


@pytest.mark.parametrize("kwargs", [{"size": 4}, {"size": 16, "true_boundary": 16},
                                    {"sigma": 0.0}, {"sigma": 3.0}, {"noise": -0.1},
                                    {"prior_std": 0.0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        boundary_explorer(**kwargs)


@pytest.mark.parametrize("kwargs", [{"segments": 0}, {"segments": MAX_SEGMENTS + 1},
                                    {"segments": 2.5}, {"sigma": 0.05}, {"noise": 2.5},
                                    {"softness": -1.0}, {"boundary": SIZE}])
def test_show_rejects_values_outside_the_controls(explorer, kwargs):
    args = {"boundary": TRUE, **kwargs}
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        explorer.show(**args)
