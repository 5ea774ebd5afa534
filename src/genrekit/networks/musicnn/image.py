"""Kaggle GTZAN images to musicnn's input: the image mapping, so the 876 GTZAN tracks that exist only as
images can train heads on musicnn embeddings (issue 17; docs/transfer.md).

The Kaggle images_original PNGs (see genrekit.spectrogram): 20*log10 of slaney mel power (128 bands,
22.05 kHz, n_fft 2048, hop 512) relative to the clip's peak, clipped 80 dB down, one pixel column per
~3.86 frames. The constants below were measured on the GTZAN clips that have both audio and an image
by scripts/image_to_musicnn.py (subcommands `align` and `calibrate`; docs/transfer.md).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import numpy as np

from genrekit.dsp import fft_frequencies, frame_count, hz_to_mel, mel_frequencies
from genrekit.errors import FeatureError
from genrekit.networks.musicnn.frontend import check_hop, mel_basis, patch_starts, patches, select_patches
from genrekit.networks.musicnn.model import Embedding, check_patches_per_block, run_patches
from genrekit.networks.musicnn.spec import (
    DEFAULT_BATCH,
    DEFAULT_MODEL,
    HOP_LENGTH,
    N_FFT,
    PATCH_FRAMES,
    PATCH_HOP,
    SR,
    check_model,
)

IMAGE_SR = 22050
IMAGE_N_FFT = 2048
IMAGE_HOP = 512
IMAGE_N_MELS = 128
IMAGE_TOP_DB = 80.0
IMAGE_COLUMNS = 336  # pixel columns of the plotted area = the whole clip
IMAGE_CLIP_SAMPLES = 661794  # a 30 s GTZAN clip at 22.05 kHz (Kaggle's `length`)
IMAGE_FIRST_FRAME = 3.35  # STFT frame the first pixel column shows (0.078 s): not 1.4, the pixel centre
IMAGE_EXTRA_FRAMES = 4.64  # columns step by (frames + 4.64) / 336 (all 123 pairs: 4.66, IQR 4.61-4.69)
IMAGE_FLOOR_DB = -105.0  # what a pixel at the 80 dB clip stands for (the clipped cells' typical level)
IMAGE_TYPICAL_PEAK = 1121.0  # median peak mel power of the 999 GTZAN images (from rms_mean): used without it
# log-mel offset per musicnn band, audio minus image after the mapping, mean over the 48 paired clips
# of the fault-filtered TRAIN side (so valid and test clips never calibrate it)
IMAGE_BAND_OFFSET = (
    0.29, 0.06, 0.01, -0.01, 0.02, -0.02, 0.04, 0.03, 0.01, 0.05, 0.00, 0.04, 0.10, 0.03, 0.06, 0.13,
    0.09, 0.13, 0.05, 0.04, 0.10, 0.07, 0.05, 0.12, 0.09, 0.12, 0.10, 0.06, 0.06, 0.07, 0.08, 0.13,
    0.07, 0.06, 0.10, 0.09, 0.04, 0.09, 0.05, 0.05, 0.07, 0.05, 0.11, 0.10, 0.03, 0.10, 0.04, 0.02,
    0.09, 0.06, 0.08, 0.08, 0.05, 0.06, 0.07, 0.02, 0.08, 0.05, 0.07, 0.06, 0.03, 0.03, 0.07, 0.01,
    0.06, 0.06, 0.05, 0.05, 0.05, 0.06, 0.05, 0.04, 0.04, 0.06, 0.05, 0.04, 0.03, 0.02, 0.02, -0.00,
    0.00, 0.02, 0.03, 0.02, 0.01, -0.01, -0.03, -0.02, -0.02, -0.01, -0.02, -0.02, -0.04, -0.05, -0.14, -0.53,
)
IMAGE_MAPPING_VERSION = 1  # bump when the mapping or its constants change (caches key on it)


def image_levels(levels_or_path: Any) -> np.ndarray:
    """A Kaggle PNG's 336 pixel columns, or checked normalised levels ``(128, columns)`` in [0, 1] (shared
    with the mn04 image mapping, which reads images the same way)."""
    if isinstance(levels_or_path, (str, os.PathLike)):
        from genrekit.spectrogram import invert_image

        return invert_image(levels_or_path, n_frames=IMAGE_COLUMNS)  # the pixel columns as they are
    levels = np.asarray(levels_or_path)
    if levels.ndim != 2 or levels.shape[0] != IMAGE_N_MELS or levels.shape[1] < 2:
        raise FeatureError(f"image levels must be ({IMAGE_N_MELS}, columns >= 2), got shape {levels.shape}")
    if not np.issubdtype(levels.dtype, np.number) or np.iscomplexobj(levels):
        raise FeatureError(f"image levels must be real numbers, got dtype {levels.dtype}")
    levels = levels.astype(np.float64)
    if not np.isfinite(levels).all():
        raise FeatureError("image levels contain NaN or infinity")
    if levels.min() < -1e-6 or levels.max() > 1 + 1e-6:
        raise FeatureError(f"image levels must lie in [0, 1] (normalised dB), got {levels.min():.3g} to {levels.max():.3g}")
    return np.clip(levels, 0.0, 1.0)


def check_positive(value: Any, name: str) -> float:
    """``value`` as a positive finite float, else a FeatureError naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise FeatureError(f"{name} must be a positive number, got {value!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise FeatureError(f"{name} must be a positive finite number, got {value!r}")
    return v


@lru_cache(maxsize=1)
def _image_band_widths() -> np.ndarray:
    """Hz between neighbouring centres of the image's 128 slaney bands: each band's share of the spectrum."""
    f = mel_frequencies(IMAGE_N_MELS + 2, fmin=0.0, fmax=IMAGE_SR / 2.0)
    return (f[2:] - f[:-2]) / 2.0


def image_peak_power(levels_or_path: Any, rms_mean: float, *, top_db: float = IMAGE_TOP_DB) -> float:
    """The clip's peak mel power (what the image is relative to) from its mean frame RMS (Kaggle's
    ``rms_mean``: librosa.feature.rms, 2048-sample frames), by Parseval's theorem, no fitted constant.

    With slaney filters the power of each band times its share of the spectrum in Hz sums to the
    frame's one-sided FFT energy, ``3 n_fft^2 / 16`` times its mean square under a Hann window, so
    ``rms(t) = sqrt(16 peak E(t) / (3 n_fft^2))`` with ``E(t)`` the band sum of the image's relative
    powers; averaging over the columns gives ``peak``. On the 123 paired GTZAN clips this is within
    0.5 dB (std) of the audio's true peak, mean error 0.04 dB (docs/transfer.md)."""
    rms_mean = check_positive(rms_mean, "rms_mean")
    levels = image_levels(levels_or_path)
    rel = 10.0 ** ((levels - 1.0) * (top_db / 20.0))  # 20*log10 of power: 80 dB = 4 decades
    frame_rms_rel = np.sqrt(_image_band_widths() @ rel).mean()
    return float(3.0 * IMAGE_N_FFT**2 / 16.0 * (rms_mean / frame_rms_rel) ** 2)


@lru_cache(maxsize=1)
def _image_to_fft_bins() -> np.ndarray:
    """``(257, 128)``: dB at musicnn's FFT bin frequencies, linear in mel between the image's band centres."""
    centres = hz_to_mel(mel_frequencies(IMAGE_N_MELS + 2, fmin=0.0, fmax=IMAGE_SR / 2.0)[1:-1])
    target = hz_to_mel(fft_frequencies(sr=SR, n_fft=N_FFT))
    return linear_interp_matrix(target, centres)


def linear_interp_matrix(x: np.ndarray, xp: np.ndarray) -> np.ndarray:
    """``(len(x), len(xp))`` weights of linear interpolation at ``x`` from samples at increasing ``xp``,
    held constant beyond the ends."""
    j = np.clip(np.searchsorted(xp, x) - 1, 0, len(xp) - 2)
    a = np.clip((x - xp[j]) / (xp[j + 1] - xp[j]), 0.0, 1.0)
    w = np.zeros((len(x), len(xp)))
    w[np.arange(len(x)), j] = 1.0 - a
    w[np.arange(len(x)), j + 1] += a
    return w


def image_db_on_frames(levels: np.ndarray, frame_times: np.ndarray, *, n_samples: int, top_db: float = IMAGE_TOP_DB,
                       floor_db: float | None = IMAGE_FLOOR_DB, label: str | None = None) -> np.ndarray:
    """``(len(frame_times), 128)``: an image's levels as dB below its peak (cells at the clip: ``floor_db``),
    its columns placed on the 22.05 kHz STFT frames they show (first column frame 3.35, step ``(frames +
    4.64) / 336``, measured; or one column per frame) and interpolated in dB onto ``frame_times`` (in those
    frames): the time side of every network's image mapping (musicnn here, mn04 in ``networks.mn04.image``)."""
    n22 = 1 + int(n_samples) // IMAGE_HOP
    n_cols = levels.shape[1]
    if n_cols == n22:
        pos = np.arange(n22, dtype=np.float64)
    elif n_cols == IMAGE_COLUMNS:
        pos = IMAGE_FIRST_FRAME + np.arange(n_cols) * (n22 + IMAGE_EXTRA_FRAMES) / n_cols
    else:
        raise FeatureError(f"{label + ': ' if label else ''}image levels have {n_cols} columns: expected "
                           f"{IMAGE_COLUMNS} (the Kaggle image's pixel columns) or {n22} (one per frame of a "
                           f"{n_samples}-sample clip)")
    db = (levels - 1.0) * top_db
    if floor_db is not None:
        db = np.where(levels <= 0.5 / 255.0, float(floor_db), db)
    return linear_interp_matrix(np.asarray(frame_times, dtype=np.float64), pos) @ db.T


def musicnn_input_from_image(
    levels_or_path: Any,
    *,
    rms_mean: float | None = None,
    peak_power: float | None = None,
    n_samples: int = IMAGE_CLIP_SAMPLES,
    floor_db: float | None = IMAGE_FLOOR_DB,
    band_offset: bool = True,
    top_db: float = IMAGE_TOP_DB,
) -> np.ndarray:
    """musicnn's input ``(frames, 96)`` estimated from a Kaggle GTZAN image, so the 876 GTZAN tracks
    that exist only as images can train heads on musicnn embeddings (issue 17).

    ``levels_or_path``: a Kaggle ``images_original`` PNG, or normalised levels ``(128, 336)`` (its
    pixel columns, as ``spectrogram.invert_image(png, n_frames=336)`` gives them) or ``(128, 1 +
    n_samples // 512)`` (one per STFT frame, e.g. ``spectrogram.power_to_levels`` of audio).
    Steps: levels -> dB below the peak (``floor_db`` for cells at the clip); columns placed on the
    frames they show (first column frame 3.35, step ``(frames + 4.64) / 336``, measured) and
    interpolated in dB onto musicnn's 16 ms frames; bands interpolated in dB, linearly in mel, onto
    musicnn's 257 FFT bins at 16 kHz and summed by its own 96 slaney filters; the absolute level set by
    ``peak_power`` or, from ``rms_mean``, by :func:`image_peak_power` (else a typical GTZAN peak),
    times ``(512/2048)^2``, the mel power ratio of the two FFT sizes for the same sound; then
    musicnn's float16 cast and ``log10(10000 x + 1)``, plus the per-band calibration
    :data:`IMAGE_BAND_OFFSET` (``band_offset=False`` leaves it out).

    What the image lost stays lost: transients under ~90 ms and everything 80 dB below the peak, so
    the embeddings are close to, not equal to, the audio's (docs/transfer.md has the figures).
    """
    levels = image_levels(levels_or_path)
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < IMAGE_N_FFT:
        raise FeatureError(f"n_samples must be the clip's length at 22.05 kHz (>= {IMAGE_N_FFT}), got {n_samples!r}")
    top_db = check_positive(top_db, "top_db")
    if floor_db is not None and (isinstance(floor_db, bool) or not isinstance(floor_db, (int, float, np.number))
                                 or not np.isfinite(floor_db)):
        raise FeatureError(f"floor_db must be a finite number of dB (or None), got {floor_db!r}")
    if not isinstance(band_offset, (bool, np.bool_)):
        raise FeatureError(f"band_offset must be True or False, got {band_offset!r}")
    if peak_power is not None:
        peak = check_positive(peak_power, "peak_power")
    elif rms_mean is not None:
        peak = image_peak_power(levels, rms_mean, top_db=top_db)
    else:
        peak = IMAGE_TYPICAL_PEAK
    n16 = int(round(int(n_samples) * SR / IMAGE_SR))
    frames = frame_count(n16, hop_length=HOP_LENGTH)
    t = np.arange(frames) * (HOP_LENGTH / SR) * (IMAGE_SR / IMAGE_HOP)  # musicnn frame times in image frames
    db_t = image_db_on_frames(levels, t, n_samples=n_samples, top_db=top_db, floor_db=floor_db)  # (frames, 128)
    db_f = db_t @ _image_to_fft_bins().T  # (frames, 257)
    power = (peak * (SR * N_FFT / IMAGE_N_FFT**2)) * 10.0 ** (db_f / 20.0)  # |X_k|^2 at 16 kHz, n_fft 512
    mel = np.minimum(power.astype(np.float32) @ mel_basis(), np.float32(65504.0))  # float16's largest
    out = np.log10(np.float32(10000.0) * mel.astype(np.float16).astype(np.float32) + np.float32(1.0))
    if band_offset:
        out = np.maximum(out + np.asarray(IMAGE_BAND_OFFSET, np.float32), np.float32(0.0))
    return np.ascontiguousarray(out, dtype=np.float32)


def embed_image(
    levels_or_path: Any,
    *,
    rms_mean: float | None = None,
    peak_power: float | None = None,
    n_samples: int = IMAGE_CLIP_SAMPLES,
    model: str = DEFAULT_MODEL,
    hop: int = PATCH_HOP,
    batch: int = DEFAULT_BATCH,
    patches_per_block: int | None = None,
    backend: str = "torch",
    threads: int | None = None,
) -> Embedding:
    """:func:`embed` of a Kaggle GTZAN image through :func:`musicnn_input_from_image` (same arguments),
    so an image is embedded exactly as a model embeds audio (``patches_per_block``, ``backend``)."""
    check_model(model)
    per_block = check_patches_per_block(patches_per_block, check_hop(hop))
    logmel = musicnn_input_from_image(levels_or_path, rms_mean=rms_mean, peak_power=peak_power, n_samples=n_samples)
    x, starts = patches(logmel, hop=hop), patch_starts(logmel.shape[0], hop=hop)
    if per_block is not None:
        keep = select_patches(starts, per_block=per_block, hop=hop)
        x, starts = x[keep], starts[keep]
    taggram, pen, pooled = run_patches(x, model=model, batch=batch, backend=backend, threads=threads)
    return Embedding(model, taggram, pen, pooled, starts * (HOP_LENGTH / SR), n_samples / IMAGE_SR,
                     padded=logmel.shape[0] < PATCH_FRAMES)
