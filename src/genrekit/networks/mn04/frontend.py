"""mn04's input in numpy: pre-emphasis, STFT, Kaldi mel, log (EfficientAT ``AugmentMelSTFT``, eval mode).

Not :mod:`genrekit.dsp`'s STFT and mel: the network was trained on a different analysis (an 800-sample
symmetric Hann window inside 1024-sample frames, Kaldi's mel scale ``1127 ln(1 + f/700)`` and
triangles, no slaney normalisation), and only the same numbers give the original's outputs. float64
reproduces the original's mel within 2e-5 on music; float32 (the default, what the network runs on)
within 1e-3 (tests/test_mn04.py).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from genrekit.audio import resample, validate
from genrekit.errors import FeatureError
from genrekit.networks.mn04.spec import (
    FMAX,
    FMIN,
    HOP_LENGTH,
    LOG_OFFSET,
    LOG_SCALE,
    LOG_SHIFT,
    MIN_SAMPLES,
    N_FFT,
    N_MELS,
    PREEMPHASIS,
    SR,
    WIN_LENGTH,
)

DTYPES = (np.float32, np.float64)


def _dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"the mn04 front end computes in float32 or float64, got {dt}")
    return dt


@cache
def window(dtype: str = "float64") -> np.ndarray:
    """torch.stft's window: a symmetric Hann of :data:`WIN_LENGTH` zero-padded to :data:`N_FFT`, centred."""
    n = np.arange(WIN_LENGTH, dtype=np.float64)
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / (WIN_LENGTH - 1))
    left = (N_FFT - WIN_LENGTH) // 2
    w = np.zeros(N_FFT, np.float64)
    w[left:left + WIN_LENGTH] = hann
    w = w.astype(dtype)
    w.flags.writeable = False
    return w


def kaldi_mel(f: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


@cache
def mel_banks(dtype: str = "float64") -> np.ndarray:
    """``(128, 513)`` Kaldi triangles (torchaudio ``get_mel_banks(128, 1024, 32000, 0, 15000)``, no VTLN
    warp) over the 512 FFT bins below Nyquist, plus a zero column for the Nyquist bin."""
    n_bins = N_FFT // 2
    lo, hi = kaldi_mel(FMIN), kaldi_mel(FMAX)
    delta = (hi - lo) / (N_MELS + 1)
    b = np.arange(N_MELS, dtype=np.float64)[:, None]
    left, centre, right = lo + b * delta, lo + (b + 1.0) * delta, lo + (b + 2.0) * delta
    mel = kaldi_mel(SR / N_FFT * np.arange(n_bins, dtype=np.float64))[None, :]
    up = (mel - left) / (centre - left)
    down = (right - mel) / (right - centre)
    banks = np.zeros((N_MELS, n_bins + 1), np.float64)
    banks[:, :n_bins] = np.maximum(0.0, np.minimum(up, down))
    banks = banks.astype(dtype)
    banks.flags.writeable = False
    return banks


def frame_count(n_samples: int) -> int:
    """Frames of mn04's centred STFT of ``n_samples`` samples (pre-emphasis drops one): 1000 for 10 s."""
    return 1 + (int(n_samples) - 1) // HOP_LENGTH


def check_wave(y: np.ndarray, *, name: str = "audio") -> np.ndarray:
    """Mono, finite and at least :data:`MIN_SAMPLES` long, or a :class:`~genrekit.errors.AudioError` naming ``name``."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise FeatureError(f"{name}: mn04 expects mono 1-D audio, got shape {y.shape} (mix down first)")
    if y.dtype.kind not in "fiu":
        raise FeatureError(f"{name}: audio samples must be numbers, got dtype {y.dtype}")
    return validate(y, name=name, min_samples=MIN_SAMPLES)


def to_32k(y: np.ndarray, sr: int, *, name: str = "audio") -> np.ndarray:
    """The checked waveform as float32 at 32 kHz (soxr HQ, as :func:`genrekit.audio.resample`)."""
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"{name}: sample rate must be a positive integer, got {sr!r}")
    y = check_wave(y, name=name)
    if int(sr) != SR:
        y = check_wave(resample(y, orig_sr=int(sr), target_sr=SR), name=f"{name} (resampled to 32 kHz)")
    return np.ascontiguousarray(y, dtype=np.float32)


def logmel(y: np.ndarray, *, dtype=np.float32, name: str = "audio") -> np.ndarray:
    """``(128, frames)`` network input of a 32 kHz mono waveform, computed in ``dtype``.

    ``frames = 1 + (len(y) - 1) // 320``. The caller resamples (:func:`to_32k`); the rate is not checked
    here because a bare array carries none."""
    dt = _dtype(dtype)
    y = check_wave(y, name=name).astype(dt, copy=False)
    x = y[1:] - dt.type(PREEMPHASIS) * y[:-1]
    x = np.pad(x, N_FFT // 2, mode="reflect")
    n = frame_count(y.size)
    step = x.strides[0]
    frames = np.lib.stride_tricks.as_strided(x, shape=(n, N_FFT), strides=(HOP_LENGTH * step, step),
                                             writeable=False)
    import scipy.fft  # deferred as in genrekit.dsp: importing the package stays cheap

    spec = scipy.fft.rfft(frames * window(dt.name), axis=1)
    power = spec.real * spec.real + spec.imag * spec.imag  # (frames, 513)
    mel = mel_banks(dt.name) @ power.T  # (128, frames)
    return ((np.log(mel + dt.type(LOG_OFFSET)) + dt.type(LOG_SHIFT)) / dt.type(LOG_SCALE)).astype(dt, copy=False)
