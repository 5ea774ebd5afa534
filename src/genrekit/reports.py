"""Run reports and plots: metrics.json, report.txt and the figures, from metrics and predictions.

Every figure written here carries its protocol and level (segment or track) in its title, because an
accuracy without its protocol is the root of most inflated GTZAN results. Every file is written
atomically (temp file, fsync, rename) through :mod:`genrekit.store`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.metrics import classification_metrics
from genrekit.store import atomic_write_bytes, atomic_writer

__all__ = [
    "format_report",
    "json_safe",
    "plot_confusion",
    "plot_curves",
    "plot_importance",
    "plot_pr_curves",
    "plot_reliability",
    "pyplot",
    "save_figure",
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


def save_figure(fig, path: str | os.PathLike) -> None:
    """Write ``fig`` as PNG atomically (a crash never leaves half an image) and close it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_writer(path, "wb") as f:
            fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)


def pyplot():
    """matplotlib's pyplot on the Agg backend: reports are files, never windows (and work headless)."""
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
    """The confusion matrix, each row scaled to the fraction of its true class, with the counts written in."""
    plt = pyplot()
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
    save_figure(fig, path)


def plot_pr_curves(y_true, proba, classes: Sequence[str], title: str, path: Path) -> None:
    """One-vs-rest precision-recall curve and average precision of every class present in ``y_true``."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    plt = pyplot()
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
    save_figure(fig, path)


def plot_reliability(y_true, proba, classes: Sequence[str], title: str, path: Path, *, n_bins: int = 10) -> float:
    """Reliability diagram (accuracy per top-1 confidence bin against the diagonal); returns the ECE."""
    from genrekit.metrics import expected_calibration_error, reliability_bins

    b = reliability_bins(y_true, proba, classes, n_bins=n_bins)
    ece = expected_calibration_error(y_true, proba, classes, n_bins=n_bins)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    centres = (b["edges"][:-1] + b["edges"][1:]) / 2
    full = b["count"] > 0
    ax.bar(centres[full], b["accuracy"][full], width=1.0 / n_bins, edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for c, a, n in zip(centres[full], b["accuracy"][full], b["count"][full], strict=True):
        ax.text(c, a + 0.02, str(int(n)), ha="center", fontsize=7)
    ax.set_xlabel("top-1 confidence")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.08)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"{title}\nECE {ece:.3f} ({n_bins} bins)", fontsize=9)
    save_figure(fig, path)
    return ece


def plot_curves(history: list[dict[str, Any]], title: str, path: Path) -> None:
    """Loss on the left axis, accuracy on the right; one line per key found in the epoch dicts."""
    plt = pyplot()
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
    save_figure(fig, path)


def plot_importance(importances: dict[str, float], title: str, path: Path, *, top: int = 30) -> None:
    """Horizontal bars of the ``top`` most important features, largest on top."""
    plt = pyplot()
    items = sorted(importances.items(), key=lambda kv: kv[1], reverse=True)[:top]
    names = [k for k, _ in items][::-1]
    values = [v for _, v in items][::-1]
    fig, ax = plt.subplots(figsize=(7, max(3, 0.22 * len(items) + 1)))
    ax.barh(names, values, color="tab:blue")
    ax.set_xlabel("importance")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)


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
