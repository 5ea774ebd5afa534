"""The "second ears" members (issue 23, item 5): a track row from musicnn and mn04, and zero-shot experts.

:class:`EarsInput` (file ``input`` type ``"ears"``) is a per-track row made of named ``parts``, in order:
``musicnn_penultimate`` (200) and ``musicnn_taggram`` (50), means over the audible 3 s patches of every
block, and ``mn04_features`` (384) and ``mn04_sigmoid`` (527), means over the 10 s windows mn04 hears of
the song (at most 6, spread: the same windows and the same run that give the record's styles,
:mod:`genrekit.styles_ear`; one decode, one 32 kHz resample). Per block it gives musicnn's per-patch
``[penultimate | taggram]`` vectors; ``predict`` averages them over the track and joins them
(:meth:`EarsInput.rows`) with mn04's means (members that share a block share one musicnn run, ``BlockContext.made``).

:class:`ZeroShotModel` (kind ``"zero-shot"``) is an expert that was never trained: per class one column of
its row (an MSD tag's or an AudioSet class's probability), the classes' columns divided by their sum.

mn04 hears 32 kHz up to 15 kHz; a Kaggle image stops at 11 kHz, so these members cannot score an
image-only track (:meth:`EarsInput.precomputed` says so): see MODEL_CARD.md for what the shipped model does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from genrekit.errors import ModelError
from genrekit.models.base import Estimator, load_model_file, save_model_file
from genrekit.models.inputs import (
    NETWORK_PATCHES,
    BlockContext,
    ModelInput,
    Precomputed,
    Windows,
    check_X,
    window_levels,
)

KIND = "zero-shot"
PARTS: dict[str, int] = {"musicnn_penultimate": 200, "musicnn_taggram": 50, "mn04_features": 384, "mn04_sigmoid": 527}
PATCH_WIDTH = PARTS["musicnn_penultimate"] + PARTS["musicnn_taggram"]  # what block() gives per patch


class EarsInput(ModelInput):
    """A per-track row of musicnn and mn04 means (module docstring); ``patches_per_block``: musicnn's
    3 s patches scored per 30 s block (None: all of them, as the study's heads were fitted)."""

    type = "ears"
    pools_vectors = True
    hears_mn04: ClassVar[bool] = True

    def __init__(self, meta: dict[str, Any], *, source: Any = "model"):
        parts = meta.get("parts")
        if (not isinstance(parts, list) or not parts or any(p not in PARTS for p in parts)
                or len(set(parts)) != len(parts)):
            raise ModelError(f"{source}: model metadata 'input.parts' must list distinct parts of {', '.join(PARTS)}")
        cols = meta.get("columns")
        if not isinstance(cols, list) or len(cols) != sum(PARTS[p] for p in parts):
            raise ModelError(f"{source}: model metadata 'input.columns' must name the {sum(PARTS[p] for p in parts)} "
                             "columns of its parts")
        k = meta.get("patches_per_block")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not NETWORK_PATCHES[0] <= k <= NETWORK_PATCHES[1]):
            raise ModelError(f"{source}: model metadata 'input.patches_per_block' must be None or 1..10, got {k!r}")
        super().__init__(meta)
        self.parts: list[str] = list(parts)
        self.patches_per_block: int | None = k
        self.columns = list(cols)

    @classmethod
    def create(cls, parts: list[str], *, patches_per_block: int | None = None) -> EarsInput:
        cols = [f"{p}_mean_{i}" for p in parts for i in range(PARTS[p])]
        return cls({"type": "ears", "parts": list(parts), "columns": cols, "patches_per_block": patches_per_block})

    def block(self, ctx: BlockContext) -> Windows:
        from genrekit.networks import musicnn as embeddings

        k = self.patches_per_block if ctx.patches_per_block is None else (
            None if ctx.patches_per_block == "all" else int(ctx.patches_per_block))
        key = f"ears-musicnn-{k}"
        e = ctx.made.get(key)
        if e is None:  # members of one model share the block's musicnn run
            e = ctx.made[key] = embeddings.embed(ctx.y, sr=ctx.sr, model="MSD_musicnn", patches_per_block=k,
                                                 backend="onnx", threads=ctx.threads)
        y, sr, offset = ctx.y, ctx.sr, ctx.offset
        spans = [(offset + float(s), min(offset + y.size / sr, offset + float(s) + embeddings.PATCH_SECONDS))
                 for s in e.starts]
        vec = np.concatenate([np.asarray(e.penultimate, np.float64), np.asarray(e.taggram, np.float64)], axis=1)
        return Windows(spans, window_levels(y, spans, offset=offset, sr=sr), lambda m: vec if m is None else vec[m], taggram=e.taggram)

    def rows(self, patches: np.ndarray, mn04: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray | None:
        """``(n, columns)``: this input's parts from ``n`` musicnn vectors ``[penultimate | taggram]`` (the
        patches, or their track mean) next to mn04's track ``(features mean, sigmoid mean)``; None when a
        part is missing (mn04 heard nothing audible)."""
        patches = np.atleast_2d(np.asarray(patches, np.float64))
        n = patches.shape[0]
        got = {"musicnn_penultimate": patches[:, :200], "musicnn_taggram": patches[:, 200:PATCH_WIDTH]}
        if mn04 is not None:
            got["mn04_features"], got["mn04_sigmoid"] = (np.broadcast_to(np.asarray(v, np.float64), (n, np.size(v)))
                                                         for v in mn04)
        if any(p not in got for p in self.parts):
            return None
        return np.concatenate([got[p] for p in self.parts], axis=1)

    def precomputed(self, given: Precomputed, *, source: Any) -> Windows:
        raise ModelError(f"{source}: this model hears audio only (mn04 reads 32 kHz up to 15 kHz; a Kaggle image "
                         "stops at 11 kHz): give it the audio file")


class ZeroShotModel(Estimator):
    """Per class one column of the row (``index``); probabilities = those columns over their sum."""

    kind = KIND
    not_params = ("classes", "index", "input", "names")

    def __init__(self, classes: list[str] = (), index: list[int] = (), input: dict | None = None,
                 names: list[str] = ()):
        self.classes = classes
        self.index = index
        self.input = input
        self.names = names

    def fit(self, *_args, **_kw) -> ZeroShotModel:
        """Nothing to learn: check the map and take it."""
        inp = EarsInput(self.input or {}, source="zero-shot")
        idx = [int(i) for i in self.index]
        if len(idx) != len(self.classes) or not idx or any(not 0 <= i < len(inp.columns) for i in idx):
            raise ModelError("zero-shot model: one column index per class, inside the input's columns")
        self.index_ = np.asarray(idx, dtype=np.int64)
        self.classes_ = np.asarray([str(c) for c in self.classes])
        self.input_ = inp.to_meta()
        self.meta_ = {"kind": KIND, "classes": [str(c) for c in self.classes], "input": self.input_,
                      "names": [str(n) for n in self.names]}
        return self

    def predict_proba(self, X) -> np.ndarray:
        self._check_fitted()
        X = check_X(X, len(self.input_["columns"]))
        s = np.clip(X[:, self.index_], 1e-12, None)
        return s / s.sum(axis=1, keepdims=True)

    def save(self, path: str | os.PathLike, *, extra_meta: dict | None = None) -> Path:
        self._check_fitted()
        return save_model_file(path, {"index": self.index_}, {**self.meta_, **(extra_meta or {})})

    @classmethod
    def load(cls, path: str | os.PathLike) -> ZeroShotModel:
        tensors, meta = load_model_file(path)
        if meta.get("kind") != KIND or "index" not in tensors:
            raise ModelError(f"{path}: not a zero-shot model file")
        m = cls(meta["classes"], [int(i) for i in tensors["index"]], meta["input"], meta.get("names", [])).fit()
        m.meta_ = meta
        return m
