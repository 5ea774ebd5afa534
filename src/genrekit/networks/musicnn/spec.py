"""musicnn's light spec: names, constants, tag vocabulary, weights file and licence.

Importing it costs no numpy and no torch, so the CLI builds its ``--model`` choices and the model
loaders check a musicnn input block from here. musicnn (Pons & Serra 2019, ISC licence) learnt from
~200k Million Song Dataset tracks (``MSD_musicnn``) or MagnaTagATune (``MTT_musicnn``); the weights ship
in ``genrekit/pretrained/musicnn/`` (converted by ``scripts/convert_musicnn.py``; licence and
attribution in ``LICENSE-musicnn.md``).
"""

from __future__ import annotations

import json
import os
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from genrekit.errors import ModelError

NAME = "musicnn"
MODELS: tuple[str, ...] = ("MSD_musicnn", "MTT_musicnn")
DEFAULT_MODEL = "MSD_musicnn"
LICENSE = "ISC"
LICENSE_FILE = "LICENSE-musicnn.md"
SR = 16000
N_FFT = 512
HOP_LENGTH = 256
N_MELS = 96
PATCH_FRAMES = 187  # librosa.time_to_frames(3 s) + 1, as extractor.py computes it
PATCH_HOP = PATCH_FRAMES  # extractor.py's default (input_overlap=False): patches side by side
PATCH_SECONDS = PATCH_FRAMES * HOP_LENGTH / SR  # 2.992 s
N_TAGS = 50
N_PENULTIMATE = 200
N_FEATURES = 753  # 561 front-end + 3 x 64 mid-end channels, pooled over time
N_POOLED = 2 * N_FEATURES  # max pool then mean pool
BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's default
FORMAT = "genrekit-musicnn/1"
DEFAULT_BATCH = 2  # patches per forward pass; on one CPU thread larger batches were slower (cache), see docs
BLOCK_PATCHES = 10  # side-by-side patches in a 30 s block (10 x 2.992 s = 29.92 s)
BLOCK_FRAMES = BLOCK_PATCHES * PATCH_FRAMES
# The layers an embedding offers, and their lengths: penultimate (the usual transfer embedding), pooled
# (max then mean over time of the front- and mid-end maps), taggram (the 50 tag probabilities).
LAYERS: dict[str, int] = {"penultimate": N_PENULTIMATE, "pooled": N_POOLED, "taggram": N_TAGS}


def weights_dir() -> Path:
    """The folder of the shipped musicnn files (weights, tag lists, licence)."""
    return Path(str(resources.files("genrekit").joinpath("pretrained", "musicnn")))


def check_model(model: str) -> str:
    """``model`` when it names a musicnn network; :class:`~genrekit.errors.ModelError` listing them if not."""
    if model not in MODELS:
        raise ModelError(f"unknown musicnn model {model!r}; choose one of {', '.join(MODELS)}")
    return model


@cache
def tag_names(model: str = DEFAULT_MODEL) -> tuple[str, ...]:
    """The 50 tags of ``model`` in the order of its taggram columns (read without loading torch)."""
    path = weights_dir() / f"{check_model(model)}.tags.json"
    try:
        tags = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: musicnn tag list missing or unreadable ({exc})") from None
    if not isinstance(tags, list) or len(tags) != N_TAGS or not all(isinstance(t, str) for t in tags):
        raise ModelError(f"{path}: expected a JSON list of {N_TAGS} tag names")
    return tuple(tags)


def weights_path(model: str = DEFAULT_MODEL) -> Path:
    """The shipped safetensors file of ``model`` (what every backend builds its network from)."""
    return weights_dir() / f"{check_model(model)}.safetensors"


@lru_cache(maxsize=4)
def weights_sha256(model: str = DEFAULT_MODEL) -> str:
    """Digest of the shipped weights file's bytes: every cache of musicnn outputs keys on it, so new
    weights make new entries. The one place it is computed."""
    from genrekit.store import file_digest

    return file_digest(weights_path(model))


def read_weights(path: str | os.PathLike, *, model: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Tensors and metadata of a converted musicnn file, verified (format, checksum, tag count);
    :class:`~genrekit.errors.ModelError` names what is wrong. No code is executed from the file."""
    from safetensors import SafetensorError, safe_open

    from genrekit.store import tensors_sha256

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: musicnn weights not found (re-install genrekit, or run scripts/convert_musicnn.py)")
    try:
        with safe_open(str(path), framework="numpy") as f:
            raw = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a valid musicnn weights file (truncated or corrupt: {exc})") from None
    if raw.get("format") != FORMAT:
        raise ModelError(f"{path}: not a genrekit musicnn file (format {raw.get('format')!r}, expected {FORMAT})")
    if raw.get("sha256") != tensors_sha256(tensors):
        raise ModelError(f"{path}: checksum mismatch: the weights file was modified or damaged")
    if model is not None and raw.get("model") != model:
        raise ModelError(f"{path}: holds {raw.get('model')!r}, not {model!r}")
    try:
        meta: dict[str, Any] = {k: raw[k] for k in ("format", "model", "dtype", "sha256", "license")}
        for k in ("tags", "input", "source", "tf_names"):
            meta[k] = json.loads(raw[k])
    except (KeyError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: musicnn metadata incomplete or not JSON ({exc})") from None
    if len(meta["tags"]) != N_TAGS:
        raise ModelError(f"{path}: expected {N_TAGS} tag names, found {len(meta['tags'])}")
    return tensors, meta
