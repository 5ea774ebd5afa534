"""Scoring and run reports: one place that turns predictions into metrics.json, text and plots.

Every figure written here carries its protocol and level (segment or track) in its title, because an
accuracy without its protocol is the root of most inflated GTZAN results.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.engine import atomic_write_bytes
from genrekit.metrics import aggregate_tracks, classification_metrics

__all__ = [
    "aggregate_tracks",
    "classification_metrics",
    "evaluate_model",
    "score_tracks",
    "track_sources",
    "trained_tracks",
    "format_report",
    "json_safe",
    "write_json",
    "write_run_report",
]


def json_safe(obj: Any) -> Any:
    """Convert numpy scalars/arrays and paths so ``json.dump`` accepts the object."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        v = float(obj)
        return v if np.isfinite(v) else None
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write JSON atomically (temp file + rename): a crash never leaves half a metrics file."""
    path = Path(path)
    atomic_write_bytes(path, (json.dumps(json_safe(obj), indent=2, sort_keys=False) + "\n").encode())
    return path


def _save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(metrics: dict[str, Any], what: str) -> str:
    model = metrics.get("model", "model")
    protocol = metrics.get("protocol", "unknown protocol")
    level = metrics.get("level", "track")
    return f"{what}: {model}, protocol {protocol} ({level}-level)"


def format_report(metrics: dict[str, Any]) -> str:
    """A plain-text classification report (sklearn's layout) headed by protocol and level."""
    protocol = metrics.get("protocol", "unknown")
    level = metrics.get("level", "track")
    lines = [
        f"model: {metrics.get('model', '?')}",
        f"protocol: {protocol} ({level}-level)",
    ]
    if "seed" in metrics:
        lines.append(f"seed: {metrics['seed']}")
    if "data_sha256" in metrics:
        lines.append(f"data sha256: {metrics['data_sha256']}")
    acc = metrics.get("accuracy")
    std = metrics.get("accuracy_std")
    if acc is not None:
        acc_text = f"{acc:.4f}" + (f" +- {std:.4f}" if std else "")
        lines.append(f"accuracy ({protocol}, {level}-level): {acc_text}")
    if metrics.get("macro_f1") is not None:
        lines.append(f"macro-F1 ({protocol}, {level}-level): {metrics['macro_f1']:.4f}")
    seg = metrics.get("segment_level")
    if isinstance(seg, dict) and seg.get("accuracy") is not None:
        lines.append(f"accuracy ({protocol}, segment-level): {seg['accuracy']:.4f}")
    folds = metrics.get("fold_scores")
    if folds:
        lines.append("fold scores: " + ", ".join(f"{f['fold']}={f['accuracy']:.4f}" for f in folds))
    per_class = metrics.get("per_class") or {}
    if per_class:
        lines += ["", f"{'genre':>12} {'precision':>10} {'recall':>8} {'f1':>8} {'support':>8}"]
        for c, m in per_class.items():
            lines.append(
                f"{c:>12} {m['precision']:>10.3f} {m['recall']:>8.3f} {m['f1']:>8.3f} {m['support']:>8d}"
            )
    pooled = metrics.get("pooled")
    if isinstance(pooled, dict) and pooled.get("accuracy") is not None:
        lines.append(f"\npooled out-of-fold accuracy ({protocol}, {level}-level): {pooled['accuracy']:.4f}")
    return "\n".join(lines) + "\n"


def plot_confusion(confusion, classes: Sequence[str], title: str, path: Path) -> None:
    plt = _pyplot()
    cm = np.asarray(confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center",
                        color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    ax.set_title(title, fontsize=9)
    _save_figure(fig, path)


def plot_pr_curves(y_true, proba, classes: Sequence[str], title: str, path: Path) -> None:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    plt = _pyplot()
    y_true = np.asarray(y_true).astype(str)
    fig, ax = plt.subplots(figsize=(7, 6))
    for i, c in enumerate(classes):
        positive = y_true == c
        if not positive.any():
            continue
        prec, rec, _ = precision_recall_curve(positive, proba[:, i])
        ap = average_precision_score(positive, proba[:, i])
        ax.plot(rec, prec, label=f"{c} (AP {ap:.2f})", lw=1.2)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(title, fontsize=9)
    _save_figure(fig, path)


def plot_curves(history: list[dict[str, Any]], title: str, path: Path) -> None:
    """Loss on the left axis, accuracy on the right; one line per key found in the epoch dicts."""
    plt = _pyplot()
    keys = sorted({k for h in history for k, v in h.items() if k != "epoch" and isinstance(v, (int, float))})
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for k in keys:
        ys = [h.get(k, np.nan) for h in history]
        (ax_acc if "acc" in k else ax_loss).plot(epochs, ys, label=k)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    for ax in (ax_loss, ax_acc):
        if ax.lines:
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    _save_figure(fig, path)


def plot_importance(importances: dict[str, float], title: str, path: Path, *, top: int = 30) -> None:
    plt = _pyplot()
    items = sorted(importances.items(), key=lambda kv: kv[1], reverse=True)[:top]
    names = [k for k, _ in items][::-1]
    values = [v for _, v in items][::-1]
    fig, ax = plt.subplots(figsize=(7, max(3, 0.22 * len(items) + 1)))
    ax.barh(names, values, color="tab:blue")
    ax.set_xlabel("importance")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(title, fontsize=9)
    _save_figure(fig, path)


def write_run_report(
    out_dir: str | os.PathLike,
    metrics: dict[str, Any],
    *,
    y_true: Sequence,
    y_pred: Sequence,
    proba: np.ndarray | None,
    classes: Sequence[str],
    history: list[dict[str, Any]] | None = None,
    importances: dict[str, float] | None = None,
) -> None:
    """Write metrics.json, report.txt, confusion.png, pr_curves.png (+ curves.png, importance.png).

    ``metrics`` holds what the caller knows (protocol, model, params, seed, data fingerprint, fold
    scores, level); keys the caller set win over the ones computed here from ``y_true``/``y_pred``, so a
    k-fold caller can report the mean of fold accuracies while the confusion matrix pools all folds.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    classes = [str(c) for c in classes]
    computed = classification_metrics(y_true, y_pred, classes)
    full = dict(metrics)
    for key, value in computed.items():
        full.setdefault(key, value)
    full.setdefault("level", "track")
    if "pooled" not in full and full.get("accuracy") != computed["accuracy"]:
        full["pooled"] = {"accuracy": computed["accuracy"], "macro_f1": computed["macro_f1"]}
    write_json(out / "metrics.json", full)
    atomic_write_bytes(out / "report.txt", format_report(full).encode())
    plot_confusion(computed["confusion"], classes, _title(full, "confusion"), out / "confusion.png")
    if proba is not None:
        proba = np.asarray(proba, dtype=float)
        plot_pr_curves(y_true, proba, classes, _title(full, "precision-recall"), out / "pr_curves.png")
    if history:
        plot_curves(history, _title(full, "training curves"), out / "curves.png")
    if importances:
        plot_importance(importances, _title(full, "feature importance"), out / "importance.png")


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
