"""Pretrained networks per file, on any engine: ``genrekit tags``, ``genrekit embed`` and the facade's
``genrekit.tags()`` / ``genrekit.embed()``, for every network of the registry (musicnn, mn04).

Each file's analysis (every window's outputs and level: ``networks.<family>.analysis``) goes through its
network's one content cache (:func:`analyses`, with :func:`~genrekit.run.cached.cached_map`) that tags
and embeddings share; records and rows are made from it through the interface every network's analysis
has (``model``, ``duration``, ``n_windows``, ``starts``, ``ends``, ``audible``, ``window``, ``means``,
``top_tags``), so nothing here branches on a network's name. The network is chosen by its settings
(:func:`network_settings`, from the registry: ``"MSD_musicnn"``, ``"mn04"``, ``"audioset"``, ...).

Records keep musicnn's keys for every network (``n_patches``, ``patch``): a *patch* is the network's
window, 3 s side by side for musicnn, 10 s spread across the song for mn04, so one schema reads both.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from genrekit import networks
from genrekit.errors import GenrekitError
from genrekit.run.cached import cached_map
from genrekit.run.engines import Engine, LocalEngine
from genrekit.run.items import ItemError, Result, error_text, find_audio
from genrekit.store import Cache, atomic_write_text, written_like

__all__ = [
    "NetworkTask", "analyse", "analyses", "check_layers", "check_top_k", "embedding_results", "embedding_rows",
    "embedding_rows_columns", "embedding_settings", "error_text", "layer_sizes", "network_embeddings",
    "network_settings", "network_tags", "tag_count", "tag_error_record", "tag_record", "tag_results",
    "tags_settings", "write_embeddings",
]


def network_settings(model: str = "MSD_musicnn", backend: str = "onnx") -> Any:
    """The analysis settings of ``model`` (any name of the registry, aliases too): the network, its
    backend, and so its cache entries (``networks.settings``)."""
    return networks.settings(model, backend)


def analyse(path: str, settings: Any) -> Any:
    """One file's analysis by ``settings``' network (no cache): what every worker runs."""
    return settings.analyse(path)


class NetworkTask:
    """``path -> analysis`` for any engine: small and picklable (each worker process loads the network
    once; the network's module keeps it). Workers are never forked: the parent may hold torch or an
    onnxruntime session."""

    fork_safe = False

    def __init__(self, settings: Any):
        self.settings = settings

    def __call__(self, path: str) -> Any:
        return analyse(path, self.settings)


def analyses(
    files: Iterable[str | os.PathLike], settings: Any = None, engine: Engine | None = None, *,
    cache: bool | Cache = True,
) -> Iterator[Result]:
    """Each file's analysis, from its network's content cache (keyed by the file's bytes and
    ``settings.cache_settings()``) or computed by ``engine`` and then cached: a second run over the
    same files, or a rerun after an interrupted one, runs the network only for what is missing."""
    settings = settings or network_settings()
    store = cache if isinstance(cache, Cache) else settings.cache(enabled=bool(cache))
    yield from cached_map(NetworkTask(settings), (str(f) for f in files), store, engine=engine, desc=settings.family,
                          load=lambda k: settings.load(store, k), save=lambda k, v: settings.save(store, k, v))


def _pairs(tags: list[tuple[str, float]]) -> list[list[Any]]:
    return [[t, round(float(v), 6)] for t, v in tags]


def tag_record(path: str, analysis: Any, *, top_k: int = 5, segments: bool = False,
               genres: bool = False) -> dict[str, Any]:
    """``genrekit tags``' record of one file: ``file, model, duration_s, n_patches, tags`` (the ``top_k``
    best ``[tag, score]`` over the audible windows: the analysis's ``top_tags``; ``genres``: among the
    network's genre classes only), with ``segments`` the timeline (each window's ``start``, ``end`` and
    ``tags``, or ``silent: true``), ``error``."""
    rec: dict[str, Any] = {"file": path, "model": analysis.model, "duration_s": round(analysis.duration, 3),
                           "n_patches": analysis.n_windows, "tags": _pairs(analysis.top_tags(top_k, genres=genres))}
    if segments:
        rec["segments"] = [
            {"start": round(float(s), 3), "end": round(float(t), 3),
             "tags": _pairs(analysis.top_tags(top_k, window=i, genres=genres))}
            if ok else {"start": round(float(s), 3), "end": round(float(t), 3), "tags": None, "silent": True}
            for i, (s, t, ok) in enumerate(zip(analysis.starts, analysis.ends, analysis.audible, strict=True))]
    rec["error"] = None
    return rec


def tag_error_record(path: str, error: str, *, model: str, segments: bool = False) -> dict[str, Any]:
    """The record of a file that got no tags: the same keys, ``tags`` None, and why."""
    rec: dict[str, Any] = {"file": path, "model": model, "duration_s": None, "n_patches": None, "tags": None}
    if segments:
        rec["segments"] = None
    rec["error"] = error
    return rec


def _genre_count(family: str) -> int | None:
    spec = networks.spec(family)
    return len(spec.genre_labels()) if hasattr(spec, "genre_labels") else None


def tag_count(settings: Any = None, *, genres: bool = False) -> int:
    """How many tags ``settings``' network ranks (its genre classes with ``genres``: mn04's 48);
    :class:`~genrekit.errors.GenrekitError` when ``genres`` is asked of a network without genre classes."""
    settings = settings or network_settings()
    if not genres:
        return len(networks.spec(settings.family).tag_names(settings.model))
    n = _genre_count(settings.family)
    if n is None:
        with_genres = ", ".join(f for f in networks.FAMILIES if _genre_count(f))
        raise GenrekitError(f"{settings.model} has no genre classes; genres only is for {with_genres} "
                            "(e.g. model 'audioset')")
    return n


def check_top_k(top_k: int, settings: Any = None, *, genres: bool = False) -> int:
    """``top_k`` when it is a whole number from 1 to :func:`tag_count`;
    :class:`~genrekit.errors.GenrekitError` otherwise."""
    n = tag_count(settings, genres=genres)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= n:
        raise GenrekitError(f"top_k must be a whole number of tags from 1 to {n}, got {top_k!r}")
    return top_k


def tags_settings(settings: Any, *, top_k: int, segments: bool, genres: bool = False) -> dict[str, Any]:
    """What decides a tags output's content, for resuming it (journal and Parquet folder)."""
    content = {settings.family: settings.cache_settings(), "top_k": top_k, "segments": segments}
    return {**content, "genres": True} if genres else content


def tag_results(
    files: Iterable[str | os.PathLike], settings: Any = None, engine: Engine | None = None, *,
    top_k: int = 5, segments: bool = False, genres: bool = False, cache: bool | Cache = True,
) -> Iterator[Result]:
    """Each file's :func:`tag_record` as a :class:`Result` (value: the record; a failed one keeps its
    :func:`tag_error_record`, as :func:`record_result` does), through :func:`analyses`."""
    settings = settings or network_settings()
    top_k = check_top_k(top_k, settings, genres=genres)
    for r in analyses(files, settings, engine, cache=cache):
        if r.ok:
            yield Result(r.input, tag_record(r.input, r.value, top_k=top_k, segments=segments, genres=genres),
                         cached=r.cached)
        else:
            msg = error_text(r.input, r.error)
            yield Result(r.input, tag_error_record(r.input, msg, model=settings.model, segments=segments),
                         error=ItemError(r.error.kind, msg))


def layer_sizes(settings: Any = None) -> dict[str, int]:
    """The layers ``settings``' network offers to ``embed``, and their lengths (its spec's ``LAYERS``)."""
    return dict(networks.spec((settings or network_settings()).family).LAYERS)


def check_layers(layers: Iterable[str] | str | None, settings: Any = None) -> list[str]:
    """Layer names of ``settings``' network, checked, in its ``LAYERS``' order (None: all of them)."""
    known = layer_sizes(settings)
    if layers is None:
        return list(known)
    asked = [layers] if isinstance(layers, str) else list(layers)
    bad = [x for x in asked if x not in known]
    if bad or not asked:
        raise GenrekitError(f"unknown embedding layer(s) {', '.join(map(repr, bad)) or '(none given)'}; "
                            f"choose from {', '.join(known)}")
    return [x for x in known if x in asked]


def embedding_rows(path: str, analysis: Any, *, layers: Sequence[str], per_window: bool = False) -> list[dict[str, Any]]:
    """``genrekit embed``'s rows for one file, each layer a float32 vector.

    Per file (default): ``file, duration_s, n_patches, n_silent`` and each layer's mean over the
    audible windows (``n_silent`` windows below ``dsp.SILENCE_DB`` are left out, as ``predict``
    leaves them out). ``per_window``: one row per window, ``file, duration_s, patch, start, end,
    silent`` and the window's vectors (silent ones included, flagged)."""
    audible = analysis.audible
    if per_window:
        starts, ends = analysis.starts, analysis.ends
        vectors = {x: analysis.window(x) for x in layers}
        return [{"file": path, "duration_s": analysis.duration, "patch": i, "start": float(starts[i]),
                 "end": float(ends[i]), "silent": not bool(audible[i]), **{x: v[i] for x, v in vectors.items()}}
                for i in range(analysis.n_windows)]
    return [{"file": path, "duration_s": analysis.duration, "n_patches": analysis.n_windows,
             "n_silent": int(analysis.n_windows - audible.sum()), **analysis.means(layers)}]


def embedding_results(
    files: Iterable[str | os.PathLike], settings: Any = None, engine: Engine | None = None, *,
    layers: Iterable[str] | str | None = None, per_window: bool = False, cache: bool | Cache = True,
) -> Iterator[Result]:
    """Each file's :func:`embedding_rows` as a :class:`Result`, through :func:`analyses`."""
    settings = settings or network_settings()
    layers = check_layers(layers, settings)
    for r in analyses(files, settings, engine, cache=cache):
        if r.ok:
            yield Result(r.input, embedding_rows(r.input, r.value, layers=layers, per_window=per_window),
                         cached=r.cached)
        else:
            yield Result(r.input, error=ItemError(r.error.kind, error_text(r.input, r.error)))


def embedding_settings(settings: Any, *, layers: Sequence[str], per_window: bool) -> dict[str, Any]:
    """What decides an embedding output's content, for resuming it (Parquet folders)."""
    return {settings.family: settings.cache_settings(), "layers": list(layers), "per_window": bool(per_window)}


def write_embeddings(path: str | os.PathLike, rows: list[dict[str, Any]], *, vectors: Mapping[str, int]) -> Path:
    """Embedding rows as one file, chosen by its suffix, written atomically:

    - ``.parquet``: one column per layer, ``fixed_size_list<float32>[n]`` (``parquet_out.rows_to_table``);
    - ``.npz``: one array per column (``file``, ``duration_s``, ... as 1-D, each layer ``(rows, n)``),
      no pickle needed to load it;
    - ``.csv``: one column per value (``penultimate_0`` ... ``penultimate_199``), for tools that read
      nothing else (and 5-10x larger).

    ``vectors``: the layers written and their lengths (:func:`layer_sizes`), in column order."""
    import numpy as np

    from genrekit.parquet_out import write_parquet
    from genrekit.store import atomic_writer

    p = Path(path)
    vectors = dict(vectors)
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
                            "(for samples in memory use a network's own embed(y, sr), e.g. "
                            "genrekit.networks.musicnn.embed or genrekit.networks.mn04.model.embed)")
    files, errors = find_audio(paths, unique=False)
    return files, errors, single and not os.path.isdir(paths_or_path)


def _engine(engine: Engine | None, jobs: int | None, progress: bool) -> Engine:
    if engine is not None:
        return engine
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise GenrekitError(f"jobs must be a positive whole number (or None: one per CPU), got {jobs!r}")
    return LocalEngine(jobs=jobs, progress=progress)


def network_tags(
    paths_or_path: Any, *, model: str = "MSD_musicnn", top_k: int = 5, segments: bool = False, genres: bool = False,
    jobs: int | None = 1, backend: str = "onnx", engine: Engine | None = None, cache: bool = True,
    progress: bool = False,
) -> list[dict[str, Any]] | dict[str, Any]:
    """``genrekit.tags``: each file's top tags by pretrained network ``model`` (musicnn's
    ``"MSD_musicnn"`` / ``"MTT_musicnn"``; ``"audioset"`` / ``"mn04"``: AudioSet's 527 classes, or its
    48 music genres with ``genres=True``), the records ``genrekit tags --format json`` prints
    (:func:`tag_record`; a file that failed, or is silent, gets an error record), in walk order: a
    list, or one dict when given one file. Folders are walked recursively; results are cached by file
    content (``cache=False``: neither read nor written)."""
    settings = network_settings(model, backend)
    check_top_k(top_k, settings, genres=genres)
    files, errors, single = _inputs(paths_or_path)
    out = [tag_error_record(p, error_text(p, e), model=settings.model, segments=segments) for p, e in errors]
    got = {r.input: r.value for r in tag_results(files, settings, _engine(engine, jobs, progress), top_k=top_k,
                                                  segments=segments, genres=genres, cache=cache)}
    out += [got[f] for f in files]
    return out[0] if single else out


def network_embeddings(
    paths_or_path: Any, *, model: str = "MSD_musicnn", layers: Iterable[str] | str | None = None,
    per_window: bool = False, jobs: int | None = 1, backend: str = "onnx", engine: Engine | None = None,
    cache: bool = True, progress: bool = False,
):
    """``genrekit.embed``: embeddings by pretrained network ``model`` as a pandas DataFrame, the rows
    ``genrekit embed`` writes (:func:`embedding_rows`: one per file, or per window with ``per_window``;
    each layer a column of float32 arrays, ``np.stack(df["penultimate"])`` the matrix), in walk order.
    Layers: musicnn's penultimate / pooled / taggram, mn04's features / logits / taggram (default: all
    of the network's). Files that fail are left out with a warning naming them, and listed in
    ``df.attrs["errors"]`` (path -> why); given one file that fails, the error is raised. Cached by file
    content, shared with :func:`network_tags`."""
    import pandas as pd

    settings = network_settings(model, backend)
    layers = check_layers(layers, settings)
    files, walk_errors, single = _inputs(paths_or_path)
    errors = {p: error_text(p, e) for p, e in walk_errors}
    got: dict[str, list[dict[str, Any]]] = {}
    for r in embedding_results(files, settings, _engine(engine, jobs, progress), layers=layers,
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
