"""Signal-processing primitives shared by every front end: the analysis constants, the STFT, the mel
scale and filterbank, and decibels.

GTZAN features (``features``), the log-mel front end (``spectrogram``) and augmentation (``augment``)
must agree on these to the bit: a model trained on Kaggle's images is fed log-mels of new audio, and
Kaggle's feature table was made with librosa's definitions. So they live here once, in numpy/scipy
(librosa's definitions rebuilt without librosa or numba: importing genrekit stays cheap, and tests
compare every function with librosa). Nothing here imports genrekit above ``errors``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np

from genrekit.errors import FeatureError

# librosa's defaults, which made Kaggle's GTZAN tables and images: 22050 Hz, 2048-sample frames
# (93 ms), hop 512 (23 ms), 128 mel bands.
SR = 22050
N_FFT = 2048
HOP_LENGTH = 512
N_MELS = 128

__all__ = [
    "HOP_LENGTH", "N_FFT", "N_MELS", "SR",
    "amplitude_to_db", "fft_frequencies", "frame_count", "hann_window", "hz_to_mel", "mel_filterbank",
    "mel_frames", "mel_frequencies", "mel_to_hz", "melspectrogram", "mono_waveform", "pad_centred", "power_to_db",
    "rms_db", "stft", "stft_frames",
]


# ============================================================================================ frames


def frame_count(n_samples: int, *, hop_length: int = HOP_LENGTH) -> int:
    """Frames of a centred STFT of ``n_samples`` samples: ``1 + n_samples // hop_length`` (librosa's)."""
    return 1 + int(n_samples) // int(hop_length)


def fft_frequencies(*, sr: float = SR, n_fft: int = N_FFT) -> np.ndarray:
    """Centre frequency (Hz) of each of the ``1 + n_fft // 2`` rfft bins."""
    return np.fft.rfftfreq(n=n_fft, d=1.0 / sr)


@lru_cache(maxsize=16)
def _hann(n: int, dtype: str) -> np.ndarray:
    w = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(dtype)
    w.flags.writeable = False
    return w


def hann_window(n: int, *, dtype: type | str = np.float64) -> np.ndarray:
    """Periodic Hann window (scipy.signal.get_window('hann', n), as librosa uses), cached and read-only.

    Computed in float64 and then cast, so the float32 window is the float64 one rounded once."""
    return _hann(int(n), np.dtype(dtype).name)


def stft_frames(y_padded: np.ndarray, start: int, stop: int, *, n_fft: int = N_FFT,
                hop_length: int = HOP_LENGTH) -> np.ndarray:
    """rfft of frames ``start..stop`` of an already padded float32 signal, time-major
    ``(stop - start, 1 + n_fft // 2)`` complex64.

    Frames are strided views (no copy of the signal), so a long input can be transformed block by
    block with exactly the numbers of one whole transform; this is what :func:`stft` runs."""
    import scipy.fft  # here, not at the top: importing genrekit.audio need not pay scipy's start-up

    step = y_padded.strides[0]
    frames = np.lib.stride_tricks.as_strided(
        y_padded[start * hop_length :], shape=(stop - start, n_fft), strides=(hop_length * step, step),
        writeable=False,
    )
    return scipy.fft.rfft(frames * hann_window(n_fft, dtype=np.float32), axis=1)


def stft(y: np.ndarray, *, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH, pad_mode: str = "reflect") -> np.ndarray:
    """Centred Hann STFT ``(1 + n_fft // 2, frames)`` complex64 of a mono waveform.

    ``pad_mode="reflect"`` is librosa 0.7's default, which made Kaggle's GTZAN tables (librosa >= 0.10
    pads with zeros: pass ``pad_mode="constant"`` for that)."""
    y = np.ascontiguousarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise FeatureError(f"stft needs a mono 1-D waveform, got shape {y.shape}; average the channels first")
    y_pad = np.pad(y, n_fft // 2, mode=pad_mode)
    return stft_frames(y_pad, 0, frame_count(y.size, hop_length=hop_length), n_fft=n_fft, hop_length=hop_length).T


# ============================================================================================ mel scale

# Slaney's mel scale (librosa's default): linear below 1 kHz (200/3 Hz per mel), logarithmic above.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(frequencies: np.ndarray | float, *, htk: bool = False) -> np.ndarray:
    """Hz to mels on Slaney's scale (``htk=False``, librosa's default) or HTK's ``2595 log10(1 + f/700)``."""
    f = np.asanyarray(frequencies, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    return np.where(f >= _MIN_LOG_HZ, _MIN_LOG_MEL + np.log(np.maximum(f, 1e-10) / _MIN_LOG_HZ) / _LOGSTEP, f / _F_SP)


def mel_to_hz(mels: np.ndarray | float, *, htk: bool = False) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    m = np.asanyarray(mels, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    return np.where(m >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), _F_SP * m)


def mel_frequencies(n_mels: int = N_MELS, *, fmin: float = 0.0, fmax: float = SR / 2, htk: bool = False) -> np.ndarray:
    """``n_mels`` frequencies (Hz) evenly spaced on the mel scale from ``fmin`` to ``fmax`` (librosa's)."""
    return mel_to_hz(np.linspace(hz_to_mel(fmin, htk=htk), hz_to_mel(fmax, htk=htk), int(n_mels)), htk=htk)


@lru_cache(maxsize=32)
def _mel_filterbank(sr: float, n_fft: int, n_mels: int, fmin: float, fmax: float, htk: bool) -> np.ndarray:
    fftfreqs = fft_frequencies(sr=sr, n_fft=n_fft)
    edges = mel_frequencies(n_mels + 2, fmin=fmin, fmax=fmax, htk=htk)
    fdiff = np.diff(edges)
    ramps = np.subtract.outer(edges, fftfreqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2 : n_mels + 2] - edges[:n_mels]))[:, None]  # Slaney: each filter has area 1
    out = weights.astype(np.float32)
    out.flags.writeable = False
    return out


def mel_filterbank(
    *, sr: float = SR, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = 0.0, fmax: float | None = None,
    htk: bool = False,
) -> np.ndarray:
    """Triangular mel filters ``(n_mels, 1 + n_fft // 2)`` float32, Slaney-normalised: librosa.filters.mel.

    Cached and read-only (it is rebuilt for every clip otherwise): copy it before writing to it."""
    if n_mels < 1 or n_fft < 2 or sr <= 0:
        raise FeatureError(f"invalid mel filterbank parameters: sr={sr}, n_fft={n_fft}, n_mels={n_mels}")
    fmax = float(sr) / 2 if fmax is None else float(fmax)
    return _mel_filterbank(float(sr), int(n_fft), int(n_mels), float(fmin), fmax, bool(htk))


# ============================================================================================ mel spectrogram


def mono_waveform(y: np.ndarray, *, what: str = "melspectrogram") -> np.ndarray:
    """``y`` as contiguous float32 mono samples, refused (FeatureError naming ``what``) when it is not 1-D,
    holds no samples or holds NaN/inf: an STFT would otherwise return garbage without a word."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise FeatureError(f"{what} expects mono 1-D audio, got shape {y.shape}")
    if y.size == 0:
        raise FeatureError(f"{what}: the audio holds no samples")
    if not np.all(np.isfinite(y)):
        raise FeatureError(f"{what}: the audio contains NaN or infinity")
    return y


def pad_centred(y: np.ndarray, *, n_fft: int = N_FFT, pad_mode: str = "constant") -> np.ndarray:
    """``n_fft // 2`` samples of ``pad_mode`` padding on each side, so frame ``t`` is centred on sample
    ``t * hop``. Reflect padding needs more samples than the pad width; shorter inputs get zeros."""
    pad = n_fft // 2
    if pad_mode == "reflect" and y.size <= pad:
        pad_mode = "constant"
    return np.pad(y, pad, mode=pad_mode)


def mel_frames(power: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """Mel power ``(..., n_mels, frames)`` of a TIME-major power spectrogram ``(..., frames, bins)``.

    The one mel projection (the GTZAN features, the log-mel front end and :func:`melspectrogram` all
    run it): ``(frames, bins) @ (bins, mels)`` is the fast BLAS layout, and one order of summation
    keeps every caller's numbers equal to the bit."""
    return np.swapaxes(power @ fb.T, -1, -2)


def melspectrogram(
    y: np.ndarray, *, pad_mode: str, sr: float = SR, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH,
    n_mels: int = N_MELS, fmin: float = 0.0, fmax: float | None = None,
) -> np.ndarray:
    """Mel *power* spectrogram ``(n_mels, 1 + len(y) // hop_length)`` float32 of a mono waveform:
    centred periodic-Hann frames, power 2, Slaney filters (librosa.feature.melspectrogram).

    ``pad_mode`` has no default because genrekit needs both: ``"reflect"`` is librosa 0.7's, which made
    Kaggle's feature table (``genrekit.features``), ``"constant"`` (zeros) librosa >= 0.10's, which the
    log-mel front end uses (``genrekit.spectrogram``)."""
    y = mono_waveform(y, what="melspectrogram")
    fb = mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    spec = stft_frames(pad_centred(y, n_fft=n_fft, pad_mode=pad_mode), 0, frame_count(y.size, hop_length=hop_length),
                       n_fft=n_fft, hop_length=hop_length)  # (frames, bins)
    power = spec.real**2 + spec.imag**2
    return np.ascontiguousarray(mel_frames(power, fb), dtype=np.float32)


# ============================================================================================ decibels


def _reference(S: np.ndarray, ref: float | Callable[[np.ndarray], float]) -> float:
    return float(ref(S)) if callable(ref) else abs(float(ref))


def _floor(db: np.ndarray, top_db: float | None) -> np.ndarray:
    if top_db is None:
        return db
    if top_db < 0:
        raise FeatureError("top_db must be non-negative")
    return np.maximum(db, db.max(initial=-np.inf) - top_db)


def power_to_db(
    S: np.ndarray, *, ref: float | Callable[[np.ndarray], float] = 1.0, amin: float = 1e-10,
    top_db: float | None = 80.0,
) -> np.ndarray:
    """``10 log10(max(amin, S) / ref)``, floored ``top_db`` below the peak: librosa.power_to_db.

    ``ref`` is a number or a function of ``S`` (``np.max`` puts the peak at 0 dB). Keeps ``S``'s float
    dtype (float32 in, float32 out), as the feature pipeline relies on."""
    S = np.asarray(S)
    db = 10.0 * np.log10(np.maximum(amin, S))
    r = _reference(S, ref)
    if r != 1.0:
        db = db - 10.0 * np.log10(max(amin, r))
    return _floor(db, top_db)


def amplitude_to_db(
    S: np.ndarray, *, ref: float | Callable[[np.ndarray], float] = 1.0, amin: float = 1e-5,
    top_db: float | None = 80.0,
) -> np.ndarray:
    """``20 log10(max(amin, |S|) / ref)``, floored ``top_db`` below the peak.

    The value of librosa.amplitude_to_db, computed directly in 20 log10 (librosa squares and calls
    power_to_db: equal up to rounding). Kaggle's GTZAN images are this function applied to mel
    *power* with ``ref=np.max``, which is what ``spectrogram.power_to_levels`` reproduces."""
    magnitude = np.abs(np.asarray(S))
    r = _reference(magnitude, ref)
    db = 20.0 * np.log10(np.maximum(magnitude, amin)) - 20.0 * np.log10(max(r, amin))
    return _floor(db, top_db)


# A window quieter than this (RMS around its mean, in dB re a full-scale sample value of 1.0) is silent:
# predict's windows and the networks' patches alike (genrekit.networks.musicnn.analysis).
# -60 dBFS is the default noise floor of ffmpeg's silencedetect. It sits 14 dB under the quietest window
# of real music we measured (the quietest 3 s window of the 124 shared GTZAN clips and the 36 real-world
# mp3s is -46 dBFS; pianissimo classical is -40 to -42), so quiet music is never dropped, and far above
# digital silence (-inf) and 16-bit dither (about -100 dBFS). See docs/serve.md.
SILENCE_DB = -60.0


def rms_db(y: np.ndarray) -> float:
    """Level of a waveform in dBFS: 20 log10 of its RMS around the mean (a DC offset is not sound), -inf
    for digital silence or no samples. ``predict`` compares each window's level with its silence threshold."""
    y = np.asarray(y, dtype=np.float64)
    if y.size == 0:
        return -math.inf
    sd = float(np.std(y))
    return 20.0 * math.log10(sd) if sd > 0 else -math.inf
