"""Fitting tabular models under an evaluation protocol, and comparing several.

Splits are always made by TRACK (``splits.protocol_folds``), then mapped to rows; a segment table
(Kaggle's 3 s CSV) is scored per segment and per track (segments' probabilities combined by
``evaluate.aggregate_tracks``). The track-level figure is the headline one, since that is what a user
of the classifier gets for a song.

Under ``fault-filtered`` models fit on the train side, tune / early-stop on the valid side and are
scored on the test side; ``random`` is a stratified 80/20 hold-out; ``kfold`` and ``artist3`` report
mean +- std over folds. Nothing from a test side is seen before scoring.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import DatasetError, GenrekitError

__all__ = [
    "CV_PROTOCOLS",
    "DEFAULT_COMPARE_MODELS",
    "compare_run",
    "image_band_features",
    "join_image_features",
    "load_table",
    "permutation_importance",
    "train_run",
]

HOLDOUT_PROTOCOLS = ("random", "fault-filtered")
CV_PROTOCOLS = ("kfold", "artist3", "group-kfold")

DEFAULT_COMPARE_MODELS = (
    "rf", "extratrees", "svm", "knn", "logreg", "hgb", "rf-top30",
    "mlp", "mlp-512", "mlp-512-sgd", "mlp-1024-rmsprop", "cnn1d", "ensemble", "stacking",
)


# ---------------------------------------------------------------------------------------------- data


def _check_labels(table, source: str) -> None:
    """Checks train needs beyond what the loader does: enough classes, enough tracks per class."""
    y = np.asarray(table.y).astype(str)
    classes, counts = np.unique(y, return_counts=True)
    if classes.size < 2:
        raise DatasetError(f"{source}: only one class ({classes[0] if classes.size else 'none'}); a classifier needs at least 2")
    tids = np.asarray(table.track_ids).astype(str)
    per_class_tracks = {c: np.unique(tids[y == c]).size for c in classes}
    few = [c for c, n in per_class_tracks.items() if n < 2]
    if few:
        raise DatasetError(f"{source}: class(es) {', '.join(few)} have fewer than 2 tracks; add data or drop them")


def load_table(
    data: str | os.PathLike,
    *,
    image_root: str | os.PathLike | None = None,
    segment_seconds: float | None = None,
    progress: bool = True,
):
    """A FeatureTable from a feature CSV, or from audio files/folders featurised on the way.

    ``image_root``: a Kaggle ``images_original`` folder; per-mel-band statistics of the inverted
    images are appended to each track's row (see :func:`join_image_features`). ``segment_seconds``:
    for audio, one row per segment of that length (e.g. 3.0, like Kaggle's 3 s table).
    """
    from genrekit import datasets

    path = Path(data)
    if not path.exists():
        raise DatasetError(f"{path}: not found (give a feature CSV such as features_30_sec.csv, or audio folders)")
    if path.is_file() and path.suffix.lower() == ".csv":
        table = datasets.load_feature_table(path)
    else:
        table = _featurise_audio(path, progress=progress, segment_seconds=segment_seconds)
    _check_labels(table, str(path))
    if image_root is not None:
        table = join_image_features(table, image_root, progress=progress)
    return table


def _featurise_audio(path: Path, *, progress: bool, segment_seconds: float | None = None):
    """Compute the 57 Kaggle features for audio under ``path`` through the feature cache."""
    from genrekit import datasets

    try:
        from genrekit import features
    except ImportError:
        features = None
    build = getattr(features, "feature_table", None) if features is not None else None
    if build is None:
        raise DatasetError(
            f"{path}: is not a .csv feature table, and this genrekit cannot featurise audio yet "
            "(genrekit.features.feature_table is missing); run `genrekit features` first and pass the CSV"
        )
    tracks = datasets.scan_audio([path])
    if not tracks:
        raise DatasetError(f"{path}: no audio files found (and not a .csv feature table)")
    unlabelled = [t for t in tracks if not t.label]
    if unlabelled:
        raise DatasetError(
            f"{unlabelled[0].path}: no genre label ({len(unlabelled)} file(s)); training needs GTZAN-style names "
            "(blues.00012.wav) or one folder per genre"
        )
    table = build(tracks, progress=progress, segment_seconds=segment_seconds)
    table.source = str(path)
    if segment_seconds:
        table.extra["segment_seconds"] = float(segment_seconds)
    return table


def image_band_features(levels: np.ndarray, *, n_bands: int = 32) -> np.ndarray:
    """Per-mel-band mean and standard deviation of an inverted spectrogram, pooled to ``n_bands`` bands.

    Pooling the 128 mel rows into 32 bands keeps the row short (64 numbers) for ~450 training tracks.
    """
    levels = np.asarray(levels, dtype=np.float64)
    if levels.ndim != 2 or levels.shape[0] % n_bands:
        raise GenrekitError(f"expected [n_mels, frames] with n_mels divisible by {n_bands}, got {levels.shape}")
    pooled = levels.reshape(n_bands, levels.shape[0] // n_bands, -1).mean(axis=1)
    return np.concatenate([pooled.mean(axis=1), pooled.std(axis=1)])


def image_feature_columns(n_bands: int = 32) -> list[str]:
    return [f"img_band{i:02d}_mean" for i in range(n_bands)] + [f"img_band{i:02d}_std" for i in range(n_bands)]


def join_image_features(table, image_root: str | os.PathLike, *, n_bands: int = 32, progress: bool = True):
    """Append image-derived columns to each row by track id; rows whose track has no image are dropped.

    The dropped tracks are listed in ``table.extra["image_missing"]`` (Kaggle lacks jazz00054's image).
    """
    from tqdm.auto import tqdm

    from genrekit import datasets

    try:
        from genrekit.spectrogram import invert_image_cached as invert
    except ImportError:  # pragma: no cover - older spectrogram module
        try:
            from genrekit.spectrogram import invert_image as invert
        except ImportError:
            raise DatasetError("genrekit.spectrogram.invert_image is not available: cannot use image features") from None
    images = {t.track_id: t.path for t in datasets.scan_images(image_root)}
    if not images:
        raise DatasetError(f"{image_root}: no GTZAN-named images found (expected e.g. blues/blues00012.png)")
    tids = np.asarray(table.track_ids).astype(str)
    wanted = [t for t in np.unique(tids) if t in images]
    missing = sorted(set(tids) - set(wanted))
    feats: dict[str, np.ndarray] = {}
    failed: list[str] = []
    for t in tqdm(wanted, desc="image features", disable=not progress, file=sys.stderr):
        try:
            feats[t] = image_band_features(invert(images[t]), n_bands=n_bands)
        except GenrekitError as exc:
            failed.append(f"{images[t]}: {exc}")
            missing.append(t)
    for msg in failed:
        print(f"genrekit: skipped image {msg}", file=sys.stderr)
    keep = np.flatnonzero(np.isin(tids, list(feats)))
    if not keep.size:
        raise DatasetError(f"{image_root}: none of the table's tracks has a readable image")
    sub = table.subset(keep)
    extra = np.stack([feats[t] for t in np.asarray(sub.track_ids).astype(str)])
    sub.X = np.hstack([sub.X, extra])
    sub.columns = list(sub.columns) + image_feature_columns(n_bands)
    sub.extra = {**sub.extra, "image_root": str(image_root), "image_missing": sorted(missing)}
    return sub


def _fingerprint(table) -> str:
    if hasattr(table, "fingerprint"):
        return table.fingerprint()
    h = hashlib.sha256(np.ascontiguousarray(table.X, dtype=np.float64).tobytes())
    h.update("\n".join(map(str, table.y)).encode())
    return h.hexdigest()


def _segment_seconds(table) -> float | None:
    if not table.is_segmented:
        return None
    return float(table.extra.get("segment_seconds", 3.0))


# ---------------------------------------------------------------------------------------------- folds


def _as_table(table, image_root=None, progress=True):
    if isinstance(table, (str, os.PathLike)):
        return load_table(table, image_root=image_root, progress=progress)
    _check_labels(table, getattr(table, "source", "") or "table")
    return table


def _folds(table, protocol: str, seed: int, k: int | None = None):
    from genrekit import splits

    kw: dict[str, Any] = {}
    if k and protocol in ("kfold", "group-kfold"):
        kw["k"] = k
    return splits.protocol_folds(protocol, table.track_ids, table.y, seed=seed, **kw)


def _fit_fold(model_name: str, table, fold, *, seed: int, params: dict[str, Any], aggregate: str):
    from genrekit import splits
    from genrekit.evaluate import aggregate_tracks
    from genrekit.models.tabular import make_model

    tr, va, te = splits.expand_to_segments(fold, table.track_ids)
    if not len(tr) or not len(te):
        raise DatasetError(f"{fold.protocol} fold {fold.index}: no rows on the train or test side")
    X, y, tids = table.X, np.asarray(table.y).astype(str), np.asarray(table.track_ids).astype(str)
    model = make_model(model_name, random_state=seed, **params)
    model.fit(
        X[tr], y[tr], X_valid=X[va] if len(va) else None, y_valid=y[va] if len(va) else None,
        feature_names=list(table.columns), segment_seconds=_segment_seconds(table),
    )
    classes = np.unique(y)
    seg_proba = np.zeros((len(te), classes.size))
    seg_proba[:, np.searchsorted(classes, model.classes_)] = model.predict_proba(X[te])
    track_ids, track_proba = aggregate_tracks(tids[te], seg_proba, method=aggregate)
    first = {t: i for i, t in reversed(list(enumerate(tids)))}
    track_true = y[[first[t] for t in track_ids]]
    return {
        "model": model, "train_rows": tr, "test_rows": te, "classes": classes,
        "seg_true": y[te], "seg_proba": seg_proba,
        "track_ids": track_ids, "track_true": track_true, "track_proba": track_proba,
    }


def _score(r: dict[str, Any], fold, segmented: bool) -> dict[str, Any]:
    from genrekit.evaluate import classification_metrics

    classes = r["classes"]
    tm = classification_metrics(r["track_true"], classes[r["track_proba"].argmax(1)], classes)
    s = {"fold": int(fold.index), "accuracy": tm["accuracy"], "macro_f1": tm["macro_f1"], "n_test_tracks": tm["n"],
         "n_train_tracks": int(len(fold.train)), "n_valid_tracks": int(len(fold.valid))}
    if segmented:
        sm = classification_metrics(r["seg_true"], classes[r["seg_proba"].argmax(1)], classes)
        s["segment_accuracy"] = sm["accuracy"]
        s["n_test_segments"] = sm["n"]
    return s


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


def _run_folds(model_name, table, protocol, *, seed, params, aggregate, progress, k, desc):
    from tqdm.auto import tqdm

    folds = _folds(table, protocol, seed, k)
    results, scores = [], []
    bar = tqdm(folds, desc=desc, disable=not progress or len(folds) < 2, file=sys.stderr, leave=False)
    for fold in bar:
        r = _fit_fold(model_name, table, fold, seed=seed, params=params, aggregate=aggregate)
        results.append(r)
        scores.append(_score(r, fold, table.is_segmented))
        bar.set_postfix(acc=f"{np.mean([s['accuracy'] for s in scores]):.3f}")
    return folds, results, scores


def _summary(scores: list[dict[str, Any]], segmented: bool) -> dict[str, Any]:
    acc = np.array([s["accuracy"] for s in scores])
    out = {
        "accuracy": float(acc.mean()),
        "accuracy_std": float(acc.std()) if len(acc) > 1 else 0.0,
        "macro_f1": float(np.mean([s["macro_f1"] for s in scores])),
        "n_folds": len(scores),
    }
    if segmented:
        seg = np.array([s["segment_accuracy"] for s in scores])
        out["segment_level"] = {"accuracy": float(seg.mean()), "accuracy_std": float(seg.std()) if len(seg) > 1 else 0.0}
    return out


# ---------------------------------------------------------------------------------------------- runs


def train_run(
    model_name: str,
    table,
    protocol: str,
    out_dir: str | os.PathLike,
    seed: int = 0,
    *,
    params: dict[str, Any] | None = None,
    aggregate: str = "mean_log",
    k: int | None = None,
    image_root: str | os.PathLike | None = None,
    final_fit: bool = True,
    importance: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit ``model_name`` under ``protocol``, write the run's report and model file; return metrics.

    ``table``: a FeatureTable or a path (CSV or audio). Hold-out protocols save the model fitted on the
    train side; cross-validated ones (``final_fit``) refit on every track and save that model, whose
    metadata says so. Headline figures are track-level; segment tables add ``segment_level``.
    """
    from genrekit import __version__
    from genrekit.evaluate import write_run_report
    from genrekit.models.base import save_model_file

    t0 = time.time()
    params = dict(params or {})
    table = _as_table(table, image_root, progress)
    out = Path(out_dir)
    label = f"{model_name} [{protocol}]"
    folds, results, scores = _run_folds(model_name, table, protocol, seed=seed, params=params,
                                        aggregate=aggregate, progress=progress, k=k, desc=label)
    segmented = table.is_segmented
    classes = results[0]["classes"]
    y_true = np.concatenate([r["track_true"] for r in results])
    proba = np.vstack([r["track_proba"] for r in results])
    y_pred = classes[proba.argmax(1)]

    first_model = results[0]["model"]
    metrics: dict[str, Any] = {
        "protocol": protocol,
        "level": "track",
        "model": model_name,
        "model_kind": getattr(first_model, "kind", type(first_model).__name__),
        "params": {**_params_of(first_model), **params},
        "seed": seed,
        "data": str(getattr(table, "source", "")),
        "data_sha256": _fingerprint(table),
        "n_tracks": int(np.unique(table.track_ids).size),
        "n_rows": int(len(table.y)),
        "segmented": segmented,
        "segment_seconds": _segment_seconds(table),
        "aggregate": aggregate if segmented else None,
        "columns": list(table.columns),
        "genrekit_version": __version__,
        **_summary(scores, segmented),
        "fold_scores": scores,
    }
    if table.extra.get("image_root"):
        metrics["image_features"] = {"root": table.extra["image_root"], "tracks_without_image": table.extra.get("image_missing", [])}
    if hasattr(first_model, "best_params_"):
        metrics["tuned_params"] = [_json_params(r["model"].best_params_) for r in results]
    if hasattr(first_model, "selected_features") and getattr(first_model, "top_k", None):
        metrics["selected_features"] = first_model.selected_features()
    if hasattr(first_model, "member_scores"):
        te = results[0]["test_rows"]
        metrics["member_accuracy_first_fold"] = first_model.member_scores(table.X[te], np.asarray(table.y)[te])
        metrics["member_accuracy_first_fold_level"] = "segment" if segmented else "track"

    # the model file: the train side of a hold-out; for CV protocols a refit on all tracks
    model_to_save, trained_tracks, side = first_model, folds[0].train, "train"
    if protocol in HOLDOUT_PROTOCOLS:
        pass
    elif final_fit:
        from genrekit.models.tabular import make_model

        model_to_save = make_model(model_name, random_state=seed, **params).fit(
            table.X, np.asarray(table.y).astype(str), feature_names=list(table.columns),
            segment_seconds=_segment_seconds(table),
        )
        trained_tracks, side = np.unique(table.track_ids), "all"
    else:
        model_to_save = None
    if model_to_save is not None:
        tensors, meta = model_to_save.get_state()
        trained_tracks = sorted(map(str, trained_tracks))
        meta["trained_on"] = {
            "protocol": protocol,
            "side": side,
            "data": str(getattr(table, "source", "")),
            "data_sha256": metrics["data_sha256"],
            "n_tracks": len(trained_tracks),
            "tracks_sha256": hashlib.sha256("\n".join(trained_tracks).encode()).hexdigest(),
            "tracks": trained_tracks,
            "seed": seed,
        }
        meta["evaluation"] = {"protocol": protocol, "level": "track", "accuracy": metrics["accuracy"],
                              "accuracy_std": metrics["accuracy_std"], "macro_f1": metrics["macro_f1"]}
        meta["name"] = model_name
        save_model_file(out / "model.safetensors", tensors, meta)
        metrics["model_file"] = "model.safetensors"
        metrics["model_trained_on"] = side

    importances = None
    if importance:
        imp_model = results[0]["model"]
        importances = imp_model.feature_importances() if hasattr(imp_model, "feature_importances") else None
        if importances is None:
            te = results[0]["test_rows"]
            importances = permutation_importance(imp_model, table.X[te], np.asarray(table.y)[te], table.columns, seed=seed)
            metrics["importance"] = "permutation (accuracy drop on the first fold's test rows)"
        else:
            metrics["importance"] = "model's own (impurity or |coefficient|)"
    history = getattr(first_model, "history_", None) or None
    metrics["seconds"] = round(time.time() - t0, 2)
    if segmented:
        seg_true = np.concatenate([r["seg_true"] for r in results])
        seg_pred = classes[np.vstack([r["seg_proba"] for r in results]).argmax(1)]
        from genrekit.evaluate import classification_metrics

        sm = classification_metrics(seg_true, seg_pred, classes)
        metrics["segment_level"].update({"pooled_accuracy": sm["accuracy"], "macro_f1": sm["macro_f1"],
                                         "confusion": sm["confusion"]})
    write_run_report(out, metrics, y_true=y_true, y_pred=y_pred, proba=proba, classes=classes,
                     history=history, importances=importances)
    return metrics


def _json_params(p):
    from genrekit.evaluate import json_safe

    return json_safe(p)


def _params_of(model) -> dict[str, Any]:
    return _json_params(model.get_params()) if hasattr(model, "get_params") else {}


def _fold_task(task: tuple) -> tuple[str, int, dict[str, Any], float, float]:
    """One (model, fold) of a comparison; top-level so worker processes can run it."""
    name, table, fold, seed, aggregate = task
    t, cpu = time.time(), time.process_time()
    r = _fit_fold(name, table, fold, seed=seed, params={}, aggregate=aggregate)
    return name, int(fold.index), _score(r, fold, table.is_segmented), time.time() - t, time.process_time() - cpu


def _pool(jobs: int):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # forkserver/spawn: never fork a process that holds torch or OpenMP thread pools
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context(method))


def compare_run(
    model_names: Sequence[str],
    table,
    protocol: str,
    out_dir: str | os.PathLike | None = None,
    seed: int = 0,
    *,
    aggregate: str = "mean_log",
    k: int | None = None,
    image_root: str | os.PathLike | None = None,
    jobs: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Score several models under one protocol on the same folds; write comparison.json/.md/.png.

    ``jobs`` > 1 runs (model, fold) pairs in that many worker processes (each single-threaded).
    Returns ``{"protocol": P, "level": "track", "results": [{"model", "accuracy", "accuracy_std",
    "macro_f1", ...}, ...]}`` in the order given; ``seconds`` per model is summed over its folds.
    """
    from tqdm.auto import tqdm

    from genrekit import __version__
    from genrekit.models.tabular import make_model

    for name in model_names:  # fail fast on a typo, before minutes of fitting
        make_model(name)
    table = _as_table(table, image_root, progress)
    segmented = table.is_segmented
    folds = _folds(table, protocol, seed, k)
    t0 = time.time()
    tasks = [(name, table, fold, seed, aggregate) for name in model_names for fold in folds]
    done: dict[str, dict[int, tuple]] = {name: {} for name in model_names}
    bar = tqdm(total=len(tasks), desc=f"compare [{protocol}]", disable=not progress, file=sys.stderr)
    jobs = max(1, min(int(jobs), len(tasks)))
    if jobs == 1:
        for task in tasks:
            bar.set_postfix(model=task[0])
            name, i, score, wall, cpu = _fold_task(task)
            done[name][i] = (score, wall, cpu)
            bar.update()
    else:
        from concurrent.futures import as_completed

        with _pool(jobs) as pool:
            futures = [pool.submit(_fold_task, task) for task in tasks]
            for fut in as_completed(futures):
                name, i, score, wall, cpu = fut.result()
                done[name][i] = (score, wall, cpu)
                bar.set_postfix(model=name)
                bar.update()
    bar.close()
    rows = []
    for name in model_names:
        parts = [done[name][f.index] for f in folds]
        scores = [p[0] for p in parts]
        rows.append({
            "model": name, **_summary(scores, segmented),
            "seconds": round(sum(p[1] for p in parts), 2),
            # CPU time of the fits themselves: less disturbed than wall time on a shared machine
            "cpu_seconds": round(sum(p[2] for p in parts), 2),
            "fold_accuracies": [s["accuracy"] for s in scores],
        })
    result = {
        "protocol": protocol,
        "level": "track",
        "data": str(getattr(table, "source", "")),
        "data_sha256": _fingerprint(table),
        "n_tracks": int(np.unique(table.track_ids).size),
        "columns": len(table.columns),
        "seed": seed,
        "jobs": jobs,
        "genrekit_version": __version__,
        "seconds": round(time.time() - t0, 2),
        "cpu_seconds": round(sum(r["cpu_seconds"] for r in rows), 2),
        "results": rows,
    }
    if out_dir is not None:
        write_comparison(out_dir, result)
    return result


def comparison_markdown(result: dict[str, Any]) -> str:
    """The comparison as a markdown table, headed by its protocol and level."""
    seg = any("segment_level" in r for r in result["results"])
    head = f"Protocol: **{result['protocol']}** ({result.get('level', 'track')}-level accuracy"
    head += ", mean +- std over folds)" if any(r.get("n_folds", 1) > 1 for r in result["results"]) else ")"
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
    from genrekit.engine import atomic_write_bytes
    from genrekit.evaluate import _pyplot, _save_figure, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "comparison.json", result)
    atomic_write_bytes(out / "comparison.md", comparison_markdown(result).encode())
    plt = _pyplot()
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
    ax.set_title(f"model comparison, protocol {result['protocol']} (track-level)", fontsize=10)
    _save_figure(fig, out / "comparison.png")
