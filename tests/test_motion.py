"""s3lib.motion: the one motion-model fit that grouping and the losses share, and its ridge."""

import importlib
import inspect
import pkgutil
import sys
from pathlib import Path

import pytest
import torch

import s3lib
from s3lib import motion
from s3lib.grouping import fit_motion
from s3lib.losses import affine_reconstruction, fit_affine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from ridge import exact_reconstruction, random_case, slope_kept  # noqa: E402


def _worst_relative_difference(eps: float, trials: int = 10) -> float:
    gen = torch.Generator().manual_seed(3)
    worst = 0.0
    for _ in range(trials):
        masks, flow = random_case(20, 28, 4, gen)
        exact = exact_reconstruction(flow, masks)
        fitted = affine_reconstruction(flow.float(), masks.float(), eps=eps).double()
        worst = max(worst, float((fitted - exact).norm() / exact.norm()))
    return worst


def test_the_default_ridge_agrees_with_plain_weighted_least_squares():
    """With DEFAULT_EPS the float32 fit is plain weighted least squares to 1e-4 relative on
    well-posed segments; the old default 1e-4 is 10x outside that (so the check can fail)."""
    assert _worst_relative_difference(motion.DEFAULT_EPS) < 1e-4
    assert _worst_relative_difference(1e-4) > 1e-3


def test_a_small_face_keeps_its_slope_at_the_default_ridge():
    assert slope_kept(motion.DEFAULT_EPS) > 0.98
    assert slope_kept(1e-4) < 0.6


def test_an_empty_segment_stays_finite():
    flow = torch.randn(1, 2, 8, 8)
    masks = torch.zeros(1, 2, 8, 8)
    masks[:, 0] = 1
    params = fit_affine(flow, masks)
    assert torch.isfinite(params).all() and params[0, 1].abs().max() == 0


def test_grouping_and_losses_fit_with_the_same_code():
    gen = torch.Generator().manual_seed(0)
    masks, flow = random_case(12, 16, 3, gen)
    assert torch.equal(fit_affine(flow, masks), fit_motion(masks, flow, "gaussian"))
    g, r, _ = motion.weighted_normal_equations(flow, masks)
    assert torch.equal(fit_affine(flow, masks), motion.solve_motion(g, r))


def test_residuals_match_the_direct_formula():
    gen = torch.Generator().manual_seed(1)
    masks, flow = random_case(10, 12, 3, gen)
    params = fit_affine(flow, masks)
    direct = (flow[:, None] - motion.predict(params, 10, 12)).pow(2).sum(2).sqrt()
    torch.testing.assert_close(motion.segment_residuals(params, flow), direct, rtol=1e-6,
                               atol=1e-9)


def _ridge_parameters():
    """Every ``eps`` / ``ridge`` keyword default of a public s3lib function or dataclass."""
    found = []
    for info in pkgutil.walk_packages(s3lib.__path__, "s3lib."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if getattr(obj, "__module__", None) != module.__name__ or name.startswith("_"):
                continue
            members = [obj] + ([v for k, v in vars(obj).items() if callable(v) and not
                                k.startswith("__")] if inspect.isclass(obj) else [])
            for fn in members:
                try:
                    params = inspect.signature(fn).parameters
                except (TypeError, ValueError):
                    continue
                for p in params.values():
                    if p.name in ("eps", "ridge") and p.default is not inspect.Parameter.empty:
                        found.append((f"{module.__name__}.{getattr(fn, '__qualname__', name)}",
                                      p.default))
    return found


def test_one_ridge_default_for_every_caller():
    """No second default: every function taking the fit's ridge defaults to DEFAULT_EPS."""
    found = _ridge_parameters()
    names = {n for n, _ in found}
    for needed in ("s3lib.losses.fit_affine", "s3lib.losses.affine_motion_loss",
                   "s3lib.grouping.fit_motion", "s3lib.train.segment_costs",
                   "s3lib.train.evaluate", "s3lib.train.TrainConfig"):
        assert any(n.startswith(needed) for n in names), f"{needed} not scanned"
    wrong = [(n, d) for n, d in found if d != motion.DEFAULT_EPS]
    assert not wrong, f"ridge defaults other than DEFAULT_EPS: {wrong}"


@pytest.mark.parametrize("eps", [0.0, -1.0])
def test_a_ridge_that_is_not_positive_is_named(eps):
    with pytest.raises(ValueError, match="eps"):
        fit_affine(torch.zeros(1, 2, 4, 4), torch.ones(1, 1, 4, 4), eps=eps)
