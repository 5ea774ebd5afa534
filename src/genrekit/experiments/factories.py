"""Model factories: how a run builds a fresh estimator for each fold, and which data it reads.

A factory is called once per fold as ``factory(seed=, workdir=, data=, progress=)`` and returns an
UNFITTED estimator; the runner fits it through the data source. Besides the call, a factory says

* ``reads`` -- the data kind it takes (``"features"``, ``"logmel"``, ``"hybrid"``), and
  :meth:`open_data` -- how to open a path as that kind of :mod:`~genrekit.experiments.data` source;
* ``valid_size`` -- the share of training tracks carved out for early stopping where the protocol has
  no validation side (``None``: none; deep models early-stop, so 0.15), and ``valid_role`` -- what the
  validation side does: ``"early-stopping"`` (it picks the kept weights, so the model file counts those
  tracks as seen) or ``"tuning"`` (it only chooses hyperparameters);
* ``fold_reports`` -- whether each fold keeps its own model file and report (``fold<i>/``: deep runs,
  which take long, are resumable and are ensembled per fold later) and ``final_fit`` -- whether a
  cross-validated run refits on every track for the model file it ships (tabular runs: seconds).

:func:`as_factory` turns a model name into its factory; any callable with that signature works too.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genrekit.errors import DatasetError, GenrekitError, ModelError

__all__ = ["DeepFactory", "HybridFactory", "TabularFactory", "ZeroShotFactory", "as_factory", "factory_name",
           "member_part"]

INPUTS = ("features", "musicnn", "mn04", "musicnn+mn04")  # what a tabular model learns from


class TabularFactory:
    """A feature-vector model by its registry name (``svm``, ``mlp-512-sgd``, ``ensemble``, ``svm-top20``)."""

    reads = "features"
    valid_size: float | None = None
    valid_role = "tuning"  # the validation side chooses hyperparameters; weights come from the train side
    fold_reports = False
    final_fit = True

    def __init__(self, name: str, *, input: str = "features", layer: str = "penultimate", standardise: str = "none",
                 **params: Any):
        """``params`` go to the model; ``input`` (:data:`INPUTS`) is what :meth:`open_data` opens a
        path as by default, and what a hybrid feeds this member (``layer`` / ``standardise``: musicnn's)."""
        from genrekit.models.registry import make_model

        make_model(name, family="tabular", **params)  # a typo fails here, before any fitting
        self._check_input(input, layer, standardise)
        self.name = name
        self.params = dict(params)
        self.input = input
        self.data_options = {"layer": layer, "standardise": standardise} if input == "musicnn" else {}
        if input in ("mn04", "musicnn+mn04"):
            self.data_options = {"input": input, "layer": layer}

    @staticmethod
    def _check_input(input: str, layer: str, standardise: str) -> None:
        from genrekit.experiments.data import EMBEDDING_LAYERS, STANDARDISE_MODES

        if input not in INPUTS:
            raise DatasetError(f"unknown model input {input!r}: use {', '.join(repr(i) for i in INPUTS)}")
        if layer not in EMBEDDING_LAYERS or standardise not in STANDARDISE_MODES:
            raise DatasetError(f"musicnn layer {layer!r} / standardisation {standardise!r}: choose from "
                               f"{', '.join(EMBEDDING_LAYERS)} / {', '.join(STANDARDISE_MODES)}")

    @property
    def label(self) -> str:
        """The member's name in a hybrid's name: ``logreg``, or ``musicnn:logreg`` on embeddings."""
        return self.name if self.input == "features" else f"{self.input.replace('+', '-')}:{self.name}"

    @property
    def part(self) -> str:
        """Which part of a :class:`~genrekit.experiments.data.HybridSource` this member reads."""
        return "network" if self.input in ("mn04", "musicnn+mn04") else self.input

    def __call__(self, *, seed: int = 0, workdir: Path | None = None, data=None, progress: bool = False):
        from genrekit.models.registry import make_model

        return make_model(self.name, family="tabular", random_state=seed, **self.params)

    def open_data(self, path: str | os.PathLike, *, progress: bool = True, **options: Any):
        """A feature CSV or audio folders featurised on the way (``image_root=``, ``segment_seconds=``);
        with ``input="musicnn"`` (or an ``.npz`` embedding table) musicnn embeddings instead
        (:class:`~genrekit.experiments.data.EmbeddingSource`, ``layer=``); with ``"mn04"`` or
        ``"musicnn+mn04"`` per-track network means (:class:`~genrekit.experiments.data.NetworkSource`)."""
        from genrekit.experiments.data import EmbeddingSource, FeatureSource, NetworkSource

        default = self.input if self.input != "features" or not str(path).lower().endswith(".npz") else "musicnn"
        kind = options.pop("input", None) or default
        if kind == "musicnn":
            return EmbeddingSource.load(path, progress=progress, **{**self.data_options, **options})
        if kind in ("mn04", "musicnn+mn04"):
            return NetworkSource.load(path, progress=progress, **{**self.data_options, **options, "input": kind})
        if kind != "features":
            raise DatasetError(f"unknown model input {kind!r}: use {', '.join(repr(i) for i in INPUTS)}")
        return FeatureSource.load(path, progress=progress, **options)

    def record(self, model) -> dict[str, Any]:
        return {}


class ZeroShotFactory(TabularFactory):
    """An untrained expert by name (``zeroshot-audioset``: the ten same-named AudioSet classes; ``zeroshot``:
    MSD tags where musicnn has the genre, AudioSet's classes for the rest; docs/ears.md) on ``mn04`` or
    ``musicnn+mn04`` input: scored on the same folds as the heads, it learns nothing from them."""

    def __init__(self, name: str, *, input: str = "musicnn+mn04", layer: str = "penultimate",
                 standardise: str = "none", **params: Any):
        from genrekit.experiments.data import ZERO_SHOT_MAPS

        if name not in ZERO_SHOT_MAPS:
            raise ModelError(f"unknown zero-shot expert {name!r}; choose from {', '.join(ZERO_SHOT_MAPS)}")
        if params:
            raise GenrekitError(f"{name} takes no parameters (it is never trained), got {', '.join(sorted(params))}")
        self._check_input(input, layer, standardise)
        self.name, self.params, self.input = name, {}, input
        self.data_options = {"input": input, "layer": layer} if input in ("mn04", "musicnn+mn04") else {}

    @property
    def label(self) -> str:
        """Its name in a hybrid's name: it reads its own parts, whatever the input."""
        return self.name

    def __call__(self, *, seed: int = 0, workdir: Path | None = None, data=None, progress: bool = False):
        import numpy as np

        from genrekit.experiments.data import zero_shot_model

        if data is None or not hasattr(data, "parts"):
            raise DatasetError(f"{self.name} reads mn04's (and musicnn's) per-track means: use --input mn04 or "
                               "musicnn+mn04 with audio")
        return zero_shot_model(self.name, [str(c) for c in np.unique(data.labels)])


def _deep_options() -> set[str]:
    from genrekit.models.deep import DeepModel

    # the runner sets these itself, from the data source, the seed and the fold's folder
    owned = {"self", "arch", "input", "input_frames", "seed", "checkpoint_dir", "verbose"}
    return set(inspect.signature(DeepModel.__init__).parameters) - owned


def member_part(factory) -> str:
    """The part of a hybrid's data a member factory reads: ``logmel``, ``features``, ``musicnn`` or ``network``."""
    return str(getattr(factory, "part", None) or factory.reads)


class DeepFactory:
    """A log-mel CNN (``cnn``, ``resnet``, ``shortchunk`` ...) with :class:`~genrekit.models.deep.DeepModel`'s
    options (``epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``width``, ``augment``, ``patience``,
    ``device``, ``threads``, ``resume``, ``max_minutes``, ``ema``, ...); unknown options are refused."""

    reads = "logmel"
    valid_size: float | None = 0.15
    valid_role = "early-stopping"  # the kept weights are the epoch that did best on the validation side
    fold_reports = True
    final_fit = False
    # a training run's defaults where they differ from the estimator's
    DEFAULTS: dict[str, Any] = {"ema": 0.995}

    def __init__(self, arch: str, **params: Any):
        from genrekit.models.registry import model_names

        if arch not in model_names("deep"):
            raise ModelError(f"unknown deep model {arch!r}; choose one of {', '.join(model_names('deep'))}")
        unknown = sorted(set(params) - _deep_options())
        if unknown:
            raise GenrekitError(f"unknown option(s) {', '.join(unknown)} for deep model {arch!r}; known: "
                                f"{', '.join(sorted(_deep_options()))}")
        self.name = arch
        self.params = {**self.DEFAULTS, **params}

    def __call__(self, *, seed: int = 0, workdir: Path | None = None, data=None, progress: bool = False):
        from genrekit.models.deep import DeepModel

        return DeepModel(self.name, input=data.input, input_frames=data.width, seed=seed, checkpoint_dir=workdir,
                         verbose=progress, **self.params)

    def crop_frames(self) -> int:
        """Extra frames each training slice needs for the random-crop augmentation (0 without it)."""
        from genrekit.augment import AugmentConfig

        aug = AugmentConfig.parse(self.params.get("augment", "default"))
        return aug.crop_frames if aug.crop else 0

    def open_data(self, path: str | os.PathLike, *, progress: bool = True, **options: Any):
        """Log-mel data of a GTZAN root, audio or image folder (``source=``, slice settings: see
        :class:`~genrekit.experiments.data.LogmelSource`)."""
        from genrekit.experiments.data import LogmelSource

        return LogmelSource.load(path, progress=progress, train_extra_frames=self.crop_frames(), **options)

    def record(self, model) -> dict[str, Any]:
        from genrekit.augment import AugmentConfig

        rec: dict[str, Any] = {"augment": AugmentConfig.parse(model.augment).to_dict()}
        if getattr(model, "init_from", None):  # fine-tuned: how much of the source model it kept
            rec["layers_transferred"] = int(getattr(model, "transferred_", 0))
        return rec


class HybridFactory:
    """A hybrid (product of experts) of members with different inputs, e.g. ``["shortchunk", "logreg"]``
    with ``weights=[0.75, 0.25]``: each member is fitted on its own input, then combined. A member may
    be a head on musicnn embeddings: ``TabularFactory("logreg", input="musicnn")``."""

    reads = "hybrid"
    valid_role = "early-stopping"  # its deep members pick their weights on the validation side
    final_fit = False

    def __init__(self, members: Sequence[Any], *, weights: Sequence[float] | None = None):
        if len(members) < 2:
            raise ModelError("a hybrid needs at least two members")
        self.members = [as_factory(m) for m in members]
        if any(m.reads not in ("features", "logmel") for m in self.members):
            raise ModelError("hybrid members read features or log-mel slices (a hybrid cannot be nested)")
        self.weights = None if weights is None else [float(w) for w in weights]
        self.parts = [member_part(m) for m in self.members]
        self.name = "+".join(str(getattr(m, "label", m.name)) for m in self.members)
        self.params = {"members": [str(getattr(m, "label", m.name)) for m in self.members], "weights": self.weights}
        deep = [m.valid_size for m in self.members if m.valid_size]
        self.valid_size = max(deep) if deep else None
        self.fold_reports = any(m.fold_reports for m in self.members)

    def __call__(self, *, seed: int = 0, workdir: Path | None = None, data=None, progress: bool = False):
        from genrekit.models.hybrid import HybridModel

        model = HybridModel([m(seed=seed, workdir=None, data=data.part(p), progress=progress)
                             for m, p in zip(self.members, self.parts, strict=True)], weights=self.weights)
        model.member_parts = list(self.parts)  # which part of the HybridSource each member fits on (run-time only)
        return model

    def open_data(self, path: str | os.PathLike, *, progress: bool = True, table: str | os.PathLike | None = None,
                  **options: Any):
        """The parts the members read: a GTZAN root's (or audio folders') log-mel data, its feature table
        (``table=`` another CSV) and musicnn embeddings (with the musicnn member's layer and standardisation);
        ``options`` go to the log-mel part."""
        from genrekit import datasets
        from genrekit.errors import DatasetError
        from genrekit.experiments.data import EmbeddingSource, FeatureSource, HybridSource, NetworkSource

        parts: dict[str, Any] = {}
        if "logmel" in self.parts:
            deep = self.members[self.parts.index("logmel")]
            parts["logmel"] = deep.open_data(path, progress=progress, **options)
        if "features" in self.parts:
            csv = table or datasets.GTZAN(path).feature_csv()
            if csv is None:
                raise DatasetError(f"{path}: no feature table (features_30_sec.csv) for the hybrid's feature members")
            parts["features"] = FeatureSource.load(csv, progress=progress)
        if "musicnn" in self.parts:
            heads = {tuple(sorted(m.data_options.items())) for m, p in zip(self.members, self.parts, strict=True)
                     if p == "musicnn"}
            if len(heads) > 1:
                raise DatasetError("a hybrid's musicnn members must share one layer and standardisation")
            parts["musicnn"] = EmbeddingSource.load(path, progress=progress, **dict(next(iter(heads))))
        if "network" in self.parts:  # heads on mn04 / musicnn+mn04 and zero-shot experts: one table of every part
            nets = [m for m, p in zip(self.members, self.parts, strict=True) if p == "network"]
            heads = {tuple(sorted(m.data_options.items())) for m in nets if not isinstance(m, ZeroShotFactory)}
            if len(heads) > 1:
                raise DatasetError("a hybrid's mn04 / musicnn+mn04 heads must share one --input and layer")
            opts = dict(next(iter(heads))) if heads else {"input": "musicnn+mn04", "layer": "penultimate"}
            parts["network"] = NetworkSource.load(path, progress=progress, **opts)
        return HybridSource(**parts)

    def record(self, model) -> dict[str, Any]:
        return {"member_kinds": [getattr(m, "kind", "?") for m in model.members_]}


def as_factory(model: Any, **params: Any):
    """``model`` as a factory: a registry name (tabular or deep) with ``params``, or a factory as it is."""
    if not isinstance(model, str):
        if params:
            raise GenrekitError("params go with a model name; a factory carries its own")
        if not callable(model):
            raise GenrekitError(f"model must be a name or a factory, got {type(model).__name__}")
        return model
    from genrekit.experiments.data import ZERO_SHOT_MAPS
    from genrekit.models.registry import model_names

    if model in model_names("deep"):
        return DeepFactory(model, **params)
    if model in ZERO_SHOT_MAPS:
        return ZeroShotFactory(model, **params)
    try:
        return TabularFactory(model, **params)
    except ModelError:
        raise ModelError(f"unknown model {model!r}; tabular: {', '.join(model_names('tabular'))} (or e.g. "
                         f"svm-top20); deep: {', '.join(model_names('deep'))}") from None


def factory_name(factory: Any) -> str:
    """The name a run records for ``factory``."""
    return str(getattr(factory, "name", None) or getattr(factory, "__name__", type(factory).__name__))
