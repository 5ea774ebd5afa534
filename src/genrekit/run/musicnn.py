"""The old name of :mod:`genrekit.run.networks` (tags and embeddings were musicnn's only): its names
under the ones they had, for code written against them. New code imports ``genrekit.run.networks``."""

from __future__ import annotations

from genrekit.networks import BACKENDS
from genrekit.networks.musicnn.analysis import (
    CACHE_VERSION,
    MusicnnAnalysis,
    MusicnnSettings,
    analysis_cache,
    musicnn_analysis,
    patch_levels,
)
from genrekit.networks.musicnn.spec import LAYERS
from genrekit.run.networks import (
    NetworkTask,
    analyses,
    check_layers,
    embedding_results,
    embedding_rows,
    embedding_rows_columns,
    embedding_settings,
    error_text,
    network_embeddings,
    network_tags,
    tag_error_record,
    tag_record,
    tag_results,
)

EMBED_LAYERS: dict[str, int] = LAYERS
MUSICNN_BACKENDS: tuple[str, ...] = BACKENDS
MUSICNN_CACHE_VERSION = CACHE_VERSION
MusicnnTask = NetworkTask
musicnn_analyses = analyses
musicnn_cache = analysis_cache
musicnn_tags = network_tags
musicnn_embeddings = network_embeddings

__all__ = [
    "EMBED_LAYERS", "MUSICNN_BACKENDS", "MUSICNN_CACHE_VERSION", "MusicnnAnalysis", "MusicnnSettings", "MusicnnTask",
    "check_layers", "embedding_results", "embedding_rows", "embedding_rows_columns", "embedding_settings",
    "error_text", "musicnn_analyses", "musicnn_analysis", "musicnn_cache", "musicnn_embeddings", "musicnn_tags",
    "patch_levels", "tag_error_record", "tag_record", "tag_results",
]
