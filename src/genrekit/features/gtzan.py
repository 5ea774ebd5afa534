"""The GTZAN feature table: Kaggle's 57 columns of ``features_30_sec.csv`` / ``features_3_sec.csv`` (plus an
extended set), one row per file or per window, from one shared STFT.

:func:`extract` computes every column of one waveform from a single reflect-padded STFT (n_fft 2048, hop
512), block by block for long inputs with the numbers of one whole transform, by running the frame-level
kernels of :mod:`~genrekit.features.spectral`, :mod:`~genrekit.features.decompose` and
:mod:`~genrekit.features.rhythm` on it. :func:`analyse_file` is the per-file unit that the feature cache
stores, :class:`FeatureSettings` what that cache keys it by. Results that are not finite are refused:
no NaN or infinity ever reaches a feature table.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
    stft_frames,
)
from genrekit.errors import FeatureError
from genrekit.features.decompose import HPSS_KERNEL, HPSS_MODES, HarmonicStats, hpss_masks
from genrekit.features.filters import chroma_filterbank, dct_basis
from genrekit.features.rhythm import onset_from_db, tempo
from genrekit.features.spectral import (
    N_CONTRAST_BANDS,
    N_MFCC,
    check_waveform,
    chroma_frames,
    contrast_peaks,
    delta,
    flatness_frames,
    pitch_candidates,
    rms_frames,
    spectral_shape,
    tonnetz,
    tuning_from_candidates,
    zcr_frames,
)

__all__ = [
    "BLOCK_FRAMES", "EXTENDED_COLUMNS", "FEATURES_VERSION", "FEATURE_COLUMNS", "MAX_WHOLE_FILE_SECONDS",
    "FeatureSettings", "analyse_file", "columns", "extract", "extract_segments", "finite_analysis",
]


# The 57 feature columns of Kaggle's features_30_sec.csv / features_3_sec.csv, in their order.
FEATURE_COLUMNS: list[str] = [
    "chroma_stft_mean", "chroma_stft_var", "rms_mean", "rms_var",
    "spectral_centroid_mean", "spectral_centroid_var", "spectral_bandwidth_mean", "spectral_bandwidth_var",
    "rolloff_mean", "rolloff_var", "zero_crossing_rate_mean", "zero_crossing_rate_var",
    "harmony_mean", "harmony_var", "perceptr_mean", "perceptr_var", "tempo",
    *[f"mfcc{i}_{s}" for i in range(1, 21) for s in ("mean", "var")],
]
# Frames per block for long inputs (~30 s): a 30 s clip (1293 frames) is one block, so it is computed in one go.
BLOCK_FRAMES = 1300
# One row per whole file holds the file's samples in memory (peak RSS about 500 MB for 30 min at 22050 Hz);
# longer files are refused with a pointer to --segment, which streams files of any length.
MAX_WHOLE_FILE_SECONDS = 1800.0
# Bumped whenever a definition changes, so cached feature rows are recomputed.
FEATURES_VERSION = "2"

EXTENDED_COLUMNS: list[str] = [
    *[f"spectral_contrast{i}_{s}" for i in range(1, N_CONTRAST_BANDS + 2) for s in ("mean", "var")],
    "spectral_flatness_mean", "spectral_flatness_var",
    *[f"tonnetz{i}_{s}" for i in range(1, 7) for s in ("mean", "var")],
    *[f"mfcc_delta{i}_{s}" for i in range(1, N_MFCC + 1) for s in ("mean", "var")],
    *[f"logmel{i}_{s}" for i in range(1, N_MELS + 1) for s in ("mean", "var")],
]


def columns(*, extended: bool = False) -> list[str]:
    """Feature column names in output order: Kaggle's 57, then the extended set if asked."""
    return [*FEATURE_COLUMNS, *(EXTENDED_COLUMNS if extended else [])]


_all_columns = columns  # extract() takes a `columns=` argument that shadows the function


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
    Raises EmptyAudioError for fewer than 2048 samples and NonFiniteAudioError for NaN/inf samples, and
    FeatureError when a value comes out NaN or infinite (a finite waveform too loud for float32).
    """
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused below, in words
        out = _extract(y, sr=sr, extended=extended, block_frames=block_frames, columns=columns, hpss=hpss)
    _check_finite(out, y)
    return out


def _extract(
    y: np.ndarray, *, sr: int, extended: bool, block_frames: int, columns: list[str] | None, hpss: str,
) -> dict[str, float]:
    n_fft, hop = N_FFT, HOP_LENGTH
    y = check_waveform(y, n_fft=n_fft)
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
    harmonic = HarmonicStats(y, T, n_fft, hop)
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
        mel[:, f0:f1] = mel_frames(P, melfb)  # dsp's one mel projection
        centroid[f0:f1], bandwidth[f0:f1], rolloff[f0:f1] = spectral_shape(S, freqs)
        p_, m_ = pitch_candidates(P, freqs, sr, n_fft)
        pitches.append(p_)
        mags.append(m_)
        if need_hpss:
            mask = hpss_masks(S_ctx, lo, hi, mode=hpss)
            harmonic.add(D_ctx[lo:hi] * mask, f0, f1)
            del mask
        del D_ctx
        if extended:
            peak[:, f0:f1], valley[:, f0:f1] = contrast_peaks(S, freqs, sr)
            flatness[f0:f1] = flatness_frames(P)
        if single:
            kept_power = P
        del S_ctx, S

    tuning = tuning_from_candidates(np.concatenate(pitches), np.concatenate(mags))
    chroma_fb = chroma_filterbank(sr=sr, n_fft=n_fft, tuning=tuning)
    chroma = np.empty((12, T), dtype=np.float32)
    for f0, f1 in blocks:
        P = kept_power if single else np.square(np.abs(stft_frames(y_pad, f0, f1, n_fft=n_fft, hop_length=hop)))
        chroma[:, f0:f1] = chroma_frames(P, chroma_fb)
    del kept_power

    rms_ = rms_frames(y_pad, T, n_fft, hop)
    del y_pad
    zcr = zcr_frames(y, T, n_fft, hop)
    mel_db = power_to_db(mel)
    del mel
    mfccs = (mel_db.T @ dct_basis(N_MFCC, N_MELS).T).T
    bpm = tempo(onset_envelope=onset_from_db(mel_db, n_fft=n_fft, hop=hop), sr=sr, hop_length=hop)
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


def _check_finite(values: dict[str, float], y: np.ndarray) -> None:
    """Refuse NaN/inf results: a finite waveform can still overflow the float32 analysis (its power
    spectrum passes float32's 3e38 from a peak of about 1e17), and one NaN written into a table poisons
    every model trained on it."""
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        peak = float(np.max(np.abs(np.asarray(y, dtype=np.float64))))
        raise FeatureError(
            f"feature(s) {', '.join(bad[:3])}{more} came out NaN or infinite: the waveform's peak {peak:.3g} "
            "is beyond what the float32 analysis holds; scale the audio into [-1, 1]"
        )


def extract_segments(
    y: np.ndarray, *, sr: int = SR, segment_seconds: float = 3.0, overlap: float = 0.0, extended: bool = False,
    hpss: str = "fast",
) -> list[dict[str, float]]:
    """Features of consecutive windows of ``segment_seconds`` (Kaggle's 3 s table: 10 per 30 s clip).

    Each window is analysed on its own, as if it were a file; an incomplete tail is dropped."""
    from genrekit.audio import windows

    _check_segment(segment_seconds, sr)
    y = check_waveform(y)
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
        return [{"segment": None, "length": int(y.size), "values": _file_values(y, p, sr=sr, extended=extended, hpss=hpss)}]
    _check_segment(segment_seconds, sr)
    out: list[dict[str, object]] = []
    for w in audio.iter_windows(p, sr=sr, seconds=segment_seconds, pad=False):
        out.append({"segment": int(w.index), "length": int(w.samples.size),
                    "values": _file_values(w.samples, f"{p} (segment {w.index})", sr=sr, extended=extended,
                                           hpss=hpss)})
    if not out:
        dur = audio.info(p).duration
        raise FeatureError(f"{p}: {dur:.2f} s is shorter than one {segment_seconds:g} s segment; use a shorter --segment")
    return out


def finite_analysis(analysis: list[dict[str, object]] | None) -> list[dict[str, object]] | None:
    """``analysis`` (an :func:`analyse_file` result read back from the feature cache), or None when one
    of its values is NaN or infinite, or it is not an analysis at all. Earlier genrekit versions cached
    such results, and a cache hit must not bring them back into a table: None makes the entry a miss,
    so the file is analysed again and refused with a message naming it."""
    if analysis is None:
        return None
    try:
        ok = all(math.isfinite(float(v)) for a in analysis for v in a["values"])  # type: ignore[index, union-attr]
    except (TypeError, KeyError, ValueError):
        return None
    return analysis if ok else None


def _file_values(y: np.ndarray, where: str | os.PathLike, **settings) -> list[float]:
    """:func:`extract`'s values, its errors prefixed with the file (and window) they are about, so a batch
    reports which input failed."""
    try:
        return list(extract(y, **settings).values())
    except FeatureError as exc:
        raise FeatureError(f"{where}: {exc}") from None


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
