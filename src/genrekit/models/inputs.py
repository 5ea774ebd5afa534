"""Typed model inputs: what a model reads, built from (and written back to) a model file's ``input`` block.

One class per input kind: :class:`LogmelInput` (log-mel slices of a CNN), :class:`FeatureInput` (a GTZAN
feature row), :class:`NetworkInput` (a pretrained network's embedding: musicnn today, any registered
network and layer next), :class:`HybridInput` (the members' inputs of a hybrid) and :class:`EarsInput`
(a per-track row of musicnn and mn04 means: ``genrekit.models.ears``). Each one knows its
validation (the bounds a real model needs, so a model file cannot make prediction allocate without
bound), its windows over a block of samples (:meth:`ModelInput.block`) and its precomputed form
(:meth:`ModelInput.precomputed`: a log-mel matrix, a feature row or an embedding), so that
``genrekit.predict`` loops over a model's members without asking what they are.

``input_from_meta(d)`` builds the class from the file's dict and ``to_meta()`` gives that dict back
unchanged: the file format on disk stays as it is. The bottom of ``models/`` beside ``base``: the
estimators import this module, it imports no estimator.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from genrekit.errors import ModelError
from genrekit.networks import BACKENDS
from genrekit.networks.musicnn import spec as musicnn_spec

__all__ = [
    "BlockContext", "EarsInput", "FeatureInput", "HybridInput", "LogmelInput", "ModelInput", "NetworkInput", "Precomputed",
    "Windows", "features_input", "input_from_meta", "musicnn_input",
    "validate_input", "validate_musicnn_input", "MUSICNN_BACKENDS", "MUSICNN_LAYERS", "MUSICNN_MODELS",
    "MUSICNN_POOLS", "NETWORK_LAYERS",
]

TAIL_SECONDS = 3.0  # a block's tail shorter than this joins the block before it (one window of the default slice)

# ------------------------------------------------------------------------------------- bounds
# What a real model could need and no more: prediction recomputes the input from audio with these settings,
# so each one that scales memory or time is bounded (an unbounded hop_length of 1 asks 5 GiB per 30 s block).
LOGMEL_BOUNDS = {"sr": (8000, 48_000), "n_fft": (256, 8192), "hop_length": (64, 4096), "n_mels": (16, 256)}
MAX_TF_CELLS = 16_000_000  # STFT frames x bins of one 30 s block (the default: 1,292 x 1,025 = 1.3 M; 128 MB complex64)
SLICE_SECONDS_BOUNDS = (0.5, 30.0)  # one slice of a CNN: at most the 30 s block
MAX_PREDICT_OVERLAP = 0.75  # slices overlapping more only repeat work (4x the frames at 0.75)
SEGMENT_SECONDS_BOUNDS = (1.0, 30.0)  # a feature row's window: at least one second, at most the block
MAX_COLUMNS = 4096  # feature names (the extended GTZAN table has a few hundred)
MAX_NAME_CHARS = 256
MAX_MEMBERS = 8  # members of a hybrid

MUSICNN_MODELS = musicnn_spec.MODELS
MUSICNN_LAYERS = {x: musicnn_spec.LAYERS[x] for x in ("penultimate", "taggram", "pooled")}  # this order in messages
MUSICNN_POOLS = ("mean",)
MUSICNN_BACKENDS = BACKENDS
# network -> its layers and their widths: a second network (e.g. mn04) registers its own here
NETWORK_LAYERS: dict[str, dict[str, int]] = {name: dict(MUSICNN_LAYERS) for name in MUSICNN_MODELS}
NETWORK_PATCHES = (1, 10)  # patches scored per 30 s block (networks.musicnn.frontend.check_per_block's range)


def _int_in(v: Any, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _number_in(v: Any, lo: float, hi: float, *, open_low: bool = False) -> bool:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v):
        return False
    return (lo < v if open_low else lo <= v) and v <= hi


def _names(v: Any, *, n_max: int = MAX_COLUMNS) -> bool:
    return (isinstance(v, list) and 0 < len(v) <= n_max
            and all(isinstance(c, str) and 0 < len(c) <= MAX_NAME_CHARS for c in v))


# ------------------------------------------------------------------------------------- windows
@dataclass
class BlockContext:
    """What every member's :meth:`ModelInput.block` shares for one block of samples: where it starts,
    its rate, whether every window of it is silent (``quiet``) and full-length (``full``), the log-mels
    already made for it (members with the same front end share one), the classifier's memo of a full
    block's width per front end, and the run's choices (musicnn's backend, patches, threads)."""

    y: np.ndarray
    sr: int
    offset: float = 0.0
    quiet: bool = False
    full: bool = False
    made: dict[str, Any] = field(default_factory=dict)  # log-mels and network runs, by front end
    full_frames: dict[str, int] = field(default_factory=dict)
    backend: str = "onnx"  # the classifier's: "onnx" never runs torch
    patches_per_block: int | str | None = None  # a load-time override of a network member's patches
    threads: int = 1


@dataclass
class Precomputed:
    """A track's precomputed inputs (``GenreClassifier.predict_precomputed``): a log-mel matrix, a feature
    row (sequence or name -> value), a network embedding with the ``domain`` it came from, or a Kaggle
    ``image`` to embed. ``seconds``: the track's duration (a log-mel member sets it from its matrix)."""

    levels: np.ndarray | None = None
    row: Any = None
    embedding: Any = None
    image: Any = None
    domain: str = "audio"
    seconds: float = 30.0
    mn04: tuple[np.ndarray, np.ndarray] | None = None  # the track's mn04 (features mean, sigmoid mean), if known


@dataclass
class Windows:
    """One member's windows of a block: their spans (absolute seconds), levels (dB; None when unknown,
    e.g. precomputed) and the model input of the windows kept (``inputs(mask)``). A network member also
    gives its per-window ``taggram`` (the tags)."""

    spans: list[tuple[float, float]]
    levels: np.ndarray | None
    inputs: Callable[[np.ndarray | None], np.ndarray]
    taggram: np.ndarray | None = None


class ModelInput:
    """A model's input: its file form (:meth:`to_meta`), rate, windows and precomputed form."""

    type: ClassVar[str]
    makes_timeline: ClassVar[bool] = False  # its windows make the prediction's timeline (the finest ones)
    pools_vectors: ClassVar[bool] = False  # the track is scored on the mean of its windows' vectors
    tail_seconds: ClassVar[float] = TAIL_SECONDS

    def __init__(self, meta: dict[str, Any]):
        self._meta = copy.deepcopy(meta)

    def to_meta(self) -> dict[str, Any]:
        """The file's ``input`` block, exactly as read (or as a new model writes it)."""
        return copy.deepcopy(self._meta)

    def replace(self, **changes: Any) -> ModelInput:
        """A copy with some file keys changed (e.g. a network's ``backend``), validated again."""
        return type(self)({**self._meta, **changes}, source="replace")  # type: ignore[call-arg]

    @property
    def sr(self) -> int | None:
        """The sample rate the member reads blocks at (None: it resamples each block itself)."""
        return None

    @property
    def members(self) -> list[ModelInput]:
        """The inputs a prediction loops over: this one, or a hybrid's members."""
        return [self]

    def block(self, ctx: BlockContext) -> Windows:  # pragma: no cover - every kind overrides it
        raise NotImplementedError

    def precomputed(self, given: Precomputed, *, source: Any) -> Windows:  # pragma: no cover
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelInput) and other.type == self.type and other._meta == self._meta

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._meta!r})"


def _all(ix: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return ix if mask is None or mask.all() else ix[mask]


class LogmelInput(ModelInput):
    """Log-mel slices of a CNN: the STFT settings, the slice length and the prediction overlap."""

    type = "logmel"
    makes_timeline = True

    def __init__(self, meta: dict[str, Any], *, source: Any = "model"):
        for key, (lo, hi) in LOGMEL_BOUNDS.items():
            if not _int_in(meta.get(key), lo, hi):
                raise ModelError(f"{source}: model metadata 'input.{key}' must be an integer in [{lo}, {hi}], "
                                 f"got {meta.get(key)!r}")
        if meta["hop_length"] > meta["n_fft"]:
            raise ModelError(f"{source}: model metadata 'input.hop_length' exceeds 'input.n_fft'")
        cells = (1 + 30 * meta["sr"] // meta["hop_length"]) * (meta["n_fft"] // 2 + 1)
        if cells > MAX_TF_CELLS:
            raise ModelError(f"{source}: model metadata 'input' asks {cells:,} STFT cells per 30 s block (sr "
                             f"{meta['sr']}, n_fft {meta['n_fft']}, hop_length {meta['hop_length']}); at most "
                             f"{MAX_TF_CELLS:,}")
        lo, hi = SLICE_SECONDS_BOUNDS
        if not _number_in(meta.get("slice_seconds"), lo, hi):
            raise ModelError(f"{source}: model metadata 'input.slice_seconds' must be seconds in [{lo:g}, {hi:g}], "
                             f"got {meta.get('slice_seconds')!r}")
        overlap = meta.get("predict_overlap", 0.0)
        if not _number_in(overlap, 0.0, MAX_PREDICT_OVERLAP):
            raise ModelError(f"{source}: model metadata 'input.predict_overlap' must be in [0, "
                             f"{MAX_PREDICT_OVERLAP:g}], got {overlap!r}")
        super().__init__(meta)
        self.sample_rate = int(meta["sr"])
        self.n_fft, self.hop_length, self.n_mels = int(meta["n_fft"]), int(meta["hop_length"]), int(meta["n_mels"])
        self.slice_seconds = float(meta["slice_seconds"])
        self.predict_overlap = float(overlap)
        self.tail_seconds = self.slice_seconds  # type: ignore[misc]

    @property
    def sr(self) -> int:
        return self.sample_rate

    @property
    def key(self) -> str:
        """Members with equal keys share one log-mel matrix per block (e.g. a seed ensemble)."""
        import json

        return json.dumps(self._meta, sort_keys=True, default=str)

    def slices(self, levels: np.ndarray, offset: float, seconds: float) -> tuple[np.ndarray, list]:
        """The slices a ``[n_mels, frames]`` matrix starting at ``offset`` and lasting ``seconds`` is
        cut into (padded when shorter than one; a tail longer than a third of a slice gets its own),
        and their spans in seconds."""
        from genrekit import spectrogram

        sr, hop, secs = self.sr, self.hop_length, self.slice_seconds
        width = spectrogram.slice_frames(seconds=secs, sr=sr, hop_length=hop)
        n = levels.shape[1]
        if n < width:
            levels = np.pad(levels, ((0, 0), (0, width - n)))
        starts = spectrogram.slice_starts(max(n, width), width=width, overlap=self.predict_overlap)
        if n > width and starts[-1] + width < n - width // 3:  # cover a tail longer than a third of a slice
            starts = np.append(starts, n - width)
        X = np.ascontiguousarray(levels[:, starts[:, None] + np.arange(width)[None, :]].transpose(1, 0, 2))
        spans = [(offset + float(s) * hop / sr, min(offset + seconds, offset + float(s) * hop / sr + secs))
                 for s in starts]
        return X, spans

    def block(self, ctx: BlockContext) -> Windows:
        from genrekit import spectrogram

        key = self.key
        if key not in ctx.made and ctx.quiet and ctx.full and key in ctx.full_frames:
            # every window is silent: no spectrogram, only its width (the same for every full block)
            ctx.made[key] = np.zeros((1, ctx.full_frames[key]), np.float32)
        if key not in ctx.made:
            ctx.made[key] = spectrogram.logmel_for_input(ctx.y, self._meta)
            if ctx.full:
                ctx.full_frames[key] = ctx.made[key].shape[1]
        X, spans = self.slices(ctx.made[key], ctx.offset, ctx.y.size / ctx.sr)
        return Windows(spans, window_levels(ctx.y, spans, offset=ctx.offset, sr=ctx.sr), lambda m: _all(X, m))

    def precomputed(self, given: Precomputed, *, source: Any) -> Windows:
        if given.levels is None:
            raise ModelError(f"{source}: this model needs a log-mel matrix")
        given.seconds = given.levels.shape[1] * self.hop_length / self.sr
        X, spans = self.slices(np.asarray(given.levels, dtype=np.float32), 0.0, given.seconds)
        return Windows(spans, None, lambda m: _all(X, m))


class FeatureInput(ModelInput):
    """A GTZAN feature row per window (``segment_seconds``, else the whole block): the named columns."""

    type = "features"

    def __init__(self, meta: dict[str, Any], *, source: Any = "model"):
        if not _names(meta.get("columns")):
            raise ModelError(f"{source}: model metadata 'input.columns' must be a non-empty list of feature names "
                             f"(at most {MAX_COLUMNS})")
        seg = meta.get("segment_seconds")
        lo, hi = SEGMENT_SECONDS_BOUNDS
        if seg is not None and not _number_in(seg, lo, hi):
            raise ModelError(f"{source}: model metadata 'input.segment_seconds' must be null or seconds in "
                             f"[{lo:g}, {hi:g}], got {seg!r}")
        super().__init__(meta)
        self.columns: list[str] = list(meta["columns"])
        self.segment_seconds: float | None = None if seg is None else float(seg)

    @property
    def sr(self) -> int:
        from genrekit import audio

        return audio.SR

    @classmethod
    def create(cls, columns: Sequence[str] | None, n_features: int,
               segment_seconds: float | None = None) -> FeatureInput:
        """The input of a model fitted on ``n_features`` columns (named ``f<i>`` when not given)."""
        cols = list(columns) if columns is not None else [f"f{i}" for i in range(n_features)]
        if len(cols) != n_features:
            raise ModelError(f"{len(cols)} feature names given for {n_features} feature columns")
        return cls({"type": "features", "columns": cols, "segment_seconds": segment_seconds}, source="features_input")

    def block(self, ctx: BlockContext) -> Windows:
        from genrekit import audio, features
        from genrekit.dsp import rms_db

        y, sr = ctx.y, ctx.sr
        ws = audio.windows(y, sr=sr, seconds=float(self.segment_seconds or 30.0), pad=False) or [
            audio.Window(None, 0, 0.0, y.size / sr, y)
        ]
        level = np.array([rms_db(w.samples) for w in ws])
        cols = self._meta.get("columns")

        def inputs(mask):  # features only of the windows kept: the costly part
            keep = ws if mask is None else [w for w, k in zip(ws, mask, strict=True) if k]
            return np.asarray([list(features.extract(w.samples, sr=sr, columns=cols).values()) for w in keep],
                              dtype=np.float64)

        return Windows([(ctx.offset + w.start, ctx.offset + w.end) for w in ws], level, inputs)

    def row_of(self, row: Any, *, source: Any) -> np.ndarray:
        """A precomputed row as the model takes it: a name -> value mapping in this input's column order."""
        if isinstance(row, dict):
            missing = [c for c in self.columns if c not in row]
            if missing:
                raise ModelError(f"{source}: the feature row lacks {', '.join(missing[:5])}")
            row = [row[c] for c in self.columns]
        return np.asarray(row, dtype=np.float64).reshape(1, -1)

    def precomputed(self, given: Precomputed, *, source: Any) -> Windows:
        if given.row is None:
            raise ModelError(f"{source}: this model needs a feature row")
        X = self.row_of(given.row, source=source)
        return Windows([(0.0, given.seconds)], None, lambda m: _all(X, m))


def run_backend(own: str, classifier_backend: str) -> str:
    """The backend a network member runs on: its own, except that a classifier on "onnx" never runs torch."""
    return "onnx" if classifier_backend == "onnx" and own == "torch" else own


def run_patches(own: int | None, override: int | str | None) -> int | None:
    """A network member's patches per 30 s block: the load-time override (``"all"``: None), else its own."""
    if override is None:
        return own
    return None if override == "all" else int(override)


def musicnn_run(ctx: BlockContext, network: str, patches: int | None, backend: str):
    """musicnn on the block for a member with its own ``patches`` per 30 s block and ``backend``, under the
    run's choices (a load-time patches override, ``"all"``: every patch; a classifier on "onnx" never runs
    torch): ``(embedding, spans, levels)`` of its patches, run once per block for every member that ends
    up asking for the same network, patches and backend (a head and the "ears" members)."""
    from genrekit.networks import musicnn as embeddings

    k, backend = run_patches(patches, ctx.patches_per_block), run_backend(backend, ctx.backend)
    key = f"musicnn:{network}:{backend}:{k}"
    if key not in ctx.made:
        y, sr, offset = ctx.y, ctx.sr, ctx.offset
        e = embeddings.embed(y, sr=sr, model=network, patches_per_block=k, backend=backend,
                             threads=None if backend == "torch" else ctx.threads)
        spans = [(offset + float(s), min(offset + y.size / sr, offset + float(s) + embeddings.PATCH_SECONDS))
                 for s in e.starts]
        ctx.made[key] = (e, spans, window_levels(y, spans, offset=offset, sr=sr))
    return ctx.made[key]


class NetworkInput(ModelInput):
    """A pretrained network's embedding: the ``network`` (file key ``model``: ``MSD_musicnn``), its
    ``layer``, the pooling, how many 3 s patches of each 30 s block it scores, the backend, the vector's
    column names and, optionally, per source domain (``audio``, ``image``) the (mean, std) it is
    standardised with. The file's ``type`` stays ``"musicnn"`` (the only network so far)."""

    type = "musicnn"
    pools_vectors = True

    def __init__(self, meta: dict[str, Any], *, source: Any = "model"):
        validate_musicnn_input(meta, source=source)
        super().__init__(meta)
        self.network: str = meta["model"]
        self.layer: str = meta["layer"]
        self.pool: str = meta["pool"]
        self.patches_per_block: int | None = meta.get("patches_per_block")
        self.backend: str = meta.get("backend", "torch")
        self.columns: list[str] = list(meta["columns"])
        std = meta.get("standardise")
        self.standardise = ({d: (np.asarray(s["mean"], dtype=np.float64), np.asarray(s["std"], dtype=np.float64))
                             for d, s in std.items()} if std else None)

    @classmethod
    def tagger(cls, backend: str = "torch") -> NetworkInput:
        """The network pass that gives tags to a model without a network member (MSD musicnn, all patches)."""
        return cls({"type": "musicnn", "model": "MSD_musicnn", "layer": "taggram", "pool": "mean",
                    "patches_per_block": None, "backend": backend,
                    "columns": [f"taggram_mean_{i}" for i in range(MUSICNN_LAYERS["taggram"])]}, source="tagger")

    def vectors(self, vectors: np.ndarray, *, domain: str = "audio") -> np.ndarray:
        """Per-patch vectors as the head takes them: standardised with their source ``domain``'s statistics
        when the member stores them (audio's when that domain has none)."""
        x = np.asarray(vectors, dtype=np.float64)
        if not self.standardise:
            return x
        mean, std = self.standardise.get(domain) or self.standardise["audio"]
        return (x - mean) / std

    def run_backend(self, classifier_backend: str) -> str:
        return run_backend(self.backend, classifier_backend)

    def run_patches(self, override: int | str | None) -> int | None:
        return run_patches(self.patches_per_block, override)

    def block(self, ctx: BlockContext) -> Windows:
        e, spans, levels = musicnn_run(ctx, self.network, self.patches_per_block, self.backend)
        layer = getattr(e, self.layer)
        return Windows(spans, levels, lambda m: self.vectors(_all(layer, m), domain="audio"), taggram=e.taggram)

    def precomputed(self, given: Precomputed, *, source: Any) -> Windows:
        if given.embedding is None and given.image is not None:
            from genrekit.networks import musicnn as embeddings

            rms = given.row.get("rms_mean") if isinstance(given.row, dict) else None
            given.embedding = embeddings.embed_image(  # as this member embeds audio: same patches, same backend
                given.image, rms_mean=rms, model=self.network, patches_per_block=self.patches_per_block,
                backend=self.backend)
            given.domain = "image"
        if given.embedding is None:
            raise ModelError(f"{source}: this model needs a musicnn embedding or a Kaggle image")
        vec = self.vectors(getattr(given.embedding, self.layer), domain=given.domain)
        return Windows([(0.0, given.seconds)] * len(vec), None, lambda m: _all(vec, m),
                       taggram=np.asarray(given.embedding.taggram))


class HybridInput(ModelInput):
    """The inputs of a hybrid's members, in order (no hybrid inside a hybrid)."""

    type = "hybrid"

    def __init__(self, meta: dict[str, Any], *, source: Any = "model"):
        members = meta.get("members")
        if not isinstance(members, list) or not 2 <= len(members) <= MAX_MEMBERS:
            raise ModelError(f"{source}: model metadata 'input.members' must list the members' inputs "
                             f"(2 to {MAX_MEMBERS})")
        if any(isinstance(m, dict) and m.get("type") == "hybrid" for m in members):
            raise ModelError(f"{source}: hybrid models cannot be nested")
        self._members = [input_from_meta(m, source=source) for m in members]
        super().__init__(meta)

    @property
    def members(self) -> list[ModelInput]:
        return list(self._members)


EARS_PARTS: dict[str, int] = {"musicnn_penultimate": 200, "musicnn_taggram": 50, "mn04_features": 384,
                              "mn04_sigmoid": 527}
EARS_PATCH_WIDTH = EARS_PARTS["musicnn_penultimate"] + EARS_PARTS["musicnn_taggram"]  # block() per patch


class EarsInput(ModelInput):
    """A per-track row of musicnn and mn04 means (module docstring); ``patches_per_block``: musicnn's
    3 s patches scored per 30 s block (None: all of them, as the study's heads were fitted)."""

    type = "ears"
    pools_vectors = True
    hears_mn04: ClassVar[bool] = True

    def __init__(self, meta: dict[str, Any], *, source: Any = "model"):
        parts = meta.get("parts")
        if (not isinstance(parts, list) or not parts or any(p not in EARS_PARTS for p in parts)
                or len(set(parts)) != len(parts)):
            raise ModelError(f"{source}: model metadata 'input.parts' must list distinct parts of {', '.join(EARS_PARTS)}")
        cols = meta.get("columns")
        if not isinstance(cols, list) or len(cols) != sum(EARS_PARTS[p] for p in parts):
            raise ModelError(f"{source}: model metadata 'input.columns' must name the {sum(EARS_PARTS[p] for p in parts)} "
                             "columns of its parts")
        k = meta.get("patches_per_block")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not NETWORK_PATCHES[0] <= k <= NETWORK_PATCHES[1]):
            raise ModelError(f"{source}: model metadata 'input.patches_per_block' must be None or 1..10, got {k!r}")
        if meta.get("backend", "onnx") not in MUSICNN_BACKENDS:
            raise ModelError(f"{source}: model metadata 'input.backend' must be one of {', '.join(MUSICNN_BACKENDS)}, "
                             f"got {meta.get('backend')!r}")
        super().__init__(meta)
        self.parts: list[str] = list(parts)
        self.patches_per_block: int | None = k
        self.backend: str = meta.get("backend", "onnx")
        self.columns = list(cols)

    @classmethod
    def create(cls, parts: list[str], *, patches_per_block: int | None = None, backend: str = "onnx") -> EarsInput:
        cols = [f"{p}_mean_{i}" for p in parts for i in range(EARS_PARTS[p])]
        return cls({"type": "ears", "parts": list(parts), "columns": cols, "patches_per_block": patches_per_block,
                    "backend": backend})

    def block(self, ctx: BlockContext) -> Windows:
        y, sr, offset = ctx.y, ctx.sr, ctx.offset
        if not any(p.startswith("musicnn_") for p in self.parts):  # mn04 alone: no musicnn run, one block-wide
            spans = [(offset, offset + y.size / sr)]              # window says whether the block is audible
            return Windows(spans, window_levels(y, spans, offset=offset, sr=sr),
                           lambda m: _all(np.zeros((1, EARS_PATCH_WIDTH)), m))
        e, spans, levels = musicnn_run(ctx, "MSD_musicnn", self.patches_per_block, self.backend)
        vec = np.concatenate([np.asarray(e.penultimate, np.float64), np.asarray(e.taggram, np.float64)], axis=1)
        return Windows(spans, levels, lambda m: _all(vec, m), taggram=e.taggram)

    def rows(self, patches: np.ndarray, mn04: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray | None:
        """``(n, columns)``: this input's parts from ``n`` musicnn vectors ``[penultimate | taggram]`` (the
        patches, or their track mean) next to mn04's track ``(features mean, sigmoid mean)``; None when a
        part is missing (mn04 heard nothing audible)."""
        patches = np.atleast_2d(np.asarray(patches, np.float64))
        n = patches.shape[0]
        got = {"musicnn_penultimate": patches[:, :200], "musicnn_taggram": patches[:, 200:EARS_PATCH_WIDTH]}
        if mn04 is not None:
            got["mn04_features"], got["mn04_sigmoid"] = (np.broadcast_to(np.asarray(v, np.float64), (n, np.size(v)))
                                                         for v in mn04)
        if any(p not in got for p in self.parts):
            return None
        return np.concatenate([got[p] for p in self.parts], axis=1)

    def precomputed(self, given: Precomputed, *, source: Any) -> Windows:
        """The musicnn patches' ``[penultimate | taggram]`` of the given embedding (or of the Kaggle image,
        embedded as this input runs musicnn); mn04's part must be given (``given.mn04``): an image-derived
        one is far from the audio's (docs/ears.md, "Image-derived mn04 input"), so nothing guesses it."""
        if given.mn04 is None:
            raise ModelError(f"{source}: this model hears audio only (mn04 reads 32 kHz up to 15 kHz; a Kaggle image "
                             "stops at 11 kHz): give it the audio file")
        if not any(p.startswith("musicnn_") for p in self.parts):
            return Windows([(0.0, given.seconds)], None, lambda m: _all(np.zeros((1, EARS_PATCH_WIDTH)), m))
        if given.embedding is None and given.image is not None:
            from genrekit.networks import musicnn as embeddings

            rms = given.row.get("rms_mean") if isinstance(given.row, dict) else None
            given.embedding = embeddings.embed_image(given.image, rms_mean=rms, patches_per_block=self.patches_per_block,
                                                     backend=self.backend)
        if given.embedding is None:
            raise ModelError(f"{source}: this model needs a musicnn embedding or a Kaggle image")
        e = given.embedding
        vec = np.concatenate([np.asarray(e.penultimate, np.float64), np.asarray(e.taggram, np.float64)], axis=1)
        return Windows([(0.0, given.seconds)] * len(vec), None, lambda m: _all(vec, m), taggram=np.asarray(e.taggram))


INPUT_TYPES: dict[str, type[ModelInput]] = {c.type: c for c in (FeatureInput, LogmelInput, NetworkInput, HybridInput,
                                                                  EarsInput)}


def input_from_meta(desc: Any, *, source: str | os.PathLike | Any = "model") -> ModelInput:
    """The typed input a model file's ``input`` block describes; :class:`ModelError` naming ``source``
    when it is malformed or asks for more memory or time than a real model needs."""
    cls = INPUT_TYPES.get(desc.get("type")) if isinstance(desc, dict) else None
    if cls is None:
        got = desc.get("type") if isinstance(desc, dict) else desc
        raise ModelError(f"{source}: model metadata 'input' must have type "
                         f"{', '.join(repr(t) for t in INPUT_TYPES)}, got {got!r}")
    return cls(desc, source=source)


def validate_input(desc: Any, *, source: str | os.PathLike | Any = "model") -> None:
    """Check a model's ``input`` block (:func:`input_from_meta`, result dropped)."""
    input_from_meta(desc, source=source)


def window_levels(y: np.ndarray, spans, *, offset: float, sr: int) -> np.ndarray:
    """``rms_db`` of the samples of ``y`` (a block starting at ``offset`` s) inside each (start, end) span."""
    from genrekit.dsp import rms_db

    out = np.empty(len(spans))
    for i, (s, e) in enumerate(spans):
        a = max(0, int(round((s - offset) * sr)))
        b = max(a, min(y.size, int(round((e - offset) * sr))))
        out[i] = rms_db(y[a:b])
    return out


# ------------------------------------------------------------------------------------- constructors
def features_input(columns: Sequence[str] | None, n_features: int, segment_seconds: float | None = None) -> dict:
    """The metadata block telling genrekit.predict which feature vector the model expects."""
    return FeatureInput.create(columns, n_features, segment_seconds).to_meta()


def musicnn_input(columns_or_n: Any = None, *, model: str = "MSD_musicnn", layer: str = "penultimate",
                  pool: str = "mean", patches_per_block: int | None = None, backend: str = "torch",
                  standardise: dict[str, tuple[Any, Any]] | None = None) -> dict:
    """The ``input`` block of a head on musicnn embeddings: predict runs musicnn on each 30 s block
    (``patches_per_block`` evenly spread 3 s patches, None for all ten) and hands the head the
    ``pool`` of the audible patches' ``layer`` vectors. ``columns`` name the vector's entries.

    ``standardise``: per source domain (``audio``, ``image``) the (mean, std) vectors its vectors are
    standardised with before the head (docs/transfer.md "domain-z": image-derived embeddings sit apart
    from audio-derived ones, so each domain is centred and scaled on its own)."""
    n = NETWORK_LAYERS.get(model, {}).get(layer, 0)
    cols = list(columns_or_n) if isinstance(columns_or_n, (list, tuple)) else [f"{layer}_{pool}_{i}" for i in range(n)]
    desc = {"type": "musicnn", "model": model, "layer": layer, "pool": pool,
            "patches_per_block": patches_per_block, "backend": backend, "columns": cols}
    if standardise is not None:
        desc["standardise"] = {d: {"mean": [float(v) for v in m], "std": [float(v) for v in sd]}
                               for d, (m, sd) in standardise.items()}
    return NetworkInput(desc, source="musicnn_input").to_meta()


def validate_musicnn_input(desc: dict, *, source: str | os.PathLike | Any = "model") -> None:
    """A network member's input: known network, layer, pooling, backend; patch count within a block."""
    if desc.get("model") not in NETWORK_LAYERS:
        raise ModelError(f"{source}: model metadata 'input.model' must be one of {', '.join(NETWORK_LAYERS)}, "
                         f"got {desc.get('model')!r}")
    layers = NETWORK_LAYERS[desc["model"]]
    layer = desc.get("layer")
    if layer not in layers:
        raise ModelError(f"{source}: model metadata 'input.layer' must be one of {', '.join(layers)}, got {layer!r}")
    if desc.get("pool") not in MUSICNN_POOLS:
        raise ModelError(f"{source}: model metadata 'input.pool' must be one of {', '.join(MUSICNN_POOLS)}, "
                         f"got {desc.get('pool')!r}")
    k, (lo, hi) = desc.get("patches_per_block"), NETWORK_PATCHES
    if k is not None and not _int_in(k, lo, hi):
        raise ModelError(f"{source}: model metadata 'input.patches_per_block' must be null or an integer in "
                         f"[{lo}, {hi}], got {k!r}")
    if desc.get("backend", "torch") not in MUSICNN_BACKENDS:
        raise ModelError(f"{source}: model metadata 'input.backend' must be one of {', '.join(MUSICNN_BACKENDS)}, "
                         f"got {desc.get('backend')!r}")
    n = layers[layer]
    cols = desc.get("columns")
    if not isinstance(cols, list) or len(cols) != n or not all(isinstance(c, str) and len(c) <= MAX_NAME_CHARS
                                                                for c in cols):
        raise ModelError(f"{source}: model metadata 'input.columns' must name the {n} entries "
                         f"of {desc['model']}'s {layer} layer")
    std = desc.get("standardise")
    if std is None:
        return
    if not isinstance(std, dict) or "audio" not in std or not set(std) <= {"audio", "image"}:
        raise ModelError(f"{source}: model metadata 'input.standardise' must map 'audio' (and optionally 'image') "
                         "to {mean, std}")
    for d, ms in std.items():
        ok = isinstance(ms, dict) and all(isinstance(ms.get(k), list) and len(ms[k]) == n for k in ("mean", "std"))
        if ok:
            try:
                m, sd = np.asarray(ms["mean"], dtype=float), np.asarray(ms["std"], dtype=float)
            except (TypeError, ValueError):
                ok = False
            else:
                ok = bool(m.ndim == 1 and np.isfinite(m).all() and np.isfinite(sd).all() and (sd > 0).all())
        if not ok:
            raise ModelError(f"{source}: model metadata 'input.standardise.{d}' must hold 'mean' and 'std' lists of "
                             f"{n} finite numbers (std > 0)")
