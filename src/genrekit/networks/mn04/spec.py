"""EfficientAT ``mn04_as`` (MIT): names, constants, the block table, labels, weights and licence paths.

Light on purpose (no numpy, no onnx): the CLI can list the network, its classes and licence without
paying for the runtime. It is the registry's family ``mn04`` (``genrekit.networks.FAMILIES``), one model
``mn04``, also called ``audioset`` (what it tags with: AudioSet's 527 classes, 48 of them music genres). The numbers are the original's (fschmid56/EfficientAT ``models/preprocess.py``,
``models/mn/model.py`` with ``width_mult=0.4, head_type="mlp", se_dims="c", se_r=4``), as
``src/genrekit/pretrained/mn04/MODEL_CARD.md`` and ``mn04.json`` record them.
"""

from __future__ import annotations

import csv
import json
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

NAME = "mn04"  # the registry's family name
NETWORK = "mn04_as"  # EfficientAT's name: the ONNX graph and its cache file carry it
MODELS: tuple[str, ...] = ("mn04",)
ALIASES: dict[str, str] = {"audioset": "mn04"}  # what `genrekit tags --model audioset` names
DEFAULT_MODEL = "mn04"
LICENSE = "MIT"  # the weights (EfficientAT, Schmid et al.); the AudioSet label names are CC BY 4.0 (Google)
BACKENDS: tuple[str, ...] = ("onnx",)  # onnxruntime float32 only (int8 changes top genres, model.py says why)
DIR = Path(__file__).resolve().parents[2] / "pretrained" / "mn04"
WEIGHTS_FILE = "mn04_as.safetensors"
SPEC_FILE = "mn04.json"
LABELS_FILE = "audioset_class_labels_indices.csv"
LICENSE_FILE = "LICENSE-EfficientAT.md"
MODEL_CARD_FILE = "MODEL_CARD.md"
FORMAT = "genrekit-mn04/1"

# front end (models/preprocess.py, eval mode)
SR = 32000
PREEMPHASIS = 0.97
N_FFT = 1024
HOP_LENGTH = 320
WIN_LENGTH = 800
N_MELS = 128
FMIN = 0.0
FMAX = 15000.0  # sr // 2 - fmax_aug_range // 2: the original's default when fmax is None
LOG_OFFSET = 1e-5
LOG_SHIFT = 4.5
LOG_SCALE = 5.0

# windows: the network was trained on 10 s clips (1000 frames); any length runs (adaptive pooling)
WINDOW_SECONDS = 10.0
WINDOW_SAMPLES = int(WINDOW_SECONDS * SR)
MIN_SAMPLES = N_FFT  # shorter input cannot be reflect-padded for one centred frame

# network
WIDTH_MULT = 0.4
BN_EPS = 1e-3
SE_REDUCTION = 4
N_FEATURES = 384
N_HIDDEN = 512
N_CLASSES = 527
MUSIC_ROW = 137
GENRE_ROWS = range(216, 264)  # "Pop music" .. "Ska": AudioSet's 48 music-genre classes
INPUT_NAME = "mel"
OUTPUT_NAMES = ("features", "logits")
# The layers an embedding offers: features (the pooled last conv layer, the transfer embedding), logits
# (before the sigmoid: what `styles` calibrates) and taggram (the sigmoid probabilities, as musicnn's
# taggram: their mean over the audible windows is what `tags` ranks; not the sigmoid of the mean logits).
LAYERS: dict[str, int] = {"features": N_FEATURES, "logits": N_CLASSES, "taggram": N_CLASSES}


def make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's channel rounding: nearest multiple of ``divisor``, never below 90 % of ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class Block(NamedTuple):
    """One inverted residual (``features.<index>``), channels already scaled by :data:`WIDTH_MULT`."""

    index: int
    in_ch: int
    kernel: int
    expanded: int
    out_ch: int
    se: bool
    hardswish: bool
    stride: int

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_ch == self.out_ch

    @property
    def expands(self) -> bool:
        return self.expanded != self.in_ch

    @property
    def squeeze(self) -> int:
        return make_divisible(self.expanded // SE_REDUCTION, 8)


# MobileNetV3-Large (in, kernel, expanded, out, SE, activation, stride) before scaling, strides (2,2,2,2)
_LARGE = (
    (16, 3, 16, 16, False, "RE", 1), (16, 3, 64, 24, False, "RE", 2), (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2), (40, 5, 120, 40, True, "RE", 1), (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2), (80, 3, 200, 80, False, "HS", 1), (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1), (80, 3, 480, 112, True, "HS", 1), (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2), (160, 5, 960, 160, True, "HS", 1), (160, 5, 960, 160, True, "HS", 1),
)
BLOCKS: tuple[Block, ...] = tuple(
    Block(i + 1, make_divisible(c * WIDTH_MULT), k, make_divisible(e * WIDTH_MULT), make_divisible(o * WIDTH_MULT),
          se, act == "HS", s)
    for i, (c, k, e, o, se, act, s) in enumerate(_LARGE)
)
STEM_CHANNELS = BLOCKS[0].in_ch  # features.0: 3x3 stride-2 conv from 1 channel, BN, Hardswish
LAST_INDEX = len(BLOCKS) + 1  # features.16: 1x1 conv to 6 x the last block's channels, BN, Hardswish
assert 6 * BLOCKS[-1].out_ch == N_FEATURES


def path(name: str) -> Path:
    return DIR / name


def check_model(model: str) -> str:
    """The model's name (``"audioset"`` -> ``"mn04"``); :class:`~genrekit.errors.ModelError` if not mn04."""
    from genrekit.errors import ModelError

    if model in MODELS:
        return model
    if model in ALIASES:
        return ALIASES[model]
    raise ModelError(f"unknown mn04 model {model!r}; choose one of {', '.join((*MODELS, *ALIASES))}")


def tag_names(model: str = DEFAULT_MODEL) -> tuple[str, ...]:
    """The 527 AudioSet labels, in the order of the logits (:func:`labels`)."""
    check_model(model)
    return labels()


def weights_path(model: str = DEFAULT_MODEL) -> Path:
    check_model(model)
    return path(WEIGHTS_FILE)


@cache
def weights_sha256(model: str = DEFAULT_MODEL) -> str:
    """Digest of the shipped weights file's bytes: every cache of mn04 outputs keys on it."""
    from genrekit.store import file_digest

    return file_digest(weights_path(model))


def license_path() -> Path:
    return path(LICENSE_FILE)


@cache
def read_spec() -> dict[str, Any]:
    """The shipped ``mn04.json`` (weights sha256, counts, input settings), as ``scripts/convert_mn04.py`` wrote it."""
    p = path(SPEC_FILE)
    spec = json.loads(p.read_text(encoding="utf-8"))
    if spec.get("format") != FORMAT:
        raise ValueError(f"{p}: format {spec.get('format')!r}, expected {FORMAT!r}; rerun scripts/convert_mn04.py")
    return spec


@cache
def labels() -> tuple[str, ...]:
    """The 527 AudioSet display names in the network's output order (CC BY 4.0, Google)."""
    p = path(LABELS_FILE)
    with open(p, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    body = rows[1:]
    if rows[:1] != [["index", "mid", "display_name"]] or len(body) != N_CLASSES or any(
            int(r[0]) != i for i, r in enumerate(body)):
        raise ValueError(f"{p}: expected a header and {N_CLASSES} rows 'index,mid,display_name' in index order")
    return tuple(r[2] for r in body)


def genre_labels() -> tuple[str, ...]:
    """The 48 music-genre classes (rows 216..263), in output order."""
    return tuple(labels()[i] for i in GENRE_ROWS)
