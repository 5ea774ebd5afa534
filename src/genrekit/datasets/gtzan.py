"""GTZAN in every layout people have (mirdata's ``gtzan_genre``): the original ``genres/<g>/*.au`` tree,
Kaggle's ``Data/`` folder (``genres_original``, ``images_original``, the two feature tables) and
``../shared/data/gtzan``; what Kaggle's files say about each track (an image's level and length from
the 30 s table) and which file a track is read from when a root holds both audio and images."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from genrekit import GENRES
from genrekit.datasets.folders import scan_audio
from genrekit.datasets.tracks import Track, genre_of, track_id
from genrekit.errors import DatasetError

__all__ = [
    "CHECKSUMS", "GTZAN", "IMAGE_OR_AUDIO", "image_or_audio_tracks", "kaggle_levels", "scan_images", "shared_root",
]

# sha256 of files whose exact content we know (mirdata-style checksums).
CHECKSUMS = {"features_30_sec.csv": "3fb2e38c281764076c7c1ec79f9e73956a913cffaa38e44cfb94282291e72cfa"}
IMAGE_OR_AUDIO = ("auto", "audio", "images")


def shared_root() -> Path | None:
    """The real GTZAN data beside the project (``../shared/data/gtzan``), or None when absent.

    ``GENREKIT_SHARED`` overrides where ``shared`` is.
    """
    candidates = []
    if os.environ.get("GENREKIT_SHARED"):
        candidates.append(Path(os.environ["GENREKIT_SHARED"]))
    repo = Path(__file__).resolve().parents[3]  # src/genrekit/datasets/gtzan.py
    candidates += [Path.cwd() / ".." / "shared", repo / ".." / "shared"]
    for c in candidates:
        g = c / "data" / "gtzan"
        if g.is_dir():
            return g.resolve()
    return None


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
        from genrekit.store import file_digest

        out = {}
        for name, digest in CHECKSUMS.items():
            f = self.root / name
            if f.is_file():
                out[name] = file_digest(f) == digest
        return out


def kaggle_levels(csv: str | os.PathLike) -> dict[str, tuple[float, int]]:
    """track id -> (rms_mean, length in samples) from Kaggle's 30 s table: an image's level and duration,
    which the PNG itself lost (its colours are normalised to the clip's peak)."""
    import csv as csvlib

    out = {}
    with open(csv, newline="", encoding="utf-8") as f:
        for row in csvlib.DictReader(f):
            tid = track_id(row.get("filename", ""))
            if tid and row.get("rms_mean") and row.get("length"):
                out[tid] = (float(row["rms_mean"]), int(float(row["length"])))
    return out


def image_or_audio_tracks(
    root: str | os.PathLike, *, source: str = "auto", genres_only: bool = False,
) -> tuple[list[tuple[Track, str]], Path | None]:
    """Every track under ``root`` once, with the kind of file it is read from (``"image"`` or ``"audio"``),
    and the image folder found (None: no images).

    ``source="images"``: Kaggle's ``images_original`` under ``root`` or any folder of GTZAN-named PNGs
    (DatasetError when there is none); ``"audio"``: folder-per-label audio under ``root``; ``"auto"``: a
    track's image where it has one, else its audio (on a GTZAN root, from its audio folders). Images
    come first: one time resolution for every track that has one (``scripts/image_vs_audio.py``)."""
    root = Path(root)
    if source not in IMAGE_OR_AUDIO:
        raise DatasetError(f"unknown data source {source!r}: use {', '.join(IMAGE_OR_AUDIO)}")
    image_root = None
    if source in ("auto", "images"):
        if (root / "images_original").is_dir():
            image_root = root / "images_original"
        elif root.is_dir() and any(root.rglob("*.png")):
            image_root = root
        elif source == "images":
            raise DatasetError(f"{root}: holds no Kaggle images (images_original/<genre>/*.png)")
    items: list[tuple[Track, str]] = []
    if image_root is not None:
        items += [(t, "image") for t in scan_images(image_root)]
    if source != "images":
        have = {t.track_id for t, _ in items}
        if image_root is not None:
            audio_dirs = GTZAN(root).audio_dirs if root == image_root.parent else []
        else:
            audio_dirs = [root]
        for t in (scan_audio(audio_dirs, genres_only=genres_only) if audio_dirs else []):
            if t.track_id not in have:
                items.append((t, "audio"))
    return items, image_root
