"""The number matrices estimators take: checked (:func:`check_X`) and with variance columns on a log
scale (:func:`log_columns`, :func:`log_transform`). What an input *is* lives in :mod:`genrekit.models.inputs`;
this is what every estimator does to the rows it is handed, whatever their input."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from genrekit.errors import ModelError

__all__ = ["check_X", "log_columns", "log_transform"]


def log_columns(columns: Sequence[str] | None) -> list[int]:
    """Indices of variance columns: they span orders of magnitude, so models see their logarithm."""
    if columns is None:
        return []
    return [i for i, c in enumerate(columns) if str(c).endswith("_var")]


def log_transform(X: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """A copy of ``X`` with the columns ``idx`` replaced by their logarithm (floored at 1e-10)."""
    X = np.array(X, dtype=np.float64, copy=True)
    if len(idx):
        idx = list(idx)
        X[:, idx] = np.log(np.maximum(X[:, idx], 0.0) + 1e-10)
    return X


def check_X(X, n_features: int | None = None, *, what: str = "X") -> np.ndarray:
    """Reject non-2-D, wrongly sized or non-finite inputs with a clear message."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ModelError(f"{what} must be a 2-D array [n_samples, n_features], got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise ModelError(f"{what} has {X.shape[1]} features but the model was fitted on {n_features}")
    if not np.isfinite(X).all():
        r, c = np.argwhere(~np.isfinite(X))[0]
        raise ModelError(f"{what} holds a NaN or infinite value (row {r}, column {c})")
    return X
