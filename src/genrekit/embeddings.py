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

import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genrekit.audio import resample, stream, validate
from genrekit.dsp import fft_frequencies, frame_count, hann_window, hz_to_mel, mel_frequencies
from genrekit.errors import EmptyAudioError, FeatureError, ModelError, NonFiniteAudioError
from genrekit.store import tensors_sha256

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
    # clipped at float16's largest value: the original turns louder bins (mel power > 65504, which
    # loud real recordings reach) into inf and its taggram into NaN; below that the cast is the same
    mel = np.minimum(power @ _mel_basis(), np.float32(65504.0)).astype(np.float16).astype(np.float32)
    return np.log10(np.float32(10000.0) * mel + np.float32(1.0))


def _check_wave(y: np.ndarray, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise FeatureError(f"{name}: musicnn expects mono 1-D audio, got shape {y.shape} (mix down first)")
    return validate(np.asarray(y, dtype=np.float32), name=name, min_samples=N_FFT)


def _padded_16k(y: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
    """The checked waveform at 16 kHz, centre-padded for the STFT, and its number of frames."""
    y = _check_wave(y, "audio")
    if sr != SR:
        y = _check_wave(resample(y, orig_sr=sr, target_sr=SR), "audio (resampled to 16 kHz)")
    pad = N_FFT // 2
    return np.concatenate([np.zeros(pad, np.float32), y, np.zeros(pad, np.float32)]), frame_count(
        y.size, hop_length=HOP_LENGTH)


def musicnn_input(y: np.ndarray, *, sr: int = SR) -> np.ndarray:
    """Log-mel ``(frames, 96)`` float32 exactly as musicnn computes it, ``1 + len // 256`` frames at 16 kHz.

    Audio at another rate is resampled first (soxr HQ, as ``librosa.load`` and ``genrekit.audio.load``
    do). Raises :class:`~genrekit.errors.EmptyAudioError` below one FFT frame (512 samples at 16 kHz)
    and :class:`~genrekit.errors.NonFiniteAudioError` on NaN / inf.
    """
    return _logmel_frames(*_padded_16k(y, sr))


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


def weights_path(model: str = DEFAULT_MODEL) -> Path:
    """The shipped safetensors file of ``model`` (what every backend builds its network from)."""
    return _weights_dir() / f"{_check_model(model)}.safetensors"


_LOCK = threading.Lock()


@cache
def _load_cached(model: str, dtype_name: str) -> Any:
    import torch

    path = weights_path(model)
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


def _batch_runner(model: str, backend: str, threads: int | None) -> Callable[[np.ndarray], tuple[np.ndarray, ...]]:
    """One forward pass over a batch of patches: ``(taggram, penultimate, pooled)``. ``torch`` is the
    reference port; ``onnx`` / ``onnx-int8`` run on onnxruntime alone (:mod:`genrekit.musicnn_runtime`)."""
    if backend != "torch":
        from genrekit.musicnn_runtime import backend_runner

        return backend_runner(backend, model, threads=1 if threads is None else threads)
    if threads is not None:
        raise ValueError("threads applies to the onnx backends; for torch use torch.set_num_threads")
    import torch

    net = load_musicnn(model)

    def run(x: np.ndarray) -> tuple[np.ndarray, ...]:
        with torch.inference_mode():
            tg, pen, mean_pool, max_pool = net(torch.from_numpy(x))
        return tg.numpy(), pen.numpy(), torch.cat([max_pool, mean_pool], dim=1).numpy()

    return run


def _check_per_block(patches_per_block: int | None, hop: int) -> int | None:
    if patches_per_block is None:
        return None
    from genrekit.musicnn_runtime import block_full, check_per_block

    return check_per_block(patches_per_block, full=block_full(hop))


def run_patches(
    x: np.ndarray, *, model: str = DEFAULT_MODEL, batch: int = DEFAULT_BATCH, backend: str = "torch",
    threads: int | None = None,
) -> tuple[np.ndarray, ...]:
    """Run ``(n, 187, 96)`` patches through the network in batches: ``(taggram, penultimate, pooled)``
    as float32 numpy arrays, on CPU. ``backend``: ``"torch"`` (default, ``torch.inference_mode``),
    ``"onnx"`` (onnxruntime, float32, 1.6x faster, within 6e-6 on taggram / penultimate) or ``"onnx-int8"`` (int8 timbral
    convolutions, faster still, looser: docs/embeddings.md "Speed"); ``threads`` (onnx only, default 1)."""
    batch = _check_batch(batch)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or x.shape[1:] != (PATCH_FRAMES, N_MELS):
        raise FeatureError(f"musicnn patches must be (n, {PATCH_FRAMES}, {N_MELS}), got shape {x.shape}")
    run = _batch_runner(_check_model(model), backend, threads)
    outs = [run(x[i : i + batch]) for i in range(0, x.shape[0], batch)]
    if not outs:
        return (np.zeros((0, N_TAGS), np.float32), np.zeros((0, N_PENULTIMATE), np.float32),
                np.zeros((0, N_POOLED), np.float32))
    return tuple(np.concatenate([o[j] for o in outs]) for j in range(3))


def embed(
    y: np.ndarray, *, sr: int = SR, model: str = DEFAULT_MODEL, hop: int = PATCH_HOP, batch: int = DEFAULT_BATCH,
    patches_per_block: int | None = None, backend: str = "torch", threads: int | None = None,
) -> Embedding:
    """musicnn embedding of a mono waveform (any rate; resampled to 16 kHz): taggram, penultimate
    layer and pooled features per patch. Audio shorter than a patch (3 s) is repeat-padded; under
    512 samples at 16 kHz, non-finite, or not 1-D it raises a :class:`~genrekit.errors.GenrekitError`.

    ``patches_per_block=k`` keeps only ``k`` evenly spread patches of each 30 s block (10 patches at
    the default hop; ``musicnn_runtime.select_patches``): enough for a track score at a fraction of
    the cost; ``starts`` says which were kept. ``backend`` / ``threads``: as :func:`run_patches`."""
    _check_model(model)
    per_block = _check_per_block(patches_per_block, _check_hop(hop))
    y = _check_wave(y, "audio")
    duration = y.size / sr
    padded, n_frames = _padded_16k(y, sr)
    starts = patch_starts(n_frames, hop=hop)
    if per_block is not None and n_frames >= PATCH_FRAMES:
        # only the kept patches' frames are analysed (frames are independent: the same numbers as
        # cutting them from the whole log-mel, at a third of the front end's cost for 3 of 10)
        from genrekit.musicnn_runtime import select_patches

        starts = starts[select_patches(starts, per_block=per_block, hop=hop)]
        x = np.stack([_logmel_frames(padded[s * HOP_LENGTH : (s + PATCH_FRAMES - 1) * HOP_LENGTH + N_FFT],
                                     PATCH_FRAMES) for s in starts])
    else:
        x = patches(_logmel_frames(padded, n_frames), hop=hop)
    taggram, pen, pooled = run_patches(x, model=model, batch=batch, backend=backend, threads=threads)
    return Embedding(model, taggram, pen, pooled, starts * (HOP_LENGTH / SR), duration,
                     padded=n_frames < PATCH_FRAMES)


def embed_file(
    path: str | os.PathLike,
    *,
    model: str = DEFAULT_MODEL,
    hop: int = PATCH_HOP,
    batch: int = DEFAULT_BATCH,
    block_seconds: float = 60.0,
    patches_per_block: int | None = None,
    backend: str = "torch",
    threads: int | None = None,
) -> Embedding:
    """:func:`embed` of a file of any length, decoded and analysed block by block: memory holds one
    ``block_seconds`` block, one batch of patches (plus, with ``patches_per_block``, one 30 s block of
    patches) and the outputs (7 kB per patch), not the file. Same result as :func:`embed` of the
    decoded samples."""
    _check_model(model)
    batch, hop = _check_batch(batch), _check_hop(hop)
    per_block = _check_per_block(patches_per_block, hop)
    n_samples = 0

    def counted(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal n_samples
        for b in blocks:
            n_samples += b.size
            yield b

    run = _batch_runner(model, backend, threads)
    blocks = counted(stream(path, sr=SR, block_seconds=block_seconds))
    outs: list[tuple[np.ndarray, ...]] = []
    starts: list[int] = []
    pending: list[np.ndarray] = []
    padded = False

    def flush() -> None:
        outs.append(run(np.stack(pending)))
        pending.clear()

    def take(start: int, patch: np.ndarray) -> None:
        starts.append(start)
        pending.append(patch)
        if len(pending) == batch:
            flush()

    if per_block is not None:
        from genrekit.musicnn_runtime import BLOCK_FRAMES, block_full, block_selection

        full = block_full(hop)
    block: list[tuple[int, np.ndarray]] = []  # the current 30 s block's patches (patches_per_block only)

    def close_block() -> None:
        for j in block_selection(len(block), per_block, full=full):
            take(*block[j])
        block.clear()

    for start, patch, was_padded in iter_patches(iter_musicnn_input(blocks), hop=hop):
        if was_padded and n_samples < N_FFT:
            raise EmptyAudioError(f"{path}: {n_samples} samples at 16 kHz is shorter than one musicnn frame ({N_FFT})")
        padded = padded or was_padded
        if per_block is None:
            take(start, patch)
            continue
        if block and block[0][0] // BLOCK_FRAMES != start // BLOCK_FRAMES:
            close_block()
        block.append((start, patch))
    if block:
        close_block()
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


# ------------------------------------------------------------------------------------------ Kaggle images

# The Kaggle images_original PNGs (see genrekit.spectrogram): 20*log10 of slaney mel power (128 bands,
# 22.05 kHz, n_fft 2048, hop 512) relative to the clip's peak, clipped 80 dB down, one pixel column per
# ~3.86 frames. The constants below were measured on the GTZAN clips that have both audio and an image
# by scripts/image_to_musicnn.py (subcommands `align` and `calibrate`; docs/transfer.md).
IMAGE_SR = 22050
IMAGE_N_FFT = 2048
IMAGE_HOP = 512
IMAGE_N_MELS = 128
IMAGE_TOP_DB = 80.0
IMAGE_COLUMNS = 336  # pixel columns of the plotted area = the whole clip
IMAGE_CLIP_SAMPLES = 661794  # a 30 s GTZAN clip at 22.05 kHz (Kaggle's `length`)
IMAGE_FIRST_FRAME = 3.35  # STFT frame the first pixel column shows (0.078 s): not 1.4, the pixel centre
IMAGE_EXTRA_FRAMES = 4.64  # columns step by (frames + 4.64) / 336 (all 123 pairs: 4.66, IQR 4.61-4.69)
IMAGE_FLOOR_DB = -105.0  # what a pixel at the 80 dB clip stands for (the clipped cells' typical level)
IMAGE_TYPICAL_PEAK = 1121.0  # median peak mel power of the 999 GTZAN images (from rms_mean): used without it
# log-mel offset per musicnn band, audio minus image after the mapping, mean over the 48 paired clips
# of the fault-filtered TRAIN side (so valid and test clips never calibrate it)
IMAGE_BAND_OFFSET = (
    0.29, 0.06, 0.01, -0.01, 0.02, -0.02, 0.04, 0.03, 0.01, 0.05, 0.00, 0.04, 0.10, 0.03, 0.06, 0.13,
    0.09, 0.13, 0.05, 0.04, 0.10, 0.07, 0.05, 0.12, 0.09, 0.12, 0.10, 0.06, 0.06, 0.07, 0.08, 0.13,
    0.07, 0.06, 0.10, 0.09, 0.04, 0.09, 0.05, 0.05, 0.07, 0.05, 0.11, 0.10, 0.03, 0.10, 0.04, 0.02,
    0.09, 0.06, 0.08, 0.08, 0.05, 0.06, 0.07, 0.02, 0.08, 0.05, 0.07, 0.06, 0.03, 0.03, 0.07, 0.01,
    0.06, 0.06, 0.05, 0.05, 0.05, 0.06, 0.05, 0.04, 0.04, 0.06, 0.05, 0.04, 0.03, 0.02, 0.02, -0.00,
    0.00, 0.02, 0.03, 0.02, 0.01, -0.01, -0.03, -0.02, -0.02, -0.01, -0.02, -0.02, -0.04, -0.05, -0.14, -0.53,
)
IMAGE_MAPPING_VERSION = 1  # bump when the mapping or its constants change (caches key on it)


def _image_levels(levels_or_path: Any) -> np.ndarray:
    if isinstance(levels_or_path, (str, os.PathLike)):
        from genrekit.spectrogram import invert_image

        return invert_image(levels_or_path, n_frames=IMAGE_COLUMNS)  # the pixel columns as they are
    levels = np.asarray(levels_or_path)
    if levels.ndim != 2 or levels.shape[0] != IMAGE_N_MELS or levels.shape[1] < 2:
        raise FeatureError(f"image levels must be ({IMAGE_N_MELS}, columns >= 2), got shape {levels.shape}")
    if not np.issubdtype(levels.dtype, np.number) or np.iscomplexobj(levels):
        raise FeatureError(f"image levels must be real numbers, got dtype {levels.dtype}")
    levels = levels.astype(np.float64)
    if not np.isfinite(levels).all():
        raise FeatureError("image levels contain NaN or infinity")
    if levels.min() < -1e-6 or levels.max() > 1 + 1e-6:
        raise FeatureError(f"image levels must lie in [0, 1] (normalised dB), got {levels.min():.3g} to {levels.max():.3g}")
    return np.clip(levels, 0.0, 1.0)


def _check_positive(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise FeatureError(f"{name} must be a positive number, got {value!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise FeatureError(f"{name} must be a positive finite number, got {value!r}")
    return v


@lru_cache(maxsize=1)
def _image_band_widths() -> np.ndarray:
    """Hz between neighbouring centres of the image's 128 slaney bands: each band's share of the spectrum."""
    f = mel_frequencies(IMAGE_N_MELS + 2, fmin=0.0, fmax=IMAGE_SR / 2.0)
    return (f[2:] - f[:-2]) / 2.0


def image_peak_power(levels_or_path: Any, rms_mean: float, *, top_db: float = IMAGE_TOP_DB) -> float:
    """The clip's peak mel power (what the image is relative to) from its mean frame RMS (Kaggle's
    ``rms_mean``: librosa.feature.rms, 2048-sample frames), by Parseval's theorem, no fitted constant.

    With slaney filters the power of each band times its share of the spectrum in Hz sums to the
    frame's one-sided FFT energy, ``3 n_fft^2 / 16`` times its mean square under a Hann window, so
    ``rms(t) = sqrt(16 peak E(t) / (3 n_fft^2))`` with ``E(t)`` the band sum of the image's relative
    powers; averaging over the columns gives ``peak``. On the 123 paired GTZAN clips this is within
    0.5 dB (std) of the audio's true peak, mean error 0.04 dB (docs/transfer.md)."""
    rms_mean = _check_positive(rms_mean, "rms_mean")
    levels = _image_levels(levels_or_path)
    rel = 10.0 ** ((levels - 1.0) * (top_db / 20.0))  # 20*log10 of power: 80 dB = 4 decades
    frame_rms_rel = np.sqrt(_image_band_widths() @ rel).mean()
    return float(3.0 * IMAGE_N_FFT**2 / 16.0 * (rms_mean / frame_rms_rel) ** 2)


@lru_cache(maxsize=1)
def _image_to_fft_bins() -> np.ndarray:
    """``(257, 128)``: dB at musicnn's FFT bin frequencies, linear in mel between the image's band centres."""
    centres = hz_to_mel(mel_frequencies(IMAGE_N_MELS + 2, fmin=0.0, fmax=IMAGE_SR / 2.0)[1:-1])
    target = hz_to_mel(fft_frequencies(sr=SR, n_fft=N_FFT))
    return _linear_interp_matrix(target, centres)


def _linear_interp_matrix(x: np.ndarray, xp: np.ndarray) -> np.ndarray:
    """``(len(x), len(xp))`` weights of linear interpolation at ``x`` from samples at increasing ``xp``,
    held constant beyond the ends."""
    j = np.clip(np.searchsorted(xp, x) - 1, 0, len(xp) - 2)
    a = np.clip((x - xp[j]) / (xp[j + 1] - xp[j]), 0.0, 1.0)
    w = np.zeros((len(x), len(xp)))
    w[np.arange(len(x)), j] = 1.0 - a
    w[np.arange(len(x)), j + 1] += a
    return w


def musicnn_input_from_image(
    levels_or_path: Any,
    *,
    rms_mean: float | None = None,
    peak_power: float | None = None,
    n_samples: int = IMAGE_CLIP_SAMPLES,
    floor_db: float | None = IMAGE_FLOOR_DB,
    band_offset: bool = True,
    top_db: float = IMAGE_TOP_DB,
) -> np.ndarray:
    """musicnn's input ``(frames, 96)`` estimated from a Kaggle GTZAN image, so the 876 GTZAN tracks
    that exist only as images can train heads on musicnn embeddings (issue 17).

    ``levels_or_path``: a Kaggle ``images_original`` PNG, or normalised levels ``(128, 336)`` (its
    pixel columns, as ``spectrogram.invert_image(png, n_frames=336)`` gives them) or ``(128, 1 +
    n_samples // 512)`` (one per STFT frame, e.g. ``spectrogram.power_to_levels`` of audio).
    Steps: levels -> dB below the peak (``floor_db`` for cells at the clip); columns placed on the
    frames they show (first column frame 3.35, step ``(frames + 4.64) / 336``, measured) and
    interpolated in dB onto musicnn's 16 ms frames; bands interpolated in dB, linearly in mel, onto
    musicnn's 257 FFT bins at 16 kHz and summed by its own 96 slaney filters; the absolute level set by
    ``peak_power`` or, from ``rms_mean``, by :func:`image_peak_power` (else a typical GTZAN peak),
    times ``(512/2048)^2``, the mel power ratio of the two FFT sizes for the same sound; then
    musicnn's float16 cast and ``log10(10000 x + 1)``, plus the per-band calibration
    :data:`IMAGE_BAND_OFFSET` (``band_offset=False`` leaves it out).

    What the image lost stays lost: transients under ~90 ms and everything 80 dB below the peak, so
    the embeddings are close to, not equal to, the audio's (docs/transfer.md has the figures).
    """
    levels = _image_levels(levels_or_path)
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < IMAGE_N_FFT:
        raise FeatureError(f"n_samples must be the clip's length at 22.05 kHz (>= {IMAGE_N_FFT}), got {n_samples!r}")
    top_db = _check_positive(top_db, "top_db")
    if floor_db is not None and (isinstance(floor_db, bool) or not isinstance(floor_db, (int, float, np.number))
                                 or not np.isfinite(floor_db)):
        raise FeatureError(f"floor_db must be a finite number of dB (or None), got {floor_db!r}")
    if not isinstance(band_offset, (bool, np.bool_)):
        raise FeatureError(f"band_offset must be True or False, got {band_offset!r}")
    if peak_power is not None:
        peak = _check_positive(peak_power, "peak_power")
    elif rms_mean is not None:
        peak = image_peak_power(levels, rms_mean, top_db=top_db)
    else:
        peak = IMAGE_TYPICAL_PEAK
    n22 = 1 + int(n_samples) // IMAGE_HOP
    n_cols = levels.shape[1]
    if n_cols == n22:
        pos = np.arange(n22, dtype=np.float64)
    elif n_cols == IMAGE_COLUMNS:
        pos = IMAGE_FIRST_FRAME + np.arange(n_cols) * (n22 + IMAGE_EXTRA_FRAMES) / n_cols
    else:
        raise FeatureError(f"image levels have {n_cols} columns: expected {IMAGE_COLUMNS} (the Kaggle image's "
                           f"pixel columns) or {n22} (one per frame of a {n_samples}-sample clip)")
    db = (levels - 1.0) * top_db
    if floor_db is not None:
        db = np.where(levels <= 0.5 / 255.0, float(floor_db), db)
    n16 = int(round(int(n_samples) * SR / IMAGE_SR))
    frames = frame_count(n16, hop_length=HOP_LENGTH)
    t = np.arange(frames) * (HOP_LENGTH / SR) * (IMAGE_SR / IMAGE_HOP)  # musicnn frame times in image frames
    db_t = _linear_interp_matrix(t, pos) @ db.T  # (frames, 128)
    db_f = db_t @ _image_to_fft_bins().T  # (frames, 257)
    power = (peak * (SR * N_FFT / IMAGE_N_FFT**2)) * 10.0 ** (db_f / 20.0)  # |X_k|^2 at 16 kHz, n_fft 512
    mel = np.minimum(power.astype(np.float32) @ _mel_basis(), np.float32(65504.0))  # float16's largest
    out = np.log10(np.float32(10000.0) * mel.astype(np.float16).astype(np.float32) + np.float32(1.0))
    if band_offset:
        out = np.maximum(out + np.asarray(IMAGE_BAND_OFFSET, np.float32), np.float32(0.0))
    return np.ascontiguousarray(out, dtype=np.float32)


def embed_image(
    levels_or_path: Any,
    *,
    rms_mean: float | None = None,
    peak_power: float | None = None,
    n_samples: int = IMAGE_CLIP_SAMPLES,
    model: str = DEFAULT_MODEL,
    hop: int = PATCH_HOP,
    batch: int = DEFAULT_BATCH,
    patches_per_block: int | None = None,
    backend: str = "torch",
    threads: int | None = None,
) -> Embedding:
    """:func:`embed` of a Kaggle GTZAN image through :func:`musicnn_input_from_image` (same arguments),
    so an image is embedded exactly as a model embeds audio (``patches_per_block``, ``backend``)."""
    _check_model(model)
    per_block = _check_per_block(patches_per_block, _check_hop(hop))
    logmel = musicnn_input_from_image(levels_or_path, rms_mean=rms_mean, peak_power=peak_power, n_samples=n_samples)
    x, starts = patches(logmel, hop=hop), patch_starts(logmel.shape[0], hop=hop)
    if per_block is not None:
        from genrekit.musicnn_runtime import select_patches

        keep = select_patches(starts, per_block=per_block, hop=hop)
        x, starts = x[keep], starts[keep]
    taggram, pen, pooled = run_patches(x, model=model, batch=batch, backend=backend, threads=threads)
    return Embedding(model, taggram, pen, pooled, starts * (HOP_LENGTH / SR), n_samples / IMAGE_SR,
                     padded=logmel.shape[0] < PATCH_FRAMES)
