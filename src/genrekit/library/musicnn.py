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
    from genrekit.engine import file_digest

    return file_digest(str(resources.files("genrekit").joinpath("pretrained", "musicnn", f"{model}.safetensors")))


def summary_cache(*, model: str = DEFAULT_MODEL, enabled: bool = True):
    """Content-addressed cache of musicnn summaries (one entry per file content, model and weights)."""
    from genrekit.engine import Cache

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
    """``(sha256, summary, error)`` of one file; module level for process pools."""
    from genrekit.engine import file_digest
    from genrekit.errors import GenrekitError

    try:
        st = os.stat(job.path)
        digest = file_digest(job.path)
    except OSError as exc:
        return "", None, f"{job.path}: {exc.strerror or exc}"
    if job.cache is not None:
        hit = job.cache.get(digest)
        if hit is not None:
            return digest, hit, None
    try:
        summary = summarise(job.path, model=job.model)
    except GenrekitError as exc:
        return digest, None, str(exc)
    except (OSError, ValueError, MemoryError) as exc:
        return digest, None, f"{job.path}: {type(exc).__name__}: {exc}"
    now = os.stat(job.path)
    if (now.st_size, now.st_mtime_ns, now.st_ino) != (st.st_size, st.st_mtime_ns, st.st_ino):
        return digest, None, f"{job.path}: changed while being analysed"
    if job.cache is not None:
        job.cache.put(digest, summary)
    return digest, summary, None


def summaries(paths: list[str], *, model: str = DEFAULT_MODEL, jobs: int = 1, cache=None,
              progress: bool = True) -> Iterator[tuple[str, str, dict[str, Any] | None, str | None]]:
    """``(path, sha256, summary, error)`` for each path, in completion order."""
    from genrekit.engine import ItemError, run_local, safe_start_method

    todo = [SummaryJob(p, model, cache) for p in paths]
    # the caller may hold torch (a genre model, musicnn): workers are started clean, never forked
    for job, res in run_local(summary_file, todo, jobs=jobs, progress=progress, desc="musicnn",
                              start_method=safe_start_method()):
        if isinstance(res, ItemError):
            yield job.path, "", None, f"{job.path}: {res}"
        else:
            yield job.path, *res
