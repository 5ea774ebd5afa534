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

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from genrekit import audio
from genrekit.dsp import SILENCE_DB, rms_db  # noqa: F401  (the silence threshold, one, in dsp; tests import both here)
from genrekit.errors import DurationLimitError, GenrekitError, ModelError, SilentAudioError
from genrekit.metrics import PROBA_FLOOR, mean_log_proba
from genrekit.models.inputs import BlockContext, ModelInput, NetworkInput, Precomputed, input_from_meta

BLOCK_SECONDS = 30.0
# Shipped models by name (``--model NAME``): the default blends the musicnn hybrid with two zero-shot experts
# on musicnn's tags and mn04's AudioSet classes (issue 23; scripts/build_default.py, MODEL_CARD.md); the
# musicnn hybrid and the faster CNN + features hybrid stay available by name (the latter's file keeps its old name).
SHIPPED_MODELS = {
    "genrekit-gtzan-blend": "genrekit-gtzan-blend.safetensors",
    "genrekit-gtzan-musicnn": "genrekit-gtzan-musicnn.safetensors",
    "genrekit-gtzan-fast": "genrekit-gtzan-default.safetensors",
    "genrekit-gtzan-default": "genrekit-gtzan-default.safetensors",  # the fast model's old name
    # musicnn + mn04 head with two zero-shot experts (issue 23; scripts/build_ears_default.py, MODEL_CARD.md)
    "genrekit-gtzan-ears": "genrekit-gtzan-ears.safetensors",
}
DEFAULT_MODEL = "genrekit-gtzan-blend"
DEFAULT_MODEL_NAME = SHIPPED_MODELS[DEFAULT_MODEL]
N_TAGS_RECORD = 5  # top MSD tags in a prediction record


class Member(NamedTuple):
    """One model of a classifier with the input it reads (a hybrid has several; any other model one)."""

    model: Any
    input: ModelInput


@dataclass
class MemberPart:
    """One member's result on one block (or on a precomputed track): the probabilities of its audible
    windows, every window's span and level (None: not measured), and for a member scored on its pooled
    vectors the audible windows' ``vectors`` and ``taggram``."""

    proba: np.ndarray
    spans: list[tuple[float, float]]
    levels: np.ndarray | None
    vectors: np.ndarray | None = None
    taggram: np.ndarray | None = None


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
    styles: list[tuple[str, float]] | None = None  # top AudioSet genre classes, calibrated (mn04; styles=True)

    def to_dict(self, *, segments: bool = False, min_confidence: float | None = None) -> dict[str, Any]:
        """The record; ``tags`` and ``styles`` only when computed and ``uncertain`` only with
        ``min_confidence``, so records made without them stay as they were. With styles, ``uncertain``
        is also true when AudioSet hears a style beyond the ten more strongly than the genre's own family
        (:func:`genrekit.networks.mn04.styles.uncertain`): the answer is then only the nearest genre."""
        d: dict[str, Any] = {
            "file": self.file,
            "genre": self.genre,
            "scores": {g: round(s, 6) for g, s in self.scores.items()},
            "top": [[g, round(s, 6)] for g, s in self.top],
            "duration_s": round(self.duration, 3),
        }
        if self.tags is not None:
            d["tags"] = [[t, round(v, 6)] for t, v in self.tags]
        if self.styles is not None:
            d["styles"] = [[t, round(v, 6)] for t, v in self.styles]
        if min_confidence is not None:
            score = self.scores[self.genre]
            if self.styles is None:
                d["uncertain"] = bool(score < min_confidence)
            else:
                from genrekit.networks.mn04.styles import uncertain

                d["uncertain"] = bool(uncertain(self.genre, min(1.0, max(0.0, score)), self.styles,
                                                min_confidence=min_confidence))
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


def check_mn04_means(mn04: Any, *, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A track's mn04 part ``(features mean (384), sigmoid mean (527))``, checked: finite, sigmoids in [0, 1]."""
    from genrekit.networks.mn04.spec import N_CLASSES, N_FEATURES

    try:
        feats, sig = (np.asarray(v, dtype=np.float64) for v in mn04)
    except (TypeError, ValueError):
        raise GenrekitError(f"{name}: mn04 must be (features mean, sigmoid mean), got {type(mn04).__name__}") from None
    if (feats.shape != (N_FEATURES,) or sig.shape != (N_CLASSES,) or not np.isfinite(feats).all()
            or not np.isfinite(sig).all() or sig.min() < 0 or sig.max() > 1):
        raise GenrekitError(f"{name}: mn04 must be ({N_FEATURES} finite features, {N_CLASSES} sigmoids in [0, 1]), "
                            f"got shapes {feats.shape} and {sig.shape}")
    return feats, sig


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
    min_confidence: float | None = None, tags: bool = False, styles: bool = True,
) -> dict[str, Any]:
    """One file's ``genrekit predict`` record; any error reading it becomes the record's ``error``
    (a silent file's is "no audible signal", one longer than ``max_duration`` seconds says so).

    Every engine (local processes, Ray, the web server) uses this, so their records are identical."""
    try:
        return clf.predict(path, top_k=top_k, max_duration=max_duration, tags=tags, styles=styles).to_dict(
            segments=segments, min_confidence=min_confidence)
    except GenrekitError as exc:
        return error_record(path, str(exc), segments=segments)
    except (OSError, ValueError, MemoryError) as exc:
        return error_record(path, f"{path}: {type(exc).__name__}: {exc}", segments=segments)


def musicnn_vectors(inp: dict, vectors: np.ndarray, *, domain: str = "audio") -> np.ndarray:
    """A network member's per-patch vectors as its head takes them (:meth:`NetworkInput.vectors`):
    standardised with the statistics of their source ``domain`` when the member stores them."""
    return NetworkInput(inp, source="musicnn_vectors").vectors(vectors, domain=domain)


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
        typed = input_from_meta(self.input, source=path)
        parts = typed.members
        models = model.members_ if len(parts) > 1 else [model]
        self.members = [Member(m, inp) for m, inp in zip(models, parts, strict=True)]
        # a network resamples each block to its own rate: the others' rate decides
        rates = {inp.sr for inp in parts if inp.sr is not None} or {audio.SR}
        if len(rates) != 1:
            raise ModelError(f"{path}: members expect different sample rates {sorted(rates)}")
        self.sr = rates.pop()
        self.tail_seconds = typed.tail_seconds  # a block's tail shorter than this joins the block before it
        self.genres: list[str] = [str(c) for c in model.classes_]
        # the member whose windows make the timeline: the spectrogram model when there is one
        self._timeline = next((i for i, inp in enumerate(parts) if inp.makes_timeline), 0)
        self.temperature: float | None = getattr(model, "temperature_", None) or meta.get("temperature")
        # a hybrid scored without its mn04 members (an image-only track) has its own calibration, if stored
        self.temperature_without_mn04: float | None = meta.get("temperature_without_mn04") or self.temperature
        self.network = next((inp for inp in parts if isinstance(inp, NetworkInput)), None)
        # members that read mn04's track means (models.ears): the song's ear must hear the decode
        self.needs_ear = any(getattr(inp, "hears_mn04", False) for inp in parts)
        self._full_block_frames: dict[str, int] = {}  # log-mel frames of a full block, per front end
        self.threads = 1  # onnxruntime intra-op threads of musicnn (load(threads=) sets it)
        self.patches_per_block: int | str | None = None  # musicnn patches override (load(patches_per_block=))

    @property
    def musicnn(self) -> dict[str, Any] | None:
        """The network member's input block (None without one): the name older callers know."""
        return None if self.network is None else self.network.to_meta()

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
        p = model_path(path)
        from genrekit.models import load

        model = load(p, backend=backend, threads=threads)
        if backend == "torch":
            import torch

            torch.set_num_threads(threads)
        for m in [model, *getattr(model, "members_", [])]:  # a hybrid's members run their own nets
            if hasattr(m, "threads"):
                m.threads = threads  # models would otherwise reset torch to their training threads
        clf = cls(model, path=str(p), backend=backend)
        clf.threads = threads
        clf.patches_per_block = check_patches_per_block(patches_per_block)
        return clf

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
    def _proba_of(self, model, X: np.ndarray, inp: ModelInput | None = None) -> np.ndarray:
        """``model.predict_proba(X)``, or no rows when there is nothing audible to classify; for a member that
        reads mn04 (``inp``) placeholders, scored in :meth:`_aggregate` once mn04 has heard the song."""
        if len(X) == 0 or getattr(inp, "hears_mn04", False):
            return np.zeros((len(X), len(self.genres)))
        return model.predict_proba(X)

    def _context(self, y: np.ndarray, offset: float) -> BlockContext:
        # Peak within the threshold: every window of the block is silent, so no spectrogram is needed,
        # only its width (the same for every full block); hours of silence then cost little.
        quiet = y.size > 0 and float(np.max(np.abs(y - y.mean()))) < 0.99 * 10 ** (SILENCE_DB / 20)
        return BlockContext(y, self.sr, offset, quiet=quiet, full=y.size == int(BLOCK_SECONDS * self.sr),
                            full_frames=self._full_block_frames, backend=self.backend,
                            patches_per_block=self.patches_per_block, threads=self.threads)

    def _member_part(self, member: Member | None, inp: ModelInput, ctx: BlockContext) -> MemberPart:
        """One member on one block: its windows, their levels, the audible ones' probabilities (``member``
        None: no model, only the windows' vectors and tags)."""
        w = inp.block(ctx)
        audible = w.levels >= SILENCE_DB
        X = w.inputs(audible)
        proba = self._proba_of(member.model, X, inp) if member is not None else None
        pooled = inp.pools_vectors
        return MemberPart(proba, w.spans, w.levels, X if pooled else None,
                          None if w.taggram is None else w.taggram[audible])

    def _block_parts(self, y: np.ndarray, offset: float) -> list[MemberPart]:
        """Each member's window probabilities for one block of samples starting at ``offset`` seconds."""
        ctx = self._context(y, offset)  # members with the same front end (a seed ensemble) share it
        return [self._member_part(m, m.input, ctx) for m in self.members]

    def _source_blocks(self, source, sr: int | None, max_duration: float | None, ear=None) -> Iterator[np.ndarray]:
        """Blocks of about 30 s at the model's rate from a file path or an array of samples; ``ear``
        (a :class:`~genrekit.styles_ear.StylesEar`) hears the same decode at its native rate."""
        if isinstance(source, (str, os.PathLike)):
            return audio.stream(source, sr=self.sr, block_seconds=BLOCK_SECONDS, max_duration=max_duration,
                                tap=None if ear is None else ear.hear)
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
            if ear is not None:
                ear.hear_all(y, int(sr))
            y = audio.resample(y, orig_sr=int(sr), target_sr=self.sr)
            n = int(BLOCK_SECONDS * self.sr)
            return (y[i : i + n] for i in range(0, max(1, y.size), n))

    def _blocks(self, it) -> Iterator[tuple[np.ndarray, float]]:
        """(samples, offset) blocks of about 30 s; a short tail is joined to the block before it."""
        min_tail = int(float(self.tail_seconds) * self.sr)
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
                tags: bool = False, styles: bool = True) -> Prediction:
        """Classify a file path or an array of samples (then give ``sr``) of any length.

        Returns the track's genre, every genre's score (summing to 1), the ``top_k`` genres and the
        per-window timeline (``segments``; silent windows are marked and not classified). Raises
        :class:`~genrekit.errors.SilentAudioError` when no window is audible and, with ``max_duration``
        (seconds), :class:`~genrekit.errors.DurationLimitError` as soon as the decoded audio is longer.
        The top MSD tags come with it when the model has a musicnn member, or with ``tags=True``; the
        top AudioSet styles (mn04 on the same decode, :mod:`genrekit.styles_ear`) unless ``styles=False``.
        """
        if top_k < 1:
            raise GenrekitError("top_k must be >= 1")
        if max_duration is not None and not max_duration > 0:
            raise GenrekitError(f"max_duration must be > 0 seconds (or None for no limit), got {max_duration}")
        is_path = isinstance(source, (str, os.PathLike))
        if is_path and max_duration is not None:  # decode-only first: an hour-long file is skipped in seconds
            audio.decoded_seconds(source, max_duration=max_duration)
        ear = self.ear(file=str(source) if is_path else "samples", styles=styles) if styles or self.needs_ear else None
        blocks = self._source_blocks(source, sr, max_duration, ear)
        if is_path:  # decode the next block while the models run on this one
            from genrekit.run.engines import prefetch

            blocks = prefetch(blocks)
        return self.predict_blocks(blocks, top_k=top_k, file=str(source) if is_path else None, tags=tags, ear=ear)

    def ear(self, *, file: str | None = None, styles: bool = True):
        """A fresh :class:`~genrekit.styles_ear.StylesEar` for one song (``audio.stream(tap=ear.hear)``,
        then ``predict_blocks(ear=ear)``), running mn04 with this classifier's threads; ``styles=False``:
        only for a model whose members read mn04 (:attr:`needs_ear`), the record gets no styles."""
        from genrekit.styles_ear import StylesEar

        return StylesEar(threads=self.threads, name=file or "samples", styles=styles)

    def predict_blocks(self, blocks, *, top_k: int = 3, file: str | None = None, tags: bool = False,
                       ear=None) -> Prediction:
        """Classify a track given as consecutive blocks of samples at ``self.sr`` (e.g. from
        :func:`genrekit.audio.stream` of an upload), consumed one at a time: whoever makes the blocks can stop
        the work between two of them (a deadline) or look at the samples (a spectrogram). ``ear``: the
        :meth:`ear` that heard the same decode (``audio.stream(tap=ear.hear)``): the record gets its styles."""
        if top_k < 1:
            raise GenrekitError("top_k must be >= 1")
        if self.needs_ear and ear is None:
            raise ModelError(f"{self.path}: this model's members read mn04: give predict_blocks the ear that heard "
                             "the decode (ear = clf.ear(); audio.stream(..., tap=ear.hear))")
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
            if tags and self.network is None:
                part = self._member_part(None, NetworkInput.tagger(), self._context(block, offset))
                extra_tags.append(part.taggram)
            duration = offset + block.size / self.sr
        if not parts:
            raise audio.EmptyAudioError(f"{name}: no audio samples")
        if not any(len(part.proba) for b in parts for part in b):
            loudest = max(float(np.max(part.levels)) for b in parts for part in b)
            raise SilentAudioError(f"{name}: no audible signal (RMS {loudest:.1f} dBFS < {SILENCE_DB:g} dBFS)")
        pred = self._aggregate(parts, top_k=top_k, duration=duration, file=file,
                               mn04=ear.means() if self.needs_ear else None)
        if extra_tags:
            pred.tags = self._top_tags(np.concatenate(extra_tags))
        if ear is not None and ear.wants_styles:
            pred.styles = ear.styles()
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
        seconds: float = 30.0, embedding=None, image=None, domain: str = "audio", mn04=None,
    ) -> Prediction:
        """Classify one track from precomputed inputs: a log-mel matrix (e.g. an inverted Kaggle image)
        for spectrogram members and/or a feature row (columns as in the member's metadata) for feature
        members; for a musicnn member an :class:`~genrekit.networks.musicnn.model.Embedding` or a Kaggle ``image``
        (its path; the row's ``rms_mean`` sets its level; ``domain`` says where a given ``embedding``
        came from: ``audio`` or ``image``); for members that read mn04 its track ``mn04`` = (features mean,
        sigmoid mean). Every member must get its input, except that without ``mn04`` a hybrid's members that
        read it are left out and the others' weights renormalised (MODEL_CARD.md: image-only tracks)."""
        if mn04 is not None:
            mn04 = check_mn04_means(mn04, name=file or "precomputed")
        given = Precomputed(levels=levels, row=row, embedding=embedding, image=image, domain=domain, seconds=seconds,
                            mn04=mn04)
        present = [mn04 is not None or not getattr(m.input, "hears_mn04", False) for m in self.members]
        if len(self.members) == 1 or not any(present):
            present = [True] * len(self.members)  # nothing else reads it: the member's own error says why
        parts = []
        for m, here in zip(self.members, present, strict=True):
            if not here:
                parts.append(MemberPart(np.zeros((0, len(self.genres))), [], None))
                continue
            w = m.input.precomputed(given, source=self.path)  # each takes its own form (a log-mel member sets the duration)
            X = w.inputs(None)
            parts.append(MemberPart(self._proba_of(m.model, X, m.input), w.spans, None,
                                    X if m.input.pools_vectors else None, w.taggram))
        return self._aggregate([parts], top_k=top_k, duration=given.seconds, file=file, mn04=mn04,
                               present=None if all(present) else present)

    def _aggregate(self, blocks, *, top_k: int, duration: float, file: str | None, mn04=None,
                   present: list[bool] | None = None) -> Prediction:
        """Mean log-probability over each member's windows, members combined by the model's weights;
        the timeline is the spectrogram member's windows, blended with the other members' block scores.
        ``mn04``: the song's (features mean, sigmoid mean) for members that read it (``models.ears``);
        ``present``: the members that heard the track (None: all), the others left out of the blend."""

        def norm(p):  # floored and renormalised: these are also the timeline's scores
            p = np.clip(np.asarray(p, dtype=np.float64), PROBA_FLOOR, 1.0)
            return p / p.sum(axis=1, keepdims=True)

        def mean_log(p):  # the windows' rule, one [1, k] row (already floored)
            # a member that heard nothing audible has no opinion: uniform, neutral in the product of experts
            if len(p) == 0:
                return np.full((1, len(self.genres)), 1.0 / len(self.genres))
            return mean_log_proba(p, floor=None)[None]

        for m, member in enumerate(self.members):
            if getattr(member.input, "hears_mn04", False) and (present is None or present[m]):  # per patch: its
                # musicnn vector next to the song's mn04
                for b in blocks:
                    X = member.input.rows(b[m].vectors, mn04) if len(b[m].vectors) else None
                    b[m].proba = (np.full((len(b[m].vectors), len(self.genres)), 1.0 / len(self.genres))
                                  if X is None else member.model.predict_proba(X))
        per_member = [norm(np.concatenate([b[m].proba for b in blocks])) for m in range(len(self.members))]
        track = [mean_log(p) for p in per_member]
        tags = None
        for m, member in enumerate(self.members):
            if member.input.pools_vectors and (present is None or present[m]):  # the head scores the mean of the
                # audible patches' vectors, as trained
                vec = np.concatenate([b[m].vectors for b in blocks])
                if blocks[0][m].taggram is not None:  # an mn04-only member has no musicnn tags
                    tags = self._top_tags(np.concatenate([b[m].taggram for b in blocks]))
                x = vec.mean(axis=0, keepdims=True) if len(vec) else None
                if x is not None and getattr(member.input, "hears_mn04", False):
                    x = member.input.rows(x, mn04)
                if x is not None:
                    track[m] = norm(member.model.predict_proba(x))
        hybrid = len(self.members) > 1
        temperature = self.temperature if present is None else self.temperature_without_mn04
        scores = calibrate((self.model.combine(track, present) if hybrid else track[0])[0], temperature)
        segments: list[Segment] = []
        t = self._timeline
        for b in blocks:
            p, spans, level = norm(b[t].proba), b[t].spans, b[t].levels
            if hybrid and len(p):
                p = self.model.combine([p if m == t else np.repeat(mean_log(norm(b[m].proba)), len(p), axis=0)
                                        for m in range(len(self.members))], present)
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
