"""Log-mel front end (numpy on the CPU, torch on an accelerator) and Kaggle image inversion onto the same grid.

One representation feeds every deep model: a matrix of *normalised levels* in [0, 1], shape
``[n_mels, frames]``, computed exactly the way the Kaggle ``images_original`` PNGs were drawn:
``librosa.amplitude_to_db(melspectrogram(y), ref=np.max)`` (mel *power* passed to ``amplitude_to_db``,
so 20*log10 of power, clipped 80 dB below the peak), then min-max scaled, which is what matplotlib's
colour normalisation did to the image. A PNG inverted with :func:`invert_image` and a waveform run
through :func:`logmel` therefore land on the same grid with the same meaning, so a model trained on
images classifies new audio.

The images sample the time axis coarsely (336 pixels for 1293 frames); :func:`to_image_grid` applies the
same sampling to an audio matrix, so models trained on images can be fed audio that looks like their
training data (recorded as ``"time_resolution": "image"`` in a model's input description).

librosa is never imported here: the mel filterbank and the decibels are :mod:`genrekit.dsp`'s, the
same as the GTZAN features use (tests compare them with librosa).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from genrekit import dsp
from genrekit.dsp import HOP_LENGTH, N_FFT, N_MELS, SR, amplitude_to_db, hz_to_mel, mel_filterbank, mel_to_hz
from genrekit.errors import DatasetError, FeatureError

__all__ = [
    "CLIP_FRAMES", "HOP_LENGTH", "IMAGE_COLS", "IMAGE_ROWS", "IMAGE_SIZE", "N_FFT", "N_MELS", "NORMALISATION",
    "SLICE_SECONDS", "SR", "TOP_DB", "hz_to_mel", "image_levels_to_grid", "input_description", "invert_image",
    "invert_image_cached", "logmel", "logmel_for_input", "mel_filterbank", "mel_to_hz", "melspectrogram",
    "power_to_levels", "slice_frames", "slice_starts", "slices", "to_image_grid",
]

TOP_DB = 80.0
SLICE_SECONDS = 3.0
CLIP_FRAMES = 1293  # frames of a 30 s GTZAN clip (661794 samples) at hop 512 with centring

# Kaggle images_original geometry (432x288 px, default matplotlib figure, axes off).
IMAGE_SIZE = (432, 288)  # width, height
IMAGE_ROWS = (35, 253)  # plotted area, half-open: 218 rows, top row = highest mel bin
IMAGE_COLS = (54, 390)  # plotted area, half-open: 336 columns = 30 s
IMAGE_INVERSION_VERSION = 1  # bump when invert_image changes, to invalidate caches

NORMALISATION = {"type": "db_minmax", "ref": "max", "top_db": TOP_DB, "db": "amplitude_to_db(mel power)"}


# ------------------------------------------------------------------------------------------ front end
def _torch_device(device: str | None):
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def melspectrogram(
    y: np.ndarray, *, sr: int = SR, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH, n_mels: int = N_MELS,
    fmin: float = 0.0, fmax: float | None = None, pad_mode: str = "constant", device: str | None = "cpu",
) -> np.ndarray:
    """Mel *power* spectrogram ``[n_mels, 1 + len(y) // hop_length]``.

    Same conventions as ``librosa.feature.melspectrogram``: periodic Hann window, centred frames
    (``pad_mode`` padding of n_fft // 2 each side), power 2, slaney filters. On the CPU (``device``
    "cpu" or None) it is :func:`genrekit.dsp.melspectrogram` in numpy (the one mel, which the GTZAN
    features run with reflect padding), so predicting never imports torch (2-3.5 s of a cold start);
    any other device (``"auto"``, ``"cuda"``) runs ``torch.stft`` there. The two agree
    to float32 rounding (tests/test_spectrogram.py).
    """
    if device in (None, "cpu"):
        return dsp.melspectrogram(y, sr=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, fmin=fmin, fmax=fmax,
                                  pad_mode=pad_mode)
    y = dsp.mono_waveform(y, what="melspectrogram")
    import torch

    fb = mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    dev = _torch_device(device)
    x = torch.from_numpy(dsp.pad_centred(y, n_fft=n_fft, pad_mode=pad_mode)).to(dev)
    with torch.no_grad():
        spec = torch.stft(
            x, n_fft=n_fft, hop_length=hop_length, window=torch.hann_window(n_fft, periodic=True, device=dev),
            center=False, return_complex=True,
        )
        mel = torch.tensor(fb, device=dev) @ (spec.real**2 + spec.imag**2)
    return mel.cpu().numpy().astype(np.float32)


def power_to_levels(mel_power: np.ndarray, *, top_db: float = TOP_DB, amin: float = 1e-5) -> np.ndarray:
    """Mel power -> normalised levels in [0, 1], exactly as the Kaggle images were coloured.

    ``amplitude_to_db(P, ref=max, top_db)`` = 20*log10(P / max P), floored at ``-top_db``; then the
    matrix is min-max scaled like matplotlib's colour normalisation. A constant (e.g. silent) input
    gives all zeros rather than dividing by zero.
    """
    p = np.abs(np.asarray(mel_power, dtype=np.float64))
    db = amplitude_to_db(p, ref=float(p.max(initial=0.0)), amin=amin, top_db=top_db)
    lo, hi = float(db.min(initial=0.0)), float(db.max(initial=0.0))
    if hi - lo <= 1e-9:
        return np.zeros(p.shape, dtype=np.float32)
    return ((db - lo) / (hi - lo)).astype(np.float32)


def logmel(
    y: np.ndarray, *, sr: int = SR, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH, n_mels: int = N_MELS,
    top_db: float = TOP_DB, time_resolution: str = "full", device: str | None = "cpu",
) -> np.ndarray:
    """Waveform -> normalised log-mel levels ``[n_mels, frames]`` (the deep models' input).

    ``time_resolution="image"`` resamples the time axis the way a Kaggle image does (see
    :func:`to_image_grid`), for models trained on images. Normalisation (ref = max) is over the
    whole ``y``: pass 30 s clips to reproduce GTZAN conditions.
    """
    levels = power_to_levels(
        melspectrogram(y, sr=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, device=device), top_db=top_db
    )
    if time_resolution == "image":
        return to_image_grid(levels)
    if time_resolution != "full":
        raise FeatureError(f"unknown time_resolution {time_resolution!r} (use 'full' or 'image')")
    return levels


def input_description(
    *, sr: int = SR, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH, n_mels: int = N_MELS,
    slice_seconds: float = SLICE_SECONDS, slice_overlap: float = 0.0, top_db: float = TOP_DB,
    time_resolution: str = "full",
) -> dict:
    """The ``input`` block of a deep model's metadata: everything needed to recompute its input."""
    return {
        "type": "logmel", "sr": int(sr), "n_fft": int(n_fft), "hop_length": int(hop_length),
        "n_mels": int(n_mels), "slice_seconds": float(slice_seconds), "slice_overlap": float(slice_overlap),
        "predict_overlap": float(slice_overlap),
        "slice_frames": slice_frames(seconds=slice_seconds, sr=sr, hop_length=hop_length),
        "normalisation": {**NORMALISATION, "top_db": float(top_db), "scope": "whole input (30 s clip)"},
        "time_resolution": time_resolution,
        "function": "genrekit.spectrogram.logmel_for_input",
    }


def logmel_for_input(y: np.ndarray, input_desc: dict, *, device: str | None = "cpu") -> np.ndarray:
    """Compute the log-mel matrix a model with metadata ``input`` expects (used by predict)."""
    if input_desc.get("type") != "logmel":
        raise FeatureError(f"model input type {input_desc.get('type')!r} is not 'logmel'")
    return logmel(
        y, sr=int(input_desc.get("sr", SR)), n_fft=int(input_desc.get("n_fft", N_FFT)),
        hop_length=int(input_desc.get("hop_length", HOP_LENGTH)), n_mels=int(input_desc.get("n_mels", N_MELS)),
        top_db=float(input_desc.get("normalisation", {}).get("top_db", TOP_DB)),
        time_resolution=input_desc.get("time_resolution", "full"), device=device,
    )


# -------------------------------------------------------------------------------------------- slicing
def slice_frames(*, seconds: float = SLICE_SECONDS, sr: int = SR, hop_length: int = HOP_LENGTH) -> int:
    """Frames in a slice of ``seconds``: what librosa gives for that many samples (3 s -> 130)."""
    if seconds <= 0:
        raise FeatureError(f"slice length must be positive, got {seconds} s")
    return 1 + int(round(seconds * sr)) // hop_length


def slice_starts(n_frames: int, *, width: int, overlap: float = 0.0) -> np.ndarray:
    """Start frames of fixed-width slices; a matrix shorter than one slice gives one (padded) slice."""
    if not 0.0 <= overlap < 1.0:
        raise FeatureError(f"slice overlap must be in [0, 1), got {overlap}")
    step = max(1, int(round(width * (1.0 - overlap))))
    if n_frames <= width:
        return np.zeros(1, dtype=np.int64)
    return np.arange(0, n_frames - width + 1, step, dtype=np.int64)


def slices(
    levels: np.ndarray, *, seconds: float = SLICE_SECONDS, overlap: float = 0.0, sr: int = SR,
    hop_length: int = HOP_LENGTH,
) -> np.ndarray:
    """Cut ``[n_mels, frames]`` into ``[k, n_mels, width]`` slices (zero-padded if shorter than one)."""
    levels = np.asarray(levels, dtype=np.float32)
    if levels.ndim != 2 or levels.shape[1] == 0:
        raise FeatureError(f"slices expects a [n_mels, frames] matrix, got shape {levels.shape}")
    width = slice_frames(seconds=seconds, sr=sr, hop_length=hop_length)
    if levels.shape[1] < width:
        levels = np.pad(levels, ((0, 0), (0, width - levels.shape[1])))
    starts = slice_starts(levels.shape[1], width=width, overlap=overlap)
    idx = starts[:, None] + np.arange(width)[None, :]
    return np.ascontiguousarray(levels[:, idx].transpose(1, 0, 2))


# ------------------------------------------------------------------------------------ image inversion
@lru_cache(maxsize=1)
def _magma_table() -> np.ndarray:
    from matplotlib import colormaps

    return (np.asarray(colormaps["magma"].colors, dtype=np.float64) * 255.0).astype(np.float32)  # [256, 3]


def _nearest_level(rgb: np.ndarray) -> np.ndarray:
    """Each RGB pixel -> index/255 of the nearest magma colour (exact matches are the rule)."""
    table = _magma_table()
    flat = rgb.reshape(-1, 3).astype(np.float32)
    out = np.empty(flat.shape[0], dtype=np.float32)
    tn = (table**2).sum(1)
    for i in range(0, flat.shape[0], 16384):
        block = flat[i : i + 16384]
        d = tn[None, :] - 2.0 * block @ table.T  # |b|^2 is constant per row
        out[i : i + 16384] = np.argmin(d, axis=1)
    return (out / 255.0).reshape(rgb.shape[:-1])


def _pixel_frames(n_cols: int, n_frames: int) -> np.ndarray:
    """Frame (fractional centre) that each image column shows: pcolormesh samples at pixel centres."""
    return (np.arange(n_cols) + 0.5) * n_frames / n_cols - 0.5


def _row_weights(n_rows: int, n_mels: int) -> np.ndarray:
    """[n_mels, n_rows]: average of the rows whose centre falls inside each mel bin (low bins at bottom)."""
    centres = n_mels - (np.arange(n_rows) + 0.5) * n_mels / n_rows  # in bin units, row 0 at the top
    bins = np.clip(np.floor(centres).astype(int), 0, n_mels - 1)
    w = np.zeros((n_mels, n_rows), dtype=np.float64)
    w[bins, np.arange(n_rows)] = 1.0
    empty = w.sum(1) == 0  # only when rows < bins: use the nearest row
    for b in np.flatnonzero(empty):
        w[b, np.argmin(np.abs(centres - (b + 0.5)))] = 1.0
    return (w / w.sum(1, keepdims=True)).astype(np.float32)


def _interp_matrix(src_pos: np.ndarray, n_out: int) -> np.ndarray:
    """[len(src_pos), n_out] linear interpolation from samples at ``src_pos`` to frames 0..n_out-1."""
    t = np.arange(n_out, dtype=np.float64)
    j = np.clip(np.searchsorted(src_pos, t) - 1, 0, len(src_pos) - 2)
    x0, x1 = src_pos[j], src_pos[j + 1]
    a = np.clip((t - x0) / (x1 - x0), 0.0, 1.0)
    w = np.zeros((len(src_pos), n_out), dtype=np.float32)
    w[j, np.arange(n_out)] = 1.0 - a
    w[j + 1, np.arange(n_out)] += a
    return w


def image_levels_to_grid(pixels: np.ndarray, *, n_mels: int = N_MELS, n_frames: int = CLIP_FRAMES) -> np.ndarray:
    """Plotted-area levels ``[rows, cols]`` (top row = highest bin) -> ``[n_mels, n_frames]`` grid."""
    rows, cols = pixels.shape
    return (_row_weights(rows, n_mels) @ pixels @ _interp_matrix(_pixel_frames(cols, n_frames), n_frames)).astype(
        np.float32
    )


def to_image_grid(levels: np.ndarray, *, n_cols: int = IMAGE_COLS[1] - IMAGE_COLS[0]) -> np.ndarray:
    """Give an audio matrix the time resolution of a Kaggle image: sample at pixel centres, interpolate back.

    The frames-per-pixel ratio of a 30 s clip (1293 / 336) is kept for any length.
    """
    levels = np.asarray(levels, dtype=np.float32)
    n_frames = levels.shape[1]
    n_px = max(2, int(round(n_frames * n_cols / CLIP_FRAMES)))
    take, j, a = _image_grid_plan(n_px, n_frames)
    sampled = levels[:, take]
    return (sampled[:, j] * (1.0 - a) + sampled[:, j + 1] * a).astype(np.float32)


@lru_cache(maxsize=16)
def _image_grid_plan(n_px: int, n_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which frames the pixels sample, and the linear interpolation back (left index, weight): the
    same numbers as :func:`_interp_matrix`, as a gather instead of a dense matrix product (20x faster)."""
    pos = _pixel_frames(n_px, n_frames)
    take = np.clip(np.round(pos).astype(int), 0, n_frames - 1)
    t = np.arange(n_frames, dtype=np.float64)
    j = np.clip(np.searchsorted(pos, t) - 1, 0, len(pos) - 2)
    a = np.clip((t - pos[j]) / (pos[j + 1] - pos[j]), 0.0, 1.0).astype(np.float32)
    return take, j, a


def invert_image(
    png_path: str | os.PathLike, *, n_mels: int = N_MELS, n_frames: int = CLIP_FRAMES,
    rows: tuple[int, int] = IMAGE_ROWS, cols: tuple[int, int] = IMAGE_COLS,
) -> np.ndarray:
    """Kaggle ``images_original`` PNG -> normalised log-mel levels ``[n_mels, n_frames]`` on the audio grid.

    Inverts the magma colour map (nearest table colour) over the plotted area, averages the pixel rows
    of each mel bin and interpolates the 336 pixel columns onto the 1293 frames of a 30 s clip.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(png_path)
    if not path.is_file():
        raise DatasetError(f"{path}: image not found")
    try:
        with Image.open(path) as im:
            im.load()
            rgb = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable image ({exc}); re-download the Kaggle images") from None
    h, w = rgb.shape[:2]
    if (w, h) != IMAGE_SIZE:
        raise DatasetError(
            f"{path}: image is {w}x{h}, expected a Kaggle images_original PNG of "
            f"{IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} (other renderings cannot be inverted)"
        )
    area = rgb[rows[0] : rows[1], cols[0] : cols[1]]
    return image_levels_to_grid(_nearest_level(area), n_mels=n_mels, n_frames=n_frames)


def invert_image_cached(
    png_path: str | os.PathLike, *, n_mels: int = N_MELS, n_frames: int = CLIP_FRAMES,
    cache: str | os.PathLike | None = None,
) -> np.ndarray:
    """:func:`invert_image`, cached as ``<cache>/<content digest>-v<version>-<mels>x<frames>.npy`` (default
    ``cache``: ``<genrekit cache>/images``), so re-runs skip the decoding and a renamed PNG still hits."""
    from genrekit import store

    path = Path(png_path)
    try:
        digest = store.file_digest(path)[:32]
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read image ({exc})") from None
    folder = Path(cache) if cache is not None else store.cache_root() / "images"
    target = folder / f"{digest}-v{IMAGE_INVERSION_VERSION}-{n_mels}x{n_frames}.npy"
    if target.is_file():
        try:
            arr = np.load(target, allow_pickle=False)
            if arr.shape == (n_mels, n_frames):
                return arr
        except (OSError, ValueError):
            pass  # damaged cache entry: recompute
    arr = invert_image(path, n_mels=n_mels, n_frames=n_frames)
    try:
        with store.atomic_writer(target, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
    except OSError:
        pass  # a read-only cache only costs speed
    return arr
