"""musicnn in PyTorch: tags and embeddings from networks pretrained on real music.

musicnn (Pons & Serra 2019, ISC licence) learnt from ~200k Million Song Dataset tracks (``MSD_musicnn``)
or MagnaTagATune (``MTT_musicnn``); its embeddings generalise to recordings from outside GTZAN far
better than anything trained on GTZAN's 1000 clips. This module reproduces the original inference
exactly (verified against its TensorFlow graph by ``tests/test_embeddings.py``), without TensorFlow:

- front end (numpy): 16 kHz mono, STFT n_fft 512 / hop 256 (centred, zero padding), power, 96 slaney
  mel bands, the mel power cast to float16 as musicnn's ``extractor.py`` does, ``log10(10000 * x + 1)``
  in float32; patches of 187 frames (3 s), one every 187 frames unless ``hop`` says otherwise;
- network (torch, float32 on CPU, :func:`load_musicnn`): timbral filters (7x38, 7x67) and temporal
  filters (128/64/32 x 1) with batch norm and max-pooling over frequency, a dense mid-end of three
  1-D convolutions with residual connections, max + mean pooling over time, dense 200 (the
  *penultimate* layer) and dense 50 with a sigmoid (the *taggram*).

The weights ship in ``genrekit/pretrained/musicnn/`` (converted by ``scripts/convert_musicnn.py``;
licence and attribution in ``LICENSE-musicnn.md``). ``import genrekit.embeddings`` does not import
torch: the front end, tag names and :class:`Embedding` work without it, so a faster backend can reuse
them; torch is loaded by :func:`load_musicnn` (and the :class:`Musicnn` class) when first needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genrekit.audio import resample, stream, validate
from genrekit.dsp import fft_frequencies, frame_count, hann_window, mel_frequencies
from genrekit.errors import EmptyAudioError, FeatureError, ModelError, NonFiniteAudioError

if TYPE_CHECKING:
    import torch

MODELS: tuple[str, ...] = ("MSD_musicnn", "MTT_musicnn")
DEFAULT_MODEL = "MSD_musicnn"
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


def _weights_dir() -> Path:
    return Path(str(resources.files("genrekit").joinpath("pretrained", "musicnn")))


def _check_model(model: str) -> str:
    if model not in MODELS:
        raise ModelError(f"unknown musicnn model {model!r}; choose one of {', '.join(MODELS)}")
    return model


@cache
def tag_names(model: str = DEFAULT_MODEL) -> tuple[str, ...]:
    """The 50 tags of ``model`` in the order of its taggram columns (read without loading torch)."""
    path = _weights_dir() / f"{_check_model(model)}.tags.json"
    try:
        tags = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: musicnn tag list missing or unreadable ({exc})") from None
    if not isinstance(tags, list) or len(tags) != N_TAGS or not all(isinstance(t, str) for t in tags):
        raise ModelError(f"{path}: expected a JSON list of {N_TAGS} tag names")
    return tuple(tags)


# ------------------------------------------------------------------------------------------ front end


@lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    """librosa.filters.mel(sr=16000, n_fft=512, n_mels=96) to the bit, laid out ``(257, 96)``.

    The mel scale is dsp's; the rounding is librosa's own (triangles cast to float32 *before* the
    slaney area normalisation), not ``dsp.mel_filterbank``'s single rounding: the two differ by one
    float32 ulp in 144 of 24,672 weights, and musicnn's float16 cast of the mel power turns that
    into a few log-mel values off by 4e-4, which moves pooled outputs by ~1e-5 of their scale."""
    fftfreqs = fft_frequencies(sr=SR, n_fft=N_FFT)
    mel_f = mel_frequencies(N_MELS + 2, fmin=0.0, fmax=SR / 2.0)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    weights = np.maximum(0.0, np.minimum(-ramps[:-2] / fdiff[:-1, None], ramps[2:] / fdiff[1:, None]))
    weights = weights.astype(np.float32)
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]  # in place: float64 product, rounded to float32
    basis = np.ascontiguousarray(weights.T)
    basis.setflags(write=False)
    return basis


def _logmel_frames(padded: np.ndarray, n: int) -> np.ndarray:
    """Log-mel of the first ``n`` frames of an already centre-padded signal.

    Follows librosa's dtypes: float64 FFT cast to complex64, float32 power and mel product, the mel
    power cast to float16 (musicnn's ``audio_rep.astype(np.float16)``), then the log in float32, which
    is what NumPy 1.x (musicnn pins ``numpy<1.17``) made of ``np.log10(10000 * audio_rep + 1)``.
    """
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[: (n - 1) * HOP_LENGTH + 1 : HOP_LENGTH]
    spec = np.fft.rfft(frames * hann_window(N_FFT), axis=-1).astype(np.complex64)  # float64 FFT
    power = np.abs(spec) ** 2
    mel = (power @ _mel_basis()).astype(np.float16).astype(np.float32)
    return np.log10(np.float32(10000.0) * mel + np.float32(1.0))


def _check_wave(y: np.ndarray, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise FeatureError(f"{name}: musicnn expects mono 1-D audio, got shape {y.shape} (mix down first)")
    return validate(np.asarray(y, dtype=np.float32), name=name, min_samples=N_FFT)


def musicnn_input(y: np.ndarray, *, sr: int = SR) -> np.ndarray:
    """Log-mel ``(frames, 96)`` float32 exactly as musicnn computes it, ``1 + len // 256`` frames at 16 kHz.

    Audio at another rate is resampled first (soxr HQ, as ``librosa.load`` and ``genrekit.audio.load``
    do). Raises :class:`~genrekit.errors.EmptyAudioError` below one FFT frame (512 samples at 16 kHz)
    and :class:`~genrekit.errors.NonFiniteAudioError` on NaN / inf.
    """
    y = _check_wave(y, "audio")
    if sr != SR:
        y = _check_wave(resample(y, orig_sr=sr, target_sr=SR), "audio (resampled to 16 kHz)")
    pad = N_FFT // 2
    padded = np.concatenate([np.zeros(pad, np.float32), y, np.zeros(pad, np.float32)])
    return _logmel_frames(padded, frame_count(y.size, hop_length=HOP_LENGTH))


def iter_musicnn_input(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """:func:`musicnn_input` over consecutive 16 kHz blocks: yields ``(frames, 96)`` chunks whose
    concatenation equals ``musicnn_input(np.concatenate(blocks))``, holding one block at a time."""
    pad = N_FFT // 2
    buf = np.zeros(pad, np.float32)  # left centring pad
    for block in blocks:
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 1:
            raise FeatureError(f"musicnn expects mono 1-D audio blocks, got shape {block.shape}")
        if not np.isfinite(block).all():
            raise NonFiniteAudioError("audio contains NaN or infinite samples")
        buf = np.concatenate([buf, block])
        if buf.size >= N_FFT:
            n = 1 + (buf.size - N_FFT) // HOP_LENGTH
            yield _logmel_frames(buf, n)
            buf = buf[n * HOP_LENGTH :]
    buf = np.concatenate([buf, np.zeros(pad, np.float32)])  # right centring pad
    if buf.size >= N_FFT:
        yield _logmel_frames(buf, 1 + (buf.size - N_FFT) // HOP_LENGTH)


def _check_hop(hop: int) -> int:
    if isinstance(hop, bool) or not isinstance(hop, (int, np.integer)) or hop < 1:
        raise ValueError(f"patch hop must be a positive number of frames, got {hop!r}")
    return int(hop)


def repeat_pad(logmel: np.ndarray, n_frames: int = PATCH_FRAMES) -> np.ndarray:
    """Tile a log-mel shorter than a patch until it fills one: musicnn's training-time ``repeat-pad``
    for short clips (its config.json), so a 1 s clip is heard as a loop rather than as silence."""
    if logmel.shape[0] == 0:
        raise FeatureError("cannot pad an empty log-mel")
    reps = -(-n_frames // logmel.shape[0])
    return np.concatenate([logmel] * reps)[:n_frames]


def patch_starts(n_frames: int, *, hop: int = PATCH_HOP) -> np.ndarray:
    """First frame of each full patch: ``0, hop, 2*hop, ...`` while a whole patch fits (extractor.py
    drops the incomplete tail); ``[0]`` when the input is shorter than a patch (it gets repeat-padded)."""
    hop = _check_hop(hop)
    if n_frames < PATCH_FRAMES:
        return np.zeros(1, np.int64)
    return np.arange(0, n_frames - PATCH_FRAMES + 1, hop, dtype=np.int64)


def patches(logmel: np.ndarray, *, hop: int = PATCH_HOP) -> np.ndarray:
    """Cut a ``(frames, 96)`` log-mel into ``(n, 187, 96)`` patches starting every ``hop`` frames.

    ``hop=187`` (default) is musicnn's ``input_overlap=False``; ``hop=61`` is its ``input_overlap=1``
    (1 s). A log-mel shorter than one patch becomes one repeat-padded patch.
    """
    logmel = np.asarray(logmel, dtype=np.float32)
    if logmel.ndim != 2 or logmel.shape[1] != N_MELS:
        raise FeatureError(f"musicnn log-mel must be (frames, {N_MELS}), got shape {logmel.shape}")
    if logmel.shape[0] == 0:
        raise FeatureError("musicnn log-mel holds no frames")
    starts = patch_starts(logmel.shape[0], hop=hop)
    if logmel.shape[0] < PATCH_FRAMES:
        return repeat_pad(logmel)[None]
    view = np.lib.stride_tricks.sliding_window_view(logmel, PATCH_FRAMES, axis=0)  # (n, 96, 187)
    return np.ascontiguousarray(view[starts].transpose(0, 2, 1))


def iter_patches(chunks: Iterable[np.ndarray], *, hop: int = PATCH_HOP) -> Iterator[tuple[int, np.ndarray, bool]]:
    """Patches ``(start_frame, (187, 96) patch, padded)`` from consecutive log-mel chunks, the same as
    :func:`patches` on their concatenation, keeping under two patches of frames in memory."""
    hop = _check_hop(hop)
    buf = np.zeros((0, N_MELS), np.float32)
    offset = 0  # absolute frame index of buf[0]
    next_start = 0
    emitted = False
    for chunk in chunks:
        buf = np.concatenate([buf, chunk])
        while next_start + PATCH_FRAMES <= offset + buf.shape[0]:
            i = next_start - offset
            yield next_start, buf[i : i + PATCH_FRAMES].copy(), False
            emitted = True
            next_start += hop
        keep_from = min(next_start - offset, buf.shape[0])
        buf, offset = buf[keep_from:], offset + keep_from
    if not emitted:
        if offset + buf.shape[0] == 0:
            raise FeatureError("musicnn log-mel holds no frames")
        yield 0, repeat_pad(buf), True


# ------------------------------------------------------------------------------------------ network


def _define_musicnn() -> type:
    """Build the torch module class on first use, so importing this module does not import torch."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class ConvBlock(nn.Module):
        """conv -> ReLU -> batch norm, the order of musicnn's blocks (norm *after* the activation)."""

        def __init__(self, conv: nn.Module, channels: int, two_d: bool):
            super().__init__()
            self.conv = conv
            self.bn = (nn.BatchNorm2d if two_d else nn.BatchNorm1d)(channels, eps=BN_EPS)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(F.relu(self.conv(x)))

        def freq_max(self, x: torch.Tensor) -> torch.Tensor:
            """``forward(x).amax(dim=3)`` (the front end's max-pool over frequency), bit for bit, without
            ReLU and batch norm passes over the large ``(b, c, time, freq)`` map: both are monotone per
            channel (increasing where the norm's scale ``gamma`` is >= 0, decreasing where it is < 0), so
            the maximum is ReLU + norm of the conv's maximum, or of its minimum where ``gamma < 0``."""
            lo, hi = torch.aminmax(self.conv(x), dim=3)
            pick = torch.where((self.bn.weight < 0)[None, :, None], lo, hi)
            bn = self.bn
            return F.batch_norm(F.relu(pick), bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)

    class Musicnn(nn.Module):
        """musicnn's ``build_musicnn`` (front end '7774timbraltemporal', 64-filter mid-end, 200-unit
        back end), inference only. ``forward`` takes ``(batch, 187, 96)`` log-mel patches and returns
        ``(taggram, penultimate, mean_pool, max_pool)``: ``(b, 50)`` sigmoid tag scores, ``(b, 200)``
        batch-normed dense layer, and ``(b, 753)`` mean / max over time of the front- and mid-end maps."""

        def __init__(self) -> None:
            super().__init__()
            self.input_bn = nn.BatchNorm2d(1, eps=BN_EPS)
            self.timbral74 = ConvBlock(nn.Conv2d(1, 204, (7, int(0.4 * N_MELS))), 204, True)
            self.timbral77 = ConvBlock(nn.Conv2d(1, 204, (7, int(0.7 * N_MELS))), 204, True)
            self.temporal128 = ConvBlock(nn.Conv2d(1, 51, (128, 1)), 51, True)
            self.temporal64 = ConvBlock(nn.Conv2d(1, 51, (64, 1)), 51, True)
            self.temporal32 = ConvBlock(nn.Conv2d(1, 51, (32, 1)), 51, True)
            self.mid1 = ConvBlock(nn.Conv1d(561, 64, 7), 64, False)
            self.mid2 = ConvBlock(nn.Conv1d(64, 64, 7), 64, False)
            self.mid3 = ConvBlock(nn.Conv1d(64, 64, 7), 64, False)
            self.pool_bn = nn.BatchNorm1d(N_POOLED, eps=BN_EPS)
            self.dense = nn.Linear(N_POOLED, N_PENULTIMATE)
            self.dense_bn = nn.BatchNorm1d(N_PENULTIMATE, eps=BN_EPS)
            self.out = nn.Linear(N_PENULTIMATE, N_TAGS)

        @staticmethod
        def _same(x: torch.Tensor, k: int) -> torch.Tensor:
            """TF 'same' padding along time for an even kernel: (k-1)//2 before, the rest after."""
            return F.pad(x, (0, 0, (k - 1) // 2, k - 1 - (k - 1) // 2))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
            h = self.input_bn(x[:, None])  # (b, 1, time, mel)
            p7 = F.pad(h, (0, 0, 3, 3))  # timbral: 'same' along time only, 'valid' along mel
            front = [
                self.timbral74.freq_max(p7),
                self.timbral77.freq_max(p7),
                self.temporal128.freq_max(self._same(h, 128)),
                self.temporal64.freq_max(self._same(h, 64)),
                self.temporal32.freq_max(self._same(h, 32)),
            ]
            f = torch.cat(front, dim=1)  # (b, 561, time), TF's concat order
            m1 = self.mid1(F.pad(f, (3, 3)))
            m2 = self.mid2(F.pad(m1, (3, 3))) + m1
            m3 = self.mid3(F.pad(m2, (3, 3))) + m2
            feats = torch.cat([f, m1, m2, m3], dim=1)  # (b, 753, time)
            max_pool = feats.amax(dim=2)
            mean_pool = feats.mean(dim=2)
            # TF flattens concat([max, mean], axis=2) of shape (b, 753, 2): interleaved max0, mean0, ...
            flat = self.pool_bn(torch.stack([max_pool, mean_pool], dim=2).reshape(x.shape[0], N_POOLED))
            penultimate = self.dense_bn(F.relu(self.dense(flat)))
            taggram = torch.sigmoid(self.out(penultimate))
            return taggram, penultimate, mean_pool, max_pool

    Musicnn.__module__, Musicnn.__qualname__ = __name__, "Musicnn"
    return Musicnn


def _musicnn_class() -> type:
    cls = globals().get("Musicnn")
    if cls is None:
        cls = globals()["Musicnn"] = _define_musicnn()
    return cls


def __getattr__(name: str) -> Any:
    if name == "Musicnn":
        return _musicnn_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _digest(tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        h.update(name.encode())
        h.update(str(arr.dtype).encode())
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def read_weights(path: str | os.PathLike, *, model: str | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Tensors and metadata of a converted musicnn file, verified (format, checksum, tag count);
    :class:`~genrekit.errors.ModelError` names what is wrong. No code is executed from the file."""
    from safetensors import SafetensorError, safe_open

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
    if raw.get("sha256") != _digest(tensors):
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


_LOCK = threading.Lock()


@cache
def _load_cached(model: str, dtype_name: str) -> Any:
    import torch

    path = _weights_dir() / f"{model}.safetensors"
    tensors, meta = read_weights(path, model=model)
    if tuple(meta["tags"]) != tag_names(model):
        raise ModelError(f"{path}: tag names differ from {model}.tags.json")
    dtype = getattr(torch, dtype_name)
    net = _musicnn_class()()
    state = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in tensors.items()}
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != expected:
        raise ModelError(f"{path}: tensors do not match the musicnn architecture "
                         f"(missing {sorted(set(expected) - set(got))}, unexpected {sorted(set(got) - set(expected))}, "
                         f"or shapes differ)")
    net.load_state_dict(state, strict=False)
    net = net.to(dtype).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def load_musicnn(model: str = DEFAULT_MODEL, *, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """The pretrained network, in eval mode (batch norm on its moving statistics), loaded once per
    process and dtype. float32 (default) is what the references are checked in; float64 is for checks."""
    import torch

    _check_model(model)
    dtype = torch.float32 if dtype is None else dtype
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"musicnn runs in float32 or float64, not {dtype}")
    with _LOCK:
        return _load_cached(model, str(dtype).removeprefix("torch."))


# ------------------------------------------------------------------------------------------ embeddings


@dataclass(frozen=True, eq=False)  # eq=False: == on arrays is ambiguous; compare fields explicitly
class Embedding:
    """musicnn's outputs for one piece of audio, one row per 3 s patch.

    ``taggram`` ``(n, 50)``: tag probabilities (sigmoid) per patch, columns :attr:`tags`;
    ``penultimate`` ``(n, 200)``: the layer before the tags, the usual transfer-learning embedding;
    ``pooled`` ``(n, 1506)``: max over time (first 753) then mean over time (last 753) of the front-
    and mid-end feature maps, the input of the dense layers (values up to ~130);
    ``starts`` ``(n,)``: each patch's start in seconds (it lasts :data:`PATCH_SECONDS`);
    ``duration``: seconds of audio analysed; ``padded``: the audio was shorter than one patch and
    was repeat-padded to fill it.
    """

    model: str
    taggram: np.ndarray
    penultimate: np.ndarray
    pooled: np.ndarray
    starts: np.ndarray
    duration: float
    padded: bool = False

    @property
    def tags(self) -> tuple[str, ...]:
        return tag_names(self.model)

    @property
    def n_patches(self) -> int:
        return int(self.taggram.shape[0])

    @property
    def max_pool(self) -> np.ndarray:
        return self.pooled[:, :N_FEATURES]

    @property
    def mean_pool(self) -> np.ndarray:
        return self.pooled[:, N_FEATURES:]

    # per-file summaries: the mean over patches, what the 0.685 head was trained on
    @property
    def taggram_mean(self) -> np.ndarray:
        return self.taggram.mean(axis=0)

    @property
    def penultimate_mean(self) -> np.ndarray:
        return self.penultimate.mean(axis=0)

    @property
    def pooled_mean(self) -> np.ndarray:
        return self.pooled.mean(axis=0)


def _check_batch(batch: int) -> int:
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch must be a positive number of patches, got {batch!r}")
    return int(batch)


def run_patches(x: np.ndarray, *, model: str = DEFAULT_MODEL, batch: int = DEFAULT_BATCH) -> tuple[np.ndarray, ...]:
    """Run ``(n, 187, 96)`` patches through the network in batches: ``(taggram, penultimate, pooled)``
    as float32 numpy arrays. CPU, float32, ``torch.inference_mode``."""
    import torch

    batch = _check_batch(batch)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or x.shape[1:] != (PATCH_FRAMES, N_MELS):
        raise FeatureError(f"musicnn patches must be (n, {PATCH_FRAMES}, {N_MELS}), got shape {x.shape}")
    net = load_musicnn(model)
    outs: list[tuple[np.ndarray, ...]] = []
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch):
            tg, pen, mean_pool, max_pool = net(torch.from_numpy(x[i : i + batch]))
            outs.append((tg.numpy(), pen.numpy(), torch.cat([max_pool, mean_pool], dim=1).numpy()))
    if not outs:
        return (np.zeros((0, N_TAGS), np.float32), np.zeros((0, N_PENULTIMATE), np.float32),
                np.zeros((0, N_POOLED), np.float32))
    return tuple(np.concatenate([o[j] for o in outs]) for j in range(3))


def embed(
    y: np.ndarray, *, sr: int = SR, model: str = DEFAULT_MODEL, hop: int = PATCH_HOP, batch: int = DEFAULT_BATCH
) -> Embedding:
    """musicnn embedding of a mono waveform (any rate; resampled to 16 kHz): taggram, penultimate
    layer and pooled features per patch. Audio shorter than a patch (3 s) is repeat-padded; under
    512 samples at 16 kHz, non-finite, or not 1-D it raises a :class:`~genrekit.errors.GenrekitError`."""
    _check_model(model)
    y = _check_wave(y, "audio")
    duration = y.size / sr
    logmel = musicnn_input(y, sr=sr)
    x = patches(logmel, hop=hop)
    starts = patch_starts(logmel.shape[0], hop=hop)
    taggram, pen, pooled = run_patches(x, model=model, batch=batch)
    return Embedding(model, taggram, pen, pooled, starts * (HOP_LENGTH / SR), duration,
                     padded=logmel.shape[0] < PATCH_FRAMES)


def embed_file(
    path: str | os.PathLike,
    *,
    model: str = DEFAULT_MODEL,
    hop: int = PATCH_HOP,
    batch: int = DEFAULT_BATCH,
    block_seconds: float = 60.0,
) -> Embedding:
    """:func:`embed` of a file of any length, decoded and analysed block by block: memory holds one
    ``block_seconds`` block, one batch of patches and the outputs (7 kB per patch), not the file."""
    import torch

    _check_model(model)
    batch, hop = _check_batch(batch), _check_hop(hop)
    n_samples = 0

    def counted(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal n_samples
        for b in blocks:
            n_samples += b.size
            yield b

    blocks = counted(stream(path, sr=SR, block_seconds=block_seconds))
    net = load_musicnn(model)
    outs: list[tuple[np.ndarray, ...]] = []
    starts: list[int] = []
    pending: list[np.ndarray] = []
    padded = False

    def flush() -> None:
        with torch.inference_mode():
            tg, pen, mean_pool, max_pool = net(torch.from_numpy(np.stack(pending)))
        outs.append((tg.numpy(), pen.numpy(), torch.cat([max_pool, mean_pool], dim=1).numpy()))
        pending.clear()

    for start, patch, was_padded in iter_patches(iter_musicnn_input(blocks), hop=hop):
        if was_padded and n_samples < N_FFT:
            raise EmptyAudioError(f"{path}: {n_samples} samples at 16 kHz is shorter than one musicnn frame ({N_FFT})")
        padded = padded or was_padded
        starts.append(start)
        pending.append(patch)
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    taggram, pen, pooled = (np.concatenate([o[j] for o in outs]) for j in range(3))
    return Embedding(model, taggram, pen, pooled, np.asarray(starts) * (HOP_LENGTH / SR), n_samples / SR,
                     padded=padded)


def top_tags(embedding: Embedding, k: int = 5, *, patch: int | None = None) -> list[tuple[str, float]]:
    """The ``k`` most probable tags with their scores, best first: of the whole file (mean taggram
    over patches, musicnn's own summary) or, with ``patch=i``, of one patch."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive number of tags, got {k!r}")
    if patch is None:
        scores = embedding.taggram_mean
    else:
        if not -embedding.n_patches <= patch < embedding.n_patches:
            raise IndexError(f"patch {patch} out of range: the embedding has {embedding.n_patches} patches")
        scores = embedding.taggram[patch]
    order = np.argsort(-scores, kind="stable")[: int(k)]
    tags = embedding.tags
    return [(tags[i], float(scores[i])) for i in order]
