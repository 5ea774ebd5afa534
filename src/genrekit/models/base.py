"""Safe model files and the shared estimator interface.

Every genrekit model is ONE ``.safetensors`` file: arrays as tensors, everything else as JSON in the
header's metadata. Loading never executes code from the file (no pickle). Two sha256 digests are stored
in the header and checked on load, so a damaged, truncated or hand-edited file is rejected: ``sha256``
over all tensor bytes and ``sha256_meta`` over the metadata JSON (class names, input settings). Files
written before ``sha256_meta`` existed (the shipped models among them) carry only ``sha256`` and still
load: their metadata is bounds-checked like any other, and a copy of a shipped model must carry exactly
its shipped metadata (``SHIPPED_META_SHA256``, pinned by the tensors' digest). Neither digest is a signature: whoever can edit
a file can recompute both, so a file stripped of ``sha256_meta`` is no weaker than one with a
recomputed digest; what they catch is damage and edits by tools that know nothing of genrekit.

Before the metadata JSON is parsed its size and nesting depth are bounded, and every setting in it that
scales prediction's memory or time is bounded by :mod:`genrekit.models.inputs`, so a bad file gets one
:class:`~genrekit.errors.ModelError` naming it, never a RecursionError or a multi-gigabyte allocation.

Estimators follow scikit-learn: ``fit(X, y)``, ``predict(X)``, ``predict_proba(X)``, ``classes_``;
no work in ``__init__``; fitted attributes end in ``_``; :meth:`Estimator.get_params` reads the
constructor's signature. They take arrays and never read datasets.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import ModelError
from genrekit.models.inputs import validate_input
from genrekit.store import atomic_write_bytes, tensors_sha256

FORMAT_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024 * 1024  # the safetensors JSON header (tensor index + metadata strings)
MAX_META_BYTES = 16 * 1024 * 1024  # the metadata JSON: a long trained_on track list is a few MB
MAX_META_DEPTH = 32  # nesting of the metadata JSON (a hybrid's deepest: about 6)
MAX_CLASSES = 1000
MAX_CLASS_CHARS = 256


# The shipped models predate ``sha256_meta``: their metadata digests are pinned here by their tensors'
# ``sha256``, so a copy of a shipped model with edited metadata (two class names swapped) is refused
# although the file itself carries no metadata digest. A rebuilt model has other tensors and its own digest.
SHIPPED_META_SHA256 = {
    "f35c6bdc0b279d3991404268aa6f4566a3b9cf0d16e0d30c491bcf866204afe1":  # genrekit-gtzan-default
        "b8ac3175447fbeeeff1542fa9d8f5fba0db357b98268f594298cc45c63a5f5aa",
    "16e8b4893031300395837391ac32d8e318473159a42dadfa316a8b8c94385463":  # genrekit-gtzan-musicnn
        "f063155a4d35488a53731c324c66c03d36c898bd0aad20e55957dd38fed15a75",
}


def meta_sha256(meta_json: str) -> str:
    """sha256 of the metadata JSON string exactly as stored in the file's header."""
    return hashlib.sha256(meta_json.encode("utf-8")).hexdigest()


def save_model_file(path: str | os.PathLike, tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Write ``tensors`` and JSON ``meta`` atomically (temp file, fsync, rename: never half-written),
    with the checksums of both."""
    from safetensors.numpy import save

    from genrekit import __version__

    path = Path(path)
    if "kind" not in meta:
        raise ModelError("model metadata must name its 'kind'")
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    meta_json = json.dumps(meta, sort_keys=True)
    header = {
        "genrekit_format": str(FORMAT_VERSION),
        "genrekit_version": __version__,
        "sha256": tensors_sha256(tensors),
        "sha256_meta": meta_sha256(meta_json),
        "meta": meta_json,
    }
    atomic_write_bytes(path, save(tensors, metadata=header))
    return path


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def json_depth(text: str) -> int:
    """The bracket nesting depth of JSON ``text`` (brackets inside strings not counted), found without
    parsing it: ``json.loads`` recurses once per level, so a file nested 200,000 deep must be refused first."""
    b = np.frombuffer(_JSON_STRING.sub("", text).encode("utf-8", "replace"), dtype=np.uint8)
    step = np.isin(b, (ord("["), ord("{"))).astype(np.int64) - np.isin(b, (ord("]"), ord("}")))
    return int(np.cumsum(step).max(initial=0))


def parse_meta(meta_json: Any, *, source: Any = "model") -> dict[str, Any]:
    """The metadata JSON of a model file as a dict, its size and depth bounded before parsing."""
    if not isinstance(meta_json, str):
        raise ModelError(f"{source}: model metadata is missing (not a genrekit model file)")
    if len(meta_json) > MAX_META_BYTES:
        raise ModelError(f"{source}: model metadata is {len(meta_json):,} bytes; at most {MAX_META_BYTES:,}")
    if json_depth(meta_json) > MAX_META_DEPTH:
        raise ModelError(f"{source}: model metadata is nested more than {MAX_META_DEPTH} levels deep")
    try:
        meta = json.loads(meta_json)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, an integer of 5,000 digits
        raise ModelError(f"{source}: model metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{source}: model metadata lacks a 'kind' (it is not a JSON object)")
    return meta


def check_meta(meta: dict[str, Any], *, source: Any = "model") -> None:
    """What every model file's metadata must satisfy: a kind, sane class names, a valid input, a
    bounded temperature."""
    if not isinstance(meta.get("kind"), str) or not meta["kind"]:
        raise ModelError(f"{source}: model metadata lacks a 'kind'")
    classes = meta.get("classes")
    if classes is not None and (
        not isinstance(classes, list) or not 0 < len(classes) <= MAX_CLASSES
        or not all(isinstance(c, str) and 0 < len(c) <= MAX_CLASS_CHARS for c in classes)
    ):
        raise ModelError(f"{source}: model metadata 'classes' must be a non-empty list of names "
                         f"(at most {MAX_CLASSES})")
    if classes is not None and len(set(classes)) != len(classes):
        raise ModelError(f"{source}: model metadata 'classes' names a class twice")
    if "input" in meta:
        validate_input(meta["input"], source=source)
    for key in ("temperature", "temperature_without_mn04"):  # the second: a hybrid scored without its mn04 members
        if meta.get(key) is not None:
            validate_temperature(meta[key], source=source, key=key)


def load_model_file(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and verify a model file; raise :class:`ModelError` naming what is wrong."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    data = path.read_bytes()
    header_len = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if not 0 < header_len <= min(MAX_HEADER_BYTES, len(data) - 8):
        raise ModelError(f"{path}: not a valid genrekit model file (truncated or corrupt: header length "
                         f"{header_len})")
    raw = data[8 : 8 + header_len]
    if json_depth(raw.decode("utf-8", "replace")) > MAX_META_DEPTH:
        raise ModelError(f"{path}: not a valid genrekit model file (its header is nested too deep)")
    try:
        tensors = load(data)
        header = json.loads(raw).get("__metadata__") or {}
    except (SafetensorError, ValueError, OSError, UnicodeDecodeError, AttributeError, RecursionError) as exc:
        raise ModelError(f"{path}: not a valid genrekit model file (truncated or corrupt: {exc})") from None
    if header.get("genrekit_format") != str(FORMAT_VERSION):
        raise ModelError(
            f"{path}: not a genrekit model file (format {header.get('genrekit_format')!r}, "
            f"expected {FORMAT_VERSION})"
        )
    if header.get("sha256") != tensors_sha256(tensors):
        raise ModelError(f"{path}: checksum mismatch: the model file was modified or damaged")
    meta_json = header.get("meta")
    want_meta = header["sha256_meta"] if "sha256_meta" in header else SHIPPED_META_SHA256.get(header["sha256"])
    if want_meta is not None and (not isinstance(meta_json, str) or want_meta != meta_sha256(meta_json)):
        raise ModelError(f"{path}: metadata checksum mismatch: the model's metadata (class names, input settings) "
                         "was modified or damaged")
    meta = parse_meta(meta_json, source=path)
    check_meta(meta, source=path)
    return tensors, meta


def validate_temperature(t: Any, *, source: str | os.PathLike = "model", key: str = "temperature") -> float:
    """A calibration temperature stored in a model file: a finite number in [0.05, 20]."""
    if not (isinstance(t, (int, float)) and not isinstance(t, bool) and 0.05 <= t <= 20):
        raise ModelError(f"{source}: model metadata '{key}' must be a number in [0.05, 20], got {t!r}")
    return float(t)


class Estimator:
    """Shared behaviour: predict from predict_proba; subclasses implement fit/predict_proba/save/load."""

    classes_: np.ndarray
    # constructor arguments that are not the model's parameters (how it is built, where it logs, what
    # its file stores elsewhere): left out of get_params, hence of the model file's and metrics.json's params
    not_params: tuple[str, ...] = ()

    @classmethod
    def param_names(cls) -> list[str]:
        """The constructor's keyword names, subclass first, following ``**kw`` up to the base that takes them
        (scikit-learn's ``_get_param_names``: written once, never out of date)."""
        names: list[str] = []
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None or klass is object:
                continue
            params = inspect.signature(init).parameters.values()
            names += [p.name for p in params if p.name != "self" and p.name not in names
                      and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
            if not any(p.kind == p.VAR_KEYWORD for p in params):
                break
        return [n for n in names if n not in cls.not_params]

    def get_params(self) -> dict[str, Any]:
        """The constructor's arguments as given (JSON-ready: see :meth:`param_value`)."""
        return {name: self.param_value(name, getattr(self, name)) for name in self.param_names()}

    def param_value(self, name: str, value: Any) -> Any:
        """A parameter as the model file stores it: sequences as lists, numpy scalars as numbers, paths as
        strings. Subclasses normalise their own (a deep model's augmentation recipe)."""
        if isinstance(value, (list, tuple)):
            return [self.param_value(name, v) for v in value]
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        return value

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
