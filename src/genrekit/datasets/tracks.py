"""What identifies a track in every dataset layout: GTZAN's canonical ids parsed from any of their file
names, the label a folder gives, and :class:`Track` (path, id, label) that every scanner returns.

Everything is keyed by a canonical track id (``blues.00012``) so audio, feature rows, images and split
lists can be joined, and so splits can keep every segment of a track on one side.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from genrekit import GENRES

__all__ = ["KNOWN_CORRUPT", "Track", "genre_of", "label_from_path", "parse_name", "segment_filename", "track_id"]

# Kaggle's copy of this clip does not decode; skipped with a warning wherever it fails.
KNOWN_CORRUPT = {"jazz.00054": "Kaggle's genres_original/jazz/jazz.00054.wav is a known-corrupt file"}

_GENRE_RE = "|".join(GENRES)
# blues.00012.wav, blues00012.png, ./blues_00012.wav, blues.00012.3.wav (3-second table segment 3)
_ID_RE = re.compile(rf"(?:^|[/\\])(?:\./)?({_GENRE_RE})[._]?(\d{{5}})(?:\.(\d+))?(?:\.[A-Za-z0-9]+)?$")


def parse_name(name: str | os.PathLike) -> tuple[str, int | None] | None:
    """``(track_id, segment)`` for a GTZAN-style name, or None for any other name."""
    m = _ID_RE.search(str(name).strip())
    if not m:
        return None
    return f"{m.group(1)}.{m.group(2)}", (int(m.group(3)) if m.group(3) is not None else None)


def track_id(name: str | os.PathLike) -> str | None:
    """Canonical GTZAN track id (``blues.00012``) from any of its file names, else None."""
    parsed = parse_name(name)
    return parsed[0] if parsed else None


def segment_filename(path: str | os.PathLike, segment: int | None) -> str:
    """The file name of a row: the file's own, or ``<stem>.<i><ext>`` for window ``i`` as in Kaggle's
    3-second table (``blues.00000.wav`` -> ``blues.00000.3.wav``)."""
    p = Path(path)
    if segment is None:
        return p.name
    stem, ext = (p.name[: -len(p.suffix)], p.suffix) if p.suffix else (p.name, "")
    return f"{stem}.{segment}{ext}"


def genre_of(tid: str) -> str | None:
    """The genre of a GTZAN track id (``blues.00012`` -> ``blues``), None for any other id."""
    g = tid.split(".", 1)[0]
    return g if g in GENRES else None


@dataclass(frozen=True)
class Track:
    """One item of a dataset: where it is, its canonical id and its label ('' when unknown)."""

    path: Path
    track_id: str
    label: str


def label_from_path(path: str | os.PathLike, *, genres_only: bool = True) -> str:
    """The parent folder's name as label (GTZAN and folder-per-label layouts); '' if not a genre."""
    parent = Path(path).parent.name
    if genres_only:
        return parent if parent in GENRES else ""
    return parent
