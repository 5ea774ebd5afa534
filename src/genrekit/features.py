"""The 57 features of Kaggle's GTZAN tables (plus an extended set), fast and without librosa.

Kaggle's ``features_30_sec.csv`` was made with librosa 0.7 defaults: sr 22050, n_fft 2048, hop 512,
centred frames with *reflect* padding, mean and variance over frames. Calling librosa feature by
feature recomputes the STFT about ten times, runs two scipy median filters for HPSS (~1 s) and pays
20-30 s of numba compilation in a fresh environment. Here one decode feeds one STFT that every feature
shares, the median filters use scipy's O(n log k) 1-D rank filter over flattened rows (10x faster than
the 2-D filter librosa calls), and nothing needs numba, so a 30 s clip costs tens of milliseconds.

Every definition follows librosa's source; the differences that matter for the Kaggle values are
documented in ``docs/features.md`` (reflect padding, the librosa-0.7 HPSS length handling and tempo
prior). Long inputs are processed in blocks of frames, with exactly the same results, so memory stays
bounded (a 10-minute file needs a few hundred MB, not gigabytes).

The small public functions mirror librosa's (keyword arguments, ``y=`` or a precomputed ``S=``,
arrays shaped ``(..., n_freq, n_frames)``); :func:`extract` is the fast path that shares all the work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.fft
from scipy import ndimage

from genrekit import dsp
from genrekit.dsp import (
    HOP_LENGTH,
    N_FFT,
    N_MELS,
    SR,
    fft_frequencies,
    frame_count,
    hann_window,
    mel_filterbank,
    power_to_db,
    stft_frames,
)
from genrekit.errors import FeatureError

# The 57 feature columns of Kaggle's features_30_sec.csv / features_3_sec.csv, in their order.
FEATURE_COLUMNS: list[str] = [
    "chroma_stft_mean", "chroma_stft_var", "rms_mean", "rms_var",
    "spectral_centroid_mean", "spectral_centroid_var", "spectral_bandwidth_mean", "spectral_bandwidth_var",
    "rolloff_mean", "rolloff_var", "zero_crossing_rate_mean", "zero_crossing_rate_var",
    "harmony_mean", "harmony_var", "perceptr_mean", "perceptr_var", "tempo",
    *[f"mfcc{i}_{s}" for i in range(1, 21) for s in ("mean", "var")],
]
N_MFCC = 20
HPSS_KERNEL = 31
# Frames per block for long inputs (~30 s): a 30 s clip (1293 frames) is one block, so it is computed in one go.
BLOCK_FRAMES = 1300
# One row per whole file holds the file's samples in memory (peak RSS about 500 MB for 30 min at 22050 Hz);
# longer files are refused with a pointer to --segment, which streams files of any length.
MAX_WHOLE_FILE_SECONDS = 1800.0
# Bumped whenever a definition changes, so cached feature rows are recomputed.
FEATURES_VERSION = "2"

N_CONTRAST_BANDS = 6
EXTENDED_COLUMNS: list[str] = [
    *[f"spectral_contrast{i}_{s}" for i in range(1, N_CONTRAST_BANDS + 2) for s in ("mean", "var")],
    "spectral_flatness_mean", "spectral_flatness_var",
    *[f"tonnetz{i}_{s}" for i in range(1, 7) for s in ("mean", "var")],
    *[f"mfcc_delta{i}_{s}" for i in range(1, N_MFCC + 1) for s in ("mean", "var")],
    *[f"logmel{i}_{s}" for i in range(1, N_MELS + 1) for s in ("mean", "var")],
]

__all__ = [
    "EXTENDED_COLUMNS", "FEATURES_VERSION", "FEATURE_COLUMNS", "FeatureSettings",
    "analyse_file", "chroma_filterbank", "chroma_stft", "columns", "delta", "estimate_tuning", "extract",
    "extract_segments", "fft_frequencies", "hpss", "median_filter", "remedian_filter", "mel_filterbank",
    "melspectrogram", "mfcc", "onset_strength", "power_to_db", "rms", "spectral_bandwidth", "spectral_centroid",
    "spectral_contrast", "spectral_flatness", "spectral_rolloff", "stft", "tempo", "tonnetz",
    "zero_crossing_rate",
]

_TINY32 = np.finfo(np.float32).tiny


def columns(*, extended: bool = False) -> list[str]:
    """Feature column names in output order: Kaggle's 57, then the extended set if asked."""
    return [*FEATURE_COLUMNS, *(EXTENDED_COLUMNS if extended else [])]


_all_columns = columns  # extract() takes a `columns=` argument that shadows the function


# ============================================================================================ filterbanks


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
def _dct_basis(n_mfcc: int, n_mels: int) -> np.ndarray:
    """Rows of the orthonormal DCT-II, so ``basis @ S`` equals scipy.fft.dct(S, norm='ortho')[:n_mfcc]."""
    basis = scipy.fft.dct(np.eye(n_mels), type=2, norm="ortho", axis=0)[:n_mfcc]
    out = basis.astype(np.float32)
    out.flags.writeable = False
    return out


# ============================================================================================ primitives


def _check_audio(y: np.ndarray, *, n_fft: int = N_FFT) -> np.ndarray:
    """Mono float32 samples, at least one frame long and finite (what librosa.load would give)."""
    from genrekit.audio import validate

    y = np.asarray(y)
    if y.ndim != 1:
        raise FeatureError(f"features need a mono 1-D waveform, got shape {y.shape}; average the channels first")
    y = np.ascontiguousarray(y, dtype=np.float32)
    return validate(y, name="waveform", min_samples=n_fft)


def stft(y: np.ndarray, *, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH, pad_mode: str = "reflect") -> np.ndarray:
    """:func:`genrekit.dsp.stft` of a checked waveform (mono, finite, at least one frame), as every
    feature here takes it: centred Hann STFT ``(1 + n_fft // 2, frames)`` complex64, reflect-padded."""
    return dsp.stft(_check_audio(y, n_fft=n_fft), n_fft=n_fft, hop_length=hop_length, pad_mode=pad_mode)


def _magnitude(y, S, *, n_fft, hop_length, power: float = 1.0) -> np.ndarray:
    if S is None:
        if y is None:
            raise FeatureError("give either a waveform y= or a spectrogram S=")
        S = np.abs(stft(y, n_fft=n_fft, hop_length=hop_length))
        if power != 1.0:
            S = S**power
    return np.asarray(S)


# ---------------------------------------------------------------------------------------- median filter


def _median_rows(a: np.ndarray, size: int) -> np.ndarray:
    """Running median along the last axis of a C-contiguous 2-D array whose rows are already padded by
    ``size // 2`` on both sides. The rows are filtered as one flat 1-D signal: scipy's 1-D rank filter
    is O(n log k) and ten times faster than its n-D filter, and windows centred on a row's interior never
    reach the neighbouring rows, so the result equals the 2-D filter exactly."""
    h = size // 2
    flat = np.ascontiguousarray(a).reshape(-1)
    out = ndimage.median_filter(flat, size=size, mode="nearest")
    return out.reshape(a.shape)[:, h : a.shape[1] - h]


def median_filter(x: np.ndarray, *, size: int = HPSS_KERNEL, axis: int = -1) -> np.ndarray:
    """scipy.ndimage.median_filter(x, size along ``axis`` only, mode='reflect') for 2-D ``x``, fast."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise FeatureError(f"median_filter expects a 2-D array, got shape {x.shape}")
    if size < 1 or size % 2 == 0:
        raise FeatureError(f"median filter size must be a positive odd number, got {size}")
    moved = np.moveaxis(x, axis, -1)
    h = size // 2
    padded = np.pad(moved, ((0, 0), (h, h)), mode="symmetric")  # numpy 'symmetric' == scipy 'reflect'
    return np.moveaxis(_median_rows(padded, size), -1, axis)


# ============================================================================================ features


def spectral_centroid(
    *, y: np.ndarray | None = None, sr: float = SR, S: np.ndarray | None = None, n_fft: int = N_FFT,
    hop_length: int = HOP_LENGTH,
) -> np.ndarray:
    """Magnitude-weighted mean frequency per frame (Hz), ``(frames,)``."""
    S = _magnitude(y, S, n_fft=n_fft, hop_length=hop_length)
    return _spectral_shape(S.T, fft_frequencies(sr=sr, n_fft=2 * (S.shape[-2] - 1)))[0]


def spectral_bandwidth(
    *, y: np.ndarray | None = None, sr: float = SR, S: np.ndarray | None = None, n_fft: int = N_FFT,
    hop_length: int = HOP_LENGTH,
) -> np.ndarray:
    """Magnitude-weighted standard deviation of frequency around the centroid (p=2), ``(frames,)``."""
    S = _magnitude(y, S, n_fft=n_fft, hop_length=hop_length)
    return _spectral_shape(S.T, fft_frequencies(sr=sr, n_fft=2 * (S.shape[-2] - 1)))[1]


_ROLL_BLOCK = 32  # bins per block of the two-level rolloff search


@lru_cache(maxsize=8)
def _shape_weights(n_freq: int, df: float) -> np.ndarray:
    """Columns 1, f, f^2, then one indicator per block of _ROLL_BLOCK bins: one matmul gives the
    centroid/bandwidth moments and the rolloff's coarse cumulative sums."""
    f = np.arange(n_freq) * df
    nb = -(-n_freq // _ROLL_BLOCK)
    blocks = (np.arange(n_freq)[:, None] // _ROLL_BLOCK == np.arange(nb)[None, :]).astype(np.float64)
    return np.ascontiguousarray(np.concatenate([np.stack([np.ones_like(f), f, f * f], axis=1), blocks], axis=1),
                                dtype=np.float32)


def _spectral_shape(S_tf: np.ndarray, freqs: np.ndarray, roll_percent: float = 0.85):
    """Centroid, bandwidth and rolloff per frame of a time-major magnitude spectrogram.

    Centroid and bandwidth come from three weighted sums (sum S, sum S f, sum S f^2): the same values
    as librosa's normalise-then-deviate formulation, without an (F, T) temporary. The rolloff is the
    first bin whose running sum reaches ``roll_percent`` of the total, found in two steps (32-bin block
    sums, then a running sum inside the one block that crosses) instead of a cumsum over every bin."""
    S_tf = np.ascontiguousarray(S_tf, dtype=np.float32)
    T, F = S_tf.shape
    moments = S_tf @ _shape_weights(F, float(freqs[1] - freqs[0]) if F > 1 else 0.0)
    m0, m1, m2 = moments[:, :3].astype(np.float64).T
    ok = m0 >= np.finfo(np.float32).tiny  # librosa leaves all-but-silent frames unnormalised
    safe = np.where(ok, m0, 1.0)
    centroid = np.where(ok, m1 / safe, m1)
    var = np.where(ok, m2 / safe - centroid**2, m2 - 2 * centroid * m1 + centroid**2 * m0)
    bandwidth = np.sqrt(np.maximum(var, 0.0))

    coarse = np.cumsum(moments[:, 3:], axis=1)
    thr = np.float32(roll_percent) * coarse[:, -1:]
    j = np.minimum(np.count_nonzero(coarse < thr, axis=1), coarse.shape[1] - 1)
    rows = np.arange(T)
    prefix = np.where(j > 0, coarse[rows, np.maximum(j - 1, 0)], 0.0).astype(np.float32)
    cols = j[:, None] * _ROLL_BLOCK + np.arange(_ROLL_BLOCK)[None, :]
    seg = np.where(cols < F, S_tf[rows[:, None], np.minimum(cols, F - 1)], 0.0)
    fine = prefix[:, None] + np.cumsum(seg, axis=1, dtype=np.float32)
    idx = np.minimum(j * _ROLL_BLOCK + np.count_nonzero(fine < thr, axis=1), F - 1)
    return centroid, bandwidth, freqs[idx]


def spectral_rolloff(
    *, y: np.ndarray | None = None, sr: float = SR, S: np.ndarray | None = None, n_fft: int = N_FFT,
    hop_length: int = HOP_LENGTH, roll_percent: float = 0.85,
) -> np.ndarray:
    """Frequency below which ``roll_percent`` of each frame's magnitude lies, ``(frames,)``."""
    if not 0.0 < roll_percent < 1.0:
        raise FeatureError(f"roll_percent must lie in (0, 1), got {roll_percent}")
    S = _magnitude(y, S, n_fft=n_fft, hop_length=hop_length)
    return _spectral_shape(S.T, fft_frequencies(sr=sr, n_fft=2 * (S.shape[-2] - 1)), roll_percent)[2]


def spectral_flatness(
    *, y: np.ndarray | None = None, S: np.ndarray | None = None, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH,
    amin: float = 1e-10, power: float = 2.0,
) -> np.ndarray:
    """Geometric over arithmetic mean of the power spectrum per frame (1 = white noise, 0 = a tone)."""
    S = _magnitude(y, S, n_fft=n_fft, hop_length=hop_length)
    return _flatness(np.ascontiguousarray(S.T) ** power, amin)


def _flatness(P_tf: np.ndarray, amin: float = 1e-10) -> np.ndarray:
    p = np.maximum(amin, P_tf)
    return np.exp(np.mean(np.log(p), axis=1)) / np.mean(p, axis=1)


def spectral_contrast(
    *, y: np.ndarray | None = None, sr: float = SR, S: np.ndarray | None = None, n_fft: int = N_FFT,
    hop_length: int = HOP_LENGTH, fmin: float = 200.0, n_bands: int = N_CONTRAST_BANDS, quantile: float = 0.02,
) -> np.ndarray:
    """Peak-minus-valley level (dB) in octave sub-bands, ``(n_bands + 1, frames)`` (librosa's definition)."""
    S = _magnitude(y, S, n_fft=n_fft, hop_length=hop_length)
    peak, valley = _contrast_peaks(np.ascontiguousarray(S.T), fft_frequencies(sr=sr, n_fft=2 * (S.shape[-2] - 1)), sr, fmin, n_bands, quantile)
    return power_to_db(peak) - power_to_db(valley)


@lru_cache(maxsize=8)
def _contrast_bands(sr: float, n_freq: int, fmin: float, n_bands: int, quantile: float) -> tuple:
    freq = np.linspace(0, sr / 2, n_freq)
    octa = np.zeros(n_bands + 2)
    octa[1:] = fmin * (2.0 ** np.arange(0, n_bands + 1))
    if np.any(octa[:-1] >= 0.5 * sr):
        raise FeatureError(f"spectral contrast bands exceed Nyquist at sr={sr}; reduce fmin or n_bands")
    bands = []
    for k, (lo, hi) in enumerate(zip(octa[:-1], octa[1:], strict=True)):
        cur = (freq >= lo) & (freq <= hi)
        idx = np.flatnonzero(cur)
        if k > 0:
            cur[idx[0] - 1] = True
        if k == n_bands:
            cur[idx[-1] + 1 :] = True
        sel = np.flatnonzero(cur)
        if k < n_bands:
            sel = sel[:-1]
        q = int(max(np.rint(quantile * np.sum(cur)), 1))
        bands.append((int(sel[0]), int(sel[-1]) + 1, q))
    return tuple(bands)


def _contrast_peaks(S_tf, freqs, sr, fmin=200.0, n_bands=N_CONTRAST_BANDS, quantile=0.02):
    """Mean of the top and bottom quantile of each octave band, per frame (partition, not a full sort)."""
    bands = _contrast_bands(float(sr), S_tf.shape[1], float(fmin), int(n_bands), float(quantile))
    peak = np.empty((len(bands), S_tf.shape[0]))
    valley = np.empty_like(peak)
    for k, (a, b, q) in enumerate(bands):
        sub = S_tf[:, a:b]
        n = b - a
        low = np.partition(sub, q - 1, axis=1)[:, :q] if q < n else sub
        high = np.partition(sub, n - q, axis=1)[:, n - q :] if q < n else sub
        valley[k] = low.mean(axis=1, dtype=np.float64)
        peak[k] = high.mean(axis=1, dtype=np.float64)
    return peak, valley


def rms(
    *, y: np.ndarray | None = None, S: np.ndarray | None = None, frame_length: int = N_FFT, hop_length: int = HOP_LENGTH,
) -> np.ndarray:
    """Root-mean-square level per frame, ``(frames,)``: from centred, reflect-padded frames of ``y``
    (Kaggle's definition), or from a magnitude spectrogram ``S`` by Parseval as librosa does."""
    if y is not None:
        y = _check_audio(y, n_fft=frame_length)
        y_pad = np.pad(y, frame_length // 2, mode="reflect")
        return _rms_frames(y_pad, frame_count(y.size, hop_length=hop_length), frame_length, hop_length)
    if S is None:
        raise FeatureError("give either a waveform y= or a spectrogram S=")
    x = np.abs(np.asarray(S)) ** 2
    x[..., 0, :] *= 0.5
    if frame_length % 2 == 0:
        x[..., -1, :] *= 0.5
    return np.sqrt(2 * np.sum(x, axis=-2) / frame_length**2)


def _rms_frames(y_pad: np.ndarray, n_frames: int, frame_length: int, hop: int) -> np.ndarray:
    """Frame energies from per-hop partial sums (float64), so no (frames, frame_length) copy is made."""
    if frame_length % hop == 0:
        k = frame_length // hop
        m = n_frames + k - 1
        blocks = y_pad[: m * hop].reshape(m, hop)
        part = np.einsum("ij,ij->i", blocks, blocks, dtype=np.float64)
        cs = np.concatenate(([0.0], np.cumsum(part)))
        energy = cs[k : k + n_frames] - cs[:n_frames]
    else:
        cs = np.concatenate(([0.0], np.cumsum(y_pad.astype(np.float64) ** 2)))
        starts = np.arange(n_frames) * hop
        energy = cs[starts + frame_length] - cs[starts]
    return np.sqrt(np.maximum(energy, 0.0) / frame_length)


def zero_crossing_rate(y: np.ndarray, *, frame_length: int = N_FFT, hop_length: int = HOP_LENGTH) -> np.ndarray:
    """Fraction of sign changes per centred frame (edge padding, |x| <= 1e-10 counts as zero, as librosa)."""
    y = _check_audio(y, n_fft=frame_length)
    return _zcr(y, frame_count(y.size, hop_length=hop_length), frame_length, hop_length)


def _zcr(y: np.ndarray, n_frames: int, frame_length: int, hop: int) -> np.ndarray:
    neg = y < -1e-10  # signbit after zeroing |x| <= 1e-10
    half = frame_length // 2
    # crossings in padded coordinates (edge padding adds none): change[i] = sign(i) != sign(i - 1)
    change = np.zeros(y.size + frame_length + hop, dtype=np.uint8)
    np.not_equal(neg[1:], neg[:-1], out=change[half + 1 : half + y.size].view(bool))
    # frame t counts padded i in (t*hop, t*hop + L): per-hop partial sums keep memory at n/hop
    if frame_length % hop == 0:
        k = frame_length // hop
        m = n_frames + k - 1
        part = change[: m * hop].reshape(m, hop).sum(axis=1, dtype=np.int64)
        cs = np.concatenate(([0], np.cumsum(part)))
        counts = cs[k : k + n_frames] - cs[:n_frames] - change[: n_frames * hop : hop]
    else:
        cs = np.concatenate(([0], np.cumsum(change, dtype=np.int64)))
        starts = np.arange(n_frames) * hop
        counts = cs[starts + frame_length] - cs[starts + 1]
    return counts / frame_length


def melspectrogram(
    *, y: np.ndarray | None = None, sr: float = SR, S: np.ndarray | None = None, n_fft: int = N_FFT,
    hop_length: int = HOP_LENGTH, n_mels: int = N_MELS,
) -> np.ndarray:
    """Mel power spectrogram ``(n_mels, frames)``; ``S`` is a power spectrogram if given."""
    S = _magnitude(y, S, n_fft=n_fft, hop_length=hop_length, power=2.0)
    return mel_filterbank(sr=sr, n_fft=2 * (S.shape[-2] - 1), n_mels=n_mels) @ S


def mfcc(
    *, y: np.ndarray | None = None, sr: float = SR, S: np.ndarray | None = None, n_mfcc: int = N_MFCC,
    n_mels: int = N_MELS,
) -> np.ndarray:
    """MFCCs ``(n_mfcc, frames)``: orthonormal DCT-II of the log-mel spectrogram ``S`` (dB) or of ``y``'s."""
    if S is None:
        if y is None:
            raise FeatureError("give either a waveform y= or a log-mel spectrogram S=")
        S = power_to_db(melspectrogram(y=y, sr=sr, n_mels=n_mels))
    S = np.asarray(S, dtype=np.float32)
    return _dct_basis(int(n_mfcc), S.shape[-2]) @ S


def delta(data: np.ndarray, *, width: int = 9) -> np.ndarray:
    """First-order Savitzky-Golay derivative along time, librosa.feature.delta (mode='interp').

    For a first-order fit the derivative is the local least-squares slope, and 'interp' edges reuse the
    slope of the first/last full window. Inputs shorter than ``width`` frames use the largest odd window
    that fits (librosa raises there); fewer than 3 frames give zeros."""
    data = np.asarray(data, dtype=np.float64)
    n = data.shape[-1]
    width = min(width, n if n % 2 else n - 1)
    if width < 3:
        return np.zeros_like(data)
    h = width // 2
    k = np.arange(-h, h + 1, dtype=np.float64)
    k /= np.sum(k * k)
    win = np.lib.stride_tricks.sliding_window_view(data, width, axis=-1)
    inner = win @ k
    return np.concatenate(
        [np.repeat(inner[..., :1], h, axis=-1), inner, np.repeat(inner[..., -1:], h, axis=-1)], axis=-1
    )


# ---------------------------------------------------------------------------------------------- chroma


def _pitch_candidates(P_tf: np.ndarray, freqs: np.ndarray, sr: float, n_fft: int,
                      fmin: float = 150.0, fmax: float = 4000.0, threshold: float = 0.1):
    """piptrack's interpolated spectral peaks (pitch Hz, magnitude) on a time-major power spectrogram."""
    fmax = min(fmax, sr / 2)
    band = np.flatnonzero((freqs >= fmin) & (freqs < fmax))
    if band.size == 0 or P_tf.shape[0] == 0:
        return np.zeros(0), np.zeros(0)
    k_lo, k_hi = max(int(band[0]), 1), min(int(band[-1]), P_tf.shape[1] - 2)
    ref = threshold * P_tf.max(axis=1, keepdims=True)
    sub = P_tf[:, k_lo - 1 : k_hi + 2]
    x = sub * (sub > ref)
    mid = x[:, 1:-1]
    rows, cols = np.nonzero((mid > x[:, :-2]) & (mid >= x[:, 2:]))
    k = cols + k_lo
    s0 = P_tf[rows, k]
    sp = P_tf[rows, k + 1]
    sm = P_tf[rows, k - 1]
    a = sp + sm - 2 * s0
    b = (sp - sm) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(np.abs(b) >= np.abs(a), 0.0, -b / a).astype(np.float32)
    pitch = (k + shift) * float(sr) / n_fft
    mag = s0 + 0.5 * b * shift
    return pitch.astype(np.float32), mag.astype(np.float32)


def _tuning_from_candidates(pitch: np.ndarray, mag: np.ndarray, *, resolution: float = 0.01, bins_per_octave: int = 12) -> float:
    """estimate_tuning: histogram of the deviation from equal temperament of the stronger half of peaks."""
    keep = pitch > 0
    if not keep.any():
        return 0.0
    thr = np.median(mag[keep])
    f = pitch[(mag >= thr) & keep]
    f = f[f > 0]
    if f.size == 0:
        return 0.0
    residual = np.mod(bins_per_octave * np.log2(f / np.float32(440.0 / 16)), 1.0)
    residual[residual >= 0.5] -= 1.0
    bins = np.linspace(-0.5, 0.5, int(np.ceil(1.0 / resolution)) + 1)
    counts, edges = np.histogram(residual, bins)
    return float(edges[np.argmax(counts)])


def estimate_tuning(
    *, y: np.ndarray | None = None, sr: float = SR, S: np.ndarray | None = None, n_fft: int = N_FFT,
    hop_length: int = HOP_LENGTH,
) -> float:
    """Deviation of the recording from A440 tuning, in fractions of a semitone (resolution 0.01).

    ``S`` is a power spectrogram (chroma_stft passes |STFT|^2 to piptrack, so do we)."""
    P = _magnitude(y, S, n_fft=n_fft, hop_length=hop_length, power=2.0)
    nf = 2 * (P.shape[-2] - 1)
    pitch, mag = _pitch_candidates(np.ascontiguousarray(P.T), fft_frequencies(sr=sr, n_fft=nf), sr, nf)
    return _tuning_from_candidates(pitch, mag)


def _chroma_frames(P_tf: np.ndarray, fb: np.ndarray) -> np.ndarray:
    raw = P_tf @ fb.T  # (frames, 12)
    peak = raw.max(axis=1, keepdims=True)
    peak[peak < _TINY32] = 1.0
    return (raw / peak).T


def chroma_stft(
    *, y: np.ndarray | None = None, sr: float = SR, S: np.ndarray | None = None, n_fft: int = N_FFT,
    hop_length: int = HOP_LENGTH, tuning: float | None = None, n_chroma: int = 12,
) -> np.ndarray:
    """Chromagram ``(12, frames)`` from a power spectrogram, each frame scaled to max 1, with tuning
    estimated from the signal unless given (it shifts the filterbank; Kaggle's values depend on it)."""
    P = _magnitude(y, S, n_fft=n_fft, hop_length=hop_length, power=2.0)
    nf = 2 * (P.shape[-2] - 1)
    P_tf = np.ascontiguousarray(P.T)
    if tuning is None:
        tuning = _tuning_from_candidates(*_pitch_candidates(P_tf, fft_frequencies(sr=sr, n_fft=nf), sr, nf))
    return _chroma_frames(P_tf, chroma_filterbank(sr=sr, n_fft=nf, n_chroma=n_chroma, tuning=tuning))


def tonnetz(*, chroma: np.ndarray) -> np.ndarray:
    """Tonal centroid features ``(6, frames)`` (Harte et al. 2006) of a chromagram.

    librosa computes tonnetz from chroma_cqt by default; genrekit uses its chroma_stft so that no
    constant-Q transform is needed (equal to librosa.feature.tonnetz(chroma=chroma_stft(...)))."""
    chroma = np.asarray(chroma, dtype=np.float64)
    n_chroma = chroma.shape[-2]
    dim_map = np.linspace(0, 12, num=n_chroma, endpoint=False)
    scale = np.asarray([7.0 / 6, 7.0 / 6, 3.0 / 2, 3.0 / 2, 2.0 / 3, 2.0 / 3])
    V = np.multiply.outer(scale, dim_map)
    V[::2] -= 0.5
    R = np.array([1, 1, 1, 1, 0.5, 0.5])
    phi = R[:, None] * np.cos(np.pi * V)
    total = np.sum(np.abs(chroma), axis=-2, keepdims=True)
    total[total < np.finfo(np.float64).tiny] = 1.0
    return phi @ (chroma / total)


# ---------------------------------------------------------------------------------------------- HPSS


# Dilations of the fast harmonic/percussive filters: three rounds of median-of-3 whose taps reach
# +-15 frames or bins, the span of the exact 31-point median (tuned on the 124 shared clips).
REMEDIAN_DILATIONS = (3, 9, 3)
HPSS_MODES = ("fast", "exact")


def _med3(a: np.ndarray, b: np.ndarray, c: np.ndarray, out: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """Elementwise median of three arrays in four min/max passes, into ``out`` (``tmp`` is scratch)."""
    np.minimum(a, b, out=tmp)
    np.maximum(a, b, out=out)
    np.minimum(out, c, out=out)
    return np.maximum(tmp, out, out=out)


def remedian_filter(x: np.ndarray, *, axis: int = -1, dilations: tuple[int, ...] = REMEDIAN_DILATIONS) -> np.ndarray:
    """Repeated dilated median of three along ``axis`` (edges reflected like scipy's mode='reflect').

    Tukey's remedian: a robust stand-in for a running median of span ``1 + 2 * sum(dilations)`` at
    12 min/max passes instead of a sort per sample, about 9x faster than the exact 31-point median
    on a spectrogram. It rejects isolated peaks the same way, so HPSS masks built from it give the
    harmonic/percussive statistics within a few percent (``docs/fidelity.md``)."""
    x = np.moveaxis(np.asarray(x), axis, 0)
    if any(d < 1 for d in dilations):
        raise FeatureError(f"dilations must be positive, got {dilations}")
    # along a contiguous first axis the passes are whole-row slices: 2.5x faster than strided ones,
    # which pays for the transposing copy
    return np.moveaxis(_remedian_block(np.ascontiguousarray(x), dilations), 0, axis)


def _remedian_block(x: np.ndarray, dilations: tuple[int, ...]) -> np.ndarray:
    n = x.shape[0]
    bufs = [np.empty_like(x), np.empty_like(x)]
    tmp = np.empty_like(x)
    for i, d in enumerate(dilations):
        out = bufs[i % 2]
        if n <= d:  # too short to reflect: the exact median over what there is
            out[...] = np.median(x, axis=0, keepdims=True)
            x = out
            continue
        if n > 2 * d:
            _med3(x[: n - 2 * d], x[d : n - d], x[2 * d :], out[d : n - d], tmp[d : n - d])
        # the first and last d samples see reflected neighbours (numpy 'symmetric' == scipy 'reflect')
        for rows in (np.arange(min(d, n)), np.arange(max(n - d, d), n)):
            left = rows - d
            left = np.where(left < 0, -left - 1, left)
            right = rows + d
            right = np.where(right >= n, 2 * n - right - 1, right)
            part = x[rows]
            out[rows] = _med3(x[left], part, x[right], np.empty_like(part), np.empty_like(part))
        x = out
    return x


def _edge_bins_percussive(S_tf: np.ndarray, kernel: int) -> np.ndarray:
    """Exact frequency median of bins 0 and 1 (they alone set the waveform means; see _HarmonicStats)."""
    h = kernel // 2
    idx = np.arange(-h, h + 1)[None, :] + np.arange(2)[:, None]
    idx = np.where(idx < 0, -idx - 1, idx)  # symmetric reflection at bin 0
    idx = np.minimum(idx, S_tf.shape[1] - 1)
    return np.median(S_tf[:, idx], axis=-1)


def _hpss_masks(S_ctx: np.ndarray, lo: int, hi: int, kernel: int = HPSS_KERNEL, mode: str = "exact") -> np.ndarray:
    """Harmonic soft mask (power 2, margin 1) for frames ``lo:hi`` of a time-major magnitude block.

    ``S_ctx`` holds up to ``kernel // 2`` context frames on each side; where it holds fewer we are at
    the signal's edge and reflect, as scipy's mode='reflect' does. The percussive mask is 1 - harmonic.
    ``mode="exact"`` runs librosa's 31-point medians; ``"fast"`` runs :func:`remedian_filter` except
    on bins 0 and 1, which stay exact so that the harmonic/percussive means match exactly.
    """
    if mode not in HPSS_MODES:
        raise FeatureError(f"hpss must be one of {', '.join(HPSS_MODES)}, got {mode!r}")
    h = kernel // 2
    nb = hi - lo
    pad_l, pad_r = h - lo, h - (S_ctx.shape[0] - hi)
    rows = S_ctx.T
    if mode == "fast":
        harm = remedian_filter(S_ctx, axis=0)[lo:hi]  # (nb, F), time-major
        perc = remedian_filter(S_ctx[lo:hi], axis=1)
        edge = np.ascontiguousarray(rows[:2])
        if pad_l or pad_r:
            edge = np.pad(edge, ((0, 0), (pad_l, pad_r)), mode="symmetric")
        harm[:, :2] = _median_rows(edge, kernel).T
        perc[:, :2] = _edge_bins_percussive(S_ctx[lo:hi], kernel)
        h2 = np.square(harm, out=harm)
    else:
        # harmonic: median across time, per frequency bin -> rows are bins
        if pad_l or pad_r:
            rows = np.pad(rows, ((0, 0), (pad_l, pad_r)), mode="symmetric")
        harm = _median_rows(np.ascontiguousarray(rows), kernel)  # (F, nb)
        # percussive: median across frequency, per frame -> rows are frames
        perc = _median_rows(np.pad(S_ctx[lo:hi], ((0, 0), (h, h)), mode="symmetric"), kernel)  # (nb, F)
        h2 = np.square(np.ascontiguousarray(harm.T))
    p2 = np.square(perc, out=perc)
    den = h2 + p2
    mask = np.full((nb, S_ctx.shape[1]), 0.5, dtype=np.float32)
    np.divide(h2, den, out=mask, where=den > 0)
    return mask


class _HarmonicStats:
    """Mean and variance of HPSS's harmonic and percussive waveforms, streamed block by block.

    The harmonic STFT is inverted by overlap-add (a carry of n_fft - hop samples joins the blocks), then
    windowed-square normalised and cut like librosa 0.7's istft without ``length`` (``hop * (frames-1)``
    samples, zero-padded to the input's length; Kaggle's values depend on this). Because the two soft
    masks sum to one, the percussive waveform is the input minus the harmonic one there.
    """

    def __init__(self, y: np.ndarray, n_frames: int, n_fft: int, hop: int):
        self.y, self.T, self.n_fft, self.hop = y, n_frames, n_fft, hop
        self.ratio = n_fft // hop
        if n_fft % hop:
            raise FeatureError("HPSS needs n_fft to be a multiple of hop_length")
        self.carry = np.zeros(n_fft - hop, dtype=np.float32)
        self.valid = (n_frames - 1) * hop  # output samples before zero padding
        self.sums = np.zeros(4)  # sum h, sum h^2, sum p, sum p^2
        w = hann_window(n_fft)
        self.w2 = w * w
        self.wss_inner = float(np.sum(self.w2.reshape(self.ratio, hop), axis=0).mean())

    def _wss_edges(self, a: int, b: int) -> list[tuple[int, np.ndarray]]:
        """Window-square sums where fewer than n_fft/hop frames overlap (the first and last n_fft
        samples); everywhere else the sum is the constant ``wss_inner``."""
        hop, T = self.hop, self.T
        out = []
        for lo, hi in ((a, min(b, (self.ratio - 1) * hop)), (max(a, T * hop), b)):
            if hi <= lo:
                continue
            n = np.arange(lo, hi)
            acc = np.zeros(n.size)
            for k in range(self.ratio):
                t = n // hop - k
                ok = (t >= 0) & (t < T)
                acc += np.where(ok, self.w2[np.clip(n - t * hop, 0, self.n_fft - 1)], 0.0)
            out.append((lo - a, acc))
        return out

    def add(self, spec_h: np.ndarray, f0: int, f1: int) -> None:
        hop, n_fft, nb, r = self.hop, self.n_fft, f1 - f0, self.ratio
        frames = scipy.fft.irfft(spec_h, n=n_fft, axis=1)
        frames *= hann_window(n_fft, dtype=np.float32)
        buf = np.zeros((nb + r - 1, hop), dtype=np.float32)
        buf[: r - 1] += self.carry.reshape(r - 1, hop)
        f3 = frames.reshape(nb, r, hop)
        for k in range(r):
            buf[k : k + nb] += f3[:, k]
        flat = buf.reshape(-1)
        done = flat if f1 == self.T else flat[: nb * hop]
        self.carry = flat[nb * hop :].copy()
        start, half = f0 * hop, n_fft // 2
        a, b = max(start, half), min(start + done.size, half + self.valid)
        if b <= a:
            return
        seg = done[a - start : b - start]
        h = seg * np.float32(1.0 / self.wss_inner)
        for off, wss in self._wss_edges(a, b):
            h[off : off + wss.size] = seg[off : off + wss.size] / wss
        p = self.y[a - half : b - half] - h
        self.sums += (h.sum(dtype=np.float64), np.dot(h, h), p.sum(dtype=np.float64), np.dot(p, p))

    def result(self) -> tuple[float, float, float, float]:
        n = self.y.size
        sh, sh2, sp, sp2 = self.sums / n
        return sh, max(sh2 - sh * sh, 0.0), sp, max(sp2 - sp * sp, 0.0)


def hpss(
    y: np.ndarray, *, kernel_size: int = HPSS_KERNEL, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH, mode: str = "exact",
) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic and percussive waveforms (librosa.effects.hpss, median kernel 31, soft masks).

    Follows librosa 0.7, which Kaggle used: reflect-padded STFT and an istft trimmed to
    ``hop * (frames - 1)`` samples then zero-padded to ``len(y)``. :func:`extract` never builds these
    arrays; it streams their mean and variance instead."""
    y = _check_audio(y, n_fft=n_fft)
    T = frame_count(y.size, hop_length=hop_length)
    D = stft_frames(np.pad(y, n_fft // 2, mode="reflect"), 0, T, n_fft=n_fft, hop_length=hop_length)
    mask = _hpss_masks(np.abs(D), 0, T, kernel_size, mode=mode)
    out = []
    for spec in (D * mask, D * (1 - mask)):
        frames = scipy.fft.irfft(spec, n=n_fft, axis=1) * hann_window(n_fft, dtype=np.float32)
        full = np.zeros(n_fft + hop_length * (T - 1))
        wss = np.zeros_like(full)
        w2 = hann_window(n_fft) ** 2
        for t in range(T):
            full[t * hop_length : t * hop_length + n_fft] += frames[t]
            wss[t * hop_length : t * hop_length + n_fft] += w2
        nz = wss > np.finfo(np.float64).tiny
        full[nz] /= wss[nz]
        trimmed = full[n_fft // 2 : n_fft // 2 + hop_length * (T - 1)]
        res = np.zeros(y.size, dtype=np.float32)
        res[: trimmed.size] = trimmed
        out.append(res)
    return out[0], out[1]


# ---------------------------------------------------------------------------------------------- tempo


def onset_strength(
    *, y: np.ndarray | None = None, sr: float = SR, S: np.ndarray | None = None, n_fft: int = N_FFT,
    hop_length: int = HOP_LENGTH,
) -> np.ndarray:
    """Spectral-flux onset envelope as beat_track computes it: median over mel bands of the positive
    dB increase between frames, shifted to frame centres. ``S`` is a log-mel spectrogram in dB."""
    if S is None:
        if y is None:
            raise FeatureError("give either a waveform y= or a log-mel spectrogram S=")
        S = power_to_db(melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop_length))
    return _onset_from_db(np.asarray(S), n_fft=n_fft, hop=hop_length)


def _onset_from_db(S_db: np.ndarray, *, n_fft: int = N_FFT, hop: int = HOP_LENGTH) -> np.ndarray:
    T = S_db.shape[-1]
    diff = np.ascontiguousarray((S_db[:, 1:] - S_db[:, :-1]).T)
    np.maximum(diff, 0.0, out=diff)
    env = np.median(diff, axis=1) if diff.size else np.zeros(0, dtype=S_db.dtype)
    pad = 1 + n_fft // (2 * hop)
    return np.concatenate([np.zeros(pad, dtype=env.dtype), env])[:T]


def tempo(
    *, y: np.ndarray | None = None, sr: float = SR, onset_envelope: np.ndarray | None = None, hop_length: int = HOP_LENGTH,
    start_bpm: float = 120.0, std_bpm: float = 1.0, ac_size: float = 8.0, max_tempo: float = 320.0,
    prior: str = "product",
) -> float:
    """Global tempo (BPM) as librosa's beat_track estimates it: the mean windowed autocorrelation of the
    onset envelope (8 s tempogram) weighted by a log-normal prior around 120 BPM; 0 for a silent input.

    ``prior="product"`` multiplies the autocorrelation by the prior (librosa <= 0.8, which made Kaggle's
    table); ``prior="log1p"`` adds the log prior to log1p(1e6 * ac) as librosa >= 0.9 does. They differ
    only where the autocorrelation is tiny."""
    if onset_envelope is None:
        if y is None:
            raise FeatureError("give either a waveform y= or an onset_envelope=")
        onset_envelope = onset_strength(y=y, sr=sr, hop_length=hop_length)
    env = np.asarray(onset_envelope, dtype=np.float64)
    if not env.any():
        return 0.0
    if prior not in ("product", "log1p"):
        raise FeatureError(f"prior must be 'product' or 'log1p', got {prior!r}")
    win = int(ac_size * sr) // hop_length
    tg = _mean_tempogram(env, win)
    bpms = np.full(win, np.inf)
    bpms[1:] = 60.0 * sr / (hop_length * np.arange(1, win))
    logprior = -0.5 * ((np.log2(bpms) - np.log2(start_bpm)) / std_bpm) ** 2
    max_idx = int(np.argmax(bpms < max_tempo))
    if prior == "product":
        weight = np.exp(logprior)
        weight[:max_idx] = 0.0
        best = int(np.argmax(tg * weight))
    else:
        logprior[:max_idx] = -np.inf
        with np.errstate(invalid="ignore"):
            best = int(np.argmax(np.log1p(1e6 * tg) + logprior))
    return float(bpms[best])


def _mean_tempogram(env: np.ndarray, win: int, chunk: int = 4096) -> np.ndarray:
    """Mean over frames of the max-normalised autocorrelation of centred, Hann-windowed envelope frames."""
    n = env.size
    half = win // 2
    padded = np.pad(env, half, mode="linear_ramp", end_values=(0, 0))
    frames = np.lib.stride_tricks.sliding_window_view(padded, win)[:n]
    w = hann_window(win, dtype=np.float32)
    n_pad = scipy.fft.next_fast_len(2 * win - 1, real=True)
    acc = np.zeros(win)
    tiny = np.finfo(np.float32).tiny
    for s in range(0, n, chunk):
        # float32 FFTs: half the time of float64, and the same tempo on all 124 shared clips
        spec = scipy.fft.rfft(frames[s : s + chunk].astype(np.float32) * w, n=n_pad, axis=1)
        ac = scipy.fft.irfft(spec.real**2 + spec.imag**2, n=n_pad, axis=1)[:, :win]
        peak = np.abs(ac).max(axis=1, keepdims=True)
        peak[peak < tiny] = 1.0
        acc += (ac / peak).sum(axis=0, dtype=np.float64)
    return acc / n


# ============================================================================================ extraction


def _block_bounds(n_frames: int, block: int) -> list[tuple[int, int]]:
    k = max(1, -(-n_frames // block))
    edges = np.linspace(0, n_frames, k + 1).astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


def _mean_var(x: np.ndarray, axis=None) -> tuple:
    x = np.asarray(x, dtype=np.float64)
    m = x.mean(axis=axis)
    return m, x.var(axis=axis)


def extract(
    y: np.ndarray, *, sr: int = SR, extended: bool = False, block_frames: int = BLOCK_FRAMES,
    columns: list[str] | None = None, hpss: str = "fast",
) -> dict[str, float]:
    """All features of one waveform, ordered like :func:`columns` (Kaggle's 57, then extended ones).

    ``columns`` selects a subset (in the given order); without any ``harmony_*``/``perceptr_*`` column
    the HPSS median filters are skipped (models served for speed use that). ``hpss="fast"`` (default)
    approximates HPSS's two 31-point medians with :func:`remedian_filter` (harmony/perceptr means
    exact, variances within a few percent, 7x less time for the whole extraction than exact);
    ``hpss="exact"`` runs the exact medians, as librosa does.

    One STFT (n_fft 2048, hop 512, reflect-padded, Hann) is shared by every feature. Inputs longer
    than ``block_frames`` frames are processed block by block with identical results (bounded memory).
    Raises EmptyAudioError for fewer than 2048 samples and NonFiniteAudioError for NaN/inf samples.
    """
    n_fft, hop = N_FFT, HOP_LENGTH
    y = _check_audio(y, n_fft=n_fft)
    if columns is not None:
        known = set(_all_columns(extended=True))
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise FeatureError(f"unknown feature column(s): {', '.join(unknown)}")
        extended = extended or any(c not in FEATURE_COLUMNS for c in columns)
    need_hpss = columns is None or any(c.startswith(("harmony_", "perceptr_")) for c in columns)
    if hpss not in HPSS_MODES:
        raise FeatureError(f"hpss must be one of {', '.join(HPSS_MODES)}, got {hpss!r}")
    n = y.size
    T = frame_count(n, hop_length=hop)
    y_pad = np.pad(y, n_fft // 2, mode="reflect")
    freqs = fft_frequencies(sr=sr, n_fft=n_fft)
    melfb = mel_filterbank(sr=sr, n_fft=n_fft)
    blocks = _block_bounds(T, max(int(block_frames), 2 * HPSS_KERNEL))
    single = len(blocks) == 1
    h = HPSS_KERNEL // 2

    mel = np.empty((N_MELS, T), dtype=np.float32)
    centroid = np.empty(T)
    bandwidth = np.empty(T)
    rolloff = np.empty(T)
    pitches, mags = [], []
    harmonic = _HarmonicStats(y, T, n_fft, hop)
    if extended:
        peak = np.empty((N_CONTRAST_BANDS + 1, T))
        valley = np.empty_like(peak)
        flatness = np.empty(T)
    kept_power = None

    for f0, f1 in blocks:
        c0, c1 = max(0, f0 - h), min(T, f1 + h)
        D_ctx = stft_frames(y_pad, c0, c1, n_fft=n_fft, hop_length=hop)
        S_ctx = np.abs(D_ctx)
        lo, hi = f0 - c0, f1 - c0
        S = S_ctx[lo:hi]
        P = np.square(S)
        mel[:, f0:f1] = (P @ melfb.T).T  # (frames, F) @ (F, mels): the fast BLAS layout
        centroid[f0:f1], bandwidth[f0:f1], rolloff[f0:f1] = _spectral_shape(S, freqs)
        p_, m_ = _pitch_candidates(P, freqs, sr, n_fft)
        pitches.append(p_)
        mags.append(m_)
        if need_hpss:
            mask = _hpss_masks(S_ctx, lo, hi, mode=hpss)
            harmonic.add(D_ctx[lo:hi] * mask, f0, f1)
            del mask
        del D_ctx
        if extended:
            peak[:, f0:f1], valley[:, f0:f1] = _contrast_peaks(S, freqs, sr)
            flatness[f0:f1] = _flatness(P)
        if single:
            kept_power = P
        del S_ctx, S

    tuning = _tuning_from_candidates(np.concatenate(pitches), np.concatenate(mags))
    chroma_fb = chroma_filterbank(sr=sr, n_fft=n_fft, tuning=tuning)
    chroma = np.empty((12, T), dtype=np.float32)
    for f0, f1 in blocks:
        P = kept_power if single else np.square(np.abs(stft_frames(y_pad, f0, f1, n_fft=n_fft, hop_length=hop)))
        chroma[:, f0:f1] = _chroma_frames(P, chroma_fb)
    del kept_power

    rms_ = _rms_frames(y_pad, T, n_fft, hop)
    del y_pad
    zcr = _zcr(y, T, n_fft, hop)
    mel_db = power_to_db(mel)
    del mel
    mfccs = (mel_db.T @ _dct_basis(N_MFCC, N_MELS).T).T
    bpm = tempo(onset_envelope=_onset_from_db(mel_db, n_fft=n_fft, hop=hop), sr=sr, hop_length=hop)
    h_mean, h_var, p_mean, p_var = harmonic.result()

    values: list[float] = []
    for arr in (chroma, rms_, centroid, bandwidth, rolloff, zcr):
        values.extend(_mean_var(arr))
    values += [h_mean, h_var, p_mean, p_var, bpm]
    mm, mv = _mean_var(mfccs, axis=1)
    values += [v for pair in zip(mm, mv, strict=True) for v in pair]
    names = FEATURE_COLUMNS
    if extended:
        contrast = power_to_db(peak) - power_to_db(valley)
        cm, cv = _mean_var(contrast, axis=1)
        values += [v for pair in zip(cm, cv, strict=True) for v in pair]
        values.extend(_mean_var(flatness))
        tm, tv = _mean_var(tonnetz(chroma=chroma), axis=1)
        values += [v for pair in zip(tm, tv, strict=True) for v in pair]
        dm, dv = _mean_var(delta(mfccs), axis=1)
        values += [v for pair in zip(dm, dv, strict=True) for v in pair]
        lm, lv = _mean_var(mel_db, axis=1)
        values += [v for pair in zip(lm, lv, strict=True) for v in pair]
        names = _all_columns(extended=True)
    if len(values) != len(names):  # pragma: no cover - guards the column bookkeeping
        raise FeatureError(f"internal error: {len(values)} values for {len(names)} columns")
    out = {k: float(v) for k, v in zip(names, values, strict=True)}
    return out if columns is None else {c: out[c] for c in columns}


def extract_segments(
    y: np.ndarray, *, sr: int = SR, segment_seconds: float = 3.0, overlap: float = 0.0, extended: bool = False,
    hpss: str = "fast",
) -> list[dict[str, float]]:
    """Features of consecutive windows of ``segment_seconds`` (Kaggle's 3 s table: 10 per 30 s clip).

    Each window is analysed on its own, as if it were a file; an incomplete tail is dropped."""
    from genrekit.audio import windows

    _check_segment(segment_seconds, sr)
    y = _check_audio(y)
    return [extract(w.samples, sr=sr, extended=extended, hpss=hpss) for w in windows(y, sr=sr, seconds=segment_seconds, overlap=overlap)]


def _check_segment(segment_seconds: float, sr: int) -> None:
    if not segment_seconds or segment_seconds * sr < N_FFT:
        raise FeatureError(
            f"segment length {segment_seconds} s is shorter than one analysis frame ({N_FFT / sr:.3f} s at {sr} Hz); "
            "use --segment 3 (Kaggle's 3-second table) or longer"
        )


def analyse_file(
    path: str | os.PathLike, *, segment_seconds: float | None = None, extended: bool = False, sr: int = SR,
    hpss: str = "fast",
) -> list[dict[str, object]]:
    """A file's feature values, JSON-ready for caching:
    ``[{"segment": index or None, "length": samples, "values": [...]}, ...]``.

    Without ``segment_seconds``: one entry for the whole file (Kaggle's 30 s table), analysed block by
    block. With it: one entry per window, the file decoded window by window (any length). It depends
    only on the file's bytes and the settings, not on its name, so identical files share one cache
    entry; ``genrekit.run.features`` names the rows (``extract_file``)."""
    from genrekit import audio

    p = Path(path)
    if segment_seconds is None:
        seconds = audio.info(p).duration
        if seconds > MAX_WHOLE_FILE_SECONDS:
            raise FeatureError(
                f"{p}: {seconds / 60:.1f} min is too long for one row per file (at most "
                f"{MAX_WHOLE_FILE_SECONDS / 60:g} min, to bound memory); use --segment 30 for one row per "
                "30 s window, which streams files of any length"
            )
        y = audio.load(p, sr=sr)
        return [{"segment": None, "length": int(y.size), "values": list(extract(y, sr=sr, extended=extended, hpss=hpss).values())}]
    _check_segment(segment_seconds, sr)
    out: list[dict[str, object]] = []
    for w in audio.iter_windows(p, sr=sr, seconds=segment_seconds, pad=False):
        out.append({"segment": int(w.index), "length": int(w.samples.size),
                    "values": list(extract(w.samples, sr=sr, extended=extended, hpss=hpss).values())})
    if not out:
        dur = audio.info(p).duration
        raise FeatureError(f"{p}: {dur:.2f} s is shorter than one {segment_seconds:g} s segment; use a shorter --segment")
    return out


@dataclass(frozen=True)
class FeatureSettings:
    """What a file's feature values depend on besides its bytes: one row per file or per window of
    ``segment_seconds``, the extended columns, the HPSS mode and the sample rate.

    :meth:`cache_settings` is the one definition of the feature cache's settings, so every path that
    computes features (``genrekit features``, training on audio, Ray) finds the others' results."""

    segment_seconds: float | None = None
    extended: bool = False
    hpss: str = "fast"
    sr: int = SR

    def __post_init__(self) -> None:
        if self.hpss not in HPSS_MODES:
            raise FeatureError(f"hpss must be one of {', '.join(HPSS_MODES)}, got {self.hpss!r}")

    def cache_settings(self) -> dict[str, object]:
        """The settings a cached analysis is filed under (with :data:`FEATURES_VERSION`)."""
        return {"features": FEATURES_VERSION, "sr": self.sr, "segment_seconds": self.segment_seconds,
                "extended": bool(self.extended), "hpss": self.hpss}

    def columns(self) -> list[str]:
        """The feature columns these settings produce, in order."""
        return columns(extended=self.extended)

    def analyse(self, path: str | os.PathLike) -> list[dict[str, object]]:
        """:func:`analyse_file` with these settings (picklable, so process pools and Ray can run it)."""
        return analyse_file(path, segment_seconds=self.segment_seconds, extended=self.extended, sr=self.sr,
                            hpss=self.hpss)
