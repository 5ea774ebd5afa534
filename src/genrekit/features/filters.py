"""Filterbanks of the GTZAN features: librosa's chroma filterbank and the DCT-II basis of the MFCCs
(the mel filterbank is :func:`genrekit.dsp.mel_filterbank`, shared with the log-mel front end).

Both are cached and read-only: every clip of a batch uses the same few matrices."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft

from genrekit.dsp import N_FFT, SR

__all__ = ["chroma_filterbank", "dct_basis"]


@lru_cache(maxsize=32)
def _chroma_filterbank(sr: float, n_fft: int, n_chroma: int, tuning: float) -> np.ndarray:
    frequencies = np.linspace(0, sr, n_fft, endpoint=False)[1:]
    a440 = 440.0 * 2.0 ** (tuning / n_chroma)
    frqbins = n_chroma * np.log2(frequencies / (a440 / 16))
    # the 0 Hz bin: 1.5 octaves below bin 1 (librosa's convention)
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidthbins = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    d = np.subtract.outer(frqbins, np.arange(0, n_chroma, dtype="d")).T
    n_chroma2 = np.round(float(n_chroma) / 2)
    d = np.remainder(d + n_chroma2 + 10 * n_chroma, n_chroma) - n_chroma2
    wts = np.exp(-0.5 * (2 * d / np.tile(binwidthbins, (n_chroma, 1))) ** 2)
    length = np.sqrt(np.sum(wts**2, axis=0, keepdims=True))
    length[length < np.finfo(np.float64).tiny] = 1.0
    wts = wts / length
    wts *= np.tile(np.exp(-0.5 * (((frqbins / n_chroma - 5.0) / 2.0) ** 2)), (n_chroma, 1))  # ctroct 5, octwidth 2
    wts = np.roll(wts, -3 * (n_chroma // 12), axis=0)  # start at C
    out = np.ascontiguousarray(wts[:, : int(1 + n_fft / 2)], dtype=np.float32)
    out.flags.writeable = False
    return out


def chroma_filterbank(*, sr: float = SR, n_fft: int = N_FFT, n_chroma: int = 12, tuning: float = 0.0) -> np.ndarray:
    """librosa.filters.chroma with its defaults (Gaussian bumps, octave weighting centred on C5), cached."""
    return _chroma_filterbank(float(sr), int(n_fft), int(n_chroma), float(tuning))


@lru_cache(maxsize=4)
def dct_basis(n_mfcc: int, n_mels: int) -> np.ndarray:
    """Rows of the orthonormal DCT-II, so ``basis @ S`` equals scipy.fft.dct(S, norm='ortho')[:n_mfcc]."""
    basis = scipy.fft.dct(np.eye(n_mels), type=2, norm="ortho", axis=0)[:n_mfcc]
    out = basis.astype(np.float32)
    out.flags.writeable = False
    return out
