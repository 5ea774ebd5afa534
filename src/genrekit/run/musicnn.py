"""musicnn per file, on any engine: ``genrekit tags``, ``genrekit embed`` and the facade's ``genrekit.tags()`` /
``genrekit.embed()``.

Each file's :class:`MusicnnAnalysis` (every 3 s patch's taggram, penultimate and pooled vectors, and its
level) goes through one content cache (:func:`musicnn_analyses`, with
:func:`~genrekit.run.cached.cached_map`) that tags and embeddings share; records and rows are made
from it. Moved here whole from ``batch.py``; the per-file analysis itself is
``genrekit.networks.musicnn.analysis``.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genrekit.errors import GenrekitError
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
from genrekit.run.cached import cached_map
from genrekit.run.engines import Engine, LocalEngine
from genrekit.run.items import ItemError, Result, error_text, find_audio
from genrekit.store import Cache, atomic_write_text, written_like

if TYPE_CHECKING:
    pass

__all__ = [
    "EMBED_LAYERS", "MusicnnAnalysis", "MusicnnSettings", "MusicnnTask", "check_layers", "embedding_results",
    "embedding_rows", "embedding_rows_columns", "embedding_settings", "error_text", "musicnn_analyses",
    "musicnn_analysis", "musicnn_cache", "musicnn_embeddings", "musicnn_tags", "patch_levels", "tag_error_record",
    "tag_record", "tag_results", "write_embeddings",
]


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
    yield from cached_map(MusicnnTask(settings), (str(f) for f in files), store, engine=engine, desc="musicnn",
                          load=functools.partial(load_analysis, store), save=functools.partial(save_analysis, store))


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

    from genrekit.parquet_out import write_parquet
    from genrekit.store import atomic_writer

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

        def same_arrays(q: Path) -> bool:  # an earlier run's .npz may be replaced, a user's file never
            try:
                with zipfile.ZipFile(q) as old:
                    return sorted(old.namelist()) == sorted(f"{c}.npy" for c in arrays)
            except (OSError, zipfile.BadZipFile):
                return False

        with atomic_writer(p, "wb", replace=same_arrays) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
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
        atomic_write_text(p, buf.getvalue(), replace=written_like(buf.getvalue()))
        return p
    raise GenrekitError(f"{p}: embeddings are written as .parquet, .npz or .csv (or a folder ending in /), "
                        f"not {suffix or 'a file without a suffix'}")




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
