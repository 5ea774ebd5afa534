"""`GenreClassifier`: load a model (the shipped one by default) and classify audio of any length.

Audio is read block by block (30 s, the length GTZAN models were trained on), each block is turned into
the model's input (log-mel slices or a feature row, as the model's metadata says), and the windows'
probabilities are aggregated by mean log-probability. Memory stays bounded whatever the file's length.

No music, no genre: a window whose level is below :data:`SILENCE_DB` is marked silent in the timeline and
left out of the track's score (so a song with a silent intro is classified on its music), and a track
with no audible window at all raises :class:`~genrekit.errors.SilentAudioError` (its record then has
``genre`` None and the error "no audible signal").
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from genrekit import audio
from genrekit.dsp import SILENCE_DB, rms_db  # the silence threshold (one, in dsp) and the window level
from genrekit.errors import DurationLimitError, GenrekitError, ModelError, SilentAudioError
from genrekit.metrics import PROBA_FLOOR, mean_log_proba

BLOCK_SECONDS = 30.0
# Shipped models by name (``--model NAME``): the musicnn hybrid is the default; today's faster CNN +
# features hybrid stays available as genrekit-gtzan-fast (its file keeps its old name).
SHIPPED_MODELS = {
    "genrekit-gtzan-musicnn": "genrekit-gtzan-musicnn.safetensors",
    "genrekit-gtzan-fast": "genrekit-gtzan-default.safetensors",
    "genrekit-gtzan-default": "genrekit-gtzan-default.safetensors",  # the fast model's old name
}
DEFAULT_MODEL = "genrekit-gtzan-musicnn"
DEFAULT_MODEL_NAME = SHIPPED_MODELS[DEFAULT_MODEL]
N_TAGS_RECORD = 5  # top MSD tags in a prediction record
BACKENDS = ("onnx", "torch")  # "onnx": onnxruntime, no torch (the default); "torch": the reference


def _window_levels(y: np.ndarray, spans, *, offset: float, sr: int) -> np.ndarray:
    """``rms_db`` of the samples of ``y`` (a block starting at ``offset`` s) inside each (start, end) span."""
    out = np.empty(len(spans))
    for i, (s, e) in enumerate(spans):
        a = max(0, int(round((s - offset) * sr)))
        b = max(a, min(y.size, int(round((e - offset) * sr))))
        out[i] = rms_db(y[a:b])
    return out


def default_model_path(name: str = DEFAULT_MODEL) -> Path:
    """A pretrained model shipped inside the package (by default the default one)."""
    if name not in SHIPPED_MODELS:
        raise ModelError(f"unknown shipped model {name!r} (known: {', '.join(SHIPPED_MODELS)})")
    p = Path(str(resources.files("genrekit").joinpath("pretrained", SHIPPED_MODELS[name])))
    if not p.is_file():
        raise ModelError(
            f"the shipped model is missing ({p}); reinstall genrekit or pass --model PATH "
            "(build it with: python scripts/build_pretrained.py)"
        )
    return p


def model_path(model: str | os.PathLike | None) -> Path:
    """A model file from a path, a shipped model's name (``genrekit-gtzan-fast``) or None (the default)."""
    if model is None:
        return default_model_path()
    if isinstance(model, str) and model in SHIPPED_MODELS and not Path(model).exists():
        return default_model_path(model)
    return Path(model)


def calibrate(scores: np.ndarray, temperature: float | None) -> np.ndarray:
    """Probabilities ``p`` sharpened or softened by a temperature: ``softmax(log p / T)`` (T None: as is)."""
    if temperature is None or temperature == 1.0:
        return scores
    z = np.log(np.clip(np.asarray(scores, dtype=np.float64), PROBA_FLOOR, 1.0)) / float(temperature)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


@dataclass
class Segment:
    """One window of the track: where it is and what the model thinks of it."""

    start: float
    end: float
    genre: str | None
    scores: dict[str, float] | None
    silent: bool = False  # below SILENCE_DB: not classified (genre and scores None)

    def to_dict(self) -> dict[str, Any]:
        if self.silent:
            return {"start": round(self.start, 3), "end": round(self.end, 3), "genre": None, "scores": None,
                    "silent": True}
        return {"start": round(self.start, 3), "end": round(self.end, 3), "genre": self.genre,
                "scores": {g: round(s, 6) for g, s in self.scores.items()}}


@dataclass
class Prediction:
    """The genre of a whole track, all genres' scores (summing to 1), and the per-window timeline."""

    genre: str
    scores: dict[str, float]
    top: list[tuple[str, float]]
    duration: float
    segments: list[Segment] = field(default_factory=list)
    file: str | None = None
    tags: list[tuple[str, float]] | None = None  # top MSD tags (models with a musicnn member, or asked for)

    def to_dict(self, *, segments: bool = False, min_confidence: float | None = None) -> dict[str, Any]:
        """The record; ``tags`` only when computed and ``uncertain`` only with ``min_confidence``, so
        records of models without musicnn stay as they were."""
        d: dict[str, Any] = {
            "file": self.file,
            "genre": self.genre,
            "scores": {g: round(s, 6) for g, s in self.scores.items()},
            "top": [[g, round(s, 6)] for g, s in self.top],
            "duration_s": round(self.duration, 3),
        }
        if self.tags is not None:
            d["tags"] = [[t, round(v, 6)] for t, v in self.tags]
        if min_confidence is not None:
            d["uncertain"] = bool(self.scores[self.genre] < min_confidence)
        if segments:
            d["segments"] = [s.to_dict() for s in self.segments]
        d["error"] = None
        return d


def check_patches_per_block(k: int | str | None) -> int | str | None:
    """A ``patches_per_block`` override: None (the model's own), ``"all"`` or an integer from 1 to 10."""
    from genrekit.networks.musicnn.frontend import check_per_block

    if k is None or k == "all":
        return k
    try:  # the range networks.musicnn takes (a 30 s block's patches); "3" from a command line counts
        return check_per_block(int(k) if isinstance(k, str) and k.isdigit() else k)
    except ValueError as exc:
        raise GenrekitError(f"{exc} (or 'all')") from None


def check_min_confidence(p: float | None) -> float | None:
    if p is not None and not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
        raise GenrekitError(f"min_confidence must be a probability in [0, 1], got {p!r}")
    return None if p is None else float(p)


def error_record(file: str, error: str, *, segments: bool = False) -> dict[str, Any]:
    """The record of a file that could not be classified: same keys, ``genre`` None."""
    d: dict[str, Any] = {"file": file, "genre": None, "scores": None, "top": None, "duration_s": None}
    if segments:
        d["segments"] = None
    d["error"] = error
    return d


def record_for(
    clf: GenreClassifier, path: str, *, top_k: int = 3, segments: bool = False, max_duration: float | None = None,
    min_confidence: float | None = None, tags: bool = False,
) -> dict[str, Any]:
    """One file's ``genrekit predict`` record; any error reading it becomes the record's ``error``
    (a silent file's is "no audible signal", one longer than ``max_duration`` seconds says so).

    Every engine (local processes, Ray, the web server) uses this, so their records are identical."""
    try:
        return clf.predict(path, top_k=top_k, max_duration=max_duration, tags=tags).to_dict(
            segments=segments, min_confidence=min_confidence)
    except GenrekitError as exc:
        return error_record(path, str(exc), segments=segments)
    except (OSError, ValueError, MemoryError) as exc:
        return error_record(path, f"{path}: {type(exc).__name__}: {exc}", segments=segments)


def musicnn_vectors(inp: dict, vectors: np.ndarray, *, domain: str = "audio") -> np.ndarray:
    """A musicnn member's per-patch vectors as its head takes them: standardised with the statistics
    of their source ``domain`` when the member stores them (audio's when that domain has none)."""
    x = np.asarray(vectors, dtype=np.float64)
    std = inp.get("standardise")
    if not std:
        return x
    s = std.get(domain) or std["audio"]
    return (x - np.asarray(s["mean"])) / np.asarray(s["std"])


class GenreClassifier:
    """Classify songs with a genrekit model.

    >>> clf = GenreClassifier.load()                 # the shipped GTZAN model
    >>> r = clf.predict("song.mp3", top_k=3)
    >>> r.genre, r.scores["rock"], r.segments[0].start
    """

    def __init__(self, model, *, path: str | None = None, backend: str = "onnx"):
        self.model = model
        self.path = path
        self.backend = backend
        meta = getattr(model, "meta_", None) or {}
        self.input: dict[str, Any] = getattr(model, "input_", None) or meta.get("input") or {}
        if self.input.get("type") == "hybrid":
            self.members = list(zip(model.members_, self.input["members"], strict=True))
        elif self.input.get("type") in ("logmel", "features", "musicnn"):
            self.members = [(model, self.input)]
        else:
            raise ModelError(f"{path}: model input type {self.input.get('type')!r} is not supported for prediction")
        # musicnn resamples each block to its own 16 kHz: the others' rate decides
        rates = {int(inp.get("sr", audio.SR)) for _, inp in self.members if inp["type"] != "musicnn"} or {audio.SR}
        if len(rates) != 1:
            raise ModelError(f"{path}: members expect different sample rates {sorted(rates)}")
        self.sr = rates.pop()
        self.genres: list[str] = [str(c) for c in model.classes_]
        # the member whose windows make the timeline: the spectrogram model when there is one
        kinds = [inp["type"] for _, inp in self.members]
        self._timeline = kinds.index("logmel") if "logmel" in kinds else 0
        self.temperature: float | None = getattr(model, "temperature_", None) or meta.get("temperature")
        self.musicnn = next((inp for _, inp in self.members if inp["type"] == "musicnn"), None)
        self._full_block_frames: dict[str, int] = {}  # log-mel frames of a full block, per front end
        self.threads = 1  # onnxruntime intra-op threads of musicnn (load(threads=) sets it)
        self.patches_per_block: int | str | None = None  # musicnn patches override (load(patches_per_block=))

    # ------------------------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls, path: str | os.PathLike | None = None, *, backend: str = "onnx", threads: int = 1,
        patches_per_block: int | str | None = None,
    ) -> GenreClassifier:
        """Load ``path`` (any genrekit model file) or, by default, the shipped pretrained model.

        ``backend="onnx"`` (the default) runs deep models, a hybrid's deep members and musicnn on
        onnxruntime, without importing torch: their graphs are built from the model file's tensors
        (:func:`genrekit.onnx.deep_graph`, cached); ``path`` may also be the ``.onnx`` file written by
        ``genrekit export``. ``backend="torch"`` runs them in PyTorch, the reference. ``threads`` is the
        intra-op thread count: 1 by default, because one clip's work is small and extra threads only
        contend; scale out with processes (``--jobs``) instead. ``patches_per_block`` overrides how many
        3 s patches of each 30 s block a musicnn member scores a track on: an integer 1-10, ``"all"``, or
        None for what the model file says (the shipped default: 3; "all" is slower and, on GTZAN's
        valid side, a little more accurate: MODEL_CARD.md).
        """
        from genrekit.run.engines import limit_blas_threads

        limit_blas_threads(threads)  # numpy/scipy too: small products, threads only contend
        if backend not in BACKENDS:
            raise ModelError(f"unknown backend {backend!r}: use 'torch' or 'onnx'")
        p = model_path(path)
        if backend == "onnx":
            from genrekit.onnx import OnnxModel

            model = OnnxModel.load(p, threads=threads)
        else:
            from genrekit.models import load_model

            model = load_model(p)
            import torch

            torch.set_num_threads(threads)
        for m in [model, *getattr(model, "members_", [])]:  # a hybrid's members run their own nets
            if hasattr(m, "threads"):
                m.threads = threads  # models would otherwise reset torch to their training threads
        clf = cls(model, path=str(p), backend=backend)
        clf.threads = threads
        clf.patches_per_block = check_patches_per_block(patches_per_block)
        return clf

    def _musicnn_patches(self, inp: dict) -> int | None:
        """Patches per 30 s block a musicnn member scores: the load-time override, else the member's own."""
        if self.patches_per_block is None:
            return inp.get("patches_per_block")
        return None if self.patches_per_block == "all" else self.patches_per_block

    def _musicnn_backend(self, inp: dict) -> str:
        """The musicnn backend of a member: its own, except that backend "onnx" never runs torch."""
        b = inp.get("backend", "torch")
        return "onnx" if self.backend == "onnx" and b == "torch" else b

    @property
    def identity(self) -> dict[str, Any]:
        """What a report needs to name this model."""
        meta = getattr(self.model, "meta_", None) or {}
        return {
            "path": self.path, "backend": self.backend, "kind": meta.get("kind"),
            "name": meta.get("name") or meta.get("model_name"), "sha256": self._file_sha256(),
            "classes": self.genres,
        }

    def _file_sha256(self) -> str | None:
        import hashlib

        try:
            return hashlib.sha256(Path(self.path).read_bytes()).hexdigest() if self.path else None
        except OSError:
            return None

    # ------------------------------------------------------------------------------------ inputs
    def _levels_proba(self, model, inp: dict, levels: np.ndarray, offset: float, seconds: float,
                      y: np.ndarray | None = None):
        """Per-slice probabilities of a log-mel matrix that starts at ``offset`` and lasts ``seconds``.

        With the block's samples ``y``, slices below SILENCE_DB are not classified: returns the audible
        slices' probabilities, every slice's span and every slice's level (None without ``y``)."""
        from genrekit import spectrogram

        secs = float(inp.get("slice_seconds", 3.0))
        hop = int(inp.get("hop_length", 512))
        overlap = float(inp.get("predict_overlap", 0.0))
        width = spectrogram.slice_frames(seconds=secs, sr=self.sr, hop_length=hop)
        n = levels.shape[1]
        if n < width:
            levels = np.pad(levels, ((0, 0), (0, width - n)))
        starts = spectrogram.slice_starts(max(n, width), width=width, overlap=overlap)
        if n > width and starts[-1] + width < n - width // 3:  # cover a tail longer than a third of a slice
            starts = np.append(starts, n - width)
        X = np.ascontiguousarray(levels[:, starts[:, None] + np.arange(width)[None, :]].transpose(1, 0, 2))
        spans = [(offset + float(s) * hop / self.sr, min(offset + seconds, offset + float(s) * hop / self.sr + secs))
                 for s in starts]
        if y is None:
            return model.predict_proba(X), spans, None
        level = _window_levels(y, spans, offset=offset, sr=self.sr)
        audible = level >= SILENCE_DB
        if audible.all():
            return model.predict_proba(X), spans, level
        return self._proba_of(model, X[audible]), spans, level

    def _proba_of(self, model, X: np.ndarray) -> np.ndarray:
        """``model.predict_proba(X)``, or no rows when there is nothing audible to classify."""
        if len(X) == 0:
            return np.zeros((0, len(self.genres)))
        return model.predict_proba(X)

    def _rows_proba(self, model, inp: dict, y: np.ndarray, offset: float):
        """Feature rows of ``y``'s windows (the model's segment length, else the whole block)."""
        from genrekit import features

        secs = inp.get("segment_seconds") or BLOCK_SECONDS
        ws = audio.windows(y, sr=self.sr, seconds=float(secs), pad=False) or [
            audio.Window(None, 0, 0.0, y.size / self.sr, y)
        ]
        cols = inp.get("columns")
        level = np.array([rms_db(w.samples) for w in ws])
        rows = [list(features.extract(w.samples, sr=self.sr, columns=cols).values())
                for w, lv in zip(ws, level, strict=True) if lv >= SILENCE_DB]
        spans = [(offset + w.start, offset + w.end) for w in ws]
        if len(rows) == len(ws):
            return model.predict_proba(np.asarray(rows, dtype=np.float64)), spans, level
        return self._proba_of(model, np.asarray(rows, dtype=np.float64)), spans, level

    def _block_parts(self, y: np.ndarray, offset: float) -> list[tuple[np.ndarray, list]]:
        """Each member's window probabilities for one block of samples starting at ``offset`` seconds."""
        from genrekit import spectrogram

        parts = []
        made: dict[str, np.ndarray] = {}  # members with the same front end (a seed ensemble) share it
        # Peak within the threshold: every window of the block is silent, so no spectrogram is needed,
        # only its width (the same for every full block); hours of silence then cost little.
        quiet = y.size > 0 and float(np.max(np.abs(y - y.mean()))) < 0.99 * 10 ** (SILENCE_DB / 20)
        full = y.size == int(BLOCK_SECONDS * self.sr)
        for model, inp in self.members:
            if inp["type"] == "logmel":
                key = json.dumps(inp, sort_keys=True, default=str)
                if key not in made and quiet and full and key in self._full_block_frames:
                    made[key] = np.zeros((1, self._full_block_frames[key]), np.float32)  # no window is classified
                if key not in made:
                    made[key] = spectrogram.logmel_for_input(y, inp)
                    if full:
                        self._full_block_frames[key] = made[key].shape[1]
                parts.append(self._levels_proba(model, inp, made[key], offset, y.size / self.sr, y))
            elif inp["type"] == "musicnn":
                parts.append(self._musicnn_proba(model, inp, y, offset))
            else:
                parts.append(self._rows_proba(model, inp, y, offset))
        return parts

    def _musicnn_proba(self, model, inp: dict, y: np.ndarray, offset: float, *, tags_only: bool = False):
        """musicnn on one block: the head's probabilities per audible patch (the timeline), every
        patch's span and level, and the audible patches' (layer vectors, taggram) for the track score."""
        from genrekit.networks import musicnn

        backend = self._musicnn_backend(inp)
        e = musicnn.embed(y, sr=self.sr, model=inp.get("model", musicnn.DEFAULT_MODEL),
                          patches_per_block=self._musicnn_patches(inp), backend=backend,
                          threads=None if backend == "torch" else self.threads)
        spans = [(offset + float(s), min(offset + y.size / self.sr, offset + float(s) + musicnn.PATCH_SECONDS))
                 for s in e.starts]
        level = _window_levels(y, spans, offset=offset, sr=self.sr)
        audible = level >= SILENCE_DB
        vec = musicnn_vectors(inp, getattr(e, inp.get("layer", "penultimate"))[audible], domain="audio")
        tg = e.taggram[audible]
        if tags_only:
            return None, spans, level, (vec, tg)
        return self._proba_of(model, vec), spans, level, (vec, tg)

    def _source_blocks(self, source, sr: int | None, max_duration: float | None) -> Iterator[np.ndarray]:
        """Blocks of about 30 s at the model's rate from a file path or an array of samples."""
        if isinstance(source, (str, os.PathLike)):
            return audio.stream(source, sr=self.sr, block_seconds=BLOCK_SECONDS, max_duration=max_duration)
        else:
            y = np.asarray(source, dtype=np.float32)
            if y.ndim == 2:  # (frames, channels) or (channels, frames)
                y = y.mean(axis=1 if y.shape[0] > y.shape[1] else 0)
            if sr is None:
                raise GenrekitError("predict(samples) needs sr= (the samples' rate)")
            audio.validate(y, name="samples", min_samples=1)
            if max_duration is not None and y.size > max_duration * sr:
                raise DurationLimitError(
                    f"samples: the audio ({y.size / sr:.1f} s) is longer than the limit of {max_duration:g} s")
            y = audio.resample(y, orig_sr=int(sr), target_sr=self.sr)
            n = int(BLOCK_SECONDS * self.sr)
            return (y[i : i + n] for i in range(0, max(1, y.size), n))

    def _blocks(self, it) -> Iterator[tuple[np.ndarray, float]]:
        """(samples, offset) blocks of about 30 s; a short tail is joined to the block before it."""
        min_tail = int(float(self.input.get("slice_seconds", 3.0)) * self.sr)
        prev: np.ndarray | None = None
        offset = 0.0
        for block in it:
            if prev is not None:
                if block.size < min_tail:
                    prev = np.concatenate([prev, block])
                    continue
                yield prev, offset
                offset += prev.size / self.sr
            prev = block
        if prev is not None:
            yield prev, offset

    # ------------------------------------------------------------------------------------ predict
    def predict(self, source, *, sr: int | None = None, top_k: int = 3, max_duration: float | None = None,
                tags: bool = False) -> Prediction:
        """Classify a file path or an array of samples (then give ``sr``) of any length.

        Returns the track's genre, every genre's score (summing to 1), the ``top_k`` genres and the
        per-window timeline (``segments``; silent windows are marked and not classified). Raises
        :class:`~genrekit.errors.SilentAudioError` when no window is audible and, with ``max_duration``
        (seconds), :class:`~genrekit.errors.DurationLimitError` as soon as the decoded audio is longer.
        The top MSD tags come with it when the model has a musicnn member, or with ``tags=True``.
        """
        if top_k < 1:
            raise GenrekitError("top_k must be >= 1")
        if max_duration is not None and not max_duration > 0:
            raise GenrekitError(f"max_duration must be > 0 seconds (or None for no limit), got {max_duration}")
        is_path = isinstance(source, (str, os.PathLike))
        if is_path and max_duration is not None:  # decode-only first: an hour-long file is skipped in seconds
            audio.decoded_seconds(source, max_duration=max_duration)
        blocks = self._source_blocks(source, sr, max_duration)
        if is_path:  # decode the next block while the models run on this one
            from genrekit.run.engines import prefetch

            blocks = prefetch(blocks)
        return self.predict_blocks(blocks, top_k=top_k, file=str(source) if is_path else None, tags=tags)

    def predict_blocks(self, blocks, *, top_k: int = 3, file: str | None = None, tags: bool = False) -> Prediction:
        """Classify a track given as consecutive blocks of samples at ``self.sr`` (e.g. from
        :func:`genrekit.audio.stream_bytes`), consumed one at a time: whoever makes the blocks can stop
        the work between two of them (a deadline) or look at the samples (a spectrogram)."""
        if top_k < 1:
            raise GenrekitError("top_k must be >= 1")
        parts = []
        extra_tags = []  # tags asked of a model without a musicnn member: a separate musicnn pass
        duration = 0.0
        name = file or "samples"
        for block, offset in self._blocks(blocks):
            if block.size < audio.N_FFT:
                if parts:
                    continue
                audio.validate(block, name=name)
            parts.append(self._block_parts(block, offset))
            if tags and self.musicnn is None:
                inp = {"model": "MSD_musicnn", "layer": "taggram", "patches_per_block": None,
                       "backend": self._musicnn_backend({})}
                extra_tags.append(self._musicnn_proba(None, inp, block, offset, tags_only=True)[3][1])
            duration = offset + block.size / self.sr
        if not parts:
            raise audio.EmptyAudioError(f"{name}: no audio samples")
        if not any(len(part[0]) for b in parts for part in b):
            loudest = max(float(np.max(part[2])) for b in parts for part in b)
            raise SilentAudioError(f"{name}: no audible signal (RMS {loudest:.1f} dBFS < {SILENCE_DB:g} dBFS)")
        pred = self._aggregate(parts, top_k=top_k, duration=duration, file=file)
        if extra_tags:
            pred.tags = self._top_tags(np.concatenate(extra_tags))
        return pred

    @staticmethod
    def _top_tags(taggram: np.ndarray) -> list[tuple[str, float]] | None:
        """The file's top MSD tags: musicnn's mean taggram over the audible patches."""
        from genrekit.networks.musicnn.model import ranked_tags

        if len(taggram) == 0:
            return None
        return ranked_tags(taggram.mean(axis=0), N_TAGS_RECORD, model="MSD_musicnn")

    def predict_precomputed(
        self, *, levels: np.ndarray | None = None, row=None, top_k: int = 3, file: str | None = None,
        seconds: float = 30.0, embedding=None, image=None, domain: str = "audio",
    ) -> Prediction:
        """Classify one track from precomputed inputs: a log-mel matrix (e.g. an inverted Kaggle image)
        for spectrogram members and/or a feature row (columns as in the member's metadata) for feature
        members; for a musicnn member an :class:`~genrekit.networks.musicnn.model.Embedding` or a Kaggle ``image``
        (its path; the row's ``rms_mean`` sets its level; ``domain`` says where a given ``embedding``
        came from: ``audio`` or ``image``). Every member must get its input."""
        parts = []
        for model, inp in self.members:
            if inp["type"] == "musicnn":
                if embedding is None and image is not None:
                    from genrekit.networks.musicnn.image import embed_image

                    rms = row.get("rms_mean") if isinstance(row, dict) else None
                    embedding = embed_image(  # as this member embeds audio: same patches, same backend
                        image, rms_mean=rms, model=inp.get("model", "MSD_musicnn"),
                        patches_per_block=inp.get("patches_per_block"), backend=inp.get("backend", "torch"))
                    domain = "image"
                if embedding is None:
                    raise ModelError(f"{self.path}: this model needs a musicnn embedding or a Kaggle image")
                vec = musicnn_vectors(inp, getattr(embedding, inp.get("layer", "penultimate")), domain=domain)
                parts.append((model.predict_proba(vec), [(0.0, seconds)] * len(vec), None,
                              (vec, embedding.taggram)))
            elif inp["type"] == "logmel":
                if levels is None:
                    raise ModelError(f"{self.path}: this model needs a log-mel matrix")
                seconds = levels.shape[1] * int(inp.get("hop_length", 512)) / self.sr
                parts.append(self._levels_proba(model, inp, np.asarray(levels, dtype=np.float32), 0.0, seconds))
            else:
                if row is None:
                    raise ModelError(f"{self.path}: this model needs a feature row")
                if isinstance(row, dict):  # name -> value: take the member's columns in its order
                    missing = [c for c in inp["columns"] if c not in row]
                    if missing:
                        raise ModelError(f"{self.path}: the feature row lacks {', '.join(missing[:5])}")
                    vec = [row[c] for c in inp["columns"]]
                else:
                    vec = row
                parts.append((model.predict_proba(np.asarray(vec, dtype=np.float64).reshape(1, -1)), [(0.0, seconds)],
                              None))
        return self._aggregate([parts], top_k=top_k, duration=seconds, file=file)

    def _aggregate(self, blocks, *, top_k: int, duration: float, file: str | None) -> Prediction:
        """Mean log-probability over each member's windows, members combined by the model's weights;
        the timeline is the spectrogram member's windows, blended with the other members' block scores."""

        def norm(p):  # floored and renormalised: these are also the timeline's scores
            p = np.clip(np.asarray(p, dtype=np.float64), PROBA_FLOOR, 1.0)
            return p / p.sum(axis=1, keepdims=True)

        def mean_log(p):  # the windows' rule, one [1, k] row (already floored)
            # a member that heard nothing audible has no opinion: uniform, neutral in the product of experts
            if len(p) == 0:
                return np.full((1, len(self.genres)), 1.0 / len(self.genres))
            return mean_log_proba(p, floor=None)[None]

        per_member = [norm(np.concatenate([b[m][0] for b in blocks])) for m in range(len(self.members))]
        track = [mean_log(p) for p in per_member]
        tags = None
        for m, (model, inp) in enumerate(self.members):
            if inp["type"] == "musicnn":  # the head scores the mean of the audible patches' vectors, as trained
                vec = np.concatenate([b[m][3][0] for b in blocks])
                tags = self._top_tags(np.concatenate([b[m][3][1] for b in blocks]))
                if len(vec):
                    track[m] = norm(model.predict_proba(vec.mean(axis=0, keepdims=True)))
        hybrid = len(self.members) > 1
        scores = calibrate((self.model.combine(track) if hybrid else track[0])[0], self.temperature)
        segments: list[Segment] = []
        t = self._timeline
        for b in blocks:
            p, spans, level = norm(b[t][0]), b[t][1], b[t][2]
            if hybrid and len(p):
                p = self.model.combine([p if m == t else np.repeat(mean_log(norm(b[m][0])), len(p), axis=0)
                                        for m in range(len(self.members))])
            rows = iter(p)
            for i, (s, e) in enumerate(spans):
                if level is not None and not level[i] >= SILENCE_DB:
                    segments.append(Segment(float(s), float(e), None, None, silent=True))
                    continue
                q = next(rows)
                segments.append(Segment(float(s), float(e), self.genres[int(q.argmax())],
                                        dict(zip(self.genres, map(float, q), strict=True))))
        order = np.argsort(-scores)
        return Prediction(
            genre=self.genres[int(order[0])], scores={self.genres[i]: float(scores[i]) for i in order},
            top=[(self.genres[i], float(scores[i])) for i in order[:top_k]],
            duration=float(duration), segments=segments, file=file, tags=tags,
        )
