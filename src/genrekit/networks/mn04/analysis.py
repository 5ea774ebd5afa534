"""One file's mn04 analysis: every 10 s window's features, logits and level, cached by content.

Shaped as ``networks.musicnn.analysis`` and driven the same way by ``genrekit tags`` / ``embed``
(``genrekit.run.networks``): one cache (``Mn04Settings.cache``: namespace ``mn04``, keyed by the file's
bytes and :meth:`Mn04Settings.cache_settings`) and THE silence rule of :mod:`genrekit.networks.analysis`
(a window below ``dsp.SILENCE_DB`` is flagged and left out of the file's summaries and tags; a file with
no audible window is an error, raised before the network runs).

The windows are ``model.embed``'s (``model.window_starts``: up to ``max_windows`` 10 s windows spread
across the song), so the analysis of a file whose windows are all audible is ``model.embed_file``'s,
value for value, and its tags are ``model.tags_file``'s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from genrekit.errors import FeatureError, ModelError
from genrekit.networks import analysis as shared
from genrekit.networks import check_backend
from genrekit.networks.analysis import audible
from genrekit.networks.mn04.model import DEFAULT_MAX_WINDOWS, sigmoid, tag_scores
from genrekit.networks.mn04.spec import (
    DEFAULT_MODEL,
    MIN_SAMPLES,
    N_CLASSES,
    N_FEATURES,
    SR,
    WINDOW_SAMPLES,
    WINDOW_SECONDS,
    check_model,
    weights_sha256,
)

__all__ = ["CACHE_NAMESPACE", "CACHE_VERSION", "Mn04Analysis", "Mn04Settings", "audible", "mn04_analysis",
           "settings"]

CACHE_NAMESPACE = "mn04"
CACHE_VERSION = 1  # bump when Mn04Analysis's cached content changes


@dataclass(frozen=True, eq=False)
class Mn04Analysis:
    """One file's mn04 outputs per 10 s window: ``features`` ``(w, 384)``, ``logits`` ``(w, 527)``,
    ``offsets`` (each window's first sample at 32 kHz), the file's ``duration`` (s) and each window's
    level (dBFS). Windows below ``dsp.SILENCE_DB`` are kept in per-window output (flagged) and left out
    of the file's summaries and tags."""

    model: str
    features: np.ndarray
    logits: np.ndarray
    offsets: np.ndarray
    duration: float
    levels: np.ndarray

    @property
    def audible(self) -> np.ndarray:
        return audible(self.levels)

    @property
    def n_windows(self) -> int:
        return int(self.logits.shape[0])

    @property
    def starts(self) -> np.ndarray:
        """Each window's start in seconds."""
        return self.offsets / SR

    @property
    def ends(self) -> np.ndarray:
        """Each window's end in seconds: 10 s after its start, or the end of a shorter file."""
        return np.minimum(self.starts + WINDOW_SECONDS, self.duration)

    @property
    def taggram(self) -> np.ndarray:
        """Per-window class probabilities (sigmoid of the logits), float32."""
        return sigmoid(self.logits).astype(np.float32)

    def window(self, layer: str) -> np.ndarray:
        """``layer``'s vectors (``features``, ``logits``, ``taggram``), one row per window, silent ones included."""
        if layer not in ("features", "logits", "taggram"):
            raise ModelError(f"mn04 has no layer {layer!r}; choose from features, logits, taggram")
        return getattr(self, layer)

    def means(self, layers: Any) -> dict[str, np.ndarray]:
        """Each of ``layers``' mean over the audible windows: the file's summaries."""
        keep = self.audible
        return {x: self.window(x)[keep].mean(axis=0) for x in layers}

    def top_tags(self, k: int, *, window: int | None = None, genres: bool = False) -> list[tuple[str, float]]:
        """The ``k`` AudioSet classes with the highest mean probability over the audible windows (or in
        window ``window``); ``genres``: among the 48 music-genre classes only (``model.tag_scores``)."""
        logits = self.logits[self.audible] if window is None else self.logits[window: window + 1]
        return tag_scores(logits, k=k, genres_only=genres)

    # the cache entry: a float32 matrix (level, features, logits per window) and JSON metadata
    def to_cache(self) -> tuple[dict[str, Any], np.ndarray]:
        meta = {"model": self.model, "duration": float(self.duration), "offsets": [int(x) for x in self.offsets]}
        matrix = np.concatenate([self.levels[:, None], self.features, self.logits], axis=1).astype(np.float32)
        return meta, matrix

    @classmethod
    def from_cache(cls, meta: dict[str, Any], matrix: np.ndarray) -> Mn04Analysis | None:
        """The analysis an entry holds, or None when the entry does not fit (a partial or foreign write)."""
        n = len(meta.get("offsets") or [])
        if matrix is None or matrix.shape != (n, 1 + N_FEATURES + N_CLASSES) or n == 0:
            return None
        return cls(meta["model"], matrix[:, 1:1 + N_FEATURES], matrix[:, 1 + N_FEATURES:],
                   np.asarray(meta["offsets"], dtype=np.int64), float(meta["duration"]), matrix[:, 0])


@dataclass(frozen=True)
class Mn04Settings(shared.NetworkSettings):
    """What decides a file's mn04 outputs, and so their cache entry: the weights' bytes, the backend
    (onnx only) and ``max_windows`` (the per-song budget of 10 s windows). ``model`` may be given as
    its alias ``"audioset"``; it is kept as ``"mn04"``, so both names share one cache and one journal."""

    model: str = DEFAULT_MODEL
    backend: str = "onnx"
    max_windows: int = DEFAULT_MAX_WINDOWS

    family: ClassVar[str] = CACHE_NAMESPACE
    analysis_class: ClassVar[Any] = Mn04Analysis

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", check_model(self.model))
        check_backend(self.backend, family=self.family, error=ModelError)
        if isinstance(self.max_windows, bool) or not isinstance(self.max_windows, int) or self.max_windows < 1:
            raise ModelError(f"max_windows must be a positive whole number, got {self.max_windows!r}")

    def cache_settings(self) -> dict[str, Any]:
        return {"kind": "mn04-windows", "version": CACHE_VERSION, "model": self.model, "backend": self.backend,
                "weights_sha256": weights_sha256(self.model), "window_s": WINDOW_SECONDS,
                "max_windows": self.max_windows}

    def analyse(self, path: str | os.PathLike) -> Mn04Analysis:
        return mn04_analysis(path, self)


def mn04_analysis(path: str | os.PathLike, settings: Mn04Settings | None = None) -> Mn04Analysis:
    """:class:`Mn04Analysis` of one file (no cache): decoded once at 32 kHz, each window's level taken,
    :class:`~genrekit.errors.SilentAudioError` ("no audible signal") when none is audible, then the network."""
    from genrekit.audio import load
    from genrekit.networks.mn04 import model

    settings = settings or Mn04Settings()
    y = load(path, sr=SR, min_samples=MIN_SAMPLES)
    offsets = model.window_starts(y.size, max_windows=settings.max_windows)
    levels = shared.span_levels(y, offsets, WINDOW_SAMPLES)
    shared.check_audible(path, levels)
    e = model.embed(y, SR, max_windows=settings.max_windows, name=str(path))
    if not np.array_equal(e.starts, offsets):
        raise FeatureError(f"{path}: mn04 windows changed while being analysed")
    return Mn04Analysis(settings.model, e.features, e.logits, e.starts, y.size / SR, levels)


def settings(model: str = DEFAULT_MODEL, backend: str = "onnx") -> Mn04Settings:
    """The registry's entry point (``networks.analysis("mn04").settings``): what the run layer drives."""
    return Mn04Settings(model=model, backend=backend)
