"""The one registry of models: every model NAME (what ``--model`` takes) and every file KIND.

* Names: ``make_model("svm")``, ``make_model("mlp-512-sgd")``, ``make_model("shortchunk", epochs=5)``
  build an unfitted estimator; :func:`model_names` lists them (``"tabular"``: feature-vector models,
  ``"deep"``: log-mel CNNs). ``<classic>-top<k>`` (e.g. ``svm-top20``) adds Random-Forest top-k feature
  selection to any classic model.
* Kinds: a model file stores its ``kind``; :data:`KINDS` maps it to the class that reads it, and
  :func:`load_model` rebuilds any genrekit model file from it.

Classes are named here as ``"module:Class"`` strings and imported only when needed, so ``import
genrekit.models`` stays fast (no torch, no scikit-learn) and this module imports no combinator
(ensemble, hybrid): they import it, never the other way round.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genrekit.errors import ModelError
from genrekit.models.base import load_model_file
from genrekit.models.classic import NAMES as CLASSIC_NAMES
from genrekit.models.deep import ARCHS as DEEP_ARCHS
from genrekit.models.mlp import ARCHS as MLP_ARCHS

__all__ = [
    "ENSEMBLE_MEMBERS",
    "BACKENDS",
    "KINDS",
    "STACKING_MEMBERS",
    "load",
    "load_model",
    "FAMILIES",
    "make_model",
    "model_class",
    "model_names",
    "register_kind",
    "tabular_member",
]

# --------------------------------------------------------------------------------------- file kinds
# kind (stored in the file) -> "module:Class"; each class has classmethod load(path) and method save(path).
KINDS: dict[str, str] = {
    "sklearn": "genrekit.models.classic:SklearnModel",  # RF, ExtraTrees, SVM, kNN, LR, HGB (+ scaler/selection)
    "mlp": "genrekit.models.mlp:MLPModel",  # torch MLP on feature vectors
    "cnn1d": "genrekit.models.mlp:CNN1DModel",  # 1-D CNN over the feature vector
    "ensemble": "genrekit.models.ensemble:EnsembleModel",  # soft voting / stacking over other models
    "deep": "genrekit.models.deep:DeepModel",  # CNN / ResNet on log-mel slices
    "hybrid": "genrekit.models.hybrid:HybridModel",  # product of experts over members with different inputs
    "linear": "genrekit.models.linear:LinearModel",  # numpy-only logistic regression (fast to load and serve)
    "zero-shot": "genrekit.models.ears:ZeroShotModel",  # untrained expert: named tags / classes -> classes
}


def register_kind(kind: str, target: str) -> None:
    """Register a file ``kind`` read by ``"module:Class"``, so :func:`load_model` can rebuild it."""
    if ":" not in target:
        raise ModelError(f"register_kind: target must be 'module:Class', got {target!r}")
    KINDS[kind] = target


def model_class(kind: str, *, source: str | os.PathLike = "model") -> type:
    """The estimator class that reads files of ``kind`` (imported now, not at start-up)."""
    if kind not in KINDS:
        raise ModelError(f"{source}: unknown model kind {kind!r} (known: {', '.join(sorted(KINDS))})")
    module, cls = KINDS[kind].split(":")
    return getattr(importlib.import_module(module), cls)


BACKENDS = ("torch", "onnx")  # how deep nets run: PyTorch (the reference) or onnxruntime (no torch)


def load(path: str | os.PathLike, *, backend: str = "torch", threads: int = 1):
    """THE model loader: any genrekit model file, rebuilt from its ``kind``, verified on the way.

    ``backend="torch"`` runs deep nets in PyTorch; ``backend="onnx"`` runs them (a hybrid's deep members
    too) on onnxruntime from graphs built from their tensors (:class:`genrekit.models.runtime.OnnxModel`,
    no torch import) and also reads the ``.onnx`` files ``genrekit export`` writes. Other models are
    numpy / scikit-learn on either backend. ``threads``: onnxruntime's intra-op threads."""
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")

    def member(f: Path):  # a hybrid's or an exported graph's member file: same backend
        return load(f, backend=backend, threads=threads)

    if backend == "onnx" and path.suffix.lower() == ".onnx":
        from genrekit.models.runtime import load_exported

        main, hybrid = load_exported(path, member, threads=threads)
        if hybrid is None:
            return main
        model = model_class("hybrid")(hybrid["members"], weights=hybrid["weights"]).fit()
        model.meta_ = hybrid["meta"]
        return model
    tensors, meta = load_model_file(path)
    check_model_meta(meta, source=path)
    kind = meta["kind"]
    if kind == "hybrid":  # members load through this same function (the class is named in KINDS, not imported)
        return model_class(kind, source=path).from_file_parts(path, tensors, meta, member)
    if kind == "deep" and backend == "onnx":
        from genrekit.models.deep import check_deep_meta
        from genrekit.models.runtime import OnnxModel

        check_deep_meta(meta, source=path)
        return OnnxModel.from_deep_file(path, tensors, meta, threads=threads)
    return model_class(kind, source=path).load(path)


def load_model(path: str | os.PathLike):
    """Load any genrekit model file on the torch backend (:func:`load`'s default)."""
    return load(path)


def check_model_meta(meta: dict, *, source: str | os.PathLike = "model") -> None:
    """What every loader checks first, whatever runs the model (this registry, the ONNX loader)."""
    for key in ("classes", "input"):
        if key not in meta:
            raise ModelError(f"{source}: model metadata lacks {key!r} (every genrekit model names its classes and input)")


# -------------------------------------------------------------------------------------- model names
# The members of the default ensembles: the models that do best on the fault-filtered split and
# make different kinds of mistakes (linear, kernel, boosted trees, neural).
ENSEMBLE_MEMBERS = ("logreg", "svm", "hgb", "mlp")
# Stacking refits its members on inner folds (cv + 1 fits each): the three cheapest strong ones.
STACKING_MEMBERS = ("logreg", "svm", "hgb")

# tabular name -> (file kind, constructor parameters); the order is the order users see.
_TABULAR: dict[str, tuple[str, dict[str, Any]]] = {
    **{name: ("sklearn", {"name": name}) for name in CLASSIC_NAMES},
    "rf-top30": ("sklearn", {"name": "rf", "top_k": 30}),
    "mlp": ("mlp", {"arch": "256"}),
    "mlp-512": ("mlp", {"arch": "512"}),
    "mlp-512-sgd": ("mlp", {"arch": "512-sgd"}),
    "mlp-1024-rmsprop": ("mlp", {"arch": "1024-rmsprop"}),
    "cnn1d": ("cnn1d", {}),
    "ensemble": ("ensemble", {"method": "soft"}),
    "stacking": ("ensemble", {"method": "stacking"}),
}
assert {p["arch"] for k, p in _TABULAR.values() if k == "mlp"} == set(MLP_ARCHS), "an MLP arch without a name"


FAMILIES = ("tabular", "deep")


def model_names(family: str | None = None) -> tuple[str, ...]:
    """Every model name :func:`make_model` builds: ``family="tabular"`` (feature vectors), ``"deep"``
    (log-mel CNNs) or both (``None``). ``<classic>-top<k>`` names are built too but not listed."""
    if family is not None and family not in FAMILIES:
        raise ModelError(f"unknown model family {family!r}: use one of {', '.join(FAMILIES)} or None")
    tabular = tuple(_TABULAR) if family in (None, "tabular") else ()
    deep = tuple(DEEP_ARCHS) if family in (None, "deep") else ()
    return tabular + deep


def _top_k(name: str) -> tuple[str, dict[str, Any]] | None:
    """``svm-top20`` -> the classic model ``svm`` with top-20 feature selection; None otherwise."""
    base, sep, k = name.rpartition("-top")
    if sep and k.isdigit() and base in CLASSIC_NAMES:
        return "sklearn", {"name": base, "top_k": int(k)}
    return None


def make_model(name: str, *, family: str | None = None, random_state: int = 0, **params):
    """Build an unfitted estimator by its name (e.g. ``svm``, ``mlp-512-sgd``, ``ensemble``, ``shortchunk``).

    ``family`` (``"tabular"`` or ``"deep"``) refuses names of the other family; ``params`` go to the
    estimator's constructor; ``random_state`` seeds it (a deep model's ``seed``). Ensembles build their
    members with this same function (tabular names only) unless given their own ``factory``.
    """
    names = model_names(family)
    spec = (_TABULAR.get(name) or _top_k(name)) if family != "deep" else None
    if name not in names and spec is None:
        hint = " (or e.g. svm-top20)" if family != "deep" else ""
        raise ModelError(f"unknown model {name!r}; choose one of {', '.join(names)}{hint}")
    if spec is None:  # a deep architecture
        return model_class("deep")(name, **{"seed": random_state, **params})
    kind, fixed = spec
    cls: Callable[..., Any] = model_class(kind)
    if kind == "sklearn":
        return cls(random_state=random_state, **{**fixed, **params})
    if kind == "ensemble":
        method = fixed["method"]
        members = params.pop("members", STACKING_MEMBERS if method == "stacking" else ENSEMBLE_MEMBERS)
        return cls(members=tuple(members), method=method, random_state=random_state, factory=tabular_member, **params)
    return cls(**fixed, random_state=random_state, **params)


def tabular_member(name: str, *, random_state: int = 0):
    """The default member factory of ensembles: a tabular model by name (an ensemble takes feature rows)."""
    return make_model(name, family="tabular", random_state=random_state)
