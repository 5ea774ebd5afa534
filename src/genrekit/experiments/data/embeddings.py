"""musicnn embeddings as a run's data: per-track mean vectors of one layer, from audio or (GTZAN tracks
without audio) from Kaggle's images, through a content-keyed cache; domain standardisation fitted on a
fold's training rows only."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import DatasetError
from genrekit.experiments.data.tables import Arrays, FeatureSource

__all__ = [
    "EMBEDDING_LAYERS", "EMBEDDING_MODEL", "EMBEDDING_NAMESPACE", "EMBEDDING_SOURCES", "STANDARDISE_MODES",
    "EmbeddingSource", "domain_stats", "embedding_cache_settings", "embedding_table", "standardise_rows",
]

EMBEDDING_LAYERS = ("penultimate", "taggram", "pooled")
EMBEDDING_SOURCES = ("auto", "audio", "images")
STANDARDISE_MODES = ("none", "domain")
# Per-patch rows ``[taggram | penultimate | pooled]`` of every file, keyed by content and settings: the
# layout and settings of scripts/image_to_musicnn.py's cache, so a run and that script share each entry.
EMBEDDING_NAMESPACE = "musicnn-gtzan"
EMBEDDING_MODEL = "MSD_musicnn"
EMBEDDING_BACKEND = "torch"  # the reference port, as these tables have always been made


def embedding_cache_settings(kind: str, *, features_csv: str | os.PathLike | None = None) -> dict[str, Any]:
    """The cache settings of one kind of musicnn input: ``audio`` (a file's own samples) or ``image`` (a
    Kaggle image through :func:`genrekit.networks.musicnn.embed_image`, whose level comes from ``features_csv``)."""
    from genrekit.networks import musicnn as E
    from genrekit.store import file_digest

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
    from genrekit.networks.musicnn.analysis import MusicnnSettings, analysis_cache
    from genrekit.store import Cache

    if kind == "audio":
        return analysis_cache(MusicnnSettings(EMBEDDING_MODEL, EMBEDDING_BACKEND))
    return Cache(EMBEDDING_NAMESPACE, embedding_cache_settings(kind, features_csv=features_csv))


def _rows(value: Any) -> np.ndarray:
    """Per-patch rows ``[taggram | penultimate | pooled]`` of an image's array or an audio analysis,
    audible patches only for audio (the silence rule of ``networks.musicnn.analysis``)."""
    from genrekit.networks.musicnn.analysis import MusicnnAnalysis

    if not isinstance(value, MusicnnAnalysis):
        return value
    e = value.summary()
    return np.concatenate([e.taggram, e.penultimate, e.pooled], axis=1).astype(np.float32)


def _load_rows(cache, kind: str, key: str) -> Any:
    from genrekit.networks.musicnn.analysis import load_analysis

    return load_analysis(cache, key) if kind == "audio" else cache.get_array(key)


def _store_rows(cache, kind: str, key: str, result: Any) -> None:
    from genrekit.networks.musicnn.analysis import save_analysis

    if kind == "audio":
        save_analysis(cache, key, result)
    else:
        cache.put_array(key, result)


def _layer_columns(layer: str) -> slice:
    from genrekit.networks import musicnn as E

    t, p = E.N_TAGS, E.N_TAGS + E.N_PENULTIMATE
    return {"taggram": slice(0, t), "penultimate": slice(t, p), "pooled": slice(p, None)}[layer]


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


def check_labelled(items: Sequence[tuple], path: Path) -> None:
    """A table's items ``(track_id, label, path, ...)``: at least one, each with a genre label (its folder)."""
    if not items:
        raise DatasetError(f"{path}: no audio files found")
    unlabelled = [i for i in items if not i[1]]
    if unlabelled:
        raise DatasetError(f"{unlabelled[0][2]}: no genre label ({len(unlabelled)} file(s)); put each file in a "
                           "folder named after its label")


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
    from genrekit import datasets
    from genrekit.models.inputs import MUSICNN_LAYERS
    from genrekit.run.cached import cached_map
    from genrekit.run.engines import LocalEngine
    from genrekit.run.items import ItemError

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
            levels, have = datasets.kaggle_levels(csv), {i[0] for i in items}
            items += [(t.track_id, t.label, str(t.path), "image", *levels[t.track_id]) for t in g.image_tracks()
                      if t.track_id not in have and t.track_id in levels]
    else:
        if source == "images":
            raise DatasetError(f"{path}: not a GTZAN root with images_original/; image embeddings need one")
        items += [(t.track_id, t.label, str(t.path), "audio", None, None) for t in datasets.scan_audio(path)]
    check_labelled(items, path)
    caches = {k: _embedding_cache(k, csv) for k in {i[3] for i in items}}
    cut = _layer_columns(layer)
    means: dict[str, np.ndarray] = {}
    failed: list[tuple[str, str]] = []
    # an item is (kind, path, rms_mean, length); its key names its kind's cache and the file's digest
    for r in cached_map(_embed_item, [(k, p, rms, n) for _, _, p, k, rms, n in items], None, desc="musicnn",
                        engine=LocalEngine(jobs=jobs, progress=progress), key=lambda it: (it[0], caches[it[0]].key(it[1])),
                        load=lambda k: _load_rows(caches[k[0]], *k), save=lambda k, a: _store_rows(caches[k[0]], *k, a),
                        key_error=lambda it, exc: ItemError("", f"unreadable: {exc}")):
        if not r.ok:
            failed.append((r.input[1], str(r.error)))
        elif len(rows := _rows(r.value)):  # audio: its audible patches only
            means[r.input[1]] = np.asarray(rows, dtype=np.float64)[:, cut].mean(axis=0)
    rows, kept = [], []
    for it in items:
        if it[2] in means:
            rows.append(means[it[2]])
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
        from genrekit.models.inputs import musicnn_input

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
