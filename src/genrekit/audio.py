"""Decode any audio file to a mono float32 waveform at a requested rate.

soundfile (libsndfile) handles wav/flac/ogg/au/aiff and seeks cheaply; PyAV (bundled FFmpeg) handles mp3,
m4a/aac/opus/webm and other containers (for mp3 it is as fast as libsndfile's mpg123 and, unlike it, does
not print decoder warnings to the terminal). Resampling is soxr's high-quality mode, the same resampler
librosa uses by default, so features match librosa-computed tables.

Long files: :func:`stream` and :func:`iter_windows` read block by block, so a 2-hour file never needs
2 hours of samples in memory when only windows are wanted.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genrekit.dsp import N_FFT, SR  # the default rate, and the shortest input any analysis takes
from genrekit.errors import (
    AudioError,
    AudioFileNotFoundError,
    DecodeError,
    DurationLimitError,
    EmptyAudioError,
    NonFiniteAudioError,
    UnsupportedFormatError,
)

# At most this many samples (all channels) per native read, whatever channel count a header declares:
# a WAV claiming 1024 channels would otherwise make one 65536-frame read allocate 256 MB.
MAX_READ_SAMPLES = 1 << 22

SOUNDFILE_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".au", ".snd", ".aif", ".aiff", ".aifc", ".caf", ".w64", ".rf64"}
)
AV_EXTENSIONS = frozenset(
    {".mp3", ".m4a", ".aac", ".mp4", ".m4b", ".opus", ".webm", ".mka", ".mkv", ".wma", ".3gp", ".amr", ".ac3", ".mp2", ".alac"}
)
AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS | AV_EXTENSIONS


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header (no full decode)."""

    path: str
    format: str
    sr: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sr if self.sr else 0.0


@dataclass(frozen=True)
class Window:
    """A fixed-length slice of a track; keeps where it came from so splits can group by track."""

    track_id: str | None
    index: int
    start: float  # seconds
    end: float  # seconds
    samples: np.ndarray


# ---------------------------------------------------------------------------------------------- checks


def _check_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        if p.is_symlink():
            raise AudioFileNotFoundError(f"{p}: broken or looping symbolic link (it leads to no file); fix or remove the link")
        raise AudioFileNotFoundError(f"{p}: no such file")
    if not p.is_file():
        raise AudioFileNotFoundError(f"{p}: not a regular file")
    if not os.access(p, os.R_OK):
        raise DecodeError(f"{p}: permission denied (file is not readable)")
    if p.stat().st_size == 0:
        raise EmptyAudioError(f"{p}: empty file (0 bytes)")
    ext = p.suffix.lower()
    if ext not in AUDIO_EXTENSIONS:
        raise UnsupportedFormatError(
            f"{p}: unsupported container {ext or '(no extension)'!r}; "
            f"supported: {', '.join(sorted(e[1:] for e in AUDIO_EXTENSIONS))}"
        )
    return p


def validate(y: np.ndarray, *, name: str = "audio", min_samples: int = N_FFT) -> np.ndarray:
    """Reject what no feature can be computed from: no samples, too few, NaN or inf."""
    if y.size == 0:
        raise EmptyAudioError(f"{name}: no audio samples")
    if y.shape[-1] < min_samples:
        raise EmptyAudioError(
            f"{name}: {y.shape[-1]} samples is shorter than one analysis frame ({min_samples} samples)"
        )
    if not np.isfinite(y).all():
        raise NonFiniteAudioError(f"{name}: audio contains NaN or infinite samples")
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


def _to_mono(block: np.ndarray) -> np.ndarray:
    """(frames, channels) -> (frames,), averaging channels as librosa.to_mono does."""
    if block.ndim == 1:
        return block
    if block.shape[1] == 1:
        return block[:, 0]
    return block.mean(axis=1, dtype=np.float32)


class _StreamResampler:
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


# ---------------------------------------------------------------------------------------------- info


def info(path: str | os.PathLike) -> AudioInfo:
    """Header facts (rate, channels, frames) without decoding the samples."""
    p = _check_path(path)
    if p.suffix.lower() in SOUNDFILE_EXTENSIONS:
        import soundfile as sf

        try:
            i = sf.info(str(p))
            return AudioInfo(str(p), i.format, int(i.samplerate), int(i.channels), int(i.frames))
        except (RuntimeError, sf.LibsndfileError) as exc:
            raise DecodeError(f"{p}: not audio or corrupt ({_short(exc)})") from None
    return _av_info(p)


def _av_info(p: Path) -> AudioInfo:
    import av

    try:
        with av.open(str(p), metadata_errors="replace") as c:
            if not c.streams.audio:
                raise DecodeError(f"{p}: container holds no audio stream")
            s = c.streams.audio[0]
            _check_decoder(s, p)
            sr = int(s.rate or s.codec_context.sample_rate or 0)
            ch = int(s.codec_context.channels or 0) if hasattr(s.codec_context, "channels") else 0
            if not ch and s.layout is not None:
                ch = len(s.layout.channels)
            if s.duration is not None and s.time_base is not None:
                seconds = float(s.duration * s.time_base)
            elif c.duration is not None:
                seconds = c.duration / 1_000_000
            else:
                seconds = 0.0
            return AudioInfo(str(p), c.format.name, sr, ch, int(round(seconds * sr)))
    except av.error.FFmpegError as exc:
        raise DecodeError(f"{p}: not audio or corrupt ({_short(exc)})") from None


def _check_decoder(stream, name) -> None:
    """PyAV gives a stream without a codec context when FFmpeg has no decoder for its codec."""
    if stream.codec_context is None or not (stream.codec_context.sample_rate or 0) > 0:
        raise DecodeError(f"{name}: unsupported or corrupt audio codec (no decoder for it, or no sample rate)")


def _short(exc: BaseException) -> str:
    """The useful last line of a decoder's message (FFmpeg's without its errno and path)."""
    if getattr(exc, "strerror", None):
        return str(exc.strerror)
    msg = str(exc).strip().splitlines()
    return msg[-1] if msg else type(exc).__name__


# ---------------------------------------------------------------------------------------------- truncation

# libsndfile logs a chunk whose declared size exceeds what the file holds as "data : N (should be M)".
_SF_CLAIM = re.compile(r"^(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def _check_sf_claim(f, name) -> None:
    """A WAV/AIFF whose header claims more sample bytes than the file holds was cut short (libsndfile
    would silently decode only what is there)."""
    m = _SF_CLAIM.search(getattr(f, "extra_info", "") or "")
    if m:
        claimed, held = int(m.group(1)), int(m.group(2))
        if claimed not in (0, 0xFFFFFFFF) and claimed > held:  # 0 / 0xFFFFFFFF: written by a streaming tool
            raise DecodeError(
                f"{name}: truncated: header declares {claimed} bytes of audio but the file holds only {held}; "
                "re-download or re-export the file"
            )


def _mp3_declared_samples(head: bytes) -> int | None:
    """Samples (per channel, encoder delay/padding included) that an MP3's Xing/Info/VBRI header
    declares, or None when there is no such header (LAME and FFmpeg write one). ``head`` starts at the
    first byte after any ID3v2 tag."""
    for i in range(min(len(head) - 4, 4096)):
        if head[i] != 0xFF or head[i + 1] & 0xE0 != 0xE0:
            continue
        version, layer = (head[i + 1] >> 3) & 3, (head[i + 1] >> 1) & 3
        if version == 1 or layer != 1 or head[i + 2] >> 4 in (0, 15) or (head[i + 2] >> 2) & 3 == 3:
            continue  # not an MPEG audio layer III frame header
        mono = head[i + 3] >> 6 == 3
        side, per_frame = ((17 if mono else 32), 1152) if version == 3 else ((9 if mono else 17), 576)
        x = i + 4 + side
        if head[x : x + 4] in (b"Xing", b"Info") and int.from_bytes(head[x + 4 : x + 8], "big") & 1:
            return int.from_bytes(head[x + 8 : x + 12], "big") * per_frame
        v = i + 36
        if head[v : v + 4] == b"VBRI":
            return int.from_bytes(head[v + 14 : v + 18], "big") * per_frame
        return None
    return None


def _mp3_head(read) -> bytes:
    """The first 8 KB after an ID3v2 tag, from ``read(offset, n)``."""
    first = read(0, 10)
    start = 0
    if first[:3] == b"ID3" and len(first) == 10:
        size = (first[6] & 0x7F) << 21 | (first[7] & 0x7F) << 14 | (first[8] & 0x7F) << 7 | (first[9] & 0x7F)
        start = 10 + size + (10 if first[5] & 0x10 else 0)
    return read(start, 8192)


def _check_mp3_length(head: bytes, decoded: int, name) -> None:
    """Raise when an MP3 decodes to clearly fewer samples than its header declares (cut short)."""
    declared = _mp3_declared_samples(head)
    # encoder delay + padding (under 2 frames) are counted in the header but not decoded
    if declared and decoded + 3 * 1152 < declared:
        raise DecodeError(
            f"{name}: truncated: the MP3 header declares {declared} samples but only {decoded} could be "
            "decoded; re-download or re-encode the file"
        )


def _read_at(p: Path):
    def read(offset: int, n: int) -> bytes:
        with open(p, "rb") as f:
            f.seek(offset)
            return f.read(n)

    return read


# ---------------------------------------------------------------------------------------------- decoding


def _sf_blocks(p: Path, *, offset: float, duration: float | None, block_frames: int) -> tuple[int, Iterator[np.ndarray]]:
    """Native-rate mono blocks from soundfile; checks that the file delivers what its header declares."""
    import soundfile as sf

    try:
        f = sf.SoundFile(str(p))
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise DecodeError(f"{p}: not audio or corrupt ({_short(exc)})") from None
    try:
        _check_sf_claim(f, p)
    except DecodeError:
        f.close()
        raise
    sr = int(f.samplerate)
    start = int(round(offset * sr))
    declared = int(f.frames)
    stop = declared if duration is None else min(declared, start + int(round(duration * sr)))
    per_read = max(1, min(block_frames, MAX_READ_SAMPLES // max(1, int(f.channels))))

    def gen() -> Iterator[np.ndarray]:
        with f:
            try:
                if start:
                    if start >= declared:
                        return
                    f.seek(start)
                pos = start
                while pos < stop:
                    n = min(per_read, stop - pos)
                    block = f.read(n, dtype="float32", always_2d=True)
                    if block.shape[0] == 0:
                        break
                    pos += block.shape[0]
                    yield _to_mono(block)
            except (RuntimeError, sf.LibsndfileError) as exc:
                raise DecodeError(
                    f"{p}: truncated or corrupt: decoding failed after {pos / sr:.2f} s of the {declared / sr:.2f} s "
                    f"its header declares ({_short(exc)})"
                ) from None
            if pos < stop and duration is None:
                raise DecodeError(
                    f"{p}: truncated: header declares {declared} frames but only {pos} could be decoded"
                )

    return sr, gen()


def _av_blocks(
    p: Path, *, offset: float, duration: float | None, block_frames: int, source=None, read=None,
    block_seconds: float | None = None, bad: str = "not audio or corrupt",
) -> tuple[int, Iterator[np.ndarray]]:
    """Native-rate mono blocks from PyAV/FFmpeg for containers libsndfile cannot read.

    ``source`` (an in-memory file) replaces the path ``p``, which then only names it in messages;
    ``read(offset, n)`` reads its bytes for the MP3 length check. ``block_seconds`` caps the block at
    that much audio (memory per block stays bounded even at very low sample rates)."""
    import av

    try:
        container = av.open(str(p) if source is None else source, metadata_errors="replace")
    except av.error.FFmpegError as exc:
        raise DecodeError(f"{p}: {bad} ({_short(exc)})") from None
    if not container.streams.audio:
        container.close()
        raise DecodeError(f"{p}: container holds no audio stream")
    stream = container.streams.audio[0]
    try:
        _check_decoder(stream, p)
    except DecodeError:
        container.close()
        raise
    sr = int(stream.rate or stream.codec_context.sample_rate)
    if block_seconds is not None:
        block_frames = max(1, min(block_frames, int(block_seconds * sr)))
    skip = int(round(offset * sr))
    remaining = None if duration is None else int(round(duration * sr))

    def gen() -> Iterator[np.ndarray]:
        nonlocal skip, remaining
        pending: list[np.ndarray] = []
        held = 0
        got_any = False
        decoded = 0
        try:
            with container:
                for frame in container.decode(stream):
                    decoded += frame.samples
                    a = frame.to_ndarray()
                    # planar (channels, n) or packed (1, n*channels)
                    a = a.astype(np.float32, copy=False)
                    if frame.format.is_planar:
                        mono = a.mean(axis=0) if a.shape[0] > 1 else a[0]
                    else:
                        mono = a.reshape(-1, len(frame.layout.channels)).mean(axis=1)
                    mono = _int_to_float(mono, frame.format.name)
                    got_any = True
                    if skip:
                        cut = min(skip, mono.shape[0])
                        mono, skip = mono[cut:], skip - cut
                    if remaining is not None:
                        mono = mono[:remaining]
                        remaining -= mono.shape[0]
                    if mono.size:
                        pending.append(mono)
                        held += mono.shape[0]
                    if held >= block_frames:
                        yield np.concatenate(pending)
                        pending, held = [], 0
                    if remaining is not None and remaining <= 0:
                        break
        except av.error.FFmpegError as exc:
            raise DecodeError(f"{p}: {bad} ({_short(exc)})") from None
        if not got_any:
            raise DecodeError(f"{p}: no decodable audio frames")
        if duration is None and read is not None:
            _check_mp3_length(_mp3_head(read), decoded, p)
        elif duration is None and source is None and p.suffix.lower() == ".mp3":
            _check_mp3_length(_mp3_head(_read_at(p)), decoded, p)
        if pending:
            yield np.concatenate(pending)

    return sr, gen()


_INT_SCALE = {"s16": 32768.0, "s16p": 32768.0, "s32": 2147483648.0, "s32p": 2147483648.0, "u8": 128.0, "u8p": 128.0}


def _int_to_float(a: np.ndarray, fmt: str) -> np.ndarray:
    if fmt in _INT_SCALE:
        if fmt.startswith("u8"):
            a -= 128.0
        return a / _INT_SCALE[fmt]
    return a.astype(np.float32, copy=False)


def _native_blocks(p: Path, *, offset: float, duration: float | None, block_frames: int):
    if p.suffix.lower() in SOUNDFILE_EXTENSIONS:
        try:
            sr, it = _sf_blocks(p, offset=offset, duration=duration, block_frames=block_frames)
            return sr, it
        except DecodeError:
            if p.suffix.lower() not in {".ogg", ".oga"}:
                raise
            # Ogg Opus and other codecs libsndfile lacks: let FFmpeg try before giving up
    return _av_blocks(p, offset=offset, duration=duration, block_frames=block_frames)


def stream(
    path: str | os.PathLike,
    *,
    sr: int = SR,
    offset: float = 0.0,
    duration: float | None = None,
    block_seconds: float = 30.0,
    max_duration: float | None = None,
) -> Iterator[np.ndarray]:
    """Yield consecutive mono float32 blocks (about ``block_seconds`` each) at ``sr``.

    Memory stays bounded by the block size whatever the file's length. Non-finite samples raise.
    ``max_duration`` (seconds) raises :class:`DurationLimitError` as soon as the decoded audio (after
    ``offset``) runs past it, without decoding the rest; the header's length is not consulted.
    """
    if offset < 0 or (duration is not None and duration <= 0):
        raise ValueError("offset must be >= 0 and duration > 0")
    _check_max_duration(max_duration)
    p = _check_path(path)
    native_sr, blocks = _native_blocks(p, offset=offset, duration=duration, block_frames=65536)
    empty = f"{p}: no audio samples" + (f" after offset {offset} s" if offset else "")
    yield from _resampled(blocks, native_sr=native_sr, sr=sr, block_seconds=block_seconds, name=str(p),
                          max_duration=max_duration, empty=empty)


def decoded_seconds(path: str | os.PathLike, *, max_duration: float | None = None) -> float:
    """Seconds of audio ``path`` decodes to, counted by decoding it (no resampling, nothing kept), never
    read from its header; with ``max_duration``, raises :class:`DurationLimitError` as soon as the count
    passes it. Cheap (decoding is a few percent of classifying), so a caller can refuse a file that
    decodes to hours before spending any real work on it."""
    _check_max_duration(max_duration)
    p = _check_path(path)
    native_sr, blocks = _native_blocks(p, offset=0.0, duration=None, block_frames=65536)
    return _count_seconds(blocks, native_sr=native_sr, name=str(p), max_duration=max_duration)


def decoded_seconds_bytes(data: bytes, *, filename: str = "upload.wav", max_duration: float | None = None) -> float:
    """:func:`decoded_seconds` for audio held in memory, decoded as :func:`stream_bytes` decodes it."""
    _check_max_duration(max_duration)
    native_sr, blocks = _bytes_native_blocks(data, filename, block_seconds=30.0)
    return _count_seconds(blocks, native_sr=native_sr, name=filename, max_duration=max_duration)


def _count_seconds(blocks: Iterable[np.ndarray], *, native_sr: int, name: str, max_duration: float | None) -> float:
    limit = None if max_duration is None else max_duration * native_sr
    n = 0
    for b in blocks:
        n += b.shape[0]
        if limit is not None and n > limit:
            getattr(blocks, "close", lambda: None)()
            raise _too_long(name, max_duration, n / native_sr)
    return n / native_sr


def _too_long(name: str, max_duration: float, decoded: float) -> DurationLimitError:
    return DurationLimitError(
        f"{name}: the audio is longer than the limit of {_limit_text(max_duration)} (decoding "
        f"stopped at {_hms(decoded)}; the rest was not read)"
    )


def _check_max_duration(max_duration: float | None) -> None:
    if max_duration is not None and not max_duration > 0:
        raise ValueError(f"max_duration must be > 0 seconds (or None for no limit), got {max_duration}")


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
    max_duration: float | None, empty: str,
) -> Iterator[np.ndarray]:
    """Native-rate mono blocks -> blocks of ``block_seconds`` at ``sr`` (seamless streaming resampling),
    checking each native block for non-finite samples and the running duration against ``max_duration``."""
    rs = _StreamResampler(native_sr, sr)
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
        if not np.isfinite(native).all():
            raise NonFiniteAudioError(f"{name}: audio contains NaN or infinite samples")
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


def load(
    path: str | os.PathLike,
    *,
    sr: int = SR,
    offset: float = 0.0,
    duration: float | None = None,
    min_samples: int = N_FFT,
) -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sr`` (default 22050, GTZAN's rate).

    Raises a specific :class:`AudioError` subclass: missing file, unsupported container, undecodable
    or truncated data, empty or shorter than ``min_samples`` (one analysis frame), non-finite samples.
    """
    p = _check_path(path)
    if offset < 0 or (duration is not None and duration <= 0):
        raise ValueError("offset must be >= 0 and duration > 0")
    native_sr, blocks = _native_blocks(p, offset=offset, duration=duration, block_frames=1 << 22)
    parts = list(blocks)
    y = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    if not np.isfinite(y).all():
        raise NonFiniteAudioError(f"{p}: audio contains NaN or infinite samples")
    y = resample(y, orig_sr=native_sr, target_sr=sr)
    return validate(y, name=str(p), min_samples=min_samples)


class _SeekClampedBytes(io.BytesIO):
    """libsndfile may seek before the start of a damaged buffer; BytesIO would raise inside soundfile's C
    callback, where the exception is printed with a traceback instead of raised. Clamp to the start: the
    decoder then fails cleanly on what it reads."""

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            return super().seek(offset, whence)
        except ValueError:
            return super().seek(0)


def load_bytes(data: bytes, *, filename: str = "upload.wav", sr: int = SR, min_samples: int = N_FFT) -> np.ndarray:
    """Decode audio held in memory (e.g. an upload) without writing it to disk."""
    import soundfile as sf

    if not data:
        raise EmptyAudioError(f"{filename}: empty file (0 bytes)")
    ext = Path(filename).suffix.lower()
    mp3_head = _mp3_head(lambda offset, n: bytes(data[offset : offset + n]))
    try:
        looks_mpeg = data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0)
        if ext in AV_EXTENSIONS or looks_mpeg or _mp3_declared_samples(mp3_head):
            # FFmpeg, as for files: libsndfile's mpg123 prints warnings to the terminal
            raise RuntimeError("decode with FFmpeg")
        with sf.SoundFile(_SeekClampedBytes(data)) as f:
            _check_sf_claim(f, filename)
            native = f.samplerate
            y = _to_mono(f.read(dtype="float32", always_2d=True))
    except (RuntimeError, sf.LibsndfileError):
        import av

        try:
            with av.open(io.BytesIO(data), metadata_errors="replace") as c:
                if not c.streams.audio:
                    raise DecodeError(f"{filename}: holds no audio stream") from None
                s = c.streams.audio[0]
                _check_decoder(s, filename)
                native = int(s.rate or s.codec_context.sample_rate)
                res = av.AudioResampler(format="flt", layout="mono", rate=native)
                chunks = []
                for frame in c.decode(s):
                    for f in res.resample(frame):
                        chunks.append(f.to_ndarray().reshape(-1))
                y = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
            _check_mp3_length(mp3_head, y.size, filename)
        except av.error.FFmpegError as exc:
            kind = "unsupported or corrupt" if ext not in AUDIO_EXTENSIONS else "not audio or corrupt"
            raise DecodeError(f"{filename}: {kind} ({_short(exc)})") from None
        except ValueError as exc:  # PyAV's resampler: the format or rate changes mid-stream (damaged frames)
            raise DecodeError(f"{filename}: corrupt audio ({exc})") from None
    if not np.isfinite(y).all():
        raise NonFiniteAudioError(f"{filename}: audio contains NaN or infinite samples")
    y = resample(y, orig_sr=int(native), target_sr=sr)
    return validate(y, name=filename, min_samples=min_samples)


def _sf_bytes_blocks(data: bytes, name: str, *, block_frames: int, block_seconds: float):
    """Native-rate mono blocks of in-memory audio from soundfile, read block by block: the header's
    frame count is never used to size a read (a lying header cannot make it allocate), only to report a
    file that delivers less than it declares."""
    import soundfile as sf

    f = sf.SoundFile(_SeekClampedBytes(data))  # raises RuntimeError / LibsndfileError: not for libsndfile
    try:
        _check_sf_claim(f, name)
    except DecodeError:
        f.close()
        raise
    sr = int(f.samplerate)
    declared = int(f.frames)
    per_read = max(1, min(block_frames, int(block_seconds * sr), MAX_READ_SAMPLES // max(1, int(f.channels))))

    def gen() -> Iterator[np.ndarray]:
        pos = 0
        with f:
            try:
                while True:
                    block = f.read(per_read, dtype="float32", always_2d=True)
                    if block.shape[0] == 0:
                        break
                    pos += block.shape[0]
                    yield _to_mono(block)
            except (RuntimeError, sf.LibsndfileError) as exc:
                raise DecodeError(f"{name}: truncated or corrupt: decoding failed after {pos / sr:.2f} s "
                                  f"({_short(exc)})") from None
        if 0 < pos < declared:
            raise DecodeError(f"{name}: truncated: header declares {declared} frames but only {pos} could be decoded")

    return sr, gen()


def _bytes_native_blocks(data: bytes, filename: str, *, block_seconds: float):
    """(native rate, native-rate mono blocks) of in-memory audio, decoded as :func:`load_bytes` chooses."""
    import soundfile as sf

    if not data:
        raise EmptyAudioError(f"{filename}: empty file (0 bytes)")
    data = bytes(data)  # io.BytesIO shares an immutable bytes buffer instead of copying it
    ext = Path(filename).suffix.lower()
    native_frames = 65536
    read = lambda offset, n: data[offset : offset + n]  # noqa: E731
    looks_mpeg = data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0)
    if not (ext in AV_EXTENSIONS or looks_mpeg or _mp3_declared_samples(_mp3_head(read))):
        try:
            return _sf_bytes_blocks(data, filename, block_frames=native_frames, block_seconds=block_seconds)
        except (RuntimeError, sf.LibsndfileError):
            pass  # not for libsndfile: let FFmpeg try
    kind = "unsupported or corrupt" if ext not in AUDIO_EXTENSIONS else "not audio or corrupt"
    return _av_blocks(Path(filename), offset=0.0, duration=None, block_frames=native_frames,
                      source=io.BytesIO(data), read=read, block_seconds=block_seconds, bad=kind)


def stream_bytes(
    data: bytes,
    *,
    filename: str = "upload.wav",
    sr: int = SR,
    block_seconds: float = 30.0,
    max_duration: float | None = None,
) -> Iterator[np.ndarray]:
    """Like :func:`stream`, for audio held in memory (an upload): mono float32 blocks at ``sr``.

    Memory beyond ``data`` itself stays bounded by the block size whatever the bytes declare or decode
    to: reads are sized by the block, never by the header's length, rate or channel count, and
    ``max_duration`` (seconds) raises :class:`DurationLimitError` as soon as the decoded audio passes
    it. The decoder is chosen as :func:`load_bytes` chooses it (FFmpeg for MPEG-looking data).
    """
    _check_max_duration(max_duration)
    native_sr, blocks = _bytes_native_blocks(data, filename, block_seconds=block_seconds)
    yield from _resampled(blocks, native_sr=native_sr, sr=sr, block_seconds=block_seconds, name=filename,
                          max_duration=max_duration, empty=f"{filename}: no audio samples")


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
    path: str | os.PathLike,
    *,
    sr: int = SR,
    seconds: float = 3.0,
    overlap: float = 0.0,
    track_id: str | None = None,
    pad: bool = True,
    block_seconds: float = 60.0,
) -> Iterator[Window]:
    """Windows of a file of any length, decoded block by block (bounded memory)."""
    size = int(round(seconds * sr))
    hop = max(1, int(round(size * (1.0 - overlap))))
    buf = np.zeros(0, np.float32)
    consumed = 0  # samples dropped from the front of buf so far
    index = 0
    total = 0
    for block in stream(path, sr=sr, block_seconds=max(block_seconds, seconds * 2)):
        total += block.size
        buf = np.concatenate([buf, block])
        while buf.size >= size:
            yield Window(track_id, index, consumed / sr, (consumed + size) / sr, buf[:size].copy())
            index += 1
            buf = buf[hop:]
            consumed += hop
    if index == 0:
        if total < N_FFT:
            raise EmptyAudioError(f"{path}: {total} samples is shorter than one analysis frame ({N_FFT} samples)")
        if pad:
            w = np.zeros(size, np.float32)
            w[: buf.size] = buf
            yield Window(track_id, 0, 0.0, buf.size / sr, w)


# ---------------------------------------------------------------------------------------------- files


def iter_audio_files(paths: Iterable[str | os.PathLike], *, extensions: frozenset[str] = AUDIO_EXTENSIONS) -> Iterator[Path]:
    """Files under ``paths`` (recursively, sorted) with an audio extension.

    Paths given explicitly are always yielded (a bad one then gets its specific error downstream).
    Hidden files (``.DS_Store``, AppleDouble ``._x.mp3``) are skipped; symlinked folders are not
    followed, so a symlink loop cannot hang the walk. A missing path raises AudioFileNotFoundError.
    """
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for root, dirs, files in os.walk(p, followlinks=False):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.startswith("."):
                        continue
                    f = Path(root) / name
                    if f.suffix.lower() in extensions:
                        yield f
        elif p.exists() or p.is_symlink():
            yield p
        else:
            raise AudioFileNotFoundError(f"{p}: no such file or folder")


__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioError",
    "AudioInfo",
    "Window",
    "decoded_seconds",
    "decoded_seconds_bytes",
    "info",
    "iter_audio_files",
    "iter_windows",
    "load",
    "load_bytes",
    "resample",
    "stream",
    "stream_bytes",
    "validate",
    "windows",
]
