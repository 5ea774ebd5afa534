"""A standardised multinomial logistic regression served with numpy only.

The shipped model's feature member is a logistic regression. Stored through skops it would import all
of scikit-learn (1.5 s) on every ``genrekit predict``; as plain arrays (means, scales, coefficients)
it loads in milliseconds and predicts with one matrix product. Built from a fitted
:class:`~genrekit.models.classic.SklearnModel` named ``logreg``; its probabilities are the same.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from genrekit.errors import ModelError
from genrekit.metrics import softmax
from genrekit.models.base import Estimator, load_model_file, save_model_file
from genrekit.models.rows import check_X, log_transform

KIND = "linear"


class LinearModel(Estimator):
    """``softmax(((log_var(X) - mean) / scale) @ coef.T + intercept)``."""

    kind = KIND

    @classmethod
    def from_sklearn(cls, model) -> LinearModel:
        """Take the arrays out of a fitted ``SklearnModel("logreg")`` (scaler + LogisticRegression)."""
        steps = model.pipeline_.named_steps
        clf = steps.get("clf")
        if set(steps) != {"scale", "clf"} or type(clf).__name__ != "LogisticRegression":
            raise ModelError("only a standardised logistic regression (logreg, no feature selection) converts")
        m = cls()
        m.mean_ = np.asarray(steps["scale"].mean_, dtype=np.float64)
        m.scale_ = np.asarray(steps["scale"].scale_, dtype=np.float64)
        coef = np.asarray(clf.coef_, dtype=np.float64)
        intercept = np.asarray(clf.intercept_, dtype=np.float64)
        if coef.shape[0] == 1:  # binary: sklearn stores one row for the positive class
            coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
        # rows follow the pipeline's classes (integer codes into model.classes_)
        m.coef_ = np.zeros((len(model.classes_), coef.shape[1]))
        m.intercept_ = np.full(len(model.classes_), -1e9)
        m.coef_[model.pipeline_.classes_] = coef
        m.intercept_[model.pipeline_.classes_] = intercept
        m.classes_ = np.asarray(model.classes_)
        m.log_columns_ = list(model.log_columns_)
        m.input_ = dict(model.input_)
        m.meta_ = {"kind": KIND, "classes": [str(c) for c in m.classes_], "input": m.input_,
                   "source": {"name": model.name, "params": model.best_params_}}
        return m

    def predict_proba(self, X) -> np.ndarray:
        self._check_fitted()
        X = log_transform(check_X(X, self.coef_.shape[1]), self.log_columns_)
        return softmax(((X - self.mean_) / self.scale_) @ self.coef_.T + self.intercept_)

    def save(self, path: str | os.PathLike) -> Path:
        self._check_fitted()
        tensors = {"mean": self.mean_, "scale": self.scale_, "coef": self.coef_, "intercept": self.intercept_,
                   "log_columns": np.asarray(self.log_columns_, dtype=np.int64)}
        return save_model_file(path, tensors, dict(self.meta_))

    @classmethod
    def load(cls, path: str | os.PathLike) -> LinearModel:
        tensors, meta = load_model_file(path)
        if meta.get("kind") != KIND:
            raise ModelError(f"{path}: holds a {meta.get('kind')!r} model, not a linear one")
        try:
            m = cls()
            m.mean_, m.scale_ = tensors["mean"].astype(np.float64), tensors["scale"].astype(np.float64)
            m.coef_, m.intercept_ = tensors["coef"].astype(np.float64), tensors["intercept"].astype(np.float64)
            m.log_columns_ = [int(i) for i in tensors["log_columns"]]
        except KeyError as exc:
            raise ModelError(f"{path}: linear model file lacks tensor {exc}") from None
        n_cls, n_feat = m.coef_.shape
        cols = meta["input"].get("columns") or []
        if (m.mean_.shape != (n_feat,) or m.scale_.shape != (n_feat,) or m.intercept_.shape != (n_cls,)
                or len(meta["classes"]) != n_cls or len(cols) != n_feat
                or any(not 0 <= i < n_feat for i in m.log_columns_) or not np.all(m.scale_ > 0)):
            raise ModelError(f"{path}: linear model arrays do not match each other or the metadata")
        m.classes_ = np.asarray(meta["classes"])
        m.input_ = meta["input"]
        m.meta_ = meta
        return m
