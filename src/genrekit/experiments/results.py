"""What every experiment returns: folds, their predictions and scores, and the run that holds them.

One shape for a trained run (:func:`genrekit.experiments.run`), a saved model scored on a protocol
(:func:`~genrekit.experiments.scoring.evaluate_model`), a fine-tuning (:mod:`~genrekit.experiments.finetune`)
and each entry of a comparison: a :class:`RunResult` of :class:`FoldResult` s. Scores are track-level
first (what a user of the classifier gets for a song); segment-level scores (3 s rows, log-mel slices)
come beside them. The summary rule is :func:`summarise`: mean and std over folds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import GenrekitError, LeakageError

__all__ = ["FoldResult", "FoldSpec", "RunResult", "score_fold", "summarise"]


@dataclass(frozen=True)
class FoldSpec:
    """The track ids of one fold: fitted on ``train``, tuned / early-stopped on ``valid``, scored on ``test``.

    ``train`` may share no track with ``valid`` or ``test`` (a :class:`LeakageError` otherwise); ``valid``
    may be the test side itself for a hold-out that early-stops on what it reports (fine-tuning)."""

    index: int
    train: tuple[str, ...]
    valid: tuple[str, ...] = ()
    test: tuple[str, ...] = ()

    def __post_init__(self):
        for name in ("train", "valid", "test"):
            object.__setattr__(self, name, tuple(str(t) for t in getattr(self, name)))
        seen = set(self.train)
        leak = seen.intersection(self.valid) or seen.intersection(self.test)
        if leak:
            raise LeakageError(f"fold {self.index}: track {sorted(leak)[0]} is on the training side and on the "
                               "validation or test side (leakage)")

    @classmethod
    def from_fold(cls, fold) -> FoldSpec:
        """From a :class:`genrekit.splits.Fold`."""
        return cls(int(fold.index), tuple(fold.train), tuple(fold.valid), tuple(fold.test))


@dataclass
class FoldResult:
    """One fold: which tracks its model saw, its predictions on the test tracks, and their scores.

    ``train_tracks``: what the model was fitted on; ``valid_tracks``: what tuned or early-stopped it;
    :attr:`trained_on` is both. Track arrays are in ``track_ids`` order (sorted); segment arrays are
    ``None`` when the data has one row per track. ``scores`` is this fold's entry of ``fold_scores``."""

    index: int
    train_tracks: list[str]
    valid_tracks: list[str]
    test_tracks: list[str]
    classes: list[str]
    track_ids: np.ndarray
    track_true: np.ndarray
    track_proba: np.ndarray
    scores: dict[str, Any]
    segment_ids: np.ndarray | None = None
    segment_true: np.ndarray | None = None
    segment_proba: np.ndarray | None = None
    model: Any = None
    history: list[dict[str, Any]] | None = None
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    @property
    def trained_on(self) -> list[str]:
        """Every track this fold's model saw (fitted on, tuned or early-stopped on), sorted."""
        return sorted(set(self.train_tracks) | set(self.valid_tracks))

    @property
    def track_pred(self) -> np.ndarray:
        return np.asarray(self.classes)[self.track_proba.argmax(1)] if len(self.track_proba) else np.array([])

    @property
    def segment_pred(self) -> np.ndarray | None:
        if self.segment_proba is None:
            return None
        return np.asarray(self.classes)[self.segment_proba.argmax(1)]

    @property
    def scored(self) -> bool:
        return "accuracy" in self.scores


def score_fold(fold: FoldResult, *, fit_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fold's ``fold_scores`` entry: track-level accuracy and macro-F1, side sizes, and the
    segment-level accuracy (plus the majority-vote track accuracy) when there are segments."""
    from genrekit.metrics import aggregate_tracks, classification_metrics

    s: dict[str, Any] = {"fold": int(fold.index)}
    if len(fold.track_ids):
        tm = classification_metrics(fold.track_true, fold.track_pred, fold.classes)
        s.update({"accuracy": tm["accuracy"], "macro_f1": tm["macro_f1"]})
    s.update({"n_test_tracks": int(len(fold.track_ids)), "n_train_tracks": int(len(fold.train_tracks)),
              "n_valid_tracks": int(len(fold.valid_tracks))})
    if fold.segment_proba is not None and len(fold.segment_proba):
        sm = classification_metrics(fold.segment_true, fold.segment_pred, fold.classes)
        _, vote = aggregate_tracks(fold.segment_ids, fold.segment_proba, method="vote")
        s.update({"segment_accuracy": sm["accuracy"], "n_test_segments": sm["n"],
                  "track_vote_accuracy": float(np.mean(np.asarray(fold.classes)[vote.argmax(1)] == fold.track_true))})
    s.update(fit_info or {})
    return s


def summarise(scores: Sequence[dict[str, Any]], segmented: bool) -> dict[str, Any]:
    """Mean (and std, over more than one fold) of the folds' track-level accuracy and macro-F1, with the
    segment-level accuracy under ``segment_level``: the figures every report and comparison shows."""
    scores = [s for s in scores if "accuracy" in s]
    if not scores:
        return {"n_folds": 0}
    acc = np.array([s["accuracy"] for s in scores])
    out: dict[str, Any] = {
        "accuracy": float(acc.mean()),
        "accuracy_std": float(acc.std()) if len(acc) > 1 else 0.0,
        "macro_f1": float(np.mean([s["macro_f1"] for s in scores])),
        "n_folds": len(scores),
    }
    if segmented and all("segment_accuracy" in s for s in scores):
        seg = np.array([s["segment_accuracy"] for s in scores])
        out["segment_level"] = {"accuracy": float(seg.mean()), "accuracy_std": float(seg.std()) if len(seg) > 1 else 0.0}
    return out


@dataclass
class RunResult:
    """A run: its folds and what it was (model, protocol, seed, data), with the figures of :func:`summarise`.

    ``track_level`` holds accuracy, accuracy_std, macro_f1 and n_folds; ``segment_level`` the segment
    accuracy (and its std, pooled accuracy, macro-F1 and confusion) or ``None`` without segments;
    :attr:`trained_on` lists, per fold, the tracks that fold's model saw. ``metrics`` is the record
    written to metrics.json (:func:`genrekit.experiments.schema.run_record`)."""

    model: str
    protocol: str
    seed: int
    folds: list[FoldResult]
    data: dict[str, Any]  # path, sha256, kind, and the source's own description (n_tracks, ...)
    split_seed: int | None = None
    model_kind: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    refit: bool = False
    aggregate: str | None = "mean_log"
    segment_unit: str = "segment"
    valid_role: str = "early-stopping"  # what the validation side did: picked the weights, or only tuned
    extra: dict[str, Any] = field(default_factory=dict)
    model_file: Path | None = None
    model_trained_on: str | None = None
    out: Path | None = None
    seconds: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def segmented(self) -> bool:
        return any(f.segment_proba is not None for f in self.folds)

    @property
    def classes(self) -> list[str]:
        return list(self.folds[0].classes) if self.folds else []

    @property
    def track_level(self) -> dict[str, Any]:
        s = summarise([f.scores for f in self.folds], self.segmented)
        s.pop("segment_level", None)
        return s

    @property
    def segment_level(self) -> dict[str, Any] | None:
        """Mean segment accuracy over folds (with std), and pooled over all folds' segments."""
        from genrekit.metrics import classification_metrics

        level = summarise([f.scores for f in self.folds], self.segmented).get("segment_level")
        if level is None:
            return None
        seg_true = np.concatenate([f.segment_true for f in self.folds if f.segment_proba is not None])
        seg_pred = np.concatenate([f.segment_pred for f in self.folds if f.segment_proba is not None])
        sm = classification_metrics(seg_true, seg_pred, self.classes)
        return {**level, "pooled_accuracy": sm["accuracy"], "macro_f1": sm["macro_f1"], "confusion": sm["confusion"]}

    @property
    def trained_on(self) -> list[list[str]]:
        """Per fold, every track that fold's model saw."""
        return [f.trained_on for f in self.folds]

    @property
    def fold_scores(self) -> list[dict[str, Any]]:
        return [f.scores for f in self.folds]

    def pooled(self) -> dict[str, np.ndarray]:
        """Every fold's test tracks together: ``y_true``, ``y_pred``, ``proba`` (for reports and plots)."""
        scored = [f for f in self.folds if len(f.track_ids)]
        if not scored:
            raise GenrekitError(f"{self.model}: no fold scored any test track")
        proba = np.vstack([f.track_proba for f in scored])
        return {"y_true": np.concatenate([f.track_true for f in scored]),
                "y_pred": np.asarray(self.classes)[proba.argmax(1)], "proba": proba}

    def fold(self, index: int) -> RunResult:
        """This run restricted to one fold (a fold's own report)."""
        return dataclasses.replace(self, folds=[f for f in self.folds if f.index == index], metrics={},
                                   model_file=None, model_trained_on=None)
