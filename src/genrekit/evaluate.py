"""Scoring of saved models on a protocol.

The pure metrics live in :mod:`genrekit.metrics` and the reports and plots in :mod:`genrekit.reports`;
their names are re-exported here for callers that still import them from this module.
"""

from __future__ import annotations

from genrekit.metrics import aggregate_tracks, classification_metrics
from genrekit.reports import (
    format_report,
    json_safe,
    plot_confusion,
    plot_curves,
    plot_importance,
    plot_pr_curves,
    pyplot,
    save_figure,
    write_json,
    write_run_report,
)

# Old private names, kept until their last importer (train.py) switches to genrekit.reports.
_pyplot = pyplot
_save_figure = save_figure

__all__ = [
    "aggregate_tracks",
    "classification_metrics",
    "evaluate_model",
    "score_tracks",
    "track_sources",
    "trained_tracks",
    "format_report",
    "json_safe",
    "plot_confusion",
    "plot_curves",
    "plot_importance",
    "plot_pr_curves",
    "write_json",
    "write_run_report",
]


# ------------------------------------------------------------------- saved models on a protocol


def track_sources(data, want: str) -> dict:
    """track id -> (label, kind, payload) from every source under ``data`` that a model of input type
    ``want`` (logmel, features, hybrid) reads: audio first, then Kaggle images or feature rows."""
    from pathlib import Path

    from genrekit import datasets

    data = Path(data)
    found: dict[str, tuple[str, str, object]] = {}
    if data.is_file() and data.suffix.lower() == ".csv":
        t = datasets.load_feature_table(data)
        if t.is_segmented:
            from genrekit.errors import DatasetError

            raise DatasetError(f"{data}: a segment-level table; evaluate takes one row per track (30 s table)")
        for i, tid in enumerate(t.track_ids):
            found[tid] = (t.y[i], "features", dict(zip(t.columns, t.X[i], strict=True)))
        return found
    is_root = any((data / d).exists() for d in ("audio", "genres_original", "genres", "images_original",
                                               "features_30_sec.csv"))
    if is_root:
        g = datasets.GTZAN(data)
        for tr in g.audio_tracks():
            found[tr.track_id] = (tr.label, "audio", tr.path)
        images = {tr.track_id: tr for tr in g.image_tracks()} if want in ("logmel", "hybrid") else {}
        rows = {}
        if want in ("features", "hybrid") and g.feature_csv():
            t = datasets.load_feature_table(g.feature_csv())
            rows = {tid: (t.y[i], dict(zip(t.columns, t.X[i], strict=True))) for i, tid in enumerate(t.track_ids)}
        if want == "logmel":
            for tid, tr in images.items():
                found.setdefault(tid, (tr.label, "image", tr.path))
        elif want == "features":
            for tid, (lab, row) in rows.items():
                found.setdefault(tid, (lab, "features", row))
        elif want == "hybrid":  # without audio a track needs both its image and its feature row
            for tid in images.keys() & rows.keys():
                found.setdefault(tid, (images[tid].label, "image+features", (images[tid].path, rows[tid][1])))
        return found
    if data.is_dir() and want == "logmel" and any(data.rglob("*.png")) and not any(
        f.suffix.lower() in {".wav", ".flac", ".mp3", ".au", ".ogg"} for f in data.rglob("*")
    ):
        for tr in datasets.scan_images(data):
            found[tr.track_id] = (tr.label, "image", tr.path)
        return found
    for tr in datasets.scan_audio(data):
        found[tr.track_id] = (tr.label, "audio", tr.path)
    return found


def model_meta(clf) -> dict:
    """A classifier's model metadata, read from its file for estimators that keep none once loaded."""
    meta = getattr(clf.model, "meta_", None) or {}
    if "trained_on" not in meta and "train_tracks" not in meta and clf.path and str(clf.path).endswith(".safetensors"):
        from genrekit.models.base import load_model_file

        meta = load_model_file(clf.path)[1]
    return meta


def trained_tracks(clf) -> set[str]:
    """Every track id a classifier's model file records having trained on (train, early-stopping valid,
    or a tabular run's ``tracks``), for leakage checks; empty when the file records none."""
    meta = model_meta(clf)
    record = meta.get("trained_on") if isinstance(meta.get("trained_on"), dict) else {}
    return set(map(str, meta.get("train_tracks") or [])) | {
        str(t) for key in ("train_tracks", "valid_tracks", "tracks") for t in (record.get(key) or [])}


def score_tracks(clf, found: dict, tracks, *, desc: str = "score", progress: bool = True):
    """``clf``'s probabilities (in ``clf.genres`` order) for ``tracks``, each read from its source in
    ``found`` (see :func:`track_sources`). Returns ({track: proba}, errors, counts per source kind); a track that
    cannot be read is listed in errors and the rest go on."""
    import numpy as np
    from tqdm import tqdm

    from genrekit import spectrogram
    from genrekit.errors import GenrekitError

    scored: dict[str, np.ndarray] = {}
    errors: list[dict[str, str]] = []
    used = {"audio": 0, "image": 0, "features": 0, "image+features": 0}
    for tid in tqdm(tracks, desc=desc, unit="track", disable=None if progress else True, leave=False):
        label, kind, payload = found[tid]
        try:
            if kind == "audio":
                r = clf.predict(payload)
            elif kind == "image":
                r = clf.predict_precomputed(levels=spectrogram.invert_image_cached(payload), file=str(payload))
            elif kind == "image+features":
                png, row = payload
                r = clf.predict_precomputed(levels=spectrogram.invert_image_cached(png), row=row, file=str(png))
            else:
                r = clf.predict_precomputed(row=payload, file=tid)
        except GenrekitError as exc:
            errors.append({"track": str(tid), "error": str(exc)})
            continue
        used[kind] += 1
        scored[str(tid)] = np.array([r.scores.get(g, 0.0) for g in clf.genres])
    return scored, errors, used


def evaluate_model(clf, data, *, protocol: str = "fault-filtered", fold: int | None = None, seed: int = 0,
                   progress: bool = True) -> tuple[dict, dict]:
    """Predict every test track of ``protocol`` found in ``data``; returns (metrics, arrays for plots)."""
    import numpy as np

    from genrekit import splits
    from genrekit.errors import DatasetError, LeakageError, SplitError

    want = clf.input["type"]
    found = track_sources(data, want)
    if not found:
        raise DatasetError(f"{data}: no tracks found")
    tids = np.array(sorted(found))
    labels = np.array([found[t][0] for t in tids])
    if protocol == "all":
        test = tids
    else:
        folds = splits.protocol_folds(protocol, tids, labels, seed=seed)
        if len(folds) > 1 and fold is None:
            raise SplitError(f"{protocol} has {len(folds)} folds: a fixed model is scored on one, pass --fold")
        test = folds[fold or 0].test
    unknown = sorted({found[t][0] for t in test} - set(clf.genres))
    if unknown:
        raise DatasetError(
            f"{data}: test labels {', '.join(unknown)} are not among the model's classes ({', '.join(clf.genres)})"
        )
    overlap = sorted(trained_tracks(clf).intersection(map(str, test)))
    if overlap:
        raise LeakageError(
            f"the model was trained on {len(overlap)} of these test tracks (e.g. {overlap[0]}): its score would "
            "be inflated; evaluate it on a protocol whose test side it has not seen"
        )
    scored, errors, used = score_tracks(clf, found, test, desc=f"evaluate ({protocol})", progress=progress)
    y_true = [found[t][0] for t in scored]
    proba = [scored[t] for t in scored]
    y_pred = [clf.genres[int(np.argmax(p))] for p in proba]
    if not y_true:
        raise DatasetError(f"{data}: none of the {len(test)} {protocol} test tracks could be read")
    m = classification_metrics(y_true, y_pred, clf.genres)
    metrics = {
        "protocol": protocol, "protocol_description": splits.PROTOCOL_DESCRIPTIONS.get(protocol, "every track"),
        "fold": fold, "level": "track", "track_accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
        "n_tracks": len(y_true), "n_test_tracks_in_protocol": int(len(test)), "sources": used,
        "errors": errors, "model": clf.identity, "data": str(data), "seed": seed,
        "per_class": m["per_class"], "confusion": m["confusion"], "classes": m["classes"],
    }
    return metrics, {"y_true": y_true, "y_pred": y_pred, "proba": np.array(proba), "classes": clf.genres}
