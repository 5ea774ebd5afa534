"""A weighted product of experts over models that see DIFFERENT inputs (e.g. log-mel CNN + feature table).

Tabular ensembles (``models.ensemble``) share one feature matrix; this one combines a spectrogram model
with a feature model, which is what lifts GTZAN's artist-disjoint accuracy: the two make different
mistakes. Each member is stored as its own verified genrekit model file, embedded as bytes, so the
hybrid is still one safe ``.safetensors`` file and loading never runs code from it.

Combination: ``log p = sum_i w_i * mean_log p_i`` (track level), renormalised; weights sum to 1: the
one rule of :func:`genrekit.metrics.mean_log_proba`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from genrekit.errors import ModelError
from genrekit.metrics import mean_log_proba, normalised_weights
from genrekit.models.base import Estimator, load_model_file, save_model_file
from genrekit.models.registry import load_model

KIND = "hybrid"


class HybridModel(Estimator):
    """Members with their own inputs; ``weights`` (summing to 1) set how much each one counts."""

    kind = KIND
    # fitted estimators and their weights: a run's factory reports them by name (get_params stays empty)
    not_params = ("members", "weights")

    def __init__(self, members: Sequence[Estimator] = (), *, weights: Sequence[float] | None = None):
        self.members = members
        self.weights = weights

    def fit(self, *_args, **_kw) -> HybridModel:
        """Adopt already-fitted members (each is trained on its own input beforehand)."""
        if len(self.members) < 2:
            raise ModelError("a hybrid model needs at least two fitted members")
        classes = [list(map(str, m.classes_)) for m in self.members]
        if any(c != classes[0] for c in classes):
            raise ModelError(f"hybrid members disagree on their classes: {classes}")
        self.members_ = list(self.members)
        self.weights_ = normalised_weights(self.weights, len(self.members))
        self.classes_ = np.array(classes[0])
        self.input_ = {"type": "hybrid", "members": [m.input_ if hasattr(m, "input_") else m.meta_["input"]
                                                      for m in self.members_]}
        self.meta_ = {"kind": KIND, "input": self.input_, "classes": classes[0]}
        return self

    def combine(self, member_probas: Sequence[np.ndarray | None], present: Sequence[bool] | None = None) -> np.ndarray:
        """Combine each member's probabilities ``[n, k]`` (one row per track or window) into ``[n, k]``.
        ``present``: which members could hear this input (a member that reads audio only is absent for an
        image-only track); the others' weights are renormalised, so the absent ones count for nothing."""
        self._check_fitted()
        if len(member_probas) != len(self.members_):
            raise ModelError(f"expected {len(self.members_)} members' probabilities, got {len(member_probas)}")
        if present is None:
            return mean_log_proba(member_probas, self.weights_)
        keep = [i for i, here in enumerate(present) if here]
        if len(present) != len(self.members_) or not keep or not self.weights_[keep].sum() > 0:
            raise ModelError("a hybrid needs at least one present member with weight")
        return mean_log_proba([member_probas[i] for i in keep], self.weights_[keep])

    def predict_proba(self, X) -> np.ndarray:
        """``X`` is a sequence holding each member's input (they differ in kind, so no single matrix)."""
        self._check_fitted()
        return self.combine([m.predict_proba(x) for m, x in zip(self.members_, X, strict=True)])

    # ------------------------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike, *, extra_meta: dict | None = None) -> Path:
        self._check_fitted()
        tensors: dict[str, np.ndarray] = {}
        with tempfile.TemporaryDirectory() as d:
            for i, m in enumerate(self.members_):
                f = Path(d) / f"m{i}.safetensors"
                m.save(f)
                tensors[f"member{i}"] = np.frombuffer(f.read_bytes(), dtype=np.uint8).copy()
        meta = dict(self.meta_)
        meta["weights"] = [float(w) for w in self.weights_]
        meta["member_kinds"] = [getattr(m, "kind", "?") for m in self.members_]
        meta.update(extra_meta or {})
        return save_model_file(path, tensors, meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> HybridModel:
        tensors, meta = load_model_file(path)
        if meta.get("kind") != KIND:
            raise ModelError(f"{path}: holds a {meta.get('kind')!r} model, not a hybrid")
        return cls.from_file_parts(path, tensors, meta, load_model)  # torch members (models.load: either backend)

    @classmethod
    def from_file_parts(cls, path, tensors: dict, meta: dict, load) -> HybridModel:
        """The hybrid a file's ``tensors`` and ``meta`` describe, each member loaded by ``load(file)``
        from its own temporary model file (``load_model``, or a loader that runs deep members elsewhere)."""
        n = len(meta.get("weights") or [])
        if n < 2 or any(f"member{i}" not in tensors for i in range(n)):
            raise ModelError(f"{path}: hybrid model file lacks its members")
        members = []
        with tempfile.TemporaryDirectory() as d:
            for i in range(n):
                f = Path(d) / f"m{i}.safetensors"
                f.write_bytes(tensors[f"member{i}"].tobytes())
                try:
                    members.append(load(f))
                except ModelError as exc:
                    raise ModelError(f"{path}: member {i} is invalid ({exc})") from None
        model = cls(members, weights=meta["weights"]).fit()
        model.meta_ = meta
        return model
