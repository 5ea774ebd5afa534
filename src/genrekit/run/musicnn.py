"""musicnn per file, on any engine: ``genrekit tags``, ``genrekit embed`` and the facade's ``genrekit.tags()`` /
``genrekit.embed()``.

Each file's :class:`MusicnnAnalysis` (every 3 s patch's taggram, penultimate and pooled vectors, and its
level) goes through one content cache (:func:`musicnn_analyses`, with
:func:`~genrekit.run.cached.cached_map`) that tags and embeddings share; records and rows are made
from it. Moved here whole from ``batch.py``, as it was, so that it can be reconciled with the
``networks/`` package in one step.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genrekit.errors import GenrekitError, ModelError
from genrekit.run.cached import cached_map
from genrekit.run.engines import Engine, LocalEngine
from genrekit.run.items import ItemError, Result, error_text, find_audio
from genrekit.store import Cache, atomic_write_text, written_like

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "EMBED_LAYERS", "MusicnnAnalysis", "MusicnnSettings", "MusicnnTask", "check_layers", "embedding_results",
    "embedding_rows", "embedding_rows_columns", "embedding_settings", "error_text", "musicnn_analyses",
    "musicnn_analysis", "musicnn_cache", "musicnn_embeddings", "musicnn_tags", "patch_levels", "tag_error_record",
    "tag_record", "tag_results", "write_embeddings",
]


# The layers `genrekit embed` writes, and their lengths: penultimate (the usual transfer embedding),
# pooled (max then mean over time of the front- and mid-end maps), taggram (the 50 tag probabilities).
EMBED_LAYERS: dict[str, int] = {"penultimate": 200, "pooled": 1506, "taggram": 50}
MUSICNN_BACKENDS: tuple[str, ...] = ("torch", "onnx", "onnx-int8")  # musicnn_runtime.BACKENDS
MUSICNN_CACHE_VERSION = 1  # bump when MusicnnAnalysis's cached content changes


@functools.lru_cache(maxsize=4)
def _weights_sha256(model: str) -> str:
    from genrekit.embeddings import weights_path
    from genrekit.store import file_digest

    return file_digest(weights_path(model))


@dataclass(frozen=True)
class MusicnnSettings:
    """What decides a file's musicnn outputs, and so their cache entry: the network (by its weights'
    bytes) and the backend. ``"onnx"`` (the default: onnxruntime, no torch import) agrees with the
    ``"torch"`` reference within 6e-6 on taggram and penultimate; they are cached apart all the same."""

    model: str = "MSD_musicnn"
    backend: str = "onnx"

    def __post_init__(self) -> None:
        from genrekit.embeddings import MODELS

        if self.model not in MODELS:
            raise ModelError(f"unknown musicnn model {self.model!r}; choose one of {', '.join(MODELS)}")
        if self.backend not in MUSICNN_BACKENDS:
            raise ModelError(f"unknown musicnn backend {self.backend!r}; choose one of {', '.join(MUSICNN_BACKENDS)}")

    def cache_settings(self) -> dict[str, Any]:
        from genrekit.embeddings import PATCH_HOP

        return {"kind": "musicnn-patches", "version": MUSICNN_CACHE_VERSION, "model": self.model,
                "backend": self.backend, "weights_sha256": _weights_sha256(self.model), "hop": PATCH_HOP}


def patch_levels(path: str | os.PathLike, *, block_seconds: float = 60.0) -> np.ndarray:
    """Level of each musicnn patch of ``path`` (dBFS, ``dsp.rms_db``'s measure: RMS around the mean),
    patches cut as ``embeddings.embed_file`` cuts them (3 s side by side at 16 kHz; one patch for a
    shorter file). Streamed: memory holds one block, whatever the file's length."""
    import numpy as np

    from genrekit import audio, embeddings
    from genrekit.dsp import frame_count

    span = embeddings.PATCH_HOP * embeddings.HOP_LENGTH  # samples per patch; patches lie side by side
    s1, s2, cnt = np.zeros(0), np.zeros(0), np.zeros(0)
    n = 0
    for block in audio.stream(path, sr=embeddings.SR, block_seconds=block_seconds):
        if block.size == 0:
            continue
        idx = (n + np.arange(block.size)) // span
        k = int(idx[-1]) + 1
        if k > s1.size:
            s1, s2, cnt = (np.pad(a, (0, k - a.size)) for a in (s1, s2, cnt))
        b = block.astype(np.float64)
        s1 += np.bincount(idx, b, minlength=k)[: s1.size]
        s2 += np.bincount(idx, b * b, minlength=k)[: s2.size]
        cnt += np.bincount(idx, minlength=k)[: cnt.size]
        n += block.size
    n_frames = frame_count(n, hop_length=embeddings.HOP_LENGTH)
    if n_frames < embeddings.PATCH_FRAMES:  # one repeat-padded patch: all of it
        s1, s2, cnt = s1.sum(keepdims=True), s2.sum(keepdims=True), cnt.sum(keepdims=True)
    else:
        m = len(embeddings.patch_starts(n_frames))
        s1, s2, cnt = s1[:m], s2[:m], cnt[:m]
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.maximum(s2 / cnt - (s1 / cnt) ** 2, 0.0)
        return np.where(var > 0, 10.0 * np.log10(var), -np.inf).astype(np.float32)


@dataclass(frozen=True, eq=False)
class MusicnnAnalysis:
    """One file's musicnn outputs per 3 s patch (``embedding``: ``embeddings.Embedding``) and each
    patch's level (dBFS, :func:`patch_levels`): what ``genrekit tags`` and ``genrekit embed`` are made
    of, and what their shared cache holds. Patches below ``predict.SILENCE_DB`` are *silent*: kept in
    per-patch output (flagged), left out of per-file summaries, as ``predict`` leaves them out."""

    embedding: Any  # embeddings.Embedding (imported lazily: this module stays light)
    levels: np.ndarray

    @property
    def audible(self) -> np.ndarray:
        from genrekit.predict import SILENCE_DB

        return self.levels >= SILENCE_DB

    @property
    def ends(self) -> np.ndarray:
        """Each patch's end in seconds: 3 s after its start, or the end of a shorter file."""
        import numpy as np

        from genrekit.embeddings import PATCH_SECONDS

        e = self.embedding
        return np.minimum(e.starts + PATCH_SECONDS, e.duration)

    def summary(self) -> Any:
        """The embedding of the audible patches only: its ``*_mean`` are the file's summaries."""
        from genrekit.embeddings import Embedding

        e, keep = self.embedding, self.audible
        return Embedding(e.model, e.taggram[keep], e.penultimate[keep], e.pooled[keep], e.starts[keep], e.duration,
                         padded=e.padded)

    # the cache entry: a float32 matrix (levels, taggram, penultimate, pooled per patch) and JSON metadata
    def to_cache(self) -> tuple[dict[str, Any], np.ndarray]:
        import numpy as np

        e = self.embedding
        meta = {"model": e.model, "duration": float(e.duration), "padded": bool(e.padded),
                "starts": [float(x) for x in e.starts]}
        matrix = np.concatenate([self.levels[:, None], e.taggram, e.penultimate, e.pooled], axis=1).astype(np.float32)
        return meta, matrix

    @classmethod
    def from_cache(cls, meta: dict[str, Any], matrix: np.ndarray) -> MusicnnAnalysis | None:
        """The analysis an entry holds, or None when the entry does not fit (a partial or foreign write)."""
        import numpy as np

        from genrekit.embeddings import N_PENULTIMATE, N_POOLED, N_TAGS, Embedding

        n = len(meta.get("starts") or [])
        if matrix is None or matrix.shape != (n, 1 + N_TAGS + N_PENULTIMATE + N_POOLED) or n == 0:
            return None
        a, b = 1 + N_TAGS, 1 + N_TAGS + N_PENULTIMATE
        e = Embedding(meta["model"], matrix[:, 1:a], matrix[:, a:b], matrix[:, b:], np.asarray(meta["starts"]),
                      float(meta["duration"]), padded=bool(meta["padded"]))
        return cls(e, matrix[:, 0])


def musicnn_analysis(path: str | os.PathLike, settings: MusicnnSettings | None = None) -> MusicnnAnalysis:
    """:class:`MusicnnAnalysis` of one file (no cache). Raises :class:`~genrekit.errors.SilentAudioError`
    ("no audible signal") when no patch is above ``predict.SILENCE_DB``, before running the network: a
    silent file gets an error, not tags made of noise. The levels cost one extra decode of the file
    (about 8 % of ``embed_file``'s CPU time on a 30 s GTZAN clip, docs/embeddings.md)."""
    from genrekit import embeddings
    from genrekit.errors import FeatureError, SilentAudioError
    from genrekit.predict import SILENCE_DB

    settings = settings or MusicnnSettings()
    levels = patch_levels(path)
    if not (levels >= SILENCE_DB).any():
        raise SilentAudioError(f"{path}: no audible signal (RMS {float(levels.max()):.1f} dBFS < {SILENCE_DB:g} dBFS)")
    e = embeddings.embed_file(path, model=settings.model, backend=settings.backend)
    if e.n_patches != levels.size:
        raise FeatureError(f"{path}: changed while being analysed ({levels.size} patches, then {e.n_patches})")
    return MusicnnAnalysis(e, levels)


class MusicnnTask:
    """``path -> MusicnnAnalysis`` for any engine: small and picklable (each worker process loads the
    network once, ``embeddings`` / ``musicnn_runtime`` keep it). Workers are never forked: the parent
    may hold torch or an onnxruntime session."""

    fork_safe = False

    def __init__(self, settings: MusicnnSettings):
        self.settings = settings

    def __call__(self, path: str) -> MusicnnAnalysis:
        return musicnn_analysis(path, self.settings)


def musicnn_cache(settings: MusicnnSettings, *, enabled: bool = True, root: str | os.PathLike | None = None) -> Cache:
    """The cache of musicnn analyses for ``settings``: ``tags`` and ``embed`` share it."""
    return Cache("musicnn", settings.cache_settings(), root=root, enabled=enabled)


def musicnn_analyses(
    files: Iterable[str | os.PathLike], settings: MusicnnSettings | None = None, engine: Engine | None = None, *,
    cache: bool | Cache = True,
) -> Iterator[Result]:
    """Each file's :class:`MusicnnAnalysis`, from the content cache (keyed by the file's bytes and
    :meth:`MusicnnSettings.cache_settings`) or computed by ``engine`` and then cached: a second run over
    the same files, or a rerun after an interrupted one, runs the network only for what is missing."""
    settings = settings or MusicnnSettings()
    store = cache if isinstance(cache, Cache) else musicnn_cache(settings, enabled=bool(cache))

    def load(key: str) -> MusicnnAnalysis | None:
        meta = store.get(key)  # written last: an entry is complete once its metadata is there
        return None if meta is None else MusicnnAnalysis.from_cache(meta, store.get_array(key))

    def save(key: str, analysis: MusicnnAnalysis) -> None:
        meta, matrix = analysis.to_cache()
        store.put_array(key, matrix)
        store.put(key, meta)

    yield from cached_map(MusicnnTask(settings), (str(f) for f in files), store, engine=engine, desc="musicnn",
                          load=load, save=save)


def _pairs(tags: list[tuple[str, float]]) -> list[list[Any]]:
    return [[t, round(float(v), 6)] for t, v in tags]


def tag_record(path: str, analysis: MusicnnAnalysis, *, top_k: int = 5, segments: bool = False) -> dict[str, Any]:
    """``genrekit tags``' record of one file: ``file, model, duration_s, n_patches, tags`` (the ``top_k``
    best ``[tag, score]`` of the mean taggram over the audible patches: ``embeddings.top_tags``), with
    ``segments`` the timeline (each patch's ``start``, ``end`` and ``tags``, or ``silent: true``), ``error``."""
    from genrekit.embeddings import top_tags

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
    audible patches (``n_silent`` patches below ``predict.SILENCE_DB`` are left out, as ``predict``'s
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

        with atomic_writer(p, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
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
                            "(for samples in memory use genrekit.embeddings.embed(y, sr=...))")
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
