"""Waveforms from any source: :func:`load`, :func:`stream`, :func:`decoded_seconds`, all through the one
opener (:func:`~genrekit.audio.source.open_source`) and the one decoder rule; resampling and windows.

Resampling is soxr's high-quality mode, the same resampler librosa uses by default, so features match
librosa-computed tables. Long files: :func:`stream` and :func:`iter_windows` read block by block, so a
2-hour file never needs 2 hours of samples in memory when only windows are wanted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from genrekit.audio.decode import check_samples, native_blocks
from genrekit.audio.source import Source, open_source
from genrekit.dsp import N_FFT, SR  # the default rate, and the shortest input any analysis takes
from genrekit.errors import DurationLimitError, EmptyAudioError


@dataclass(frozen=True)
class Window:
    """A fixed-length slice of a track; keeps where it came from so splits can group by track."""

    track_id: str | None
    index: int
    start: float  # seconds
    end: float  # seconds
    samples: np.ndarray


def validate(y: np.ndarray, *, name: str = "audio", min_samples: int = N_FFT) -> np.ndarray:
    """Reject what no feature can be computed from: no samples, too few, NaN, inf, absurd amplitude."""
    if y.size == 0:
        raise EmptyAudioError(f"{name}: no audio samples")
    if y.shape[-1] < min_samples:
        raise EmptyAudioError(
            f"{name}: {y.shape[-1]} samples is shorter than one analysis frame ({min_samples} samples)"
        )
    check_samples(y, name)
    return y


# ---------------------------------------------------------------------------------------------- resampling


def resample(y: np.ndarray, *, orig_sr: int, target_sr: int) -> np.ndarray:
    """High-quality resampling (soxr HQ, librosa's default); a no-op when the rates match."""
    if orig_sr == target_sr:
        return np.ascontiguousarray(y, dtype=np.float32)
    import soxr

    return soxr.resample(np.asarray(y, dtype=np.float32), orig_sr, target_sr, quality="HQ").astype(
        np.float32, copy=False
    )


class StreamResampler:
    """Resample consecutive blocks without seams (soxr streaming), or pass them through."""

    def __init__(self, orig_sr: int, target_sr: int):
        self.active = orig_sr != target_sr
        if self.active:
            import soxr

            self._rs = soxr.ResampleStream(orig_sr, target_sr, 1, dtype="float32", quality="HQ")

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        if not self.active:
            return block
        return self._rs.resample_chunk(np.ascontiguousarray(block, dtype=np.float32), last=last)


# ---------------------------------------------------------------------------------------------- decoding


def _check_span(offset: float, duration: float | None) -> None:
    if offset < 0 or (duration is not None and duration <= 0):
        raise ValueError("offset must be >= 0 and duration > 0")


def _check_max_duration(max_duration: float | None) -> None:
    if max_duration is not None and not max_duration > 0:
        raise ValueError(f"max_duration must be > 0 seconds (or None for no limit), got {max_duration}")


def load(
    source,
    *,
    filename: str | None = None,
    sr: int = SR,
    offset: float = 0.0,
    duration: float | None = None,
    min_samples: int = N_FFT,
) -> np.ndarray:
    """Decode ``source`` (a path, bytes, or a binary file object named by ``filename``) to mono float32
    at ``sr`` (default 22050, GTZAN's rate).

    Raises a specific :class:`AudioError` subclass: missing or special file, unsupported container or
    rate, undecodable or truncated data, empty or shorter than ``min_samples`` (one analysis frame),
    non-finite or absurdly loud samples.
    """
    src = open_source(source, filename=filename)
    _check_span(offset, duration)
    native_sr, blocks = native_blocks(src, offset=offset, duration=duration, block_frames=1 << 22)
    parts = list(blocks)
    y = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    check_samples(y, src.name)
    y = resample(y, orig_sr=native_sr, target_sr=sr)
    return validate(y, name=src.name, min_samples=min_samples)


def stream(
    source,
    *,
    filename: str | None = None,
    sr: int = SR,
    offset: float = 0.0,
    duration: float | None = None,
    block_seconds: float = 30.0,
    max_duration: float | None = None,
    tap: Callable[[np.ndarray, int], None] | None = None,
) -> Iterator[np.ndarray]:
    """Yield consecutive mono float32 blocks (about ``block_seconds`` each) at ``sr`` from ``source``
    (a path, bytes, or a binary file object named by ``filename``).

    Memory beyond the source itself stays bounded by the block size whatever the file's length, rate or
    channel count declare: native reads are at most ``block_seconds`` long. Non-finite or absurdly loud
    samples raise. ``max_duration`` (seconds) raises :class:`DurationLimitError` as soon as the decoded
    audio (after ``offset``) runs past it, without decoding the rest; the header's length is not consulted.
    ``tap(native_block, native_sr)`` sees each checked native block before it is resampled: a second
    consumer at another rate (``predict``'s styles at 32 kHz) shares the one decode.
    """
    _check_span(offset, duration)
    _check_max_duration(max_duration)
    src = open_source(source, filename=filename)
    native_sr, blocks = native_blocks(src, offset=offset, duration=duration, block_seconds=block_seconds)
    empty = f"{src.name}: no audio samples" + (f" after offset {offset} s" if offset else "")
    yield from _resampled(blocks, native_sr=native_sr, sr=sr, block_seconds=block_seconds, name=src.name,
                          max_duration=max_duration, empty=empty, tap=tap)


def decoded_seconds(source, *, filename: str | None = None, max_duration: float | None = None) -> float:
    """Seconds of audio ``source`` decodes to, counted by decoding it (no resampling, nothing kept), never
    read from its header; with ``max_duration``, raises :class:`DurationLimitError` as soon as the count
    passes it. Cheap (decoding is a few percent of classifying), so a caller can refuse a file that
    decodes to hours before spending any real work on it."""
    _check_max_duration(max_duration)
    src = open_source(source, filename=filename)
    native_sr, blocks = native_blocks(src, block_seconds=30.0)
    limit = None if max_duration is None else max_duration * native_sr
    n = 0
    for b in blocks:
        n += b.shape[0]
        if limit is not None and n > limit:
            blocks.close()
            raise _too_long(src.name, max_duration, n / native_sr)
    return n / native_sr


def _too_long(name: str, max_duration: float, decoded: float) -> DurationLimitError:
    return DurationLimitError(
        f"{name}: the audio is longer than the limit of {_limit_text(max_duration)} (decoding "
        f"stopped at {_hms(decoded)}; the rest was not read)"
    )


def _hms(seconds: float) -> str:
    """``1:02:03`` / ``20:00`` / ``4.5 s``: a duration as people read it."""
    if seconds < 60:
        return f"{seconds:.3g} s"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _limit_text(seconds: float) -> str:
    return f"{seconds / 60:.4g} min" if seconds >= 60 else f"{seconds:.4g} s"


def _resampled(
    blocks: Iterable[np.ndarray], *, native_sr: int, sr: int, block_seconds: float, name: str,
    max_duration: float | None, empty: str, tap: Callable[[np.ndarray, int], None] | None = None,
) -> Iterator[np.ndarray]:
    """Native-rate mono blocks -> blocks of ``block_seconds`` at ``sr`` (seamless streaming resampling),
    checking each native block's samples and the running duration against ``max_duration``."""
    rs = StreamResampler(native_sr, sr)
    target = max(1, int(block_seconds * sr))
    limit = None if max_duration is None else max_duration * native_sr
    decoded = 0
    pending: list[np.ndarray] = []
    held = 0
    total = 0
    for native in blocks:
        decoded += native.shape[0]
        if limit is not None and decoded > limit:
            raise _too_long(name, max_duration, decoded / native_sr)
        check_samples(native, name)
        if tap is not None:
            tap(native, native_sr)
        out = rs(native)
        if out.size:
            pending.append(out)
            held += out.size
        while held >= target:
            joined = np.concatenate(pending)
            yield joined[:target]
            total += target
            rest = joined[target:]
            pending, held = ([rest] if rest.size else []), rest.size
    tail = rs(np.zeros(0, np.float32), last=True)
    if tail.size:
        pending.append(tail)
    if pending:
        joined = np.concatenate(pending)
        total += joined.size
        if joined.size:
            yield joined
    if total == 0:
        raise EmptyAudioError(empty)


# ---------------------------------------------------------------------------------------------- windows


def windows(
    y: np.ndarray,
    *,
    sr: int = SR,
    seconds: float = 3.0,
    overlap: float = 0.0,
    track_id: str | None = None,
    pad: bool = False,
    start_offset: float = 0.0,
    start_index: int = 0,
) -> list[Window]:
    """Cut ``y`` into fixed windows of ``seconds`` with fractional ``overlap`` (0 <= overlap < 1).

    Incomplete tail windows are dropped, except that with ``pad=True`` a clip shorter than one window
    becomes one zero-padded window (so a short clip can still be classified).
    """
    if seconds <= 0:
        raise ValueError("window seconds must be > 0")
    if not 0.0 <= overlap < 1.0:
        raise ValueError("overlap must be in [0, 1)")
    size = int(round(seconds * sr))
    hop = max(1, int(round(size * (1.0 - overlap))))
    out: list[Window] = []
    n = y.shape[-1]
    if n < size:
        if pad and n > 0:
            buf = np.zeros(size, dtype=np.float32)
            buf[:n] = y
            out.append(Window(track_id, start_index, start_offset, start_offset + n / sr, buf))
        return out
    for i, s in enumerate(range(0, n - size + 1, hop)):
        out.append(
            Window(track_id, start_index + i, start_offset + s / sr, start_offset + (s + size) / sr, y[s : s + size])
        )
    return out


def iter_windows(
    source,
    *,
    filename: str | None = None,
    sr: int = SR,
    seconds: float = 3.0,
    overlap: float = 0.0,
    track_id: str | None = None,
    pad: bool = True,
    block_seconds: float = 60.0,
) -> Iterator[Window]:
    """Windows of a source of any length, decoded block by block (bounded memory)."""
    size = int(round(seconds * sr))
    hop = max(1, int(round(size * (1.0 - overlap))))
    buf = np.zeros(0, np.float32)
    consumed = 0  # samples dropped from the front of buf so far
    index = 0
    total = 0
    src: Source = open_source(source, filename=filename)
    for block in stream(src, sr=sr, block_seconds=max(block_seconds, seconds * 2)):
        total += block.size
        buf = np.concatenate([buf, block])
        while buf.size >= size:
            yield Window(track_id, index, consumed / sr, (consumed + size) / sr, buf[:size].copy())
            index += 1
            buf = buf[hop:]
            consumed += hop
    if index == 0:
        if total < N_FFT:
            raise EmptyAudioError(f"{src.name}: {total} samples is shorter than one analysis frame ({N_FFT} samples)")
        if pad:
            w = np.zeros(size, np.float32)
            w[: buf.size] = buf
            yield Window(track_id, 0, 0.0, buf.size / sr, w)
