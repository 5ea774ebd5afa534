"""Batch work over many files: feature rows and prediction records, on any engine, into any sink.

One loop serves ``genrekit features``, ``genrekit predict``, training on audio and Python callers:

- producers: :func:`feature_rows` (through the one feature cache, keyed by the file's bytes and
  :meth:`genrekit.features.FeatureSettings.cache_settings`) and :func:`predict_records`; each yields one
  :class:`Result` per input as it completes, and a bad input is a failed result, never the end of the
  batch;
- engines: :class:`LocalEngine` (this process, or ``jobs`` worker processes: ``engine.run_local``) or
  ``genrekit.engine_ray.RayEngine``; both run a picklable per-file task;
- sinks: :class:`CsvSink` (the feature table), :class:`JournalSink` (records journalled as they come,
  rendered once at the end: ``predict --out FILE``) and :class:`ParquetSink` (Parquet parts + manifest,
  for libraries of any size). A sink knows which inputs an earlier run finished (:meth:`Sink.pending`),
  so a killed run, rerun, does only what is left. For the CSV table the feature cache plays that part.

>>> sink = ParquetSink("out/", kind="predict", settings={"model": "shipped"}, to_rows=lambda r: [r])
>>> todo = sink.pending(files)
>>> write(predict_records(todo, GenreClassifier.load(), LocalEngine(jobs=4)), sink)
"""

from __future__ import annotations

import copy
import csv
import functools
import hashlib
import io
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from genrekit.engine import Cache, ItemError, atomic_write_text, run_local, safe_start_method
from genrekit.errors import GenrekitError, ModelError
from genrekit.networks import BACKENDS
from genrekit.networks.musicnn.analysis import (
    CACHE_VERSION,
    MusicnnAnalysis,
    MusicnnSettings,
    analysis_cache,
    load_analysis,
    musicnn_analysis,
    patch_levels,
    save_analysis,
)
from genrekit.networks.musicnn.spec import LAYERS
from genrekit.parquet_out import MANIFEST, PartitionedOutput, input_stat, settings_key

if TYPE_CHECKING:
    from genrekit.datasets import FeatureTable, Track
    from genrekit.features import FeatureSettings
    from genrekit.predict import GenreClassifier

__all__ = [
    "EMBED_LAYERS", "CsvSink", "Engine", "JournalSink", "LocalEngine", "ModelBlob", "MusicnnAnalysis",
    "MusicnnSettings", "MusicnnTask", "ParquetSink", "PredictTask", "Result", "Sink", "Summary", "TableSink",
    "check_layers", "embedding_results", "embedding_rows", "embedding_settings", "error_text", "extract_file",
    "feature_analyses", "feature_cache", "feature_header", "feature_rows", "feature_table", "find_audio",
    "musicnn_analyses", "musicnn_analysis", "musicnn_cache", "musicnn_embeddings", "musicnn_tags", "patch_levels",
    "predict_records", "predict_settings", "record_result", "rows_from_analysis", "tag_error_record",
    "tag_record", "tag_results", "write", "write_embeddings",
]


@dataclass(frozen=True)
class Result:
    """One input's outcome: its value (feature rows, an analysis, a prediction record) or why it failed.

    A failed prediction keeps its error record as ``value`` (it is part of ``predict``'s output)."""

    input: str
    value: Any = None
    error: ItemError | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def find_audio(paths: Iterable[str | os.PathLike], *, unique: bool = True) -> tuple[list[str], list[tuple[str, ItemError]]]:
    """Audio files under ``paths`` (files or folders, recursively, in walk order; each once unless
    ``unique=False``) and the paths that could not be walked, with why (missing, unsupported)."""
    from genrekit.audio import iter_audio_files

    files: list[str] = []
    errors: list[tuple[str, ItemError]] = []
    seen: set[str] = set()
    for raw in paths:
        try:
            found = [str(f) for f in iter_audio_files([raw])]
        except GenrekitError as exc:
            errors.append((str(raw), ItemError.from_exception(exc)))
            continue
        for f in found:
            if not unique or f not in seen:
                seen.add(f)
                files.append(f)
    return files, errors


# ============================================================================================ engines


class Engine(Protocol):
    """Runs a picklable per-file ``task`` over ``items``, yielding ``(item, value | ItemError)``."""

    def map(self, task: Callable[[str], Any], items: Sequence[str], *, desc: str) -> Iterator[tuple[str, Any]]: ...


@dataclass
class LocalEngine:
    """This machine: in this process (``jobs=1``) or a pool of ``jobs`` worker processes (None: one per
    CPU), through ``engine.run_local`` (a dying worker fails only its item). Results come as they
    complete. A task that holds torch state says ``fork_safe = False`` and gets forkserver workers."""

    jobs: int | None = 1
    progress: bool = True

    @property
    def workers(self) -> int:
        return max(1, int(self.jobs or os.cpu_count() or 1))

    def map(self, task: Callable[[str], Any], items: Sequence[str], *, desc: str = "batch") -> Iterator[tuple[str, Any]]:
        method = None if getattr(task, "fork_safe", True) else safe_start_method()
        yield from run_local(task, items, jobs=self.workers, progress=self.progress, desc=desc, start_method=method)


# ============================================================================================ features


def feature_cache(settings: FeatureSettings, *, enabled: bool = True, root: str | os.PathLike | None = None) -> Cache:
    """The feature cache for ``settings``: the one place every feature path reads and writes."""
    return Cache("features", settings.cache_settings(), root=root, enabled=enabled)


def _digest_error(path: str, exc: OSError) -> ItemError:
    kind = "AudioFileNotFoundError" if isinstance(exc, FileNotFoundError) else type(exc).__name__
    return ItemError(kind, f"{path}: {exc.strerror or exc}")


def feature_analyses(
    files: Iterable[str | os.PathLike], settings: FeatureSettings | None = None, engine: Engine | None = None, *,
    cache: bool | Cache = True,
) -> Iterator[Result]:
    """Each file's analysis (``features.analyse_file``: values without names), from the feature cache or
    computed by ``engine`` (default: this process) and then cached. Cache hits come first, in input
    order, then the computed ones as they complete."""
    from genrekit.features import FeatureSettings

    settings = settings or FeatureSettings()
    store = cache if isinstance(cache, Cache) else feature_cache(settings, enabled=bool(cache))
    yield from _through_cache(files, settings.analyse, engine, desc="features", name="feature", key=store.key,
                              load=store.get, save=store.put)


def _through_cache(
    files: Iterable[str | os.PathLike], task: Callable[[str], Any], engine: Engine | None, *, desc: str, name: str,
    key: Callable[[str], str], load: Callable[[str], Any], save: Callable[[str, Any], None],
) -> Iterator[Result]:
    """``task`` of each file through a content cache: hits (``load(key(file))`` not None) first, in input
    order, then the computed ones (``engine``, default this process) as they complete, each saved."""
    keys: dict[str, str] = {}
    todo: list[str] = []
    for raw in files:
        f = str(raw)
        try:
            k = key(f)
        except OSError as exc:
            yield Result(f, error=_digest_error(f, exc))
            continue
        hit = load(k)
        if hit is not None:
            yield Result(f, hit, cached=True)
        else:
            keys[f] = k
            todo.append(f)
    if not todo:
        return
    for path, res in (engine or LocalEngine()).map(task, todo, desc=desc):
        if isinstance(res, ItemError):
            yield Result(path, error=res)
            continue
        try:
            save(keys[path], res)
        except OSError as exc:  # a full or read-only cache must not lose the results
            warnings.warn(f"{name} cache not written ({exc})", stacklevel=3)
        yield Result(path, res)


def rows_from_analysis(path: str | os.PathLike, analysis: list[dict], *, extended: bool = False) -> list[dict[str, object]]:
    """Feature rows named after ``path``: ``filename, length, <features>, label, track_id``.

    ``label`` is the genre-named parent folder ('' otherwise); segment rows are named ``<stem>.<i><ext>``
    like Kaggle's 3-second table (``blues.00000.0.wav``)."""
    from genrekit.datasets import label_from_path, segment_filename, track_id
    from genrekit.errors import FeatureError
    from genrekit.features import columns

    p = Path(path)
    tid, label = track_id(p.name) or p.stem, label_from_path(p)
    names = columns(extended=extended)
    rows = []
    for a in analysis:
        if len(a["values"]) != len(names):
            raise FeatureError(f"{p}: {len(a['values'])} values for {len(names)} columns (stale cache entry?)")
        rows.append({"filename": segment_filename(p, a["segment"]), "length": int(a["length"]),
                     **dict(zip(names, a["values"], strict=True)), "label": label, "track_id": tid})
    return rows


def feature_rows(
    files: Iterable[str | os.PathLike], settings: FeatureSettings | None = None, engine: Engine | None = None, *,
    cache: bool | Cache = True,
) -> Iterator[Result]:
    """Feature rows of each file (a list of row dicts: :func:`rows_from_analysis`), as they complete,
    through the feature cache; see :func:`feature_analyses`."""
    from genrekit.features import FeatureSettings

    settings = settings or FeatureSettings()
    for r in feature_analyses(files, settings, engine, cache=cache):
        if not r.ok:
            yield r
            continue
        try:
            yield Result(r.input, rows_from_analysis(r.input, r.value, extended=settings.extended), cached=r.cached)
        except GenrekitError as exc:
            yield Result(r.input, error=ItemError.from_exception(exc), cached=r.cached)


def extract_file(
    path: str | os.PathLike, *, segment_seconds: float | None = None, extended: bool = False, sr: int | None = None,
    hpss: str = "fast",
) -> list[dict[str, object]]:
    """Feature rows for one audio file (no cache): ``filename, length, <features>, label, track_id``.

    Without ``segment_seconds``: one row for the whole file (Kaggle's 30 s table). With it: one row per
    window, named like Kaggle's 3-second table. Errors are raised (a batch would report them)."""
    from genrekit.features import SR, analyse_file

    analysis = analyse_file(path, segment_seconds=segment_seconds, extended=extended, sr=sr or SR, hpss=hpss)
    return rows_from_analysis(path, analysis, extended=extended)


def feature_header(settings: FeatureSettings) -> list[str]:
    """The columns of ``genrekit features``' CSV: Kaggle's order, ``track_id`` last for segments."""
    return ["filename", "length", *settings.columns(), "label"] + (
        ["track_id"] if settings.segment_seconds is not None else [])


def feature_table(
    tracks: Iterable[Track], *, segment_seconds: float | None = None, extended: bool = False, hpss: str = "fast",
    jobs: int | None = None, progress: bool = True, use_cache: bool = True, engine: Engine | None = None,
) -> FeatureTable:
    """A :class:`genrekit.datasets.FeatureTable` for ``tracks`` (from ``datasets.scan_audio``), labelled
    by the tracks, computed by :func:`feature_analyses` (default engine: ``jobs`` local processes, one
    per CPU), so it shares ``genrekit features``' cache.

    Files that fail are skipped with a warning naming them and the reason; FeatureError if none worked."""
    import numpy as np

    from genrekit.datasets import FeatureTable, segment_filename
    from genrekit.errors import FeatureError
    from genrekit.features import FeatureSettings, columns

    tracks = list(tracks)
    settings = FeatureSettings(segment_seconds=segment_seconds, extended=bool(extended), hpss=hpss)
    engine = engine or LocalEngine(jobs=jobs, progress=progress)
    results: dict[str, list] = {}
    failed: list[str] = []
    for r in feature_analyses([str(t.path) for t in tracks], settings, engine, cache=use_cache):
        if r.ok:
            results[r.input] = r.value
        else:
            failed.append(f"{r.input}: {r.error}")
    if failed:
        warnings.warn(f"{len(failed)} file(s) skipped: " + "; ".join(failed), stacklevel=2)
    X, y, tids, names, segs = [], [], [], [], []
    for t in tracks:
        for a in results.get(str(t.path), []):
            X.append(a["values"])
            y.append(t.label)
            tids.append(t.track_id)
            names.append(segment_filename(Path(t.path), a["segment"]))
            segs.append(-1 if a["segment"] is None else a["segment"])
    if not X:
        raise FeatureError("no features could be computed: " + ("; ".join(failed) or "no tracks given"))
    return FeatureTable(
        np.asarray(X, dtype=np.float64), np.asarray(y), np.asarray(tids), np.asarray(names),
        columns(extended=extended), None if segment_seconds is None else np.asarray(segs), source="genrekit.features",
    )


# ============================================================================================ predict

# This process's classifiers, by (model, backend): each worker loads a model once for all its files.
_CLASSIFIERS: dict[tuple[str | None, str], Any] = {}


class ModelBlob:
    """A model file's bytes, so workers on other machines need not see the driver's disk."""

    def __init__(self, path: str | os.PathLike):
        p = Path(path)
        try:
            self.data = p.read_bytes()
        except OSError as exc:
            raise ModelError(f"{p}: cannot read the model file ({exc.strerror or exc})") from exc
        self.name = p.name
        self.sha256 = hashlib.sha256(self.data).hexdigest()

    def materialise(self) -> Path:
        """The model as a local file (written once per machine, atomically, under the temp folder)."""
        p = Path(tempfile.gettempdir()) / "genrekit-ray-models" / self.sha256 / self.name
        if not p.is_file():
            from genrekit.engine import atomic_write_bytes

            atomic_write_bytes(p, self.data)
        return p


class PredictTask:
    """``path -> record`` (``genrekit predict``'s record: ``predict.record_for``), loading the model once
    per process. Picklable and small: a process pool sends it with every file. :meth:`portable` gives
    a copy that carries the model's bytes, for workers on other machines (Ray). ``max_duration``
    (seconds, None: no limit) makes a file that decodes past it an error record."""

    fork_safe = False  # the parent holds torch: start workers with forkserver, never fork

    def __init__(self, *, model: str | os.PathLike | None, backend: str = "onnx", top_k: int = 3,
                 segments: bool = False, max_duration: float | None = None, min_confidence: float | None = None,
                 tags: bool = False, patches_per_block: int | str | None = None):
        self.model = None if model is None else str(model)
        self.patches_per_block = patches_per_block  # musicnn override (GenreClassifier.load)
        self.min_confidence = min_confidence
        self.tags = bool(tags)
        self.backend = backend
        self.top_k = int(top_k)
        self.segments = bool(segments)
        self.max_duration = None if max_duration is None else float(max_duration)
        self.blob: ModelBlob | None = None

    def portable(self) -> PredictTask:
        """This task with the model file's bytes inside (the shipped model is in every installation)."""
        if self.model is None or self.blob is not None:
            return self
        other = copy.copy(self)
        other.blob = ModelBlob(self.model)
        return other

    @property
    def key(self) -> tuple[str | None, str, int | str | None]:
        return (self.blob.sha256 if self.blob else self.model, self.backend, self.patches_per_block)

    def classifier(self) -> GenreClassifier:
        """This process's classifier for the model: loaded on first use, then reused by every file."""
        clf = _CLASSIFIERS.get(self.key)
        if clf is None:
            from genrekit.predict import GenreClassifier

            path = self.blob.materialise() if self.blob else self.model
            clf = _CLASSIFIERS[self.key] = GenreClassifier.load(path, backend=self.backend, threads=1,
                                                                patches_per_block=self.patches_per_block)
        return clf

    def __call__(self, path: str) -> dict[str, Any]:
        from genrekit.predict import record_for

        return record_for(self.classifier(), path, top_k=self.top_k, segments=self.segments,
                          max_duration=self.max_duration, min_confidence=self.min_confidence, tags=self.tags)


def predict_records(
    files: Iterable[str | os.PathLike], classifier: GenreClassifier | str | os.PathLike | None = None,
    engine: Engine | None = None, *, top_k: int = 3, segments: bool = False, backend: str = "onnx",
    max_duration: float | None = None, task: Callable[[str], dict[str, Any]] | None = None,
    min_confidence: float | None = None, tags: bool = False, patches_per_block: int | str | None = None,
) -> Iterator[dict[str, Any]]:
    """``genrekit predict``'s record for each file, as they complete (``engine`` default: this process).

    ``classifier`` is a loaded :class:`~genrekit.predict.GenreClassifier` (this process reuses it; worker
    processes load its file once each), a model path or None for the shipped model (run with
    ``backend``). A file that cannot be classified gets an error record; so does one whose worker died,
    one that decodes past ``max_duration`` seconds (decoding stops there) and a silent one. ``task``
    replaces the per-file function (tests use it to crash a worker on purpose). ``min_confidence``: records
    whose top score is below it carry ``"uncertain": true`` (false above); ``tags``: top MSD tags also for
    models without a musicnn member (those with one always carry them); ``patches_per_block``: as
    :meth:`GenreClassifier.load <genrekit.predict.GenreClassifier.load>` (a loaded classifier's own wins)."""
    from genrekit.predict import GenreClassifier, error_record

    engine = engine or LocalEngine()
    loaded = classifier if isinstance(classifier, GenreClassifier) else None
    if loaded is not None:
        in_process = isinstance(engine, LocalEngine) and engine.workers == 1
        if loaded.path is None and not in_process:
            raise ModelError("a classifier without a model file cannot be sent to worker processes; "
                             "save the model and load it from its file, or use one job")
        fn = PredictTask(model=loaded.path, backend=loaded.backend, top_k=top_k, segments=segments,
                         max_duration=max_duration, min_confidence=min_confidence, tags=tags,
                         patches_per_block=loaded.patches_per_block)
    else:
        fn = PredictTask(model=classifier, backend=backend, top_k=top_k, segments=segments,
                         max_duration=max_duration, min_confidence=min_confidence, tags=tags,
                         patches_per_block=patches_per_block)
    registered = loaded is not None and fn.key not in _CLASSIFIERS
    if registered:
        _CLASSIFIERS[fn.key] = loaded
    try:
        for path, res in engine.map(task or fn, [str(f) for f in files], desc="predict"):
            if isinstance(res, ItemError):
                res = error_record(path, f"{path}: {res}", segments=segments)
            yield res
    finally:
        if registered:
            _CLASSIFIERS.pop(fn.key, None)


def record_result(record: dict[str, Any]) -> Result:
    """A prediction record as a :class:`Result` (failed when the record carries an error)."""
    return Result(record["file"], record, error=ItemError("", record["error"]) if record.get("error") else None)


def predict_settings(classifier: GenreClassifier, *, segments: bool, top_k: int,
                     max_duration: float | None = None, min_confidence: float | None = None,
                     tags: bool = False) -> dict[str, Any]:
    """What decides a prediction output's content, for resuming it: the model (by its bytes, not where
    it lies, so an output folder can move), the timeline, top-k, the duration limit (seconds), the
    ``uncertain`` threshold and ``tags`` (the last three only when given, so outputs written before the
    options existed still resume, and a rerun with other values never mixes rows with and without them)."""
    from genrekit.engine import file_digest

    model = dict(classifier.identity)
    if model.get("path") and os.path.isfile(model["path"]):
        model["path"], model["file_sha256"] = None, file_digest(model["path"])
    settings = {"model": model, "segments": bool(segments), "top_k": int(top_k)}
    if max_duration is not None:
        settings["max_duration_s"] = max_duration
    if min_confidence is not None:
        settings["min_confidence"] = float(min_confidence)
    if tags:
        settings["tags"] = True
    if classifier.patches_per_block is not None:
        settings["patches_per_block"] = classifier.patches_per_block
    return settings


# ============================================================================================ musicnn

# The per-file analysis (MusicnnSettings, patch_levels, MusicnnAnalysis, musicnn_analysis), its cache and the
# silence rule live in genrekit.networks.musicnn.analysis; the layers `genrekit embed` writes are the spec's.
EMBED_LAYERS: dict[str, int] = LAYERS
MUSICNN_BACKENDS: tuple[str, ...] = BACKENDS
MUSICNN_CACHE_VERSION = CACHE_VERSION


class MusicnnTask:
    """``path -> MusicnnAnalysis`` for any engine: small and picklable (each worker process loads the
    network once, ``networks.musicnn`` keeps it). Workers are never forked: the parent
    may hold torch or an onnxruntime session."""

    fork_safe = False

    def __init__(self, settings: MusicnnSettings):
        self.settings = settings

    def __call__(self, path: str) -> MusicnnAnalysis:
        return musicnn_analysis(path, self.settings)


def musicnn_cache(settings: MusicnnSettings, *, enabled: bool = True, root: str | os.PathLike | None = None) -> Cache:
    """The cache of musicnn analyses for ``settings``: ``tags``, ``embed``, the library tools and the
    experiments share it (``networks.musicnn.analysis.analysis_cache``)."""
    return analysis_cache(settings, enabled=enabled, root=root)


def musicnn_analyses(
    files: Iterable[str | os.PathLike], settings: MusicnnSettings | None = None, engine: Engine | None = None, *,
    cache: bool | Cache = True,
) -> Iterator[Result]:
    """Each file's :class:`MusicnnAnalysis`, from the content cache (keyed by the file's bytes and
    :meth:`MusicnnSettings.cache_settings`) or computed by ``engine`` and then cached: a second run over
    the same files, or a rerun after an interrupted one, runs the network only for what is missing."""
    settings = settings or MusicnnSettings()
    store = cache if isinstance(cache, Cache) else musicnn_cache(settings, enabled=bool(cache))

    yield from _through_cache(files, MusicnnTask(settings), engine, desc="musicnn", name="musicnn", key=store.key,
                              load=functools.partial(load_analysis, store),
                              save=functools.partial(save_analysis, store))


def error_text(path: str, err: ItemError) -> str:
    """An engine's error as a record's: the message when it names the file (genrekit's do), else
    ``path: Kind: message``."""
    return err.message if err.message.startswith(path) else f"{path}: {err}"


def _pairs(tags: list[tuple[str, float]]) -> list[list[Any]]:
    return [[t, round(float(v), 6)] for t, v in tags]


def tag_record(path: str, analysis: MusicnnAnalysis, *, top_k: int = 5, segments: bool = False) -> dict[str, Any]:
    """``genrekit tags``' record of one file: ``file, model, duration_s, n_patches, tags`` (the ``top_k``
    best ``[tag, score]`` of the mean taggram over the audible patches: ``networks.musicnn.top_tags``), with
    ``segments`` the timeline (each patch's ``start``, ``end`` and ``tags``, or ``silent: true``), ``error``."""
    from genrekit.networks.musicnn.model import top_tags

    e = analysis.embedding
    rec: dict[str, Any] = {"file": path, "model": e.model, "duration_s": round(float(e.duration), 3),
                           "n_patches": e.n_patches, "tags": _pairs(top_tags(analysis.summary(), top_k))}
    if segments:
        rec["segments"] = [
            {"start": round(float(s), 3), "end": round(float(t), 3), "tags": _pairs(top_tags(e, top_k, patch=i))}
            if ok else {"start": round(float(s), 3), "end": round(float(t), 3), "tags": None, "silent": True}
            for i, (s, t, ok) in enumerate(zip(e.starts, analysis.ends, analysis.audible, strict=True))]
    rec["error"] = None
    return rec


def tag_error_record(path: str, error: str, *, model: str, segments: bool = False) -> dict[str, Any]:
    """The record of a file that got no tags: the same keys, ``tags`` None, and why."""
    rec: dict[str, Any] = {"file": path, "model": model, "duration_s": None, "n_patches": None, "tags": None}
    if segments:
        rec["segments"] = None
    rec["error"] = error
    return rec


def _check_top_k(top_k: int) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 50:
        raise GenrekitError(f"top_k must be a whole number of tags from 1 to 50, got {top_k!r}")
    return top_k


def tag_results(
    files: Iterable[str | os.PathLike], settings: MusicnnSettings | None = None, engine: Engine | None = None, *,
    top_k: int = 5, segments: bool = False, cache: bool | Cache = True,
) -> Iterator[Result]:
    """Each file's :func:`tag_record` as a :class:`Result` (value: the record; a failed one keeps its
    :func:`tag_error_record`, as :func:`record_result` does), through :func:`musicnn_analyses`."""
    settings = settings or MusicnnSettings()
    top_k = _check_top_k(top_k)
    for r in musicnn_analyses(files, settings, engine, cache=cache):
        if r.ok:
            yield Result(r.input, tag_record(r.input, r.value, top_k=top_k, segments=segments), cached=r.cached)
        else:
            msg = error_text(r.input, r.error)
            yield Result(r.input, tag_error_record(r.input, msg, model=settings.model, segments=segments),
                         error=ItemError(r.error.kind, msg))


def check_layers(layers: Iterable[str] | str | None) -> list[str]:
    """Layer names, checked, in :data:`EMBED_LAYERS`' order (None: all three)."""
    if layers is None:
        return list(EMBED_LAYERS)
    asked = [layers] if isinstance(layers, str) else list(layers)
    bad = [x for x in asked if x not in EMBED_LAYERS]
    if bad or not asked:
        raise GenrekitError(f"unknown embedding layer(s) {', '.join(map(repr, bad)) or '(none given)'}; "
                            f"choose from {', '.join(EMBED_LAYERS)}")
    return [x for x in EMBED_LAYERS if x in asked]


def embedding_rows(path: str, analysis: MusicnnAnalysis, *, layers: Sequence[str] = tuple(EMBED_LAYERS),
                   per_window: bool = False) -> list[dict[str, Any]]:
    """``genrekit embed``'s rows for one file, each layer a float32 vector.

    Per file (default): ``file, duration_s, n_patches, n_silent`` and each layer's mean over the
    audible patches (``n_silent`` patches below ``dsp.SILENCE_DB`` are left out, as ``predict``'s
    musicnn head leaves them out). ``per_window``: one row per 3 s patch, ``file, duration_s, patch,
    start, end, silent`` and the patch's vectors (silent ones included, flagged)."""
    e, audible = analysis.embedding, analysis.audible
    if per_window:
        ends = analysis.ends
        return [{"file": path, "duration_s": float(e.duration), "patch": i, "start": float(e.starts[i]),
                 "end": float(ends[i]), "silent": not bool(audible[i]), **{x: getattr(e, x)[i] for x in layers}}
                for i in range(e.n_patches)]
    s = analysis.summary()
    return [{"file": path, "duration_s": float(e.duration), "n_patches": e.n_patches,
             "n_silent": int(e.n_patches - audible.sum()), **{x: getattr(s, f"{x}_mean") for x in layers}}]


def embedding_results(
    files: Iterable[str | os.PathLike], settings: MusicnnSettings | None = None, engine: Engine | None = None, *,
    layers: Iterable[str] | str | None = None, per_window: bool = False, cache: bool | Cache = True,
) -> Iterator[Result]:
    """Each file's :func:`embedding_rows` as a :class:`Result`, through :func:`musicnn_analyses`."""
    layers = check_layers(layers)
    for r in musicnn_analyses(files, settings, engine, cache=cache):
        if r.ok:
            yield Result(r.input, embedding_rows(r.input, r.value, layers=layers, per_window=per_window),
                         cached=r.cached)
        else:
            yield Result(r.input, error=ItemError(r.error.kind, error_text(r.input, r.error)))


def embedding_settings(settings: MusicnnSettings, *, layers: Sequence[str], per_window: bool) -> dict[str, Any]:
    """What decides an embedding output's content, for resuming it (Parquet folders)."""
    return {"musicnn": settings.cache_settings(), "layers": list(layers), "per_window": bool(per_window)}


def write_embeddings(path: str | os.PathLike, rows: list[dict[str, Any]], *, layers: Sequence[str]) -> Path:
    """Embedding rows as one file, chosen by its suffix, written atomically:

    - ``.parquet``: one column per layer, ``fixed_size_list<float32>[n]`` (``parquet_out.rows_to_table``);
    - ``.npz``: one array per column (``file``, ``duration_s``, ... as 1-D, each layer ``(rows, n)``),
      no pickle needed to load it;
    - ``.csv``: one column per value (``penultimate_0`` ... ``penultimate_199``), for tools that read
      nothing else (and 5-10x larger)."""
    import numpy as np

    from genrekit.engine import atomic_writer
    from genrekit.parquet_out import write_parquet

    p = Path(path)
    vectors = {x: EMBED_LAYERS[x] for x in layers}
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        write_parquet(p, rows, vectors=vectors)
        return p
    scalars = [c for c in (rows[0] if rows else {}) if c not in vectors]
    if suffix == ".npz":
        arrays = {c: np.asarray([r[c] for r in rows]) for c in scalars}
        arrays.update({x: np.stack([r[x] for r in rows]) if rows else np.zeros((0, n), np.float32)
                       for x, n in vectors.items()})
        import zipfile

        with atomic_writer(p, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
            for name, arr in arrays.items():  # np.savez's layout; its own signature reserves the name "file"
                with z.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)
        return p
    if suffix == ".csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(scalars + [f"{x}_{i}" for x, n in vectors.items() for i in range(n)])
        for r in rows:
            w.writerow([r[c] for c in scalars] + [repr(float(v)) for x in vectors for v in r[x]])
        atomic_write_text(p, buf.getvalue())
        return p
    raise GenrekitError(f"{p}: embeddings are written as .parquet, .npz or .csv (or a folder ending in /), "
                        f"not {suffix or 'a file without a suffix'}")


# ============================================================================================ sinks


@dataclass
class Summary:
    """What a sink received: inputs done, failed, taken from the cache, and finished by an earlier run."""

    ok: int = 0
    failed: int = 0
    cached: int = 0
    resumed: int = 0

    def count(self, r: Result) -> None:
        if r.ok:
            self.ok += 1
        else:
            self.failed += 1
        self.cached += bool(r.cached)


class Sink(Protocol):
    """Where a batch's results go. ``pending(inputs)`` says which inputs an earlier run left to do (and
    fixes the output order); ``add`` takes each :class:`Result`; ``close`` completes the output;
    ``abort`` (an interrupted run) keeps what is finished for the next run and writes no final file."""

    summary: Summary

    def pending(self, inputs: Sequence[str]) -> list[str]: ...

    def add(self, result: Result) -> None: ...

    def close(self) -> Any: ...

    def abort(self) -> None: ...


def write(results: Iterable[Result], sink: Sink, *, before: Iterable[Result] = ()) -> Summary:
    """Feed ``before`` (e.g. paths that could not be walked) then ``results`` into ``sink`` and close it.

    On an exception (Ctrl-C) the sink is aborted, keeping finished work, and the exception goes on."""
    try:
        for r in before:
            sink.add(r)
        for r in results:
            sink.add(r)
    except BaseException:
        sink.abort()
        raise
    sink.close()
    return sink.summary


class _Ordered:
    """Results kept in the inputs' order: the inputs given to :meth:`pending`, in that order (an input
    given twice appears twice), after any others (added without being pending: paths that could not
    be walked, in the order added)."""

    def __init__(self) -> None:
        self.summary = Summary()
        self._inputs: list[str] = []
        self._declared: set[str] = set()
        self._got: dict[str, Result] = {}
        self._extra: list[Result] = []

    def _declare(self, inputs: Sequence[str]) -> None:
        self._inputs += [str(i) for i in inputs]
        self._declared.update(self._inputs)

    def _keep(self, r: Result) -> bool:
        """Store ``r``; False when it was not one of the declared inputs."""
        self.summary.count(r)
        if r.input in self._declared:
            self._got[r.input] = r
            return True
        self._extra.append(r)
        return False

    def ordered(self) -> list[Result]:
        return self._extra + [self._got[i] for i in self._inputs if i in self._got]


def _write_error_list(path: Path, errors: list[tuple[str, ItemError]]) -> None:
    """``path`` (``OUT.errors.tsv``) listing the inputs that failed; removed when none did (a stale
    list from an earlier run would be misleading)."""
    if errors:
        lines = ["path\terror\tmessage"] + [f"{p}\t{e.kind}\t{e.message}".replace("\n", " ") for p, e in errors]
        atomic_write_text(path, "\n".join(lines) + "\n")
    elif path.exists():
        path.unlink()


class TableSink(_Ordered):
    """Every input's rows (a result's value is its list of rows) in input order, written at the end as
    one file by ``writer(out, rows)`` (e.g. :func:`write_embeddings`, atomic), and ``OUT.errors.tsv``
    listing the inputs that failed, as :class:`CsvSink`. Nothing is journalled: the producer's content
    cache (the musicnn cache for embeddings) holds every finished file, so a rerun after a kill
    recomputes nothing and a killed run leaves no half-written output."""

    def __init__(self, out: str | os.PathLike, *, writer: Callable[[Path, list[dict[str, Any]]], Any]):
        super().__init__()
        self.out = Path(out)
        self.writer = writer
        self.errors_path = self.out.with_name(self.out.name + ".errors.tsv")
        self.rows = 0
        self.files = 0
        self.errors: list[tuple[str, ItemError]] = []

    def pending(self, inputs: Sequence[str]) -> list[str]:
        self._declare(inputs)
        return [str(i) for i in inputs]

    def add(self, result: Result) -> None:
        self._keep(result)

    def close(self) -> Path:
        rows: list[dict[str, Any]] = []
        self.errors = []
        for r in self.ordered():
            if r.ok:
                self.files += 1
                rows += r.value
            else:
                self.errors.append((r.input, r.error))
        self.writer(self.out, rows)
        self.rows = len(rows)
        _write_error_list(self.errors_path, self.errors)
        return self.out

    def abort(self) -> None:
        pass  # the cache holds every finished file


class CsvSink(TableSink):
    """The feature table: one CSV of every file's rows in input order, written atomically at the end,
    and ``OUT.errors.tsv`` listing the files that failed (removed when none did).

    Nothing is journalled: every finished file is already in the feature cache, so a rerun after a
    kill recomputes nothing (``pending`` is every input)."""

    def __init__(self, out: str | os.PathLike, *, header: Sequence[str]):
        self.header = list(header)
        super().__init__(out, writer=self._write)

    @staticmethod
    def _format(v: object) -> str:
        return repr(v) if isinstance(v, float) else str(v)

    def _write(self, out: Path, rows: list[dict[str, Any]]) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.header)
        for row in rows:
            writer.writerow([self._format(row[c]) for c in self.header])
        atomic_write_text(out, buf.getvalue())


class JournalSink(_Ordered):
    """Records rendered into one output file at the end (JSON, CSV, a table: ``render`` decides), and
    meanwhile journalled to ``<out>.partial.jsonl``, one fsynced line per record.

    A run killed at any moment leaves no output file or a complete one; a rerun with the same
    ``settings`` takes the journal's records for inputs unchanged since (same size and mtime) and does
    only the rest. A torn last line (killed mid-write) is ignored. ``render`` defaults to a JSON array;
    ``out=None`` journals nothing and :meth:`close` just returns the text (standard output)."""

    def __init__(self, out: str | os.PathLike | None, *, settings: dict[str, Any],
                 render: Callable[[list[Any]], str] | None = None):
        super().__init__()
        self.out = None if out is None else Path(out)
        self.path = None if self.out is None else self.out.with_name(self.out.name + ".partial.jsonl")
        self.key = settings_key(settings)
        self.render = render or (lambda records: json.dumps(records, indent=2) + "\n")
        self.records: list[Any] = []
        self.text = ""
        self._done: dict[str, dict[str, Any]] = {}
        self._fh = None

    def _load(self) -> dict[str, dict[str, Any]]:
        """Journal entries of an earlier run with the same settings (others are discarded)."""
        if self.path is None or not self.path.is_file():
            return {}
        done: dict[str, dict[str, Any]] = {}
        with open(self.path, encoding="utf-8") as f:
            try:
                if json.loads(f.readline()).get("settings") != self.key:
                    return {}
            except (json.JSONDecodeError, AttributeError):
                return {}
            for line in f:
                try:
                    item = json.loads(line)
                    done[item["key"]] = {"record": item["record"], "stat": item.get("stat")}
                except (json.JSONDecodeError, KeyError, TypeError):
                    break  # torn tail of a killed run
        return done

    def pending(self, inputs: Sequence[str]) -> list[str]:
        self._declare(inputs)
        old = self._load()
        self._done = {i: e for i in map(str, inputs) if (e := old.get(i)) is not None and e["stat"] == input_stat(i)}
        for i, e in self._done.items():
            self._got[i] = record_result(e["record"])
        self.summary.resumed = len(self._done)
        return [str(i) for i in inputs if str(i) not in self._done]

    def append(self, key: str, record: Any) -> None:
        """Journal one finished record (flushed and fsynced before returning)."""
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "w", encoding="utf-8")  # rewrite: keeps what resumes, drops a torn tail
            self._fh.write(json.dumps({"settings": self.key}) + "\n")
            for k, e in self._done.items():
                self._fh.write(json.dumps({"key": k, "record": e["record"], "stat": e["stat"]}) + "\n")
        self._fh.write(json.dumps({"key": key, "record": record, "stat": input_stat(key)}) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def add(self, result: Result) -> None:
        if self._keep(result) and self.path is not None:
            self.append(result.input, result.value)

    def close(self) -> str:
        """Render every record in input order; write the output atomically and drop the journal."""
        self.abort()
        self.records = [r.value for r in self.ordered()]
        self.text = self.render(self.records)
        if self.out is not None:
            atomic_write_text(self.out, self.text)
            self.path.unlink(missing_ok=True)
        return self.text

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class ParquetSink:
    """Parquet parts + ``_manifest.json`` (:class:`genrekit.parquet_out.PartitionedOutput`): rows written a
    part at a time, resumable at any size; ``to_rows`` turns a result's value into its rows; ``vectors``
    names the columns of fixed-length float32 vectors (``parquet_out.rows_to_table``)."""

    def __init__(self, directory: str | os.PathLike, *, kind: str, settings: dict[str, Any],
                 to_rows: Callable[[Any], list[dict[str, Any]]], part_size: int = 1000,
                 vectors: dict[str, int] | None = None):
        self.out = PartitionedOutput(directory, kind=kind, settings=settings, part_size=part_size, vectors=vectors)
        self.to_rows = to_rows
        self.summary = Summary()
        self._opened = False

    def pending(self, inputs: Sequence[str]) -> list[str]:
        if not self._opened:
            self.out.open()
            self._opened = True
        todo = self.out.pending(inputs)
        self.summary.resumed = len(inputs) - len(todo)
        return todo

    def add(self, result: Result) -> None:
        self.summary.count(result)
        if result.ok:
            self.out.add(result.input, self.to_rows(result.value))
        else:
            self.out.add(result.input, error=str(result.error))

    def close(self) -> Path:
        self.out.close()
        return self.out.dir

    def abort(self) -> None:
        self.out.close()  # finished parts and the manifest that lists them stay for the next run

    @property
    def failed(self) -> dict[str, dict[str, Any]]:
        """Inputs that failed (absolute path -> {path, size, mtime_ns, error}), as the manifest lists them."""
        return self.out.failed

    def describe(self, *, total: int) -> list[str]:
        """Where the output is and which inputs failed (the first 20), as lines to print."""
        m = self.out.manifest
        rows = sum(p["rows"] for p in m["parts"])
        lines = [f"wrote {len(m['done'])} inputs ({rows} rows) in {len(m['parts'])} parts to {self.out.dir} "
                 f"(manifest: {self.out.dir / MANIFEST})"]
        failed = list(m["failed"].values())
        if failed:
            lines.append(f"{len(failed)} of {total} inputs failed (listed in the manifest; retried on the next run):")
            lines += [f"  {f['error']}" for f in failed[:20]]
        return lines


# ============================================================================================ Python facade


def _inputs(paths_or_path: Any) -> tuple[list[str], list[tuple[str, ItemError]], bool]:
    """Audio files under the argument (one path or several), the paths that could not be walked, and
    whether it named one file (then the caller answers with one value, not a list)."""
    single = isinstance(paths_or_path, (str, os.PathLike))
    paths = [paths_or_path] if single else list(paths_or_path)
    if not single and any(not isinstance(x, (str, os.PathLike)) for x in paths):
        raise GenrekitError("give a path or a list of paths to audio files or folders "
                            "(for samples in memory use genrekit.networks.musicnn.embed(y, sr=...))")
    files, errors = find_audio(paths, unique=False)
    return files, errors, single and not os.path.isdir(paths_or_path)


def _musicnn_engine(engine: Engine | None, jobs: int | None, progress: bool) -> Engine:
    if engine is not None:
        return engine
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise GenrekitError(f"jobs must be a positive whole number (or None: one per CPU), got {jobs!r}")
    return LocalEngine(jobs=jobs, progress=progress)


def musicnn_tags(
    paths_or_path: Any, *, model: str = "MSD_musicnn", top_k: int = 5, segments: bool = False, jobs: int | None = 1,
    backend: str = "onnx", engine: Engine | None = None, cache: bool = True, progress: bool = False,
) -> list[dict[str, Any]] | dict[str, Any]:
    """``genrekit.tags``: each file's top musicnn tags, the records ``genrekit tags --format json``
    prints (:func:`tag_record`; a file that failed, or is silent, gets an error record), in walk
    order: a list, or one dict when given one file. Folders are walked recursively; results are
    cached by file content (``cache=False``: neither read nor written)."""
    settings = MusicnnSettings(model=model, backend=backend)
    files, errors, single = _inputs(paths_or_path)
    out = [tag_error_record(p, error_text(p, e), model=model, segments=segments) for p, e in errors]
    got = {r.input: r.value for r in tag_results(files, settings, _musicnn_engine(engine, jobs, progress),
                                                  top_k=top_k, segments=segments, cache=cache)}
    out += [got[f] for f in files]
    return out[0] if single else out


def musicnn_embeddings(
    paths_or_path: Any, *, model: str = "MSD_musicnn", layers: Iterable[str] | str | None = None,
    per_window: bool = False, jobs: int | None = 1, backend: str = "onnx", engine: Engine | None = None,
    cache: bool = True, progress: bool = False,
):
    """``genrekit.embed``: musicnn embeddings as a pandas DataFrame, the rows ``genrekit embed`` writes
    (:func:`embedding_rows`: one per file, or per 3 s patch with ``per_window``; each layer a column of
    float32 arrays, ``np.stack(df["penultimate"])`` the matrix), in walk order. Files that fail are
    left out with a warning naming them, and listed in ``df.attrs["errors"]`` (path -> why); given one
    file that fails, the error is raised. Cached by file content, shared with :func:`musicnn_tags`."""
    import pandas as pd

    layers = check_layers(layers)
    settings = MusicnnSettings(model=model, backend=backend)
    files, walk_errors, single = _inputs(paths_or_path)
    errors = {p: error_text(p, e) for p, e in walk_errors}
    got: dict[str, list[dict[str, Any]]] = {}
    for r in embedding_results(files, settings, _musicnn_engine(engine, jobs, progress), layers=layers,
                               per_window=per_window, cache=cache):
        if r.ok:
            got[r.input] = r.value
        else:
            errors[r.input] = r.error.message
    if single and errors:
        raise GenrekitError(next(iter(errors.values())))
    rows = [row for f in files if f in got for row in got[f]]
    df = pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(embedding_rows_columns(layers, per_window)))
    if errors:
        warnings.warn(f"{len(errors)} file(s) skipped: " + "; ".join(errors.values()), stacklevel=2)
    df.attrs["errors"] = errors
    return df


def embedding_rows_columns(layers: Sequence[str], per_window: bool) -> list[str]:
    """The columns of :func:`embedding_rows` (an empty frame still has them)."""
    head = ["file", "duration_s", "patch", "start", "end", "silent"] if per_window else [
        "file", "duration_s", "n_patches", "n_silent"]
    return head + list(layers)
