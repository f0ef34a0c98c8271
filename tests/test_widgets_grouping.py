"""The boundary explorer of notebook 01, without a browser."""

import numpy as np
import pytest

from s3lib.analysis import boundary_masks, two_motion_flow
from s3lib.grouping import log_evidence, max_log_likelihood
from s3lib.widgets.grouping import boundary_explorer


@pytest.fixture(scope="module")
def explorer():
    return boundary_explorer(size=24, true_boundary=14)


def test_moving_the_boundary_redraws_and_reports_the_scores(explorer):
    before_png, before = explorer.image.value, explorer.info.value
    explorer.boundary.value = 14
    assert explorer.image.value != before_png and explorer.info.value != before
    assert explorer.info.value.startswith("boundary at column 14 (true: 14)")
    # the numbers shown are the scores of that split, computed here independently
    flow = two_motion_flow(24, 14, explorer.noise.value)[None]
    masks = boundary_masks(24, [14], 0.0)
    ll = max_log_likelihood(masks, flow, scale=explorer.sigma).item() / 24**2
    ev = log_evidence(masks, flow, sigma=explorer.sigma, prior_std=5.0).item() / 24**2
    assert f"max log-likelihood {ll:.3f}" in explorer.info.value
    assert f"log evidence {ev:.3f}" in explorer.info.value


def test_noise_and_softness_rescore(explorer):
    explorer.show(14, softness=0.0, noise=0.3)
    sharp = explorer.scan.evidence.copy()
    explorer.softness.value = 3.0
    assert not np.allclose(explorer.scan.evidence, sharp)
    assert "softness 3.0 px" in explorer.info.value
    explorer.noise.value = 1.0
    assert "noise 1.0 px" in explorer.info.value


def test_a_broken_observer_is_detected(monkeypatch):
    """The boundary test above fails when the observer is disabled."""
    from s3lib.widgets.grouping import BoundaryExplorer

    monkeypatch.setattr(BoundaryExplorer, "_on_change", lambda self, change: None)
    with pytest.raises(AssertionError):
        test_moving_the_boundary_redraws_and_reports_the_scores(
            boundary_explorer(size=24, true_boundary=14))


@pytest.mark.parametrize("kwargs", [{"size": 4}, {"size": 16, "true_boundary": 16}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        boundary_explorer(**kwargs)
