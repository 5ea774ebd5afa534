"""GTZAN in every layout people have, the Kaggle tables and images, and folder-per-label music.

Everything is keyed by a canonical track id (``blues.00012``) so audio, feature rows, images and split
lists can be joined, and so splits can keep every segment of a track on one side. One module per
concern, as mirdata keeps one per dataset:

* :mod:`~genrekit.datasets.tracks` -- :class:`Track`, GTZAN ids from any of their file names, labels;
* :mod:`~genrekit.datasets.folders` -- :func:`scan_audio`: folder-per-label audio of any kind;
* :mod:`~genrekit.datasets.gtzan` -- :class:`GTZAN` roots (original, Kaggle, shared), Kaggle's images,
  checksums, what Kaggle's table says of each image (:func:`kaggle_levels`) and which file each track is
  read from when a root holds images and audio (:func:`image_or_audio_tracks`);
* :mod:`~genrekit.datasets.tables` -- :class:`FeatureTable` and :func:`load_feature_table`.
"""

from __future__ import annotations

from genrekit import GENRES
from genrekit.datasets.folders import scan_audio
from genrekit.datasets.gtzan import (
    CHECKSUMS,
    GTZAN,
    IMAGE_OR_AUDIO,
    image_or_audio_tracks,
    kaggle_levels,
    scan_images,
    shared_root,
)
from genrekit.datasets.tables import FEATURE_COLUMNS, FeatureTable, load_feature_table, table_rows
from genrekit.datasets.tracks import (
    KNOWN_CORRUPT,
    Track,
    genre_of,
    label_from_path,
    parse_name,
    segment_filename,
    track_id,
)

__all__ = [
    "CHECKSUMS", "FEATURE_COLUMNS", "GENRES", "GTZAN", "IMAGE_OR_AUDIO", "KNOWN_CORRUPT", "FeatureTable", "Track",
    "genre_of", "image_or_audio_tracks", "kaggle_levels", "label_from_path", "load_feature_table", "parse_name",
    "scan_audio", "scan_images", "segment_filename", "shared_root", "table_rows", "track_id",
]
