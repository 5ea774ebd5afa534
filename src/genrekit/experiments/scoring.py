"""Saved models scored on a protocol's test tracks, never on tracks they trained on.

A saved model reads tracks the way it will in use -- through :class:`genrekit.predict.GenreClassifier`,
from audio where the data has it, else from a Kaggle image (log-mel models) or a feature row (feature
models) -- so :func:`evaluate_model` measures the file a user gets. Its result is a
:class:`~genrekit.experiments.results.RunResult` like a training run's, and the model file's recorded
training tracks (:func:`genrekit.experiments.schema.trained_tracks`) guard against leakage.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import DatasetError, GenrekitError, LeakageError, SplitError
from genrekit.experiments.results import FoldResult, RunResult, score_fold
from genrekit.experiments.schema import run_record, trained_tracks
from genrekit.models.inputs import LogmelInput

__all__ = ["classifier_trained_tracks", "evaluate_model", "model_meta", "score_tracks", "track_sources"]

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".au", ".ogg"}


def track_sources(data: str | os.PathLike, want: str) -> dict[str, tuple[str, str, Any]]:
    """track id -> (label, kind, payload) from every source under ``data`` that a model of input type
    ``want`` (logmel, features, hybrid) reads: audio first, then Kaggle images or feature rows."""
    from genrekit import datasets

    data = Path(data)
    found: dict[str, tuple[str, str, Any]] = {}
    if data.is_file() and data.suffix.lower() == ".csv":
        t = datasets.load_feature_table(data)
        if t.is_segmented:
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
        images = {tr.track_id: tr for tr in g.image_tracks()} if want in ("logmel", "hybrid", "musicnn") else {}
        rows = {}
        if want in ("features", "hybrid", "musicnn") and g.feature_csv():
            t = datasets.load_feature_table(g.feature_csv())
            rows = {tid: (t.y[i], dict(zip(t.columns, t.X[i], strict=True))) for i, tid in enumerate(t.track_ids)}
        if want == "logmel":
            for tid, tr in images.items():
                found.setdefault(tid, (tr.label, "image", tr.path))
        elif want == "features":
            for tid, (lab, row) in rows.items():
                found.setdefault(tid, (lab, "features", row))
        elif want in ("hybrid", "musicnn"):  # without audio: its image and its feature row (musicnn: rms_mean)
            for tid in images.keys() & rows.keys():
                found.setdefault(tid, (images[tid].label, "image+features", (images[tid].path, rows[tid][1])))
        return found
    if data.is_dir() and want == "logmel" and any(data.rglob("*.png")) and not any(
        f.suffix.lower() in AUDIO_SUFFIXES for f in data.rglob("*")
    ):
        for tr in datasets.scan_images(data):
            found[tr.track_id] = (tr.label, "image", tr.path)
        return found
    for tr in datasets.scan_audio(data):
        found[tr.track_id] = (tr.label, "audio", tr.path)
    return found


def model_meta(clf) -> dict[str, Any]:
    """A classifier's model metadata, read from its file for estimators that keep none once loaded."""
    meta = getattr(clf.model, "meta_", None) or {}
    if "trained_on" not in meta and "train_tracks" not in meta and clf.path and str(clf.path).endswith(".safetensors"):
        from genrekit.models.base import load_model_file

        meta = load_model_file(clf.path)[1]
    return meta


def classifier_trained_tracks(clf) -> set[str]:
    """Every track id ``clf``'s model file records having trained on (empty when it records none)."""
    return trained_tracks(model_meta(clf))


def score_tracks(clf, found: dict, tracks, *, desc: str = "score", progress: bool = True):
    """``clf``'s probabilities (in ``clf.genres`` order) for ``tracks``, each read from its source in
    ``found`` (see :func:`track_sources`). Returns ({track: proba}, errors, counts per source kind); a track that
    cannot be read is listed in errors and the rest go on."""
    from tqdm import tqdm

    from genrekit import spectrogram

    scored: dict[str, np.ndarray] = {}
    errors: list[dict[str, str]] = []
    used = {"audio": 0, "image": 0, "features": 0, "image+features": 0}
    for tid in tqdm(tracks, desc=desc, unit="track", disable=None if progress else True, leave=False):
        label, kind, payload = found[tid]
        try:
            if kind == "audio":
                r = clf.predict(payload, styles=False)  # the genre only: styles cost a second network
            elif kind == "image":
                r = clf.predict_precomputed(levels=spectrogram.invert_image_cached(payload), file=str(payload))
            elif kind == "image+features":
                png, row = payload
                needs_levels = any(isinstance(m.input, LogmelInput) for m in clf.members)
                levels = spectrogram.invert_image_cached(png) if needs_levels else None
                r = clf.predict_precomputed(levels=levels, row=row, file=str(png), image=png)
            else:
                r = clf.predict_precomputed(row=payload, file=tid)
        except GenrekitError as exc:
            errors.append({"track": str(tid), "error": str(exc)})
            continue
        used[kind] += 1
        scored[str(tid)] = np.array([r.scores.get(g, 0.0) for g in clf.genres])
    return scored, errors, used


def evaluate_model(clf, data: str | os.PathLike, *, protocol: str = "fault-filtered", fold: int | None = None,
                   seed: int = 0, progress: bool = True) -> RunResult:
    """Score ``clf`` on every test track of ``protocol`` found in ``data`` (``"all"``: every track).

    A k-fold protocol needs ``fold``. Refuses (:class:`LeakageError`) when the model file records having
    trained on a test track. The result's ``metrics`` is its metrics.json record; ``data`` holds
    ``n_tracks`` (scored) and ``sources`` (how many tracks came from audio, images, feature rows)."""
    from genrekit import splits

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
    seen = classifier_trained_tracks(clf)
    overlap = sorted(seen.intersection(map(str, test)))
    if overlap:
        raise LeakageError(
            f"the model was trained on {len(overlap)} of these test tracks (e.g. {overlap[0]}): its score would "
            "be inflated; evaluate it on a protocol whose test side it has not seen"
        )
    scored, errors, used = score_tracks(clf, found, test, desc=f"evaluate ({protocol})", progress=progress)
    if not scored:
        raise DatasetError(f"{data}: none of the {len(test)} {protocol} test tracks could be read")
    ids = list(scored)
    r = FoldResult(int(fold or 0), sorted(seen), [], [str(t) for t in test], list(clf.genres), np.array(ids),
                   np.array([found[t][0] for t in ids]), np.vstack([scored[t] for t in ids]), {})
    r.scores = score_fold(r)
    h = hashlib.sha256()
    for t in ids:
        h.update(f"{t}|{found[t][0]}|{found[t][1]};".encode())
    meta = model_meta(clf)
    result = RunResult(
        model=str(clf.identity.get("name") or Path(str(clf.path)).name), protocol=protocol, seed=seed, folds=[r],
        data={"path": str(data), "sha256": h.hexdigest(), "kind": want, "n_tracks": len(ids), "sources": used},
        model_kind=meta.get("kind"), aggregate=None,
        extra={"protocol_description": splits.PROTOCOL_DESCRIPTIONS.get(protocol, "every track"),
               "n_test_tracks_in_protocol": int(len(test)), "errors": errors, "model_identity": clf.identity},
    )
    result.metrics = run_record(result)
    return result
