"""The Ray engine of :mod:`genrekit.batch`: predictions and features over libraries bigger than one machine.

Ray (an optional extra: ``pip install 'genrekit[ray]'``) schedules the work; genrekit only cuts the input
list into batches, ships one batch per task and puts the answers back in input order. :class:`RayEngine`
runs the same per-file tasks as the local engine (``batch.PredictTask``, ``FeatureSettings.analyse``), so
the records and rows are the same; each worker process loads the model once (``batch.PredictTask``'s
per-process cache, keyed by the model file's sha256) and reuses it for every batch it runs, so a library
of 100,000 files costs one model load per worker, not per file.

Failures stay per file, as with the local engine: a file that cannot be read gives its error record. A
worker that dies (out of memory, a crash in native code, a lost node) makes Ray retry the batch
(``max_retries``); if the batch still fails it is split and every file is retried alone, so only the file
that kills its worker ends as failed ("WorkerDied") and the rest complete.

Paths are read by the workers: on a cluster the audio must be visible at the same path on every node
(a shared file system); relative paths are resolved against the driver's working directory. A model
file given with ``--model`` is shipped through Ray's object store, so it need only exist on the driver.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from genrekit.engine import ItemError
from genrekit.errors import GenrekitError

T = TypeVar("T")

# Files per task: enough to amortise scheduling (~ms per task), few enough to spread a small run over
# every CPU (about 4 batches per CPU) and to lose little when a worker dies.
MAX_BATCH_SIZE = 32
DEFAULT_MAX_RETRIES = 2

__all__ = ["MAX_BATCH_SIZE", "RayEngine", "auto_batch_size", "features_ray", "predict_ray", "ray_map", "require_ray"]


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


# ============================================================================================ batch engine
@dataclass
class RayEngine:
    """:class:`genrekit.batch.Engine` on Ray: ``map`` runs a per-file task as Ray tasks (see :func:`ray_map`)
    and yields in input order. A task with a ``portable()`` method (``batch.PredictTask``) is shipped
    in its portable form, carrying the model's bytes to machines that cannot see the driver's disk."""

    address: str | None = None
    num_cpus: int | None = None
    batch_size: int | None = None
    max_retries: int = DEFAULT_MAX_RETRIES
    progress: bool = True

    def map(self, task: Callable[[str], Any], items: Sequence[str], *, desc: str = "ray") -> Iterator[tuple[str, Any]]:
        portable = getattr(task, "portable", None)
        yield from ray_map(portable() if portable else task, items, address=self.address, num_cpus=self.num_cpus,
                           batch_size=self.batch_size, max_retries=self.max_retries, progress=self.progress,
                           desc=desc)


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
) -> Iterator[dict[str, Any]]:
    """Records for ``files`` in input order, computed as Ray tasks: the local engine's records exactly
    (``batch.predict_records`` on a :class:`RayEngine`).

    ``task`` replaces the per-file function (tests use it to kill a worker on a chosen file);
    ``max_duration`` (seconds) as in :meth:`GenreClassifier.predict`."""
    from genrekit.batch import PredictTask, predict_records

    engine = RayEngine(address=address, num_cpus=num_cpus, batch_size=batch_size, max_retries=max_retries,
                       progress=progress)
    fn = task or PredictTask(model=model, backend=backend, top_k=top_k, segments=segments, max_duration=max_duration)
    yield from predict_records(files, model, engine, top_k=top_k, segments=segments, backend=backend,
                               max_duration=max_duration, task=fn)


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
    """``(path, analysis | ItemError)`` for every file, in input order, computed as Ray tasks (no cache:
    ``batch.feature_rows`` on a :class:`RayEngine` adds it)."""
    from genrekit.features import FeatureSettings

    settings = FeatureSettings(segment_seconds=segment_seconds, extended=bool(extended), hpss=hpss)
    engine = RayEngine(address=address, num_cpus=num_cpus, batch_size=batch_size, max_retries=max_retries,
                       progress=progress)
    yield from engine.map(settings.analyse, [str(f) for f in files], desc="features")
