"""mn04 on onnxruntime: ``embed`` (384-value features and 527 logits per 10 s window) and ``tags``.

The network was trained on 10 s clips, so a song is heard through 10 s windows: ``round(seconds / 10)``
of them, at most ``max_windows`` (the per-song budget: 6 hear a minute of a 4-minute song in ~0.3 s of
one core), each centred in one of as many equal parts of the file, so a 30 s clip gets three windows
side by side and a long song is sampled across its length rather than at its intro. A clip of 10 s or
less is one window of its own length (the network's pooling is global). Each window's mel is computed
from that window alone, as the original computes it from a 10 s clip.

No torch: the front end is numpy (:mod:`.frontend`), the network an ONNX graph built from the shipped
weights (:mod:`.graph`), run with one intra-op thread by default (parallelism comes from worker
processes, as for musicnn).

Measured (benchmarks/mn04.py, one thread, CPU time per 30 s GTZAN clip): front end 14 ms, network 12 ms
(3 windows), ``embed_file`` with decoding 49 ms. int8 is not offered: onnxruntime's static QDQ int8
keeps the top AudioSet class on all 124 shared GTZAN clips but is slower (21 ms) and changes the top
genre class on 25 of them; dynamic int8 is 8x slower and changes one top-1.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from genrekit.networks.mn04.frontend import logmel, to_32k
from genrekit.networks.mn04.spec import (
    GENRE_ROWS,
    INPUT_NAME,
    MIN_SAMPLES,
    N_CLASSES,
    N_FEATURES,
    OUTPUT_NAMES,
    SR,
    WINDOW_SAMPLES,
    labels,
)
from genrekit.networks.writer import session_options

DEFAULT_MAX_WINDOWS = 6
PRECISIONS: tuple[str, ...] = ("float32",)
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Embedding:
    """Per window: ``features`` ``(windows, 384)`` (the pooled last conv layer) and ``logits``
    ``(windows, 527)`` (before the sigmoid); ``starts``: each window's first sample at 32 kHz.
    Unpacks as ``features, logits = embed(y, sr)``, the shape callers of a network expect."""

    features: np.ndarray
    logits: np.ndarray
    starts: np.ndarray

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.features, self.logits))


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown mn04 precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision


def window_starts(n_samples: int, *, max_windows: int = DEFAULT_MAX_WINDOWS) -> np.ndarray:
    """First sample of each 10 s window of an ``n_samples``-long 32 kHz signal.

    ``[0]`` up to 10 s (one window of the whole clip); else ``min(max_windows, round(n / 10 s))``
    windows, window ``i`` centred at ``(2i + 1) n / (2 count)`` and kept inside the signal."""
    n = _positive_int(n_samples, "n_samples")
    max_windows = _positive_int(max_windows, "max_windows")
    if n <= WINDOW_SAMPLES:
        return np.zeros(1, np.int64)
    count = max(1, min(max_windows, (2 * n + WINDOW_SAMPLES) // (2 * WINDOW_SAMPLES)))
    centres = (2 * np.arange(count, dtype=np.int64) + 1) * n // (2 * count)
    return np.clip(centres - WINDOW_SAMPLES // 2, 0, n - WINDOW_SAMPLES)


@cache
def _session(precision: str, threads: int, cache_graph: bool) -> Any:
    import onnxruntime as ort

    from genrekit.networks.mn04.graph import onnx_model

    def session(data: bytes) -> Any:
        return ort.InferenceSession(data, session_options(_positive_int(threads, "threads")),
                                    providers=["CPUExecutionProvider"])

    try:
        return session(onnx_model(cache=cache_graph))
    except Exception:  # noqa: BLE001 (onnxruntime's own types) a damaged cached graph: rebuild it once
        if not cache_graph:
            raise
        return session(onnx_model(cache=True, rebuild=True))


def load_session(*, precision: str = "float32", threads: int = 1) -> Any:
    """The onnxruntime session (graph built, or read from genrekit's cache, on first use), kept per process.
    ``GENREKIT_NO_GRAPH_CACHE=1`` builds in memory only."""
    check_precision(precision)
    threads = _positive_int(threads, "threads")
    with _LOCK:
        return _session(precision, threads, os.environ.get("GENREKIT_NO_GRAPH_CACHE", "") != "1")


def clear_sessions() -> None:
    """Forget this process's sessions (to free their memory, or after the cache folder changed)."""
    with _LOCK:
        _session.cache_clear()


def mel_windows(y32: np.ndarray, starts: np.ndarray, *, name: str = "audio") -> np.ndarray:
    """``(windows, 1, 128, frames)`` float32 network input: each window's mel from that window alone."""
    if y32.size <= WINDOW_SAMPLES:
        return logmel(y32, name=name)[None, None]
    return np.stack([logmel(y32[s:s + WINDOW_SAMPLES], name=name) for s in starts])[:, None]


def run(mel: np.ndarray, *, precision: str = "float32", threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The network on ``(batch, 1, 128, frames)`` mel: ``features (batch, 384)``, ``logits (batch, 527)``."""
    mel = np.ascontiguousarray(mel, dtype=np.float32)
    if mel.ndim != 4 or mel.shape[1:3] != (1, 128):
        raise ValueError(f"mn04 input must be (batch, 1, 128, frames), got {mel.shape}")
    feats, logits = load_session(precision=precision, threads=threads).run(list(OUTPUT_NAMES), {INPUT_NAME: mel})
    return feats, logits


def embed(y: np.ndarray, sr: int, *, max_windows: int = DEFAULT_MAX_WINDOWS, precision: str = "float32",
          threads: int = 1, name: str = "audio") -> Embedding:
    """mn04 on a mono waveform at any rate (resampled to 32 kHz, soxr HQ): one row per 10 s window
    (:func:`window_starts`). Bad audio raises a :class:`~genrekit.errors.GenrekitError` naming ``name``."""
    y32 = to_32k(y, sr, name=name)
    starts = window_starts(y32.size, max_windows=max_windows)
    feats, logits = run(mel_windows(y32, starts, name=name), precision=precision, threads=threads)
    assert feats.shape == (starts.size, N_FEATURES) and logits.shape == (starts.size, N_CLASSES)
    return Embedding(feats, logits, starts)


def embed_file(path: str | os.PathLike, **kwargs: Any) -> Embedding:
    """:func:`embed` of an audio file (decoded whole at 32 kHz by :func:`genrekit.audio.load`, whose errors name it)."""
    from genrekit.audio import load

    return embed(load(path, sr=SR, min_samples=MIN_SAMPLES), SR, name=str(path), **kwargs)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Per-class probabilities (multi-label: the classes do not compete), overflow-free."""
    z = np.asarray(logits, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -z))


def tag_scores(logits: np.ndarray, *, k: int = 5, genres_only: bool = False) -> list[tuple[str, float]]:
    """The ``k`` classes with the highest mean probability over the windows' ``logits`` ``(windows, 527)``,
    highest first (ties: lower index first); ``genres_only``: among the 48 music-genre classes only."""
    k = _positive_int(k, "k")
    logits = np.atleast_2d(np.asarray(logits))
    if logits.ndim != 2 or logits.shape[1] != N_CLASSES or logits.shape[0] == 0:
        raise ValueError(f"logits must be (windows, {N_CLASSES}) with at least one window, got {logits.shape}")
    p = sigmoid(logits).mean(axis=0)
    rows = np.arange(GENRE_ROWS.start, GENRE_ROWS.stop) if genres_only else np.arange(N_CLASSES)
    order = rows[np.argsort(-p[rows], kind="stable")][:k]
    names = labels()
    return [(names[i], float(p[i])) for i in order]


def tags(y: np.ndarray, sr: int, *, k: int = 5, genres_only: bool = False, **kwargs: Any) -> list[tuple[str, float]]:
    """Top-``k`` AudioSet labels of a waveform with their mean sigmoid probabilities (:func:`tag_scores`)."""
    return tag_scores(embed(y, sr, **kwargs).logits, k=k, genres_only=genres_only)


def tags_file(path: str | os.PathLike, *, k: int = 5, genres_only: bool = False, **kwargs: Any) -> list[tuple[str, float]]:
    """:func:`tags` of an audio file."""
    return tag_scores(embed_file(path, **kwargs).logits, k=k, genres_only=genres_only)
