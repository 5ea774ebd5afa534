"""Kaggle GTZAN images to mn04's input (issue 23, item 5, "way 2"), so the 876 GTZAN tracks that exist
only as images can be heard by mn04 as well as by musicnn.

The method is musicnn's (:mod:`genrekit.networks.musicnn.image`, docs/transfer.md): the image's levels
back to dB below the clip's peak, its pixel columns placed on the frames they show and interpolated in
dB onto mn04's 10 ms frames, its 128 slaney bands interpolated in dB (linearly in slaney mel) onto
mn04's 513 FFT bins, the absolute level from Kaggle's ``rms_mean`` (``image_peak_power``), then mn04's
own pre-emphasis response, Kaldi filterbank and log. The image stops at 11.025 kHz; mn04 hears to
15 kHz: :data:`DEFAULT_FILL` says what fills the gap, and why. Figures: docs/ears.md, "Image-derived
mn04 input" (``scripts/mn04_image_check.py``): unlike musicnn's, this approximation is poor (feature
cosine 0.33 against the audio, genre agreement 17 %), because mn04 hears detail finer in time than an
image column (~90 ms).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import numpy as np

from genrekit.dsp import hz_to_mel, mel_frequencies
from genrekit.errors import FeatureError, GenrekitError
from genrekit.networks.mn04.frontend import frame_count, mel_banks, window
from genrekit.networks.mn04.model import DEFAULT_MAX_WINDOWS, Embedding, run, window_starts
from genrekit.networks.mn04.spec import (
    HOP_LENGTH,
    LOG_OFFSET,
    LOG_SCALE,
    LOG_SHIFT,
    N_CLASSES,
    N_FEATURES,
    N_FFT,
    PREEMPHASIS,
    SR,
    WINDOW_SAMPLES,
)
from genrekit.networks.musicnn.image import (
    IMAGE_FLOOR_DB,
    IMAGE_HOP,
    IMAGE_N_FFT,
    IMAGE_N_MELS,
    IMAGE_SR,
    IMAGE_TYPICAL_PEAK,
    check_positive,
    image_db_on_frames,
    image_levels,
    image_peak_power,
    linear_interp_matrix,
)

CLIP_SAMPLES = 661500  # 30 s at 22.05 kHz: the default clip length (Kaggle's `length` column is better)
FILLS: tuple[str, ...] = ("silence", "floor", "slope")
DEFAULT_FILL = "silence"  # best feature cosine on the 123 shared pairs (0.330 vs floor 0.305; docs/ears.md)
SLOPE_BANDS = 16  # "slope": the top image bands whose dB-per-mel line is continued upwards
IMAGE_NYQUIST = IMAGE_SR / 2.0
MN04_IMAGE_MAPPING_VERSION = 1  # bump when the mapping or its constants change (caches key on it)


def _name(levels_or_path: Any, name: str | None) -> str:
    if name is not None:
        return str(name)
    return str(levels_or_path) if isinstance(levels_or_path, (str, os.PathLike)) else "image levels"


def _levels(levels_or_path: Any, name: str) -> np.ndarray:
    """musicnn's reading of the image (the same pixels), its errors prefixed with the input's name."""
    try:
        return image_levels(levels_or_path)
    except GenrekitError as exc:
        if isinstance(levels_or_path, (str, os.PathLike)):
            raise  # invert_image's errors already name the file
        raise type(exc)(f"{name}: {exc}") from None


@lru_cache(maxsize=1)
def _bin_hz() -> np.ndarray:
    return np.arange(N_FFT // 2 + 1, dtype=np.float64) * (SR / N_FFT)


@lru_cache(maxsize=1)
def image_to_mn04_bins() -> np.ndarray:
    """``(513, 128)``: dB at mn04's FFT bins below 11.025 kHz, linear in slaney mel between the image's
    band centres (held beyond the first and last centre); rows of bins above 11.025 kHz are zero
    (the fill sets them)."""
    centres = hz_to_mel(mel_frequencies(IMAGE_N_MELS + 2, fmin=0.0, fmax=IMAGE_NYQUIST)[1:-1])
    w = linear_interp_matrix(hz_to_mel(_bin_hz()), centres)
    w[_bin_hz() > IMAGE_NYQUIST] = 0.0
    return w


@lru_cache(maxsize=1)
def power_scale() -> np.ndarray:
    """``(513,)``: mn04's ``|X_k|^2`` per unit of the image's slaney mel power, for a smooth (noise-like)
    spectrum, times the pre-emphasis filter's power response.

    A slaney band's weights sum to ``1 / df`` (``df = 22050 / 2048`` Hz), so the image's mel power is the
    2048-point ``|X|^2`` times ``2048 / 22050``; for the same sound the expected ``|X|^2`` of a window
    ``w`` at rate ``sr`` is the spectral density times ``sr * sum(w^2) / 2``, so mn04's (800-sample Hann
    at 32 kHz) is the image's times ``32000 sum(w_mn04^2) / (22050 sum(w_hann2048^2))``. mn04 then
    filters by ``1 - 0.97 z^-1``: ``|H|^2 = 1 + 0.97^2 - 1.94 cos(2 pi f / 32000)``."""
    w_img = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(IMAGE_N_FFT) / IMAGE_N_FFT)  # librosa's periodic Hann
    w_mn = window("float64")
    scale = (IMAGE_SR / IMAGE_N_FFT) * SR * float(w_mn @ w_mn) / (IMAGE_SR * float(w_img @ w_img))
    pre = 1.0 + PREEMPHASIS**2 - 2.0 * PREEMPHASIS * np.cos(2.0 * np.pi * _bin_hz() / SR)
    return scale * pre


def _fill_top(db_f: np.ndarray, db_bands: np.ndarray, fill: str, floor_db: float) -> np.ndarray:
    """``db_f`` (frames, 513) with the bins above 11.025 kHz set by ``fill`` (-inf dB: no power)."""
    top = _bin_hz() > IMAGE_NYQUIST
    if fill == "silence":
        db_f[:, top] = -np.inf
    elif fill == "floor":
        db_f[:, top] = floor_db
    else:  # "slope": each frame's least-squares dB-per-mel line over the top bands, continued, never below the floor
        centres = hz_to_mel(mel_frequencies(IMAGE_N_MELS + 2, fmin=0.0, fmax=IMAGE_NYQUIST)[1:-1])[-SLOPE_BANDS:]
        x = centres - centres.mean()
        y = db_bands[:, -SLOPE_BANDS:]
        slope = (y - y.mean(axis=1, keepdims=True)) @ x / float(x @ x)
        line = y.mean(axis=1, keepdims=True) + slope[:, None] * (hz_to_mel(_bin_hz()[top])[None, :] - centres.mean())
        db_f[:, top] = np.maximum(np.minimum(line, 0.0), floor_db)
    return db_f


def mn04_input_from_image(
    levels_or_path: Any,
    *,
    rms_mean: float | None = None,
    peak_power: float | None = None,
    n_samples: int = CLIP_SAMPLES,
    fill: str = DEFAULT_FILL,
    floor_db: float = IMAGE_FLOOR_DB,
    name: str | None = None,
) -> np.ndarray:
    """mn04's log-mel input ``(128, frames)`` float32 estimated from a Kaggle GTZAN image: the layout
    :func:`genrekit.networks.mn04.frontend.logmel` gives for the clip's audio at 32 kHz
    (``frames = 1 + (round(n_samples * 32000 / 22050) - 1) // 320``).

    ``levels_or_path``: a Kaggle ``images_original`` PNG, or normalised levels ``(128, 336)`` (its pixel
    columns) or ``(128, 1 + n_samples // 512)`` (one per 22.05 kHz STFT frame). ``n_samples``: the
    clip's length at 22.05 kHz (Kaggle's ``length``). The level comes from ``peak_power`` (the clip's
    peak slaney mel power), else ``rms_mean`` (:func:`~genrekit.networks.musicnn.image.image_peak_power`),
    else a typical GTZAN peak. Cells at the image's 80 dB clip stand for ``floor_db`` (musicnn's measured
    floor). Steps: :func:`image_to_mn04_bins`, :func:`power_scale`, mn04's Kaldi banks, ``(ln(mel +
    1e-5) + 4.5) / 5``.

    ``fill`` (bins above 11.025 kHz, which the image does not hold): ``"silence"`` (no power, the
    default), ``"floor"`` (``floor_db`` below the peak) or ``"slope"`` (each frame's dB-per-mel slope
    over the top 16 bands continued upwards, clamped to [floor, peak]). Silence is what GTZAN's own
    audio holds there (22.05 kHz files have nothing above 11.025 kHz, so mn04 hears the same gap in
    the audio), and it gave the best feature cosine against the audio (docs/ears.md, median over the
    123 pairs: silence 0.330, floor 0.305, slope 0.303; on GTZAN's images the top bands sit at the
    80 dB clip, so "slope" ends at the floor).

    Far from the audio, and not for want of a better fill or level: mn04 keys on what happens within
    90 ms, which an image column averages away (the audio's own mel blurred over 9 frames reaches only
    0.404, and its genre accuracy falls from 0.71 to 0.21; docs/ears.md)."""
    label = _name(levels_or_path, name)
    levels = _levels(levels_or_path, label)
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < IMAGE_N_FFT:
        raise FeatureError(f"{label}: n_samples must be the clip's length at 22.05 kHz (>= {IMAGE_N_FFT}), "
                           f"got {n_samples!r}")
    if fill not in FILLS:
        raise FeatureError(f"{label}: unknown fill {fill!r} for the bands above 11.025 kHz; choose one of "
                           f"{', '.join(FILLS)}")
    if isinstance(floor_db, bool) or not isinstance(floor_db, (int, float, np.number)) or not np.isfinite(floor_db):
        raise FeatureError(f"{label}: floor_db must be a finite number of dB, got {floor_db!r}")
    try:
        if peak_power is not None:
            peak = check_positive(peak_power, "peak_power")
        elif rms_mean is not None:
            peak = image_peak_power(levels, rms_mean)
        else:
            peak = IMAGE_TYPICAL_PEAK
    except GenrekitError as exc:
        raise type(exc)(f"{label}: {exc}") from None
    frames = frame_count(int(round(int(n_samples) * SR / IMAGE_SR)))
    t = np.arange(frames) * (HOP_LENGTH / SR) * (IMAGE_SR / IMAGE_HOP)  # mn04 frame centres in image frames
    db_t = image_db_on_frames(levels, t, n_samples=n_samples, floor_db=float(floor_db), label=label)  # (frames, 128)
    db_f = _fill_top(db_t @ image_to_mn04_bins().T, db_t, fill, float(floor_db))  # (frames, 513)
    power = (peak * power_scale()) * 10.0 ** (db_f / 20.0)  # 20*log10 of power, as the image was drawn
    mel = mel_banks("float64") @ power.T  # (128, frames)
    out = (np.log(mel + LOG_OFFSET) + LOG_SHIFT) / LOG_SCALE
    return np.ascontiguousarray(out, dtype=np.float32)


def image_mel_windows(logmel: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``(windows, 1, 128, frames)``: the 10 s windows starting at ``starts`` (32 kHz samples) cut from a
    whole clip's mel, as :func:`genrekit.networks.mn04.model.mel_windows` cuts audio (nearest frame)."""
    width = frame_count(WINDOW_SAMPLES)
    if logmel.shape[1] <= width:
        return logmel[None, None]
    first = np.clip(np.round(np.asarray(starts) / HOP_LENGTH).astype(np.int64), 0, logmel.shape[1] - width)
    return np.stack([logmel[:, f:f + width] for f in first])[:, None]


def embed_image(
    levels_or_path: Any,
    *,
    rms_mean: float | None = None,
    peak_power: float | None = None,
    n_samples: int = CLIP_SAMPLES,
    max_windows: int = DEFAULT_MAX_WINDOWS,
    precision: str = "float32",
    threads: int = 1,
    fill: str = DEFAULT_FILL,
    name: str | None = None,
) -> Embedding:
    """:func:`genrekit.networks.mn04.model.embed` of a Kaggle GTZAN image through
    :func:`mn04_input_from_image`: the same windows (``window_starts`` of the clip's 32 kHz length) and
    the same :class:`~genrekit.networks.mn04.model.Embedding` (per-window features and logits)."""
    logmel = mn04_input_from_image(levels_or_path, rms_mean=rms_mean, peak_power=peak_power, n_samples=n_samples,
                                   fill=fill, name=name)
    starts = window_starts(int(round(int(n_samples) * SR / IMAGE_SR)), max_windows=max_windows)
    feats, logits = run(image_mel_windows(logmel, starts), precision=precision, threads=threads)
    assert feats.shape == (starts.size, N_FEATURES) and logits.shape == (starts.size, N_CLASSES)
    return Embedding(feats, logits, starts)
