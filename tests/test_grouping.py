"""s3lib.grouping (eq. 1 and 2 of the paper) against independent references written here.

Coordinates: the documented formula, pixel by pixel. Maximised likelihood: numpy weighted least
squares (Gaussian) and a linear program for weighted least absolute deviations (Laplace).
Evidence: brute-force numerical integration over the affine parameters on a dense grid.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import linprog
from scipy.special import logsumexp

from references import ref_basis
from s3lib import grouping
from s3lib.grouping import (check_inputs, homogeneous_coordinates, log_evidence,
                            max_log_likelihood)


# ----------------------------------------------------------------------------- references
def ref_wls(phi: np.ndarray, f: np.ndarray, m: np.ndarray) -> np.ndarray:
    """argmin_a sum_u m_u (f_u - a . phi_u)^2 by lstsq on sqrt(m)-scaled rows. phi (K, N)."""
    sw = np.sqrt(m)
    a, *_ = np.linalg.lstsq(phi.T * sw[:, None], f * sw, rcond=None)
    return a


def ref_lad(phi: np.ndarray, f: np.ndarray, m: np.ndarray) -> np.ndarray:
    """argmin_a sum_u m_u |f_u - a . phi_u| as a linear program (a free, e+ and e- >= 0)."""
    k, n = phi.shape
    c = np.concatenate([np.zeros(k), m, m])
    a_eq = np.hstack([phi.T, np.eye(n), -np.eye(n)])  # phi a + e+ - e- = f
    bounds = [(None, None)] * k + [(0, None)] * (2 * n)
    res = linprog(c, A_eq=a_eq, b_eq=f, bounds=bounds, method="highs")
    assert res.success
    return res.x[:k]


def ref_gaussian_loglik(masks: np.ndarray, flow: np.ndarray, sigma: float, model="affine"):
    """(L,) per-region sum_u m_lu [-|r|^2 / (2 sigma^2) - log(2 pi sigma^2)] at the WLS fit."""
    num_l, h, w = masks.shape
    phi = ref_basis(h, w, model).reshape(-1, h * w)
    out = np.zeros(num_l)
    for l in range(num_l):
        m = masks[l].ravel()
        sq = np.zeros(h * w)
        for c in range(2):
            f = flow[c].ravel()
            a = ref_wls(phi, f, m)
            sq += (f - a @ phi) ** 2
        out[l] = np.sum(m * (-sq / (2 * sigma**2) - math.log(2 * math.pi * sigma**2)))
    return out


def laplace_loglik(masks: np.ndarray, flow: np.ndarray, params: np.ndarray, scale: float,
                   model="affine") -> np.ndarray:
    """(L,) per-region Laplace log-likelihood at the given params (L, 2, K)."""
    num_l, h, w = masks.shape
    phi = ref_basis(h, w, model).reshape(-1, h * w)
    out = np.zeros(num_l)
    for l in range(num_l):
        m = masks[l].ravel()
        ab = sum(np.abs(flow[c].ravel() - params[l, c] @ phi) for c in range(2))
        out[l] = np.sum(m * (-ab / scale - 2 * math.log(2 * scale)))
    return out


def brute_log_evidence(masks: np.ndarray, flow: np.ndarray, sigma: float, prior_std: float,
                       points: int = 60) -> np.ndarray:
    """(L,) log of prod_c int prod_u N(f_uc | a . phi_u, sigma^2)^{m_u} N(a | 0, prior_std^2 I) da
    for the affine model (K = 3), by a Riemann sum on a dense 3-D grid per flow component.

    The grid is placed around the posterior (mean +- 7 marginal std); its position only has to
    cover the mass, the value comes from the sum.
    """
    num_l, h, w = masks.shape
    phi = ref_basis(h, w, "affine").reshape(3, h * w)
    out = np.zeros(num_l)
    for l in range(num_l):
        m = masks[l].ravel()
        prec = np.eye(3) / prior_std**2 + (phi * m) @ phi.T / sigma**2
        cov = np.linalg.inv(prec)
        for c in range(2):
            f = flow[c].ravel()
            mean = cov @ ((phi * m) @ f) / sigma**2
            std = np.sqrt(np.diag(cov))
            axes = [np.linspace(mean[k] - 7 * std[k], mean[k] + 7 * std[k], points)
                    for k in range(3)]
            grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
            resid = f[None, :] - grid @ phi  # (G, N)
            loglik = (m * (-resid**2 / (2 * sigma**2)
                           - 0.5 * math.log(2 * math.pi * sigma**2))).sum(1)
            logprior = (-(grid**2).sum(1) / (2 * prior_std**2)
                        - 1.5 * math.log(2 * math.pi * prior_std**2))
            cell = np.prod([ax[1] - ax[0] for ax in axes])
            out[l] += logsumexp(loglik + logprior) + math.log(cell)
    return out


# ----------------------------------------------------------------------------- helpers
def t64(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def one_hot(labels: np.ndarray, num_l: int) -> np.ndarray:
    return np.stack([(labels == l) for l in range(num_l)]).astype(np.float64)


def soft(rng: np.random.Generator, num_l: int, h: int, w: int) -> np.ndarray:
    z = rng.normal(0, 1.5, size=(num_l, h, w))
    e = np.exp(z - z.max(0))
    return e / e.sum(0)


def affine_field(params: np.ndarray, h: int, w: int) -> np.ndarray:
    """(2, H, W) flow params (2, 3) @ phi."""
    return np.einsum("ck,khw->chw", params, ref_basis(h, w))


# ----------------------------------------------------------------------------- 1. coordinates
@pytest.mark.parametrize("model", ["affine", "quadratic"])
@pytest.mark.parametrize("h,w", [(1, 1), (1, 5), (4, 4), (5, 8), (9, 6), (7, 7)])
def test_homogeneous_coordinates_formula(h, w, model):
    got = homogeneous_coordinates(h, w, model, dtype=torch.float64)
    k = 3 if model == "affine" else 6
    assert got.shape == (k, h, w)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), ref_basis(h, w, model), rtol=0, atol=1e-15)


@pytest.mark.parametrize("h,w", [(4, 4), (5, 8), (9, 6), (7, 7), (3, 10)])
def test_homogeneous_coordinates_geometry(h, w):
    x, y, one = homogeneous_coordinates(h, w, dtype=torch.float64).numpy()
    np.testing.assert_allclose(one, 1.0)
    # centred
    assert abs(x.mean()) < 1e-14 and abs(y.mean()) < 1e-14
    if h % 2 and w % 2:
        assert x[h // 2, w // 2] == 0 and y[h // 2, w // 2] == 0
    # one scale for both axes: a pixel step is 2 / max(H, W) along x and along y
    step = 2.0 / max(h, w)
    np.testing.assert_allclose(np.diff(x, axis=1), step, rtol=1e-12)
    np.testing.assert_allclose(np.diff(y, axis=0), step, rtol=1e-12)
    np.testing.assert_allclose(np.diff(x, axis=0), 0.0, atol=0)
    # pixel centres of the long side span [-1 + 1/max, 1 - 1/max] (its pixel edges span [-1, 1])
    long_side = x[0] if w >= h else y[:, 0]
    assert long_side[0] == pytest.approx(-1 + 1 / max(h, w), abs=1e-14)
    assert long_side[-1] == pytest.approx(1 - 1 / max(h, w), abs=1e-14)


def test_homogeneous_coordinates_default_dtype_and_quadratic_products():
    b = homogeneous_coordinates(5, 6, "quadratic")
    assert b.dtype == torch.float32
    x, y = b[0], b[1]
    torch.testing.assert_close(b[3], x * x)
    torch.testing.assert_close(b[4], x * y)
    torch.testing.assert_close(b[5], y * y)


@pytest.mark.parametrize("args", [(4, 4, "cubic"), (4, 4, "Affine"), (0, 4, "affine"),
                                  (4, 0, "affine"), (-1, 3, "affine")])
def test_homogeneous_coordinates_bad_arguments(args):
    with pytest.raises(ValueError):
        homogeneous_coordinates(*args)


# ----------------------------------------------------------------------------- 2. max likelihood
@pytest.mark.parametrize("hard", [True, False], ids=["hard", "soft"])
@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.3])
@pytest.mark.parametrize("seed", [0, 1])
def test_gaussian_max_log_likelihood_matches_wls(seed, sigma, hard):
    rng = np.random.default_rng(seed)
    b, num_l, h, w = 2, 3, 7, 9
    if hard:
        masks = np.stack([one_hot(rng.integers(0, num_l, size=(h, w)), num_l) for _ in range(b)])
    else:
        masks = np.stack([soft(rng, num_l, h, w) for _ in range(b)])
    flow = rng.normal(0, 3, size=(b, 2, h, w))
    per = max_log_likelihood(t64(masks), t64(flow), "gaussian", scale=sigma, per_region=True)
    total = max_log_likelihood(t64(masks), t64(flow), "gaussian", scale=sigma)
    assert per.shape == (b, num_l) and total.shape == (b,)
    ref = np.stack([ref_gaussian_loglik(masks[i], flow[i], sigma) for i in range(b)])
    np.testing.assert_allclose(per.numpy(), ref, rtol=1e-7)
    np.testing.assert_allclose(total.numpy(), ref.sum(1), rtol=1e-7)
    torch.testing.assert_close(per.sum(1), total, rtol=1e-12, atol=1e-12)


def test_gaussian_max_log_likelihood_quadratic_matches_wls():
    rng = np.random.default_rng(4)
    masks = soft(rng, 2, 8, 8)[None]
    flow = rng.normal(0, 2, size=(1, 2, 8, 8))
    got = max_log_likelihood(t64(masks), t64(flow), model="quadratic", per_region=True)
    ref = ref_gaussian_loglik(masks[0], flow[0], 1.0, "quadratic")
    np.testing.assert_allclose(got[0].numpy(), ref, rtol=1e-6)


def _outlier_problem(seed: int):
    rng = np.random.default_rng(seed)
    h, w = 10, 12
    labels = (np.arange(w)[None, :] >= w // 2) * np.ones((h, 1), dtype=int)
    true = rng.normal(0, 3, size=(2, 2, 3))
    phi = ref_basis(h, w)
    flow = np.where(labels[None] == 0, np.einsum("ck,khw->chw", true[0], phi),
                    np.einsum("ck,khw->chw", true[1], phi))
    flow = flow + rng.normal(0, 0.05, size=flow.shape)
    # gross outliers: 5 pixels per region, 15-25 px off
    for l in range(2):
        idx = rng.choice(np.flatnonzero(labels.ravel() == l), size=5, replace=False)
        for i in idx:
            r, c = divmod(i, w)
            flow[:, r, c] += rng.choice([-1, 1], size=2) * rng.uniform(15, 25, size=2)
    return one_hot(labels, 2), flow, true


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_laplace_is_robust_to_outliers(seed):
    masks, flow, true = _outlier_problem(seed)
    h, w = flow.shape[1:]
    phi = ref_basis(h, w).reshape(3, -1)
    gauss = np.stack([[ref_wls(phi, flow[c].ravel(), masks[l].ravel()) for c in range(2)]
                      for l in range(2)])
    lap = grouping._laplace_fit(t64(flow[None]), t64(masks[None]), "affine", 1e-6, 20)[0].numpy()
    err_lap = np.abs(lap - true).max()
    err_gauss = np.abs(gauss - true).max()
    assert err_lap < err_gauss / 5, (err_lap, err_gauss)
    assert err_lap < 0.1

    value = max_log_likelihood(t64(masks[None]), t64(flow[None]), "laplace", scale=0.7,
                               per_region=True)[0].numpy()
    at_gauss = laplace_loglik(masks, flow, gauss, 0.7)
    assert np.all(value >= at_gauss - 1e-3 * np.abs(at_gauss))
    assert value.sum() > at_gauss.sum() + 1.0  # strictly better: the outliers pull WLS away


@pytest.mark.parametrize("hard", [True, False], ids=["hard", "soft"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_laplace_value_matches_linear_program(seed, hard):
    rng = np.random.default_rng(seed + 10)
    num_l, h, w = 2, 6, 7
    masks = one_hot(rng.integers(0, num_l, size=(h, w)), num_l) if hard else soft(rng, num_l, h, w)
    flow = rng.standard_t(2, size=(2, h, w))
    phi = ref_basis(h, w).reshape(3, -1)
    lad = np.stack([[ref_lad(phi, flow[c].ravel(), masks[l].ravel()) for c in range(2)]
                    for l in range(num_l)])
    ref = laplace_loglik(masks, flow, lad, 1.3)
    got = max_log_likelihood(t64(masks[None]), t64(flow[None]), "laplace", scale=1.3,
                             per_region=True)
    total = max_log_likelihood(t64(masks[None]), t64(flow[None]), "laplace", scale=1.3)
    torch.testing.assert_close(got.sum(1), total, rtol=1e-12, atol=1e-12)
    # IRLS approaches the LP optimum from below (it cannot beat the maximum)
    assert np.all(got[0].numpy() <= ref + 1e-7 * np.abs(ref))
    np.testing.assert_allclose(got[0].numpy(), ref, rtol=2e-3)


# ----------------------------------------------------------------------------- 3. splitting
@pytest.mark.parametrize("structured", [True, False], ids=["piecewise", "random"])
@pytest.mark.parametrize("seed", range(4))
def test_splitting_a_region_never_lowers_max_likelihood(seed, structured):
    rng = np.random.default_rng(seed)
    h, w = 9, 11
    labels = rng.integers(0, 2, size=(h, w))
    if structured:
        flow = affine_field(rng.normal(0, 3, (2, 3)), h, w) + rng.normal(0, 0.1, (2, h, w))
    else:
        flow = rng.normal(0, 3, (2, h, w))
    coarse = one_hot(labels, 2)
    # split region 1 into two by a random line through its median point
    theta = rng.uniform(0, 2 * np.pi)
    x, y, _ = ref_basis(h, w)
    proj = math.cos(theta) * x + math.sin(theta) * y
    side = proj > np.median(proj[labels == 1])
    fine_labels = np.where((labels == 1) & side, 2, labels)
    fine = one_hot(fine_labels, 3)
    assert 0 < fine[2].sum() < coarse[1].sum()
    for sigma in [0.3, 1.0]:
        a = max_log_likelihood(t64(coarse[None]), t64(flow[None]), scale=sigma).item()
        b = max_log_likelihood(t64(fine[None]), t64(flow[None]), scale=sigma).item()
        assert b >= a - 1e-9 * abs(a)
        assert b > a  # strictly, for data that is not exactly affine on the region
        for model in ["quadratic"]:
            a = max_log_likelihood(t64(coarse[None]), t64(flow[None]), scale=sigma,
                                   model=model).item()
            b = max_log_likelihood(t64(fine[None]), t64(flow[None]), scale=sigma,
                                   model=model).item()
            assert b >= a - 1e-9 * abs(a)


# ----------------------------------------------------------------------------- 4. evidence
@pytest.mark.parametrize("case", ["3x3-hard-L1", "3x3-hard-L2", "2x3-soft-L2", "3x3-soft-L3"])
@pytest.mark.parametrize("sigma,prior_std", [(0.7, 2.5), (1.0, 2.0)])
def test_log_evidence_matches_brute_force_integral(case, sigma, prior_std):
    rng = np.random.default_rng({"3x3-hard-L1": 1, "3x3-hard-L2": 2, "2x3-soft-L2": 3,
                                 "3x3-soft-L3": 4}[case])
    if case == "3x3-hard-L1":
        h, w, masks = 3, 3, np.ones((1, 3, 3))
    elif case == "3x3-hard-L2":
        h, w = 3, 3
        masks = one_hot(np.array([[0, 0, 1], [0, 1, 1], [0, 1, 1]]), 2)
    elif case == "2x3-soft-L2":
        h, w = 2, 3
        masks = soft(rng, 2, h, w)
    else:
        h, w = 3, 3
        masks = soft(rng, 3, h, w)
    flow = affine_field(rng.normal(0, 1.5, (2, 3)), h, w) + rng.normal(0, sigma, (2, h, w))
    got = log_evidence(t64(masks[None]), t64(flow[None]), sigma=sigma, prior_std=prior_std,
                       per_region=True)[0].numpy()
    ref = brute_log_evidence(masks, flow, sigma, prior_std)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
    total = log_evidence(t64(masks[None]), t64(flow[None]), sigma=sigma, prior_std=prior_std)
    assert total.item() == pytest.approx(ref.sum(), rel=1e-6)


def test_log_evidence_tempered_half_weights_brute_force():
    """Weights 0.5 everywhere: every pixel counts with likelihood^0.5 in both regions."""
    rng = np.random.default_rng(42)
    h, w = 2, 3
    masks = np.full((2, h, w), 0.5)
    flow = rng.normal(0, 1.5, (2, h, w))
    got = log_evidence(t64(masks[None]), t64(flow[None]), sigma=0.8, prior_std=2.0,
                       per_region=True)[0].numpy()
    ref = brute_log_evidence(masks, flow, 0.8, 2.0)
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    # equal halves: both regions see the same tempered problem
    assert got[0] == pytest.approx(got[1], rel=1e-12)
    # and it differs from the untempered (weight 1) evidence
    full = log_evidence(t64(np.ones((1, 1, h, w))), t64(flow[None]), sigma=0.8,
                        prior_std=2.0).item()
    assert abs(full - got[0]) > 0.1


def test_log_evidence_one_full_channel_equals_single_region():
    rng = np.random.default_rng(3)
    h, w = 6, 7
    flow = rng.normal(0, 2, (2, 2, h, w))
    single = log_evidence(t64(np.ones((2, 1, h, w))), t64(flow))
    for channel in range(3):
        masks = np.zeros((2, 3, h, w))
        masks[:, channel] = 1.0
        per = log_evidence(t64(masks), t64(flow), per_region=True)
        torch.testing.assert_close(per.sum(1), single, rtol=1e-12, atol=1e-10)
        empty = [l for l in range(3) if l != channel]
        # an empty region costs nothing: its evidence is the prior's total mass, log 1 = 0
        torch.testing.assert_close(per[:, empty], torch.zeros(2, 2, dtype=torch.float64),
                                   rtol=0, atol=1e-10)


# ----------------------------------------------------------------------------- 5. Occam effect
@pytest.mark.parametrize("seed", range(3))
def test_evidence_penalises_needless_split_but_max_likelihood_rewards_it(seed):
    rng = np.random.default_rng(seed)
    h, w, noise = 12, 12, 0.1
    flow = affine_field(rng.normal(0, 3, (2, 3)), h, w) + rng.normal(0, noise, (2, h, w))
    one = np.ones((1, h, w))
    halves = one_hot((np.arange(w)[None, :] >= w // 2) * np.ones((h, 1), dtype=int), 2)
    kw = dict(sigma=noise, prior_std=10.0)
    ev_one = log_evidence(t64(one[None]), t64(flow[None]), **kw).item()
    ev_two = log_evidence(t64(halves[None]), t64(flow[None]), **kw).item()
    ml_one = max_log_likelihood(t64(one[None]), t64(flow[None]), scale=noise).item()
    ml_two = max_log_likelihood(t64(halves[None]), t64(flow[None]), scale=noise).item()
    assert ev_two < ev_one - 5.0  # the Occam factor of 6 extra parameters
    assert ml_two >= ml_one - 1e-9 * abs(ml_one)


@pytest.mark.parametrize("seed", range(3))
def test_evidence_prefers_true_two_motion_split(seed):
    rng = np.random.default_rng(seed)
    h, w, noise = 12, 12, 0.1
    left = (np.arange(w)[None, :] < w // 2) * np.ones((h, 1))
    p1, p2 = rng.normal(0, 3, (2, 3)), rng.normal(0, 3, (2, 3))
    flow = (left * affine_field(p1, h, w) + (1 - left) * affine_field(p2, h, w)
            + rng.normal(0, noise, (2, h, w)))
    one = np.ones((1, h, w))
    split = np.stack([left, 1 - left])
    top = (np.arange(h)[:, None] < h // 2) * np.ones((1, w))
    wrong = np.stack([top, 1 - top])
    kw = dict(sigma=noise, prior_std=10.0)
    ev_one = log_evidence(t64(one[None]), t64(flow[None]), **kw).item()
    ev_split = log_evidence(t64(split[None]), t64(flow[None]), **kw).item()
    ev_wrong = log_evidence(t64(wrong[None]), t64(flow[None]), **kw).item()
    assert ev_split > ev_one + 10.0
    assert ev_split > ev_wrong + 10.0


# ----------------------------------------------------------------------------- 7. input checks
def _ok_inputs():
    rng = np.random.default_rng(0)
    return t64(soft(rng, 3, 4, 5)[None].repeat(2, 0)), t64(rng.normal(0, 1, (2, 2, 4, 5)))


@pytest.mark.parametrize("fn", [
    lambda m, f: check_inputs(m, f),
    lambda m, f: max_log_likelihood(m, f),
    lambda m, f: max_log_likelihood(m, f, "laplace"),
    lambda m, f: log_evidence(m, f),
], ids=["check_inputs", "mll-gauss", "mll-laplace", "log_evidence"])
def test_input_errors(fn):
    masks, flow = _ok_inputs()
    for bad in [float("nan"), float("inf"), -float("inf")]:
        f = flow.clone()
        f[0, 1, 2, 3] = bad
        with pytest.raises(ValueError):
            fn(masks, f)
    cases = [(masks[0], flow), (masks, flow[:, :1]), (masks, torch.cat([flow, flow[:, :1]], 1)),
             (masks, flow[0]), (masks[:, :, :3], flow), (masks[:, :, :, :4], flow),
             (masks[:1], flow), ((masks > 0.3).long(), flow), (masks, flow.long()),
             (masks.numpy(), flow), (masks, flow.numpy())]
    for m, f in cases:
        with pytest.raises(ValueError):
            fn(m, f)


def test_check_inputs_promotes_dtype_and_allows_nan_free_flow():
    masks, flow = _ok_inputs()
    m, f = check_inputs(masks.float(), flow)
    assert m.dtype == f.dtype == torch.float64
    m, f = check_inputs(masks.float(), flow.float())
    assert m.dtype == f.dtype == torch.float32
    torch.testing.assert_close(m.double(), masks, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("call", [
    lambda m, f: max_log_likelihood(m, f, scale=0),
    lambda m, f: max_log_likelihood(m, f, scale=-1.0),
    lambda m, f: max_log_likelihood(m, f, residual="cauchy"),
    lambda m, f: max_log_likelihood(m, f, model="cubic"),
    lambda m, f: log_evidence(m, f, sigma=0),
    lambda m, f: log_evidence(m, f, prior_std=0),
    lambda m, f: log_evidence(m, f, model="cubic"),
], ids=["scale0", "scale-neg", "residual", "mll-model", "sigma0", "prior0", "ev-model"])
def test_bad_options_raise(call):
    masks, flow = _ok_inputs()
    with pytest.raises(ValueError):
        call(masks, flow)


# ----------------------------------------------------------------------------- strips (01's explorer)
def test_score_strips_matches_direct_scores_of_hand_made_masks():
    """score_strips on cut sets of mixed length = eq. (2) and eq. (1) of one-hot column masks
    built here, in the order given."""
    from s3lib.analysis import two_motion_flow
    from s3lib.grouping import score_strips

    size, sigma, prior_std = 20, 0.4, 5.0
    flow = two_motion_flow(size, 12, 0.3)
    cut_sets = [[12], [], [5, 12], [12], [3, 9, 15]]
    scores = score_strips(flow, cut_sets, softness=0.0, sigma=sigma, prior_std=prior_std)
    assert scores.num_pixels == size * size
    for i, cuts in enumerate(cut_sets):
        labels = np.broadcast_to(np.digitize(np.arange(size), cuts), (size, size))
        masks = torch.from_numpy(np.eye(len(cuts) + 1)[labels].transpose(2, 0, 1).copy())[None]
        ll = max_log_likelihood(masks, flow[None], scale=sigma).item()
        ev = log_evidence(masks, flow[None], sigma=sigma, prior_std=prior_std).item()
        assert scores.max_loglik[i] == pytest.approx(ll, rel=1e-9), cuts
        assert scores.evidence[i] == pytest.approx(ev, rel=1e-9), cuts
    assert scores.max_loglik[0] == scores.max_loglik[3]


def test_score_strips_eq2_rises_with_more_strips_eq1_peaks_at_the_truth():
    from s3lib.analysis import two_motion_flow
    from s3lib.grouping import score_strips
    from s3lib.regions import strip_cuts

    flow = two_motion_flow(32, 18, 0.3)
    s = score_strips(flow, [strip_cuts(18, 32, k) for k in range(1, 6)], sigma=0.3)
    assert np.all(np.diff(s.max_loglik) > 0)
    assert int(np.argmax(s.evidence)) == 1


@pytest.mark.parametrize("flow", [torch.zeros(2, 8, 9), torch.zeros(3, 8, 8), torch.zeros(8, 8)])
def test_score_strips_bad_flow(flow):
    from s3lib.grouping import score_strips

    with pytest.raises(ValueError, match="flow"):
        score_strips(flow, [[4]])
