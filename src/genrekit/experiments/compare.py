"""Comparisons: several models or ensembles, one protocol, the same test tracks; a table and a chart.

:func:`compare_models` fits tabular models by name on the same folds (the runner's :func:`fit_fold`,
optionally in worker processes). :func:`compare_saved` scores saved models and ensembles: an entry is a
tabular model name, a saved model (a ``.safetensors`` file or a run folder written by ``genrekit train``),
or an ensemble ``A+B@w`` of those, whose members' track probabilities are combined with the hybrid rule
(weighted mean log-probability, the shipped model's rule). :func:`compare` picks between the two.

Saved models are never retrained, so the folds are theirs: under a k-fold protocol each run folder holds
one model per fold (``fold<i>/model.safetensors``) and fold i is scored on the tracks that the first saved
model's fold-i model never trained on; every other saved member is checked against those tracks (a
:class:`LeakageError` if it trained on one). Tabular names are fitted per fold on the tracks that the
reference model trained on, from the feature table, so they join an ensemble leak-free. Under a hold-out
protocol the test side is the protocol's, and tabular names fit on its train + valid tracks.

Every entry becomes a :class:`~genrekit.experiments.results.RunResult`; :func:`comparison_row` makes its
row (the same summary as a run's metrics.json), :func:`write_comparison` the files.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import DatasetError, GenrekitError, LeakageError, ModelError, SplitError
from genrekit.experiments.factories import INPUTS, as_factory
from genrekit.experiments.results import FoldResult, FoldSpec, RunResult, score_fold, summarise
from genrekit.experiments.runner import HOLDOUT_PROTOCOLS, as_source, fit_fold, protocol_folds

__all__ = [
    "DEFAULT_COMPARE_MODELS",
    "Member",
    "compare",
    "compare_models",
    "compare_saved",
    "comparison_markdown",
    "comparison_row",
    "is_saved_entry",
    "parse_entry",
    "write_comparison",
]

DEFAULT_COMPARE_MODELS = (
    "rf", "extratrees", "svm", "knn", "logreg", "hgb", "rf-top30",
    "mlp", "mlp-512", "mlp-512-sgd", "mlp-1024-rmsprop", "cnn1d", "ensemble", "stacking",
)


def comparison_row(result: RunResult, **extra: Any) -> dict[str, Any]:
    """One comparison row: the entry's name, the run summary (accuracy, accuracy_std, macro_f1, n_folds,
    segment_level), ``extra``, then ``fold_accuracies``."""
    scores = result.fold_scores
    return {"model": result.model, **summarise(scores, result.segmented), **extra,
            "fold_accuracies": [float(s["accuracy"]) for s in scores]}


# ------------------------------------------------------------------------------------- tabular names


def _fold_task(task: tuple) -> FoldResult:
    """One (model, fold) of a comparison; top-level so worker processes can run it."""
    name, source, fold, seed, aggregate = task
    return fit_fold(as_factory(name), source, fold, seed=seed, aggregate=aggregate, keep_model=False)


def compare_models(
    model_names: Sequence[str],
    data,
    protocol: str,
    out_dir: str | os.PathLike | None = None,
    seed: int = 0,
    *,
    aggregate: str = "mean_log",
    k: int | None = None,
    image_root: str | os.PathLike | None = None,
    input: str = "features",
    layer: str = "penultimate",
    standardise: str = "none",
    jobs: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Score several tabular models under one protocol on the same folds; write comparison.json/.md/.png.

    ``input="musicnn"``: the models learn from per-track mean musicnn ``layer`` vectors of ``data``
    (audio folders, a GTZAN root or an ``.npz`` table; :class:`~genrekit.experiments.data.EmbeddingSource`,
    ``standardise="domain"`` fitted on each fold's training tracks) instead of GTZAN features.
    ``jobs`` > 1 runs (model, fold) pairs in that many worker processes (each single-threaded).
    Returns ``{"protocol": P, "protocol_description", "level": "track", "input": {"type", ...},
    "results": [{"model", "accuracy", "accuracy_std", "macro_f1", ...}, ...]}`` in the order given;
    ``seconds`` per model is summed over its folds.
    """
    from genrekit import __version__, splits
    from genrekit.run.engines import run_local, safe_start_method
    from genrekit.run.items import ItemError

    entries = {e: parse_entry(e) if _is_blend(e) else [] for e in model_names}
    if any(m.path is not None for ms in entries.values() for m in ms):
        raise GenrekitError("compare_models blends model names only; saved members go to compare()")
    # every name fitted per fold once, however many blends it is a member of
    model_names = list(dict.fromkeys(n for e, ms in entries.items() for n in ([m.name for m in ms] if ms else [e])))
    factories = [as_factory(name) for name in model_names]  # fail fast on a typo, before minutes of fitting
    if any(f.reads != "features" for f in factories):
        raise GenrekitError("compare fits tabular models by name; name deep models as saved run folders")
    if input not in INPUTS:
        raise GenrekitError(f"unknown input {input!r}: use {', '.join(repr(i) for i in INPUTS)}")
    if input != "features" and image_root is not None:
        raise GenrekitError(f"image features are GTZAN-feature columns; they do not apply to {input} input")
    options: dict[str, Any] = {}
    if isinstance(data, (str, os.PathLike)):
        if image_root is not None:
            options["image_root"] = image_root
        if input != "features":
            options.update(input=input, layer=layer, standardise=standardise, jobs=jobs)
    source = as_source(data, factories[0], progress=progress, **options)
    folds = protocol_folds(protocol, source, seed=seed, k=k)
    t0 = time.time()
    tasks = [(name, source, fold, seed, aggregate) for name in model_names for fold in folds]
    jobs = max(1, min(int(jobs), len(tasks)))
    done: dict[str, dict[int, FoldResult]] = {name: {} for name in model_names}
    for task, r in run_local(_fold_task, tasks, jobs=jobs, progress=progress, desc=f"compare [{protocol}]",
                             start_method=safe_start_method()):
        if isinstance(r, ItemError):
            raise GenrekitError(f"compare: {task[0]} on {protocol} fold {task[2].index}: {r}")
        done[task[0]][r.index] = r
    rows = []
    for entry, members in entries.items():
        names = [m.name for m in members] or [entry]
        parts = ([_blend_fold(entry, [done[n][f.index] for n in names], [m.weight for m in members]) for f in folds]
                 if members else [done[entry][f.index] for f in folds])
        result = RunResult(model=entry, protocol=protocol, seed=seed, folds=parts, data={})
        row = comparison_row(
            result, seconds=round(sum(done[n][f.index].seconds for n in set(names) for f in folds), 2),
            # CPU time of the fits themselves: less disturbed than wall time on a shared machine
            cpu_seconds=round(sum(done[n][f.index].cpu_seconds for n in set(names) for f in folds), 2))
        if members:
            row = {"model": entry, "members": [{"member": m.spec, "weight": m.weight} for m in members], **row}
        rows.append(row)
    result = {
        "protocol": protocol,
        "protocol_description": splits.PROTOCOL_DESCRIPTIONS.get(protocol, protocol),
        "level": "track",
        "input": input_record(source),
        "data": str(source.source),
        "data_sha256": source.fingerprint(),
        "n_tracks": int(np.unique(source.track_ids).size),
        "columns": len(source.table.columns),
        "seed": seed,
        "jobs": jobs,
        "genrekit_version": __version__,
        "seconds": round(time.time() - t0, 2),
        "cpu_seconds": round(sum(r["cpu_seconds"] for r in rows), 2),
        "results": rows,
    }
    if input in ("mn04", "musicnn+mn04") and source.failed:  # files left out (e.g. image-only GTZAN tracks)
        result["failed"] = [{"path": p, "error": e} for p, e in source.failed]
    if out_dir is not None:
        write_comparison(out_dir, result)
    return result


def _is_blend(entry: str) -> bool:
    return "+" in entry or "@" in entry


def names_only(entry: str) -> bool:
    """True when ``entry`` is model names only (``logreg``, ``logreg@0.25+zeroshot-audioset@0.75``): a blend
    of names is fitted per fold by :func:`compare_models` on a network input, like a single name."""
    try:
        return all(m.path is None for m in parse_entry(entry))
    except GenrekitError:
        return False


def _blend_fold(entry: str, parts: list[FoldResult], weights: list[float]) -> FoldResult:
    """One fold of a blend of names: its members' track probabilities (the same fold, the same test
    tracks) combined by the weighted mean log-probability, scored as a fold of its own."""
    from genrekit.metrics import mean_log_proba

    first = parts[0]
    for p in parts[1:]:
        if list(p.track_ids) != list(first.track_ids) or list(p.classes) != list(first.classes):
            raise GenrekitError(f"{entry!r}: fold {first.index}: members scored different tracks or classes")
    both = mean_log_proba([p.track_proba for p in parts], weights)
    r = FoldResult(first.index, first.train_tracks, first.valid_tracks, first.test_tracks, list(first.classes),
                   first.track_ids, first.track_true, both, {})
    r.scores = score_fold(r)
    return r


def input_record(source) -> dict[str, Any]:
    """What the compared models learned from: GTZAN feature columns, or musicnn embeddings (layer,
    standardisation, tracks per source domain)."""
    desc = source.describe()
    if "musicnn" in desc:
        return {"type": "musicnn", **desc["musicnn"]}
    if "network" in desc:  # mn04 or musicnn+mn04 means
        return {"type": desc["network"]["input"], **desc["network"]}
    return {"type": "features", "n_columns": len(desc.get("columns", [])),
            **({"image_features": True} if "image_features" in desc else {})}


def input_label(record: dict[str, Any] | None) -> str:
    """A comparison's input in words, for its table and chart (empty for older comparison files)."""
    if not record:
        return ""
    if record.get("type") == "musicnn":
        doms = ", ".join(f"{n} {d}" for d, n in sorted((record.get("domains") or {}).items()))
        std = "domain-standardised" if record.get("standardise") == "domain" else "not standardised"
        return f"musicnn {record.get('layer', 'penultimate')} embeddings (per-track mean, {std}; {doms})"
    if record.get("type") in ("mn04", "musicnn+mn04"):
        left = f"; {record['left_out']} files left out" if record.get("left_out") else ""
        return f"{' + '.join(record.get('parts') or [record['type']])} (per-track means of audio{left})"
    return f"GTZAN features ({record.get('n_columns', '?')} columns{', + image bands' if record.get('image_features') else ''})"


# ------------------------------------------------------------------------------------- saved models


@dataclass(frozen=True)
class Member:
    """One member of an entry: a saved model (``path``) or a tabular model name, with its weight."""

    spec: str
    path: Path | None
    name: str | None
    weight: float


def _is_tabular(name: str) -> bool:
    from genrekit.experiments.data import ZERO_SHOT_MAPS
    from genrekit.models.registry import make_model

    if name in ZERO_SHOT_MAPS:  # an untrained expert, fitted (checked) per fold like a tabular name
        return True
    try:
        make_model(name, family="tabular")
    except ModelError:
        return False
    return True


def parse_entry(entry: str) -> list[Member]:
    """``"runs/cnn+logreg@0.25"`` -> members; weights default to 1 (they are normalised when combined)."""
    members = []
    for part in entry.split("+"):
        part = part.strip()
        spec, _, w = part.rpartition("@") if "@" in part and not Path(part).expanduser().exists() else (part, "", "1")
        if not spec:
            raise GenrekitError(f"{entry!r}: an empty member (write A+B, or A@0.75+B@0.25)")
        try:
            weight = float(w)
        except ValueError:
            raise GenrekitError(f"{entry!r}: weight {w!r} of {spec!r} is not a number") from None
        if not np.isfinite(weight) or weight < 0:
            raise GenrekitError(f"{entry!r}: weight {w!r} of {spec!r} must be a non-negative number")
        path = Path(spec).expanduser()
        if path.exists():
            members.append(Member(spec, path, None, weight))
        elif _is_tabular(spec):
            members.append(Member(spec, None, spec, weight))
        else:
            raise GenrekitError(f"{spec!r} is neither a tabular model name nor an existing model file or run "
                                "folder")
    if sum(m.weight for m in members) <= 0:
        raise GenrekitError(f"{entry!r}: the weights are all zero")
    return members


def is_saved_entry(entry: str) -> bool:
    """True when an entry needs :func:`compare_saved` (an ensemble, a weight, or a path)."""
    return "+" in entry or "@" in entry or not _is_tabular(entry.strip())


def _fold_files(path: Path, kfold: bool) -> list[Path]:
    """A saved member's model file per fold: a run folder's ``fold<i>/`` under k-fold, else one file."""
    if path.is_file():
        if kfold:
            raise SplitError(f"{path}: one model file, but a k-fold comparison needs a run folder with one model "
                             "per fold (genrekit train --protocol kfold --out DIR)")
        return [path]
    if kfold:
        folds = sorted((d for d in path.glob("fold*") if d.name[4:].isdigit() and (d / "model.safetensors").is_file()),
                       key=lambda d: int(d.name[4:]))
        if not folds:
            raise SplitError(f"{path}: no fold<i>/model.safetensors. Deep k-fold runs keep one model per fold; a "
                             "tabular k-fold run keeps only its refit on every track, so name the tabular model "
                             "(e.g. logreg) and compare fits it per fold")
        if [int(d.name[4:]) for d in folds] != list(range(len(folds))):
            raise SplitError(f"{path}: fold folders {[d.name for d in folds]} are not fold0..fold{len(folds) - 1}")
        return [d / "model.safetensors" for d in folds]
    if not (path / "model.safetensors").is_file():
        raise DatasetError(f"{path}: no model.safetensors in this folder")
    return [path / "model.safetensors"]


def compare_saved(
    entries: list[str],
    data: str | os.PathLike,
    protocol: str,
    out_dir: str | os.PathLike | None = None,
    seed: int = 0,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Score each entry (see the module docstring) on the same test tracks; write comparison.json/.md/.png.

    Returns the same shape as :func:`compare_models`: ``{"protocol", "level": "track", "results":
    [{"model", "accuracy", "accuracy_std", "macro_f1", "n_folds", "fold_accuracies", ...}]}``, plus
    ``folds_from`` (the saved model whose folds everything is scored on).
    """
    from tqdm.auto import tqdm

    from genrekit import __version__, datasets, splits
    from genrekit.experiments.data import FeatureSource
    from genrekit.experiments.scoring import (
        classifier_trained_tracks,
        model_meta,
        score_tracks,
        track_sources,
    )
    from genrekit.metrics import mean_log_proba
    from genrekit.predict import GenreClassifier

    t0 = time.time()
    parsed = {e: parse_entry(e) for e in entries}
    saved = list(dict.fromkeys(m.path for ms in parsed.values() for m in ms if m.path is not None))
    tabular = list(dict.fromkeys(m.name for ms in parsed.values() for m in ms if m.name is not None))
    kfold = protocol not in HOLDOUT_PROTOCOLS
    files = {p: _fold_files(p, kfold) for p in saved}
    clfs = {(p, i): GenreClassifier.load(f) for p in saved for i, f in enumerate(files[p])}
    if kfold and not saved:
        raise SplitError("a k-fold comparison of ensembles takes its folds from a saved run: name one")
    n_folds = len(files[saved[0]]) if saved else 1
    for p in saved:
        if len(files[p]) != n_folds:
            raise SplitError(f"{p} has {len(files[p])} fold models, {saved[0]} has {n_folds}: not the same folds")
        for i in range(n_folds):
            rec = model_meta(clfs[(p, i)]).get("trained_on") or {}
            if kfold and isinstance(rec, dict) and rec.get("protocol") not in (None, protocol):
                raise SplitError(f"{files[p][i]} was trained under protocol {rec['protocol']}, not {protocol}")

    # every source the members read, and the tracks all of them can read
    found: dict[str, dict] = {}
    for key in {c.input["type"] for c in clfs.values()} | ({"features"} if tabular else set()):
        found[key] = track_sources(data, key)
    universe = set.intersection(*(set(f) for f in found.values())) if found else set()
    if not universe:
        raise DatasetError(f"{data}: no track can be read by every member "
                           f"({', '.join(f'{k}: {len(v)} tracks' for k, v in found.items())})")
    label = {t: lab for f in found.values() for t, (lab, _, _) in f.items()}

    # the folds: (tracks the tabular members fit on, test tracks)
    if kfold:
        seen = [classifier_trained_tracks(clfs[(saved[0], i)]) for i in range(n_folds)]
        if not all(seen):
            raise SplitError(f"{saved[0]}: its fold models do not record their training tracks; cannot tell "
                             "their test tracks apart")
        tests = [sorted(universe - s) for s in seen]
        counts = Counter(t for te in tests for t in te)
        outside = {t for t, c in counts.items() if c > 1}  # tracks the runs never saw: in no fold's test side
        folds = [(seen[i], [t for t in tests[i] if t not in outside]) for i in range(n_folds)]
    else:
        tids = np.array(sorted(universe))
        split = splits.protocol_folds(protocol, tids, np.array([label[t] for t in tids]), seed=seed)[0]
        folds = [(set(map(str, split.train)) | set(map(str, split.valid)), sorted(map(str, split.test)))]
        outside = set()
    for p in saved:
        for i, (_, test) in enumerate(folds):
            leak = classifier_trained_tracks(clfs[(p, i)]).intersection(test)
            if leak:
                raise LeakageError(
                    f"{files[p][i]} trained on {len(leak)} of fold {i}'s test tracks (e.g. {sorted(leak)[0]}): its "
                    f"folds differ from {saved[0]}'s; train the runs with the same --split-seed and fold count")

    table = None
    if tabular:
        csv = Path(data) if Path(data).suffix.lower() == ".csv" else datasets.GTZAN(data).feature_csv()
        if csv is None:
            raise DatasetError(f"{data}: tabular members need a feature table (features_30_sec.csv)")
        table = datasets.load_feature_table(csv)
        if table.is_segmented:
            raise DatasetError(f"{csv}: a segment-level table; ensembles take one row per track (30 s table)")

    # probabilities per (member, fold) on that fold's test tracks, computed once however many entries share it
    probas: dict[tuple[str, int], tuple[list[str], dict[str, np.ndarray]]] = {}
    errors: list[dict[str, str]] = []
    cost: dict[str, float] = {}  # seconds spent scoring or fitting each member, over all folds
    work = len(saved) * n_folds + len(tabular) * n_folds
    bar = tqdm(total=work, desc=f"compare [{protocol}]", disable=not progress, file=sys.stderr)
    for p in saved:
        for i, (_, test) in enumerate(folds):
            clf, t1 = clfs[(p, i)], time.time()
            scored, errs, _ = score_tracks(clf, found[clf.input["type"]], test, progress=False)
            errors += [{**e, "member": str(p), "fold": i} for e in errs]
            probas[(str(p), i)] = (list(clf.genres), scored)
            cost[str(p)] = cost.get(str(p), 0.0) + time.time() - t1
            bar.update()
    if tabular:  # the table's own id for each track the members know
        source = FeatureSource(table)
        in_table = {t: str(table.track_ids[k]) for t, k in
                    datasets.table_rows(table, universe.union(*(f for f, _ in folds))).items()}
        ours = {v: t for t, v in in_table.items()}
    for name in tabular:
        factory = as_factory(name)
        for i, (fit_tracks, test) in enumerate(folds):
            t1 = time.time()
            fold = FoldSpec(i, tuple(sorted(in_table[t] for t in fit_tracks if t in in_table)), (),
                            tuple(sorted(in_table[t] for t in test if t in in_table)))
            if not fold.train:
                raise DatasetError(f"{table.source or 'the feature table'}: none of fold {i}'s training tracks has a "
                                   "row; is it the table of this dataset?")
            r = fit_fold(factory, source, fold, seed=seed, keep_model=False)
            probas[(name, i)] = (list(r.classes), {ours[t]: p for t, p in zip(r.track_ids, r.track_proba, strict=True)})
            cost[name] = cost.get(name, 0.0) + time.time() - t1
            bar.update()
    bar.close()

    rows = []
    for entry, members in parsed.items():
        keys = [str(m.path) if m.path is not None else m.name for m in members]
        classes = probas[(keys[0], 0)][0]
        for k in keys:
            if sorted(probas[(k, 0)][0]) != sorted(classes):
                raise GenrekitError(f"{entry!r}: members disagree on their classes ({k}: {probas[(k, 0)][0]}, "
                                    f"{keys[0]}: {classes})")
        entry_folds, n = [], 0
        for i, (fit_tracks, test) in enumerate(folds):
            tracks = [t for t in test if all(t in probas[(k, i)][1] for k in keys)]
            if not tracks:
                raise DatasetError(f"{entry!r}: fold {i} has no test track that every member could read")
            mats = []
            for k in keys:
                order = [probas[(k, i)][0].index(c) for c in classes]
                mats.append(np.array([probas[(k, i)][1][t] for t in tracks])[:, order])
            both = mean_log_proba(mats, [m.weight for m in members])
            r = FoldResult(i, sorted(fit_tracks), [], list(test), list(classes), np.array(tracks),
                           np.array([label[t] for t in tracks]), both, {})
            r.scores = score_fold(r)
            entry_folds.append(r)
            n += len(tracks)
        result = RunResult(model=entry, protocol=protocol, seed=seed, folds=entry_folds, data={"path": str(data)})
        row = comparison_row(result, n_tracks=n, seconds=round(sum(cost[k] for k in set(keys)), 2))
        rows.append({"model": entry, "members": [{"member": m.spec, "weight": m.weight} for m in members], **row})
    result = {
        "protocol": protocol, "level": "track", "data": str(data), "seed": seed,
        "folds_from": str(saved[0]) if kfold else f"the {protocol} split",
        "how": ("saved models scored on the tracks their fold model never trained on; tabular names fitted per "
                "fold on the tracks that the first run's fold model trained on" if kfold else
                f"saved models scored on the {protocol} test side (leakage-checked); tabular names fitted on its "
                "train + valid sides") + "; ensembles: weighted mean log-probability of the members",
        "n_tracks": int(sum(len(te) for _, te in folds)), "tracks_outside_the_runs": len(outside),
        "errors": errors, "genrekit_version": __version__, "seconds": round(time.time() - t0, 2), "results": rows,
    }
    if out_dir is not None:
        write_comparison(out_dir, result)
    return result


def compare(
    entries: Sequence[str],
    data,
    protocol: str,
    out_dir: str | os.PathLike | None = None,
    seed: int = 0,
    *,
    aggregate: str = "mean_log",
    k: int | None = None,
    image_root: str | os.PathLike | None = None,
    input: str = "features",
    layer: str = "penultimate",
    standardise: str = "none",
    jobs: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """:func:`compare_saved` when an entry names a saved model, an ensemble or a weight, else
    :func:`compare_models` (``k``, ``image_root``, ``input``, ``layer``, ``standardise``, ``aggregate``,
    ``jobs`` apply to the latter only)."""
    entries = list(entries)
    if not entries:
        raise GenrekitError("nothing to compare: name at least one model")
    blends = input in ("mn04", "musicnn+mn04") and all(names_only(e) for e in entries)  # fitted per fold
    if any(is_saved_entry(e) for e in entries) and not blends:
        if image_root is not None or k or input != "features":
            raise GenrekitError("image features, musicnn input and the fold count apply to tabular models only "
                                "(names); saved models bring their own input and folds")
        return compare_saved(entries, data, protocol, out_dir, seed, progress=progress)
    return compare_models(entries, data, protocol, out_dir, seed, aggregate=aggregate, k=k, image_root=image_root,
                          input=input, layer=layer, standardise=standardise, jobs=jobs, progress=progress)


# ------------------------------------------------------------------------------------- outputs


def comparison_markdown(result: dict[str, Any]) -> str:
    """The comparison as a markdown table, headed by its protocol and level."""
    seg = any("segment_level" in r for r in result["results"])
    head = f"Protocol: **{result['protocol']}** ({result.get('level', 'track')}-level accuracy"
    head += ", mean +- std over folds)" if any(r.get("n_folds", 1) > 1 for r in result["results"]) else ")"
    if result.get("protocol_description"):
        head += f": {result['protocol_description']}"
    if result.get("input"):
        n = f", {result['n_tracks']} tracks" if "n_tracks" in result else ""
        head += f"\n\nInput: {input_label(result['input'])}{n}"
    lines = [head, "", "| model | accuracy | macro-F1 |" + (" segment acc. |" if seg else "") + " seconds |",
             "|---|---|---|" + ("---|" if seg else "") + "---|"]
    best = max(r["accuracy"] for r in result["results"])
    for r in result["results"]:
        acc = f"{r['accuracy']:.3f}" + (f" +- {r['accuracy_std']:.3f}" if r.get("n_folds", 1) > 1 else "")
        if r["accuracy"] == best:
            acc = f"**{acc}**"
        cells = [r["model"], acc, f"{r['macro_f1']:.3f}"]
        if seg:
            cells.append(f"{r['segment_level']['accuracy']:.3f}" if "segment_level" in r else "")
        cells.append(f"{r.get('seconds', 0):.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_comparison(out_dir: str | os.PathLike, result: dict[str, Any]) -> None:
    """comparison.json, comparison.md and a bar chart comparison.png (track-level accuracy and macro-F1)."""
    from genrekit.reports import pyplot, save_figure, write_json
    from genrekit.store import atomic_write_bytes, claim_folder

    out = claim_folder(out_dir, ours=lambda d: (d / "comparison.json").is_file())  # never a user's folder
    write_json(out / "comparison.json", result)
    atomic_write_bytes(out / "comparison.md", comparison_markdown(result).encode())
    plt = pyplot()
    rows = result["results"]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(rows) + 2), 4.5))
    x = np.arange(len(rows))
    ax.bar(x, [r["accuracy"] for r in rows], yerr=[r.get("accuracy_std", 0) for r in rows], capsize=3,
           color="tab:blue", label="accuracy")
    ax.plot(x, [r["macro_f1"] for r in rows], "o", color="tab:orange", label="macro-F1")
    ax.set_xticks(x, [r["model"] for r in rows], rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("track-level score")
    ax.legend(fontsize=8)
    title = f"model comparison, protocol {result['protocol']} (track-level)"
    if result.get("input"):
        title += f"\ninput: {input_label(result['input'])}"
    ax.set_title(title, fontsize=9)
    save_figure(fig, out / "comparison.png")
