"""GTZAN in every layout people have, the Kaggle tables and images, and folder-per-label music.

Everything is keyed by a canonical track id (``blues.00012``) so audio, feature rows, images and split
lists can be joined, and so splits can keep every segment of a track on one side.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genrekit import GENRES
from genrekit.errors import AudioError, DatasetError
from genrekit.features import FEATURE_COLUMNS

# Kaggle's copy of this clip does not decode; skipped with a warning wherever it fails.
KNOWN_CORRUPT = {"jazz.00054": "Kaggle's genres_original/jazz/jazz.00054.wav is a known-corrupt file"}

# sha256 of files whose exact content we know (mirdata-style checksums).
CHECKSUMS = {"features_30_sec.csv": "3fb2e38c281764076c7c1ec79f9e73956a913cffaa38e44cfb94282291e72cfa"}

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
    g = tid.split(".", 1)[0]
    return g if g in GENRES else None


@dataclass(frozen=True)
class Track:
    """One item of a dataset: where it is, its canonical id and its label ('' when unknown)."""

    path: Path
    track_id: str
    label: str


# ---------------------------------------------------------------------------------------------- shared data


def shared_root() -> Path | None:
    """The real GTZAN data beside the project (``../shared/data/gtzan``), or None when absent.

    ``GENREKIT_SHARED`` overrides where ``shared`` is.
    """
    candidates = []
    if os.environ.get("GENREKIT_SHARED"):
        candidates.append(Path(os.environ["GENREKIT_SHARED"]))
    candidates += [Path.cwd() / ".." / "shared", Path(__file__).resolve().parents[2] / ".." / "shared"]
    for c in candidates:
        g = c / "data" / "gtzan"
        if g.is_dir():
            return g.resolve()
    return None


# ---------------------------------------------------------------------------------------------- audio


def label_from_path(path: str | os.PathLike, *, genres_only: bool = True) -> str:
    """The parent folder's name as label (GTZAN and folder-per-label layouts); '' if not a genre."""
    parent = Path(path).parent.name
    if genres_only:
        return parent if parent in GENRES else ""
    return parent


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


def scan_images(root: str | os.PathLike) -> list[Track]:
    """Kaggle's ``images_original/<genre>/<genre>000NN.png`` tree (999 clips; jazz00054 is missing)."""
    root = Path(root)
    if (root / "images_original").is_dir():
        root = root / "images_original"
    if not root.is_dir():
        raise DatasetError(f"{root}: no such image folder (expected Kaggle's images_original/<genre>/*.png)")
    from genrekit import audio

    found, skipped = audio.find_audio([root], extensions=frozenset({".png"}))  # the one finder: regular files
    for _where, exc in skipped:
        warnings.warn(f"skipping {exc}", stacklevel=2)
    out = []
    for f in sorted(map(Path, found)):
        tid = track_id(f.name)
        if tid is None:
            continue
        out.append(Track(f, tid, f.parent.name if f.parent.name in GENRES else genre_of(tid) or ""))
    if not out:
        raise DatasetError(f"{root}: holds no GTZAN-named PNG images (like blues/blues00012.png)")
    return out


# ---------------------------------------------------------------------------------------------- tables


@dataclass
class FeatureTable:
    """A feature table: one row per track (30 s table) or per segment (3 s table)."""

    X: np.ndarray
    y: np.ndarray
    track_ids: np.ndarray
    filenames: np.ndarray
    columns: list[str]
    segments: np.ndarray | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def is_segmented(self) -> bool:
        return len(np.unique(self.track_ids)) < len(self.track_ids)

    def fingerprint(self) -> str:
        """sha256 of the values, labels and ids: identifies the exact data a run saw."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.X, dtype=np.float64).tobytes())
        h.update("\n".join(map(str, self.y)).encode())
        h.update("\n".join(map(str, self.track_ids)).encode())
        h.update("\n".join(self.columns).encode())
        return h.hexdigest()

    def subset(self, idx) -> FeatureTable:
        return FeatureTable(
            self.X[idx], self.y[idx], self.track_ids[idx], self.filenames[idx], list(self.columns),
            None if self.segments is None else self.segments[idx], self.source, dict(self.extra),
        )


def table_rows(table: FeatureTable, track_ids: Iterable[str]) -> dict[str, int]:
    """The row of each of ``track_ids`` in a one-row-per-track table. GTZAN ids match the table's as they
    are; a folder dataset's ``genre/name`` ids match its file name. Ids without a row are left out."""
    ids = {str(t): k for k, t in enumerate(table.track_ids)}
    rows = {str(t): ids.get(str(t), ids.get(str(t).rsplit("/", 1)[-1])) for t in track_ids}
    return {t: k for t, k in rows.items() if k is not None}


def load_feature_table(
    path: str | os.PathLike,
    *,
    columns: list[str] | None = None,
    labels: Iterable[str] | None = None,
    min_classes: int = 2,
) -> FeatureTable:
    """Read a Kaggle-style feature CSV (``features_30_sec.csv``, ``features_3_sec.csv`` or ours).

    Checked, each with an error naming the culprit: missing file or columns, non-numeric or NaN/inf
    values, empty labels, labels outside ``labels`` (GTZAN tables: the ten genres, and the genre in the
    file name must match), fewer than ``min_classes`` classes.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: feature table not found")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable CSV ({exc})") from None
    columns = list(columns or FEATURE_COLUMNS)
    missing = [c for c in ["filename", *columns, "label"] if c not in df.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}")
    if df.empty:
        raise DatasetError(f"{path}: the table has no rows")
    values = df[columns].apply(pd.to_numeric, errors="coerce")
    bad = ~np.isfinite(values.to_numpy(dtype=np.float64))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DatasetError(
            f"{path}: {int(bad.sum())} missing/non-numeric/infinite value(s), first in column "
            f"{columns[c]!r} at row {r + 2} ({df['filename'].iloc[r]})"
        )
    y = df["label"].astype(str).str.strip().to_numpy()
    empty = np.flatnonzero((y == "") | (y == "nan"))
    if empty.size:
        raise DatasetError(f"{path}: empty label at row {empty[0] + 2} ({df['filename'].iloc[empty[0]]})")
    filenames = df["filename"].astype(str).to_numpy()
    parsed = [parse_name(f) for f in filenames]
    gtzan = all(p is not None for p in parsed)
    if labels is None and gtzan:
        labels = GENRES
    if labels is not None:
        allowed = set(labels)
        unknown = sorted(set(y) - allowed)
        if unknown:
            r = int(np.flatnonzero(y == unknown[0])[0])
            raise DatasetError(
                f"{path}: unknown label(s) {', '.join(map(repr, unknown))} (first at row {r + 2}); "
                f"expected one of {', '.join(sorted(allowed))}"
            )
    if gtzan:
        tids = np.array([p[0] for p in parsed])
        segs = np.array([-1 if p[1] is None else p[1] for p in parsed])
        mismatch = np.flatnonzero([genre_of(t) != lab for t, lab in zip(tids, y, strict=True)])
        if mismatch.size:
            r = int(mismatch[0])
            raise DatasetError(f"{path}: row {r + 2}: file {filenames[r]} is labelled {y[r]!r}")
    else:
        # our own tables: "<track>.<segment>.<ext>" naming is not guaranteed; track id column wins
        tids = df["track_id"].astype(str).to_numpy() if "track_id" in df.columns else np.array(
            [Path(f).with_suffix("").as_posix() for f in filenames]
        )
        segs = df["segment"].to_numpy() if "segment" in df.columns else None
    n_classes = len(set(y))
    if n_classes < min_classes:
        raise DatasetError(f"{path}: only {n_classes} class ({', '.join(sorted(set(y)))}); need at least {min_classes}")
    dup = _first_duplicate(list(zip(tids, segs if segs is not None else [None] * len(tids), strict=True)))
    if dup is not None:
        raise DatasetError(f"{path}: row for {dup[0]} (segment {dup[1]}) appears twice")
    return FeatureTable(
        X=values.to_numpy(dtype=np.float64), y=y, track_ids=tids, filenames=filenames, columns=columns,
        segments=segs, source=str(path),
    )


def _first_duplicate(keys: list) -> object | None:
    seen = set()
    for k in keys:
        if k in seen:
            return k
        seen.add(k)
    return None


# ---------------------------------------------------------------------------------------------- GTZAN root


@dataclass
class GTZAN:
    """A GTZAN root in any of its layouts; finds what it holds.

    ``GTZAN("../shared/data/gtzan")`` holds audio, images, the 30 s table and splits;
    ``GTZAN("~/data/Data")`` (Kaggle) holds ``genres_original``, ``images_original`` and the tables;
    ``GTZAN("~/data/gtzan")`` (original) holds ``genres/<g>/*.au``.
    """

    root: Path

    def __post_init__(self):
        self.root = Path(self.root).expanduser()
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: no such dataset folder")

    @property
    def audio_dirs(self) -> list[Path]:
        found = [self.root / d for d in ("audio", "genres_original", "genres") if (self.root / d).is_dir()]
        if not found and any((self.root / g).is_dir() for g in GENRES):
            found = [self.root]
        return found

    @property
    def image_dir(self) -> Path | None:
        d = self.root / "images_original"
        return d if d.is_dir() else None

    def feature_csv(self, seconds: int = 30) -> Path | None:
        f = self.root / f"features_{seconds}_sec.csv"
        return f if f.is_file() else None

    def audio_tracks(self) -> list[Track]:
        return scan_audio(self.audio_dirs, genres_only=True)

    def image_tracks(self) -> list[Track]:
        return scan_images(self.image_dir) if self.image_dir else []

    def verify(self) -> dict[str, bool]:
        """Checksums of the files we know (True when they match)."""
        from genrekit.engine import file_digest

        out = {}
        for name, digest in CHECKSUMS.items():
            f = self.root / name
            if f.is_file():
                out[name] = file_digest(f) == digest
        return out
