"""Classifying an upload in a worker thread: decoded from memory as a stream, under the duration limit
and the request's time budget, with the page's spectrogram and the library's nearest tracks on the way.

Why in threads with cooperative deadlines: inference must stay off the event loop (health checks and
uploads keep answering), and a thread cannot be killed safely, so the budget is checked between blocks.
"""

from __future__ import annotations

import io
import os
import time
from contextlib import contextmanager

import numpy as np

from genrekit import audio
from genrekit.errors import DecodeError, GenrekitError, TimeBudgetError
from genrekit.serve.page import SpectrogramAccumulator, spectrogram_png


@contextmanager
def _decoder_errors(name: str):
    """A decoder's own exception on odd data (not a genrekit error) becomes a DecodeError."""
    try:
        yield
    except GenrekitError:
        raise
    except (ValueError, RuntimeError, OSError, EOFError) as exc:
        raise DecodeError(f"{name}: not audio or corrupt ({type(exc).__name__}: {exc})") from None


def _decoded(blocks, name: str):
    """The decoder's blocks, its errors on odd data turned into DecodeErrors."""
    it = iter(blocks)
    try:
        while True:
            with _decoder_errors(name):
                b = next(it, None)
            if b is None:
                return
            yield b
    finally:
        getattr(it, "close", lambda: None)()


def _check_budget(deadline: float | None, budget: float | None, name: str, seconds_done: float) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise TimeBudgetError(
            f"{name}: not classified within this server's time budget of {budget:g} s "
            f"(stopped after {seconds_done:.0f} s of audio); try a shorter file or a less busy server")


def within_budget(blocks, *, deadline: float | None, budget: float | None, name: str, sr: int):
    """Pass ``blocks`` through until ``deadline`` (``time.monotonic()``): checked before each block is
    decoded, so work past the budget stops at the next block boundary with :class:`TimeBudgetError`,
    and the decoder is closed."""
    it = iter(blocks)
    seen = 0
    try:
        while True:
            _check_budget(deadline, budget, name, seen / sr)
            b = next(it, None)
            if b is None:
                return
            seen += b.size
            yield b
    finally:
        getattr(it, "close", lambda: None)()


def classify(clf, data: bytes, name: str, *, top_k: int, segments: bool, want_spectrogram: bool,
              max_duration: float | None = None, deadline: float | None = None,
              budget: float | None = None, similar_k: int = 0, library=None,
              min_confidence: float | None = None, styles: bool = True) -> dict:
    """Decode an upload from memory as a stream and classify it block by block (runs in a worker thread);
    with ``styles`` mn04 hears the same decode (``predict``'s ear), so the record equals the CLI's."""
    from genrekit.predict import BLOCK_SECONDS

    _check_budget(deadline, budget, name, 0.0)  # it may have waited for a worker past its budget
    if max_duration is not None:
        # Decode only (no resampling, no model), first: a file that decodes to hours is refused after a
        # fraction of a second of work, before it holds a worker for the classification of 20 minutes.
        with _decoder_errors(name):
            audio.decoded_seconds(data, filename=name, max_duration=max_duration)
    ear = clf.ear(file=name, styles=styles) if styles or clf.needs_ear else None
    decoded = _decoded(audio.stream(data, filename=name, sr=clf.sr, block_seconds=BLOCK_SECONDS,
                                    max_duration=max_duration, tap=None if ear is None else ear.hear), name)
    timed = within_budget(decoded, deadline=deadline, budget=budget, name=name, sr=clf.sr)
    acc = SpectrogramAccumulator(sr=clf.sr) if want_spectrogram else None
    blocks = acc.tap(timed) if acc is not None else timed
    try:
        pred = clf.predict_blocks(blocks, top_k=top_k, file=name, ear=ear)
    finally:  # on any error too: close the decoder now, not when the garbage collector gets to it
        blocks.close()
        timed.close()
    rec = pred.to_dict(segments=segments, min_confidence=min_confidence)
    if acc is not None:
        rec["spectrogram"] = spectrogram_png(acc, sr=clf.sr)
    if similar_k and library is not None:
        rec["similar"] = _similar_in_library(library, data, name, k=similar_k, max_duration=max_duration,
                                             deadline=deadline, budget=budget)
    return rec


def _similar_in_library(library: dict, data: bytes, name: str, *, k: int, max_duration: float | None = None,
                        deadline: float | None = None, budget: float | None = None) -> list[dict]:
    """The library's tracks nearest to an upload (musicnn embedding of the upload, decoded at musicnn's
    16 kHz like the index; the upload itself, when it is a library file, is left out by its digest).

    Decoded as a stream under the same duration limit and time budget as the classification."""
    import hashlib

    from genrekit.networks import musicnn

    decoded = _decoded(audio.stream(data, filename=name, sr=musicnn.SR, max_duration=max_duration), name)
    timed = within_budget(decoded, deadline=deadline, budget=budget, name=name, sr=musicnn.SR)
    try:
        y16 = np.concatenate(list(timed))
    finally:
        timed.close()
    _check_budget(deadline, budget, name, y16.size / musicnn.SR)
    q = musicnn.embed(y16, sr=musicnn.SR).penultimate_mean
    index = library["index"]
    digest = hashlib.sha256(bytes(data)).hexdigest()
    same = [i for i, d in enumerate(index.digests) if d == digest]
    root = library["root"]
    return [{"file": os.path.relpath(n.file, root), "similarity": round(n.similarity, 6)}
            for n in index.search(q, k=k, exclude=same)]


def warm_up(clf) -> None:
    import soundfile as sf

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    sf.write(buf, (0.1 * rng.standard_normal(int(3.5 * clf.sr))).astype(np.float32), clf.sr, format="WAV")
    classify(clf, bytearray(buf.getvalue()), "warm-up.wav", top_k=1, segments=False, want_spectrogram=False)


class MemoryReleaser:
    """Hands freed heap memory back to the OS after inferences (glibc ``malloc_trim``; no-op elsewhere).

    Each request allocates tens of MB of short-lived arrays (decoded audio, STFT) in its worker thread's
    malloc arena; glibc keeps such freed memory mapped, so without trimming the server's RSS settles
    ~150 MB above its idle size after a burst of uploads. Trimming costs page faults on the next
    request, so it runs when the pool goes idle and otherwise at most once every ``interval`` seconds.
    """

    def __init__(self, interval: float = 1.0):
        import threading

        self.interval = interval
        self._lock = threading.Lock()
        self._active = 0
        self._last = 0.0
        try:
            import ctypes

            self._trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            self._trim = None

    def run(self, fn, *args, **kwargs):
        import time

        with self._lock:
            self._active += 1
        try:
            return fn(*args, **kwargs)
        finally:
            with self._lock:
                self._active -= 1
                now = time.monotonic()
                due = self._trim is not None and (self._active == 0 or now - self._last >= self.interval)
                if due:
                    self._last = now
            if due:
                self._trim(0)


def torch_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))

