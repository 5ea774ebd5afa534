"""Folder-per-label audio (mirdata's ``track`` layouts without an index): the original GTZAN tree, Kaggle's
``genres_original``, mixed-format trees and a user's ``<label>/<any name>.<ext>``, all read the same way."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path

from genrekit.datasets.tracks import KNOWN_CORRUPT, Track, label_from_path, track_id
from genrekit.errors import AudioError

__all__ = ["scan_audio"]


def scan_audio(paths: Iterable[str | os.PathLike] | str | os.PathLike, *, genres_only: bool = False) -> list[Track]:
    """Audio tracks under ``paths`` in any folder-per-label layout.

    Handles the original GTZAN tree (``genres/<g>/<g>.000NN.au``), Kaggle's ``genres_original/<g>/*.wav``,
    mixed-format trees like ``../shared/data/gtzan/audio`` and a user's ``<label>/<any name>.<ext>``.
    Labels come from the parent folder. GTZAN files get canonical ids; other files get their path
    relative to the scanned folder (without extension). Known-corrupt clips that fail to open are
    skipped with a warning; a second file with the same GTZAN id (e.g. .wav and .flac) is skipped too.
    """
    from genrekit import audio

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    tracks: list[Track] = []
    seen: dict[str, Path] = {}
    for base in paths:
        base = Path(base)
        found, skipped = audio.find_audio([base], unique=False)
        for where, exc in skipped:  # regular files only: a FIFO or a link to a device is never opened
            if where == str(base):
                raise exc
            warnings.warn(f"skipping {exc}", stacklevel=2)
        for f in map(Path, found):
            tid = track_id(f.name)
            if tid is None:
                rel = f.relative_to(base) if base.is_dir() else Path(f.name)
                tid = rel.with_suffix("").as_posix()
            if tid in KNOWN_CORRUPT:
                try:
                    audio.info(f)
                except AudioError as exc:
                    warnings.warn(f"skipping {f}: {KNOWN_CORRUPT[tid]} ({exc})", stacklevel=2)
                    continue
            if tid in seen:
                warnings.warn(f"skipping {f}: track {tid} already read from {seen[tid]}", stacklevel=2)
                continue
            seen[tid] = f
            tracks.append(Track(f, tid, label_from_path(f, genres_only=genres_only)))
    return tracks
