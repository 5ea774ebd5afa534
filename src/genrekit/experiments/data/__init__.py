"""Data sources of a run: what tracks exist, their labels, and how a set of tracks becomes model input.

A source turns TRACK ids into arrays, so the runner splits by track (never by row or slice) and any
model reads any source it can take:

* :class:`FeatureSource` -- a feature table (Kaggle's 30 s or 3 s CSV, or audio featurised on the way):
  one row per track or per segment; estimators get ``X [rows, columns]``.
* :class:`LogmelSource` -- one normalised log-mel matrix per track (:class:`LogmelData`, from audio,
  Kaggle images or both); estimators get slices ``X [n, n_mels, frames]`` with the track of each slice.
* :class:`EmbeddingSource` -- per-track mean musicnn vectors (from audio, or from Kaggle images);
* :class:`HybridSource` -- two or more of the above for the tracks they share; each member of a hybrid
  model gets the input of its kind and the members' track probabilities are combined by the hybrid rule.

One module per source: :mod:`~genrekit.experiments.data.tables` (feature tables and :class:`Arrays`),
:mod:`~genrekit.experiments.data.logmel`, :mod:`~genrekit.experiments.data.embeddings`,
:mod:`~genrekit.experiments.data.hybrid`; where the files of a dataset are and what Kaggle's files say
is :mod:`genrekit.datasets`' business.

Log-mel data sources (``load_logmels(source=...)``):

* ``audio`` -- any folder-per-label audio (``genrekit.datasets.scan_audio`` + ``genrekit.audio.load``);
  the model then sees full-resolution log-mels (``time_resolution="full"``).
* ``images`` -- Kaggle ``images_original`` PNGs, inverted onto the audio grid
  (:func:`genrekit.spectrogram.invert_image`, cached under the genrekit cache).
* ``auto`` (default) -- a GTZAN root holding both (like ``../shared/data/gtzan``): every clip that has an
  image is taken from its image, and clips that only have audio (jazz.00054 here) from the audio passed
  through :func:`~genrekit.spectrogram.to_image_grid`. One consistent representation for all 1000
  clips; the model's input description says ``time_resolution="image"`` so prediction treats new audio
  the same way. (Replacing images by audio where audio exists would mix two time resolutions in
  training; ``scripts/image_vs_audio.py`` measures why that matters.)
"""

from __future__ import annotations

from genrekit.experiments.data.embeddings import (
    EMBEDDING_LAYERS,
    EMBEDDING_MODEL,
    EMBEDDING_NAMESPACE,
    EMBEDDING_SOURCES,
    STANDARDISE_MODES,
    EmbeddingSource,
    domain_stats,
    embedding_cache_settings,
    embedding_table,
    standardise_rows,
)
from genrekit.experiments.data.hybrid import HYBRID_PARTS, HybridSource
from genrekit.experiments.data.logmel import (
    LOGMEL_CACHE_VERSION,
    LogmelData,
    LogmelSource,
    audio_logmel_cached,
    load_logmels,
    make_slices,
)
from genrekit.experiments.data.networks import (
    NETWORK_INPUTS,
    ZERO_SHOT_MAPS,
    NetworkSource,
    input_parts,
    network_table,
    zero_shot_model,
)
from genrekit.experiments.data.tables import (
    Arrays,
    FeatureSource,
    check_labels,
    image_band_features,
    image_feature_columns,
    join_image_features,
    load_table,
)

__all__ = [
    "EMBEDDING_LAYERS",
    "EMBEDDING_SOURCES",
    "STANDARDISE_MODES",
    "Arrays",
    "EmbeddingSource",
    "FeatureSource",
    "domain_stats",
    "embedding_cache_settings",
    "embedding_table",
    "standardise_rows",
    "HybridSource",
    "LogmelData",
    "LogmelSource",
    "audio_logmel_cached",
    "image_band_features",
    "image_feature_columns",
    "join_image_features",
    "load_logmels",
    "load_table",
    "make_slices",
    "EMBEDDING_MODEL",
    "EMBEDDING_NAMESPACE",
    "HYBRID_PARTS",
    "LOGMEL_CACHE_VERSION",
    "check_labels",
    "NETWORK_INPUTS",
    "ZERO_SHOT_MAPS",
    "NetworkSource",
    "input_parts",
    "network_table",
    "zero_shot_model",
]
