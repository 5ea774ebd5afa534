"""What every network's per-file analysis shares: THE silence rule, the level measure, the cache entry.

Each network's ``analysis`` module (``networks.musicnn.analysis``, ``networks.mn04.analysis``) cuts a
file into the windows its network hears (musicnn: 3 s patches side by side; mn04: up to six 10 s
windows across the song), runs the network on them and keeps each window's level. What decides
*silence*, how a level is measured and how an analysis is stored in the one content cache is written
once, here, so ``tags`` / ``embed`` of any network, the library tools and the experiments agree.

The silence rule: a window whose level (dBFS, RMS around the mean) is below ``dsp.SILENCE_DB`` is
*silent*: flagged in per-window output and left out of every per-file summary, as ``predict`` leaves
silent windows out; a file with no audible window is an error (:func:`check_audible`).

An analysis class stored here has ``to_cache() -> (meta, float32 matrix)`` and a classmethod
``from_cache(meta, matrix)`` that returns None for an entry that does not fit.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Protocol

import numpy as np

from genrekit.dsp import SILENCE_DB
from genrekit.store import Cache


class Cacheable(Protocol):
    def to_cache(self) -> tuple[dict[str, Any], np.ndarray]: ...


def audible(levels: np.ndarray) -> np.ndarray:
    """The silence rule: which windows (by level, dBFS) are audible, i.e. at or above ``dsp.SILENCE_DB``."""
    return np.asarray(levels) >= SILENCE_DB


def check_audible(path: str | os.PathLike, levels: np.ndarray) -> None:
    """:class:`~genrekit.errors.SilentAudioError` naming ``path`` when no window is audible: checked
    before the network runs, so a silent file gets an error, not tags made of noise."""
    from genrekit.errors import SilentAudioError

    if not audible(levels).any():
        raise SilentAudioError(f"{path}: no audible signal (RMS {float(np.max(levels)):.1f} dBFS < {SILENCE_DB:g} dBFS)")


def levels_db(s1: np.ndarray, s2: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Window levels in dBFS (``dsp.rms_db``'s measure: RMS around the mean, -inf for digital silence)
    from each window's sum, sum of squares and sample count: sums let a caller stream its blocks."""
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.maximum(s2 / count - (s1 / count) ** 2, 0.0)
        return np.where(var > 0, 10.0 * np.log10(var), -np.inf).astype(np.float32)


def span_levels(y: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """:func:`levels_db` of ``y[s:s + length]`` for each start ``s`` (windows may overlap or leave gaps)."""
    parts = [np.asarray(y[int(s): int(s) + length], dtype=np.float64) for s in starts]
    return levels_db(np.array([p.sum() for p in parts]), np.array([(p * p).sum() for p in parts]),
                     np.array([p.size for p in parts], dtype=np.float64))


def analysis_cache(namespace: str, settings: dict[str, Any], *, enabled: bool = True,
                   root: str | os.PathLike | None = None) -> Cache:
    """One network's analysis cache (namespace = the family) for ``settings``: every consumer shares it."""
    return Cache(namespace, settings, root=root, enabled=enabled)


def load_entry(cache: Cache, key: str, cls: Any) -> Any:
    """The analysis (``cls.from_cache``) ``cache`` holds under ``key`` (a content digest), or None."""
    meta = cache.get(key)  # written last: an entry is complete once its metadata is there
    return None if meta is None else cls.from_cache(meta, cache.get_array(key))


def save_entry(cache: Cache, key: str, analysis: Cacheable) -> None:
    """Store ``analysis`` under ``key``: the matrix first, the metadata that completes the entry last."""
    meta, matrix = analysis.to_cache()
    cache.put_array(key, matrix)
    cache.put(key, meta)


class NetworkSettings:
    """What every network's settings share besides its own fields: the one cache and its entries.

    A subclass (a frozen dataclass) sets ``family`` (also the cache's namespace) and ``analysis_class``
    and defines ``cache_settings()`` and ``analyse(path)``; ``genrekit.run.networks`` uses nothing else."""

    family: ClassVar[str]
    analysis_class: ClassVar[Any]

    def cache(self, *, enabled: bool = True, root: str | os.PathLike | None = None) -> Cache:
        """This network's analysis cache for these settings."""
        return analysis_cache(self.family, self.cache_settings(), enabled=enabled, root=root)

    def load(self, cache: Cache, key: str) -> Any:
        return load_entry(cache, key, self.analysis_class)

    def save(self, cache: Cache, key: str, analysis: Cacheable) -> None:
        save_entry(cache, key, analysis)
