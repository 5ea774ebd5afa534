"""Classic scikit-learn models on feature vectors, stored without pickle.

One estimator, :class:`SklearnModel`, covers Random Forest, Extra Trees, SVM (RBF), k-NN, logistic
regression and histogram gradient boosting. Standardisation (and optional Random-Forest top-k feature
selection) sit inside the pipeline, so they are refitted on each training fold and never see test data.

Files: the fitted pipeline is serialised with skops (a documented, non-pickle format) and kept as a
uint8 tensor inside the one safetensors model file; loading accepts only the sklearn types listed in
:data:`TRUSTED_TYPES` and refuses any file naming anything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from genrekit.errors import ModelError
from genrekit.models.base import Estimator
from genrekit.models.inputs import features_input
from genrekit.models.rows import check_X, log_columns, log_transform

KIND = "sklearn"

NAMES = ("rf", "extratrees", "svm", "knn", "logreg", "hgb")

# Types skops does not trust by default but which these pipelines legitimately contain. Anything else
# in a file makes load() refuse it: skops only constructs types it was told to trust.
TRUSTED_TYPES = [
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.tree._tree.Tree",
]

# Hyper-parameter grids searched on the validation set when one is given (fault-filtered, artist3).
GRIDS: dict[str, list[dict[str, Any]]] = {
    "svm": [{"C": c, "gamma": g} for c in (1.0, 3.0, 10.0, 30.0) for g in ("scale", 0.003, 0.01)],
    "logreg": [{"C": c} for c in (0.03, 0.1, 0.3, 1.0, 3.0)],
    "knn": [{"n_neighbors": k} for k in (3, 5, 9, 15, 25)],
    "rf": [{"max_features": m} for m in ("sqrt", 0.2, 0.4)],
    "extratrees": [{"max_features": m} for m in ("sqrt", 0.2, 0.4)],
    "hgb": [{"learning_rate": 0.1}, {"learning_rate": 0.2}, {"learning_rate": 0.1, "max_leaf_nodes": 15}],
}

DEFAULTS: dict[str, dict[str, Any]] = {
    "rf": {"n_estimators": 300, "max_features": "sqrt"},
    "extratrees": {"n_estimators": 300, "max_features": "sqrt"},
    "svm": {"C": 10.0, "gamma": "scale"},
    "knn": {"n_neighbors": 5},
    "logreg": {"C": 1.0},
    "hgb": {"max_iter": 100, "learning_rate": 0.1},
}


def _build_classifier(name: str, params: dict[str, Any], random_state: int, n_jobs: int,
                      fit_counts: tuple[int, int] | None = None):
    """``fit_counts``: (rows, rows of the smallest class) of the data it will be fitted on, so a few-shot
    fit (a handful of tracks per label) gets as many calibration folds and neighbours as it has rows."""
    if name == "rf":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(random_state=random_state, n_jobs=n_jobs, **params)
    if name == "extratrees":
        from sklearn.ensemble import ExtraTreesClassifier

        return ExtraTreesClassifier(random_state=random_state, n_jobs=n_jobs, **params)
    if name == "svm":
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import SVC

        # Platt scaling fitted on internal cross-validation, then one SVC on all rows (ensemble=False):
        # the replacement scikit-learn recommends for SVC(probability=True).
        cv = 5
        if fit_counts is not None and fit_counts[1] < cv:
            if fit_counts[1] < 2:
                raise ModelError("svm calibrates its probabilities by cross-validation: it needs at least 2 "
                                 "training tracks of every class (use logreg for fewer)")
            cv = fit_counts[1]
        return CalibratedClassifierCV(SVC(kernel="rbf", random_state=random_state, **params), ensemble=False, cv=cv)
    if name == "knn":
        from sklearn.neighbors import KNeighborsClassifier

        if fit_counts is not None and params.get("n_neighbors", 5) > fit_counts[0]:
            params = {**params, "n_neighbors": fit_counts[0]}
        return KNeighborsClassifier(weights="distance", **params)
    if name == "logreg":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=5000, random_state=random_state, **params)
    if name == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(random_state=random_state, early_stopping=False, **params)
    raise ModelError(f"unknown classic model {name!r}; choose one of {', '.join(NAMES)}")


class SklearnModel(Estimator):
    """A scikit-learn classifier behind genrekit's estimator interface.

    Parameters: ``name`` (rf, extratrees, svm, knn, logreg, hgb); ``top_k`` keeps the k features a
    Random Forest ranks highest (fitted on the training rows only); ``params`` override the defaults;
    ``tune`` searches :data:`GRIDS` on the validation set when ``fit`` gets one; ``log_var`` feeds
    variance columns through a logarithm (they span orders of magnitude).
    """

    kind = KIND

    def __init__(
        self,
        name: str = "rf",
        *,
        top_k: int | None = None,
        params: dict[str, Any] | None = None,
        tune: bool = True,
        log_var: bool = True,
        random_state: int = 0,
        n_jobs: int = 1,
    ):
        self.name = name
        self.top_k = top_k
        self.params = params
        self.tune = tune
        self.log_var = log_var
        self.random_state = random_state
        self.n_jobs = n_jobs

    @property
    def label(self) -> str:
        return self.name + (f"-top{self.top_k}" if self.top_k else "")

    # ------------------------------------------------------------------------------------- fitting
    def _pipeline(self, params: dict[str, Any], y: np.ndarray | None = None):
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        steps: list[tuple[str, Any]] = [("scale", StandardScaler())]
        if self.top_k:
            from sklearn.ensemble import RandomForestClassifier
            from sklearn.feature_selection import SelectFromModel

            selector = RandomForestClassifier(n_estimators=200, random_state=self.random_state, n_jobs=self.n_jobs)
            steps.append(("select", SelectFromModel(selector, max_features=int(self.top_k), threshold=-np.inf)))
        counts = None if y is None else (len(y), int(np.unique(y, return_counts=True)[1].min()))
        steps.append(("clf", _build_classifier(self.name, params, self.random_state, self.n_jobs, counts)))
        return Pipeline(steps)

    def fit(
        self,
        X,
        y,
        *,
        X_valid=None,
        y_valid=None,
        feature_names: Sequence[str] | None = None,
        segment_seconds: float | None = None,
    ) -> SklearnModel:
        """Fit on (X, y); with a validation set and ``tune``, pick hyper-parameters by its accuracy."""
        if self.name not in NAMES:
            raise ModelError(f"unknown classic model {self.name!r}; choose one of {', '.join(NAMES)}")
        from threadpoolctl import threadpool_limits

        # OpenMP/BLAS pools sized to every core spin and thrash on a shared machine (HGB took 40x longer).
        # Build the pipeline once first: the limit only reaches thread pools of libraries already loaded.
        self._pipeline(DEFAULTS.get(self.name, {}))
        with threadpool_limits(limits=max(1, self.n_jobs)):
            return self._fit(X, y, X_valid, y_valid, feature_names, segment_seconds)

    def _fit(self, X, y, X_valid, y_valid, feature_names, segment_seconds) -> SklearnModel:
        X = check_X(X)
        y = np.asarray(y).astype(str)
        if y.shape[0] != X.shape[0]:
            raise ModelError(f"X has {X.shape[0]} rows but y has {y.shape[0]} labels")
        classes = np.unique(y)
        if classes.size < 2:
            raise ModelError(f"need at least 2 classes to fit, got {classes.tolist()}")
        if self.top_k is not None and not 0 < int(self.top_k) <= X.shape[1]:
            raise ModelError(f"top_k={self.top_k} must lie between 1 and the {X.shape[1]} features")
        self.classes_ = classes
        self.n_features_in_ = X.shape[1]
        self.input_ = features_input(feature_names, X.shape[1], segment_seconds)
        self.log_columns_ = log_columns(feature_names) if self.log_var else []
        Xt = log_transform(X, self.log_columns_)
        yi = np.searchsorted(classes, y)
        base = {**DEFAULTS[self.name], **(self.params or {})}
        self.tuning_ = []
        if self.tune and X_valid is not None and len(X_valid) and self.name in GRIDS and not self.params:
            Xv = log_transform(check_X(X_valid, X.shape[1], what="X_valid"), self.log_columns_)
            yv = np.asarray(y_valid).astype(str)
            best = None
            for cand in GRIDS[self.name]:
                params = {**base, **cand}
                pipe = self._pipeline(params, yi).fit(Xt, yi)
                pred = classes[pipe.predict(Xv)]
                acc = float(np.mean(pred == yv))
                self.tuning_.append({"params": cand, "valid_accuracy": acc})
                if best is None or acc > best[0]:
                    best = (acc, params, pipe)
            _, self.best_params_, self.pipeline_ = best
        else:
            self.best_params_ = base
            self.pipeline_ = self._pipeline(base, yi).fit(Xt, yi)
        return self

    def predict_proba(self, X) -> np.ndarray:
        self._check_fitted()
        X = log_transform(check_X(X, self.n_features_in_), self.log_columns_)
        from threadpoolctl import threadpool_limits

        proba = np.zeros((X.shape[0], len(self.classes_)))
        # columns of the pipeline's output follow its own classes_ (integer codes into self.classes_)
        with threadpool_limits(limits=max(1, self.n_jobs)):
            proba[:, self.pipeline_.classes_] = self.pipeline_.predict_proba(X)
        return proba

    def feature_importances(self) -> dict[str, float] | None:
        """Impurity importances (trees), mean |coefficient| (logistic regression), or None."""
        self._check_fitted()
        names = np.asarray(self.input_["columns"])
        if "select" in self.pipeline_.named_steps:
            sel = self.pipeline_.named_steps["select"]
            return dict(zip(names.tolist(), sel.estimator_.feature_importances_.tolist(), strict=True))
        clf = self.pipeline_.named_steps["clf"]
        if hasattr(clf, "feature_importances_"):
            values = clf.feature_importances_
        elif hasattr(clf, "coef_"):
            values = np.abs(clf.coef_).mean(axis=0)
        else:
            return None
        return dict(zip(names.tolist(), np.asarray(values, dtype=float).tolist(), strict=True))

    def selected_features(self) -> list[str]:
        self._check_fitted()
        names = np.asarray(self.input_["columns"])
        if "select" not in self.pipeline_.named_steps:
            return names.tolist()
        return names[self.pipeline_.named_steps["select"].get_support()].tolist()

    # ------------------------------------------------------------------------------- persistence
    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Tensors and metadata describing the fitted model (used by save and by ensembles)."""
        import sklearn
        import skops.io as sio

        self._check_fitted()
        blob = np.frombuffer(sio.dumps(self.pipeline_), dtype=np.uint8).copy()
        meta = {
            "kind": KIND,
            "name": self.name,
            "label": self.label,
            "classes": [str(c) for c in self.classes_],
            "input": self.input_,
            "params": {**self.get_params(), "fitted": self.best_params_},
            "log_columns": list(self.log_columns_),
            "tuning": self.tuning_,
            "sklearn_version": sklearn.__version__,
        }
        return {"skops": blob, "log_columns": np.asarray(self.log_columns_, dtype=np.int64)}, meta

    @classmethod
    def from_state(cls, tensors: dict[str, np.ndarray], meta: dict[str, Any], *, source: str = "model") -> SklearnModel:
        import skops.io as sio

        if "skops" not in tensors:
            raise ModelError(f"{source}: sklearn model file lacks its 'skops' tensor")
        data = tensors["skops"].tobytes()
        try:
            untrusted = set(sio.get_untrusted_types(data=data))
        except Exception as exc:  # skops raises several types on garbage input
            raise ModelError(f"{source}: the embedded sklearn model cannot be read ({exc})") from None
        refused = sorted(untrusted - set(TRUSTED_TYPES))
        if refused:
            raise ModelError(f"{source}: refusing to load: the file names types outside the allow-list: {refused}")
        try:
            pipeline = sio.loads(data, trusted=sorted(untrusted))
        except Exception as exc:
            raise ModelError(f"{source}: the embedded sklearn model cannot be rebuilt ({exc})") from None
        params = dict(meta.get("params") or {})
        fitted = params.pop("fitted", None)
        model = cls(
            name=params.get("name", meta.get("name", "rf")),
            top_k=params.get("top_k"),
            params=params.get("params"),
            tune=params.get("tune", True),
            log_var=params.get("log_var", True),
            random_state=params.get("random_state", 0),
        )
        model.pipeline_ = pipeline
        model.classes_ = np.asarray(meta["classes"])
        model.input_ = meta["input"]
        model.n_features_in_ = len(meta["input"]["columns"])
        model.log_columns_ = [int(i) for i in meta.get("log_columns", [])]
        model.best_params_ = fitted
        model.tuning_ = meta.get("tuning", [])
        if len(pipeline.classes_) > len(model.classes_) or pipeline.classes_.max() >= len(model.classes_):
            raise ModelError(f"{source}: the stored classes do not match the fitted pipeline")
        return model

