"""Evaluation metrics: segments against ground-truth regions, and classification AP.

- :func:`matched_miou`: one-to-one (Hungarian) matching of predicted to true segments on IoU,
  mean IoU over the true labels present (unmatched ones count 0).
- :func:`adjusted_rand_index`: ARI of two labellings; FG-ARI with ``ignore_background=True``.
- :func:`average_precision`: non-interpolated AP (scikit-learn's; Krahenbuhl et al.'s VOC07
  fine-tuning code reports it).
- :func:`voc07_ap`: the VOC 2007 devkit's 11-point interpolated AP.

Label convention for the AP functions: 1 positive, -1 negative, 0 difficult (ignored).
Explained in ``notebooks/00_overview.ipynb``; used from ``04_cube_toy.ipynb`` on.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def _label_maps(pred, target) -> tuple[np.ndarray, np.ndarray]:
    """Both label maps as flat int64 arrays, after checking shapes and dtypes."""
    p, t = _as_int_array(pred, "pred"), _as_int_array(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred and target: shapes differ, {p.shape} vs {t.shape}")
    return p.ravel(), t.ravel()


def _as_int_array(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: expected an integer label map, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def contingency(pred, target) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel counts of every (pred label, target label) pair.

    Returns:
        ``(table, pred_labels, target_labels)``: ``table[i, j]`` counts pixels with
        ``pred == pred_labels[i]`` and ``target == target_labels[j]``.
    """
    p, t = _label_maps(pred, target)
    small = p.size and min(int(p.min()), int(t.min())) >= 0 and (
        (int(p.max()) + 1) * (int(t.max()) + 1) <= 1 << 22)  # Python ints: no overflow
    if small:
        # small non-negative labels (the usual case): count directly, then drop absent labels
        n_t = int(t.max()) + 1
        table = np.bincount(p * n_t + t, minlength=(int(p.max()) + 1) * n_t).reshape(-1, n_t)
        rows, cols = np.flatnonzero(table.sum(1)), np.flatnonzero(table.sum(0))
        return table[np.ix_(rows, cols)], rows, cols
    pl, pi = np.unique(p, return_inverse=True)
    tl, ti = np.unique(t, return_inverse=True)
    table = np.bincount(pi * len(tl) + ti, minlength=len(pl) * len(tl)).reshape(len(pl), len(tl))
    return table, pl, tl


def iou_matrix(pred, target) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every predicted segment with every true region: ``(iou, pred_labels, target_labels)``."""
    table, pl, tl = contingency(pred, target)
    inter = table.astype(np.float64)
    union = table.sum(1, keepdims=True) + table.sum(0, keepdims=True) - inter
    return inter / np.maximum(union, 1), pl, tl


def matched_miou(pred, target) -> float:
    """Mean IoU after matching predicted segments one-to-one to true regions (Hungarian method).

    Args:
        pred: integer label map (any shape), e.g. ``masks.argmax(0)`` of ``(L, H, W)`` segments.
        target: integer label map of the same shape.

    Returns:
        The matched IoU summed over the target labels present, divided by their number; a target
        label left unmatched (more regions than segments) counts 0.
    """
    if np.size(target) == 0:
        raise ValueError("pred and target: empty label maps")
    iou, _, tl = iou_matrix(pred, target)
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return float(iou[rows, cols].sum() / len(tl))


def adjusted_rand_index(pred, target, ignore_background: bool = False) -> float:
    """Adjusted Rand index of two labellings (Hubert & Arabie 1985), as scikit-learn computes it.

    Args:
        pred, target: integer label maps of the same shape (label values are arbitrary).
        ignore_background: drop the pixels whose *target* label is 0 first (FG-ARI, the
            object-discovery metric: how well the foreground is split, whatever happens to the
            background).

    Returns:
        ARI in [-1, 1]: 1 for identical partitions (up to renaming), about 0 for chance. As in
        scikit-learn, 1.0 when both labellings put every pixel in one cluster or there are no
        pixels.
    """
    p, t = _label_maps(pred, target)
    if ignore_background:
        keep = t != 0
        p, t = p[keep], t[keep]
    n = p.size
    if n == 0:
        return 1.0
    table, _, _ = contingency(p, t)
    # Pair counts with Python ints: n**2 overflows float precision for megapixel maps.
    sum_sq = int((table.astype(np.int64) ** 2).sum())
    a = [int(v) for v in table.sum(1)]
    b = [int(v) for v in table.sum(0)]
    tp = sum_sq - n
    fp = sum(v * v for v in b) - sum_sq  # same true region, different segments
    fn = sum(v * v for v in a) - sum_sq  # same segment, different true regions
    tn = n * n - fp - fn - sum_sq
    if fn == 0 and fp == 0:
        return 1.0
    return float(2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)))


def _ranked(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores.detach().cpu() if hasattr(scores, "detach") else scores, np.float64)
    y = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels)
    if s.ndim != 1 or y.shape != s.shape:
        raise ValueError(
            f"scores and labels: expected two 1-D arrays of equal length, got {s.shape} and "
            f"{y.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores: contains NaN or inf")
    if y.dtype == bool:
        raise ValueError("labels: expected 1 / -1 / 0 integers; a bool array would turn every "
                         "negative (False = 0) into an ignored 'difficult' example")
    if not np.isin(y, (-1, 0, 1)).all():
        raise ValueError("labels: expected 1 (positive), -1 (negative) or 0 (difficult) only")
    if not (y == 1).any():
        raise ValueError("labels: no positive example (label 1); AP is undefined")
    return s, y.astype(np.int64)


def average_precision(scores, labels) -> float:
    """Non-interpolated average precision for one class (scikit-learn's definition).

    ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds, highest first; tied
    scores form one threshold. Difficult examples (label 0) are dropped.

    Args:
        scores: ``(N,)`` classifier scores, higher = more confident positive.
        labels: ``(N,)`` 1 positive, -1 negative, 0 difficult.
    """
    s, y = _ranked(scores, labels)
    keep = y != 0
    s, pos = s[keep], y[keep] == 1
    order = np.argsort(-s, kind="stable")
    s, pos = s[order], pos[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tp = np.cumsum(pos)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / pos.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def voc07_ap(scores, labels) -> float:
    """The PASCAL VOC 2007 devkit's 11-point interpolated AP for one class.

    Ranks by score (ties kept in input order, as the devkit's MATLAB ``sort`` does), then
    averages, over recall levels t = 0, 0.1, ..., 1, the highest precision at recall >= t.
    Difficult examples (label 0) count neither as true nor as false positives.

    The recall levels are ``np.arange(0, 1.1, 0.1)``, as in the widely used Python ports of the
    devkit (py-faster-rcnn, Detectron). MATLAB's ``0:0.1:1`` rounds two of them differently
    (0.6 and 0.7 exactly instead of 0.6000000000000001 and 0.7000000000000001), so a recall of
    exactly 3/5 or 7/10 can make the two differ in the last digits.
    """
    s, y = _ranked(scores, labels)
    order = np.argsort(-s, kind="stable")
    gt = y[order]
    tp = np.cumsum(gt > 0)
    fp = np.cumsum(gt < 0)
    recall = tp / (gt > 0).sum()
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).tiny)
    ap = 0.0
    for t in np.arange(0.0, 1.1, 0.1):  # as the Python ports of the devkit (py-faster-rcnn)
        p = precision[recall >= t]
        ap += (p.max() if p.size else 0.0) / 11
    return float(ap)
