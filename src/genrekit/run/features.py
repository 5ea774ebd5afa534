"""Feature rows of audio files on any engine: ``genrekit features``, training on audio and Python callers.

Every file's analysis (``features.analyse_file``: values without names) goes through the one feature
cache (keyed by the file's bytes and :meth:`genrekit.features.FeatureSettings.cache_settings`) with
:func:`~genrekit.run.cached.cached_map`; the rows are named from it (:func:`rows_from_analysis`), so a
second run, or a run killed half-way and rerun, computes only what is missing.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genrekit.errors import GenrekitError
from genrekit.run.cached import cached_map
from genrekit.run.engines import DEFAULT_MAX_RETRIES, Engine, LocalEngine, RayEngine
from genrekit.run.items import ItemError, Result
from genrekit.store import Cache

if TYPE_CHECKING:
    from genrekit.datasets import FeatureTable, Track
    from genrekit.features import FeatureSettings

__all__ = [
    "extract_file", "feature_analyses", "feature_cache", "feature_header", "feature_rows", "feature_table",
    "features_ray", "rows_from_analysis",
]


def feature_cache(settings: FeatureSettings, *, enabled: bool = True, root: str | os.PathLike | None = None) -> Cache:
    """The feature cache for ``settings``: the one place every feature path reads and writes."""
    return Cache("features", settings.cache_settings(), root=root, enabled=enabled)




def feature_analyses(
    files: Iterable[str | os.PathLike], settings: FeatureSettings | None = None, engine: Engine | None = None, *,
    cache: bool | Cache = True,
) -> Iterator[Result]:
    """Each file's analysis (``features.analyse_file``: values without names), from the feature cache or
    computed by ``engine`` (default: this process) and then cached. Cache hits come first, in input
    order, then the computed ones as they complete."""
    from genrekit.features import FeatureSettings, finite_analysis

    settings = settings or FeatureSettings()
    store = cache if isinstance(cache, Cache) else feature_cache(settings, enabled=bool(cache))
    # an analysis cached by an older version may hold NaN: a miss, so the file is recomputed (and refused)
    yield from cached_map(settings.analyse, (str(f) for f in files), store, engine=engine, desc="features",
                          load=lambda k: finite_analysis(store.get(k)))


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
    :func:`feature_rows` on a :class:`~genrekit.run.engines.RayEngine` adds it)."""
    from genrekit.features import FeatureSettings

    settings = FeatureSettings(segment_seconds=segment_seconds, extended=bool(extended), hpss=hpss)
    engine = RayEngine(address=address, num_cpus=num_cpus, batch_size=batch_size, max_retries=max_retries,
                       progress=progress)
    yield from engine.map(settings.analyse, [str(f) for f in files], desc="features")
