"""One M3U8 playlist per genre, from fresh predictions or a saved ``genrekit predict`` output.

Playlists are UTF-8 extended M3U (``#EXTM3U``, ``#EXTINF:seconds,Artist - Title``) with paths relative to
the playlist's folder and ``/`` separators, so the folder can move with the music (or be copied to a
player) and still resolve. Each is written atomically. Every playlist genrekit writes names itself on its
second line (``#PLAYLIST:Rock (genrekit)``), so a rerun can remove its own playlists of genres that no
longer have tracks without ever touching a playlist someone else wrote.

A playlist of the same name that genrekit did not write (no marker line: the user's own ``Rock.m3u8``)
is never replaced: genrekit's goes beside it as ``Rock (genrekit).m3u8`` (see :func:`write_playlists`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genrekit.errors import GenrekitError
from genrekit.library.tagging import genre_name
from genrekit.store import ForeignFileError, atomic_write_text

MARK = " (genrekit)"


class PlaylistError(GenrekitError):
    """Saved predictions cannot be read, or the output folder cannot be used."""


# ============================================================================================ inputs


def is_saved_predictions(path: str | os.PathLike) -> bool:
    """A ``predict`` JSON file, a Parquet file, or a Parquet dataset folder (with ``_manifest.json``)."""
    p = Path(path)
    return (p.is_file() and p.suffix.lower() in (".json", ".parquet")) or (p.is_dir() and (p / "_manifest.json").is_file())


def load_predictions(path: str | os.PathLike, *, base: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Records (``file``, ``genre``, ``scores``, ``duration_s``, ``error``) from a saved predict output.

    Relative ``file`` paths are taken relative to ``base`` (default: the current folder, where
    ``genrekit predict`` was presumably run)."""
    p = Path(path)
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PlaylistError(f"{p}: not a readable predict JSON output ({exc})") from None
        if isinstance(data, dict):
            data = [data]  # one file's record, as the REST API answers
        if not isinstance(data, list) or not all(isinstance(r, dict) and "file" in r for r in data):
            raise PlaylistError(f"{p}: expected a list of predict records (genrekit predict --format json)")
        records = data
    else:
        records = _parquet_records(p)
    root = Path(base) if base is not None else Path.cwd()
    out = []
    for r in records:
        f = Path(str(r["file"]))
        out.append({**r, "file": str(f if f.is_absolute() else root / f)})
    return out


def _parquet_records(p: Path) -> list[dict[str, Any]]:
    from genrekit.parquet_out import read_dataset, require_pyarrow

    _, pq = require_pyarrow()
    try:
        table = read_dataset(p) if p.is_dir() else pq.read_table(p)
    except GenrekitError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many kinds on a bad file
        raise PlaylistError(f"{p}: not a readable Parquet predict output ({exc})") from None
    cols = table.column_names
    if "file" not in cols or "genre" not in cols:
        raise PlaylistError(f"{p}: no 'file' and 'genre' columns: not a genrekit predict output")
    score_cols = [c for c in cols if c.startswith("score_")]
    rows = table.to_pylist()
    return [{"file": r["file"], "genre": r["genre"], "duration_s": r.get("duration_s"), "error": None,
             "scores": {c[len("score_"):]: r[c] for c in score_cols if r.get(c) is not None}} for r in rows]


# ============================================================================================ grouping


@dataclass
class Entry:
    file: str
    genre: str
    score: float | None
    duration_s: float | None


def group_by_genre(records: Iterable[dict[str, Any]], *, min_confidence: float = 0.0, top_k: int = 1,
                   labels: str = "display") -> tuple[dict[str, list[Entry]], list[dict[str, Any]]]:
    """Genre name -> its tracks; and the records left out (errors, below ``min_confidence``).

    A track goes into the playlists of its ``top_k`` best genres that score at least ``min_confidence``."""
    groups: dict[str, list[Entry]] = {}
    left: list[dict[str, Any]] = []
    for r in records:
        if r.get("error") or not r.get("genre"):
            left.append({**r, "reason": r.get("error") or "no genre"})
            continue
        scores = r.get("scores") or {r["genre"]: None}
        ranked = sorted(scores.items(), key=lambda gs: -(gs[1] if gs[1] is not None else 1.0))
        picked = [(g, s) for g, s in ranked[:top_k] if s is None or s >= min_confidence]
        if not picked:
            left.append({**r, "reason": f"confidence {ranked[0][1]:.2f} below {min_confidence:.2f}"})
            continue
        for g, s in picked:
            groups.setdefault(genre_name(g, labels=labels), []).append(
                Entry(r["file"], g, None if s is None else float(s), r.get("duration_s")))
    return groups, left


# ============================================================================================ writing


def playlist_name(genre: str) -> str:
    """A file name for a genre on any file system (``R&B/Soul`` -> ``R&B-Soul.m3u8``)."""
    safe = re.sub(r'[\\/:*?"<>|\x00-\x1f]+', "-", genre).strip(" .") or "Unknown"
    return f"{safe}.m3u8"


def _title(path: str) -> str:
    """``Artist - Title`` from the file's tags where it has them, else the file name's stem."""
    try:
        import mutagen

        f = mutagen.File(path, easy=True)
        if f is not None and f.tags is not None:
            title = (f.tags.get("title") or [""])[0]
            artist = (f.tags.get("artist") or [""])[0]
            if title:
                return f"{artist} - {title}" if artist else title
    except Exception:  # noqa: BLE001 - a title is a nicety; the playlist entry stands without it
        pass
    return Path(path).stem


def _relative(path: str, folder: Path) -> str:
    try:
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(folder))
    except ValueError:  # another drive (Windows): only an absolute path can work
        rel = os.path.abspath(path)
    return rel.replace(os.sep, "/")


def render_m3u8(genre: str, entries: list[Entry], folder: Path, *, titles: bool = True) -> str:
    lines = ["#EXTM3U", f"#PLAYLIST:{genre}{MARK}"]
    for e in entries:
        secs = -1 if e.duration_s is None else int(round(e.duration_s))
        name = _title(e.file) if titles else Path(e.file).stem
        lines.append(f"#EXTINF:{secs},{name.replace(chr(10), ' ')}")
        lines.append(_relative(e.file, folder))
    return "\n".join(lines) + "\n"


def is_genrekit_playlist(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            head = [f.readline(), f.readline()]
    except (OSError, UnicodeDecodeError):
        return False
    return head[0].strip() == "#EXTM3U" and head[1].startswith("#PLAYLIST:") and head[1].rstrip("\n").endswith(MARK)


def beside_name(name: str) -> str:
    """Where genrekit's playlist goes when ``name`` is taken by someone else's: ``Rock (genrekit).m3u8``."""
    stem, ext = os.path.splitext(name)
    return f"{stem}{MARK}{ext}"


def write_playlists(groups: dict[str, list[Entry]], out_dir: str | os.PathLike, *, sort: str = "path",
                    titles: bool = True, prune: bool = True) -> dict[str, Path]:
    """Write one playlist per genre into ``out_dir``; with ``prune``, remove genrekit's own playlists of
    genres that have no tracks now. Returns genre -> playlist path.

    Only playlists genrekit wrote (:func:`is_genrekit_playlist`) are replaced or pruned; where the name
    is someone else's file the playlist is written beside it (:func:`beside_name`: the returned path
    says so), and where that name is taken too, PlaylistError names both files."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise PlaylistError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    names: dict[str, str] = {}
    refused: list[str] = []
    for genre in sorted(groups):
        name = playlist_name(genre)
        if name.lower() in names:
            raise PlaylistError(f"genres {names[name.lower()]!r} and {genre!r} would share the playlist {name}")
        names[name.lower()] = genre
        entries = groups[genre]
        if sort == "confidence":
            entries = sorted(entries, key=lambda e: (-(e.score or 0.0), e.file))
        else:
            entries = sorted(entries, key=lambda e: e.file)
        text = render_m3u8(genre, entries, out, titles=titles)
        path = out / name
        try:
            atomic_write_text(path, text, replace=is_genrekit_playlist)
        except ForeignFileError:
            path = out / beside_name(name)
            try:
                atomic_write_text(path, text, replace=is_genrekit_playlist)
            except ForeignFileError:
                refused.append(f"{out / name} and {path} are both files genrekit did not write; left as they are "
                               f"(move one away to get the {genre} playlist)")
                continue
        written[genre] = path
    if refused:
        raise PlaylistError("; ".join(refused))
    if prune:
        keep = {p.name.lower() for p in written.values()}
        for old in out.glob("*.m3u8"):
            if old.name.lower() not in keep and is_genrekit_playlist(old):
                old.unlink()
    return written
