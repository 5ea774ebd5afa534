"""One file's musicnn analysis: every patch's outputs and level, cached by content, and THE silence rule.

Every consumer of per-file musicnn outputs goes through here: ``genrekit tags`` / ``embed`` (batch), the
library tools (``similar``, ``tag --tags``, the beets plugin) and the experiments' embedding tables. One
cache (:func:`analysis_cache`: namespace ``musicnn``, keyed by the file's bytes and
:meth:`MusicnnSettings.cache_settings`) holds each file's per-patch outputs once, whichever tool asked.

The silence rule: a patch whose level is below ``dsp.SILENCE_DB`` is *silent*. Silent patches stay in
per-patch output (flagged) and are left out of every per-file summary (:meth:`MusicnnAnalysis.summary`),
as ``predict`` leaves silent windows out; a file with no audible patch is an error
(:class:`~genrekit.errors.SilentAudioError`), not tags made of noise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from genrekit.errors import ModelError
from genrekit.networks import analysis as shared
from genrekit.networks import check_backend
from genrekit.networks.analysis import audible
from genrekit.networks.musicnn.spec import (
    DEFAULT_MODEL,
    HOP_LENGTH,
    N_PENULTIMATE,
    N_POOLED,
    N_TAGS,
    PATCH_FRAMES,
    PATCH_HOP,
    PATCH_SECONDS,
    SR,
    check_model,
    weights_sha256,
)
from genrekit.store import Cache

__all__ = ["CACHE_NAMESPACE", "CACHE_VERSION", "MusicnnAnalysis", "MusicnnSettings", "analysis_cache", "audible",
           "load_analysis", "musicnn_analysis", "patch_levels", "save_analysis", "settings"]

CACHE_NAMESPACE = "musicnn"
CACHE_VERSION = 1  # bump when MusicnnAnalysis's cached content changes


def patch_levels(path: str | os.PathLike, *, block_seconds: float = 60.0) -> np.ndarray:
    """Level of each musicnn patch of ``path`` (dBFS, ``dsp.rms_db``'s measure: RMS around the mean),
    patches cut as ``model.embed_file`` cuts them (3 s side by side at 16 kHz; one patch for a
    shorter file). Streamed: memory holds one block, whatever the file's length."""
    from genrekit import audio
    from genrekit.dsp import frame_count
    from genrekit.networks.musicnn.frontend import patch_starts

    span = PATCH_HOP * HOP_LENGTH  # samples per patch; patches lie side by side
    s1, s2, cnt = np.zeros(0), np.zeros(0), np.zeros(0)
    n = 0
    for block in audio.stream(path, sr=SR, block_seconds=block_seconds):
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
    n_frames = frame_count(n, hop_length=HOP_LENGTH)
    if n_frames < PATCH_FRAMES:  # one repeat-padded patch: all of it
        s1, s2, cnt = s1.sum(keepdims=True), s2.sum(keepdims=True), cnt.sum(keepdims=True)
    else:
        m = len(patch_starts(n_frames))
        s1, s2, cnt = s1[:m], s2[:m], cnt[:m]
    return shared.levels_db(s1, s2, cnt)


@dataclass(frozen=True, eq=False)
class MusicnnAnalysis:
    """One file's musicnn outputs per 3 s patch (``embedding``: ``model.Embedding``) and each patch's
    level (dBFS, :func:`patch_levels`): what ``genrekit tags``, ``genrekit embed``, the library tools and
    the experiments are made of, and what the one cache holds. Patches below ``dsp.SILENCE_DB`` are
    *silent* (:func:`audible`): kept in per-patch output (flagged), left out of per-file summaries."""

    embedding: Any  # model.Embedding (imported lazily: this module stays light)
    levels: np.ndarray

    @property
    def audible(self) -> np.ndarray:
        return audible(self.levels)

    @property
    def ends(self) -> np.ndarray:
        """Each patch's end in seconds: 3 s after its start, or the end of a shorter file."""
        e = self.embedding
        return np.minimum(e.starts + PATCH_SECONDS, e.duration)

    def summary(self) -> Any:
        """The embedding of the audible patches only: its ``*_mean`` are the file's summaries."""
        from genrekit.networks.musicnn.model import Embedding

        e, keep = self.embedding, self.audible
        return Embedding(e.model, e.taggram[keep], e.penultimate[keep], e.pooled[keep], e.starts[keep], e.duration,
                         padded=e.padded)

    # the interface every network's analysis shares (genrekit.run.networks uses nothing else)
    @property
    def model(self) -> str:
        return self.embedding.model

    @property
    def duration(self) -> float:
        return float(self.embedding.duration)

    @property
    def n_windows(self) -> int:
        return self.embedding.n_patches

    @property
    def starts(self) -> np.ndarray:
        """Each patch's start in seconds."""
        return self.embedding.starts

    def window(self, layer: str) -> np.ndarray:
        """``layer``'s vectors, one row per patch (silent ones included)."""
        return getattr(self.embedding, layer)

    def means(self, layers: Any) -> dict[str, np.ndarray]:
        """Each of ``layers``' mean over the audible patches: the file's summaries."""
        s = self.summary()
        return {x: getattr(s, f"{x}_mean") for x in layers}

    def top_tags(self, k: int, *, window: int | None = None, genres: bool = False) -> list[tuple[str, float]]:
        """The ``k`` best tags of the file (mean taggram over the audible patches) or of patch ``window``."""
        from genrekit.networks.musicnn.model import top_tags

        if genres:
            raise ModelError("musicnn has no genre class list: genres only is for mn04 (--model audioset)")
        return top_tags(self.summary(), k) if window is None else top_tags(self.embedding, k, patch=window)

    # the cache entry: a float32 matrix (levels, taggram, penultimate, pooled per patch) and JSON metadata
    def to_cache(self) -> tuple[dict[str, Any], np.ndarray]:
        e = self.embedding
        meta = {"model": e.model, "duration": float(e.duration), "padded": bool(e.padded),
                "starts": [float(x) for x in e.starts]}
        matrix = np.concatenate([self.levels[:, None], e.taggram, e.penultimate, e.pooled], axis=1).astype(np.float32)
        return meta, matrix

    @classmethod
    def from_cache(cls, meta: dict[str, Any], matrix: np.ndarray) -> MusicnnAnalysis | None:
        """The analysis an entry holds, or None when the entry does not fit (a partial or foreign write)."""
        from genrekit.networks.musicnn.model import Embedding

        n = len(meta.get("starts") or [])
        if matrix is None or matrix.shape != (n, 1 + N_TAGS + N_PENULTIMATE + N_POOLED) or n == 0:
            return None
        a, b = 1 + N_TAGS, 1 + N_TAGS + N_PENULTIMATE
        e = Embedding(meta["model"], matrix[:, 1:a], matrix[:, a:b], matrix[:, b:], np.asarray(meta["starts"]),
                      float(meta["duration"]), padded=bool(meta["padded"]))
        return cls(e, matrix[:, 0])


@dataclass(frozen=True)
class MusicnnSettings(shared.NetworkSettings):
    """What decides a file's musicnn outputs, and so their cache entry: the network (by its weights'
    bytes) and the backend. ``"onnx"`` (the default: onnxruntime, no torch import) agrees with the
    ``"torch"`` reference within 6e-6 on taggram and penultimate; they are cached apart all the same."""

    model: str = DEFAULT_MODEL
    backend: str = "onnx"

    family: ClassVar[str] = CACHE_NAMESPACE
    analysis_class: ClassVar[Any] = MusicnnAnalysis

    def __post_init__(self) -> None:
        check_model(self.model)
        check_backend(self.backend, error=ModelError)

    def cache_settings(self) -> dict[str, Any]:
        return {"kind": "musicnn-patches", "version": CACHE_VERSION, "model": self.model,
                "backend": self.backend, "weights_sha256": weights_sha256(self.model), "hop": PATCH_HOP}

    def analyse(self, path: str | os.PathLike) -> MusicnnAnalysis:
        return musicnn_analysis(path, self)


def musicnn_analysis(path: str | os.PathLike, settings: MusicnnSettings | None = None) -> MusicnnAnalysis:
    """:class:`MusicnnAnalysis` of one file (no cache). Raises :class:`~genrekit.errors.SilentAudioError`
    ("no audible signal") when no patch is above ``dsp.SILENCE_DB``, before running the network: a
    silent file gets an error, not tags made of noise. The levels cost one extra decode of the file
    (about 8 % of ``embed_file``'s CPU time on a 30 s GTZAN clip, docs/embeddings.md)."""
    from genrekit.errors import FeatureError
    from genrekit.networks.musicnn import model

    settings = settings or MusicnnSettings()
    levels = patch_levels(path)
    shared.check_audible(path, levels)
    e = model.embed_file(path, model=settings.model, backend=settings.backend)
    if e.n_patches != levels.size:
        raise FeatureError(f"{path}: changed while being analysed ({levels.size} patches, then {e.n_patches})")
    return MusicnnAnalysis(e, levels)


def analysis_cache(settings: MusicnnSettings, *, enabled: bool = True, root: str | os.PathLike | None = None) -> Cache:
    """The cache of musicnn analyses for ``settings``: every consumer shares it."""
    return settings.cache(enabled=enabled, root=root)


def load_analysis(cache: Cache, key: str) -> MusicnnAnalysis | None:
    """The analysis ``cache`` holds under ``key`` (a content digest), or None."""
    return shared.load_entry(cache, key, MusicnnAnalysis)


def save_analysis(cache: Cache, key: str, analysis: MusicnnAnalysis) -> None:
    """Store ``analysis`` under ``key``: the matrix first, the metadata that completes the entry last."""
    shared.save_entry(cache, key, analysis)


def settings(model: str = DEFAULT_MODEL, backend: str = "onnx") -> MusicnnSettings:
    """The registry's entry point (``networks.analysis("musicnn").settings``): what the run layer drives."""
    return MusicnnSettings(model=model, backend=backend)
