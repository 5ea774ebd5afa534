"""Batch work on Ray: predictions and features over libraries bigger than one machine.

Ray (an optional extra: ``pip install 'genrekit[ray]'``) schedules the work; genrekit only cuts the input
list into batches, ships one batch per task and puts the answers back in input order. Each worker process
loads the model once (a per-process cache keyed by the model file's sha256) and reuses it for every
batch it runs, so a library of 100,000 files costs one model load per worker, not per file.

Failures stay per file, as with the local engine: a file that cannot be read gives its error record. A
worker that dies (out of memory, a crash in native code, a lost node) makes Ray retry the batch
(``max_retries``); if the batch still fails it is split and every file is retried alone, so only the file
that kills its worker ends as failed ("WorkerDied") and the rest complete.

Paths are read by the workers: on a cluster the audio must be visible at the same path on every node
(a shared file system); relative paths are resolved against the driver's working directory. A model
file given with ``--model`` is shipped through Ray's object store, so it need only exist on the driver.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from genrekit.engine import ItemError
from genrekit.errors import GenrekitError

T = TypeVar("T")

# Files per task: enough to amortise scheduling (~ms per task), few enough to spread a small run over
# every CPU (about 4 batches per CPU) and to lose little when a worker dies.
MAX_BATCH_SIZE = 32
DEFAULT_MAX_RETRIES = 2

__all__ = ["MAX_BATCH_SIZE", "auto_batch_size", "features_ray", "predict_ray", "ray_map", "require_ray"]


class RayEngineError(GenrekitError):
    """Ray is missing, or the cluster cannot be reached."""


def require_ray():
    """Import ray, or explain how to install the optional extra."""
    try:
        import ray
    except ImportError as exc:
        raise RayEngineError(
            "--engine ray needs Ray, an optional extra: pip install 'genrekit[ray]' "
            "(or run without --engine ray to use the local engine)"
        ) from exc
    return ray


def connect(*, address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join the Ray cluster at ``address`` (``"auto"``: the one started with ``ray start`` here), or start a
    private local instance with ``num_cpus`` CPUs. Returns True when this call started the connection
    (the caller then shuts it down); an already initialised Ray (a notebook, the tests) is reused."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    common = {"log_to_driver": False, "logging_level": "warning"}
    try:
        if address:
            ray.init(address=address, **common)
        else:
            ray.init(num_cpus=int(num_cpus or os.cpu_count() or 1), include_dashboard=False, **common)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        hint = ("start one with `ray start --head` (then --address auto), check the address, or leave out "
                "--address to run on a private local instance") if address else "see the Ray error above"
        raise RayEngineError(f"could not start or join {where}: {exc}; {hint}") from exc
    return True


def cluster_cpus() -> int:
    """CPUs the connected cluster offers (at least 1)."""
    ray = require_ray()
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


# ============================================================================================ worker side
_WORKER_READY = False


def _enter_worker(cwd: str) -> None:
    """Once per worker process: one BLAS/torch thread (one task per CPU) and the driver's directory."""
    global _WORKER_READY
    if not _WORKER_READY:
        from genrekit.engine import limit_blas_threads

        limit_blas_threads(1)
        _WORKER_READY = True
    if cwd and os.getcwd() != cwd and os.path.isdir(cwd):
        os.chdir(cwd)


def _run_batch(fn: Callable[[Any], Any], items: list, cwd: str) -> list:
    """A Ray task's body: ``fn`` on each item; an exception fails that item only (as ItemError)."""
    _enter_worker(cwd)
    out = []
    for it in items:
        try:
            out.append(fn(it))
        except Exception as exc:  # noqa: BLE001 - one bad item must not fail its batch
            out.append(ItemError.from_exception(exc))
    return out


_REMOTE = None


def _remote():
    """The ``@ray.remote`` task, made on first use so importing this module never imports ray."""
    global _REMOTE
    if _REMOTE is None:
        ray = require_ray()
        _REMOTE = ray.remote(num_cpus=1)(_run_batch)
    return _REMOTE


# ============================================================================================ driver side
def auto_batch_size(n_items: int, cpus: int) -> int:
    """About four batches per CPU, between 1 and MAX_BATCH_SIZE files each."""
    return max(1, min(MAX_BATCH_SIZE, -(-n_items // (4 * max(1, cpus)))))


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="file", file=sys.stderr, disable=not enabled or None,
                dynamic_ncols=True, leave=False)


def ray_map(
    fn: Callable[[T], Any],
    items: Iterable[T],
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    batch_size: int | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    progress: bool = True,
    desc: str = "ray",
) -> Iterator[tuple[T, Any]]:
    """Apply ``fn`` to every item as Ray tasks of ``batch_size`` items (default: :func:`auto_batch_size`);
    yield ``(item, result)`` in input order, where result is ``fn(item)`` or an
    :class:`~genrekit.engine.ItemError`.

    ``fn`` must be picklable (a module-level function or a small callable object); it is put in the object
    store once. At most a few batches per cluster CPU are in flight, so memory stays bounded for any
    number of items. A batch whose worker dies is retried by Ray ``max_retries`` times, then split so
    every item gets one more try alone (see the module docstring).
    """
    items = list(items)
    if batch_size is not None and batch_size < 1:
        raise RayEngineError(f"batch size must be >= 1, got {batch_size}")
    if not items:
        return
    ray = require_ray()
    started = connect(address=address, num_cpus=num_cpus)
    bar = _progress(len(items), desc, progress)
    try:
        task = _remote().options(max_retries=int(max_retries), retry_exceptions=False)
        fn_ref = ray.put(fn)
        cwd = os.getcwd()
        cpus = cluster_cpus()
        batch_size = batch_size or auto_batch_size(len(items), cpus)
        batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
        window = max(2, 2 * cpus)
        inflight: dict[Any, int] = {}
        finished: dict[int, list] = {}
        next_submit = next_yield = 0
        while next_yield < len(batches):
            while next_submit < len(batches) and len(inflight) < window:
                inflight[task.remote(fn_ref, batches[next_submit], cwd)] = next_submit
                next_submit += 1
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                b = inflight.pop(ref)
                try:
                    finished[b] = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    finished[b] = _retry_alone(ray, task, fn_ref, batches[b], cwd, exc)
                bar.update(len(batches[b]))
            while next_yield in finished:
                yield from zip(batches[next_yield], finished.pop(next_yield), strict=True)
                next_yield += 1
    finally:
        bar.close()
        if started:
            ray.shutdown()


def _worker_error(exc: BaseException) -> ItemError:
    ray = require_ray()
    if isinstance(exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)):
        return ItemError("WorkerDied", "the Ray worker died on this file (out of memory, a crash in native "
                         "code, or a lost node), also when retried alone")
    text = str(exc).strip().splitlines()
    return ItemError(type(exc).__name__, text[-1] if text else "")


def _retry_alone(ray, task, fn_ref, batch: list, cwd: str, exc: BaseException) -> list:
    """A batch failed as a whole: run each item as its own task so only the culprit fails."""
    if len(batch) == 1:
        return [_worker_error(exc)]
    refs = [task.remote(fn_ref, [it], cwd) for it in batch]
    out = []
    for ref in refs:
        try:
            out.append(ray.get(ref)[0])
        except ray.exceptions.RayError as e:
            out.append(_worker_error(e))
    return out


# ============================================================================================ predict
_CLASSIFIERS: dict[tuple, Any] = {}


class _ModelBlob:
    """A model file's bytes, so workers on other machines need not see the driver's disk."""

    def __init__(self, path: str | os.PathLike):
        p = Path(path)
        try:
            self.data = p.read_bytes()
        except OSError as exc:
            from genrekit.errors import ModelError

            raise ModelError(f"{p}: cannot read the model file ({exc.strerror or exc})") from exc
        self.name = p.name
        self.sha256 = hashlib.sha256(self.data).hexdigest()

    def materialise(self) -> Path:
        """The model as a local file (written once per machine, atomically, under the temp folder)."""
        d = Path(tempfile.gettempdir()) / "genrekit-ray-models" / self.sha256
        p = d / self.name
        if not p.is_file():
            from genrekit.engine import atomic_write_bytes

            atomic_write_bytes(p, self.data)
        return p


class PredictTask:
    """``path -> record`` exactly as the local engine makes it (``genrekit predict``'s records)."""

    def __init__(self, *, model: str | os.PathLike | None, backend: str, top_k: int, segments: bool,
                 max_duration: float | None = None):
        self.blob = _ModelBlob(model) if model is not None else None
        self.backend = backend
        self.top_k = int(top_k)
        self.segments = bool(segments)
        self.max_duration = max_duration  # seconds, or None

    def classifier(self):
        """This process's classifier for the model: loaded on first use, then reused by every batch."""
        key = (self.blob.sha256 if self.blob else None, self.backend)
        clf = _CLASSIFIERS.get(key)
        if clf is None:
            import torch

            torch.set_num_threads(1)
            from genrekit.predict import GenreClassifier

            clf = GenreClassifier.load(self.blob.materialise() if self.blob else None, backend=self.backend)
            _CLASSIFIERS[key] = clf
        return clf

    def __call__(self, path: str) -> dict[str, Any]:
        from genrekit.predict import record_for

        return record_for(self.classifier(), path, top_k=self.top_k, segments=self.segments,
                          max_duration=self.max_duration)


def predict_ray(
    files: list[str],
    *,
    model: str | os.PathLike | None,
    backend: str = "torch",
    top_k: int = 3,
    segments: bool = False,
    address: str | None = None,
    progress: bool = True,
    batch_size: int | None = None,
    num_cpus: int | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    task: Callable[[str], dict[str, Any]] | None = None,
    max_duration: float | None = None,
) -> Iterator[dict[str, Any]]:
    """Records for ``files`` in input order, computed as Ray tasks: the local engine's records exactly.

    ``task`` replaces the per-file function (tests use it to kill a worker on a chosen file);
    ``max_duration`` (seconds) as in :meth:`GenreClassifier.predict`."""
    from genrekit.predict import error_record

    fn = task if task is not None else PredictTask(model=model, backend=backend, top_k=top_k, segments=segments,
                                                   max_duration=max_duration)
    for path, res in ray_map(fn, [str(f) for f in files], address=address, num_cpus=num_cpus,
                             batch_size=batch_size, max_retries=max_retries, progress=progress, desc="predict"):
        if isinstance(res, ItemError):
            res = error_record(path, f"{path}: {res}", segments=segments)
        yield res


# ============================================================================================ features
class FeaturesTask:
    """``path -> analysis`` (genrekit.features.analyse_file): the cacheable, name-independent part."""

    def __init__(self, *, segment_seconds: float | None, extended: bool, hpss: str = "fast"):
        self.segment_seconds = segment_seconds
        self.extended = bool(extended)
        self.hpss = hpss

    def __call__(self, path: str) -> list[dict[str, object]]:
        from genrekit.features import analyse_file

        return analyse_file(path, segment_seconds=self.segment_seconds, extended=self.extended, hpss=self.hpss)


def features_ray(
    files: Iterable[str | os.PathLike],
    *,
    segment_seconds: float | None = None,
    extended: bool = False,
    hpss: str = "fast",
    address: str | None = None,
    progress: bool = True,
    batch_size: int | None = None,
    num_cpus: int | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
) -> Iterator[tuple[str, Any]]:
    """``(path, analysis | ItemError)`` for every file, in input order, computed as Ray tasks.

    The same contract as ``engine.run_local(features._analyse, ...)``, so ``genrekit features`` caches and
    writes the results exactly as it does for the local engine."""
    fn = FeaturesTask(segment_seconds=segment_seconds, extended=extended, hpss=hpss)
    yield from ray_map(fn, [str(f) for f in files], address=address, num_cpus=num_cpus, batch_size=batch_size,
                       max_retries=max_retries, progress=progress, desc="features")
