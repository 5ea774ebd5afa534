"""musicnn's graph: ONNX built straight from the shipped safetensors, and its onnxruntime sessions.

musicnn costs ~1.4 GMAC per 3 s patch; the PyTorch port (:mod:`~genrekit.networks.musicnn.torch_ref`)
is the reference. This module makes it cheap enough for ``genrekit predict`` (docs/embeddings.md,
"Speed"):

- :func:`onnx_model`: the network as an ONNX graph written with the one graph writer
  (:class:`genrekit.networks.writer.GraphWriter`; no torch, no tracing), cached under
  ``store.cache_root()/musicnn`` keyed by the weights file's sha256, so later processes need
  ``onnxruntime`` alone (``import onnxruntime`` costs 0.2 s where ``import torch`` costs 2-3.5 s).
  float32 agrees with the torch port within 6e-6 on taggram and penultimate (1.7e-4 on pooled
  features of scale ~130) and is 1.6x faster; the ``int8`` variant quantises the two timbral
  convolutions (82 % of the MACs) with scales calibrated on GTZAN clips (:data:`INT8_CALIBRATION`,
  :func:`calibrate_int8`).
- :func:`load_onnx`: an :class:`OnnxMusicnn` session (one intra-op thread by default: parallelism
  comes from worker processes), cached per process.

Importing it imports neither torch nor onnx; onnx only when a graph has to be built (first use per
weights file), onnxruntime when a session is loaded.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import FeatureError, ModelError
from genrekit.networks import check_backend
from genrekit.networks.musicnn.spec import (
    BN_EPS,
    DEFAULT_MODEL,
    N_MELS,
    N_PENULTIMATE,
    N_POOLED,
    N_TAGS,
    PATCH_FRAMES,
    check_model,
    read_weights,
    weights_path,
    weights_sha256,
)
from genrekit.networks.writer import ONNX_OPSET, GraphWriter, check_threads, session_options

BUILDER_VERSION = 1  # bump when the graph built by onnx_model changes (the cache keys on it)
INPUT_NAME = "patches"
OUTPUT_NAMES = ("taggram", "penultimate", "pooled")
_INPUTS = [(INPUT_NAME, ["batch", PATCH_FRAMES, N_MELS])]
TIMBRAL = ("timbral74", "timbral77")
TEMPORAL = (("temporal128", 128), ("temporal64", 64), ("temporal32", 32))

LOGMEL_MAX = float(np.log10(np.float32(10000.0) * np.float32(65504.0) + np.float32(1.0)))  # float16's largest mel
# int8 output ranges of the timbral convolutions (``<conv>_max``: the largest ReLU'd output), from
# calibrate_int8 on the 490 patches of the 49 shared GTZAN clips on the fault-filtered train side
# (benchmarks/musicnn.py calibrate), never valid or test. Their input is quantised over every log-mel
# musicnn can produce (0 to LOGMEL_MAX), not a calibrated range: louder masters than GTZAN's exceed it.
INT8_CALIBRATION: dict[str, dict[str, float]] = {
    "MSD_musicnn": {"timbral74_max": 8.091636657714844, "timbral77_max": 9.278684616088867, "n_patches": 490},
    "MTT_musicnn": {"timbral74_max": 3.8449246883392334, "timbral77_max": 4.652557373046875, "n_patches": 490},
}




def _bn(t: Mapping[str, np.ndarray], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode batch norm as ``x * scale + shift`` (float64 maths, float32 out)."""
    g, b, m, v = (t[f"{name}.{k}"].astype(np.float64) for k in ("weight", "bias", "running_mean", "running_var"))
    s = g / np.sqrt(v + BN_EPS)
    return s.astype(np.float32), (b - m * s).astype(np.float32)


def _affine_qparams(lo: float, hi: float) -> tuple[np.float32, np.uint8]:
    """uint8 scale and zero point covering ``[min(lo, 0), max(hi, 0)]`` (onnxruntime's MinMax rule)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    zp = int(np.clip(round(-lo / scale), 0, 255))
    return np.float32(scale), np.uint8(zp)


def _affine(g: GraphWriter, x: str, scale: np.ndarray, shift: np.ndarray, name: str) -> str:
    """``x * scale + shift`` as two nodes named after ``name``."""
    m = g.op("Mul", [x, g.named(f"{name}.scale", scale)], f"{name}.mul")
    return g.op("Add", [m, g.named(f"{name}.shift", shift)], name)


def _front_float(g: GraphWriter, t: Mapping[str, np.ndarray], h: str, name: str, pads: list[int]) -> str:
    """conv -> ReLU -> batch norm -> max over frequency, as Musicnn's ``ConvBlock.freq_max``: the
    conv's weights are negated where the norm's scale is negative, so one ReduceMax gives the max or
    the min the ReLU + norm need (negation is exact in float, so this equals the torch result)."""
    s, sh = _bn(t, f"{name}.bn")
    sign = np.where(t[f"{name}.bn.weight"] < 0, -1.0, 1.0).astype(np.float32)
    w = t[f"{name}.conv.weight"] * sign[:, None, None, None]
    b = t[f"{name}.conv.bias"] * sign
    c = g.op("Conv", [h, g.named(f"{name}.w", w), g.named(f"{name}.b", b)], f"{name}.conv", pads=pads)
    m = g.op("ReduceMax", [c], f"{name}.max", axes=[3], keepdims=0)
    p = g.op("Relu", [g.op("Mul", [m, g.named(f"{name}.sign", sign[None, :, None])], f"{name}.pick")], f"{name}.relu")
    return _affine(g, p, s[None, :, None], sh[None, :, None], f"{name}.out")


def _front_int8(g: GraphWriter, t: Mapping[str, np.ndarray], hq: str, name: str, cal: Mapping[str, float]) -> str:
    """The same block with int8 weights (per channel, symmetric) and uint8 activations, in QDQ form
    that onnxruntime fuses into QLinearConv. The conv's output is quantised over ``[0, max]``: the
    ReLU that follows discards negatives, so all 256 levels go to the values that matter; channels
    whose norm scale is negative need the minimum of the ReLU'd map, the others its maximum."""
    s, sh = _bn(t, f"{name}.bn")
    w = t[f"{name}.conv.weight"].astype(np.float64)
    b = t[f"{name}.conv.bias"].astype(np.float64)
    h_scale = float(cal["h_scale"])
    # per-channel symmetric weight scales; dead filters (weights ~1e-31, a few per conv) get the
    # smallest scale at which their bias still fits the int32 accumulator (their weights round to 0)
    w_scale = np.maximum(np.abs(w).reshape(w.shape[0], -1).max(axis=1) / 127.0, np.abs(b) / (h_scale * 2.0**30))
    w_scale = np.maximum(w_scale, 1e-30)
    wq = np.clip(np.round(w / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
    b_scale = h_scale * w_scale
    bq = np.round(b / b_scale).astype(np.int32)
    y_scale, y_zp = _affine_qparams(0.0, cal[f"{name}_max"])
    wdq = g.op("DequantizeLinear", [g.named(f"{name}.wq", wq), g.named(f"{name}.w_scale", w_scale.astype(np.float32)),
                                    g.named(f"{name}.w_zp", np.zeros(w.shape[0], np.int8))], f"{name}.w", axis=0)
    bdq = g.op("DequantizeLinear", [g.named(f"{name}.bq", bq), g.named(f"{name}.b_scale", b_scale.astype(np.float32)),
                                    g.named(f"{name}.b_zp", np.zeros(w.shape[0], np.int32))], f"{name}.b", axis=0)
    c = g.op("Conv", [hq, wdq, bdq], f"{name}.conv", pads=[3, 0, 3, 0])
    ysc, yzp = g.named(f"{name}.y_scale", y_scale), g.named(f"{name}.y_zp", y_zp)
    cq = g.op("DequantizeLinear", [g.op("QuantizeLinear", [c, ysc, yzp], f"{name}.yq"), ysc, yzp], f"{name}.relu_map")
    hi = g.op("ReduceMax", [cq], f"{name}.hi", axes=[3], keepdims=0)
    lo = g.op("ReduceMin", [cq], f"{name}.lo", axes=[3], keepdims=0)
    neg = g.named(f"{name}.neg", (t[f"{name}.bn.weight"] < 0)[None, :, None])
    p = g.op("Where", [neg, lo, hi], f"{name}.pick")
    return _affine(g, p, s[None, :, None], sh[None, :, None], f"{name}.out")


def _tensors(model: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    return read_weights(weights_path(model), model=model)


def build_onnx(model: str = DEFAULT_MODEL, *, int8: bool = False, probe: bool = False,
               calibration: Mapping[str, float] | None = None) -> bytes:
    """Serialised ONNX graph (opset 17, dynamic batch) of ``model`` from its shipped weights: input
    ``patches`` ``(batch, 187, 96)``; outputs ``taggram`` ``(batch, 50)``, ``penultimate`` ``(batch,
    200)``, ``pooled`` ``(batch, 1506)`` (max then mean over time, as ``model.run_patches``).

    ``int8``: the timbral convolutions quantised with ``calibration`` (default
    :data:`INT8_CALIBRATION`). ``probe``: instead, outputs for :func:`calibrate_int8` (the timbral
    convs' per-channel maxima of their ReLU'd outputs). Takes ~0.1 s plus
    ``import onnx`` (~0.8 s CPU); :func:`onnx_model` caches the result.
    """
    tensors, meta = _tensors(model)
    if int8:
        calibration = INT8_CALIBRATION.get(model) if calibration is None else calibration
        need = tuple(f"{n}_max" for n in TIMBRAL)
        if not calibration or any(k not in calibration for k in need):
            raise ModelError(f"no int8 calibration for {model}: expected keys {', '.join(need)}")
        s_in, t_in = (float(v.reshape(())) for v in _bn(tensors, "input_bn"))
        h_scale, h_zp = _affine_qparams(*sorted((t_in, t_in + s_in * LOGMEL_MAX)))
        calibration = {k: float(calibration[k]) for k in need}
        calibration["h_scale"] = float(h_scale)
    g = GraphWriter()
    t = tensors
    s0, t0 = _bn(t, "input_bn")
    x4 = g.op("Unsqueeze", [INPUT_NAME, g.named("axis1", np.array([1], np.int64))], "x4")
    h = _affine(g, x4, s0.reshape(()), t0.reshape(()), "h")  # (b, 1, 187, 96)
    if probe:
        maxima = []
        for name in TIMBRAL:
            c = g.op("Conv", [h, g.named(f"{name}.w", t[f"{name}.conv.weight"]), g.named(f"{name}.b", t[f"{name}.conv.bias"])],
                     f"{name}.conv", pads=[3, 0, 3, 0])
            maxima.append(g.op("ReduceMax", [g.op("Relu", [c], f"{name}.relu")], f"{name}_max", axes=[2, 3], keepdims=0))
        outputs = [(m, ["batch", 204]) for m in maxima]
        return g.model(_INPUTS, outputs, meta={"genrekit_musicnn": json.dumps({"model": model, "probe": True})},
                       graph_name="musicnn").SerializeToString()
    front = []
    if int8:
        hsc, hzp = g.named("h.q_scale", h_scale), g.named("h.q_zp", h_zp)
        hq = g.op("DequantizeLinear", [g.op("QuantizeLinear", [h, hsc, hzp], "h.q"), hsc, hzp], "h.dq")
        front += [_front_int8(g, t, hq, name, calibration) for name in TIMBRAL]
    else:
        front += [_front_float(g, t, h, name, [3, 0, 3, 0]) for name in TIMBRAL]
    for name, k in TEMPORAL:  # TF 'same' along time for an even kernel: (k-1)//2 before, the rest after
        front.append(_front_float(g, t, h, name, [(k - 1) // 2, 0, k - 1 - (k - 1) // 2, 0]))
    prev = f = g.op("Concat", front, "front", axis=1)  # (b, 561, 187)
    mids = []
    for i, name in enumerate(("mid1", "mid2", "mid3")):
        s, sh = _bn(t, f"{name}.bn")
        c = g.op("Conv", [prev, g.named(f"{name}.w", t[f"{name}.conv.weight"]), g.named(f"{name}.b", t[f"{name}.conv.bias"])],
                 f"{name}.conv", pads=[3, 3])
        o = _affine(g, g.op("Relu", [c], f"{name}.relu"), s[None, :, None], sh[None, :, None], f"{name}.bn")
        prev = g.op("Add", [o, prev], f"{name}.res") if i else o
        mids.append(prev)
    feats = g.op("Concat", [f, *mids], "feats", axis=1)  # (b, 753, 187)
    mx = g.op("ReduceMax", [feats], "max_pool", axes=[2], keepdims=0)
    mn = g.op("ReduceMean", [feats], "mean_pool", axes=[2], keepdims=0)
    pooled = g.op("Concat", [mx, mn], "pooled", axis=1)
    # dense(pool_bn(flatten(stack([max, mean], 2)))): TF's interleaved order and the norm folded into
    # the dense weights (columns permuted to [max..., mean...]), so `pooled` feeds the Gemm directly
    s, sh = _bn(t, "pool_bn")
    w = t["dense.weight"].astype(np.float64)
    perm = np.concatenate([np.arange(0, N_POOLED, 2), np.arange(1, N_POOLED, 2)])
    w_fold = (w * s.astype(np.float64)[None, :])[:, perm].astype(np.float32)
    b_fold = (w @ sh.astype(np.float64) + t["dense.bias"]).astype(np.float32)
    d = g.op("Gemm", [pooled, g.named("dense.w", w_fold), g.named("dense.b", b_fold)], "dense", transB=1)
    s, sh = _bn(t, "dense_bn")
    pen = _affine(g, g.op("Relu", [d], "dense.relu"), s, sh, "penultimate")
    logits = g.op("Gemm", [pen, g.named("out.w", t["out.weight"]), g.named("out.b", t["out.bias"])], "logits", transB=1)
    g.op("Sigmoid", [logits], "taggram")
    info = {"model": model, "weights_sha256": meta["sha256"], "int8": bool(int8), "builder": BUILDER_VERSION,
            "calibration": dict(calibration) if int8 else None}
    outputs = [("taggram", ["batch", N_TAGS]), ("penultimate", ["batch", N_PENULTIMATE]), ("pooled", ["batch", N_POOLED])]
    return g.model(_INPUTS, outputs, meta={"genrekit_musicnn": json.dumps(info, sort_keys=True)},
                   graph_name="musicnn").SerializeToString()


def _cache_key(model: str, int8: bool) -> str:

    h = hashlib.sha256()
    h.update(weights_sha256(model).encode())
    h.update(f"builder={BUILDER_VERSION};opset={ONNX_OPSET};int8={bool(int8)}".encode())
    if int8:
        h.update(json.dumps(INT8_CALIBRATION.get(model), sort_keys=True).encode())
    return h.hexdigest()[:16]


def onnx_cache_path(model: str = DEFAULT_MODEL, *, int8: bool = False) -> Path:
    """Where :func:`onnx_model` caches the graph: ``cache_root()/musicnn/<model>[-int8]-<key>.onnx``,
    the key a digest of the weights file, the builder version and (int8) the calibration."""
    from genrekit.store import cache_root

    check_model(model)
    return cache_root() / "musicnn" / f"{model}{'-int8' if int8 else ''}-{_cache_key(model, int8)}.onnx"


def onnx_model(model: str = DEFAULT_MODEL, *, int8: bool = False, cache: bool = True) -> bytes:
    """The ONNX graph of :func:`build_onnx`, read from the cache when it is there, else built and
    written to it (atomically; an unwritable cache only costs the rebuild next time)."""
    from genrekit.store import cached_bytes

    return cached_bytes(onnx_cache_path(model, int8=int8), lambda: build_onnx(model, int8=int8), enabled=cache)


class OnnxMusicnn:
    """musicnn on onnxruntime: :meth:`run` maps ``(n, 187, 96)`` patches to ``(taggram, penultimate,
    pooled)`` like ``model.run_patches``. Build with :func:`load_onnx`."""

    def __init__(self, model: str, data: bytes, *, int8: bool = False, threads: int = 1) -> None:
        import onnxruntime as ort

        self.model, self.int8, self.threads = model, bool(int8), check_threads(threads)
        try:
            self.session = ort.InferenceSession(data, session_options(threads), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph types
            raise ModelError(f"musicnn ONNX graph for {model} could not be loaded: {exc}") from None

    def run(self, x: np.ndarray, *, batch: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise ValueError(f"batch must be a positive number of patches, got {batch!r}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != (PATCH_FRAMES, N_MELS):
            raise FeatureError(f"musicnn patches must be (n, {PATCH_FRAMES}, {N_MELS}), got shape {x.shape}")
        if x.shape[0] == 0:
            return (np.zeros((0, N_TAGS), np.float32), np.zeros((0, N_PENULTIMATE), np.float32),
                    np.zeros((0, N_POOLED), np.float32))
        outs = [self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: x[i : i + batch]}) for i in range(0, x.shape[0], batch)]
        tg, pen, pooled = (np.concatenate([o[j] for o in outs]) for j in range(3))
        return tg, pen, pooled

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One batch, whole: the signature ``model.run_patches`` uses for any backend."""
        return self.run(x, batch=max(1, len(x)))


_LOCK = threading.Lock()


@cache
def _load_cached(model: str, int8: bool, threads: int) -> OnnxMusicnn:
    try:
        return OnnxMusicnn(model, onnx_model(model, int8=int8), int8=int8, threads=threads)
    except ModelError:  # a damaged cache file (truncated by a full disk, edited): rebuild it once
        data = build_onnx(model, int8=int8)
        session = OnnxMusicnn(model, data, int8=int8, threads=threads)
        from genrekit.store import atomic_write_bytes

        try:
            atomic_write_bytes(onnx_cache_path(model, int8=int8), data)
        except OSError:
            pass
        return session


def load_onnx(model: str = DEFAULT_MODEL, *, int8: bool = False, threads: int = 1) -> OnnxMusicnn:
    """The onnxruntime session of ``model`` (float32, or int8 timbral convolutions), built or read
    from the cache on first use and kept for the process."""
    check_model(model)
    threads = check_threads(threads)
    with _LOCK:
        return _load_cached(model, bool(int8), threads)


def clear_sessions() -> None:
    """Forget this process's sessions (to free their memory, or after the cache folder changed)."""
    with _LOCK:
        _load_cached.cache_clear()


def backend_runner(backend: str, model: str = DEFAULT_MODEL, *, threads: int = 1) -> OnnxMusicnn:
    """The onnxruntime session behind backend ``"onnx"`` or ``"onnx-int8"``."""
    if check_backend(backend) == "torch":
        raise ValueError("backend 'torch' runs in genrekit.networks.musicnn.torch_ref; "
                         "backend_runner serves 'onnx' and 'onnx-int8'")
    return load_onnx(model, int8=backend == "onnx-int8", threads=threads)


# ------------------------------------------------------------------------------------------ int8 calibration


def calibrate_int8(x: np.ndarray, *, model: str = DEFAULT_MODEL, batch: int = 4,
                   quantile: float = 1.0) -> dict[str, float]:
    """Output ranges for the int8 graph from ``(n, 187, 96)`` calibration patches: per timbral conv,
    the ``quantile`` (1.0: the max) over patches of the largest ReLU'd output of any channel."""
    import onnxruntime as ort

    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 3 or x.shape[1:] != (PATCH_FRAMES, N_MELS) or x.shape[0] == 0:
        raise FeatureError(f"calibration patches must be (n >= 1, {PATCH_FRAMES}, {N_MELS}), got shape {x.shape}")
    if not 0.5 <= quantile <= 1.0:
        raise ValueError(f"quantile must lie in [0.5, 1], got {quantile!r}")
    sess = ort.InferenceSession(build_onnx(model, probe=True), session_options(1), providers=["CPUExecutionProvider"])
    names = [f"{n}_max" for n in TIMBRAL]
    parts = [sess.run(names, {INPUT_NAME: x[i : i + batch]}) for i in range(0, x.shape[0], batch)]
    out: dict[str, float] = {}
    for j, name in enumerate(TIMBRAL):
        per_patch = np.concatenate([p[j] for p in parts]).max(axis=1)
        out[f"{name}_max"] = float(np.quantile(per_patch, quantile))
    out["n_patches"] = int(x.shape[0])
    return out

