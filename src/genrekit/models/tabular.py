"""Shared pieces of the feature-vector (tabular) models: input description, preprocessing, the zoo.

The zoo maps the CLI's model names (``rf``, ``svm``, ``mlp-512-sgd``, ``ensemble`` ...) to estimator
constructors so that the trainer, the ensemble and the CLI agree on what a name means.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from genrekit.errors import ModelError

__all__ = [
    "TABULAR_MODELS",
    "check_X",
    "features_input",
    "log_columns",
    "log_transform",
    "make_model",
]


def features_input(columns: Sequence[str] | None, n_features: int, segment_seconds: float | None = None) -> dict:
    """The metadata block telling genrekit.predict which feature vector the model expects."""
    cols = list(columns) if columns is not None else [f"f{i}" for i in range(n_features)]
    if len(cols) != n_features:
        raise ModelError(f"{len(cols)} feature names given for {n_features} feature columns")
    return {"type": "features", "columns": cols, "segment_seconds": segment_seconds}


def log_columns(columns: Sequence[str] | None) -> list[int]:
    """Indices of variance columns: they span orders of magnitude, so models see their logarithm."""
    if columns is None:
        return []
    return [i for i, c in enumerate(columns) if str(c).endswith("_var")]


def log_transform(X: np.ndarray, idx: Sequence[int]) -> np.ndarray:
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


def _sk(name: str, **kw) -> Callable[..., Any]:
    def build(random_state: int = 0, **extra):
        from genrekit.models.classic import SklearnModel

        return SklearnModel(name=name, random_state=random_state, **{**kw, **extra})

    return build


def _mlp(arch: str) -> Callable[..., Any]:
    def build(random_state: int = 0, **extra):
        from genrekit.models.mlp import MLPModel

        return MLPModel(arch=arch, random_state=random_state, **extra)

    return build


def _cnn1d(random_state: int = 0, **extra):
    from genrekit.models.mlp import CNN1DModel

    return CNN1DModel(random_state=random_state, **extra)


# The members of the default ensembles: the models that do best on the fault-filtered split and
# make different kinds of mistakes (linear, kernel, boosted trees, neural).
ENSEMBLE_MEMBERS = ("logreg", "svm", "hgb", "mlp")
# Stacking refits its members on inner folds (cv + 1 fits each): the three cheapest strong ones.
STACKING_MEMBERS = ("logreg", "svm", "hgb")


def _ensemble(method: str) -> Callable[..., Any]:
    def build(random_state: int = 0, **extra):
        from genrekit.models.ensemble import EnsembleModel

        members = extra.pop("members", STACKING_MEMBERS if method == "stacking" else ENSEMBLE_MEMBERS)
        return EnsembleModel(members=tuple(members), method=method, random_state=random_state, **extra)

    return build


TABULAR_MODELS: dict[str, Callable[..., Any]] = {
    "rf": _sk("rf"),
    "extratrees": _sk("extratrees"),
    "svm": _sk("svm"),
    "knn": _sk("knn"),
    "logreg": _sk("logreg"),
    "hgb": _sk("hgb"),
    "rf-top30": _sk("rf", top_k=30),
    "mlp": _mlp("256"),
    "mlp-512": _mlp("512"),
    "mlp-512-sgd": _mlp("512-sgd"),
    "mlp-1024-rmsprop": _mlp("1024-rmsprop"),
    "cnn1d": _cnn1d,
    "ensemble": _ensemble("soft"),
    "stacking": _ensemble("stacking"),
}


def make_model(name: str, *, random_state: int = 0, **params):
    """Build an unfitted estimator by its CLI name (e.g. ``svm``, ``mlp-512-sgd``, ``ensemble``).

    ``<sklearn-name>-top<k>`` (e.g. ``svm-top20``) adds Random-Forest feature selection to any classic model.
    """
    if name in TABULAR_MODELS:
        return TABULAR_MODELS[name](random_state=random_state, **params)
    base, sep, k = name.rpartition("-top")
    if sep and k.isdigit() and base in ("rf", "extratrees", "svm", "knn", "logreg", "hgb"):
        return _sk(base, top_k=int(k))(random_state=random_state, **params)
    raise ModelError(f"unknown model {name!r}; choose one of {', '.join(TABULAR_MODELS)} (or e.g. svm-top20)")
