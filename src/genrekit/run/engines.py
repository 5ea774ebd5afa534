"""The engines: how a picklable per-item task runs over many items, here or on a cluster. "Engine" means
this and only this in genrekit.

- :class:`LocalEngine` (through :func:`run_local`): this process, or a pool of worker processes that
  never lets one bad item stop the batch (a dying worker fails only its item); the number of workers
  is clamped to the items and to the CPUs this process may use (:func:`clamp_jobs`), with one notice
  on stderr when the CPUs bound it;
- :class:`RayEngine` (through :func:`ray_map`): batches of items as Ray tasks, retried alone when a
  worker dies; ``ray`` (an optional extra: ``pip install 'genrekit[ray]'``) is imported only when used.

Both yield ``(item, value | ItemError)``. Here too the helpers of running work in one process:
:func:`limit_blas_threads` (one BLAS thread per worker) and :func:`prefetch` (a producer thread one item
ahead, so decoding overlaps the models). Nothing here imports numpy, torch or librosa, so worker
start-up stays cheap.

Ray: paths are read by the workers, so on a cluster the audio must be visible at the same path on every
node (a shared file system); relative paths are resolved against the driver's working directory. A task
with a ``portable()`` method (``run.predict.PredictTask``) ships the model file's bytes with it, so the
model need only exist on the driver. Each worker process loads a model once and reuses it for every batch
it runs. A batch whose worker dies (out of memory, native crash, lost node) is retried by Ray
(``max_retries``), then split so every file gets one more try alone: only the file that kills its
worker ends as failed ("WorkerDied").
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from genrekit.errors import GenrekitError
from genrekit.run.items import ItemError

T = TypeVar("T")
R = TypeVar("R")

__all__ = [
    "MAX_BATCH_SIZE", "Engine", "LocalEngine", "RayEngine", "RayEngineError", "auto_batch_size", "clamp_jobs",
    "cluster_cpus", "connect", "limit_blas_threads", "prefetch", "ray_map", "require_ray", "run_local",
    "safe_start_method", "usable_cpus",
]


class Engine(Protocol):
    """Runs a picklable per-file ``task`` over ``items``, yielding ``(item, value | ItemError)``."""

    def map(self, task: Callable[[str], Any], items: Sequence[str], *, desc: str) -> Iterator[tuple[str, Any]]: ...


# ============================================================================================ how many workers


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask: a container's or ``taskset``'s limit), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def clamp_jobs(jobs: int | None, n_items: int, *, cpus: int | None = None) -> int:
    """Worker processes worth starting for ``n_items`` items when ``jobs`` are asked (None: one per CPU):
    never more than the items, nor than the usable CPUs (``cpus``, default :func:`usable_cpus`): more
    only add memory and contention (``--jobs 64`` on 2 cores started 24 workers, 4.8 GB, 3.5x slower)."""
    cpus = usable_cpus() if cpus is None else max(1, int(cpus))
    want = cpus if jobs is None else max(1, int(jobs))
    return max(1, min(want, int(n_items), cpus))


_TOLD_CLAMP = False


def _clamped(jobs: int, n_items: int) -> int:
    """:func:`clamp_jobs`, telling the user once per process (on stderr) when the CPUs cut the workers
    asked for: the item count cutting them costs nothing and goes unsaid."""
    global _TOLD_CLAMP
    cpus = usable_cpus()
    workers = clamp_jobs(jobs, n_items, cpus=cpus)
    if jobs > cpus and workers < jobs and not _TOLD_CLAMP:
        _TOLD_CLAMP = True
        print(f"genrekit: running {workers} worker process(es), not {jobs}: {cpus} CPU(s) are usable here "
              "and more workers would only add memory and slow the run", file=sys.stderr)
    return workers


# ============================================================================================ this process


def limit_blas_threads(n: int = 1) -> None:
    """Cap BLAS/OpenMP threads in this process: with one worker per core, threaded BLAS only adds
    contention (a 128x1025 matmul was 20x slower with OpenBLAS's threads on a busy machine)."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    if "numpy" in sys.modules:  # already loaded: the env vars came too late, ask the libraries directly
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            return
        threadpool_limits(n)


def prefetch(items: Iterable[T], *, depth: int = 1) -> Iterator[T]:
    """``items`` produced by a background thread, at most ``depth`` ahead of the consumer.

    For I/O-bound producers whose C code releases the GIL (decoding and resampling audio): a 4-minute
    mp3 is decoded while the models run on the block before, 1.46 -> 1.19 s end to end here. The
    producer's exceptions are re-raised in order; when the consumer stops early (an error, ``close()``,
    Ctrl-C) the producer is told to stop and its iterator is closed, so no thread or open file is left."""
    if depth < 1:
        raise ValueError(f"prefetch depth must be >= 1, got {depth}")
    import queue

    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    done = object()

    def put(x: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        it = iter(items)
        try:
            for x in it:
                if not put((None, x)):
                    return
            put((done, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put((exc, None))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="genrekit-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            tag, x = q.get()
            if tag is done:
                return
            if tag is not None:
                raise tag
            yield x
    finally:
        stop.set()
        worker.join()


# ============================================================================================ process pool


def _worker_init(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and shuts the pool down
    limit_blas_threads(1)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True, name="genrekit-parent-watch").start()


def _exit_with(parent: int, interval: float = 1.0) -> None:
    """End this worker once the process that runs the batch is gone: killed with SIGKILL, it cannot shut
    its pool down, and idle workers (each holding a model) would otherwise linger for ever."""
    while True:
        time.sleep(interval)
        try:
            os.kill(parent, 0)
        except OSError:  # ESRCH: gone; EPERM: the pid now names someone else's process, so ours is gone too
            os._exit(1)


def _call(func: Callable[[T], R], item: T) -> R | ItemError:
    try:
        return func(item)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a per-item error
        return ItemError.from_exception(exc)


def _progress(total: int, desc: str | None, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="file", file=sys.stderr, disable=not enabled or None,
                dynamic_ncols=True, leave=False)


def run_local(
    func: Callable[[T], R],
    items: Iterable[T],
    *,
    jobs: int = 1,
    progress: bool = True,
    desc: str | None = None,
    start_method: str | None = None,
) -> Iterator[tuple[T, R | ItemError]]:
    """Apply ``func`` to every item, yielding ``(item, result)`` or ``(item, ItemError)`` as each ends.

    ``jobs <= 1`` (or a single item) runs in this process; otherwise a process pool of
    :func:`clamp_jobs` workers: ``jobs``, but never more than the items or the usable CPUs (one worker
    process on a one-CPU machine: asking for a pool still keeps a crash out of this process). Fork where
    available (no re-import, fast start); pass ``start_method=safe_start_method()`` when this process
    holds torch or OpenMP threads. ``func`` must be picklable (a module-level function, a
    functools.partial of one, a bound method or a small callable object). An exception in ``func``
    fails that item only. A worker that dies (out of memory, segfault) breaks the pool: the items it
    held are retried once, alone, in a fresh pool, and fail with the reason if they break it again.
    Results come in completion order.
    """
    items = list(items)
    if not items:
        return
    jobs = max(1, int(jobs or 1))
    bar = _progress(len(items), desc, progress)
    try:
        if jobs == 1 or len(items) == 1:
            for it in items:
                res = _call(func, it)
                bar.update(1)
                yield it, res
            return
        yield from _run_pool(func, items, _clamped(jobs, len(items)), bar, start_method)
    finally:
        bar.close()


def safe_start_method() -> str:
    """``"forkserver"`` where the platform has it, else ``"spawn"``: the start method for a pool whose
    parent holds torch or OpenMP threads, which a forked child may deadlock on."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _context(start_method: str | None):
    methods = multiprocessing.get_all_start_methods()
    method = start_method or ("fork" if "fork" in methods else "spawn")
    return multiprocessing.get_context(method)


def _run_pool(func, items, jobs, bar, start_method):
    ctx = _context(start_method)
    pending = list(range(len(items)))[::-1]  # stack of indices not yet submitted
    suspects: list[int] = []  # in flight when a pool broke: retried one at a time
    tried_alone: set[int] = set()
    while pending or suspects:
        alone = bool(suspects)
        workers = 1 if alone else min(jobs, len(pending))
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                   initargs=(os.getpid(),))
        inflight: dict[Future, int] = {}
        broken = False
        try:
            while (pending or suspects or inflight) and not broken:
                while not broken and len(inflight) < (1 if alone else 2 * workers):
                    if alone:
                        if not suspects or inflight:
                            break
                        i = suspects.pop()
                        tried_alone.add(i)
                    elif pending:
                        i = pending.pop()
                    else:
                        break
                    inflight[pool.submit(_call, func, items[i])] = i
                if not inflight:
                    break
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = inflight.pop(fut)
                    try:
                        res = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        if i in tried_alone:
                            bar.update(1)
                            yield items[i], ItemError("WorkerDied", "the worker process died on this item "
                                                      "(out of memory or a crash in native code)")
                        else:
                            suspects.append(i)
                        continue
                    except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result
                        res = ItemError.from_exception(exc)
                    bar.update(1)
                    yield items[i], res
                if alone and not broken and not inflight:
                    break  # the suspect ran fine alone; go back to the full pool
            if broken:
                for fut, i in inflight.items():
                    fut.cancel()
                    if i in tried_alone:
                        bar.update(1)
                        yield items[i], ItemError("WorkerDied", "the worker process died on this item")
                    else:
                        suspects.append(i)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class LocalEngine:
    """This machine: in this process (``jobs=1``) or a pool of ``jobs`` worker processes (None: one per
    usable CPU), through :func:`run_local` (a dying worker fails only its item; never more workers than
    items or usable CPUs). Results come as they complete. A task that holds torch state says
    ``fork_safe = False`` and gets forkserver workers."""

    jobs: int | None = 1
    progress: bool = True

    @property
    def workers(self) -> int:
        """The most processes this engine runs tasks in at once (never more than the usable CPUs)."""
        return clamp_jobs(self.jobs, sys.maxsize)

    @property
    def in_process(self) -> bool:
        """Whether tasks run in this process (one job) rather than in worker processes."""
        return (self.jobs or usable_cpus()) == 1

    def map(self, task: Callable[[str], Any], items: Sequence[str], *, desc: str = "batch") -> Iterator[tuple[str, Any]]:
        method = None if getattr(task, "fork_safe", True) else safe_start_method()
        yield from run_local(task, items, jobs=self.jobs or usable_cpus(), progress=self.progress, desc=desc,
                             start_method=method)


# ============================================================================================ Ray


# Files per task: enough to amortise scheduling (~ms per task), few enough to spread a small run over
# every CPU (about 4 batches per CPU) and to lose little when a worker dies.
MAX_BATCH_SIZE = 32
DEFAULT_MAX_RETRIES = 2


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


# Ray: worker side
_WORKER_READY = False


def _enter_worker(cwd: str) -> None:
    """Once per worker process: one BLAS/torch thread (one task per CPU) and the driver's directory."""
    global _WORKER_READY
    if not _WORKER_READY:
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


# Ray: driver side
def auto_batch_size(n_items: int, cpus: int) -> int:
    """About four batches per CPU, between 1 and MAX_BATCH_SIZE files each."""
    return max(1, min(MAX_BATCH_SIZE, -(-n_items // (4 * max(1, cpus)))))


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
    :class:`~genrekit.run.items.ItemError`.

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


@dataclass
class RayEngine:
    """:class:`Engine` on Ray: ``map`` runs a per-file task as Ray tasks (see :func:`ray_map`)
    and yields in input order. A task with a ``portable()`` method (``run.predict.PredictTask``) is shipped
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
