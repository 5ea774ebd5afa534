"""Data sources of a run: what tracks exist, their labels, and how a set of tracks becomes model input.

A source turns TRACK ids into arrays, so the runner splits by track (never by row or slice) and any
model reads any source it can take:

* :class:`FeatureSource` -- a feature table (Kaggle's 30 s or 3 s CSV, or audio featurised on the way):
  one row per track or per segment; estimators get ``X [rows, columns]``.
* :class:`LogmelSource` -- one normalised log-mel matrix per track (:class:`LogmelData`, from audio,
  Kaggle images or both); estimators get slices ``X [n, n_mels, frames]`` with the track of each slice.
* :class:`HybridSource` -- both of the above for the tracks they share; each member of a hybrid model
  gets the input of its kind and the members' track probabilities are combined by the hybrid rule.

Log-mel data sources (``load_logmels(source=...)``):

* ``audio`` -- any folder-per-label audio (``genrekit.datasets.scan_audio`` + ``genrekit.audio.load``);
  the model then sees full-resolution log-mels (``time_resolution="full"``).
* ``images`` -- Kaggle ``images_original`` PNGs, inverted onto the audio grid
  (:func:`genrekit.spectrogram.invert_image`, cached under the genrekit cache).
* ``auto`` (default) -- a GTZAN root holding both (like ``../shared/data/gtzan``): every clip that has an
  image is taken from its image, and clips that only have audio (jazz.00054 here) from the audio passed
  through :func:`~genrekit.spectrogram.to_image_grid`. One consistent representation for all 1000
  clips; the model's input description says ``time_resolution="image"`` so prediction treats new audio
  the same way. (Replacing images by audio where audio exists would mix two time resolutions in
  training; ``scripts/image_vs_audio.py`` measures why that matters.)
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import DatasetError, GenrekitError

__all__ = [
    "EMBEDDING_LAYERS",
    "EMBEDDING_SOURCES",
    "STANDARDISE_MODES",
    "Arrays",
    "EmbeddingSource",
    "FeatureSource",
    "domain_stats",
    "embedding_cache_settings",
    "embedding_table",
    "standardise_rows",
    "HybridSource",
    "LogmelData",
    "LogmelSource",
    "audio_logmel_cached",
    "image_band_features",
    "image_feature_columns",
    "join_image_features",
    "load_logmels",
    "load_table",
    "make_slices",
]

LOGMEL_CACHE_VERSION = 1


@dataclass
class Arrays:
    """Model input for a set of tracks: ``X`` (rows or slices), their labels ``y`` and track ids ``groups``."""

    X: Any
    y: np.ndarray
    groups: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


# ============================================================================================ feature tables


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
    through :func:`genrekit.batch.feature_table`, so it shares ``genrekit features``' cache.
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
    from genrekit.batch import feature_table

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


# ============================================================================================ musicnn embeddings

EMBEDDING_LAYERS = ("penultimate", "taggram", "pooled")
EMBEDDING_SOURCES = ("auto", "audio", "images")
STANDARDISE_MODES = ("none", "domain")
# Audio files go through the one per-file musicnn analysis (networks.musicnn.analysis: its cache, shared
# with `genrekit tags` / `embed --backend torch`, and its silence rule: silent patches are left out of the
# track's mean). Kaggle images have per-patch rows ``[taggram | penultimate | pooled]`` keyed by content and
# settings: the layout and settings of scripts/image_to_musicnn.py's cache, so a run and that script share them.
EMBEDDING_NAMESPACE = "musicnn-gtzan"
EMBEDDING_MODEL = "MSD_musicnn"
EMBEDDING_BACKEND = "torch"  # the reference port, as these tables have always been made


def embedding_cache_settings(kind: str, *, features_csv: str | os.PathLike | None = None) -> dict[str, Any]:
    """The cache settings of one kind of musicnn input: ``audio`` (a file's own samples) or ``image`` (a
    Kaggle image through :func:`genrekit.networks.musicnn.embed_image`, whose level comes from ``features_csv``)."""
    from genrekit.engine import file_digest
    from genrekit.networks import musicnn as E

    s: dict[str, Any] = {"kind": kind, "model": EMBEDDING_MODEL, "hop": E.PATCH_HOP, "format": 1}
    if kind == "image":
        if features_csv is None:
            raise DatasetError("image embeddings need the feature table (features_30_sec.csv: rms_mean, length)")
        s["mapping"] = E.IMAGE_MAPPING_VERSION
        s["constants"] = {k: getattr(E, k) for k in ("IMAGE_FIRST_FRAME", "IMAGE_EXTRA_FRAMES", "IMAGE_FLOOR_DB")}
        s["band_offset"] = list(E.IMAGE_BAND_OFFSET)
        s["features_csv"] = file_digest(features_csv)
    elif kind != "audio":
        raise DatasetError(f"unknown embedding kind {kind!r}: audio or image")
    return s


def _embed_item(item: tuple) -> Any:
    """One file's musicnn analysis (audio: per-patch outputs and levels), or an image's per-patch
    ``[taggram | penultimate | pooled]`` rows (module level: runs in workers)."""
    from genrekit.networks.musicnn.analysis import MusicnnSettings, musicnn_analysis
    from genrekit.networks.musicnn.image import embed_image

    kind, path, rms_mean, length = item
    if kind == "audio":
        return musicnn_analysis(path, MusicnnSettings(EMBEDDING_MODEL, EMBEDDING_BACKEND))
    e = embed_image(path, rms_mean=rms_mean, n_samples=length, model=EMBEDDING_MODEL)
    return np.concatenate([e.taggram, e.penultimate, e.pooled], axis=1).astype(np.float32)


def _embedding_cache(kind: str, features_csv: Path | None):
    """Where a kind of input's per-patch outputs are cached: audio in the one analysis cache, images in
    :data:`EMBEDDING_NAMESPACE`."""
    from genrekit import engine
    from genrekit.networks.musicnn.analysis import MusicnnSettings, analysis_cache

    if kind == "audio":
        return analysis_cache(MusicnnSettings(EMBEDDING_MODEL, EMBEDDING_BACKEND))
    return engine.Cache(EMBEDDING_NAMESPACE, embedding_cache_settings(kind, features_csv=features_csv))


def _cached_rows(kind: str, cache, key: str) -> np.ndarray | None:
    """The cached per-patch rows ``[taggram | penultimate | pooled]`` of one input, audible patches only
    for audio (the silence rule of ``networks.musicnn.analysis``), or None when not cached."""
    from genrekit.networks.musicnn.analysis import load_analysis

    if kind != "audio":
        return cache.get_array(key)
    a = load_analysis(cache, key)
    if a is None:
        return None
    e = a.summary()
    return np.concatenate([e.taggram, e.penultimate, e.pooled], axis=1).astype(np.float32)


def _store_rows(kind: str, cache, key: str, result: Any) -> None:
    from genrekit.networks.musicnn.analysis import save_analysis

    if kind == "audio":
        save_analysis(cache, key, result)
    else:
        cache.put_array(key, result)


def _layer_columns(layer: str) -> slice:
    from genrekit.networks import musicnn as E

    t, p = E.N_TAGS, E.N_TAGS + E.N_PENULTIMATE
    return {"taggram": slice(0, t), "penultimate": slice(t, p), "pooled": slice(p, None)}[layer]


def _kaggle_levels(csv: Path) -> dict[str, tuple[float, int]]:
    """track id -> (rms_mean, length in samples) from Kaggle's 30 s table: an image's level and duration."""
    import csv as csvlib

    from genrekit import datasets

    out = {}
    with open(csv, newline="", encoding="utf-8") as f:
        for row in csvlib.DictReader(f):
            tid = datasets.track_id(row.get("filename", ""))
            if tid and row.get("rms_mean") and row.get("length"):
                out[tid] = (float(row["rms_mean"]), int(float(row["length"])))
    return out


def _npz_domains(z, path: Path, n: int) -> np.ndarray:
    """Each row's source domain in an embedding table: its ``domains`` array, else the table's kind
    (``settings`` JSON, as scripts/image_to_musicnn.py writes it: image and audio-as-image are image-derived)."""
    import json

    if "domains" in z.files:
        d = z["domains"].astype(str)
        if d.shape != (n,) or not set(d) <= {"audio", "image"}:
            raise DatasetError(f"{path}: 'domains' must hold 'audio' or 'image' for each of the {n} rows")
        return d
    kind = "audio"
    if "settings" in z.files:
        try:
            kind = str(json.loads(str(z["settings"])).get("kind", "audio"))
        except (ValueError, AttributeError):
            kind = "audio"
    return np.full(n, "image" if kind in ("image", "audio-as-image") else "audio")


def embedding_table(data: str | os.PathLike, *, layer: str = "penultimate", source: str = "auto",
                    progress: bool = True, jobs: int = 1):
    """A :class:`~genrekit.datasets.FeatureTable` of per-track mean musicnn ``layer`` vectors; each row's
    source domain ("audio" or "image") is in ``extra["domains"]`` (domain standardisation needs it).

    ``data``: an ``.npz`` embedding table (``track_ids``, ``labels``, the layer's rows and optionally
    ``domains``, as ``scripts/image_to_musicnn.py embed`` writes them), folder-per-label audio, or a GTZAN
    root. On a GTZAN root ``source="auto"`` takes each track's audio where it exists and its Kaggle image
    elsewhere (:func:`genrekit.networks.musicnn.embed_image`, level and length from features_30_sec.csv);
    ``"audio"`` / ``"images"`` take one kind only. Files are embedded through content-keyed caches (audio:
    the one musicnn analysis cache, silent patches left out of each track's mean; images:
    :data:`EMBEDDING_NAMESPACE`), so a second run, or another layer, reads every file from them.
    Unreadable (or silent) files are left out and listed in ``extra["failed"]``."""
    from genrekit import datasets, engine
    from genrekit.models.base import MUSICNN_LAYERS

    if layer not in EMBEDDING_LAYERS:
        raise DatasetError(f"unknown musicnn layer {layer!r}; choose from {', '.join(EMBEDDING_LAYERS)}")
    if source not in EMBEDDING_SOURCES:
        raise DatasetError(f"unknown embedding source {source!r}; choose from {', '.join(EMBEDDING_SOURCES)}")
    path = Path(data)
    cols = [f"{layer}_mean_{i}" for i in range(MUSICNN_LAYERS[layer])]
    if path.is_file() and path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("track_ids", "labels", layer) if k not in z.files]
            if missing:
                raise DatasetError(f"{path}: not an embedding table (lacks {', '.join(missing)})")
            ids, y, X = z["track_ids"].astype(str), z["labels"].astype(str), z[layer].astype(np.float64)
            if X.ndim != 2 or X.shape != (len(ids), len(cols)):
                raise DatasetError(f"{path}: '{layer}' must be [{len(ids)}, {len(cols)}], got {X.shape}")
            domains = _npz_domains(z, path, len(ids))
        return datasets.FeatureTable(X, y, ids, ids.copy(), cols, source=str(path),
                                     extra={"failed": [], "domains": domains})
    if not path.exists():
        raise DatasetError(f"{path}: not found (give an .npz embedding table, folder-per-label audio or a GTZAN root)")
    # (track id, label, path, kind, rms_mean, length) of every file to embed
    items: list[tuple[str, str, str, str, float | None, int | None]] = []
    csv = None
    if (path / "images_original").is_dir():  # a GTZAN root: audio where it exists, images elsewhere
        g = datasets.GTZAN(path)
        if source != "images":
            items += [(t.track_id, t.label, str(t.path), "audio", None, None) for t in g.audio_tracks()]
        csv = g.feature_csv()
        if source != "audio":
            if csv is None:
                raise DatasetError(f"{path}: image embeddings need features_30_sec.csv (each image's level and "
                                   "length); add it or pass source='audio'")
            levels, have = _kaggle_levels(csv), {i[0] for i in items}
            items += [(t.track_id, t.label, str(t.path), "image", *levels[t.track_id]) for t in g.image_tracks()
                      if t.track_id not in have and t.track_id in levels]
    else:
        if source == "images":
            raise DatasetError(f"{path}: not a GTZAN root with images_original/; image embeddings need one")
        items += [(t.track_id, t.label, str(t.path), "audio", None, None) for t in datasets.scan_audio(path)]
    if not items:
        raise DatasetError(f"{path}: no audio files found")
    unlabelled = [i for i in items if not i[1]]
    if unlabelled:
        raise DatasetError(f"{unlabelled[0][2]}: no genre label ({len(unlabelled)} file(s)); put each file in a "
                           "folder named after its label")
    caches = {k: _embedding_cache(k, csv) for k in {i[3] for i in items}}
    keys: dict[str, str] = {}
    failed: list[tuple[str, str]] = []
    for it in items:
        try:
            keys[it[2]] = caches[it[3]].key(it[2])
        except OSError as exc:
            failed.append((it[2], f"unreadable: {exc}"))
    todo = [(k, p, rms, n) for _, _, p, k, rms, n in items if p in keys and _cached_rows(k, caches[k], keys[p]) is None]
    for (kind, p, _, _), res in engine.run_local(_embed_item, todo, jobs=jobs, desc="musicnn", progress=progress):
        if isinstance(res, engine.ItemError):
            failed.append((p, str(res)))
        else:
            _store_rows(kind, caches[kind], keys[p], res)
    cut = _layer_columns(layer)
    rows, kept = [], []
    for it in items:
        arr = _cached_rows(it[3], caches[it[3]], keys[it[2]]) if it[2] in keys else None
        if arr is not None and len(arr):
            rows.append(np.asarray(arr, dtype=np.float64)[:, cut].mean(axis=0))
            kept.append(it)
    if not kept:
        raise DatasetError(f"{path}: none of the {len(items)} files could be embedded ({failed[0][1] if failed else ''})")
    return datasets.FeatureTable(np.vstack(rows), np.array([i[1] for i in kept]), np.array([i[0] for i in kept]),
                                 np.array([i[2] for i in kept]), cols, source=str(path),
                                 extra={"failed": failed, "domains": np.array([i[3] for i in kept])})


def domain_stats(X: np.ndarray, domains: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Mean and std (+1e-6) of each source domain's rows, as the shipped default's ``domain-z`` computes
    them; call it on a fold's TRAINING rows only. A domain with fewer than 2 rows gets no statistics
    (its rows are then standardised with audio's, as :func:`genrekit.predict.musicnn_vectors` does)."""
    X, domains = np.asarray(X, dtype=np.float64), np.asarray(domains).astype(str)
    out = {d: (X[domains == d].mean(axis=0), X[domains == d].std(axis=0) + 1e-6)
           for d in ("audio", "image") if np.sum(domains == d) >= 2}
    if "audio" not in out:
        raise DatasetError(f"domain standardisation needs at least 2 audio-derived training tracks (got "
                           f"{int(np.sum(domains == 'audio'))}): new audio is standardised with their statistics")
    return out


def standardise_rows(inp: dict, X: np.ndarray, domains: np.ndarray) -> np.ndarray:
    """Rows as a musicnn head with input block ``inp`` takes them: each row standardised with its
    domain's stored statistics (none stored: unchanged). The same rule as prediction applies."""
    from genrekit.predict import musicnn_vectors

    if not inp.get("standardise"):
        return X
    out = np.empty(np.shape(X), dtype=np.float64)
    domains = np.asarray(domains).astype(str)
    for d in np.unique(domains):
        m = domains == d
        out[m] = musicnn_vectors(inp, X[m], domain=str(d))
    return out


class EmbeddingSource(FeatureSource):
    """musicnn embeddings as a run's data: a :class:`FeatureSource` whose rows are per-track mean
    musicnn vectors (:func:`embedding_table`), and whose fitted models carry a ``musicnn`` input, so the
    saved file classifies audio with ``genrekit predict`` like any other model.

    ``standardise="domain"``: each fit computes every source domain's mean and std on its TRAINING rows
    (never valid or test), standardises all rows with them and stores them in the model's input, where
    prediction applies them (audio's to new audio)."""

    kind = "features"

    def __init__(self, table, *, layer: str = "penultimate", standardise: str = "none"):
        super().__init__(table)
        if standardise not in STANDARDISE_MODES:
            raise DatasetError(f"unknown standardisation {standardise!r}; choose from {', '.join(STANDARDISE_MODES)}")
        self.layer = layer
        self.standardise = standardise
        domains = table.extra.get("domains")
        self.domains = np.full(len(self.labels), "audio") if domains is None else np.asarray(domains).astype(str)
        if self.domains.shape != self.labels.shape:
            raise DatasetError(f"{self.source}: {len(self.domains)} domains for {len(self.labels)} rows")

    @classmethod
    def load(cls, data: str | os.PathLike, *, layer: str = "penultimate", standardise: str = "none",
             source: str = "auto", progress: bool = True, jobs: int = 1, **_ignored: Any) -> EmbeddingSource:
        return cls(embedding_table(data, layer=layer, source=source, progress=progress, jobs=jobs), layer=layer,
                   standardise=standardise)

    @property
    def failed(self) -> list[tuple[str, str]]:
        return list(self.table.extra.get("failed", []))

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{super().fingerprint()}|{','.join(self.domains)}".encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        doms = {str(d): int(np.sum(self.domains == d)) for d in np.unique(self.domains)}
        return {**super().describe(), "musicnn": {"model": EMBEDDING_MODEL, "layer": self.layer, "pool": "mean",
                                                  "standardise": self.standardise, "domains": doms}}

    def input_for(self, train_rows: np.ndarray) -> dict:
        """The input block of a model fitted on ``train_rows``: with its domain statistics from those rows."""
        from genrekit.models.base import musicnn_input

        stats = domain_stats(self.table.X[train_rows], self.domains[train_rows]) if self.standardise == "domain" else None
        return musicnn_input(list(self.table.columns), layer=self.layer, standardise=stats)

    def model_arrays(self, model, tracks: Sequence[str]) -> Arrays:
        """The rows of ``tracks`` standardised as ``model``'s input block says (its training side's stats)."""
        idx = self.rows(tracks)
        inp = getattr(model, "input_", None) or {}
        return Arrays(standardise_rows(inp, self.table.X[idx], self.domains[idx]), self.labels[idx],
                      self.track_ids[idx])

    def fit(self, model, train: Sequence[str], valid: Sequence[str]) -> None:
        """Fit ``model`` on the rows of ``train`` (standardised with their own statistics when asked),
        tuning on ``valid``'s rows standardised with the same statistics."""
        tr, va = self.rows(train), self.rows(valid)
        if not len(tr):
            raise DatasetError(f"{self.source or 'the embedding table'}: no rows of the training tracks")
        inp = self.input_for(tr)
        X = self.table.X
        model.fit(standardise_rows(inp, X[tr], self.domains[tr]), self.labels[tr],
                  X_valid=standardise_rows(inp, X[va], self.domains[va]) if len(va) else None,
                  y_valid=self.labels[va] if len(va) else None, feature_names=list(self.table.columns),
                  segment_seconds=None)
        model.input_ = inp


# ============================================================================================ log-mel


@dataclass
class LogmelData:
    """One normalised log-mel matrix per track, with its label and where it came from."""

    matrices: list[np.ndarray]
    labels: np.ndarray
    track_ids: np.ndarray
    sources: np.ndarray  # "image" | "audio"
    time_resolution: str
    failed: list[tuple[str, str]]

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for t, lab, s in zip(self.track_ids, self.labels, self.sources, strict=True):
            h.update(f"{t}|{lab}|{s};".encode())
        return h.hexdigest()[:16]


def audio_logmel_cached(path: str | os.PathLike, *, sr: int = 22050, n_fft: int = 2048, hop_length: int = 512,
                        n_mels: int = 128, time_resolution: str = "full", cache: bool = True) -> np.ndarray:
    """Log-mel of an audio file, cached by file content + parameters (:class:`genrekit.engine.Cache`)."""
    from genrekit import audio, engine, spectrogram

    settings = {"sr": sr, "n_fft": n_fft, "hop": hop_length, "n_mels": n_mels, "tr": time_resolution,
                "v": LOGMEL_CACHE_VERSION}
    store = engine.Cache("logmel", settings, enabled=cache)
    key = None
    if cache:
        try:
            key = store.key(path)
        except OSError:
            key = None  # unreadable: audio.load below says why, in its own words
        hit = store.get_array(key) if key is not None else None
        if hit is not None:
            return hit
    y = audio.load(path, sr=sr)
    m = spectrogram.logmel(y, sr=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, time_resolution=time_resolution)
    if key is not None:
        try:
            store.put_array(key, m)
        except OSError:
            pass  # a full or read-only cache costs time, not correctness
    return m


def load_logmels(data_path: str | os.PathLike, *, source: str = "auto", sr: int = 22050, n_fft: int = 2048,
                 hop_length: int = 512, n_mels: int = 128, cache: bool = True, progress: bool = True,
                 time_resolution: str | None = None, genres_only: bool = False) -> LogmelData:
    """Log-mel matrices for every track under ``data_path`` (see the module docstring for ``source``).

    Bad files are skipped and listed in ``failed`` (path, reason); the rest load. ``time_resolution``
    forces how audio is computed (a fine-tuned image-trained model wants ``"image"``).
    """
    from tqdm import tqdm

    from genrekit import datasets, spectrogram

    root = Path(data_path).expanduser()
    if not root.exists():
        raise DatasetError(f"{root}: no such file or folder (give an audio folder, a GTZAN root or images_original)")
    if source not in ("auto", "audio", "images"):
        raise GenrekitError(f"unknown data source {source!r}: use auto, audio or images")
    image_root = None
    if source in ("auto", "images"):
        if (root / "images_original").is_dir():
            image_root = root / "images_original"
        elif root.is_dir() and any(root.rglob("*.png")):
            image_root = root
        elif source == "images":
            raise DatasetError(f"{root}: holds no Kaggle images (images_original/<genre>/*.png)")
    items: list[tuple[str, str, Path, str]] = []  # (track id, label, path, kind)
    if image_root is not None:
        for t in datasets.scan_images(image_root):
            items.append((t.track_id, t.label, t.path, "image"))
    if source != "images":
        have = {i[0] for i in items}
        if image_root is not None:
            audio_dirs = datasets.GTZAN(root).audio_dirs if root == image_root.parent else []
        else:
            audio_dirs = [root]
        for t in (datasets.scan_audio(audio_dirs, genres_only=genres_only) if audio_dirs else []):
            if t.track_id not in have:
                items.append((t.track_id, t.label, t.path, "audio"))
    if not items:
        raise DatasetError(f"{root}: found no audio files or Kaggle images to train on")
    unlabelled = [str(p) for _, lab, p, _ in items if not lab]
    if unlabelled:
        raise DatasetError(
            f"{unlabelled[0]}: no label (put each file in a folder named after its label); "
            f"{len(unlabelled)} such file(s)"
        )
    time_res = time_resolution or ("image" if image_root is not None else "full")
    mats, labs, tids, srcs, failed = [], [], [], [], []
    for tid, lab, path, kind in tqdm(items, desc="log-mel", unit="track", disable=not progress, file=sys.stderr):
        try:
            if kind == "image":
                m = spectrogram.invert_image_cached(path, n_mels=n_mels) if cache else spectrogram.invert_image(path, n_mels=n_mels)
            else:
                m = audio_logmel_cached(path, sr=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels,
                                        time_resolution=time_res, cache=cache)
        except GenrekitError as exc:
            failed.append((str(path), str(exc)))
            continue
        mats.append(m)
        labs.append(lab)
        tids.append(tid)
        srcs.append(kind)
    if not mats:
        raise DatasetError(f"{root}: none of the {len(items)} files could be read ({failed[0][1]})")
    return LogmelData(mats, np.array(labs), np.array(tids), np.array(srcs), time_res, failed)


def make_slices(data: LogmelData, idx, *, width: int, overlap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slices of ``width`` frames from the tracks ``idx`` -> (X, labels, track ids), one row per slice."""
    from genrekit.spectrogram import slice_starts

    xs, ys, gs = [], [], []
    for i in idx:
        m = data.matrices[i]
        if m.shape[1] < width:
            m = np.pad(m, ((0, 0), (0, width - m.shape[1])))
        starts = slice_starts(m.shape[1], width=width, overlap=overlap)
        xs.append(np.stack([m[:, s : s + width] for s in starts]))
        ys += [data.labels[i]] * len(starts)
        gs += [data.track_ids[i]] * len(starts)
    if not xs:
        return np.zeros((0, data.matrices[0].shape[0], width), np.float32), np.array([]), np.array([])
    return np.concatenate(xs).astype(np.float32), np.array(ys), np.array(gs)


class LogmelSource:
    """Log-mel matrices as a run's data: slices of the tracks asked for, in the order asked.

    Training slices are ``width + train_extra_frames`` wide (the extra frames feed the random-crop
    augmentation) cut with ``train_overlap``; early-stopping slices use ``valid_overlap``; test slices
    ``eval_overlap``, the overlap prediction uses (recorded in :meth:`input_description`). ``input``
    overrides the input description (fine-tuning keeps the source model's).
    """

    kind = "logmel"
    segment_unit = "slice"

    def __init__(self, data: LogmelData, *, slice_seconds: float = 3.0, train_overlap: float = 0.0,
                 valid_overlap: float = 0.0, eval_overlap: float = 0.5, train_extra_frames: int = 0,
                 input: dict | None = None, width: int | None = None, source: str = "auto", path: str = ""):
        from genrekit import spectrogram

        self.data = data
        self.slice_seconds = float(slice_seconds)
        self.train_overlap = float(train_overlap)
        self.valid_overlap = float(valid_overlap)
        self.eval_overlap = float(eval_overlap)
        self.train_extra_frames = int(train_extra_frames)
        self.width = int(width or spectrogram.slice_frames(seconds=slice_seconds))
        self.input = dict(input) if input else spectrogram.input_description(
            slice_seconds=slice_seconds, slice_overlap=eval_overlap, time_resolution=data.time_resolution)
        self.source_kind = source
        self.path = str(path)
        self.track_ids = np.asarray(data.track_ids).astype(str)
        self.labels = np.asarray(data.labels).astype(str)
        self._pos = {t: i for i, t in enumerate(self.track_ids)}

    @classmethod
    def load(cls, data_path: str | os.PathLike, *, source: str = "auto", progress: bool = True,
             cache: bool = True, time_resolution: str | None = None, sr: int = 22050, n_fft: int = 2048,
             hop_length: int = 512, n_mels: int = 128, **slicing: Any) -> LogmelSource:
        """:func:`load_logmels` of ``data_path``; ``slicing`` are this class's slice settings."""
        data = load_logmels(data_path, source=source, progress=progress, cache=cache, time_resolution=time_resolution,
                            sr=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
        return cls(data, source=source, path=str(data_path), **slicing)

    @property
    def source(self) -> str:
        return self.path

    @property
    def segmented(self) -> bool:
        return True

    @property
    def segment_seconds(self) -> float:
        return self.slice_seconds

    @property
    def failed(self) -> list[tuple[str, str]]:
        return list(self.data.failed)

    def fingerprint(self) -> str:
        return self.data.fingerprint()

    def describe(self) -> dict[str, Any]:
        srcs = self.data.sources
        return {
            "n_tracks": int(len(self.track_ids)), "n_rows": int(len(self.track_ids)), "segmented": True,
            "segment_seconds": self.slice_seconds, "source": self.source_kind,
            "time_resolution": self.data.time_resolution,
            "sources_count": {str(s): int(np.sum(srcs == s)) for s in np.unique(srcs)},
            "input": self.input,
        }

    def positions(self, tracks: Sequence[str]) -> list[int]:
        """Index of each of ``tracks`` in :attr:`data`, in the order given."""
        return [self._pos[str(t)] for t in tracks]

    def arrays(self, tracks: Sequence[str], role: str = "test") -> Arrays:
        """Slices of ``tracks``: ``role`` "train", "valid" or "test" sets their width and overlap."""
        if role == "train":
            width, overlap = self.width + self.train_extra_frames, self.train_overlap
        elif role == "valid":
            width, overlap = self.width, self.valid_overlap
        elif role == "test":
            width, overlap = self.width, self.eval_overlap
        else:
            raise GenrekitError(f"unknown role {role!r}: use train, valid or test")
        X, y, g = make_slices(self.data, self.positions(tracks), width=width, overlap=overlap)
        return Arrays(X, y, g)

    def fit(self, model, train: Sequence[str], valid: Sequence[str]) -> None:
        """Fit ``model`` on the slices of ``train``, early-stopping on the slices of ``valid`` (may be empty)."""
        tr, va = self.arrays(train, "train"), self.arrays(valid, "valid")
        if not len(tr):
            raise DatasetError(f"{self.path or 'log-mel data'}: no slices of the training tracks")
        has_valid = len(valid) > 0
        model.fit(tr.X, tr.y, groups=tr.groups, X_valid=va.X if has_valid else None,
                  y_valid=va.y if has_valid else None, groups_valid=va.groups if has_valid else None)

    def predict(self, model, tracks: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        te = self.arrays(tracks, "test")
        return te.groups, te.y, model.predict_proba(te.X), [str(c) for c in model.classes_]


# ============================================================================================ hybrid


def _member_reads(member) -> str:
    """Which input a hybrid member takes when its hybrid does not say (a hybrid loaded from a file):
    log-mel slices for deep models, embeddings for musicnn heads, feature rows otherwise."""
    if getattr(member, "kind", None) == "deep":
        return "logmel"
    return "musicnn" if (getattr(member, "input_", None) or {}).get("type") == "musicnn" else "features"


HYBRID_PARTS = ("logmel", "musicnn", "features")


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
                 musicnn: EmbeddingSource | None = None):
        from genrekit import datasets

        self.logmel, self.features, self.musicnn = logmel, features, musicnn
        present = {k: v for k, v in (("logmel", logmel), ("musicnn", musicnn), ("features", features)) if v is not None}
        if len(present) < 1 or (len(present) == 1 and "features" in present):
            raise DatasetError("a hybrid's data needs log-mel or musicnn data, and usually a second part")
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
