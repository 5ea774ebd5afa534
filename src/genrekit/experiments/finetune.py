"""Fine-tuning: a trained deep model adapted to your own folder-per-label audio (transfer learning).

:func:`finetune` loads a genrekit deep model (or a hybrid, whose CNN member is taken), computes the user's
audio with the model's own input description (so an image-trained model gets ``to_image_grid`` audio),
replaces the output layer with one for the labels found (folder names), copies every other layer and
trains, only the head with ``freeze=True``. A stratified share of the tracks is held out by track for
early stopping and reported at slice and track level. It is one run of the runner
(:func:`genrekit.experiments.run`) with the hold-out as its one fold.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import GenrekitError, ModelError
from genrekit.experiments.results import FoldSpec, RunResult

__all__ = ["finetune", "finetune_musicnn", "holdout_split"]


def holdout_split(track_ids, labels, valid_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held out) of a hold-out of whole tracks, stratified when every label has >= 2
    tracks and the hold-out can take one of each, else random; no hold-out for ``valid_size`` 0."""
    n_valid = int(round(len(track_ids) * valid_size))
    if valid_size <= 0 or n_valid < 1 or len(track_ids) - n_valid < 1:
        return np.arange(len(track_ids)), np.array([], dtype=int)
    from sklearn.model_selection import train_test_split

    _, counts = np.unique(labels, return_counts=True)
    strat = labels if counts.min() >= 2 and n_valid >= len(counts) else None
    tr, va = train_test_split(np.arange(len(track_ids)), test_size=n_valid, stratify=strat, random_state=seed)
    return np.sort(tr), np.sort(va)


def _deep_source_model(path: str | os.PathLike, scratch: Path) -> tuple[str, str, dict[str, Any]]:
    """(file of the deep model to start from, its name for the record, its metadata); a hybrid's CNN member
    is written to ``scratch`` first."""
    from genrekit.models import load_model
    from genrekit.models.base import load_model_file

    name, source = str(path), str(path)
    _, meta = load_model_file(source)
    if meta.get("kind") == "hybrid":  # e.g. the shipped model: start from its spectrogram member
        deep = [m for m in load_model(source).members_ if getattr(m, "kind", None) == "deep"]
        if deep:
            source = str(deep[0].save(scratch / "cnn.safetensors"))
            name += " (its CNN member)"
            _, meta = load_model_file(source)
    if meta.get("kind") != "deep":
        raise ModelError(
            f"{source}: a {meta.get('kind')!r} model cannot be fine-tuned here; give a deep "
            "(log-mel CNN/ResNet) model trained with genrekit train --model cnn|cnn-bn|resnet|shortchunk"
        )
    return source, name, meta


def finetune(
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    source_model: str | os.PathLike | None = None,
    freeze: bool = False,
    epochs: int = 15,
    lr: float | None = None,
    batch_size: int = 32,
    augment: str | None = "default",
    valid_size: float = 0.2,
    overlap: float = 0.5,
    seed: int = 0,
    device: str = "auto",
    threads: int | None = 1,
    progress: bool = True,
) -> RunResult:
    """Fine-tune ``source_model`` (default: the shipped model's CNN) on the labelled audio under ``data``.

    ``freeze`` trains only the new head; ``lr`` defaults to 1e-3 (3e-3 frozen); ``valid_size`` of the
    tracks is held out (0: none, nothing is scored); ``overlap`` is the training slices' overlap.
    Writes ``out/model.safetensors`` (its metadata names the model it came from) and the run's report.
    Files that cannot be read are skipped and listed in the result's ``metrics["failed"]``."""
    from genrekit.augment import AugmentConfig
    from genrekit.experiments.data import LogmelSource, load_logmels
    from genrekit.experiments.factories import DeepFactory
    from genrekit.experiments.runner import run
    from genrekit.predict import default_model_path

    if not 0.0 <= valid_size < 1.0:
        raise GenrekitError(f"valid_size must be in [0, 1), got {valid_size}")
    aug = AugmentConfig.parse(augment)
    with tempfile.TemporaryDirectory() as scratch:
        start, start_name, meta = _deep_source_model(source_model or default_model_path(), Path(scratch))
        inp = dict(meta["input"])
        logmels = load_logmels(data, source="audio", sr=int(inp["sr"]), n_fft=int(inp["n_fft"]),
                               hop_length=int(inp["hop_length"]), n_mels=int(inp["n_mels"]),
                               time_resolution=inp.get("time_resolution", "full"), progress=progress)
        labels = np.unique(logmels.labels)
        if len(labels) < 2:
            raise GenrekitError(f"{data}: found {len(labels)} label folder(s); fine-tuning needs at least two")
        width = int(meta.get("input_frames") or inp["slice_frames"])
        source = LogmelSource(logmels, train_overlap=overlap, valid_overlap=0.5, eval_overlap=0.5,
                              train_extra_frames=aug.crop_frames if aug.crop else 0, input=inp, width=width,
                              source="audio", path=str(data))
        tr, va = holdout_split(logmels.track_ids, logmels.labels, valid_size, seed)
        tids = source.track_ids
        fold = FoldSpec(0, tuple(tids[tr]), tuple(tids[va]), tuple(tids[va]))
        factory = DeepFactory(meta["arch"], epochs=epochs, batch_size=batch_size,
                              lr=lr or (3e-3 if freeze else 1e-3), width=int(meta.get("width", 1)), augment=aug,
                              device=device, threads=threads, init_from=start, freeze_body=freeze,
                              patience=max(3, epochs // 3), ema=None)
        finetuned_from = {"path": start_name, "classes": meta.get("classes"), "trained_on": meta.get("trained_on")}
        return run(f"finetune hold-out ({valid_size:.0%} of tracks, stratified)", factory, source, seed=seed, out=out,
                   folds=[fold], fold_reports=False, importance=False, model_meta={"finetuned_from": finetuned_from},
                   extra={"finetuned_from": start_name, "source_classes": meta.get("classes"),
                          "freeze_body": bool(freeze)},
                   progress=progress)


def finetune_musicnn(
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    head: str = "logreg",
    layer: str = "penultimate",
    standardise: str = "none",
    valid_size: float = 0.2,
    seed: int = 0,
    jobs: int = 1,
    progress: bool = True,
    input: str = "musicnn",
) -> RunResult:
    """Few-shot transfer: a tabular ``head`` (any registry name: logreg, svm, mlp ...) on musicnn
    embeddings of the labelled audio under ``data`` (folder per label). musicnn stays frozen, so a
    handful of tracks per label is enough. Embeddings are cached by content
    (:func:`genrekit.experiments.data.embedding_table`). Writes ``out/model.safetensors``, a musicnn-input
    model ``genrekit predict --model`` takes, and the hold-out report (``valid_size`` of the tracks).
    ``standardise="domain"``: the embeddings' mean/std from the training tracks, stored in the model.
    ``input="mn04"`` / ``"musicnn+mn04"``: the head learns from mn04's (and musicnn's) per-track means
    instead (:class:`~genrekit.experiments.data.NetworkSource`; the model reads an ``ears`` input)."""
    from genrekit.experiments.data import EmbeddingSource, NetworkSource
    from genrekit.experiments.factories import TabularFactory
    from genrekit.experiments.runner import run

    if not 0.0 <= valid_size < 1.0:
        raise GenrekitError(f"valid_size must be in [0, 1), got {valid_size}")
    if input == "musicnn":
        source = EmbeddingSource.load(data, layer=layer, standardise=standardise, progress=progress, jobs=jobs)
    else:
        source = NetworkSource.load(data, input=input, layer=layer, standardise=standardise, progress=progress,
                                    jobs=jobs)
    labels = np.unique(source.labels)
    if len(labels) < 2:
        raise GenrekitError(f"{data}: found {len(labels)} label folder(s); fine-tuning needs at least two")
    tr, va = holdout_split(source.track_ids, source.labels, valid_size, seed)
    tids = source.track_ids
    fold = FoldSpec(0, tuple(tids[tr]), (), tuple(tids[va]))
    return run(f"finetune hold-out ({valid_size:.0%} of tracks, stratified)", TabularFactory(head), source, seed=seed,
               out=out, folds=[fold], fold_reports=False, importance=False,
               extra={"finetuned_from": _frozen(input, layer) + f" (frozen) + {head} head"}, progress=progress)


def _frozen(input: str, layer: str) -> str:
    """The frozen network(s) a head learnt from, in words (metrics.json ``finetuned_from``)."""
    return {"musicnn": f"musicnn MSD_musicnn {layer}", "mn04": "mn04 features",
            "musicnn+mn04": f"musicnn MSD_musicnn {layer} + mn04 features"}.get(input, input)
