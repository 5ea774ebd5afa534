"""Prediction records of audio files on any engine: ``genrekit predict``, the library tools and Python callers.

:class:`PredictTask` is the per-file task (``predict.record_for``, the model loaded once per process,
shipped as bytes to other machines); :func:`predict_records` runs it; :func:`predict_settings` is THE
description of what decides a prediction output's content, the key every resumable output (the JSON
journal of ``predict --out FILE``, Parquet folders) is filed under.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genrekit.errors import ModelError
from genrekit.run.engines import DEFAULT_MAX_RETRIES, Engine, LocalEngine, RayEngine
from genrekit.run.items import ItemError

if TYPE_CHECKING:
    from genrekit.predict import GenreClassifier

__all__ = ["ModelBlob", "PredictTask", "predict_ray", "predict_records", "predict_settings", "predict_task"]

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
            from genrekit.store import atomic_write_bytes

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
                 tags: bool = False, patches_per_block: int | str | None = None, styles: bool = True):
        self.model = None if model is None else str(model)
        self.styles = bool(styles)
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
                          max_duration=self.max_duration, min_confidence=self.min_confidence, tags=self.tags,
                          styles=self.styles)


@contextlib.contextmanager
def predict_task(
    classifier: GenreClassifier | str | os.PathLike | None, engine: Engine, *, top_k: int = 3, segments: bool = False,
    backend: str = "onnx", max_duration: float | None = None, min_confidence: float | None = None,
    tags: bool = False, patches_per_block: int | str | None = None, styles: bool = True,
) -> Iterator[PredictTask]:
    """The :class:`PredictTask` for ``classifier`` on ``engine`` (arguments as :func:`predict_records`):
    while the block runs, a loaded classifier serves this process's files itself (not loaded twice)."""
    from genrekit.predict import GenreClassifier

    loaded = classifier if isinstance(classifier, GenreClassifier) else None
    if loaded is not None:
        in_process = isinstance(engine, LocalEngine) and engine.in_process
        if loaded.path is None and not in_process:
            raise ModelError("a classifier without a model file cannot be sent to worker processes; "
                             "save the model and load it from its file, or use one job")
        fn = PredictTask(model=loaded.path, backend=loaded.backend, top_k=top_k, segments=segments,
                         max_duration=max_duration, min_confidence=min_confidence, tags=tags,
                         patches_per_block=loaded.patches_per_block, styles=styles)
    else:
        fn = PredictTask(model=classifier, backend=backend, top_k=top_k, segments=segments,
                         max_duration=max_duration, min_confidence=min_confidence, tags=tags,
                         patches_per_block=patches_per_block, styles=styles)
    registered = loaded is not None and fn.key not in _CLASSIFIERS
    if registered:
        _CLASSIFIERS[fn.key] = loaded
    try:
        yield fn
    finally:
        if registered:
            _CLASSIFIERS.pop(fn.key, None)


def predict_records(
    files: Iterable[str | os.PathLike], classifier: GenreClassifier | str | os.PathLike | None = None,
    engine: Engine | None = None, *, top_k: int = 3, segments: bool = False, backend: str = "onnx",
    max_duration: float | None = None, task: Callable[[str], dict[str, Any]] | None = None,
    min_confidence: float | None = None, tags: bool = False, patches_per_block: int | str | None = None,
    styles: bool = True,
) -> Iterator[dict[str, Any]]:
    """``genrekit predict``'s record for each file, as they complete (``engine`` default: this process).

    ``classifier`` is a loaded :class:`~genrekit.predict.GenreClassifier` (this process reuses it; worker
    processes load its file once each), a model path or None for the shipped model (run with
    ``backend``). A file that cannot be classified gets an error record; so does one whose worker died,
    one that decodes past ``max_duration`` seconds (decoding stops there) and a silent one. ``task``
    replaces the per-file function (tests use it to crash a worker on purpose). ``min_confidence``: records
    whose top score is below it carry ``"uncertain": true`` (false above); ``tags``: top MSD tags also for
    models without a musicnn member (those with one always carry them); ``patches_per_block``: as
    :meth:`GenreClassifier.load <genrekit.predict.GenreClassifier.load>` (a loaded classifier's own wins);
    ``styles``: the top AudioSet styles on every record (mn04 on the same decode; False skips the cost)."""
    from genrekit.predict import error_record

    engine = engine or LocalEngine()
    with predict_task(classifier, engine, top_k=top_k, segments=segments, backend=backend, max_duration=max_duration,
                      min_confidence=min_confidence, tags=tags, patches_per_block=patches_per_block,
                      styles=styles) as fn:
        for path, res in engine.map(task or fn, [str(f) for f in files], desc="predict"):
            if isinstance(res, ItemError):
                res = error_record(path, f"{path}: {res}", segments=segments)
            yield res


def predict_settings(classifier: GenreClassifier, *, segments: bool, top_k: int,
                     max_duration: float | None = None, min_confidence: float | None = None,
                     tags: bool = False, styles: bool = True) -> dict[str, Any]:
    """What decides a prediction output's content, for resuming it: the model (by its bytes, not where
    it lies, so an output folder can move), the timeline, top-k, the duration limit (seconds), the
    ``uncertain`` threshold, ``tags`` and ``styles`` (the last four only when given, so outputs written
    before the options existed still resume (with ``styles=False``), and a rerun with other values never
    mixes rows with and without them)."""
    from genrekit.store import file_digest

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
    if styles:
        settings["styles"] = True
    if classifier.patches_per_block is not None:
        settings["patches_per_block"] = classifier.patches_per_block
    return settings


def predict_ray(
    files: list[str],
    *,
    model: str | os.PathLike | None,
    backend: str = "onnx",
    top_k: int = 3,
    segments: bool = False,
    address: str | None = None,
    progress: bool = True,
    batch_size: int | None = None,
    num_cpus: int | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    task: Callable[[str], dict[str, Any]] | None = None,
    max_duration: float | None = None,
    styles: bool = True,
) -> Iterator[dict[str, Any]]:
    """Records for ``files`` in input order, computed as Ray tasks: the local engine's records exactly
    (:func:`predict_records` on a :class:`~genrekit.run.engines.RayEngine`).

    ``task`` replaces the per-file function (tests use it to kill a worker on a chosen file);
    ``max_duration`` (seconds) as in :meth:`GenreClassifier.predict`."""
    engine = RayEngine(address=address, num_cpus=num_cpus, batch_size=batch_size, max_retries=max_retries,
                       progress=progress)
    fn = task or PredictTask(model=model, backend=backend, top_k=top_k, segments=segments, max_duration=max_duration,
                             styles=styles)
    yield from predict_records(files, model, engine, top_k=top_k, segments=segments, backend=backend,
                               max_duration=max_duration, task=fn, styles=styles)
