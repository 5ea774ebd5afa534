"""The page's spectrogram: a track's log-mel levels built block by block while it streams, as a PNG.

Why its own module: the page asks for a picture of the whole track, but uploads are decoded as a stream
(never whole), so the spectrogram is accumulated on the way in bounded memory, then drawn once.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np

from genrekit import dsp

SPECTROGRAM_MAX_COLUMNS = 1200


class SpectrogramAccumulator:
    """A track's mel power spectrogram built block by block while the track streams, in bounded memory.

    Frames equal one whole-track STFT (each block keeps half a window of context from the one before,
    so there are no seams). Frames are average-pooled in time: the pool doubles whenever the track no
    longer fits in ``max_columns`` columns, so at most ``2 * max_columns`` columns are ever held, and the
    result has between ``max_columns / 2`` and ``max_columns`` columns (one per frame for short clips).
    """

    def __init__(self, *, sr: int, max_columns: int = SPECTROGRAM_MAX_COLUMNS):
        self.sr = sr
        self.max_columns = max_columns
        self.hop = dsp.HOP_LENGTH
        self.ctx = math.ceil(dsp.N_FFT / 2 / self.hop) * self.hop  # samples of context a frame needs
        self.n_samples = 0
        self.pool = 1
        self._buf = np.zeros(0, np.float32)  # samples from global index _start on
        self._start = 0
        self._next = 0  # next frame to compute
        self._sums = np.zeros((dsp.N_MELS, 0))
        self._counts = np.zeros(0, np.int64)

    def _frames(self, last: bool) -> None:
        from genrekit import spectrogram as spec

        end = self.n_samples
        n_frames = 1 + end // self.hop if last else (end - self.ctx) // self.hop + 1 if end >= self.ctx else 0
        if n_frames <= self._next:
            return
        g0 = max(0, self._next * self.hop - self.ctx)
        power = spec.melspectrogram(self._buf[g0 - self._start :], sr=self.sr, hop_length=self.hop, n_mels=dsp.N_MELS)
        first = self._next - g0 // self.hop
        self._add(power[:, first : first + n_frames - self._next])
        self._next = n_frames
        keep = max(0, self._next * self.hop - self.ctx)
        self._buf, self._start = self._buf[keep - self._start :], keep

    def _add(self, power: np.ndarray) -> None:
        cols = (self._next + np.arange(power.shape[1])) // self.pool
        if cols.size and cols[-1] >= self._counts.size:
            grow = cols[-1] + 1 - self._counts.size
            self._sums = np.concatenate([self._sums, np.zeros((self._sums.shape[0], grow))], axis=1)
            self._counts = np.concatenate([self._counts, np.zeros(grow, np.int64)])
        starts = np.flatnonzero(np.diff(cols, prepend=-1))
        self._sums[:, cols[starts]] += np.add.reduceat(power.astype(np.float64), starts, axis=1)
        self._counts[cols[starts]] += np.diff(np.append(starts, cols.size))
        while self._counts.size > self.max_columns:  # no longer fits: pool pairs of columns
            if self._counts.size % 2:
                self._sums = np.concatenate([self._sums, np.zeros((self._sums.shape[0], 1))], axis=1)
                self._counts = np.append(self._counts, 0)
            self._sums = self._sums[:, 0::2] + self._sums[:, 1::2]
            self._counts = self._counts[0::2] + self._counts[1::2]
            self.pool *= 2

    def add(self, block: np.ndarray) -> None:
        """Take the next block of samples (any length)."""
        self._buf = np.concatenate([self._buf, np.asarray(block, dtype=np.float32)])
        self.n_samples += int(np.asarray(block).size)
        self._frames(last=False)

    def tap(self, blocks):
        """Pass ``blocks`` through, adding each one on the way."""
        for b in blocks:
            self.add(b)
            yield b

    def levels(self) -> tuple[np.ndarray, int]:
        """Normalised log-mel levels ``[n_mels, columns]`` of everything added, and the frames per column."""
        from genrekit import spectrogram as spec

        if self.n_samples == 0:
            raise ValueError("no samples were added")
        self._frames(last=True)
        return spec.power_to_levels((self._sums / self._counts).astype(np.float32)), self.pool


def spectrogram_levels(y: np.ndarray, *, sr: int, max_columns: int = SPECTROGRAM_MAX_COLUMNS) -> tuple[np.ndarray, int]:
    """Log-mel levels ``[n_mels, columns]`` of a whole track for display, and the frames per column.

    Computed block by block (30 s, :class:`SpectrogramAccumulator`) and average-pooled in time to at
    most ``max_columns`` columns, so a long track costs bounded memory; with no pooling it equals one
    whole-track STFT. Levels are normalised over the whole track, like the models' input.
    """
    acc = SpectrogramAccumulator(sr=sr, max_columns=max_columns)
    block = int(30.0 * sr)
    for i in range(0, max(1, y.size), block):
        acc.add(y[i : i + block])
    return acc.levels()


def spectrogram_png(y: np.ndarray | SpectrogramAccumulator, *, sr: int,
                    max_columns: int = SPECTROGRAM_MAX_COLUMNS) -> dict[str, Any]:
    """The track's log-mel spectrogram as a PNG data URL (magma colours, low frequencies at the bottom);
    ``y`` is the samples or an accumulator that has seen them."""
    from matplotlib import colormaps
    from PIL import Image

    if isinstance(y, SpectrogramAccumulator):
        levels, pool = y.levels()
        n_samples = y.n_samples
    else:
        levels, pool = spectrogram_levels(y, sr=sr, max_columns=max_columns)
        n_samples = y.size
    lut = (np.asarray(colormaps["magma"](np.linspace(0, 1, 256)))[:, :3] * 255).astype(np.uint8)
    rgb = lut[np.clip((levels[::-1] * 255).round(), 0, 255).astype(np.uint8)]
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG")
    return {
        "image": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"),
        "width": int(rgb.shape[1]), "height": int(rgb.shape[0]), "n_mels": dsp.N_MELS,
        "fmax_hz": sr / 2, "duration_s": round(n_samples / sr, 3),
        "seconds_per_column": round(pool * dsp.HOP_LENGTH / sr, 6),
    }
