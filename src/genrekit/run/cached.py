"""One loop for "a task over many files, through a content cache": :func:`cached_map`.

Every cached batch in genrekit goes through it (feature rows, musicnn analyses, the library tools'
genre records and musicnn summaries, the experiments' musicnn embeddings), so each gets the same
behaviour: a file is keyed by its bytes (and the cache's settings), a hit is never recomputed, the
misses run on any engine, a bad file is one failed :class:`~genrekit.run.items.Result`, and a cache that
cannot be written costs time, never results.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from genrekit.run.engines import Engine, LocalEngine
from genrekit.run.items import ItemError, Result
from genrekit.store import Cache, file_digest

__all__ = ["cached_map", "unreadable"]


def unreadable(path: Any, exc: OSError) -> ItemError:
    """Why a file could not be keyed (read for its digest): ``<path>: <the OS's reason>``."""
    kind = "AudioFileNotFoundError" if isinstance(exc, FileNotFoundError) else type(exc).__name__
    return ItemError(kind, f"{path}: {exc.strerror or exc}")


def _stat(path: Any) -> tuple[int, int, int]:
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def cached_map(
    task: Callable[[Any], Any], items: Iterable[Any], cache: Cache | None, *, engine: Engine | None = None,
    desc: str = "batch", key: Callable[[Any], Any] | None = None, load: Callable[[Any], Any] | None = None,
    save: Callable[[Any, Any], None] | None = None, unchanged: str | None = None,
    key_error: Callable[[Any, OSError], ItemError] = unreadable,
) -> Iterator[Result]:
    """``task`` of each item through a content cache, as :class:`~genrekit.run.items.Result` s (``input``
    the item, ``key`` its cache key): hits (``load(key(item))`` not None) first, in input order, then the
    computed ones (``engine``, default this process) as they complete, each saved with ``save``.

    ``cache`` gives the defaults: ``key`` its memoised content digest (:meth:`Cache.key`), ``load`` /
    ``save`` its :meth:`~Cache.get` / :meth:`~Cache.put`; None reads and writes nothing (keys are still
    taken, with ``key`` or :func:`~genrekit.store.file_digest`). An item whose key cannot be taken
    (missing, unreadable) fails with ``key_error(item, exc)`` and is not run; an engine's failure is
    the item's ``error``. A save that fails (a full or read-only cache) is a warning: the result stands.

    ``unchanged`` (a reason, e.g. ``"changed while being classified"``): each file's size, mtime and
    inode are taken before its key and checked after its task, so a result always belongs to the bytes
    it is filed under; a file that changed fails with ``<path>: <reason>`` and is not saved."""
    if key is None:
        key = cache.key if cache is not None else file_digest
    if load is None:
        load = cache.get if cache is not None else (lambda k: None)
    if save is None:
        save = cache.put if cache is not None else (lambda k, v: None)
    keys: dict[Any, Any] = {}
    stats: dict[Any, tuple[int, int, int]] = {}
    todo: list[Any] = []
    for raw in items:
        item = os.fspath(raw) if isinstance(raw, os.PathLike) else raw
        try:
            if unchanged is not None:
                stats[item] = _stat(item)
            k = key(item)
        except OSError as exc:
            yield Result(item, error=key_error(item, exc))
            continue
        hit = load(k)
        if hit is not None:
            yield Result(item, hit, cached=True, key=k)
        else:
            keys[item] = k
            todo.append(item)
    if not todo:
        return
    for item, res in (engine or LocalEngine()).map(task, todo, desc=desc):
        k = keys[item]
        if isinstance(res, ItemError):
            yield Result(item, error=res, key=k)
            continue
        if unchanged is not None:
            try:
                now = _stat(item)
            except OSError as exc:
                yield Result(item, error=unreadable(item, exc), key=k)
                continue
            if now != stats[item]:
                yield Result(item, error=ItemError("FileChanged", f"{item}: {unchanged}"), key=k)
                continue
        try:
            save(k, res)
        except OSError as exc:  # a full or read-only cache must not lose the results
            warnings.warn(f"{desc} cache not written ({exc})", stacklevel=2)
        yield Result(item, res, key=k)
