"""Per-file musicnn summaries for the library tools: the mean penultimate embedding (200 values, what
`similar` searches) and the mean taggram (50 MSD tag probabilities, what `tag --tags` writes).

Computed once per file content (cached by sha256 like the genre predictions), in worker processes, on
top of :mod:`genrekit.embeddings`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

DEFAULT_MODEL = "MSD_musicnn"
# onnxruntime float32: the torch port's outputs within 6e-6, 1.6x faster, and no torch import in
# `genrekit tag --tags` / `genrekit similar` (docs/embeddings.md, "Speed")
BACKEND = "onnx"


@lru_cache(maxsize=4)
def weights_sha256(model: str = DEFAULT_MODEL) -> str:
    """Digest of the shipped weights file: new weights make new cache entries."""
    from genrekit.store import file_digest

    return file_digest(str(resources.files("genrekit").joinpath("pretrained", "musicnn", f"{model}.safetensors")))


def summary_cache(*, model: str = DEFAULT_MODEL, enabled: bool = True):
    """Content-addressed cache of musicnn summaries (one entry per file content, model and weights)."""
    from genrekit.store import Cache

    return Cache("library-musicnn", {"model": model, "weights_sha256": weights_sha256(model), "summary": 2,
                                     "backend": BACKEND}, enabled=enabled)


def summarise(path: str | os.PathLike, *, model: str = DEFAULT_MODEL) -> dict[str, Any]:
    """``{"model", "duration_s", "n_patches", "embedding": [200], "taggram": [50]}`` of one file."""
    from genrekit import embeddings

    e = embeddings.embed_file(path, model=model, backend=BACKEND)
    return {"model": model, "duration_s": round(float(e.duration), 3), "n_patches": e.n_patches,
            "embedding": [float(x) for x in e.penultimate_mean],
            "taggram": [float(x) for x in e.taggram_mean]}


def top_tags(summary: dict[str, Any], k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most probable tags of a summary, best first (musicnn's whole-file summary)."""
    from genrekit.embeddings import tag_names

    scores = np.asarray(summary["taggram"], dtype=np.float64)
    names = tag_names(summary["model"])
    order = np.argsort(-scores, kind="stable")[:k]
    return [(names[i], float(scores[i])) for i in order]


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

    The content digest is taken before analysing and the file is checked unchanged after, so a summary
    always belongs to the bytes it is filed under (``cache``)."""
    from genrekit.run.cached import cached_map
    from genrekit.run.engines import LocalEngine
    from genrekit.run.items import error_text
    from genrekit.store import file_digest

    # the caller may hold torch (a genre model, musicnn): workers are started clean, never forked
    task = _SummaryTask(model)
    for r in cached_map(task, paths, cache, engine=LocalEngine(jobs=jobs, progress=progress), desc="musicnn",
                        key=file_digest, unchanged="changed while being analysed"):
        if r.ok:
            yield r.input, r.key, r.value, None
        else:
            yield r.input, r.key or "", None, error_text(r.input, r.error)


@dataclass(frozen=True)
class _SummaryTask:
    """``path -> summary`` for worker processes (picklable); never forked (``fork_safe``)."""

    model: str
    fork_safe = False

    def __call__(self, path: str) -> dict[str, Any]:
        return summarise(path, model=self.model)
