"""One exception hierarchy, so callers can catch genrekit's errors and nothing else.

Messages name the file and, where there is one, the fix.
"""

from __future__ import annotations


class GenrekitError(Exception):
    """Base class of every error genrekit raises on purpose."""


class AudioError(GenrekitError):
    """A file or buffer could not be turned into a usable waveform."""


class AudioFileNotFoundError(AudioError, FileNotFoundError):
    """The path does not exist (or is not a regular file)."""


class UnsupportedFormatError(AudioError):
    """The container or codec is not one genrekit can decode."""


class DecodeError(AudioError):
    """The file claims to be audio but cannot be decoded (corrupt, truncated, not audio)."""


class EmptyAudioError(AudioError):
    """The audio holds no samples, or fewer than one analysis frame."""


class NonFiniteAudioError(AudioError):
    """The samples contain NaN or infinity."""


class AmplitudeError(NonFiniteAudioError):
    """Float samples far beyond full scale (e.g. 1e30): not audio, and their power would overflow to inf."""


class DurationLimitError(AudioError):
    """The decoded audio runs past a duration limit (decoding stops there, so a small file that decodes
    to hours cannot fill memory or hold a worker)."""


class SilentAudioError(AudioError):
    """No window of the audio is above the silence threshold: there is no music to give a genre to."""


class TimeBudgetError(GenrekitError):
    """Work on one request ran past its time budget and was stopped."""


class DatasetError(GenrekitError):
    """A dataset, table or layout is malformed or incomplete."""


class SplitError(GenrekitError):
    """A split is inconsistent, e.g. a track sits on both sides (leakage)."""


class LeakageError(SplitError):
    """A track id appears on both sides of a split."""


class ModelError(GenrekitError):
    """A model file is missing, tampered with, truncated or does not match its metadata."""


class FeatureError(GenrekitError):
    """Features could not be computed from the given input."""
