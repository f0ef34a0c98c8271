"""s3lib.metrics against independent references written here.

matched mIoU: brute force over every one-to-one assignment. ARI: the Hubert-Arabie formula with
binomial coefficients, and a brute force over pixel pairs. AP: a brute force over thresholds.
VOC07 AP: a line-by-line port of the devkit's VOCevalcls.m.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from s3lib.metrics import adjusted_rand_index, average_precision, matched_miou, voc07_ap


# ----------------------------------------------------------------------------- references
def ref_matched_miou(pred: np.ndarray, target: np.ndarray) -> float:
    """Best mean IoU over all one-to-one assignments; unmatched target labels count 0."""
    pred, target = np.asarray(pred).ravel(), np.asarray(target).ravel()
    pls, tls = sorted(set(pred.tolist())), sorted(set(target.tolist()))
    iou = np.zeros((len(pls), len(tls)))
    for i, a in enumerate(pls):
        for j, b in enumerate(tls):
            pm, tm = pred == a, target == b
            iou[i, j] = (pm & tm).sum() / (pm | tm).sum()
    best = 0.0
    if len(pls) <= len(tls):
        for cols in itertools.permutations(range(len(tls)), len(pls)):
            best = max(best, sum(iou[i, c] for i, c in enumerate(cols)))
    else:
        for rows in itertools.permutations(range(len(pls)), len(tls)):
            best = max(best, sum(iou[r, j] for j, r in enumerate(rows)))
    return best / len(tls)


def ref_ari_formula(pred, target) -> float:
    """Hubert & Arabie (1985) with binomial coefficients, exact rational arithmetic."""
    pred, target = np.asarray(pred).ravel().tolist(), np.asarray(target).ravel().tolist()
    n = len(pred)
    cells, rows, cols = {}, {}, {}
    for a, b in zip(pred, target):
        cells[a, b] = cells.get((a, b), 0) + 1
        rows[a] = rows.get(a, 0) + 1
        cols[b] = cols.get(b, 0) + 1
    index = sum(math.comb(v, 2) for v in cells.values())
    sa = sum(math.comb(v, 2) for v in rows.values())
    sb = sum(math.comb(v, 2) for v in cols.values())
    total = math.comb(n, 2)
    if total == 0:
        return 1.0
    expected = Fraction(sa * sb, total)
    maximum = Fraction(sa + sb, 2)
    if maximum == expected:  # scikit-learn: the pair counts agree perfectly
        return 1.0
    return float((index - expected) / (maximum - expected))


def ref_ari_pairs(pred, target) -> float:
    """ARI from the 2x2 pair-confusion counts, by looking at every pair of pixels."""
    pred, target = np.asarray(pred).ravel().tolist(), np.asarray(target).ravel().tolist()
    same_both = diff_both = only_pred = only_target = 0
    for i, j in itertools.combinations(range(len(pred)), 2):
        sp, st = pred[i] == pred[j], target[i] == target[j]
        if sp and st:
            same_both += 1
        elif not sp and not st:
            diff_both += 1
        elif sp:
            only_pred += 1
        else:
            only_target += 1
    den = ((same_both + only_pred) * (only_pred + diff_both)
           + (same_both + only_target) * (only_target + diff_both))
    if den == 0:
        return 1.0
    return 2.0 * (same_both * diff_both - only_pred * only_target) / den


def ref_average_precision(scores, labels) -> float:
    """Brute force: one operating point per distinct score, counted by direct comparison."""
    scores, labels = list(map(float, scores)), list(map(int, labels))
    kept = [(s, y) for s, y in zip(scores, labels) if y != 0]
    npos = sum(1 for _, y in kept if y == 1)
    ap, prev_recall = 0.0, 0.0
    for thr in sorted({s for s, _ in kept}, reverse=True):
        tp = sum(1 for s, y in kept if s >= thr and y == 1)
        fp = sum(1 for s, y in kept if s >= thr and y == -1)
        precision, recall = tp / (tp + fp), tp / npos
        ap += (recall - prev_recall) * precision
        prev_recall = recall
    return ap


def ref_voc07(out, gt) -> float:
    """Port of VOCevalcls.m (VOC2007 devkit): 11-point interpolated AP."""
    out, gt = np.asarray(out, float), np.asarray(gt)
    si = np.argsort(-out, kind="stable")  # [so, si] = sort(-out): stable in MATLAB
    tp = np.cumsum(gt[si] > 0)
    fp = np.cumsum(gt[si] < 0)
    rec = tp / np.sum(gt > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = tp / (fp + tp)  # NaN while only difficult examples are ranked: MATLAB max skips
    ap = 0.0
    for t in np.arange(0, 1.1, 0.1):
        p = prec[rec >= t]
        p = p[~np.isnan(p)]
        ap += (p.max() if p.size else 0.0) / 11
    return ap


def random_labels(rng, shape, values):
    values = np.asarray(values)
    return values[rng.integers(0, len(values), shape)]


# ----------------------------------------------------------------------------- matched mIoU
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_pred,target_values", [
    (2, [0, 1, 2, 3]),  # fewer predicted segments than regions
    (3, [0, 1, 2]),  # as many
    (5, [0, 1, 2]),  # more
    (4, [0, 3, 7]),  # non-contiguous target labels
    (3, [-2, 5, 11, 40]),
    (6, [1, 2, 3, 4, 5]),
])
def test_matched_miou_equals_brute_force(seed, n_pred, target_values):
    rng = np.random.default_rng(seed)
    target = random_labels(rng, (12, 10), target_values)
    # partly correlated with the target, so the best assignment is not trivial
    pred = np.where(rng.uniform(size=(12, 10)) < 0.5,
                    np.searchsorted(np.unique(target), target) % n_pred,
                    rng.integers(0, n_pred, (12, 10)))
    pred = pred * 3 + 1  # arbitrary label values on the pred side too
    assert matched_miou(pred, target) == pytest.approx(ref_matched_miou(pred, target), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_matched_miou_relabelled_identity_is_one(seed):
    rng = np.random.default_rng(seed)
    target = random_labels(rng, (12, 10), [0, 3, 7, 9])
    mapping = {0: 5, 3: 2, 7: 0, 9: 11}
    pred = np.vectorize(mapping.get)(target)
    assert matched_miou(pred, target) == pytest.approx(1.0, abs=1e-12)
    assert matched_miou(target, target) == pytest.approx(1.0, abs=1e-12)


def test_matched_miou_hand_cases():
    target = np.zeros((4, 6), np.int64)
    target[:, 3:] = 1
    pred = np.zeros_like(target)
    # one segment covers both halves: IoU 0.5 with one half, the other half unmatched
    assert matched_miou(pred, target) == pytest.approx(0.25)
    # the reverse: two segments, one region: IoU 0.5 for the best match, over 1 label
    assert matched_miou(target, pred) == pytest.approx(0.5)
    # a quarter of each half wrongly labelled
    pred = target.copy()
    pred[0, 0] = 1  # region 0: 12 px, region 1: 12 px; segment 0: 11 px, segment 1: 13 px
    expected = (11 / 12 + 12 / 13) / 2
    assert matched_miou(pred, target) == pytest.approx(expected)


def test_matched_miou_torch_and_errors():
    rng = np.random.default_rng(3)
    target = rng.integers(0, 3, (8, 9))
    pred = rng.integers(0, 4, (8, 9))
    expected = ref_matched_miou(pred, target)
    assert matched_miou(torch.from_numpy(pred), torch.from_numpy(target)) == pytest.approx(expected)
    assert matched_miou(torch.from_numpy(pred), target) == pytest.approx(expected)
    with pytest.raises(ValueError):
        matched_miou(pred[:, :-1], target)
    with pytest.raises(ValueError):
        matched_miou(pred.astype(np.float32), target)
    with pytest.raises(ValueError):
        matched_miou(pred, target.astype(float))
    with pytest.raises(ValueError):
        matched_miou(torch.from_numpy(pred).float(), target)



def test_metrics_accept_huge_label_values():
    rng = np.random.default_rng(9)
    target = rng.integers(0, 4, (6, 7))
    pred = np.where(rng.uniform(size=target.shape) < 0.6, target, rng.integers(0, 4, target.shape))
    huge = np.array([0, 2**62, 5, 2**62 + 1], np.int64)[pred]  # valid int64 label values
    assert matched_miou(huge, target) == pytest.approx(ref_matched_miou(pred, target), abs=1e-12)
    assert adjusted_rand_index(huge, target) == pytest.approx(ref_ari_formula(pred, target),
                                                              abs=1e-12)

# ----------------------------------------------------------------------------- ARI
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("shape,kp,kt", [((5, 6), 3, 2), ((4, 7), 2, 4), ((30,), 5, 5),
                                         ((3, 3), 9, 2), ((2, 2), 1, 2)])
def test_ari_equals_formula_and_pair_brute_force(seed, shape, kp, kt):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, kt, shape)
    pred = np.where(rng.uniform(size=shape) < 0.6, target, rng.integers(0, kp, shape))
    got = adjusted_rand_index(pred, target)
    assert got == pytest.approx(ref_ari_formula(pred, target), abs=1e-12)
    assert got == pytest.approx(ref_ari_pairs(pred, target), abs=1e-12)


@pytest.mark.parametrize("pred,target", [
    ([0, 0, 0, 0], [5, 5, 5, 5]),  # both one cluster
    ([0, 1, 2, 3], [9, 8, 7, 6]),  # both all singletons
    ([3], [4]),  # a single pixel: no pairs at all
    ([], []),  # no pixels
    ([0, 0, 1, 1], [1, 1, 0, 0]),  # identical up to renaming
])
def test_ari_degenerate_cases_follow_scikit_learn(pred, target):
    pred, target = np.array(pred, np.int64), np.array(target, np.int64)
    assert ref_ari_formula(pred, target) == 1.0
    assert adjusted_rand_index(pred, target) == 1.0


def test_ari_one_cluster_vs_split_is_zero():
    # everything in one cluster against any split: index == expected, ARI 0 (not degenerate)
    pred = np.zeros(10, np.int64)
    target = np.array([0] * 4 + [1] * 6)
    assert ref_ari_formula(pred, target) == 0.0
    assert adjusted_rand_index(pred, target) == pytest.approx(0.0, abs=1e-15)
    # all singletons against a split: also 0
    assert adjusted_rand_index(np.arange(10), target) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("seed", range(4))
def test_ari_relabelling_invariance_and_symmetry(seed):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 4, (9, 11))
    pred = np.where(rng.uniform(size=target.shape) < 0.5, target, rng.integers(0, 5, target.shape))
    base = adjusted_rand_index(pred, target)
    new_values = rng.permutation(np.array([-7, 0, 3, 100, 2**40]))
    relabelled = new_values[pred]
    assert adjusted_rand_index(relabelled, target) == pytest.approx(base, abs=1e-12)
    assert adjusted_rand_index(pred, target * 13 - 5) == pytest.approx(base, abs=1e-12)
    assert adjusted_rand_index(target, pred) == pytest.approx(base, abs=1e-12)
    assert adjusted_rand_index(torch.from_numpy(pred), torch.from_numpy(target)) == \
        pytest.approx(base, abs=1e-12)
    assert -1.0 <= base <= 1.0


@pytest.mark.parametrize("seed", range(4))
def test_fg_ari_uses_only_foreground_pixels(seed):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 4, (8, 10))  # 0 = background
    pred = np.where(rng.uniform(size=target.shape) < 0.6, target, rng.integers(0, 4, target.shape))
    fg = target != 0
    got = adjusted_rand_index(pred, target, ignore_background=True)
    assert got == pytest.approx(ref_ari_formula(pred[fg], target[fg]), abs=1e-12)
    assert got == pytest.approx(ref_ari_pairs(pred[fg], target[fg]), abs=1e-12)
    # whatever pred says on the background does not matter
    pred2 = pred.copy()
    pred2[~fg] = rng.integers(-3, 9, (~fg).sum())
    assert adjusted_rand_index(pred2, target, ignore_background=True) == pytest.approx(got,
                                                                                      abs=1e-15)
    # ...while it does for plain ARI (sanity check of the data)
    assert adjusted_rand_index(pred2, target) != pytest.approx(adjusted_rand_index(pred, target))


def test_fg_ari_all_background_is_one():
    assert adjusted_rand_index(np.array([1, 2, 3]), np.zeros(3, np.int64),
                               ignore_background=True) == 1.0


def test_ari_large_map_no_overflow():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 5, (1000, 1000))
    pred = np.where(rng.uniform(size=target.shape) < 0.7, target, rng.integers(0, 5, target.shape))
    got = adjusted_rand_index(pred, target)
    # contingency counts by bincount, then the formula with Python ints / fractions
    counts = np.bincount((pred * 5 + target).ravel(), minlength=25).reshape(5, 5)
    n = int(counts.sum())
    index = sum(math.comb(int(v), 2) for v in counts.ravel())
    sa = sum(math.comb(int(v), 2) for v in counts.sum(1))
    sb = sum(math.comb(int(v), 2) for v in counts.sum(0))
    expected = Fraction(sa * sb, math.comb(n, 2))
    ref = float((index - expected) / (Fraction(sa + sb, 2) - expected))
    assert np.isfinite(got)
    assert got == pytest.approx(ref, rel=1e-12)
    assert 0.3 < ref < 0.7  # sanity: partially correlated


def test_ari_errors():
    with pytest.raises(ValueError):
        adjusted_rand_index(np.zeros((3, 4), np.int64), np.zeros((4, 3), np.int64))
    with pytest.raises(ValueError):
        adjusted_rand_index(np.zeros(5), np.zeros(5, np.int64))


# ----------------------------------------------------------------------------- AP
def random_ap_case(rng, n, difficult=0.0, decimals=None):
    scores = rng.uniform(0, 1, n)
    if decimals is not None:
        scores = np.round(scores, decimals)
    labels = np.where(rng.uniform(size=n) < 0.4, 1, -1)
    labels[rng.uniform(size=n) < difficult] = 0
    labels[rng.integers(0, n)] = 1  # at least one positive
    return scores, labels


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("n,difficult,decimals", [(5, 0.0, None), (40, 0.0, 1), (40, 0.3, 1),
                                                  (200, 0.2, 2), (25, 0.5, None)])
def test_average_precision_equals_brute_force(seed, n, difficult, decimals):
    scores, labels = random_ap_case(np.random.default_rng(seed), n, difficult, decimals)
    if decimals == 1:
        assert len(np.unique(scores)) < n  # ties really happen
    got = average_precision(scores, labels)
    assert got == pytest.approx(ref_average_precision(scores, labels), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_average_precision_ignores_difficult_and_order(seed):
    rng = np.random.default_rng(seed)
    scores, labels = random_ap_case(rng, 30, 0.0, 1)
    base = average_precision(scores, labels)
    # adding difficult examples anywhere in the ranking changes nothing
    extra = rng.uniform(0, 1, 10)
    s2 = np.r_[scores, extra]
    y2 = np.r_[labels, np.zeros(10, int)]
    assert average_precision(s2, y2) == pytest.approx(base, abs=1e-12)
    # nor does the order of the examples (ties are one threshold)
    perm = rng.permutation(len(s2))
    assert average_precision(s2[perm], y2[perm]) == pytest.approx(base, abs=1e-12)


def test_average_precision_hand_cases():
    s = [0.9, 0.8, 0.7, 0.6]
    assert average_precision(s, [1, -1, 1, -1]) == pytest.approx(0.5 * 1 + 0.5 * (2 / 3))
    assert average_precision(s, [1, 1, -1, -1]) == pytest.approx(1.0)
    assert average_precision(s, [-1, -1, 1, 1]) == pytest.approx(0.5 * (1 / 3) + 0.5 * (2 / 4))
    # a tie between a positive and a negative at the top: one threshold, precision 1/2
    assert average_precision([0.5, 0.5, 0.1], [1, -1, 1]) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    # difficult example ranked first is skipped
    assert average_precision([0.99, 0.9, 0.8], [0, 1, -1]) == pytest.approx(1.0)
    # torch inputs
    assert average_precision(torch.tensor(s), torch.tensor([1, -1, 1, -1])) == \
        pytest.approx(0.5 + 1 / 3)


# ----------------------------------------------------------------------------- VOC07 AP
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("n,difficult,decimals", [(5, 0.0, None), (40, 0.0, 1), (40, 0.3, 1),
                                                  (200, 0.2, 2), (25, 0.5, None)])
def test_voc07_ap_equals_devkit_port(seed, n, difficult, decimals):
    scores, labels = random_ap_case(np.random.default_rng(100 + seed), n, difficult, decimals)
    assert voc07_ap(scores, labels) == pytest.approx(ref_voc07(scores, labels), abs=1e-12)


def test_voc07_difficult_first_and_ties_in_input_order():
    # difficult examples at the top of the ranking: precision 0/0 there must not count
    scores = np.array([0.99, 0.98, 0.5, 0.4, 0.3])
    labels = np.array([0, 0, 1, -1, 1])
    assert voc07_ap(scores, labels) == pytest.approx(ref_voc07(scores, labels), abs=1e-12)
    assert voc07_ap(scores, labels) == pytest.approx((6 * 1 + 5 * (2 / 3)) / 11)
    # tied scores are ranked in input order (stable sort), so the order matters here
    assert voc07_ap([0.5, 0.5], [1, -1]) == pytest.approx(1.0)
    assert voc07_ap([0.5, 0.5], [-1, 1]) == pytest.approx(6 * 0.5 / 11 + 5 * 0.5 / 11)


def test_voc07_hand_case():
    s = [0.9, 0.8, 0.7, 0.6]
    assert voc07_ap(s, [1, -1, 1, -1]) == pytest.approx((6 * 1 + 5 * (2 / 3)) / 11)
    assert voc07_ap(s, [1, 1, -1, -1]) == pytest.approx(1.0)
    assert voc07_ap(torch.tensor(s), torch.tensor([1, -1, 1, -1])) == \
        pytest.approx((6 + 5 * 2 / 3) / 11)


@pytest.mark.parametrize("fn", [average_precision, voc07_ap])
def test_ap_errors(fn):
    with pytest.raises(ValueError):
        fn([0.1, 0.2, 0.3], [-1, -1, 0])  # no positive
    with pytest.raises(ValueError):
        fn([0.1, 0.2, 0.3], [1, 2, -1])  # label outside {-1, 0, 1}
    with pytest.raises(ValueError):
        fn([0.1, 0.2, 0.3], [1, 0, -1, 1])  # length mismatch
    with pytest.raises(ValueError):
        fn([0.1, np.nan, 0.3], [1, 0, -1])  # NaN score
    with pytest.raises(ValueError):
        fn([0.1, np.inf, 0.3], [1, 0, -1])
    with pytest.raises(ValueError):
        fn(np.zeros((2, 2)), np.ones((2, 2)))  # not 1-D
