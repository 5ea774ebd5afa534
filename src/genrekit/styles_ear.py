"""Styles for a prediction record: mn04 listening to the same decode as the genre model.

:class:`StylesEar` is fed the decoder's native-rate blocks (``audio.stream(tap=ear.hear)``), resamples them
to 32 kHz once with a seamless streaming resampler (the genre model's own stream at its own rate is left
untouched, so the genre scores do not change), and cuts the 32 kHz signal into consecutive 10 s windows,
the length mn04 was trained on. Only a per-song budget of windows is heard (:data:`MAX_WINDOWS`, spread
over the song): the windows kept form a grid whose stride doubles whenever more than twice the budget
would be held, so memory stays bounded (at most ``2 * budget`` windows of samples) whatever the length,
and the windows finally heard are spread evenly over the song rather than taken at its intro. A 30 s
clip is heard as its three 10 s windows side by side, as ``networks.mn04.model.embed`` hears it.

Silent windows (below :data:`genrekit.dsp.SILENCE_DB`) are not heard: no music, no style. A song with
no audible window, or shorter than one FFT frame, has no styles (None) rather than an error: the genre
record decides whether the file is good.
"""

from __future__ import annotations

import numpy as np

from genrekit.dsp import SILENCE_DB, rms_db
from genrekit.networks.mn04.model import DEFAULT_MAX_WINDOWS
from genrekit.networks.mn04.spec import MIN_SAMPLES, SR, WINDOW_SAMPLES

MAX_WINDOWS = DEFAULT_MAX_WINDOWS  # 10 s windows heard per song: 6 hear a minute of it
N_STYLES = 3  # styles in a record


class StylesEar:
    """Collects a song's 10 s windows at 32 kHz from native-rate blocks; :meth:`styles` hears them.

    One ear per song; :meth:`hear` may run in the decoding thread (``run.engines.prefetch``), :meth:`styles`
    after the stream is exhausted."""

    def __init__(self, *, max_windows: int = MAX_WINDOWS, k: int = N_STYLES, threads: int = 1, name: str = "audio",
                 styles: bool = True):
        if isinstance(max_windows, bool) or not isinstance(max_windows, int) or max_windows < 1:
            raise ValueError(f"max_windows must be a positive integer, got {max_windows!r}")
        self.max_windows = max_windows
        self.wants_styles = styles  # False: heard only for a model's mn04 members, the record gets no styles
        self._heard: tuple[np.ndarray, np.ndarray] | None = None  # (features, logits), once run
        self.k = k
        self.threads = threads
        self.name = name
        self._rs = None  # the streaming resampler, made for the first block's rate
        self._rate: int | None = None
        self._pending: list[np.ndarray] = []
        self._held = 0
        self._index = 0  # the next window's place on the 10 s grid
        self._stride = 1
        self.kept: list[tuple[int, np.ndarray]] = []  # (grid index, 32 kHz samples) of audible windows

    # ------------------------------------------------------------------------------------ hearing
    def hear(self, block: np.ndarray, sr: int) -> None:
        """Take the next consecutive mono block at ``sr`` (the same rate for every block of a song)."""
        if self._rate is None:
            from genrekit.audio.core import StreamResampler

            self._rate = int(sr)
            self._rs = StreamResampler(self._rate, SR)
        elif int(sr) != self._rate:
            raise ValueError(f"{self.name}: blocks at {sr} Hz after blocks at {self._rate} Hz")
        self._push(self._rs(np.asarray(block, dtype=np.float32)))

    def hear_all(self, y: np.ndarray, sr: int) -> None:
        """A whole signal at once (``predict(samples, sr=)``)."""
        self.hear(y, sr)

    def _push(self, y32: np.ndarray) -> None:
        if y32.size:
            self._pending.append(y32)
            self._held += y32.size
        while self._held >= WINDOW_SAMPLES:
            joined = np.concatenate(self._pending)
            self._offer(joined[:WINDOW_SAMPLES])
            rest = joined[WINDOW_SAMPLES:]
            self._pending, self._held = ([rest] if rest.size else []), rest.size

    def _offer(self, window: np.ndarray) -> None:
        i = self._index
        self._index += 1
        if i % self._stride or not rms_db(window) >= SILENCE_DB:
            return
        self.kept.append((i, np.array(window, dtype=np.float32)))
        if len(self.kept) > 2 * self.max_windows:  # thin the grid: every other kept window goes
            self._stride *= 2
            self.kept = [(j, w) for j, w in self.kept if j % self._stride == 0]

    def _finish(self) -> None:
        if self._rs is None:
            return
        tail = self._rs(np.zeros(0, np.float32), last=True)
        self._rs = None
        self._push(tail)
        rest = np.concatenate(self._pending) if self._pending else np.zeros(0, np.float32)
        self._pending, self._held = [], 0
        # a tail of half a window or more is heard (the network's pooling is global); a song shorter
        # than one window is heard whole
        if rest.size >= MIN_SAMPLES and (rest.size >= WINDOW_SAMPLES // 2 or self._index == 0):
            self._offer(rest)

    # ------------------------------------------------------------------------------------ styles
    def windows(self) -> list[np.ndarray]:
        """The windows heard: at most ``max_windows`` of the kept ones, spread evenly over the song."""
        self._finish()
        kept = self.kept
        n = len(kept)
        if n > self.max_windows:
            picks = (2 * np.arange(self.max_windows) + 1) * n // (2 * self.max_windows)
            kept = [kept[int(i)] for i in picks]
        return [w for _, w in kept]

    def embedding(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(features (w, 384), logits (w, 527))`` of the windows heard, mn04 run once (None: nothing audible)."""
        from genrekit.networks.mn04.frontend import logmel
        from genrekit.networks.mn04.model import run

        if self._heard is None:
            ws = self.windows()
            if not ws:
                return None
            # one window per run: a batch of 6 costs onnxruntime ~26 MB more peak memory (10-minute file
            # 310 -> 284 MB) for no measurable speed
            outs = [run(logmel(w, name=self.name)[None, None], threads=self.threads) for w in ws]
            self._heard = (np.concatenate([f for f, _ in outs]), np.concatenate([z for _, z in outs]))
        return self._heard

    def logits(self) -> np.ndarray | None:
        """``(windows, 527)`` mn04 logits of the windows heard (None: nothing audible)."""
        e = self.embedding()
        return None if e is None else e[1]

    def means(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The song's mn04 ``(features mean (384), sigmoid mean (527))`` for a model's members (``models.ears``)."""
        from genrekit.networks.mn04.model import sigmoid

        e = self.embedding()
        return None if e is None else (e[0].mean(axis=0), sigmoid(e[1]).mean(axis=0))

    def styles(self) -> list[tuple[str, float]] | None:
        """The song's top ``k`` calibrated AudioSet genre classes (``networks.mn04.styles``), or None."""
        from genrekit.networks.mn04.styles import styles

        logits = self.logits()
        return None if logits is None else styles(logits, k=self.k)
