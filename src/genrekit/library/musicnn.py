"""Per-file musicnn summaries for the library tools: the mean penultimate embedding (200 values, what
`similar` searches) and the mean taggram (50 MSD tag probabilities, what `tag --tags` writes).

Made of the one per-file musicnn analysis (:mod:`genrekit.networks.musicnn.analysis`): its cache (shared
with `genrekit tags` / `embed`, so a file analysed by any of them is not analysed again) and its silence
rule (silent patches left out of the means; a file with no audible patch is an error), so `similar` and
`tag --tags` summarise a file exactly as `embed` does. Computed in worker processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from genrekit.networks.musicnn.spec import DEFAULT_MODEL, weights_sha256

__all__ = ["BACKEND", "DEFAULT_MODEL", "SummaryJob", "summaries", "summarise", "summary_cache", "summary_file",
           "summary_of", "top_tags", "weights_sha256"]

# onnxruntime float32: the torch port's outputs within 6e-6, 1.6x faster, and no torch import in
# `genrekit tag --tags` / `genrekit similar` (docs/embeddings.md, "Speed")
BACKEND = "onnx"


def _settings(model: str):
    from genrekit.networks.musicnn.analysis import MusicnnSettings

    return MusicnnSettings(model=model, backend=BACKEND)


def summary_cache(*, model: str = DEFAULT_MODEL, enabled: bool = True):
    """The cache the summaries come from: the one musicnn analysis cache (per file content, model,
    weights and backend), the same entries `genrekit tags` and `genrekit embed` use."""
    from genrekit.networks.musicnn.analysis import analysis_cache

    return analysis_cache(_settings(model), enabled=enabled)


def summary_of(analysis: Any) -> dict[str, Any]:
    """``{"model", "duration_s", "n_patches", "embedding": [200], "taggram": [50]}`` of one analysis: the
    means over its audible patches (``n_patches`` counts them all, as `genrekit tags` does)."""
    e, s = analysis.embedding, analysis.summary()
    return {"model": e.model, "duration_s": round(float(e.duration), 3), "n_patches": e.n_patches,
            "embedding": [float(x) for x in s.penultimate_mean],
            "taggram": [float(x) for x in s.taggram_mean]}


def summarise(path: str | os.PathLike, *, model: str = DEFAULT_MODEL) -> dict[str, Any]:
    """:func:`summary_of` one file (no cache)."""
    from genrekit.networks.musicnn.analysis import musicnn_analysis

    return summary_of(musicnn_analysis(path, _settings(model)))


def top_tags(summary: dict[str, Any], k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most probable tags of a summary, best first (the ranking of ``networks.musicnn``)."""
    import numpy as np

    from genrekit.networks.musicnn.model import ranked_tags

    return ranked_tags(np.asarray(summary["taggram"], dtype=np.float64), k, model=summary["model"])


@dataclass(frozen=True)
class SummaryJob:
    path: str
    model: str
    cache: Any = None


def summary_file(job: SummaryJob) -> tuple[str, dict[str, Any] | None, str | None]:
    """``(sha256, summary, error)`` of one file, in this process."""
    _, digest, summary, err = next(summaries([job.path], model=job.model, cache=job.cache, progress=False))
    return digest, summary, err


def summaries(paths: list[str], *, model: str = DEFAULT_MODEL, jobs: int = 1, cache=None,
              progress: bool = True) -> Iterator[tuple[str, str, dict[str, Any] | None, str | None]]:
    """``(path, sha256, summary, error)`` for each path: cache hits first, then in completion order.

    ``cache`` holds analyses (:func:`summary_cache`); the content digest is taken before analysing and
    the file is checked unchanged after, so an analysis always belongs to the bytes it is filed under."""
    import functools

    from genrekit.networks.musicnn.analysis import load_analysis, save_analysis
    from genrekit.run.cached import cached_map
    from genrekit.run.engines import LocalEngine
    from genrekit.run.items import error_text
    from genrekit.store import file_digest

    store = {} if cache is None else {"load": functools.partial(load_analysis, cache),
                                      "save": functools.partial(save_analysis, cache)}
    # the caller may hold torch (a genre model, musicnn): workers are started clean, never forked
    for r in cached_map(_AnalysisTask(model), paths, cache, engine=LocalEngine(jobs=jobs, progress=progress),
                        desc="musicnn", key=cache.key if cache is not None else file_digest,
                        unchanged="changed while being analysed", **store):
        if r.ok:
            yield r.input, r.key, summary_of(r.value), None
        else:
            yield r.input, r.key or "", None, error_text(r.input, r.error)


@dataclass(frozen=True)
class _AnalysisTask:
    """``path -> MusicnnAnalysis`` for worker processes (picklable); never forked (``fork_safe``)."""

    model: str
    fork_safe = False

    def __call__(self, path: str) -> Any:
        from genrekit.networks.musicnn.analysis import musicnn_analysis

        return musicnn_analysis(path, _settings(self.model))
