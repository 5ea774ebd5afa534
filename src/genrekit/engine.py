"""Running work over many items: a local process pool that never lets one bad item stop the batch, a
content-addressed cache, and atomic file writes.

Batch commands (features, predict, a later Ray engine) share these so that they behave alike: every
item ends as a result or an :class:`ItemError` with a reason; a cached item is never recomputed; a run
killed half-way (even by SIGKILL) leaves complete cache entries and either the old output file or the
new one, never half of one. Nothing here imports numpy, torch or librosa, so worker start-up is cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

__all__ = [
    "Cache", "ItemError", "atomic_write_bytes", "atomic_write_text", "atomic_writer", "cache_root",
    "file_digest", "limit_blas_threads", "run_local",
]


# ============================================================================================ atomic files


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.

    Readers (and a later run after a crash or SIGKILL) see either the old file or the complete new
    one. On an exception the temporary file is removed and ``path`` is untouched.
    """
    if "w" not in mode and "x" not in mode:
        raise ValueError("atomic_writer only writes: use mode 'w' or 'wb'")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, mode.replace("x", "w"), **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> None:
    with atomic_writer(path, "w", encoding=encoding, newline="") as f:
        f.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_writer(path, "wb") as f:
        f.write(data)


# ============================================================================================ cache


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/genrekit`` (default ``~/.cache/genrekit``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "genrekit"


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes: the cache key, so renamed or copied files still hit the cache."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _settings_digest(settings: Mapping[str, Any]) -> str:
    blob = json.dumps(dict(settings), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Cache:
    """JSON results keyed by file content and the settings that produced them.

    Entries live in ``<root>/<namespace>/<settings digest>/<aa>/<content digest>.json`` and are written
    atomically, so a killed run leaves only complete entries. Hashing is skipped for a file whose
    path, size, mtime and inode match a digest recorded earlier (the second run over 1000 clips then
    reads no audio at all). ``enabled=False`` makes every lookup a miss and stores nothing.
    """

    def __init__(self, namespace: str, settings: Mapping[str, Any], *, root: str | os.PathLike | None = None,
                 enabled: bool = True):
        if not namespace or "/" in namespace or namespace.startswith("."):
            raise ValueError(f"bad cache namespace {namespace!r}")
        self.namespace = namespace
        self.settings = dict(settings)
        self.enabled = enabled
        self.root = Path(root) if root is not None else cache_root()
        self.dir = self.root / namespace / _settings_digest(self.settings)
        self._settings_written = False

    # -- keys
    def key(self, path: str | os.PathLike) -> str:
        """Content digest of ``path`` (memoised by path, size, mtime and inode)."""
        p = Path(path)
        st = p.stat()
        memo_id = hashlib.sha256(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}".encode()).hexdigest()
        memo = self.root / "digests" / memo_id[:2] / memo_id
        if self.enabled:
            try:
                digest = memo.read_text().strip()
                if len(digest) == 64:
                    return digest
            except OSError:
                pass
        digest = file_digest(p)
        if self.enabled:
            with contextlib.suppress(OSError):
                atomic_write_text(memo, digest)
        return digest

    def _entry(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    # -- values
    def get(self, key: str) -> Any | None:
        """The stored value, or None on a miss (an unreadable entry counts as a miss and is removed)."""
        if not self.enabled:
            return None
        e = self._entry(key)
        try:
            with open(e, encoding="utf-8") as f:
                return json.load(f)["value"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            with contextlib.suppress(OSError):
                e.unlink()
            return None

    def put(self, key: str, value: Any) -> None:
        if not self.enabled:
            return
        if not self._settings_written:
            atomic_write_text(self.dir / "settings.json", json.dumps(self.settings, sort_keys=True, indent=1, default=str))
            self._settings_written = True
        atomic_write_text(self._entry(key), json.dumps({"value": value}, allow_nan=True))

    def __contains__(self, key: str) -> bool:
        return self.enabled and self._entry(key).is_file()


# ============================================================================================ process pool


@dataclass(frozen=True)
class ItemError:
    """Why one item failed: the exception's class name and message (picklable, printable)."""

    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}" if self.message else self.kind

    @classmethod
    def from_exception(cls, exc: BaseException) -> ItemError:
        return cls(type(exc).__name__, str(exc))


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


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and shuts the pool down
    limit_blas_threads(1)


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

    ``jobs <= 1`` (or a single item) runs in this process; otherwise a process pool of ``jobs`` workers
    (fork where available: no re-import, fast start). ``func`` must be a module-level function (or a
    functools.partial of one). An exception in ``func`` fails that item only. A worker that dies (out
    of memory, segfault) breaks the pool: the items it held are retried once, alone, in a fresh pool,
    and fail with the reason if they break it again. Results come in completion order.
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
        yield from _run_pool(func, items, jobs, bar, start_method)
    finally:
        bar.close()


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
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init)
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
