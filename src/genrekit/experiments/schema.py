"""THE metrics schema: one function builds every metrics.json record, one writes it, one reads it back.

A record (``metrics_schema`` 2) holds what makes a figure reproducible and comparable -- ``protocol``,
``seed`` and ``split_seed``, ``data`` and ``data_sha256`` (the data's fingerprint), ``genrekit_version``
-- and the figures: track level at the top (``accuracy``, ``accuracy_std``, ``macro_f1``, ``n_folds``,
``per_class``, ``confusion``), the segment level under ``segment_level``, one ``fold_scores`` entry per
fold, and ``trained_on``: per fold, the track ids its model saw. Tabular, log-mel, hybrid, fine-tuned
and saved-model runs all write this layout.

Run folders written before this schema still load: :func:`read_metrics` maps their keys
(``track_accuracy``, ``fold_accuracies``, ``slice_accuracy``, ``data_fingerprint``) onto these and reads
``trained_on`` from the folder's model files, whose track lists :func:`trained_tracks` reads under any
of their four historical names.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import DatasetError

__all__ = [
    "SCHEMA_VERSION",
    "normalise_metrics",
    "read_metrics",
    "run_record",
    "segment_record",
    "trained_on_record",
    "claim_run_folder",
    "trained_tracks",
    "write_run",
]

SCHEMA_VERSION = 2

# the figures of one level: what a segment-level record takes from segment_level
_LEVEL_KEYS = ("accuracy", "accuracy_std", "macro_f1", "per_class", "confusion", "classes", "n", "pooled")


def run_record(result) -> dict[str, Any]:
    """The metrics.json record of ``result`` (a :class:`~genrekit.experiments.results.RunResult`, or one
    fold of it): the schema's keys, then what the run added (``result.extra``)."""
    from genrekit import __version__
    from genrekit.reports import json_safe

    folds = result.folds
    track = result.track_level
    rec: dict[str, Any] = {
        "metrics_schema": SCHEMA_VERSION,
        "protocol": result.protocol,
        "level": "track",
        "model": result.model,
        "model_kind": result.model_kind,
        "reads": result.data.get("kind"),
        "params": json_safe(result.params),
        "seed": result.seed,
        "split_seed": result.seed if result.split_seed is None else result.split_seed,
        "refit": bool(result.refit),
        "data": result.data.get("path", ""),
        "data_sha256": result.data.get("sha256"),
        **{k: v for k, v in result.data.items() if k not in ("path", "sha256", "kind")},
        "aggregate": result.aggregate if result.segmented else None,
        "genrekit_version": __version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        **track,
    }
    seg = result.segment_level
    if seg is not None:
        rec["segment_level"] = {**seg, "unit": result.segment_unit}
    if any(f.scored for f in folds):  # per class and confusion over every fold's test tracks
        from genrekit.metrics import classification_metrics

        pooled = result.pooled()
        m = classification_metrics(pooled["y_true"], pooled["y_pred"], result.classes)
        rec.update({k: m[k] for k in ("per_class", "confusion", "classes", "n")})
        if rec.get("accuracy") != m["accuracy"]:
            rec["pooled"] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
    if len(folds) == 1:
        rec["fold"] = folds[0].index
    rec["fold_scores"] = [f.scores for f in folds]
    rec["trained_on"] = result.trained_on
    if result.model_file is not None:
        rec["model_file"] = Path(result.model_file).name
        rec["model_trained_on"] = result.model_trained_on
    rec.update(result.extra)
    rec["seconds"] = round(float(result.seconds), 2)
    return json_safe(rec)


def segment_record(record: dict[str, Any], unit: str) -> dict[str, Any]:
    """A track-level record turned into its segment-level twin (the ``slices/`` report of a deep run):
    the same run, with the segment figures as the headline and the track ones under ``track_level``."""
    seg = dict(record.get("segment_level") or {})
    out = {k: v for k, v in record.items() if k not in (*_LEVEL_KEYS, "segment_level", "fold_scores")}
    out.update({"level": unit, "accuracy": seg.get("accuracy"), "accuracy_std": seg.get("accuracy_std", 0.0),
                "macro_f1": seg.get("macro_f1"),
                "track_level": {k: record[k] for k in ("accuracy", "accuracy_std", "macro_f1") if k in record}})
    return out


def _legacy_run_folder(d: Path) -> bool:
    """A run folder genrekit wrote before folders were marked: its metrics.json is genrekit's, or it
    holds a deep run's checkpoint (a run killed before its metrics, for ``--resume``)."""
    from genrekit.models.deep import CHECKPOINT_NAME

    if any((f / CHECKPOINT_NAME).is_file() for f in (d, *d.glob("fold*"))):
        return True
    try:
        m = json.loads((d / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and any(k in m for k in ("metrics_schema", "genrekit_version", "track_accuracy"))


def claim_run_folder(out: str | os.PathLike) -> Path:
    """``out`` as a run folder genrekit may write into (``store.claim_folder``): new, empty, or a run
    folder it wrote; a user's folder of other files, or a file at that name, is refused before any work."""
    from genrekit.store import claim_folder

    return claim_folder(out, ours=_legacy_run_folder)


def write_run(out: str | os.PathLike, result, *, history: list | None = None,
              importances: dict[str, float] | None = None, segment_report: bool = False) -> dict[str, Any]:
    """Write ``result``'s metrics.json (the record of :func:`run_record`), report.txt and plots to ``out``.

    The one writer of metrics.json. ``segment_report`` adds ``out/<unit>s/`` with the segment-level
    report (a deep run's ``slices/``). A result that scored no track (a fine-tuning without a hold-out)
    writes metrics.json alone. Returns the record as written."""
    from genrekit.reports import json_safe, write_json, write_run_report

    out = Path(out)
    record = run_record(result)
    if not any(f.scored for f in result.folds):
        record["note"] = "no test tracks: nothing scored"
        write_json(out / "metrics.json", record)
        return json_safe(record)
    arrays = result.pooled()
    write_run_report(out, record, **arrays, classes=result.classes, history=history, importances=importances)
    if segment_report and result.segmented:
        seg = [f for f in result.folds if f.segment_proba is not None]
        proba = np.vstack([f.segment_proba for f in seg])
        write_run_report(out / f"{result.segment_unit}s", segment_record(record, result.segment_unit),
                         y_true=np.concatenate([f.segment_true for f in seg]),
                         y_pred=np.asarray(result.classes)[proba.argmax(1)], proba=proba, classes=result.classes)
    return json.loads((out / "metrics.json").read_text())


# ------------------------------------------------------------------------------------- reading back


def normalise_metrics(m: dict[str, Any]) -> dict[str, Any]:
    """A metrics record of any genrekit version in this schema's keys (older ones are mapped)."""
    if m.get("metrics_schema") == SCHEMA_VERSION:
        return dict(m)
    out = dict(m)
    out["metrics_schema"] = 1  # read from an older layout
    if "accuracy" not in out and "track_accuracy" in out:
        out["accuracy"] = out["track_accuracy"]
    if "data_sha256" not in out and "data_fingerprint" in out:
        out["data_sha256"] = out["data_fingerprint"]
    if "fold_scores" not in out:
        if "fold_accuracies" in out:  # a deep k-fold summary
            seg = out.get("slice_fold_accuracies") or [None] * len(out["fold_accuracies"])
            out["fold_scores"] = [{"fold": i, "accuracy": a, **({"segment_accuracy": s} if s is not None else {})}
                                  for i, (a, s) in enumerate(zip(out["fold_accuracies"], seg, strict=True))]
        elif out.get("accuracy") is not None:  # one fold: a deep run or an evaluation
            split = out.get("split") or {}
            entry = {"fold": out.get("fold") or 0, "accuracy": out["accuracy"], "macro_f1": out.get("macro_f1"),
                     "n_test_tracks": split.get("test", out.get("n_tracks")), "n_train_tracks": split.get("train"),
                     "n_valid_tracks": split.get("valid")}
            if out.get("slice_accuracy") is not None:
                entry["segment_accuracy"] = out["slice_accuracy"]
            if out.get("track_vote_accuracy") is not None:
                entry["track_vote_accuracy"] = out["track_vote_accuracy"]
            out["fold_scores"] = [{k: v for k, v in entry.items() if v is not None}]
    out.setdefault("n_folds", len(out.get("fold_scores") or []) or 1)
    out.setdefault("accuracy_std", 0.0)
    if "segment_level" not in out and out.get("slice_accuracy") is not None:
        segs = [f["segment_accuracy"] for f in out.get("fold_scores", []) if "segment_accuracy" in f]
        out["segment_level"] = {"accuracy": out["slice_accuracy"],
                                "accuracy_std": float(np.std(segs)) if len(segs) > 1 else 0.0, "unit": "slice"}
    out.setdefault("trained_on", None)
    return out


def read_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """A run folder's (or a metrics.json file's) record in this schema, old layouts mapped.

    ``trained_on`` missing from an old record is read from the folder's model files: ``fold<i>/``
    of a k-fold deep run, else ``model.safetensors`` (whose single entry is then the saved model's)."""
    from genrekit.models.base import load_model_file

    p = Path(path)
    file = p / "metrics.json" if p.is_dir() else p
    try:
        record = json.loads(file.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{file}: no metrics.json (is this a run folder written by genrekit train?)") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{file}: unreadable metrics.json ({exc})") from None
    if not isinstance(record, dict):
        raise DatasetError(f"{file}: metrics.json does not hold a record")
    out = normalise_metrics(record)
    if out.get("trained_on") is None:
        folder = file.parent
        files = sorted((d / "model.safetensors" for d in folder.glob("fold*") if d.name[4:].isdigit()
                        and (d / "model.safetensors").is_file()), key=lambda f: int(f.parent.name[4:]))
        if not files and (folder / "model.safetensors").is_file():
            files = [folder / "model.safetensors"]
        if files:
            out["trained_on"] = [sorted(trained_tracks(load_model_file(f)[1])) for f in files]
    return out


# ------------------------------------------------------------------------------------- model files


def trained_on_record(*, protocol: str, fold: int | None, n_folds: int, side: str, train: Iterable[str],
                      valid: Iterable[str] = (), valid_role: str = "early-stopping", seed: int, split_seed: int,
                      data: str, data_sha256: str | None, n_test_tracks: int = 0) -> dict[str, Any]:
    """The ``trained_on`` block of a model file: which tracks it was fitted on (``tracks``), under which
    protocol, fold, seeds and data, and what its validation side did.

    ``valid_role`` ``"early-stopping"``: the kept weights were picked on ``valid`` (``valid_tracks``, which
    count as seen in leakage checks); ``"tuning"``: only hyperparameters were chosen on it, the weights
    come from ``tracks`` alone (``tuned_on``, not counted). ``side``: ``train`` (a fold's training side),
    ``train+valid`` (a refit), ``all`` (a cross-validated run's final model; ``fold`` None).
    ``train_tracks`` repeats ``tracks`` for readers of genrekit 0.1 files."""
    if valid_role not in ("early-stopping", "tuning"):
        raise ValueError(f"valid_role must be 'early-stopping' or 'tuning', got {valid_role!r}")
    tracks = sorted(map(str, train))
    valid = sorted(map(str, valid))
    return {
        "protocol": protocol, "fold": None if fold is None else int(fold), "n_folds": int(n_folds), "side": side,
        "seed": int(seed), "split_seed": int(split_seed), "refit": side == "train+valid", "data": str(data),
        "data_sha256": data_sha256, "n_tracks": len(tracks),
        "tracks_sha256": hashlib.sha256("\n".join(tracks).encode()).hexdigest(), "tracks": tracks,
        "train_tracks": tracks, "valid_tracks": valid if valid_role == "early-stopping" else [],
        "tuned_on": valid if valid_role == "tuning" else [], "n_test_tracks": int(n_test_tracks),
        "note": "test tracks never seen in training, tuning or early stopping",
    }


def trained_tracks(meta: dict[str, Any]) -> set[str]:
    """Every track id a model file's metadata records having trained on, under any of the names genrekit
    has written (``trained_on.tracks`` / ``train_tracks`` / ``valid_tracks``, a combined model's top-level
    ``train_tracks``); empty when it records none. Tracks only tuned on (``tuned_on``) are not counted."""
    record = meta.get("trained_on") if isinstance(meta.get("trained_on"), dict) else {}
    return set(map(str, meta.get("train_tracks") or [])) | {
        str(t) for key in ("tracks", "train_tracks", "valid_tracks") for t in (record.get(key) or [])}
