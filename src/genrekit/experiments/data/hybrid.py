"""Hybrid data: the sources a hybrid model's members read (log-mel, musicnn, feature rows), over the
tracks they all hold, and the hybrid rule over the members' track probabilities."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from genrekit.errors import DatasetError
from genrekit.experiments.data.embeddings import EmbeddingSource
from genrekit.experiments.data.logmel import LogmelSource
from genrekit.experiments.data.tables import FeatureSource

__all__ = ["HYBRID_PARTS", "HybridSource"]


def _member_reads(member) -> str:
    """Which input a hybrid member takes when its hybrid does not say (a hybrid loaded from a file):
    log-mel slices for deep models, embeddings for musicnn heads, feature rows otherwise."""
    if getattr(member, "kind", None) == "deep":
        return "logmel"
    kind = (getattr(member, "input_", None) or {}).get("type")
    return {"musicnn": "musicnn", "ears": "network"}.get(kind, "features")


HYBRID_PARTS = ("logmel", "musicnn", "features", "network")  # network: mn04 / musicnn+mn04 means (NetworkSource)


class HybridSource:
    """The sources a hybrid's members read -- log-mel slices, musicnn embeddings, a feature table, any two
    or more -- over the tracks they all hold.

    Each member of the hybrid fits and predicts on its own input (the hybrid's ``member_parts`` say which;
    without them deep members read log-mel and the others features); a track's probability is the
    hybrid rule over the members' track probabilities (segments of different members do not line up, so
    the hybrid is scored at track level only). Track ids are the first part's (log-mel, else musicnn);
    a table's rows are matched to them by :func:`genrekit.datasets.table_rows`.
    """

    kind = "hybrid"
    segment_unit = "track"

    def __init__(self, logmel: LogmelSource | None = None, features: FeatureSource | None = None, *,
                 musicnn: EmbeddingSource | None = None, network: EmbeddingSource | None = None):
        from genrekit import datasets

        self.logmel, self.features, self.musicnn, self.network = logmel, features, musicnn, network
        present = {k: v for k, v in (("logmel", logmel), ("musicnn", musicnn), ("network", network),
                                     ("features", features)) if v is not None}
        if len(present) < 1 or (len(present) == 1 and "features" in present):
            raise DatasetError("a hybrid's data needs log-mel, musicnn or network data, and usually a second part")
        for name, part in present.items():
            if name != "logmel" and part.segmented:
                raise DatasetError(f"{part.source}: a segment-level table; a hybrid takes one row per track (30 s table)")
        base_name = next(iter(present))
        base = present[base_name]
        self._parts = present
        self._ids: dict[str, dict[str, str]] = {}  # part -> hybrid track id -> that part's id
        keep = [str(t) for t in base.track_ids]
        for name, part in present.items():
            if name == base_name:
                continue
            rows = datasets.table_rows(part.table, keep)
            self._ids[name] = {t: str(part.track_ids[rows[t]]) for t in keep if t in rows}
            keep = [t for t in keep if t in rows]
            if not keep:
                raise DatasetError(f"{part.source}: none of the {base_name} tracks has a {name} row")
        self.track_ids = np.array(keep)
        label = dict(zip(np.asarray(base.track_ids).astype(str), np.asarray(base.labels).astype(str), strict=True))
        self.labels = np.array([label[t] for t in keep])

    def part(self, name: str):
        """The source of one part (``logmel``, ``musicnn``, ``features``)."""
        if name not in self._parts:
            raise DatasetError(f"this hybrid's data has no {name} part (it holds {', '.join(self._parts)})")
        return self._parts[name]

    @property
    def source(self) -> str:
        return " + ".join(p.source for p in self._parts.values())

    @property
    def segmented(self) -> bool:
        return False

    @property
    def segment_seconds(self) -> None:
        return None

    @property
    def failed(self) -> list[tuple[str, str]]:
        return [f for p in self._parts.values() for f in p.failed]

    def fingerprint(self) -> str:
        if set(self._parts) == {"logmel", "features"}:  # as before musicnn parts existed: old runs match
            return hashlib.sha256(f"{self.logmel.fingerprint()}|{self.features.fingerprint()}".encode()).hexdigest()
        return hashlib.sha256("|".join(f"{k}:{p.fingerprint()}" for k, p in self._parts.items()).encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        return {"n_tracks": int(len(self.track_ids)), "n_rows": int(len(self.track_ids)), "segmented": False,
                "segment_seconds": None, "members": {k: p.describe() for k, p in self._parts.items()}}

    def _member_parts(self, model) -> list[str]:
        parts = getattr(model, "member_parts", None)
        return list(parts) if parts else [_member_reads(m) for m in model.members]

    def _part_ids(self, name: str, tracks: Sequence[str]) -> list[str]:
        ids = self._ids.get(name)
        return [ids[str(t)] for t in tracks] if ids is not None else [str(t) for t in tracks]

    def fit(self, model, train: Sequence[str], valid: Sequence[str]) -> None:
        """Fit every member of ``model`` (a :class:`~genrekit.models.hybrid.HybridModel` of unfitted
        members) on its own input, then the hybrid itself."""
        for member, name in zip(model.members, self._member_parts(model), strict=True):
            self.part(name).fit(member, self._part_ids(name, train), self._part_ids(name, valid))
        model.fit()

    def predict(self, model, tracks: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """Track-level probabilities (one row per track, in ``tracks`` order) by the hybrid rule."""
        from genrekit.metrics import aggregate_tracks

        tracks = [str(t) for t in tracks]
        classes = [str(c) for c in model.classes_]
        probas = []
        for member, name in zip(model.members_, self._member_parts(model), strict=True):
            ids = self._part_ids(name, tracks)
            g, _, p, member_classes = self.part(name).predict(member, ids)
            uniq, tp = aggregate_tracks(g, p)
            order = [member_classes.index(c) for c in classes]
            at = {t: k for k, t in enumerate(uniq)}
            probas.append(tp[[at[t] for t in ids]][:, order])
        label = dict(zip(self.track_ids, self.labels, strict=True))
        return np.array(tracks), np.array([label[t] for t in tracks]), model.combine(probas), classes
