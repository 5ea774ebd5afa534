"""Safe model files and the shared estimator interface.

Every genrekit model is ONE ``.safetensors`` file: arrays as tensors, everything else as JSON in the
header's metadata. Loading never executes code from the file (no pickle). A sha256 over all tensor bytes
is stored in the metadata and checked on load, so a tampered or truncated file is rejected.

Estimators follow scikit-learn: ``fit(X, y)``, ``predict(X)``, ``predict_proba(X)``, ``classes_``;
no work in ``__init__``; fitted attributes end in ``_``. They take arrays and never read datasets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import ModelError
from genrekit.networks import BACKENDS
from genrekit.networks.musicnn import spec as musicnn_spec
from genrekit.store import atomic_write_bytes, tensors_sha256

FORMAT_VERSION = 1


def save_model_file(path: str | os.PathLike, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Write ``tensors`` and JSON ``meta`` atomically (temp file, fsync, rename: never half-written)."""
    from safetensors.numpy import save

    from genrekit import __version__

    path = Path(path)
    if "kind" not in meta:
        raise ModelError("model metadata must name its 'kind'")
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    header = {
        "genrekit_format": str(FORMAT_VERSION),
        "genrekit_version": __version__,
        "sha256": tensors_sha256(tensors),
        "meta": json.dumps(meta, sort_keys=True),
    }
    atomic_write_bytes(path, save(tensors, metadata=header))
    return path


def load_model_file(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and verify a model file; raise :class:`ModelError` naming what is wrong."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    data = path.read_bytes()
    try:
        tensors = load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len]).get("__metadata__") or {}
    except (SafetensorError, ValueError, OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not a valid genrekit model file (truncated or corrupt: {exc})") from None
    if header.get("genrekit_format") != str(FORMAT_VERSION):
        raise ModelError(
            f"{path}: not a genrekit model file (format {header.get('genrekit_format')!r}, "
            f"expected {FORMAT_VERSION})"
        )
    if header.get("sha256") != tensors_sha256(tensors):
        raise ModelError(f"{path}: checksum mismatch: the model file was modified or damaged")
    try:
        meta = json.loads(header["meta"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: model metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("kind"), str) or not meta["kind"]:
        raise ModelError(f"{path}: model metadata lacks a 'kind'")
    classes = meta.get("classes")
    if classes is not None and (
        not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes)
    ):
        raise ModelError(f"{path}: model metadata 'classes' must be a non-empty list of names")
    if "input" in meta:
        validate_input(meta["input"], source=path)
    if meta.get("temperature") is not None:
        validate_temperature(meta["temperature"], source=path)
    return tensors, meta


# Plausible ranges: a model file must not be able to make prediction allocate without bound.
_LOGMEL_LIMITS = {"sr": (1000, 384_000), "n_fft": (16, 65_536), "hop_length": (1, 65_536), "n_mels": (1, 1024)}


def _positive_number(v: Any, upper: float) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= upper


def validate_input(desc: Any, *, source: str | os.PathLike = "model") -> None:
    """Check a model's ``input`` block: predict recomputes the model's input from audio with it, so a
    malformed one must be refused when the file is loaded, not fail obscurely later."""
    if not isinstance(desc, dict) or desc.get("type") not in ("features", "logmel", "musicnn", "hybrid"):
        got = desc.get("type") if isinstance(desc, dict) else desc
        raise ModelError(
            f"{source}: model metadata 'input' must have type 'features', 'logmel', 'musicnn' or 'hybrid', got {got!r}"
        )
    if desc["type"] == "musicnn":
        validate_musicnn_input(desc, source=source)
        return
    if desc["type"] == "hybrid":
        members = desc.get("members")
        if not isinstance(members, list) or len(members) < 2:
            raise ModelError(f"{source}: model metadata 'input.members' must list the members' inputs")
        for m in members:
            if isinstance(m, dict) and m.get("type") == "hybrid":
                raise ModelError(f"{source}: hybrid models cannot be nested")
            validate_input(m, source=source)
        return
    if desc["type"] == "features":
        cols = desc.get("columns")
        if not isinstance(cols, list) or not cols or not all(isinstance(c, str) and c for c in cols):
            raise ModelError(f"{source}: model metadata 'input.columns' must be a non-empty list of feature names")
        seg = desc.get("segment_seconds")
        if seg is not None and not _positive_number(seg, 3600):
            raise ModelError(f"{source}: model metadata 'input.segment_seconds' must be null or seconds > 0, got {seg!r}")
        return
    for key, (lo, hi) in _LOGMEL_LIMITS.items():
        v = desc.get(key)
        if not (isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi):
            raise ModelError(f"{source}: model metadata 'input.{key}' must be an integer in [{lo}, {hi}], got {v!r}")
    if desc["hop_length"] > desc["n_fft"]:
        raise ModelError(f"{source}: model metadata 'input.hop_length' exceeds 'input.n_fft'")
    if not _positive_number(desc.get("slice_seconds"), 600):
        raise ModelError(f"{source}: model metadata 'input.slice_seconds' must be seconds in (0, 600], "
                         f"got {desc.get('slice_seconds')!r}")


MUSICNN_MODELS = musicnn_spec.MODELS
MUSICNN_LAYERS = {x: musicnn_spec.LAYERS[x] for x in ("penultimate", "taggram", "pooled")}  # this order in messages
MUSICNN_POOLS = ("mean",)
MUSICNN_BACKENDS = BACKENDS


def musicnn_input(columns_or_n: Any = None, *, model: str = "MSD_musicnn", layer: str = "penultimate",
                  pool: str = "mean", patches_per_block: int | None = None, backend: str = "torch",
                  standardise: dict[str, tuple[Any, Any]] | None = None) -> dict:
    """The ``input`` block of a head on musicnn embeddings: predict runs musicnn on each 30 s block
    (``patches_per_block`` evenly spread 3 s patches, None for all ten) and hands the head the
    ``pool`` of the audible patches' ``layer`` vectors. ``columns`` name the vector's entries.

    ``standardise``: per source domain (``audio``, ``image``) the (mean, std) vectors its vectors are
    standardised with before the head (docs/transfer.md "domain-z": image-derived embeddings sit apart
    from audio-derived ones, so each domain is centred and scaled on its own)."""
    n = MUSICNN_LAYERS.get(layer, 0)
    cols = list(columns_or_n) if isinstance(columns_or_n, (list, tuple)) else [f"{layer}_{pool}_{i}" for i in range(n)]
    desc = {"type": "musicnn", "model": model, "layer": layer, "pool": pool,
            "patches_per_block": patches_per_block, "backend": backend, "columns": cols}
    if standardise is not None:
        desc["standardise"] = {d: {"mean": [float(v) for v in m], "std": [float(v) for v in sd]}
                               for d, (m, sd) in standardise.items()}
    validate_input(desc, source="musicnn_input")
    return desc


def validate_musicnn_input(desc: dict, *, source: str | os.PathLike = "model") -> None:
    """A musicnn member's input: known network, layer, pooling, backend; patch count within a block."""
    if desc.get("model") not in MUSICNN_MODELS:
        raise ModelError(f"{source}: model metadata 'input.model' must be one of {', '.join(MUSICNN_MODELS)}, "
                         f"got {desc.get('model')!r}")
    layer = desc.get("layer")
    if layer not in MUSICNN_LAYERS:
        raise ModelError(f"{source}: model metadata 'input.layer' must be one of {', '.join(MUSICNN_LAYERS)}, "
                         f"got {layer!r}")
    if desc.get("pool") not in MUSICNN_POOLS:
        raise ModelError(f"{source}: model metadata 'input.pool' must be one of {', '.join(MUSICNN_POOLS)}, "
                         f"got {desc.get('pool')!r}")
    k = desc.get("patches_per_block")
    if k is not None and not (isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= 10):
        raise ModelError(f"{source}: model metadata 'input.patches_per_block' must be null or an integer in "
                         f"[1, 10], got {k!r}")
    if desc.get("backend", "torch") not in MUSICNN_BACKENDS:
        raise ModelError(f"{source}: model metadata 'input.backend' must be one of {', '.join(MUSICNN_BACKENDS)}, "
                         f"got {desc.get('backend')!r}")
    cols = desc.get("columns")
    if not isinstance(cols, list) or len(cols) != MUSICNN_LAYERS[layer] or not all(isinstance(c, str) for c in cols):
        raise ModelError(f"{source}: model metadata 'input.columns' must name the {MUSICNN_LAYERS[layer]} entries "
                         f"of musicnn's {layer} layer")
    std = desc.get("standardise")
    if std is None:
        return
    n = MUSICNN_LAYERS[layer]
    if not isinstance(std, dict) or "audio" not in std or not set(std) <= {"audio", "image"}:
        raise ModelError(f"{source}: model metadata 'input.standardise' must map 'audio' (and optionally 'image') "
                         "to {mean, std}")
    for d, ms in std.items():
        ok = isinstance(ms, dict) and all(isinstance(ms.get(k), list) and len(ms[k]) == n for k in ("mean", "std"))
        if ok:
            m, sd = np.asarray(ms["mean"], dtype=float), np.asarray(ms["std"], dtype=float)
            ok = bool(np.isfinite(m).all() and np.isfinite(sd).all() and (sd > 0).all())
        if not ok:
            raise ModelError(f"{source}: model metadata 'input.standardise.{d}' must hold 'mean' and 'std' lists of "
                             f"{n} finite numbers (std > 0)")


def validate_temperature(t: Any, *, source: str | os.PathLike = "model") -> float:
    """A calibration temperature stored in a model file: a finite number in [0.05, 20]."""
    if not (isinstance(t, (int, float)) and not isinstance(t, bool) and 0.05 <= t <= 20):
        raise ModelError(f"{source}: model metadata 'temperature' must be a number in [0.05, 20], got {t!r}")
    return float(t)


class Estimator:
    """Shared behaviour: predict from predict_proba; subclasses implement fit/predict_proba/save/load."""

    classes_: np.ndarray

    def predict(self, X) -> np.ndarray:
        proba = self.predict_proba(X)
        return np.asarray(self.classes_)[np.argmax(proba, axis=1)]

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise ModelError(f"{type(self).__name__} is not fitted yet: call fit() first")

    # The default file round trip for estimators whose whole state is get_state() / from_state();
    # models with extra metadata (deep, hybrid) override these.
    def save(self, path: str | os.PathLike, *, extra_meta: dict | None = None) -> Path:
        tensors, meta = self.get_state()
        return save_model_file(path, tensors, {**meta, **(extra_meta or {})})

    @classmethod
    def load(cls, path: str | os.PathLike):
        tensors, meta = load_model_file(path)
        if meta.get("kind") != cls.kind:
            raise ModelError(f"{path}: holds a {meta.get('kind')!r} model, not one of kind {cls.kind!r}")
        model = cls.from_state(tensors, meta, source=str(path))
        if meta.get("temperature") is not None:  # calibration of the file's scores (genrekit.predict applies it)
            model.temperature_ = float(meta["temperature"])
        return model
