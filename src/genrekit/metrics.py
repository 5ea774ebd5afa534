"""Pure metrics and THE probability-combination rule: arrays in, numbers out, nothing read or written.

The bottom floor (layer 0): it imports only numpy and :mod:`genrekit.errors`, so estimators
(``models/``), prediction, experiments and reports can all share one definition of accuracy, macro-F1,
the confusion matrix, track aggregation and the mean-log-probability rule.

The rule: a track's (or a hybrid's) probabilities are the softmax of the (weighted) mean of the
experts' log-probabilities, i.e. a renormalised product of experts. Segments of one track, members of
a hybrid and the web server all combine probabilities through :func:`mean_log_proba`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from genrekit.errors import GenrekitError, ModelError

__all__ = [
    "PROBA_FLOOR",
    "aggregate_tracks",
    "classification_metrics",
    "confusion_matrix",
    "expected_calibration_error",
    "fit_temperature",
    "reliability_bins",
    "log_proba",
    "mean_log_proba",
    "normalised_weights",
    "per_class_metrics",
    "softmax",
]

# Probabilities are floored here before a logarithm: one zero would otherwise veto a class outright.
PROBA_FLOOR = 1e-12


# ------------------------------------------------------------------------------ probability rules
def softmax(z: np.ndarray, *, axis: int = -1) -> np.ndarray:
    """Row-wise softmax of scores or log-probabilities (shifted by the maximum, so it never overflows)."""
    z = np.asarray(z)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def log_proba(p, *, floor: float | None = PROBA_FLOOR) -> np.ndarray:
    """``log p`` in float64, ``p`` first clipped to ``[floor, 1]`` (``floor=None``: already floored)."""
    p = np.asarray(p, dtype=np.float64)
    return np.log(p if floor is None else np.clip(p, floor, 1.0))


def normalised_weights(weights: Sequence[float] | None, n: int) -> np.ndarray:
    """``weights`` (default: equal) checked, one non-negative number per member, and scaled to sum to 1."""
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (n,) or (w < 0).any() or w.sum() <= 0:
        raise ModelError("hybrid weights must be one non-negative number per member, not all zero")
    return w / w.sum()


def mean_log_proba(
    probas: Sequence[np.ndarray] | np.ndarray,
    weights: Sequence[float] | None = None,
    *,
    floor: float | None = PROBA_FLOOR,
) -> np.ndarray:
    """Combine experts' probabilities by their (weighted) mean log-probability, renormalised.

    ``probas`` holds one probability array per expert along its first axis: the members of a hybrid
    (each ``[n, k]``, same class order; the result is ``[n, k]``) or the windows of one track (``[n, k]``
    gives one ``[k]`` row). Without ``weights`` the experts count equally (a plain mean); with them,
    ``weights`` are checked and scaled to sum to 1 (:func:`normalised_weights`). ``floor`` clips each
    probability before its logarithm; ``None`` when the caller has floored them already.
    """
    if weights is None:
        logp = log_proba(probas, floor=floor).mean(axis=0)
    else:
        w = normalised_weights(weights, len(probas))
        logp = sum(wi * log_proba(p, floor=floor) for wi, p in zip(w, probas, strict=True))
    return softmax(logp)


# --------------------------------------------------------------------------- classification scores
def _labels(y_true: Sequence, y_pred: Sequence, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Labels as strings, checked: same length, not empty, every true label among ``classes``."""
    y_true = np.asarray(y_true).astype(str)
    y_pred = np.asarray(y_pred).astype(str)
    classes = [str(c) for c in classes]
    if y_true.shape != y_pred.shape:
        raise GenrekitError(f"y_true has {y_true.shape[0]} labels but y_pred has {y_pred.shape[0]}")
    if y_true.size == 0:
        raise GenrekitError("cannot score an empty set of predictions")
    unknown = sorted(set(y_true.tolist()) - set(classes))
    if unknown:
        raise GenrekitError(f"labels {unknown} are not among the classes {classes}")
    return y_true, y_pred, classes


def confusion_matrix(y_true: Sequence, y_pred: Sequence, classes: Sequence[str]) -> np.ndarray:
    """Counts ``[k, k]``, true label = row, in ``classes`` order (so folds' matrices add up).

    A prediction outside ``classes`` counts as wrong but has no column."""
    y_true, y_pred, classes = _labels(y_true, y_pred, classes)
    index = {c: i for i, c in enumerate(classes)}
    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        if p in index:
            confusion[index[t], index[p]] += 1
    return confusion


def per_class_metrics(confusion, classes: Sequence[str]) -> dict[str, dict[str, float | int]]:
    """Precision, recall, F1 and support of each class from a confusion matrix (0 where undefined)."""
    confusion = np.asarray(confusion)
    tp = np.diag(confusion).astype(float)
    support = confusion.sum(axis=1).astype(float)
    predicted = confusion.sum(axis=0).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {
        str(c): {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, c in enumerate(classes)
    }


def classification_metrics(y_true: Sequence, y_pred: Sequence, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    ``classes`` fixes the row/column order of the confusion matrix (true label = row), so matrices
    from different folds or models can be added up and compared. Macro-F1 averages the classes that
    occur among the true labels.
    """
    y_true, y_pred, classes = _labels(y_true, y_pred, classes)
    confusion = confusion_matrix(y_true, y_pred, classes)
    per_class = per_class_metrics(confusion, classes)
    f1 = np.array([per_class[c]["f1"] for c in classes])
    present = confusion.sum(axis=1) > 0
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "n": int(y_true.size),
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "classes": classes,
    }


def aggregate_tracks(
    track_ids: Sequence[str], proba: np.ndarray, *, method: str = "mean_log"
) -> tuple[np.ndarray, np.ndarray]:
    """Combine segment probabilities into one row per track (sorted track ids).

    ``mean_log`` averages log-probabilities (a product of experts, robust to one confident wrong
    segment only when the others disagree strongly); ``vote`` counts each segment's arg-max, the
    tutorials' majority vote. Rows of the result sum to 1.
    """
    track_ids = np.asarray(track_ids).astype(str)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[0] != track_ids.shape[0]:
        raise GenrekitError(
            f"proba must be [n_segments, n_classes] matching {track_ids.shape[0]} track ids, got {proba.shape}"
        )
    if method not in ("mean_log", "vote"):
        raise GenrekitError(f"unknown aggregation method {method!r}: use 'mean_log' or 'vote'")
    unique, inverse = np.unique(track_ids, return_inverse=True)
    n_tracks, k = unique.shape[0], proba.shape[1]
    counts = np.bincount(inverse, minlength=n_tracks).astype(np.float64)[:, None]
    out = np.zeros((n_tracks, k), dtype=np.float64)
    if method == "mean_log":  # mean_log_proba per track: the sums are grouped, the rule is the same
        np.add.at(out, inverse, log_proba(proba))
        return unique, softmax(out / counts)
    np.add.at(out, (inverse, np.argmax(proba, axis=1)), 1.0)
    # Ties go to the class with the larger summed probability: add a tiny tie-breaker.
    tie = np.zeros_like(out)
    np.add.at(tie, inverse, proba)
    out = out + 1e-6 * tie / counts
    return unique, out / out.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------------------ calibration
def reliability_bins(y_true: Sequence, proba, classes: Sequence[str], *, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Top-1 confidence against accuracy in ``n_bins`` equal-width confidence bins: per bin the
    count, mean confidence and accuracy (NaN where empty)."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] != len(classes) or proba.shape[0] != len(y_true):
        raise GenrekitError(f"proba must be [n_samples, {len(classes)}] with one row per label, got {proba.shape}")
    if n_bins < 1:
        raise GenrekitError(f"n_bins must be >= 1, got {n_bins}")
    conf = proba.max(axis=1)
    correct = np.asarray(classes)[proba.argmax(axis=1)] == np.asarray(y_true).astype(str)
    idx = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / count
        acc = np.bincount(idx, weights=correct.astype(float), minlength=n_bins) / count
    return {"edges": np.linspace(0.0, 1.0, n_bins + 1), "count": count, "confidence": mean_conf, "accuracy": acc}


def expected_calibration_error(y_true: Sequence, proba, classes: Sequence[str], *, n_bins: int = 10) -> float:
    """ECE of the top-1 confidence: sum over bins of (bin share) * |accuracy - mean confidence|."""
    b = reliability_bins(y_true, proba, classes, n_bins=n_bins)
    n = b["count"].sum()
    full = b["count"] > 0
    return float(np.sum(b["count"][full] / n * np.abs(b["accuracy"][full] - b["confidence"][full])))


def fit_temperature(y_true: Sequence, proba, classes: Sequence[str], *, lo: float = 0.05, hi: float = 20.0) -> float:
    """The temperature T minimising the negative log-likelihood of ``softmax(log p / T)`` (scalar
    search on log T: the NLL is smooth and unimodal in it)."""
    from scipy.optimize import minimize_scalar

    logp = log_proba(np.asarray(proba, dtype=np.float64))
    pos = {c: i for i, c in enumerate(map(str, classes))}
    y = np.array([pos[str(c)] for c in y_true])

    def nll(log_t: float) -> float:
        z = logp / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float(-np.mean(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(axis=1))))

    r = minimize_scalar(nll, bounds=(np.log(lo), np.log(hi)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(r.x))
