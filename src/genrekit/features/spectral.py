"""Spectral features in librosa's shape (``librosa/feature/spectral.py``): keyword arguments, a waveform
``y=`` or a precomputed ``S=``, arrays shaped ``(..., n_freq, n_frames)``.

Each public feature has a frame-level kernel beside it (``spectral_shape``, ``flatness_frames``,
``contrast_peaks``, ``rms_frames``, ``zcr_frames``, ``pitch_candidates``, ``chroma_frames``) that works
on one time-major block of an STFT: :func:`genrekit.features.extract` runs those on the one STFT it
shares between every feature, block by block, with the same numbers as the whole-signal functions.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from genrekit import dsp
from genrekit.dsp import (
    HOP_LENGTH,
    N_FFT,
    N_MELS,
    SR,
    fft_frequencies,
    frame_count,
    mel_filterbank,
    mel_frames,
    power_to_db,
)
from genrekit.errors import FeatureError
from genrekit.features.filters import chroma_filterbank, dct_basis

__all__ = [
    "N_CONTRAST_BANDS", "N_MFCC", "check_waveform", "chroma_frames", "chroma_stft", "contrast_peaks", "delta",
    "estimate_tuning", "flatness_frames", "magnitude", "melspectrogram", "mfcc", "pitch_candidates", "rms",
    "rms_frames", "spectral_bandwidth", "spectral_centroid", "spectral_contrast", "spectral_flatness",
    "spectral_rolloff", "spectral_shape", "stft", "tonnetz", "tuning_from_candidates", "zcr_frames",
    "zero_crossing_rate",
]

N_MFCC = 20
N_CONTRAST_BANDS = 6
_TINY32 = np.finfo(np.float32).tiny


def check_waveform(y: np.ndarray, *, n_fft: int = N_FFT) -> np.ndarray:
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
    return dsp.stft(check_waveform(y, n_fft=n_fft), n_fft=n_fft, hop_length=hop_length, pad_mode=pad_mode)


def magnitude(y, S, *, n_fft, hop_length, power: float = 1.0) -> np.ndarray:
    """``S`` as given, else ``|stft(y)| ** power``: the ``y=`` / ``S=`` convention of every feature."""
    if S is None:
        if y is None:
            raise FeatureError("give either a waveform y= or a spectrogram S=")
        S = np.abs(stft(y, n_fft=n_fft, hop_length=hop_length))
        if power != 1.0:
            S = S**power
    return np.asarray(S)


def spectral_centroid(
    *, y: np.ndarray | None = None, sr: float = SR, S: np.ndarray | None = None, n_fft: int = N_FFT,
    hop_length: int = HOP_LENGTH,
) -> np.ndarray:
    """Magnitude-weighted mean frequency per frame (Hz), ``(frames,)``."""
    S = magnitude(y, S, n_fft=n_fft, hop_length=hop_length)
    return spectral_shape(S.T, fft_frequencies(sr=sr, n_fft=2 * (S.shape[-2] - 1)))[0]


def spectral_bandwidth(
    *, y: np.ndarray | None = None, sr: float = SR, S: np.ndarray | None = None, n_fft: int = N_FFT,
    hop_length: int = HOP_LENGTH,
) -> np.ndarray:
    """Magnitude-weighted standard deviation of frequency around the centroid (p=2), ``(frames,)``."""
    S = magnitude(y, S, n_fft=n_fft, hop_length=hop_length)
    return spectral_shape(S.T, fft_frequencies(sr=sr, n_fft=2 * (S.shape[-2] - 1)))[1]


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


def spectral_shape(S_tf: np.ndarray, freqs: np.ndarray, roll_percent: float = 0.85):
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
    S = magnitude(y, S, n_fft=n_fft, hop_length=hop_length)
    return spectral_shape(S.T, fft_frequencies(sr=sr, n_fft=2 * (S.shape[-2] - 1)), roll_percent)[2]


def spectral_flatness(
    *, y: np.ndarray | None = None, S: np.ndarray | None = None, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH,
    amin: float = 1e-10, power: float = 2.0,
) -> np.ndarray:
    """Geometric over arithmetic mean of the power spectrum per frame (1 = white noise, 0 = a tone)."""
    S = magnitude(y, S, n_fft=n_fft, hop_length=hop_length)
    return flatness_frames(np.ascontiguousarray(S.T) ** power, amin)


def flatness_frames(P_tf: np.ndarray, amin: float = 1e-10) -> np.ndarray:
    """Spectral flatness of each row of a time-major power spectrogram (what :func:`extract` shares)."""
    p = np.maximum(amin, P_tf)
    return np.exp(np.mean(np.log(p), axis=1)) / np.mean(p, axis=1)


def spectral_contrast(
    *, y: np.ndarray | None = None, sr: float = SR, S: np.ndarray | None = None, n_fft: int = N_FFT,
    hop_length: int = HOP_LENGTH, fmin: float = 200.0, n_bands: int = N_CONTRAST_BANDS, quantile: float = 0.02,
) -> np.ndarray:
    """Peak-minus-valley level (dB) in octave sub-bands, ``(n_bands + 1, frames)`` (librosa's definition)."""
    S = magnitude(y, S, n_fft=n_fft, hop_length=hop_length)
    peak, valley = contrast_peaks(np.ascontiguousarray(S.T), fft_frequencies(sr=sr, n_fft=2 * (S.shape[-2] - 1)), sr, fmin, n_bands, quantile)
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


def contrast_peaks(S_tf, freqs, sr, fmin=200.0, n_bands=N_CONTRAST_BANDS, quantile=0.02):
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
        y = check_waveform(y, n_fft=frame_length)
        y_pad = np.pad(y, frame_length // 2, mode="reflect")
        return rms_frames(y_pad, frame_count(y.size, hop_length=hop_length), frame_length, hop_length)
    if S is None:
        raise FeatureError("give either a waveform y= or a spectrogram S=")
    x = np.abs(np.asarray(S)) ** 2
    x[..., 0, :] *= 0.5
    if frame_length % 2 == 0:
        x[..., -1, :] *= 0.5
    return np.sqrt(2 * np.sum(x, axis=-2) / frame_length**2)


def rms_frames(y_pad: np.ndarray, n_frames: int, frame_length: int, hop: int) -> np.ndarray:
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
    y = check_waveform(y, n_fft=frame_length)
    return zcr_frames(y, frame_count(y.size, hop_length=hop_length), frame_length, hop_length)


def zcr_frames(y: np.ndarray, n_frames: int, frame_length: int, hop: int) -> np.ndarray:
    """Zero-crossing rate of ``n_frames`` centred frames of a checked waveform, without framing it."""
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
    """Mel power spectrogram ``(n_mels, frames)``; ``S`` is a power spectrogram if given.

    :func:`genrekit.dsp.melspectrogram` with reflect padding (librosa 0.7's, as every feature here): the
    same function as the log-mel front end's, which pads with zeros."""
    if S is None:
        if y is None:
            raise FeatureError("give either a waveform y= or a spectrogram S=")
        y = check_waveform(y, n_fft=n_fft)
        return dsp.melspectrogram(y, sr=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, pad_mode="reflect")
    S = np.asarray(S)
    return mel_frames(np.swapaxes(S, -1, -2), mel_filterbank(sr=sr, n_fft=2 * (S.shape[-2] - 1), n_mels=n_mels))


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
    return dct_basis(int(n_mfcc), S.shape[-2]) @ S


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


def pitch_candidates(P_tf: np.ndarray, freqs: np.ndarray, sr: float, n_fft: int,
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


def tuning_from_candidates(pitch: np.ndarray, mag: np.ndarray, *, resolution: float = 0.01, bins_per_octave: int = 12) -> float:
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
    P = magnitude(y, S, n_fft=n_fft, hop_length=hop_length, power=2.0)
    nf = 2 * (P.shape[-2] - 1)
    pitch, mag = pitch_candidates(np.ascontiguousarray(P.T), fft_frequencies(sr=sr, n_fft=nf), sr, nf)
    return tuning_from_candidates(pitch, mag)


def chroma_frames(P_tf: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """Chroma ``(n_chroma, frames)`` of a time-major power spectrogram, each frame scaled to max 1."""
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
    P = magnitude(y, S, n_fft=n_fft, hop_length=hop_length, power=2.0)
    nf = 2 * (P.shape[-2] - 1)
    P_tf = np.ascontiguousarray(P.T)
    if tuning is None:
        tuning = tuning_from_candidates(*pitch_candidates(P_tf, fft_frequencies(sr=sr, n_fft=nf), sr, nf))
    return chroma_frames(P_tf, chroma_filterbank(sr=sr, n_fft=nf, n_chroma=n_chroma, tuning=tuning))


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
