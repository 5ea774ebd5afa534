"""THE file finder: every command that walks folders (info, predict, features, tags, embed, tag,
playlists, similar, beets, Ray, dataset scans) gets its audio files here.

Only regular files are returned. Everything else (a FIFO named ``p.flac``, a link to ``/dev/zero`` named
``z.mp3``, a broken link, a device) is reported as skipped with the reason, found by ``stat`` alone:
nothing is opened, so no special file can block or flood a walk.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from genrekit.audio.source import AUDIO_EXTENSIONS, regular_file_problem
from genrekit.errors import AudioError, AudioFileNotFoundError
from genrekit.names import display_name, text_name


def find_audio(
    paths: Iterable[str | bytes | os.PathLike] | str | bytes | os.PathLike,
    *,
    unique: bool = True,
    extensions: frozenset[str] = AUDIO_EXTENSIONS,
) -> tuple[list[str], list[tuple[str, AudioError]]]:
    """Regular audio files under ``paths`` and what was skipped, with why: ``(files, skipped)``.

    Folders are walked recursively in sorted order; files there count when their extension is in
    ``extensions``. Hidden names (``.DS_Store``, AppleDouble ``._x.mp3``) are passed over silently and
    symlinked folders are not followed (a symlink loop cannot hang the walk); symlinked files are followed.
    A path given explicitly is returned whatever its extension (the decoder then says why it cannot read
    it) if it is a regular file. Skipped: missing paths, special files (FIFOs, devices, sockets, also
    through links), broken links, unreadable folders; each as ``(path, AudioError)`` naming the path.
    Paths are returned as lossless text (:func:`genrekit.names.text_name`); each once unless
    ``unique=False``.
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    files: list[str] = []
    skipped: list[tuple[str, AudioError]] = []
    seen: set[str] = set()

    def add(f: str) -> None:
        if not unique or f not in seen:
            seen.add(f)
            files.append(f)

    def skip(f: str, error: AudioError) -> None:
        skipped.append((f, error))

    for raw in paths:
        p = str(Path(text_name(raw)))  # as Path spells it (``./music/`` -> ``music``), as before
        if os.path.isdir(p):
            for f, error in _walk(p, extensions):
                skip(f, error) if error is not None else add(f)
            continue
        problem = regular_file_problem(p)
        if problem is None:
            add(p)
        else:
            cls, reason = problem
            if reason == "no such file":
                reason = "no such file or folder"
            skip(p, cls(f"{display_name(p)}: {reason}"))
    return files, skipped


def _walk(top: str, extensions: frozenset[str]) -> Iterator[tuple[str, AudioError | None]]:
    errors: list[OSError] = []
    for root, dirs, names in os.walk(top, followlinks=False, onerror=errors.append):
        for exc in errors:
            where = text_name(exc.filename) if exc.filename is not None else root
            yield where, AudioFileNotFoundError(f"{display_name(where)}: folder cannot be read ({exc.strerror or exc})")
        errors.clear()
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in extensions:
                continue
            f = str(Path(root) / name)
            problem = regular_file_problem(f)
            if problem is None:
                yield f, None
            else:
                cls, reason = problem
                yield f, cls(f"{display_name(f)}: {reason}")
    for exc in errors:  # the top folder itself could not be listed
        where = text_name(exc.filename) if exc.filename is not None else top
        yield where, AudioFileNotFoundError(f"{display_name(where)}: folder cannot be read ({exc.strerror or exc})")
