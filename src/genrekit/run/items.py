"""What a batch works on and how each item ends: the audio files under some paths (:func:`find_audio`),
one :class:`Result` per input, and :class:`ItemError`, why one item failed.

``ItemError`` lives here, in the run layer, because only batch work produces per-item failures (the
engines turn an exception in one item into one, so the batch goes on) and only its users (the library
tools, experiments, the faces) read them; nothing below layer 4 needs it. Nothing here imports numpy.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["ItemError", "Result", "error_text", "find_audio"]


@dataclass(frozen=True)
class ItemError:
    """Why one item failed: the exception's class name and message (picklable, printable)."""

    kind: str
    message: str

    def __str__(self) -> str:
        return ": ".join(part for part in (self.kind, self.message) if part)

    @classmethod
    def from_exception(cls, exc: BaseException) -> ItemError:
        return cls(type(exc).__name__, str(exc))


def error_text(path: str, err: ItemError) -> str:
    """An engine's error as a record's: the message when it names the file (genrekit's do), else
    ``path: Kind: message``."""
    from genrekit.names import display_name  # genrekit's messages name a file in its terminal form

    return err.message if err.message.startswith((path, display_name(path))) else f"{path}: {err}"


@dataclass(frozen=True)
class Result:
    """One input's outcome: its value (feature rows, an analysis, a prediction record) or why it failed.

    A failed prediction keeps its error record as ``value`` (it is part of ``predict``'s output).
    ``key`` is the cache key :func:`genrekit.run.cached.cached_map` filed it under (None elsewhere):
    the library tools keep the content digest with what they write."""

    input: Any
    value: Any = None
    error: ItemError | None = None
    cached: bool = False
    key: Any = None

    @property
    def ok(self) -> bool:
        return self.error is None


def find_audio(paths: Iterable[str | os.PathLike], *, unique: bool = True) -> tuple[list[str], list[tuple[str, ItemError]]]:
    """:func:`genrekit.audio.find_audio` (the one finder: regular files only, each once unless
    ``unique=False``), with the skipped paths (missing, special files) as :class:`ItemError`."""
    from genrekit import audio

    files, skipped = audio.find_audio(paths, unique=unique)
    return files, [(where, ItemError.from_exception(exc)) for where, exc in skipped]
