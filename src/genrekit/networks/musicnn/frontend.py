"""musicnn's front end in numpy: waveform to the network's input, exactly as musicnn computes it.

16 kHz mono, STFT n_fft 512 / hop 256 (centred, zero padding), power, 96 slaney mel bands, the mel
power cast to float16 as musicnn's ``extractor.py`` does, ``log10(10000 * x + 1)`` in float32; patches
of 187 frames (3 s), one every 187 frames unless ``hop`` says otherwise; and the patch subsets a track
score needs (``k`` evenly spread patches of each 30 s block). Verified against the original by
``tests/test_embeddings.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache

import numpy as np

from genrekit.audio import resample, validate
from genrekit.dsp import fft_frequencies, frame_count, hann_window, mel_frequencies
from genrekit.errors import FeatureError, NonFiniteAudioError
from genrekit.networks.musicnn.spec import (
    BLOCK_FRAMES,
    BLOCK_PATCHES,
    HOP_LENGTH,
    N_FFT,
    N_MELS,
    PATCH_FRAMES,
    PATCH_HOP,
    SR,
)


@lru_cache(maxsize=1)
def mel_basis() -> np.ndarray:
    """librosa.filters.mel(sr=16000, n_fft=512, n_mels=96) to the bit, laid out ``(257, 96)``.

    The mel scale is dsp's; the rounding is librosa's own (triangles cast to float32 *before* the
    slaney area normalisation), not ``dsp.mel_filterbank``'s single rounding: the two differ by one
    float32 ulp in 144 of 24,672 weights, and musicnn's float16 cast of the mel power turns that
    into a few log-mel values off by 4e-4, which moves pooled outputs by ~1e-5 of their scale."""
    fftfreqs = fft_frequencies(sr=SR, n_fft=N_FFT)
    mel_f = mel_frequencies(N_MELS + 2, fmin=0.0, fmax=SR / 2.0)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    weights = np.maximum(0.0, np.minimum(-ramps[:-2] / fdiff[:-1, None], ramps[2:] / fdiff[1:, None]))
    weights = weights.astype(np.float32)
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]  # in place: float64 product, rounded to float32
    basis = np.ascontiguousarray(weights.T)
    basis.setflags(write=False)
    return basis


def logmel_frames(padded: np.ndarray, n: int) -> np.ndarray:
    """Log-mel of the first ``n`` frames of an already centre-padded signal.

    Follows librosa's dtypes: float64 FFT cast to complex64, float32 power and mel product, the mel
    power cast to float16 (musicnn's ``audio_rep.astype(np.float16)``), then the log in float32, which
    is what NumPy 1.x (musicnn pins ``numpy<1.17``) made of ``np.log10(10000 * audio_rep + 1)``.
    """
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[: (n - 1) * HOP_LENGTH + 1 : HOP_LENGTH]
    spec = np.fft.rfft(frames * hann_window(N_FFT), axis=-1).astype(np.complex64)  # float64 FFT
    power = np.abs(spec) ** 2
    # clipped at float16's largest value: the original turns louder bins (mel power > 65504, which
    # loud real recordings reach) into inf and its taggram into NaN; below that the cast is the same
    mel = np.minimum(power @ mel_basis(), np.float32(65504.0)).astype(np.float16).astype(np.float32)
    return np.log10(np.float32(10000.0) * mel + np.float32(1.0))


def check_wave(y: np.ndarray, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise FeatureError(f"{name}: musicnn expects mono 1-D audio, got shape {y.shape} (mix down first)")
    return validate(np.asarray(y, dtype=np.float32), name=name, min_samples=N_FFT)


def padded_16k(y: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
    """The checked waveform at 16 kHz, centre-padded for the STFT, and its number of frames."""
    y = check_wave(y, "audio")
    if sr != SR:
        y = check_wave(resample(y, orig_sr=sr, target_sr=SR), "audio (resampled to 16 kHz)")
    pad = N_FFT // 2
    return np.concatenate([np.zeros(pad, np.float32), y, np.zeros(pad, np.float32)]), frame_count(
        y.size, hop_length=HOP_LENGTH)


def musicnn_input(y: np.ndarray, *, sr: int = SR) -> np.ndarray:
    """Log-mel ``(frames, 96)`` float32 exactly as musicnn computes it, ``1 + len // 256`` frames at 16 kHz.

    Audio at another rate is resampled first (soxr HQ, as ``librosa.load`` and ``genrekit.audio.load``
    do). Raises :class:`~genrekit.errors.EmptyAudioError` below one FFT frame (512 samples at 16 kHz)
    and :class:`~genrekit.errors.NonFiniteAudioError` on NaN / inf.
    """
    return logmel_frames(*padded_16k(y, sr))


def iter_musicnn_input(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """:func:`musicnn_input` over consecutive 16 kHz blocks: yields ``(frames, 96)`` chunks whose
    concatenation equals ``musicnn_input(np.concatenate(blocks))``, holding one block at a time."""
    pad = N_FFT // 2
    buf = np.zeros(pad, np.float32)  # left centring pad
    for block in blocks:
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 1:
            raise FeatureError(f"musicnn expects mono 1-D audio blocks, got shape {block.shape}")
        if not np.isfinite(block).all():
            raise NonFiniteAudioError("audio contains NaN or infinite samples")
        buf = np.concatenate([buf, block])
        if buf.size >= N_FFT:
            n = 1 + (buf.size - N_FFT) // HOP_LENGTH
            yield logmel_frames(buf, n)
            buf = buf[n * HOP_LENGTH :]
    buf = np.concatenate([buf, np.zeros(pad, np.float32)])  # right centring pad
    if buf.size >= N_FFT:
        yield logmel_frames(buf, 1 + (buf.size - N_FFT) // HOP_LENGTH)


def check_hop(hop: int) -> int:
    if isinstance(hop, bool) or not isinstance(hop, (int, np.integer)) or hop < 1:
        raise ValueError(f"patch hop must be a positive number of frames, got {hop!r}")
    return int(hop)


def repeat_pad(logmel: np.ndarray, n_frames: int = PATCH_FRAMES) -> np.ndarray:
    """Tile a log-mel shorter than a patch until it fills one: musicnn's training-time ``repeat-pad``
    for short clips (its config.json), so a 1 s clip is heard as a loop rather than as silence."""
    if logmel.shape[0] == 0:
        raise FeatureError("cannot pad an empty log-mel")
    reps = -(-n_frames // logmel.shape[0])
    return np.concatenate([logmel] * reps)[:n_frames]


def patch_starts(n_frames: int, *, hop: int = PATCH_HOP) -> np.ndarray:
    """First frame of each full patch: ``0, hop, 2*hop, ...`` while a whole patch fits (extractor.py
    drops the incomplete tail); ``[0]`` when the input is shorter than a patch (it gets repeat-padded)."""
    hop = check_hop(hop)
    if n_frames < PATCH_FRAMES:
        return np.zeros(1, np.int64)
    return np.arange(0, n_frames - PATCH_FRAMES + 1, hop, dtype=np.int64)


def patches(logmel: np.ndarray, *, hop: int = PATCH_HOP) -> np.ndarray:
    """Cut a ``(frames, 96)`` log-mel into ``(n, 187, 96)`` patches starting every ``hop`` frames.

    ``hop=187`` (default) is musicnn's ``input_overlap=False``; ``hop=61`` is its ``input_overlap=1``
    (1 s). A log-mel shorter than one patch becomes one repeat-padded patch.
    """
    logmel = np.asarray(logmel, dtype=np.float32)
    if logmel.ndim != 2 or logmel.shape[1] != N_MELS:
        raise FeatureError(f"musicnn log-mel must be (frames, {N_MELS}), got shape {logmel.shape}")
    if logmel.shape[0] == 0:
        raise FeatureError("musicnn log-mel holds no frames")
    starts = patch_starts(logmel.shape[0], hop=hop)
    if logmel.shape[0] < PATCH_FRAMES:
        return repeat_pad(logmel)[None]
    view = np.lib.stride_tricks.sliding_window_view(logmel, PATCH_FRAMES, axis=0)  # (n, 96, 187)
    return np.ascontiguousarray(view[starts].transpose(0, 2, 1))


def iter_patches(chunks: Iterable[np.ndarray], *, hop: int = PATCH_HOP) -> Iterator[tuple[int, np.ndarray, bool]]:
    """Patches ``(start_frame, (187, 96) patch, padded)`` from consecutive log-mel chunks, the same as
    :func:`patches` on their concatenation, keeping under two patches of frames in memory."""
    hop = check_hop(hop)
    buf = np.zeros((0, N_MELS), np.float32)
    offset = 0  # absolute frame index of buf[0]
    next_start = 0
    emitted = False
    for chunk in chunks:
        buf = np.concatenate([buf, chunk])
        while next_start + PATCH_FRAMES <= offset + buf.shape[0]:
            i = next_start - offset
            yield next_start, buf[i : i + PATCH_FRAMES].copy(), False
            emitted = True
            next_start += hop
        keep_from = min(next_start - offset, buf.shape[0])
        buf, offset = buf[keep_from:], offset + keep_from
    if not emitted:
        if offset + buf.shape[0] == 0:
            raise FeatureError("musicnn log-mel holds no frames")
        yield 0, repeat_pad(buf), True



# ------------------------------------------------------------------------------------------ patch subsets

def block_selection(m: int, per_block: int, *, full: int = BLOCK_PATCHES) -> np.ndarray:
    """Indices (within a block of ``m`` patches) of the ``per_block`` evenly spread ones a full block
    of ``full`` patches keeps: the centres of ``per_block`` equal parts, ``[1, 5, 8]`` for 3 of 10,
    ``[1, 3, 6, 8]`` for 4. A shorter (tail) block keeps ``ceil(per_block * m / full)`` the same way,
    so every block, and every file, keeps at least one patch."""
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"a block holds a positive number of patches, got {m!r}")
    per_block = check_per_block(per_block, full=full)
    m = min(int(m), full)
    c = min(m, -(-per_block * m // full))
    return (2 * np.arange(c) + 1) * m // (2 * c)


def check_per_block(per_block: int, *, full: int = BLOCK_PATCHES) -> int:
    if isinstance(per_block, bool) or not isinstance(per_block, (int, np.integer)) or not 1 <= per_block <= full:
        raise ValueError(f"patches_per_block must be an integer from 1 to {full} (patches in a 30 s block), "
                         f"got {per_block!r}")
    return int(per_block)


def block_full(hop: int = PATCH_HOP) -> int:
    """Patch starts in a full 30 s block (:data:`BLOCK_FRAMES`) at ``hop`` frames: 10 at 187, 31 at 61."""
    return -(-BLOCK_FRAMES // int(hop))


def select_patches(starts: Sequence[int] | np.ndarray, *, per_block: int, hop: int = PATCH_HOP) -> np.ndarray:
    """Indices into ``starts`` (patch start frames, increasing, ``hop`` apart) of the patches a track
    score needs: patches are grouped in 30 s blocks by ``start // BLOCK_FRAMES`` and each block keeps
    ``per_block`` of every :func:`block_full` patches, evenly spread (:func:`block_selection`)."""
    starts = np.asarray(starts, dtype=np.int64)
    if starts.ndim != 1:
        raise FeatureError(f"patch starts must be 1-D, got shape {starts.shape}")
    full = block_full(hop)
    per_block = check_per_block(per_block, full=full)
    if starts.size == 0:
        return np.zeros(0, np.int64)
    blocks = starts // BLOCK_FRAMES
    cuts = np.flatnonzero(np.diff(blocks)) + 1
    out = [lo + block_selection(hi - lo, per_block, full=full)
           for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, starts.size], strict=True)]
    return np.concatenate(out).astype(np.int64)
