"""Decode any audio to a mono float32 waveform at a requested rate: the signal layer's entry point.

One opener for a path, bytes or a binary file object (:mod:`.source`), one rule that picks the decoder
and bounds memory per block (:mod:`.decode`), and on them :func:`load`, :func:`stream`,
:func:`decoded_seconds`, resampling and windows (:mod:`.core`); one file finder for every command that
walks folders (:mod:`.files`).
"""

from __future__ import annotations

from genrekit.audio.core import (
    StreamResampler,
    Window,
    decoded_seconds,
    iter_windows,
    load,
    resample,
    stream,
    validate,
    windows,
)
from genrekit.audio.decode import (
    MAX_AMPLITUDE,
    MAX_RATE,
    MAX_READ_SAMPLES,
    MIN_RATE,
    AudioInfo,
    header_info,
    native_blocks,
)
from genrekit.audio.files import find_audio
from genrekit.audio.source import (
    AUDIO_EXTENSIONS,
    AV_EXTENSIONS,
    SOUNDFILE_EXTENSIONS,
    Source,
    check_path,
    open_source,
    regular_file_problem,
)
from genrekit.dsp import N_FFT, SR
from genrekit.errors import (
    AmplitudeError,
    AudioError,
    AudioFileNotFoundError,
    DecodeError,
    DurationLimitError,
    EmptyAudioError,
    NonFiniteAudioError,
    UnsupportedFormatError,
)
from genrekit.names import display_name, text_name


def info(path) -> AudioInfo:
    """Header facts (rate, channels, frames) of a file without decoding the samples."""
    return header_info(open_source(path))


__all__ = [
    "AUDIO_EXTENSIONS",
    "AV_EXTENSIONS",
    "AmplitudeError",
    "AudioError",
    "AudioFileNotFoundError",
    "AudioInfo",
    "DecodeError",
    "DurationLimitError",
    "EmptyAudioError",
    "MAX_AMPLITUDE",
    "MAX_RATE",
    "MAX_READ_SAMPLES",
    "MIN_RATE",
    "N_FFT",
    "NonFiniteAudioError",
    "SOUNDFILE_EXTENSIONS",
    "SR",
    "Source",
    "StreamResampler",
    "UnsupportedFormatError",
    "Window",
    "check_path",
    "decoded_seconds",
    "display_name",
    "find_audio",
    "info",
    "iter_windows",
    "load",
    "native_blocks",
    "open_source",
    "regular_file_problem",
    "resample",
    "stream",
    "text_name",
    "validate",
    "windows",
]
