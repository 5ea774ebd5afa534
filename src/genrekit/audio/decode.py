"""Decoders: a :class:`~genrekit.audio.source.Source` to native-rate mono float32 blocks.

soundfile (libsndfile) handles wav/flac/ogg/au/aiff and seeks cheaply; PyAV (bundled FFmpeg) handles mp3,
m4a/aac/opus/webm and other containers (for mp3 it is as fast as libsndfile's mpg123 and, unlike it, does
not print decoder warnings to the terminal). One rule picks between them (:func:`native_blocks`).

Memory per block is bounded in seconds of audio whatever the header declares: reads are sized by
``block_seconds`` at the native rate and by :data:`MAX_READ_SAMPLES`, never by the declared length, and
rates outside :data:`MIN_RATE`..:data:`MAX_RATE` are refused (a 1 Hz WAV would otherwise resample each
sample into 22,050). A file that delivers less than its header declares is reported truncated.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from genrekit.audio.source import (
    AUDIO_EXTENSIONS,
    AV_EXTENSIONS,
    SOUNDFILE_EXTENSIONS,
    Source,
    mp3_declared_samples,
    mp3_head,
)
from genrekit.errors import AmplitudeError, DecodeError, NonFiniteAudioError, UnsupportedFormatError

# At most this many samples (all channels) per native read, whatever channel count a header declares:
# a WAV claiming 1024 channels would otherwise make one 65536-frame read allocate 256 MB.
MAX_READ_SAMPLES = 1 << 22

# Native sample rates genrekit decodes. Telephone audio is 8 kHz and studio masters reach 768 kHz; a rate
# outside this range is a damaged or hostile header, and resampling it would multiply memory.
MIN_RATE = 1_000
MAX_RATE = 768_000

# Float samples beyond this many times full scale are not audio (a float WAV at 1e30 would overflow every
# power spectrum to inf and write NaN features); integer formats cannot exceed 1.
MAX_AMPLITUDE = 1e6


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


def short(exc: BaseException) -> str:
    """The useful last line of a decoder's message (FFmpeg's without its errno and path)."""
    if getattr(exc, "strerror", None):
        return str(exc.strerror)
    msg = str(exc).strip().splitlines()
    return msg[-1] if msg else type(exc).__name__


def check_rate(sr: int, name: str) -> int:
    """Refuse a native rate no audio has (see :data:`MIN_RATE`), before any sample is read."""
    if not MIN_RATE <= sr <= MAX_RATE:
        raise UnsupportedFormatError(
            f"{name}: sample rate {sr} Hz is outside what genrekit decodes ({MIN_RATE}..{MAX_RATE} Hz); "
            "the header is damaged or the file is not ordinary audio"
        )
    return sr


def check_samples(y: np.ndarray, name: str) -> None:
    """Refuse NaN, infinity and float samples far beyond full scale (:data:`MAX_AMPLITUDE`)."""
    if not y.size:
        return
    peak = float(np.max(np.abs(y)))
    if peak <= MAX_AMPLITUDE:
        return
    if not np.isfinite(peak):
        raise NonFiniteAudioError(f"{name}: audio contains NaN or infinite samples")
    raise AmplitudeError(
        f"{name}: samples reach {peak:.3g}, far beyond full scale (±1; limit {MAX_AMPLITUDE:.0e}): "
        "not audio, or float data written without scaling"
    )


def to_mono(block: np.ndarray) -> np.ndarray:
    """(frames, channels) -> (frames,), averaging channels as librosa.to_mono does."""
    if block.ndim == 1:
        return block
    if block.shape[1] == 1:
        return block[:, 0]
    return block.mean(axis=1, dtype=np.float32)


# ---------------------------------------------------------------------------------------------- info


def header_info(src: Source) -> AudioInfo:
    """Header facts of a path source (rate, channels, frames) without decoding the samples."""
    if src.ext in SOUNDFILE_EXTENSIONS:
        import soundfile as sf

        try:
            with src.soundfile() as i:
                return AudioInfo(src.path or src.name, i.format, int(i.samplerate), int(i.channels), int(i.frames))
        except (RuntimeError, sf.LibsndfileError) as exc:
            raise DecodeError(f"{src.name}: not audio or corrupt ({short(exc)})") from None
    import av

    try:
        with src.container() as c:
            if not c.streams.audio:
                raise DecodeError(f"{src.name}: container holds no audio stream")
            s = c.streams.audio[0]
            check_decoder(s, src.name)
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
            return AudioInfo(src.path or src.name, c.format.name, sr, ch, int(round(seconds * sr)))
    except av.error.FFmpegError as exc:
        raise DecodeError(f"{src.name}: not audio or corrupt ({short(exc)})") from None


def check_decoder(stream, name: str) -> None:
    """PyAV gives a stream without a codec context when FFmpeg has no decoder for its codec."""
    if stream.codec_context is None or not (stream.codec_context.sample_rate or 0) > 0:
        raise DecodeError(f"{name}: unsupported or corrupt audio codec (no decoder for it, or no sample rate)")


# ---------------------------------------------------------------------------------------------- truncation

# libsndfile logs a chunk whose declared size exceeds what the file holds as "data : N (should be M)"
# (WAV), " SSND : N (should be M)" (AIFF) or "  Data Size   : N (should be M)" (AU).
_SF_CLAIM = re.compile(r"^\s*(?:data|SSND|Data Size)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def check_sf_claim(f, name: str) -> None:
    """A WAV/AIFF/AU whose header claims more sample bytes than the file holds was cut short (libsndfile
    would silently decode only what is there)."""
    m = _SF_CLAIM.search(getattr(f, "extra_info", "") or "")
    if m:
        claimed, held = int(m.group(1)), int(m.group(2))
        if claimed not in (0, 0xFFFFFFFF) and claimed > held:  # 0 / 0xFFFFFFFF: written by a streaming tool
            raise DecodeError(
                f"{name}: truncated: header declares {claimed} bytes of audio but the file holds only {held}; "
                "re-download or re-export the file"
            )


def check_mp3_length(head: bytes, decoded: int, name: str) -> None:
    """Raise when an MP3 decodes to clearly fewer samples than its header declares (cut short)."""
    declared = mp3_declared_samples(head)
    # encoder delay + padding (under 2 frames) are counted in the header but not decoded
    if declared and decoded + 3 * 1152 < declared:
        raise DecodeError(
            f"{name}: truncated: the MP3 header declares {declared} samples but only {decoded} could be "
            "decoded; re-download or re-encode the file"
        )


# ---------------------------------------------------------------------------------------------- decoding


def block_size(block_frames: int, block_seconds: float | None, sr: int, channels: int = 1) -> int:
    """Native frames per read: ``block_frames``, at most ``block_seconds`` of audio and
    :data:`MAX_READ_SAMPLES` samples over all channels."""
    n = block_frames if block_seconds is None else min(block_frames, int(block_seconds * sr))
    return max(1, min(n, MAX_READ_SAMPLES // max(1, int(channels))))


def sf_blocks(src: Source, *, offset: float, duration: float | None, block_frames: int,
              block_seconds: float | None) -> tuple[int, Iterator[np.ndarray]]:
    """Native-rate mono blocks from soundfile (opening raises RuntimeError / LibsndfileError when the
    data is not for libsndfile); checks that the file delivers what its header declares. The header's
    frame count never sizes a read, so a lying header cannot make it allocate."""
    f = src.soundfile()
    try:
        check_sf_claim(f, src.name)
        sr = check_rate(int(f.samplerate), src.name)
    except Exception:
        f.close()
        raise
    import soundfile as sf

    name = src.name
    start = int(round(offset * sr))
    declared = int(f.frames)
    stop = declared if duration is None else min(declared, start + int(round(duration * sr)))
    per_read = block_size(block_frames, block_seconds, sr, f.channels)

    def gen() -> Iterator[np.ndarray]:
        pos = start
        with f:
            try:
                if start:
                    if start >= declared:
                        return
                    f.seek(start)
                while pos < stop:
                    block = f.read(min(per_read, stop - pos), dtype="float32", always_2d=True)
                    if block.shape[0] == 0:
                        break
                    pos += block.shape[0]
                    yield to_mono(block)
            except (RuntimeError, sf.LibsndfileError) as exc:
                raise DecodeError(
                    f"{name}: truncated or corrupt: decoding failed after {pos / sr:.2f} s of the {declared / sr:.2f} s "
                    f"its header declares ({short(exc)})"
                ) from None
            if pos < stop and duration is None:
                raise DecodeError(f"{name}: truncated: header declares {declared} frames but only {pos} could be decoded")

    return sr, gen()


_INT_SCALE = {"s16": 32768.0, "s16p": 32768.0, "s32": 2147483648.0, "s32p": 2147483648.0, "u8": 128.0, "u8p": 128.0}


def _int_to_float(a: np.ndarray, fmt: str) -> np.ndarray:
    if fmt in _INT_SCALE:
        if fmt.startswith("u8"):
            a -= 128.0
        return a / _INT_SCALE[fmt]
    return a.astype(np.float32, copy=False)


def av_blocks(src: Source, *, offset: float, duration: float | None, block_frames: int,
              block_seconds: float | None, bad: str = "not audio or corrupt") -> tuple[int, Iterator[np.ndarray]]:
    """Native-rate mono blocks from PyAV/FFmpeg for containers libsndfile cannot read. An MP3 (or any
    in-memory data) that decodes to clearly less than its Xing/Info/VBRI header declares is truncated."""
    import av

    name = src.name
    try:
        container = src.container()
    except av.error.FFmpegError as exc:
        raise DecodeError(f"{name}: {bad} ({short(exc)})") from None
    try:
        if not container.streams.audio:
            raise DecodeError(f"{name}: container holds no audio stream")
        stream = container.streams.audio[0]
        check_decoder(stream, name)
        sr = check_rate(int(stream.rate or stream.codec_context.sample_rate), name)
    except Exception:
        container.close()
        raise
    per_block = block_size(block_frames, block_seconds, sr)
    skip = int(round(offset * sr))
    remaining = None if duration is None else int(round(duration * sr))
    check_length = duration is None and (src.in_memory or src.ext == ".mp3")

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
                    # planar (channels, n) or packed (1, n*channels)
                    a = frame.to_ndarray().astype(np.float32, copy=False)
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
                    if held >= per_block:
                        yield np.concatenate(pending)
                        pending, held = [], 0
                    if remaining is not None and remaining <= 0:
                        break
        except av.error.FFmpegError as exc:
            raise DecodeError(f"{name}: {bad} ({short(exc)})") from None
        if not got_any:
            raise DecodeError(f"{name}: no decodable audio frames")
        if check_length:
            check_mp3_length(mp3_head(src.read), decoded, name)
        if pending:
            yield np.concatenate(pending)

    return sr, gen()


def native_blocks(src: Source, *, offset: float = 0.0, duration: float | None = None, block_frames: int = 65536,
                  block_seconds: float | None = None) -> tuple[int, Iterator[np.ndarray]]:
    """(native rate, native-rate mono blocks) of ``src``: THE rule that picks the decoder.

    A path goes by its extension (libsndfile's, else FFmpeg; an Ogg libsndfile cannot read, e.g. Opus,
    goes to FFmpeg). Data in memory has no trustworthy name: MPEG-looking data and FFmpeg extensions go to
    FFmpeg, the rest to libsndfile first and FFmpeg when libsndfile does not recognise it."""
    import soundfile as sf

    kw = dict(offset=offset, duration=duration, block_frames=block_frames, block_seconds=block_seconds)
    if src.in_memory:
        if not (src.ext in AV_EXTENSIONS or src.looks_mpeg()):
            try:
                return sf_blocks(src, **kw)
            except (RuntimeError, sf.LibsndfileError):
                pass  # not for libsndfile: let FFmpeg try
        bad = "unsupported or corrupt" if src.ext not in AUDIO_EXTENSIONS else "not audio or corrupt"
        return av_blocks(src, bad=bad, **kw)
    if src.ext in SOUNDFILE_EXTENSIONS:
        ogg = src.ext in {".ogg", ".oga"}  # Ogg Opus and other codecs libsndfile lacks: FFmpeg tries
        try:
            return sf_blocks(src, **kw)
        except (RuntimeError, sf.LibsndfileError) as exc:
            if not ogg:
                raise DecodeError(f"{src.name}: not audio or corrupt ({short(exc)})") from None
        except DecodeError:
            if not ogg:
                raise
    return av_blocks(src, **kw)
