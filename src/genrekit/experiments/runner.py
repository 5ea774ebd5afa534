"""The runner: fit a model under an evaluation protocol, fold by fold, and score it on tracks it never saw.

``run(protocol="fault-filtered", model="svm", data="features_30_sec.csv", out="runs/svm")`` and
``run(protocol="kfold", model="shortchunk", data="../shared/data/gtzan", params={"epochs": 20})`` go the
same way: the protocol's folds are made by TRACK (:func:`genrekit.splits.protocol_folds`) before any row
or slice is cut, each fold gets a fresh model from the factory, the data source fits it on the training
tracks (tuning or early-stopping on the validation tracks) and predicts the test tracks' segments,
whose probabilities make each track's (mean log-probability, or a majority vote). Nothing from a test
side is seen before scoring.

Under hold-out protocols (``random``, ``fault-filtered``) the model file is the one fitted on the train
side; cross-validated ones (``kfold``, ``artist3``) report mean +- std over folds and ship a refit on every
track (``final_fit``) or keep every fold's model in ``fold<i>/`` (``fold_reports``), as the factory says.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import DatasetError, GenrekitError
from genrekit.experiments.factories import as_factory, factory_name
from genrekit.experiments.results import FoldResult, FoldSpec, RunResult, score_fold
from genrekit.experiments.schema import claim_run_folder, run_record, trained_on_record, write_run

__all__ = [
    "CV_PROTOCOLS",
    "HOLDOUT_PROTOCOLS",
    "as_source",
    "fit_fold",
    "permutation_importance",
    "protocol_folds",
    "run",
    "save_model",
]

HOLDOUT_PROTOCOLS = ("random", "fault-filtered")
CV_PROTOCOLS = ("kfold", "artist3", "group-kfold")

# what a fold reports about how training went, when the estimator keeps it
_FIT_INFO = {"best_epoch_": "best_epoch", "stopped_": "stopped", "train_seconds_": "train_seconds"}


def as_source(data: Any, factory: Any = None, *, progress: bool = True, **options: Any):
    """``data`` as a data source: a source as it is, a FeatureTable or LogmelData wrapped, a path opened
    by the factory (:meth:`open_data`) with ``options``."""
    import os

    from genrekit.datasets import FeatureTable
    from genrekit.experiments.data import FeatureSource, LogmelData, LogmelSource

    if isinstance(data, (str, os.PathLike)):
        opener = getattr(factory, "open_data", None)
        if opener is None:
            raise GenrekitError(f"{data}: this model factory cannot open a path; give a data source")
        return opener(data, progress=progress, **options)
    if options:
        raise GenrekitError(f"data options {', '.join(sorted(options))} apply to a path, not to a data source")
    if isinstance(data, FeatureTable):
        return FeatureSource(data)
    if isinstance(data, LogmelData):
        return LogmelSource(data)
    if all(hasattr(data, a) for a in ("track_ids", "labels", "fit", "predict", "fingerprint", "describe")):
        return data
    raise GenrekitError(f"not a data source: {type(data).__name__} (give a path, a FeatureTable or LogmelData)")


def protocol_folds(protocol: str, data, *, seed: int = 0, k: int | None = None,
                   valid_size: float | None = None) -> list[FoldSpec]:
    """The protocol's folds over the tracks of ``data``; ``valid_size`` carves a validation side out of
    each training side where the protocol has none (fault-filtered has its own)."""
    from genrekit import splits

    kw: dict[str, Any] = {}
    if valid_size is not None and protocol != "fault-filtered":
        kw["valid_size"] = valid_size
    if k:
        kw["k"] = k
    return [FoldSpec.from_fold(f) for f in splits.protocol_folds(protocol, data.track_ids, data.labels, seed=seed, **kw)]


def fit_fold(factory, data, fold: FoldSpec, *, seed: int = 0, aggregate: str = "mean_log", refit: bool = False,
             workdir: Path | None = None, progress: bool = False, keep_model: bool = True) -> FoldResult:
    """Fit a fresh model on one fold and score it on the fold's test tracks (if any).

    ``refit``: the validation tracks join training (no early stopping). Probabilities are put in the
    order of every class of ``data``, so folds and models line up even when a training side lacks one."""
    from genrekit.metrics import aggregate_tracks

    train = list(fold.train) + (list(fold.valid) if refit else [])
    valid = [] if refit else list(fold.valid)
    if not train:
        raise DatasetError(f"fold {fold.index}: no training tracks")
    model = factory(seed=seed, workdir=workdir, data=data, progress=progress)
    t0, c0 = time.time(), time.process_time()
    data.fit(model, train, valid)
    classes = [str(c) for c in np.unique(data.labels)]
    empty = np.zeros((0, len(classes)))
    r = FoldResult(fold.index, train, valid, list(fold.test), classes, np.array([]), np.array([]), empty, {},
                   model=model if keep_model else None, history=getattr(model, "history_", None) or None)
    if fold.test:
        seg_ids, seg_true, proba, model_classes = data.predict(model, fold.test)
        unknown = sorted(set(model_classes) - set(classes))
        if unknown:
            raise GenrekitError(f"fold {fold.index}: the model predicts classes {unknown} that the data lacks")
        seg_proba = np.zeros((len(seg_ids), len(classes)))
        seg_proba[:, np.searchsorted(classes, model_classes)] = proba
        r.track_ids, r.track_proba = aggregate_tracks(seg_ids, seg_proba, method=aggregate)
        label = dict(zip(np.asarray(seg_ids).astype(str), np.asarray(seg_true).astype(str), strict=True))
        r.track_true = np.array([label[t] for t in r.track_ids])
        if data.segmented:
            r.segment_ids, r.segment_true, r.segment_proba = np.asarray(seg_ids).astype(str), np.asarray(seg_true), seg_proba
    r.seconds, r.cpu_seconds = time.time() - t0, time.process_time() - c0
    info = {name: getattr(model, attr) for attr, name in _FIT_INFO.items() if hasattr(model, attr)}
    r.scores = score_fold(r, fit_info=info)
    return r


def permutation_importance(model, X: np.ndarray, y: np.ndarray, columns: Sequence[str], *,
                           n_repeats: int = 3, seed: int = 0) -> dict[str, float]:
    """Mean drop in accuracy when one column is shuffled: works for any model, on held-out rows."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y).astype(str)
    base = float(np.mean(model.predict(X) == y))
    out = {}
    for j, name in enumerate(columns):
        drops = []
        for _ in range(n_repeats):
            Xp = X.copy()
            Xp[:, j] = Xp[rng.permutation(len(Xp)), j]
            drops.append(base - float(np.mean(model.predict(Xp) == y)))
        out[str(name)] = float(np.mean(drops))
    return out


def save_model(model, path: Path, extra_meta: dict[str, Any]) -> Path:
    """Write a fitted model's file with ``extra_meta`` (trained_on, evaluation, name) in its metadata."""
    from genrekit.models.base import save_model_file

    if hasattr(model, "get_state"):
        tensors, meta = model.get_state()
        meta.update(extra_meta)
        return save_model_file(path, tensors, meta)
    return model.save(path, extra_meta=extra_meta)


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


def run(
    protocol: str,
    model: Any,
    data: Any,
    *,
    seed: int = 0,
    out: str | Path | None = None,
    params: dict[str, Any] | None = None,
    split_seed: int | None = None,
    k: int | None = None,
    valid_size: float | None = None,
    refit: bool = False,
    aggregate: str = "mean_log",
    folds: Sequence[FoldSpec] | None = None,
    final_fit: bool | None = None,
    fold_reports: bool | None = None,
    importance: bool = True,
    model_meta: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    progress: bool = True,
) -> RunResult:
    """Fit ``model`` under ``protocol`` on ``data``; write the run to ``out`` (if given); return the result.

    ``model``: a model name (tabular or deep; ``params`` go to it) or a factory
    (:mod:`~genrekit.experiments.factories`). ``data``: a data source, a FeatureTable, LogmelData, or a
    path the factory opens (feature CSV or audio for tabular models; GTZAN root, audio or image folder
    for deep ones). ``split_seed`` (default ``seed``) seeds the folds alone, so runs with different model
    seeds share folds. ``valid_size``: early-stopping share where the protocol has no valid side
    (default: the factory's). ``refit``: fit on train + valid for the full schedule, no early stopping.
    ``folds``: explicit folds instead of the protocol's (``protocol`` then only names them).
    ``final_fit`` / ``fold_reports``: see the module docstring (default: the factory's).
    ``model_meta``: extra metadata for every model file; ``extra``: extra keys for metrics.json.

    Writes ``metrics.json`` (:mod:`~genrekit.experiments.schema`), ``report.txt``, ``confusion.png``,
    ``pr_curves.png`` (+ ``curves.png``, ``importance.png``) and ``model.safetensors``; with fold
    reports each fold's own folder (``out`` itself for one fold) also holds ``slices/`` (segment level)
    and ``config.json``.
    """
    from genrekit.reports import json_safe

    t_start = time.time()
    out = claim_run_folder(out) if out is not None else None  # before any work: never a user's folder
    factory = as_factory(model, **(params or {}))
    source = as_source(data, factory, progress=progress)
    reads = getattr(factory, "reads", None)
    if reads is not None and reads != source.kind:
        raise GenrekitError(f"{factory_name(factory)} reads {reads} data, but the data source holds {source.kind}")
    name = factory_name(factory)
    split_seed = seed if split_seed is None else int(split_seed)
    if folds is None:
        vs = getattr(factory, "valid_size", None) if valid_size is None else valid_size
        folds = protocol_folds(protocol, source, seed=split_seed, k=k, valid_size=vs)
    folds = [f if isinstance(f, FoldSpec) else FoldSpec.from_fold(f) for f in folds]
    if fold_reports is None:
        fold_reports = bool(getattr(factory, "fold_reports", False))
    if final_fit is None:
        final_fit = bool(getattr(factory, "final_fit", True))
    description = {"path": str(source.source), "sha256": source.fingerprint(), "kind": source.kind, **source.describe()}
    result = RunResult(model=name, protocol=protocol, seed=seed, folds=[], data=description, split_seed=split_seed,
                       params=dict(params or {}), refit=refit, aggregate=aggregate, segment_unit=source.segment_unit,
                       extra=dict(extra or {}), out=out,
                       valid_role=getattr(factory, "valid_role", "early-stopping"))
    if source.failed:
        result.extra["failed"] = [{"path": p, "error": e} for p, e in source.failed]

    for fold in folds:
        fdir = None
        if fold_reports and out is not None:
            fdir = out if len(folds) == 1 else out / f"fold{fold.index}"
            fdir.mkdir(parents=True, exist_ok=True)
        n_train = len(fold.train) + (len(fold.valid) if refit else 0)
        _log(progress, f"{protocol} fold {fold.index}: {n_train} train / {0 if refit else len(fold.valid)} valid / "
                       f"{len(fold.test)} test tracks; {name}")
        r = fit_fold(factory, source, fold, seed=seed, aggregate=aggregate, refit=refit, workdir=fdir,
                     progress=progress)
        result.folds.append(r)
        if not result.model_kind:
            result.model_kind = getattr(r.model, "kind", type(r.model).__name__)
            got = r.model.get_params() if hasattr(r.model, "get_params") else {}
            # the estimator's own account of its parameters, plus what it does not report
            result.params = json_safe({**got, **{k: v for k, v in result.params.items() if k not in got}})
            result.extra.update(getattr(factory, "record", lambda m: {})(r.model))
        if r.scored:
            seg = f", {source.segment_unit}-level {r.scores['segment_accuracy']:.3f}" if "segment_accuracy" in r.scores else ""
            _log(progress, f"{protocol} fold {fold.index} TEST: track-level accuracy {r.scores['accuracy']:.3f}{seg} "
                           f"({r.scores['n_test_tracks']} tracks)")
        if fdir is not None:
            result.metrics = _write_fold(result, r, fdir, factory, model_meta, len(folds))

    importances = _add_model_extras(result, source, seed, importance)
    result.seconds = time.time() - t_start
    if out is None:
        result.metrics = run_record(result)
    elif fold_reports and len(folds) == 1:  # the run's folder is its one fold's, written above
        _save_run_model(result, factory, source, out, final_fit=final_fit, fold_reports=True, model_meta=model_meta)
    else:  # the folds' models and reports are in their own folders when they have them
        _save_run_model(result, factory, source, out, final_fit=final_fit, fold_reports=fold_reports,
                        model_meta=model_meta)
        own = not fold_reports
        result.metrics = write_run(out, result, history=result.folds[0].history if own else None,
                                   importances=importances if own else None)
    return result


def _config(result: RunResult, factory) -> dict[str, Any]:
    return {"model": result.model, "data": result.data.get("path"), "protocol": result.protocol,
            "params": result.params, **{k: result.extra[k] for k in ("augment",) if k in result.extra},
            **({"input": result.data["input"]} if "input" in result.data else {})}


def _trained_on(result: RunResult, r: FoldResult | None, side: str, n_folds: int,
                train: Sequence[str] = ()) -> dict[str, Any]:
    """The model file's ``trained_on`` for fold ``r`` (``None``: a refit on ``train``, every track)."""
    return trained_on_record(protocol=result.protocol, fold=r.index if r else None, n_folds=n_folds, side=side,
                             train=r.train_tracks if r else train, valid=r.valid_tracks if r else (),
                             valid_role=result.valid_role, seed=result.seed, split_seed=result.split_seed, data=result.data.get("path", ""),
                             data_sha256=result.data.get("sha256"), n_test_tracks=len(r.test_tracks) if r else 0)


def _evaluation(result: RunResult) -> dict[str, Any]:
    t = result.track_level
    ev = {"protocol": result.protocol, "level": "track", **{k: t[k] for k in ("accuracy", "accuracy_std", "macro_f1")
                                                             if k in t}}
    seg = result.segment_level
    if seg is not None:
        ev["segment_accuracy"] = seg["accuracy"]
    return ev


def _write_fold(result: RunResult, r: FoldResult, fdir: Path, factory, model_meta, n_folds: int) -> dict[str, Any]:
    """A fold's own folder: its model file, its report (track and segment level) and config.json."""
    from genrekit.reports import write_json

    one = result.fold(r.index)
    side = "train+valid" if result.refit else "train"
    path = save_model(r.model, fdir / "model.safetensors",
                      {"trained_on": _trained_on(result, r, side, n_folds), "evaluation": _evaluation(one),
                       "name": result.model, **(model_meta or {})})
    one.model_file, one.model_trained_on = path, side
    one.seconds = r.seconds
    written = write_run(fdir, one, history=r.history, segment_report=True)
    write_json(fdir / "config.json", _config(result, factory))
    return written


def _model_rows(source, model, tracks):
    """The rows of ``tracks`` as ``model`` takes them (standardised embeddings: with its own statistics)."""
    own = getattr(source, "model_arrays", None)
    return own(model, tracks) if own is not None else source.arrays(tracks, "test")


def _add_model_extras(result: RunResult, source, seed: int, importance: bool) -> dict[str, float] | None:
    """Record what the first fold's model tells beyond its scores: tuned parameters, selected features, its
    members' accuracies; return (feature tables) how much each column matters."""
    from genrekit.reports import json_safe

    first = result.folds[0]
    m = first.model
    if hasattr(m, "best_params_"):
        result.extra["tuned_params"] = [json_safe(f.model.best_params_) for f in result.folds]
    if hasattr(m, "selected_features") and getattr(m, "top_k", None):
        result.extra["selected_features"] = m.selected_features()
    if not first.test_tracks:
        return None
    if hasattr(m, "member_scores"):  # an ensemble of feature models: the table's test rows
        te = _model_rows(source, m, first.test_tracks)
        result.extra["member_accuracy_first_fold"] = m.member_scores(te.X, te.y)
        result.extra["member_accuracy_first_fold_level"] = "segment" if source.segmented else "track"
    if importance and source.kind == "features":
        te = _model_rows(source, m, first.test_tracks)
        imp = m.feature_importances() if hasattr(m, "feature_importances") else None
        if imp is None:
            cols = source.table.columns
            if len(cols) != te.X.shape[1]:  # a model reading other parts of the data (a zero-shot expert)
                cols = (getattr(m, "input_", None) or {}).get("columns") or [f"f{i}" for i in range(te.X.shape[1])]
            imp = permutation_importance(m, te.X, te.y, cols, seed=seed)
            result.extra["importance"] = "permutation (accuracy drop on the first fold's test rows)"
        else:
            result.extra["importance"] = "model's own (impurity or |coefficient|)"
        return imp
    return None


def _save_run_model(result: RunResult, factory, source, out: Path, *, final_fit: bool, fold_reports: bool,
                    model_meta: dict[str, Any] | None) -> None:
    """The run's ``model.safetensors``: one fold's model, a cross-validated run's refit on every track,
    or (fold reports) a copy of the first fold's."""
    n = len(result.folds)
    first = result.folds[0]
    path = out / "model.safetensors"
    if n == 1:
        if not fold_reports:
            side = "train+valid" if result.refit else "train"
            save_model(first.model, path, {"trained_on": _trained_on(result, first, side, n),
                                           "evaluation": _evaluation(result), "name": result.model,
                                           **(model_meta or {})})
            result.model_file, result.model_trained_on = path, side
        else:
            result.model_file, result.model_trained_on = path, "train+valid" if result.refit else "train"
        return
    if final_fit:
        everything = sorted(set(map(str, source.track_ids)))
        model = factory(seed=result.seed, workdir=None, data=source, progress=False)
        source.fit(model, everything, [])
        save_model(model, path, {"trained_on": _trained_on(result, None, "all", n, everything), "evaluation": _evaluation(result), "name": result.model,
                                 **(model_meta or {})})
        result.model_file, result.model_trained_on = path, "all"
    elif fold_reports:
        shutil.copyfile(out / f"fold{first.index}" / "model.safetensors", path)
        result.model_file, result.model_trained_on = path, "train+valid" if result.refit else "train"
