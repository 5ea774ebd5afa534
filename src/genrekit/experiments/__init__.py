"""The experiment layer: runs under honest protocols, saved-model scoring, comparisons, fine-tuning.

One runner for every model (``run(protocol, model, data, seed=, out=)`` -> :class:`RunResult`), one
metrics schema (:mod:`~genrekit.experiments.schema`), and everything else built on the two:

* :mod:`~genrekit.experiments.data` -- data sources: feature tables, log-mel data, both (hybrid);
* :mod:`~genrekit.experiments.factories` -- how a run builds each fold's model from a name;
* :mod:`~genrekit.experiments.runner` -- :func:`run` and :func:`fit_fold`;
* :mod:`~genrekit.experiments.results` -- :class:`FoldSpec`, :class:`FoldResult`, :class:`RunResult`;
* :mod:`~genrekit.experiments.schema` -- metrics.json written and read back (old run folders too);
* :mod:`~genrekit.experiments.scoring` -- a saved model on a protocol's test side (``genrekit evaluate``);
* :mod:`~genrekit.experiments.compare` -- models, saved runs and ensembles on the same folds;
* :mod:`~genrekit.experiments.finetune` -- transfer learning onto new labels.

The modules import torch and scikit-learn only inside the functions that need them.
"""

from __future__ import annotations

from typing import Any

from genrekit.experiments.compare import (
    DEFAULT_COMPARE_MODELS,
    compare,
    compare_models,
    compare_saved,
    comparison_markdown,
    write_comparison,
)
from genrekit.experiments.data import (
    EmbeddingSource,
    FeatureSource,
    HybridSource,
    LogmelData,
    LogmelSource,
    audio_logmel_cached,
    image_band_features,
    join_image_features,
    load_logmels,
    load_table,
    make_slices,
)
from genrekit.experiments.factories import DeepFactory, HybridFactory, TabularFactory, as_factory
from genrekit.experiments.finetune import finetune, finetune_musicnn
from genrekit.experiments.results import FoldResult, FoldSpec, RunResult, summarise
from genrekit.experiments.runner import (
    CV_PROTOCOLS,
    HOLDOUT_PROTOCOLS,
    as_source,
    fit_fold,
    permutation_importance,
    protocol_folds,
    run,
)
from genrekit.experiments.schema import read_metrics, run_record, trained_tracks, write_run
from genrekit.experiments.scoring import evaluate_model, score_tracks, track_sources

__all__ = [
    "CV_PROTOCOLS",
    "DEFAULT_COMPARE_MODELS",
    "HOLDOUT_PROTOCOLS",
    "DeepFactory",
    "EmbeddingSource",
    "FeatureSource",
    "FoldResult",
    "FoldSpec",
    "HybridFactory",
    "HybridSource",
    "LogmelData",
    "LogmelSource",
    "RunResult",
    "TabularFactory",
    "as_factory",
    "as_source",
    "audio_logmel_cached",
    "compare",
    "compare_models",
    "compare_saved",
    "comparison_markdown",
    "evaluate_model",
    "finetune",
    "finetune_musicnn",
    "fit_fold",
    "image_band_features",
    "join_image_features",
    "load_logmels",
    "load_table",
    "make_slices",
    "open_data",
    "permutation_importance",
    "protocol_folds",
    "read_metrics",
    "run",
    "run_record",
    "score_tracks",
    "summarise",
    "track_sources",
    "trained_tracks",
    "write_comparison",
    "write_run",
]


def open_data(data: Any, model: Any, *, progress: bool = True, **options: Any):
    """``data`` (a path) opened as the data source ``model`` (a name or factory) reads, with ``options``
    (feature tables: ``image_root``, ``segment_seconds``; log-mel: ``source``, slice settings)."""
    return as_source(data, as_factory(model), progress=progress, **options)
