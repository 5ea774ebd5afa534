"""Compare saved models and ensembles of deep and tabular models on the same test tracks.

``genrekit compare --data GTZAN_ROOT --protocol kfold --models RUN,RUN+logreg@0.25,svm`` scores every
entry on one set of folds. An entry is a tabular model name, a saved model (a ``.safetensors`` file or a
run folder written by ``genrekit train``), or an ensemble ``A+B@w`` of those: its members' track
probabilities are combined with the hybrid rule (weighted mean log-probability, the shipped model's rule).

Saved models are never retrained here, so the folds are theirs: under a k-fold protocol each run folder
holds one model per fold (``fold<i>/model.safetensors``) and fold i is scored on the tracks that the first
saved model's fold-i model never trained on; every other saved member is checked against those tracks
(a :class:`LeakageError` if it trained on one). Tabular names are fitted per fold on the tracks that the
reference model trained on, from the feature table, so they join an ensemble leak-free. Under a hold-out
protocol the test side is the protocol's, and tabular names fit on its train + valid tracks.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import DatasetError, GenrekitError, LeakageError, SplitError

__all__ = ["compare_saved", "is_saved_entry", "parse_entry"]


@dataclass(frozen=True)
class Member:
    """One member of an entry: a saved model (``path``) or a tabular model name, with its weight."""

    spec: str
    path: Path | None
    name: str | None
    weight: float


def _is_tabular(name: str) -> bool:
    from genrekit.models.tabular import make_model

    try:
        make_model(name)
    except GenrekitError:
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

    Returns the same shape as :func:`genrekit.train.compare_run`: ``{"protocol", "level": "track",
    "results": [{"model", "accuracy", "accuracy_std", "macro_f1", "n_folds", "fold_accuracies", ...}]}``,
    plus ``folds_from`` (the saved model whose folds everything is scored on).
    """
    from tqdm.auto import tqdm

    from genrekit import __version__, datasets, splits
    from genrekit.evaluate import (
        classification_metrics,
        model_meta,
        score_tracks,
        track_sources,
        trained_tracks,
    )
    from genrekit.models.hybrid import combine_probas
    from genrekit.predict import GenreClassifier
    from genrekit.train import HOLDOUT_PROTOCOLS, _fit_fold, _summary, write_comparison

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
        seen = [trained_tracks(clfs[(saved[0], i)]) for i in range(n_folds)]
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
            leak = trained_tracks(clfs[(p, i)]).intersection(test)
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
        in_table = {t: str(table.track_ids[k]) for t, k in
                    datasets.table_rows(table, universe.union(*(f for f, _ in folds))).items()}
        ours = {v: t for t, v in in_table.items()}
    for name in tabular:
        for i, (fit_tracks, test) in enumerate(folds):
            t1 = time.time()
            fold = splits.Fold(protocol, i, np.array(sorted(in_table[t] for t in fit_tracks if t in in_table)),
                               np.array([], dtype=str), np.array(sorted(in_table[t] for t in test if t in in_table)))
            if not len(fold.train):
                raise DatasetError(f"{table.source or 'the feature table'}: none of fold {i}'s training tracks has a "
                                   "row; is it the table of this dataset?")
            r = _fit_fold(name, table, fold, seed=seed, params={}, aggregate="mean_log")
            probas[(name, i)] = (list(map(str, r["classes"])),
                                 {ours[t]: p for t, p in zip(r["track_ids"], r["track_proba"], strict=True)})
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
        scores, n = [], 0
        for i, (_, test) in enumerate(folds):
            tracks = [t for t in test if all(t in probas[(k, i)][1] for k in keys)]
            if not tracks:
                raise DatasetError(f"{entry!r}: fold {i} has no test track that every member could read")
            mats = []
            for k in keys:
                order = [probas[(k, i)][0].index(c) for c in classes]
                mats.append(np.array([probas[(k, i)][1][t] for t in tracks])[:, order])
            both = combine_probas(mats, [m.weight for m in members])
            truth = [label[t] for t in tracks]
            scores.append(classification_metrics(truth, [classes[j] for j in both.argmax(1)], classes))
            n += len(tracks)
        rows.append({
            "model": entry, "members": [{"member": m.spec, "weight": m.weight} for m in members],
            **_summary(scores, False), "n_tracks": n, "fold_accuracies": [float(s["accuracy"]) for s in scores],
            "seconds": round(sum(cost[k] for k in set(keys)), 2),
        })
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
