"""Feature tables: Kaggle's ``features_30_sec.csv`` / ``features_3_sec.csv`` and genrekit's own, read into a
:class:`FeatureTable` with every value, label and id checked, rows found by track id."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genrekit import GENRES
from genrekit.datasets.tracks import genre_of, parse_name
from genrekit.errors import DatasetError
from genrekit.features import FEATURE_COLUMNS

__all__ = ["FEATURE_COLUMNS", "FeatureTable", "load_feature_table", "table_rows"]


@dataclass
class FeatureTable:
    """A feature table: one row per track (30 s table) or per segment (3 s table)."""

    X: np.ndarray
    y: np.ndarray
    track_ids: np.ndarray
    filenames: np.ndarray
    columns: list[str]
    segments: np.ndarray | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def is_segmented(self) -> bool:
        return len(np.unique(self.track_ids)) < len(self.track_ids)

    def fingerprint(self) -> str:
        """sha256 of the values, labels and ids: identifies the exact data a run saw."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.X, dtype=np.float64).tobytes())
        h.update("\n".join(map(str, self.y)).encode())
        h.update("\n".join(map(str, self.track_ids)).encode())
        h.update("\n".join(self.columns).encode())
        return h.hexdigest()

    def subset(self, idx) -> FeatureTable:
        return FeatureTable(
            self.X[idx], self.y[idx], self.track_ids[idx], self.filenames[idx], list(self.columns),
            None if self.segments is None else self.segments[idx], self.source, dict(self.extra),
        )


def table_rows(table: FeatureTable, track_ids: Iterable[str]) -> dict[str, int]:
    """The row of each of ``track_ids`` in a one-row-per-track table. GTZAN ids match the table's as they
    are; a folder dataset's ``genre/name`` ids match its file name. Ids without a row are left out."""
    ids = {str(t): k for k, t in enumerate(table.track_ids)}
    rows = {str(t): ids.get(str(t), ids.get(str(t).rsplit("/", 1)[-1])) for t in track_ids}
    return {t: k for t, k in rows.items() if k is not None}


def load_feature_table(
    path: str | os.PathLike,
    *,
    columns: list[str] | None = None,
    labels: Iterable[str] | None = None,
    min_classes: int = 2,
) -> FeatureTable:
    """Read a Kaggle-style feature CSV (``features_30_sec.csv``, ``features_3_sec.csv`` or ours).

    Checked, each with an error naming the culprit: missing file or columns, non-numeric or NaN/inf
    values, empty labels, labels outside ``labels`` (GTZAN tables: the ten genres, and the genre in the
    file name must match), fewer than ``min_classes`` classes.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: feature table not found")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable CSV ({exc})") from None
    columns = list(columns or FEATURE_COLUMNS)
    missing = [c for c in ["filename", *columns, "label"] if c not in df.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}")
    if df.empty:
        raise DatasetError(f"{path}: the table has no rows")
    values = df[columns].apply(pd.to_numeric, errors="coerce")
    bad = ~np.isfinite(values.to_numpy(dtype=np.float64))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DatasetError(
            f"{path}: {int(bad.sum())} missing/non-numeric/infinite value(s), first in column "
            f"{columns[c]!r} at row {r + 2} ({df['filename'].iloc[r]})"
        )
    y = df["label"].astype(str).str.strip().to_numpy()
    empty = np.flatnonzero((y == "") | (y == "nan"))
    if empty.size:
        raise DatasetError(f"{path}: empty label at row {empty[0] + 2} ({df['filename'].iloc[empty[0]]})")
    filenames = df["filename"].astype(str).to_numpy()
    parsed = [parse_name(f) for f in filenames]
    gtzan = all(p is not None for p in parsed)
    if labels is None and gtzan:
        labels = GENRES
    if labels is not None:
        allowed = set(labels)
        unknown = sorted(set(y) - allowed)
        if unknown:
            r = int(np.flatnonzero(y == unknown[0])[0])
            raise DatasetError(
                f"{path}: unknown label(s) {', '.join(map(repr, unknown))} (first at row {r + 2}); "
                f"expected one of {', '.join(sorted(allowed))}"
            )
    if gtzan:
        tids = np.array([p[0] for p in parsed])
        segs = np.array([-1 if p[1] is None else p[1] for p in parsed])
        mismatch = np.flatnonzero([genre_of(t) != lab for t, lab in zip(tids, y, strict=True)])
        if mismatch.size:
            r = int(mismatch[0])
            raise DatasetError(f"{path}: row {r + 2}: file {filenames[r]} is labelled {y[r]!r}")
    else:
        # our own tables: "<track>.<segment>.<ext>" naming is not guaranteed; track id column wins
        tids = df["track_id"].astype(str).to_numpy() if "track_id" in df.columns else np.array(
            [Path(f).with_suffix("").as_posix() for f in filenames]
        )
        segs = df["segment"].to_numpy() if "segment" in df.columns else None
    n_classes = len(set(y))
    if n_classes < min_classes:
        raise DatasetError(f"{path}: only {n_classes} class ({', '.join(sorted(set(y)))}); need at least {min_classes}")
    dup = _first_duplicate(list(zip(tids, segs if segs is not None else [None] * len(tids), strict=True)))
    if dup is not None:
        raise DatasetError(f"{path}: row for {dup[0]} (segment {dup[1]}) appears twice")
    return FeatureTable(
        X=values.to_numpy(dtype=np.float64), y=y, track_ids=tids, filenames=filenames, columns=columns,
        segments=segs, source=str(path),
    )


def _first_duplicate(keys: list) -> object | None:
    seen = set()
    for k in keys:
        if k in seen:
            return k
        seen.add(k)
    return None
