"""Feature tables as a run's data: Kaggle's CSVs, or audio featurised on the way (through ``genrekit
features``' cache), optionally with per-band statistics of Kaggle's images; and :class:`Arrays`, what
every source hands a model."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import DatasetError, GenrekitError

__all__ = [
    "Arrays", "FeatureSource", "check_labels", "image_band_features", "image_feature_columns",
    "join_image_features", "load_table",
]


@dataclass
class Arrays:
    """Model input for a set of tracks: ``X`` (rows or slices), their labels ``y`` and track ids ``groups``."""

    X: Any
    y: np.ndarray
    groups: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


def check_labels(track_ids, labels, source: str) -> None:
    """What a run needs beyond what the loader checks: two classes or more, two tracks or more per class."""
    y = np.asarray(labels).astype(str)
    classes = np.unique(y)
    if classes.size < 2:
        raise DatasetError(f"{source}: only one class ({classes[0] if classes.size else 'none'}); a classifier needs at least 2")
    tids = np.asarray(track_ids).astype(str)
    few = [c for c in classes if np.unique(tids[y == c]).size < 2]
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
    for audio, one row per segment of that length (e.g. 3.0, like Kaggle's 3 s table). Audio goes
    through :func:`genrekit.run.features.feature_table`, so it shares ``genrekit features``' cache.
    """
    from genrekit import datasets

    path = Path(data)
    if not path.exists():
        raise DatasetError(f"{path}: not found (give a feature CSV such as features_30_sec.csv, or audio folders)")
    if path.is_file() and path.suffix.lower() == ".csv":
        table = datasets.load_feature_table(path)
    else:
        table = _audio_table(path, progress=progress, segment_seconds=segment_seconds)
    check_labels(table.track_ids, table.y, str(path))
    if image_root is not None:
        table = join_image_features(table, image_root, progress=progress)
    return table


def _audio_table(path: Path, *, progress: bool, segment_seconds: float | None = None):
    """The 57 Kaggle features of the labelled audio under ``path``, through ``genrekit features``' cache."""
    from genrekit import datasets
    from genrekit.run.features import feature_table

    tracks = datasets.scan_audio([path])
    if not tracks:
        raise DatasetError(f"{path}: no audio files found (and not a .csv feature table)")
    unlabelled = [t for t in tracks if not t.label]
    if unlabelled:
        raise DatasetError(
            f"{unlabelled[0].path}: no genre label ({len(unlabelled)} file(s)); training needs GTZAN-style names "
            "(blues.00012.wav) or one folder per genre"
        )
    table = feature_table(tracks, progress=progress, segment_seconds=segment_seconds)
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
    """Names of the columns :func:`join_image_features` appends."""
    return [f"img_band{i:02d}_mean" for i in range(n_bands)] + [f"img_band{i:02d}_std" for i in range(n_bands)]


def join_image_features(table, image_root: str | os.PathLike, *, n_bands: int = 32, progress: bool = True):
    """Append image-derived columns to each row by track id; rows whose track has no image are dropped.

    The dropped tracks are listed in ``table.extra["image_missing"]`` (Kaggle lacks jazz00054's image).
    """
    from tqdm.auto import tqdm

    from genrekit import datasets
    from genrekit.spectrogram import invert_image_cached

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
            feats[t] = image_band_features(invert_image_cached(images[t]), n_bands=n_bands)
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


class FeatureSource:
    """A feature table as a run's data: rows of the tracks asked for, in the table's order.

    ``track_ids`` / ``labels`` are per row (a 3 s table repeats a track's id on each of its segments);
    the runner's folds reduce them to tracks, and :meth:`arrays` maps tracks back to their rows.
    """

    kind = "features"
    segment_unit = "segment"

    def __init__(self, table):
        self.table = table
        check_labels(table.track_ids, table.y, getattr(table, "source", "") or "table")
        self.track_ids = np.asarray(table.track_ids).astype(str)
        self.labels = np.asarray(table.y).astype(str)

    @classmethod
    def load(cls, data: str | os.PathLike, *, image_root: str | os.PathLike | None = None,
             segment_seconds: float | None = None, progress: bool = True) -> FeatureSource:
        """A feature CSV or audio folders (see :func:`load_table`)."""
        return cls(load_table(data, image_root=image_root, segment_seconds=segment_seconds, progress=progress))

    @property
    def source(self) -> str:
        return str(getattr(self.table, "source", ""))

    @property
    def segmented(self) -> bool:
        return bool(self.table.is_segmented)

    @property
    def segment_seconds(self) -> float | None:
        return float(self.table.extra.get("segment_seconds", 3.0)) if self.segmented else None

    @property
    def failed(self) -> list[tuple[str, str]]:
        return []

    def fingerprint(self) -> str:
        return self.table.fingerprint()

    def describe(self) -> dict[str, Any]:
        """What metrics.json records about the data."""
        out: dict[str, Any] = {
            "n_tracks": int(np.unique(self.track_ids).size), "n_rows": int(len(self.labels)),
            "segmented": self.segmented, "segment_seconds": self.segment_seconds,
            "columns": list(self.table.columns),
        }
        if self.table.extra.get("image_root"):
            out["image_features"] = {"root": self.table.extra["image_root"],
                                     "tracks_without_image": self.table.extra.get("image_missing", [])}
        return out

    def rows(self, tracks: Sequence[str]) -> np.ndarray:
        """Row indices of ``tracks``, in the table's order."""
        return np.flatnonzero(np.isin(self.track_ids, np.asarray(tracks, dtype=str)))

    def arrays(self, tracks: Sequence[str], role: str = "test") -> Arrays:
        """The rows of ``tracks`` (the same for every role: a table has no slicing)."""
        idx = self.rows(tracks)
        if len(idx) == len(self.labels):  # every row: the table itself (a copy may round differently in BLAS)
            return Arrays(self.table.X, self.labels, self.track_ids)
        return Arrays(self.table.X[idx], self.labels[idx], self.track_ids[idx])

    def model_arrays(self, model, tracks: Sequence[str]) -> Arrays:
        """The rows of ``tracks`` as ``model`` takes them (a table's rows as they are)."""
        return self.arrays(tracks, "test")

    def fit(self, model, train: Sequence[str], valid: Sequence[str]) -> None:
        """Fit ``model`` on the rows of ``train``, tuning or early-stopping on ``valid`` (may be empty)."""
        tr, va = self.arrays(train, "train"), self.arrays(valid, "valid")
        if not len(tr):
            raise DatasetError(f"{self.source or 'the feature table'}: no rows of the training tracks")
        model.fit(tr.X, tr.y, X_valid=va.X if len(va) else None, y_valid=va.y if len(va) else None,
                  feature_names=list(self.table.columns), segment_seconds=self.segment_seconds)

    def predict(self, model, tracks: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """(segment track ids, segment labels, probabilities in ``model.classes_`` order, model classes)."""
        te = self.model_arrays(model, tracks)
        return te.groups, te.y, model.predict_proba(te.X), [str(c) for c in model.classes_]
