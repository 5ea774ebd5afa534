"""musicnn's tags and embeddings of audio: :func:`embed` (samples), :func:`embed_file` (any length,
block by block), :func:`run_patches` (patches through a backend), :func:`top_tags`.

Backends: ``"torch"`` (the reference, :mod:`~genrekit.networks.musicnn.torch_ref`), ``"onnx"`` and
``"onnx-int8"`` (onnxruntime, no torch: :mod:`~genrekit.networks.musicnn.graph`). Importing this module
imports neither.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from genrekit.audio import stream
from genrekit.errors import EmptyAudioError, FeatureError
from genrekit.networks.musicnn.frontend import (
    block_full,
    block_selection,
    check_hop,
    check_per_block,
    check_wave,
    iter_musicnn_input,
    iter_patches,
    logmel_frames,
    padded_16k,
    patch_starts,
    patches,
    select_patches,
)
from genrekit.networks.musicnn.spec import (
    BLOCK_FRAMES,
    DEFAULT_BATCH,
    DEFAULT_MODEL,
    HOP_LENGTH,
    N_FEATURES,
    N_FFT,
    N_MELS,
    N_PENULTIMATE,
    N_POOLED,
    N_TAGS,
    PATCH_FRAMES,
    PATCH_HOP,
    SR,
    check_model,
    tag_names,
)


@dataclass(frozen=True, eq=False)  # eq=False: == on arrays is ambiguous; compare fields explicitly
class Embedding:
    """musicnn's outputs for one piece of audio, one row per 3 s patch.

    ``taggram`` ``(n, 50)``: tag probabilities (sigmoid) per patch, columns :attr:`tags`;
    ``penultimate`` ``(n, 200)``: the layer before the tags, the usual transfer-learning embedding;
    ``pooled`` ``(n, 1506)``: max over time (first 753) then mean over time (last 753) of the front-
    and mid-end feature maps, the input of the dense layers (values up to ~130);
    ``starts`` ``(n,)``: each patch's start in seconds (it lasts :data:`PATCH_SECONDS`);
    ``duration``: seconds of audio analysed; ``padded``: the audio was shorter than one patch and
    was repeat-padded to fill it.
    """

    model: str
    taggram: np.ndarray
    penultimate: np.ndarray
    pooled: np.ndarray
    starts: np.ndarray
    duration: float
    padded: bool = False

    @property
    def tags(self) -> tuple[str, ...]:
        return tag_names(self.model)

    @property
    def n_patches(self) -> int:
        return int(self.taggram.shape[0])

    @property
    def max_pool(self) -> np.ndarray:
        return self.pooled[:, :N_FEATURES]

    @property
    def mean_pool(self) -> np.ndarray:
        return self.pooled[:, N_FEATURES:]

    # per-file summaries: the mean over patches, what the 0.685 head was trained on
    @property
    def taggram_mean(self) -> np.ndarray:
        return self.taggram.mean(axis=0)

    @property
    def penultimate_mean(self) -> np.ndarray:
        return self.penultimate.mean(axis=0)

    @property
    def pooled_mean(self) -> np.ndarray:
        return self.pooled.mean(axis=0)


def _check_batch(batch: int) -> int:
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch must be a positive number of patches, got {batch!r}")
    return int(batch)


def _batch_runner(model: str, backend: str, threads: int | None) -> Callable[[np.ndarray], tuple[np.ndarray, ...]]:
    """One forward pass over a batch of patches: ``(taggram, penultimate, pooled)``. ``torch`` is the
    reference port; ``onnx`` / ``onnx-int8`` run on onnxruntime alone
    (:mod:`~genrekit.networks.musicnn.graph`)."""
    if backend != "torch":
        from genrekit.networks.musicnn.graph import backend_runner

        return backend_runner(backend, model, threads=1 if threads is None else threads)
    if threads is not None:
        raise ValueError("threads applies to the onnx backends; for torch use torch.set_num_threads")
    from genrekit.networks.musicnn.torch_ref import runner

    return runner(model)


def check_patches_per_block(patches_per_block: int | None, hop: int) -> int | None:
    """``patches_per_block`` checked against the patches a 30 s block holds at ``hop`` (None: all)."""
    if patches_per_block is None:
        return None
    return check_per_block(patches_per_block, full=block_full(hop))


def run_patches(
    x: np.ndarray, *, model: str = DEFAULT_MODEL, batch: int = DEFAULT_BATCH, backend: str = "torch",
    threads: int | None = None,
) -> tuple[np.ndarray, ...]:
    """Run ``(n, 187, 96)`` patches through the network in batches: ``(taggram, penultimate, pooled)``
    as float32 numpy arrays, on CPU. ``backend``: ``"torch"`` (default, ``torch.inference_mode``),
    ``"onnx"`` (onnxruntime, float32, 1.6x faster, within 6e-6 on taggram / penultimate) or ``"onnx-int8"`` (int8 timbral
    convolutions, faster still, looser: docs/embeddings.md "Speed"); ``threads`` (onnx only, default 1)."""
    batch = _check_batch(batch)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or x.shape[1:] != (PATCH_FRAMES, N_MELS):
        raise FeatureError(f"musicnn patches must be (n, {PATCH_FRAMES}, {N_MELS}), got shape {x.shape}")
    run = _batch_runner(check_model(model), backend, threads)
    outs = [run(x[i : i + batch]) for i in range(0, x.shape[0], batch)]
    if not outs:
        return (np.zeros((0, N_TAGS), np.float32), np.zeros((0, N_PENULTIMATE), np.float32),
                np.zeros((0, N_POOLED), np.float32))
    return tuple(np.concatenate([o[j] for o in outs]) for j in range(3))


def embed(
    y: np.ndarray, *, sr: int = SR, model: str = DEFAULT_MODEL, hop: int = PATCH_HOP, batch: int = DEFAULT_BATCH,
    patches_per_block: int | None = None, backend: str = "torch", threads: int | None = None,
) -> Embedding:
    """musicnn embedding of a mono waveform (any rate; resampled to 16 kHz): taggram, penultimate
    layer and pooled features per patch. Audio shorter than a patch (3 s) is repeat-padded; under
    512 samples at 16 kHz, non-finite, or not 1-D it raises a :class:`~genrekit.errors.GenrekitError`.

    ``patches_per_block=k`` keeps only ``k`` evenly spread patches of each 30 s block (10 patches at
    the default hop; ``frontend.select_patches``): enough for a track score at a fraction of
    the cost; ``starts`` says which were kept. ``backend`` / ``threads``: as :func:`run_patches`."""
    check_model(model)
    per_block = check_patches_per_block(patches_per_block, check_hop(hop))
    y = check_wave(y, "audio")
    duration = y.size / sr
    padded, n_frames = padded_16k(y, sr)
    starts = patch_starts(n_frames, hop=hop)
    if per_block is not None and n_frames >= PATCH_FRAMES:
        # only the kept patches' frames are analysed (frames are independent: the same numbers as
        # cutting them from the whole log-mel, at a third of the front end's cost for 3 of 10)
        starts = starts[select_patches(starts, per_block=per_block, hop=hop)]
        x = np.stack([logmel_frames(padded[s * HOP_LENGTH : (s + PATCH_FRAMES - 1) * HOP_LENGTH + N_FFT],
                                     PATCH_FRAMES) for s in starts])
    else:
        x = patches(logmel_frames(padded, n_frames), hop=hop)
    taggram, pen, pooled = run_patches(x, model=model, batch=batch, backend=backend, threads=threads)
    return Embedding(model, taggram, pen, pooled, starts * (HOP_LENGTH / SR), duration,
                     padded=n_frames < PATCH_FRAMES)


def embed_file(
    path: str | os.PathLike,
    *,
    model: str = DEFAULT_MODEL,
    hop: int = PATCH_HOP,
    batch: int = DEFAULT_BATCH,
    block_seconds: float = 60.0,
    patches_per_block: int | None = None,
    backend: str = "torch",
    threads: int | None = None,
) -> Embedding:
    """:func:`embed` of a file of any length, decoded and analysed block by block: memory holds one
    ``block_seconds`` block, one batch of patches (plus, with ``patches_per_block``, one 30 s block of
    patches) and the outputs (7 kB per patch), not the file. Same result as :func:`embed` of the
    decoded samples."""
    check_model(model)
    batch, hop = _check_batch(batch), check_hop(hop)
    per_block = check_patches_per_block(patches_per_block, hop)
    n_samples = 0

    def counted(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal n_samples
        for b in blocks:
            n_samples += b.size
            yield b

    run = _batch_runner(model, backend, threads)
    blocks = counted(stream(path, sr=SR, block_seconds=block_seconds))
    outs: list[tuple[np.ndarray, ...]] = []
    starts: list[int] = []
    pending: list[np.ndarray] = []
    padded = False

    def flush() -> None:
        outs.append(run(np.stack(pending)))
        pending.clear()

    def take(start: int, patch: np.ndarray) -> None:
        starts.append(start)
        pending.append(patch)
        if len(pending) == batch:
            flush()

    if per_block is not None:
        full = block_full(hop)
    block: list[tuple[int, np.ndarray]] = []  # the current 30 s block's patches (patches_per_block only)

    def close_block() -> None:
        for j in block_selection(len(block), per_block, full=full):
            take(*block[j])
        block.clear()

    for start, patch, was_padded in iter_patches(iter_musicnn_input(blocks), hop=hop):
        if was_padded and n_samples < N_FFT:
            raise EmptyAudioError(f"{path}: {n_samples} samples at 16 kHz is shorter than one musicnn frame ({N_FFT})")
        padded = padded or was_padded
        if per_block is None:
            take(start, patch)
            continue
        if block and block[0][0] // BLOCK_FRAMES != start // BLOCK_FRAMES:
            close_block()
        block.append((start, patch))
    if block:
        close_block()
    if pending:
        flush()
    taggram, pen, pooled = (np.concatenate([o[j] for o in outs]) for j in range(3))
    return Embedding(model, taggram, pen, pooled, np.asarray(starts) * (HOP_LENGTH / SR), n_samples / SR,
                     padded=padded)


def ranked_tags(scores: np.ndarray, k: int = 5, *, model: str = DEFAULT_MODEL) -> list[tuple[str, float]]:
    """The ``k`` best ``(tag, score)`` of a taggram row of ``model`` (50 scores), best first, ties in
    column order: the one ranking behind ``tags``, ``tag --tags``, ``similar``'s summaries and ``predict``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive number of tags, got {k!r}")
    scores = np.asarray(scores)
    if scores.shape != (N_TAGS,):
        raise FeatureError(f"musicnn tag scores must be ({N_TAGS},), got shape {scores.shape}")
    order = np.argsort(-scores, kind="stable")[: int(k)]
    tags = tag_names(model)
    return [(tags[i], float(scores[i])) for i in order]


def top_tags(embedding: Embedding, k: int = 5, *, patch: int | None = None) -> list[tuple[str, float]]:
    """The ``k`` most probable tags with their scores, best first: of the whole file (mean taggram
    over patches, musicnn's own summary) or, with ``patch=i``, of one patch."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive number of tags, got {k!r}")
    if patch is None:
        scores = embedding.taggram_mean
    else:
        if not -embedding.n_patches <= patch < embedding.n_patches:
            raise IndexError(f"patch {patch} out of range: the embedding has {embedding.n_patches} patches")
        scores = embedding.taggram[patch]
    return ranked_tags(scores, k, model=embedding.model)
