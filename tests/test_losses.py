"""s3lib.losses against independent references written here.

fit_affine / affine_reconstruction: float64 loops building the weighted normal equations with
numpy. affine_motion_loss: exact piecewise-affine (and piecewise-quadratic) flow, invariances
(segment permutation, a global affine motion added to the field). entropy_motion_loss and
soft_histogram: hand computations on tiny examples. Gradients: torch.autograd.gradcheck.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from references import ref_basis
from s3lib.losses import (affine_motion_loss, affine_reconstruction, entropy_motion_loss,
                          fit_affine, marginal_likelihood_loss, soft_histogram)

ROBUST = ["charbonnier", "l1", "l2"]
COMBINE = ["segments", "blend"]
MODELS = ["affine", "quadratic"]


# ----------------------------------------------------------------------------- references
def ref_fit(flow: np.ndarray, masks: np.ndarray, eps: float, model: str) -> np.ndarray:
    """Per-(b, l) weighted normal equations, float64 loops: (B, L, 2, K)."""
    b, num_l, h, w = masks.shape
    n = h * w
    phi = ref_basis(h, w, model)
    k = phi.shape[0]
    out = np.zeros((b, num_l, 2, k))
    for bi in range(b):
        for li in range(num_l):
            g = np.zeros((k, k))
            r = np.zeros((2, k))
            for row in range(h):
                for col in range(w):
                    p = phi[:, row, col]
                    m = masks[bi, li, row, col]
                    g += m * np.outer(p, p)
                    r += m * np.outer(flow[bi, :, row, col], p)
            g /= n
            r /= n
            # A (G + eps I) = R  <=>  (G + eps I)^T A^T = R^T
            out[bi, li] = np.linalg.solve((g + eps * np.eye(k)).T, r.T).T
    return out


def ref_reconstruction(params: np.ndarray, masks: np.ndarray, model: str) -> np.ndarray:
    b, num_l, h, w = masks.shape
    phi = ref_basis(h, w, model)
    out = np.zeros((b, 2, h, w))
    for bi in range(b):
        for li in range(num_l):
            for row in range(h):
                for col in range(w):
                    out[bi, :, row, col] += (masks[bi, li, row, col]
                                             * params[bi, li] @ phi[:, row, col])
    return out


def ref_entropy(p: np.ndarray) -> float:
    p = np.asarray(p, dtype=np.float64)
    p = p / p.sum()
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum())


def ref_rho(sq: np.ndarray, robust: str, delta: float) -> np.ndarray:
    if robust == "charbonnier":
        return np.sqrt(sq + delta**2) - delta
    if robust == "l1":
        return np.sqrt(sq)
    return sq


def ref_motion_loss(masks: np.ndarray, flow: np.ndarray, robust: str, combine: str, eps: float,
                    delta: float, model: str) -> float:
    """The documented affine motion loss, float64 loops over pixels and segments."""
    b, num_l, h, w = masks.shape
    params = ref_fit(flow, masks, eps, model)
    phi = ref_basis(h, w, model)
    total = 0.0
    for bi in range(b):
        for row in range(h):
            for col in range(w):
                f = flow[bi, :, row, col]
                p = phi[:, row, col]
                if combine == "segments":
                    for li in range(num_l):
                        e = f - params[bi, li] @ p
                        total += masks[bi, li, row, col] * ref_rho(e @ e, robust, delta)
                else:
                    rec = sum(masks[bi, li, row, col] * params[bi, li] @ p for li in range(num_l))
                    e = f - rec
                    total += ref_rho(e @ e, robust, delta)
    return total / (b * h * w)


# ----------------------------------------------------------------------------- data helpers
def soft_masks(gen: torch.Generator | int, b: int, num_l: int, h: int, w: int,
               dtype=torch.float64, scale: float = 1.5) -> torch.Tensor:
    if isinstance(gen, int):
        gen = torch.Generator().manual_seed(gen)
    logits = scale * torch.randn(b, num_l, h, w, generator=gen, dtype=torch.float64)
    return torch.softmax(logits, dim=1).to(dtype)


def random_flow(gen: torch.Generator | int, b: int, h: int, w: int, dtype=torch.float64,
                scale: float = 3.0) -> torch.Tensor:
    if isinstance(gen, int):
        gen = torch.Generator().manual_seed(gen)
    return (scale * torch.randn(b, 2, h, w, generator=gen, dtype=torch.float64)).to(dtype)


def voronoi_labels(rng: np.random.Generator, h: int, w: int, num_l: int,
                   min_size: int = 12) -> np.ndarray:
    """A random partition of the image into num_l connected-ish regions of >= min_size px."""
    rows, cols = np.mgrid[0:h, 0:w]
    for _ in range(1000):
        seeds = rng.uniform([0, 0], [h - 1, w - 1], size=(num_l, 2))
        d = ((rows[None] - seeds[:, 0, None, None]) ** 2
             + (cols[None] - seeds[:, 1, None, None]) ** 2)
        labels = d.argmin(0)
        counts = np.bincount(labels.ravel(), minlength=num_l)
        if counts.min() >= min_size:
            # each region must span >= 3 rows and >= 3 columns (not collinear)
            ok = all(len(set(rows[labels == l])) >= 3 and len(set(cols[labels == l])) >= 3
                     for l in range(num_l))
            if ok:
                return labels
    raise RuntimeError("could not draw a partition")


def one_hot(labels: np.ndarray, num_l: int) -> torch.Tensor:
    """(H, W) labels -> (1, L, H, W) float64 hard masks."""
    hard = np.stack([(labels == l) for l in range(num_l)]).astype(np.float64)
    return torch.from_numpy(hard)[None]


def piecewise_flow(labels: np.ndarray, params: np.ndarray, model: str) -> torch.Tensor:
    """Flow equal to params[l] @ phi_u on region l: (1, 2, H, W) float64."""
    h, w = labels.shape
    phi = ref_basis(h, w, model)
    flow = np.zeros((2, h, w))
    for row in range(h):
        for col in range(w):
            flow[:, row, col] = params[labels[row, col]] @ phi[:, row, col]
    return torch.from_numpy(flow)[None]


def all_losses():
    """(name, callable(masks, flow)) for every loss configuration."""
    out = []
    for robust, combine, model in itertools.product(ROBUST, COMBINE, MODELS):
        out.append((f"affine-{robust}-{combine}-{model}",
                    lambda m, f, r=robust, c=combine, mo=model:
                    affine_motion_loss(m, f, robust=r, combine=c, model=mo)))
    out.append(("entropy", lambda m, f: entropy_motion_loss(m, f)))
    out.append(("entropy-maxmag",
                lambda m, f: entropy_motion_loss(m, f, bins=8, max_magnitude=3.0)))
    out.append(("marginal", lambda m, f: marginal_likelihood_loss(m, f)))
    out.append(("marginal-quadratic",
                lambda m, f: marginal_likelihood_loss(m, f, model="quadratic")))
    return out


LOSSES = all_losses()
LOSS_IDS = [name for name, _ in LOSSES]


# ----------------------------------------------------------------------------- 1. fit_affine
SHAPES = [(1, 1, 4, 5), (2, 3, 5, 7), (3, 5, 6, 4), (2, 3, 8, 8)]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("seed", [0, 1])
def test_fit_affine_matches_reference(shape, model, seed):
    b, num_l, h, w = shape
    masks = soft_masks(seed, b, num_l, h, w)
    flow = random_flow(seed + 100, b, h, w)
    eps = 1e-3
    got = fit_affine(flow, masks, eps=eps, model=model)
    ref = ref_fit(flow.numpy(), masks.numpy(), eps, model)
    assert got.shape == (b, num_l, 2, 3 if model == "affine" else 6)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_affine_reconstruction_matches_reference(shape, model):
    b, num_l, h, w = shape
    masks = soft_masks(7, b, num_l, h, w)
    flow = random_flow(8, b, h, w)
    eps = 1e-4
    got = affine_reconstruction(flow, masks, eps=eps, model=model)
    params = ref_fit(flow.numpy(), masks.numpy(), eps, model)
    ref = ref_reconstruction(params, masks.numpy(), model)
    assert got.shape == (b, 2, h, w)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-9, atol=1e-9)


def test_affine_reconstruction_default_eps_matches_fit_affine_default():
    masks = soft_masks(3, 2, 3, 6, 5)
    flow = random_flow(4, 2, 6, 5)
    params = fit_affine(flow, masks)  # both use the default ridge
    ref = ref_reconstruction(params.numpy(), masks.numpy(), "affine")
    np.testing.assert_allclose(affine_reconstruction(flow, masks).numpy(), ref, rtol=1e-9,
                               atol=1e-9)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_affine_recovers_piecewise_parameters(seed, model):
    rng = np.random.default_rng(seed)
    num_l = 3 + seed % 2
    h, w = 14, 18
    labels = voronoi_labels(rng, h, w, num_l, min_size=20)
    k = 3 if model == "affine" else 6
    true = rng.normal(0, 3.0, size=(num_l, 2, k))
    flow = piecewise_flow(labels, true, model)
    masks = one_hot(labels, num_l)
    # the ridge biases A by about eps |A| / lambda_min(G); a small region's quadratic normal
    # matrix has lambda_min ~ 1e-5, so the quadratic model needs an even smaller ridge
    eps = 1e-9 if model == "affine" else 1e-12
    got = fit_affine(flow, masks, eps=eps, model=model)[0].numpy()
    np.testing.assert_allclose(got, true, atol=1e-5)


@pytest.mark.parametrize("flow_grad", [False, True], ids=["flow-const", "flow-grad"])
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("combine", COMBINE)
@pytest.mark.parametrize("robust", ROBUST)
def test_affine_motion_loss_matches_reference(robust, combine, model, flow_grad):
    """With and without a flow that needs gradients, the loss has the documented value."""
    for seed, (b, num_l, h, w), eps, delta in [(0, (2, 3, 5, 7), 1e-4, 0.1),
                                               (1, (1, 4, 6, 6), 1e-2, 0.5),
                                               (2, (3, 1, 4, 5), 1e-6, 0.05)]:
        masks = soft_masks(seed, b, num_l, h, w)
        flow = random_flow(seed + 50, b, h, w).requires_grad_(flow_grad)
        got = affine_motion_loss(masks, flow, robust=robust, combine=combine, eps=eps,
                                 delta=delta, model=model)
        ref = ref_motion_loss(masks.numpy(), flow.detach().numpy(), robust, combine, eps, delta,
                              model)
        assert got.ndim == 0
        assert got.item() == pytest.approx(ref, rel=1e-9, abs=1e-12), (seed, got.item(), ref)



# ----------------------------------------------------------------------------- 2. exact flows
def _piecewise_problem(seed: int, model: str, h: int = 16, w: int = 20):
    rng = np.random.default_rng(seed)
    num_l = 3 + seed % 2
    labels = voronoi_labels(rng, h, w, num_l, min_size=25)
    k = 3 if model == "affine" else 6
    params = rng.normal(0, 3.0, size=(num_l, 2, k))
    return labels, num_l, params, piecewise_flow(labels, params, model), one_hot(labels, num_l)


@pytest.mark.parametrize("combine", COMBINE)
@pytest.mark.parametrize("robust", ROBUST)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_piecewise_affine_flow_is_at_the_floor(seed, robust, combine):
    _, num_l, _, flow, masks = _piecewise_problem(seed, "affine")
    kw = dict(robust=robust, combine=combine, eps=1e-6)
    right = affine_motion_loss(masks, flow, **kw).item()
    shifted = affine_motion_loss(torch.roll(masks, shifts=(3, 4), dims=(2, 3)), flow, **kw).item()
    uniform = affine_motion_loss(torch.full_like(masks, 1.0 / num_l), flow, **kw).item()
    assert right < 1e-3
    assert right < shifted / 20
    assert right < uniform / 20


@pytest.mark.parametrize("combine", COMBINE)
@pytest.mark.parametrize("robust", ROBUST)
@pytest.mark.parametrize("seed", [0, 1])
def test_exact_piecewise_quadratic_flow(seed, robust, combine):
    _, num_l, _, flow, masks = _piecewise_problem(seed, "quadratic")
    kw = dict(robust=robust, combine=combine, eps=1e-9)
    right = affine_motion_loss(masks, flow, model="quadratic", **kw).item()
    shifted = affine_motion_loss(torch.roll(masks, shifts=(3, 4), dims=(2, 3)), flow,
                                 model="quadratic", **kw).item()
    uniform = affine_motion_loss(torch.full_like(masks, 1.0 / num_l), flow, model="quadratic",
                                 **kw).item()
    affine_model = affine_motion_loss(masks, flow, model="affine", **kw).item()
    assert right < 1e-3
    assert right < shifted / 20
    assert right < uniform / 20
    # the affine model cannot represent the curvature: clearly above the floor
    assert affine_model > 20 * right
    assert affine_model > 1e-2


# ----------------------------------------------------------------------------- 3. properties
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_segment_permutation_invariance(seed):
    gen = torch.Generator().manual_seed(seed)
    b, num_l, h, w = 2, 4, 6, 7
    masks = soft_masks(gen, b, num_l, h, w)
    flow = random_flow(gen, b, h, w)
    perm = torch.randperm(num_l, generator=gen)
    while torch.equal(perm, torch.arange(num_l)):
        perm = torch.randperm(num_l, generator=gen)
    permuted = masks[:, perm]
    for name, fn in LOSSES:
        a, c = fn(masks, flow), fn(permuted, flow)
        torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-12, msg=name)


def _global_affine(seed: int, h: int, w: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    a0 = rng.normal(0, 4.0, size=(2, 3))
    phi = ref_basis(h, w)
    return torch.from_numpy(np.einsum("ck,khw->chw", a0, phi))[None]


@pytest.mark.parametrize("combine", COMBINE)
@pytest.mark.parametrize("robust", ROBUST)
@pytest.mark.parametrize("hard", [True, False], ids=["hard", "soft"])
def test_global_affine_motion_invariance(hard, robust, combine):
    h, w, num_l = 12, 15, 3
    rng = np.random.default_rng(5)
    if hard:
        masks = one_hot(voronoi_labels(rng, h, w, num_l, min_size=20), num_l)
    else:
        masks = soft_masks(5, 1, num_l, h, w)
    flow = random_flow(6, 1, h, w)
    for model in MODELS:
        kw = dict(robust=robust, combine=combine, eps=1e-9, model=model)
        before = affine_motion_loss(masks, flow, **kw)
        after = affine_motion_loss(masks, flow + _global_affine(9, h, w), **kw)
        torch.testing.assert_close(after, before, rtol=1e-8, atol=1e-8)


def _two_speed_problem(seed: int):
    """Left half moves at speed 1, right half at speed 4 (random directions + small noise)."""
    rng = np.random.default_rng(seed)
    h, w = 12, 16
    speed = np.where(np.arange(w)[None, :] < w // 2, 1.0, 4.0) * np.ones((h, 1))
    angle = rng.uniform(0, 2 * np.pi, size=(h, w))
    flow = np.stack([speed * np.cos(angle), speed * np.sin(angle)])
    flow += rng.normal(0, 0.05, size=flow.shape)
    left = (np.arange(w)[None, :] < w // 2) * np.ones((h, 1))
    top = (np.arange(h)[:, None] < h // 2) * np.ones((1, w))
    aligned = torch.from_numpy(np.stack([left, 1 - left]))[None]
    mixed = torch.from_numpy(np.stack([top, 1 - top]))[None]  # each half holds both speeds
    return torch.from_numpy(flow)[None], aligned, mixed


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_entropy_prefers_segments_with_one_speed(seed):
    flow, aligned, mixed = _two_speed_problem(seed)
    for kw in [dict(), dict(bins=16, max_magnitude=5.0)]:
        low = entropy_motion_loss(aligned, flow, **kw).item()
        high = entropy_motion_loss(mixed, flow, **kw).item()
        assert low < high - 0.3, (kw, low, high)


# ----------------------------------------------------------------------------- 4. gradcheck
def _grad_inputs(seed: int):
    gen = torch.Generator().manual_seed(seed)
    masks = soft_masks(gen, 2, 3, 5, 6).requires_grad_(True)
    flow = random_flow(gen, 2, 5, 6, scale=2.0).requires_grad_(True)
    return masks, flow


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("combine", COMBINE)
@pytest.mark.parametrize("robust", ROBUST)
def test_gradcheck_affine_motion_loss(robust, combine, model):
    masks, flow = _grad_inputs(11)
    assert torch.autograd.gradcheck(
        lambda m, f: affine_motion_loss(m, f, robust=robust, combine=combine, model=model),
        (masks, flow), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("combine", COMBINE)
@pytest.mark.parametrize("robust", ROBUST)
def test_gradcheck_affine_motion_loss_masks_only(robust, combine, model):
    """Flow without gradient (the training case): gradients w.r.t. the masks alone."""
    masks, flow = _grad_inputs(15)
    flow = flow.detach()
    assert torch.autograd.gradcheck(
        lambda m: affine_motion_loss(m, flow, robust=robust, combine=combine, model=model),
        (masks,), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("robust", ROBUST)
@pytest.mark.parametrize("seed", [0, 1])
def test_segments_mask_gradient_same_with_and_without_flow_gradient(seed, robust, model):
    gen = torch.Generator().manual_seed(seed)
    b, num_l, h, w = 2, 4, 7, 9
    masks = soft_masks(gen, b, num_l, h, w)
    masks[0, 2] = 0  # an empty segment too
    masks = masks / masks.sum(1, keepdim=True)
    flow = random_flow(gen, b, h, w)
    grads = []
    for flow_grad in [False, True]:
        m = masks.clone().requires_grad_(True)
        loss = affine_motion_loss(m, flow.clone().requires_grad_(flow_grad), robust=robust,
                                  model=model, eps=1e-3)
        grads.append(torch.autograd.grad(loss, m)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("max_magnitude", [None, 2.5])
def test_gradcheck_entropy_motion_loss(max_magnitude):
    masks, flow = _grad_inputs(12)
    assert torch.autograd.gradcheck(
        lambda m, f: entropy_motion_loss(m, f, max_magnitude=max_magnitude),
        (masks, flow), eps=1e-7, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("model", MODELS)
def test_gradcheck_marginal_likelihood_loss(model):
    masks, flow = _grad_inputs(13)
    assert torch.autograd.gradcheck(
        lambda m, f: marginal_likelihood_loss(m, f, sigma=0.8, prior_std=3.0, model=model),
        (masks, flow), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradcheck_fit_affine():
    masks, flow = _grad_inputs(14)
    assert torch.autograd.gradcheck(lambda m, f: fit_affine(f, m, eps=1e-3), (masks, flow),
                                    eps=1e-6, atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------------- 5. dtype
@pytest.mark.parametrize("name,fn", LOSSES, ids=LOSS_IDS)
def test_dtype_follows_input(name, fn):
    masks = soft_masks(0, 2, 3, 5, 6)
    flow = random_flow(1, 2, 5, 6)
    for mdt, fdt, expected in [(torch.float32, torch.float32, torch.float32),
                               (torch.float64, torch.float64, torch.float64),
                               (torch.float32, torch.float64, torch.float64),
                               (torch.float64, torch.float32, torch.float64)]:
        out = fn(masks.to(mdt), flow.to(fdt))
        assert out.dtype == expected, (mdt, fdt)
        assert out.ndim == 0
        assert torch.isfinite(out)
    # float32 agrees with float64 to float32 precision
    torch.testing.assert_close(fn(masks.float(), flow.float()).double(), fn(masks, flow),
                               rtol=1e-3, atol=1e-4)


def test_fit_affine_and_reconstruction_dtype():
    masks = soft_masks(0, 1, 2, 4, 5)
    flow = random_flow(1, 1, 4, 5)
    assert fit_affine(flow.float(), masks.float()).dtype == torch.float32
    assert fit_affine(flow, masks.float()).dtype == torch.float64
    assert affine_reconstruction(flow.float(), masks.float()).dtype == torch.float32
    assert affine_reconstruction(flow.float(), masks).dtype == torch.float64


# ----------------------------------------------------------------------------- 6. errors
ALL_CALLABLES = LOSSES + [("fit_affine", lambda m, f: fit_affine(f, m)),
                          ("affine_reconstruction", lambda m, f: affine_reconstruction(f, m))]
ALL_IDS = [name for name, _ in ALL_CALLABLES]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("name,fn", ALL_CALLABLES, ids=ALL_IDS)
def test_non_finite_flow_raises(name, fn, bad):
    masks = soft_masks(0, 2, 3, 5, 6)
    flow = random_flow(1, 2, 5, 6)
    flow[1, 1, 3, 2] = bad
    with pytest.raises(ValueError):
        fn(masks, flow)


@pytest.mark.parametrize("name,fn", ALL_CALLABLES, ids=ALL_IDS)
def test_bad_shapes_and_dtypes_raise(name, fn):
    masks = soft_masks(0, 2, 3, 5, 6)
    flow = random_flow(1, 2, 5, 6)
    cases = [
        (masks[0], flow),  # masks 3-D
        (masks, flow[:, :1]),  # flow with 1 channel
        (masks, torch.cat([flow, flow[:, :1]], 1)),  # flow with 3 channels
        (masks, flow[0]),  # flow 3-D
        (masks[:, :, :4], flow),  # H mismatch
        (masks[:, :, :, :5], flow),  # W mismatch
        (masks[:1], flow),  # B mismatch
        ((masks > 0.3).long(), flow),  # integer masks
        (masks, flow.round().long()),  # integer flow
        (masks, flow.round().int()),
        (masks.numpy(), flow),  # not a tensor
    ]
    for i, (m, f) in enumerate(cases):
        with pytest.raises(ValueError):
            fn(m, f)


@pytest.mark.parametrize("call", [
    lambda m, f: affine_motion_loss(m, f, robust="huber"),
    lambda m, f: affine_motion_loss(m, f, robust="huber", combine="blend"),
    lambda m, f: affine_motion_loss(m, f, combine="x"),
    lambda m, f: affine_motion_loss(m, f, eps=0),
    lambda m, f: affine_motion_loss(m, f, eps=-1e-3),
    lambda m, f: affine_motion_loss(m, f, eps=float("nan")),
    lambda m, f: affine_motion_loss(m, f, robust="charbonnier", delta=0),
    lambda m, f: affine_motion_loss(m, f, robust="charbonnier", delta=-0.1, combine="blend"),
    lambda m, f: affine_motion_loss(m, f, model="cubic"),
    lambda m, f: fit_affine(f, m, eps=0),
    lambda m, f: fit_affine(f, m, model="cubic"),
    lambda m, f: entropy_motion_loss(m, f, bins=1),
    lambda m, f: entropy_motion_loss(m, f, bins=0),
    lambda m, f: entropy_motion_loss(m, f, bins=4.0),
    lambda m, f: entropy_motion_loss(m, f, max_magnitude=-1),
    lambda m, f: entropy_motion_loss(m, f, max_magnitude=0),
    lambda m, f: entropy_motion_loss(m, f, max_magnitude=float("nan")),
    lambda m, f: marginal_likelihood_loss(m, f, sigma=0),
    lambda m, f: marginal_likelihood_loss(m, f, prior_std=-1),
    lambda m, f: marginal_likelihood_loss(m, f, model="cubic"),
], ids=["huber", "huber-blend", "combine-x", "eps0", "eps-neg", "eps-nan", "delta0",
        "delta-neg-blend", "model-affine-loss", "fit-eps0", "fit-model", "bins1", "bins0",
        "bins-float", "maxmag-neg", "maxmag0", "maxmag-nan", "sigma0", "prior-neg",
        "marginal-model"])
def test_bad_options_raise(call):
    masks = soft_masks(0, 2, 3, 5, 6)
    flow = random_flow(1, 2, 5, 6)
    with pytest.raises(ValueError):
        call(masks, flow)


# ----------------------------------------------------------------------------- 7. degenerate
def _degenerate_cases():
    gen = torch.Generator().manual_seed(21)
    cases = {}
    m = soft_masks(gen, 2, 3, 5, 6)
    m[:, 1] = 0
    cases["empty-segment"] = (m / m.sum(1, keepdim=True), random_flow(gen, 2, 5, 6))
    cases["constant-flow"] = (soft_masks(gen, 2, 3, 5, 6),
                              torch.tensor([1.5, -0.7], dtype=torch.float64)
                              .reshape(1, 2, 1, 1).expand(2, 2, 5, 6).clone())
    cases["1x1"] = (soft_masks(gen, 2, 3, 1, 1), random_flow(gen, 2, 1, 1))
    cases["L=1"] = (torch.ones(2, 1, 5, 6, dtype=torch.float64), random_flow(gen, 2, 5, 6))
    cases["zero-flow"] = (soft_masks(gen, 2, 3, 5, 6), torch.zeros(2, 2, 5, 6, dtype=torch.float64))
    cases["zero-flow-hard"] = (one_hot(np.arange(30).reshape(5, 6) % 3, 3),
                               torch.zeros(1, 2, 5, 6, dtype=torch.float64))
    return cases


DEGENERATE = _degenerate_cases()


@pytest.mark.parametrize("flow_grad", [False, True], ids=["flow-const", "flow-grad"])
@pytest.mark.parametrize("case", list(DEGENERATE))
@pytest.mark.parametrize("name,fn", LOSSES, ids=LOSS_IDS)
def test_degenerate_inputs_finite_value_and_gradients(name, fn, case, flow_grad):
    masks, flow = DEGENERATE[case]
    masks = masks.clone().requires_grad_(True)
    flow = flow.clone().requires_grad_(flow_grad)
    out = fn(masks, flow)
    assert torch.isfinite(out), out
    if flow_grad:
        gm, gf = torch.autograd.grad(out, (masks, flow))
        assert torch.isfinite(gf).all()
    else:
        (gm,) = torch.autograd.grad(out, (masks,))
    assert torch.isfinite(gm).all()


# ----------------------------------------------------------------------------- 8. soft_histogram
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_soft_histogram_mass_equals_mask_sum(seed):
    gen = torch.Generator().manual_seed(seed)
    b, num_l, h, w = 2, 3, 5, 7
    masks = soft_masks(gen, b, num_l, h, w)
    values = 4 * torch.rand(b, h, w, generator=gen, dtype=torch.float64)
    hist = soft_histogram(masks, values, 9, torch.tensor([3.0, 5.0], dtype=torch.float64))
    assert hist.shape == (b, num_l, 9)
    assert (hist >= 0).all()
    torch.testing.assert_close(hist.sum(-1), masks.sum((-2, -1)), rtol=1e-12, atol=1e-12)


def test_soft_histogram_matches_loop_reference():
    gen = torch.Generator().manual_seed(3)
    b, num_l, h, w, bins = 2, 2, 4, 5, 6
    masks = soft_masks(gen, b, num_l, h, w)
    values = 3 * torch.rand(b, h, w, generator=gen, dtype=torch.float64)
    top = np.array([2.5, 3.5])  # some values of image 0 lie above its last centre
    got = soft_histogram(masks, values, bins, torch.from_numpy(top)).numpy()
    ref = np.zeros((b, num_l, bins))
    for bi in range(b):
        d = top[bi] / (bins - 1)
        centres = d * np.arange(bins)
        for row in range(h):
            for col in range(w):
                v = min(values[bi, row, col].item(), top[bi])
                # triangular kernel of half-width d around every centre
                wts = np.maximum(0.0, 1.0 - np.abs(v - centres) / d)
                for li in range(num_l):
                    ref[bi, li] += masks[bi, li, row, col].item() * wts
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


def test_soft_histogram_hand_example():
    # bins = 5 over [0, 4]: centres 0, 1, 2, 3, 4. One segment, four pixels.
    values = torch.tensor([[[2.0, 1.3, 4.0, 0.0]]], dtype=torch.float64)  # (1, 1, 4)
    masks = torch.tensor([[[[1.0, 0.5, 0.25, 2.0]]]], dtype=torch.float64)  # (1, 1, 1, 4)
    hist = soft_histogram(masks, values, 5, torch.tensor([4.0], dtype=torch.float64))
    expected = np.array([2.0,               # value 0 on centre 0
                         0.5 * 0.7,         # 1.3: 30% of the way from 1 to 2
                         1.0 + 0.5 * 0.3,   # value 2 on centre 2
                         0.0,
                         0.25])             # value 4 on the last centre
    np.testing.assert_allclose(hist[0, 0].numpy(), expected, rtol=1e-12, atol=1e-12)


def test_soft_histogram_clamps_values_above_the_last_centre():
    values = torch.tensor([[[7.0, 2.5]]], dtype=torch.float64)
    masks = torch.ones(1, 1, 1, 2, dtype=torch.float64)
    hist = soft_histogram(masks, values, 3, torch.tensor([2.0], dtype=torch.float64))
    np.testing.assert_allclose(hist[0, 0].numpy(), [0.0, 0.0, 2.0], atol=1e-12)


# ----------------------------------------------------------------------------- 9. entropy values
def _speed_flow(speeds: np.ndarray, seed: int = 0) -> torch.Tensor:
    """(1, 2, H, W) flow with the given speeds and random directions."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi, size=speeds.shape)
    return torch.from_numpy(np.stack([speeds * np.cos(angle), speeds * np.sin(angle)]))[None]


@pytest.mark.parametrize("max_magnitude", [None, 4.0])
def test_entropy_zero_for_constant_speed_on_bin_centres(max_magnitude):
    # bins = 5 over [0, 4]; three regions at speeds 1, 3 and 4 (all bin centres)
    h, w = 6, 9
    labels = np.repeat(np.arange(3)[None, :], h, 0).repeat(3, 1)  # three vertical bands
    speeds = np.array([1.0, 3.0, 4.0])[labels]
    loss = entropy_motion_loss(one_hot(labels, 3), _speed_flow(speeds), bins=5,
                               max_magnitude=max_magnitude)
    assert abs(loss.item()) < 1e-6


def test_entropy_uniform_segment_hand_computation():
    # 2 x 8 image, bins = 4, centres 0, 1, 2, 3 (max_magnitude 3).
    # segment 0 = top row, speeds 0 1 2 3 0 1 2 3: uniform over the 4 bins -> log 4, mass 1/2
    # segment 1 = bottom row, speed 2 everywhere -> entropy 0
    speeds = np.array([[0, 1, 2, 3, 0, 1, 2, 3], [2] * 8], dtype=np.float64)
    labels = np.array([[0] * 8, [1] * 8])
    for mm in [3.0, None]:
        loss = entropy_motion_loss(one_hot(labels, 2), _speed_flow(speeds, 1), bins=4,
                                   max_magnitude=mm)
        assert loss.item() == pytest.approx(0.5 * math.log(4), abs=1e-6)


def test_entropy_soft_masks_hand_computation():
    # 1 x 3 image, bins = 3 over [0, 2] (centres 0, 1, 2); speeds 0.6, 2, 1.
    # masks: segment 0 = (1, 0.5, 0.25), segment 1 = (0, 0.5, 0.75).
    speeds = np.array([[0.6, 2.0, 1.0]])
    masks = torch.tensor([[[[1.0, 0.5, 0.25]], [[0.0, 0.5, 0.75]]]], dtype=torch.float64)
    h0 = np.array([0.4, 0.6 + 0.25, 0.5])  # 0.6 splits 0.4/0.6 between centres 0 and 1
    h1 = np.array([0.0, 0.75, 0.5])
    expected = (h0.sum() / 3) * ref_entropy(h0) + (h1.sum() / 3) * ref_entropy(h1)
    loss = entropy_motion_loss(masks, _speed_flow(speeds, 2), bins=3, max_magnitude=2.0)
    assert loss.item() == pytest.approx(expected, abs=1e-9)
    # batch mean: the same image twice plus a zero-entropy image
    flow2 = torch.cat([_speed_flow(speeds, 2), _speed_flow(np.array([[1.0, 1.0, 1.0]]), 3)])
    loss2 = entropy_motion_loss(masks.expand(2, -1, -1, -1), flow2, bins=3, max_magnitude=2.0)
    assert loss2.item() == pytest.approx(expected / 2, abs=1e-9)


def test_entropy_bounded_by_log_bins():
    for seed in range(3):
        masks = soft_masks(seed, 2, 4, 8, 8)
        flow = random_flow(seed + 10, 2, 8, 8)
        for bins in [2, 8, 32]:
            loss = entropy_motion_loss(masks, flow, bins=bins).item()
            assert 0.0 <= loss <= math.log(bins) + 1e-9


# ----------------------------------------------------------------------------- bugs found and fixed
def test_segments_loss_float32_large_flow_is_finite_and_non_negative():
    bad = []
    for seed, big in itertools.product(range(4), [100.0, 300.0]):
        _, _, _, flow, masks = _piecewise_problem(seed, "affine")
        shift = np.random.default_rng(seed).uniform(-big, big, size=2)
        flow = (flow + torch.from_numpy(shift)[None, :, None, None]).float()
        for robust in ROBUST:
            for flow_grad in [False, True]:
                v = affine_motion_loss(masks.float(), flow.clone().requires_grad_(flow_grad),
                                       robust=robust, eps=1e-6)
                if not (torch.isfinite(v) and v.item() >= 0):
                    bad.append((seed, big, robust, flow_grad, v.item()))
    assert not bad, bad


def test_blend_loss_float32_large_flow_is_finite_and_non_negative():
    """The companion of the test above: the blended residual is formed directly and is fine."""
    for seed, big in itertools.product(range(4), [100.0, 300.0]):
        _, _, _, flow, masks = _piecewise_problem(seed, "affine")
        shift = np.random.default_rng(seed).uniform(-big, big, size=2)
        flow = (flow + torch.from_numpy(shift)[None, :, None, None]).float()
        for robust in ROBUST:
            v = affine_motion_loss(masks.float(), flow, robust=robust, combine="blend", eps=1e-6)
            assert torch.isfinite(v) and 0 <= v.item() < 1e-2


def test_finite_float16_flow_is_accepted():
    masks = soft_masks(0, 1, 3, 64, 64, dtype=torch.float32)
    flow = (10 + random_flow(1, 1, 64, 64, scale=0.5)).to(torch.float16)
    assert torch.isfinite(flow).all()
    refused = []
    for name, fn in ALL_CALLABLES:
        try:
            out = fn(masks, flow)
        except ValueError:
            refused.append(name)
            continue
        assert out.dtype == torch.float32  # promoted, as for float32 masks + float64 flow
        torch.testing.assert_close(out, fn(masks, flow.float()))
    assert not refused, refused


@pytest.mark.parametrize("robust", ["charbonnier", "l2"])
def test_segments_loss_double_backward_is_correct(robust):
    """Second derivatives w.r.t. the masks (a gradient penalty) are right, flow constant."""
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 5, 6, generator=gen, dtype=torch.float64)
    flow = random_flow(gen, 2, 5, 6, scale=2.0)
    v = torch.randn(logits.shape, generator=gen, dtype=torch.float64)

    def penalty(th, create_graph):
        g = torch.autograd.grad(affine_motion_loss(torch.softmax(th, 1), flow, robust=robust),
                                th, create_graph=create_graph)[0]
        return g.pow(2).sum()

    theta = logits.clone().requires_grad_(True)
    dpen = torch.autograd.grad(penalty(theta, True), theta)[0]
    h = 1e-5  # directional derivative of the penalty by central differences
    fd = (penalty((logits + h * v).requires_grad_(), False)
          - penalty((logits - h * v).requires_grad_(), False)) / (2 * h)
    assert (dpen * v).sum().item() == pytest.approx(fd.item(), rel=1e-4, abs=1e-8)


@pytest.mark.parametrize("robust", ["charbonnier", "l2"])
def test_segments_loss_double_backward_through_autograd_path(robust):
    """The companion: with a flow that needs gradients, autograd's second derivatives hold."""
    masks, flow = _grad_inputs(3)
    assert torch.autograd.gradgradcheck(
        lambda m, f: affine_motion_loss(m, f, robust=robust), (masks, flow))
