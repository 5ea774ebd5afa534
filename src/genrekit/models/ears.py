"""The "second ears" members (issue 23, item 5): a track row from musicnn and mn04, and zero-shot experts.

:class:`EarsInput` (file ``input`` type ``"ears"``, in :mod:`genrekit.models.inputs` with the other input
types and re-exported here) is a per-track row made of named ``parts``, in order:
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

import numpy as np

from genrekit.errors import ModelError
from genrekit.models.base import Estimator, load_model_file, save_model_file
from genrekit.models.inputs import EARS_PARTS as PARTS  # noqa: F401  (re-exported: the row's parts)
from genrekit.models.inputs import EarsInput
from genrekit.models.rows import check_X

__all__ = ["KIND", "PARTS", "EarsInput", "ZeroShotModel"]

KIND = "zero-shot"


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
