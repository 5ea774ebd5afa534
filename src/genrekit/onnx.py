"""ONNX graphs of genrekit models, built from their numpy tensors (no torch).

:func:`deep_graph` writes the ONNX graph of a :class:`~genrekit.models.deep.DeepModel` net straight from
the model file's tensors with ``onnx.helper``: no torch, no tracing. BatchNorm is folded into the
convolution or linear layer before it (eval mode), Dropout is the identity, and the graph is built for
the model's fixed input (``n_mels`` x ``slice_width`` frames, the only shape the predict path feeds) with
a dynamic batch. :func:`deep_graph_bytes` caches the serialised graph under
``store.cache_root()/deep``, keyed by the tensors' sha256 and :data:`GRAPH_BUILDER_VERSION`, so a later
process needs ``onnxruntime`` alone (``import onnxruntime`` costs 0.2 s where ``import torch`` costs
2-3.5 s of ``genrekit predict``'s start-up). An architecture the builder does not know falls back to
``torch.onnx.export``.

:func:`musicnn_head_graph` is musicnn's graph (:func:`genrekit.networks.musicnn.graph.build_onnx`) plus a
logistic head, from log-mel patches to class probabilities. Writing a model as one ``.onnx`` file is
:mod:`genrekit.onnx_export` (layer 4: it loads models, so the loader's graphs must not import it).
Loading (deep models on onnxruntime, exported files) is :func:`genrekit.models.load` with
``backend="onnx"`` (:mod:`genrekit.models.runtime`); loading an ONNX graph executes no Python code from the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import ModelError
from genrekit.networks.writer import ONNX_OPSET, GraphWriter, session_options  # noqa: F401
from genrekit.store import cached_bytes

META_KEY = "genrekit_meta"
GRAPH_BUILDER_VERSION = 2  # bump when the graph deep_graph builds, or what it refuses, changes (the cache keys on it)
GRAPH_ARCHS = ("tutorial", "cnn", "cnn-bn", "resnet", "shortchunk", "shortchunk-res")
BN_EPS = 1e-5  # torch's BatchNorm default, which build_net uses
INPUT_NAME, OUTPUT_NAME = "logmel", "logits"
MUSICNN_INPUT = "patches"  # networks.musicnn.graph.INPUT_NAME: (n, 187, 96) log-mel patches, time before mel


# ------------------------------------------------------------------------------------------ deep nets


class _Net:
    """Walks one of ``build_net``'s architectures over its state-dict tensors, writing ONNX nodes and
    tracking the feature map's static size (the adaptive pools need it)."""

    def __init__(self, g: GraphWriter, tensors: Mapping[str, np.ndarray], *, n_mels: int, frames: int, source: Any):
        self.g, self.t, self.source = g, tensors, source
        self.used: set[str] = set()
        self.h, self.w = int(n_mels), int(frames)

    def take(self, key: str) -> np.ndarray:
        if key not in self.t:
            raise ModelError(f"{self.source}: weights lack {key!r}: they do not match the architecture in the metadata")
        self.used.add(key)
        return np.asarray(self.t[key], dtype=np.float64)

    def has(self, key: str) -> bool:
        return key in self.t

    def bn(self, prefix: str) -> tuple[np.ndarray, np.ndarray]:
        """Eval-mode batch norm as ``x * scale + shift``."""
        g, b = self.take(f"{prefix}.weight"), self.take(f"{prefix}.bias")
        m, v = self.take(f"{prefix}.running_mean"), self.take(f"{prefix}.running_var")
        self.used.add(f"{prefix}.num_batches_tracked")
        s = g / np.sqrt(v + BN_EPS)
        return s, b - m * s

    def conv(self, x: str, conv: str, *, bn: str | None = None, stride: int = 1, relu: bool = True) -> str:
        """Conv2d (3x3 padding 1, or 1x1 padding 0) with the batch norm after it folded in."""
        w = self.take(f"{conv}.weight")
        b = self.take(f"{conv}.bias") if self.has(f"{conv}.bias") else np.zeros(w.shape[0])
        if bn is not None:
            s, sh = self.bn(bn)
            w, b = w * s[:, None, None, None], b * s + sh
        k = int(w.shape[2])
        p = (k - 1) // 2
        y = self.g.op("Conv", [x, self.g.const(w.astype(np.float32), "w"), self.g.const(b.astype(np.float32), "b")],
                      kernel_shape=[k, k], pads=[p, p, p, p], strides=[stride, stride])
        self.h, self.w = (self.h + 2 * p - k) // stride + 1, (self.w + 2 * p - k) // stride + 1
        return self.g.op("Relu", [y]) if relu else y

    def max_pool(self, x: str, *, ceil: bool = False) -> str:
        if ceil:
            self.h, self.w = -(-self.h // 2), -(-self.w // 2)
        else:
            self.h, self.w = self.h // 2, self.w // 2
        return self.g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=int(ceil))

    def avg_pool(self, x: str) -> str:
        self.h, self.w = self.h // 2, self.w // 2
        return self.g.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])

    def adaptive_avg(self, x: str, out: int) -> str:
        """AdaptiveAvgPool2d((out, out)) for this map's static size: bin i averages rows
        ``floor(i*H/out)`` to ``ceil((i+1)*H/out)``. Sizes that divide use AveragePool; others, the
        same bins as two averaging matrix products (bins of unequal length, as torch's)."""
        h, w = self.h, self.w
        if h < 1 or w < 1:
            raise ModelError(f"{self.source}: the input is too small for this network (feature map {h}x{w})")
        self.h = self.w = out
        if out == 1:
            return self.g.op("GlobalAveragePool", [x])
        if h % out == 0 and w % out == 0:
            return self.g.op("AveragePool", [x], kernel_shape=[h // out, w // out], strides=[h // out, w // out])

        def bins(n: int) -> np.ndarray:
            a = np.zeros((out, n))
            for i in range(out):
                lo, hi = (i * n) // out, -(-((i + 1) * n) // out)
                a[i, lo:hi] = 1.0 / (hi - lo)
            return a.astype(np.float32)

        y = self.g.op("MatMul", [x, self.g.const(bins(w).T.copy(), "pool_w")])  # (b, c, h, out)
        return self.g.op("MatMul", [self.g.const(bins(h), "pool_h"), y])  # (b, c, out, out)

    def basic(self, x: str, p: str, *, stride: int) -> str:
        """The residual block of build_net: relu(bn2(c2(relu(bn1(c1 x)))) + skip(x))."""
        size_in = self.h, self.w
        y = self.conv(x, f"{p}.c1", bn=f"{p}.b1", stride=stride)
        y = self.conv(y, f"{p}.c2", bn=f"{p}.b2", relu=False)
        skip = x
        if self.has(f"{p}.skip.0.weight"):
            size_out, (self.h, self.w) = (self.h, self.w), size_in
            skip = self.conv(x, f"{p}.skip.0", bn=f"{p}.skip.1", stride=stride, relu=False)
            if (self.h, self.w) != size_out:
                raise ModelError(f"{self.source}: residual block {p} changes size unlike its shortcut")
        return self.g.op("Relu", [self.g.op("Add", [y, skip])])

    def linear(self, x: str, p: str, *, bn: str | None = None, relu: bool = False, out: str | None = None) -> str:
        w, b = self.take(f"{p}.weight"), self.take(f"{p}.bias")
        if out == OUTPUT_NAME:
            self.n_out = int(w.shape[0])  # the logits: one per class
        if bn is not None:
            s, sh = self.bn(bn)
            w, b = w * s[:, None], b * s + sh
        y = self.g.op("Gemm", [x, self.g.const(w.astype(np.float32), "w"), self.g.const(b.astype(np.float32), "b")],
                      transB=1, out=None if relu else out)
        return self.g.op("Relu", [y], out=out) if relu else y

    def check_all_used(self) -> None:
        left = sorted(k for k in self.t if k not in self.used)
        if left:
            raise ModelError(f"{self.source}: weights hold tensors the architecture does not use "
                             f"({', '.join(left[:4])}): they do not match the metadata")


def _body(net: _Net, x: str, arch: str) -> str:
    """The network of ``build_net(arch)`` from the unsqueezed input ``x`` [b, 1, n_mels, frames] to logits."""
    g = net.g
    if arch == "tutorial":
        shape = g.op("Shape", [x])
        lead = g.op("Slice", [shape, g.const(np.array([0], np.int64)), g.const(np.array([2], np.int64))])
        sizes = g.op("Concat", [lead, g.const(np.array([128, 128], np.int64))], axis=0)
        x = g.op("Resize", [x, "", "", sizes], mode="linear", coordinate_transformation_mode="half_pixel")
        net.h = net.w = 128
        for i in (0, 3, 6):
            x = net.max_pool(net.conv(x, f"body.{i}"))
        x = g.op("Flatten", [x], axis=1)
        x = net.linear(x, "head.0", relu=True)
        return net.linear(x, "head.3", out=OUTPUT_NAME)
    if arch in ("cnn", "cnn-bn"):
        bn = arch == "cnn-bn"
        i = 0
        for _ in range(3):  # conv[, bn], relu, pool[, dropout]
            x = net.conv(x, f"body.{i}", bn=f"body.{i + 1}" if bn else None)
            i += 3 if bn else 2
            x = net.max_pool(x)
            i += 2 if bn else 1
        x = g.op("Flatten", [net.adaptive_avg(x, 4)], axis=1)
        x = net.linear(x, "head.0", relu=True)
        return net.linear(x, f"head.{3 if bn else 2}", out=OUTPUT_NAME)
    if arch == "resnet":
        x = net.max_pool(net.conv(x, "body.0", bn="body.1"))
        for i, stride in zip(range(4, 8), (1, 2, 2, 2), strict=True):
            x = net.basic(x, f"body.{i}", stride=stride)
        x = g.op("Flatten", [net.adaptive_avg(x, 1)], axis=1)
        return net.linear(x, "head.1", out=OUTPUT_NAME)
    if arch in ("shortchunk", "shortchunk-res"):
        x = net.avg_pool(x)
        i = 1
        while net.has(f"body.{i}.weight") or net.has(f"body.{i}.c1.weight"):
            if arch == "shortchunk-res":
                x, i = net.basic(x, f"body.{i}", stride=1), i + 1
            else:
                x, i = net.conv(x, f"body.{i}", bn=f"body.{i + 1}"), i + 3
            x, i = net.max_pool(x, ceil=True), i + 1
        x = g.op("ReduceMax", [x], axes=[2, 3], keepdims=0)
        x = net.linear(x, "head.0", bn="head.1", relu=True)
        return net.linear(x, "head.4", out=OUTPUT_NAME)
    raise ModelError(f"no ONNX graph builder for architecture {arch!r} (built: {', '.join(GRAPH_ARCHS)})")


def deep_input_shape(meta: Mapping[str, Any]) -> tuple[int, int]:
    """(n_mels, frames) of the slices a deep model's net sees, from its metadata (as ``DeepModel``)."""
    inp = meta.get("input") or {}
    return int(inp.get("n_mels", 128)), int(meta.get("input_frames") or inp.get("slice_frames", 130))


def deep_graph(tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any], *, source: Any = "model") -> bytes:
    """Serialised ONNX graph (opset 17) of a deep model's net from its file's tensors and metadata:
    input ``logmel`` ``(batch, n_mels, frames)``, output ``logits`` ``(batch, n_classes)``."""
    arch = meta.get("arch")
    if arch not in GRAPH_ARCHS:
        raise ModelError(f"{source}: no ONNX graph builder for architecture {arch!r} (built: {', '.join(GRAPH_ARCHS)})")
    n_mels, frames = deep_input_shape(meta)
    g = GraphWriter()
    net = _Net(g, tensors, n_mels=n_mels, frames=frames, source=source)
    x = g.op("Unsqueeze", [INPUT_NAME, g.const(np.array([1], np.int64), "axis")])
    _body(net, x, arch)
    net.check_all_used()
    k = len(meta.get("classes") or [])
    if getattr(net, "n_out", k) != k:
        raise ModelError(f"{source}: the weights give {net.n_out} outputs but the metadata declares {k} classes: "
                         "they do not match")
    info = {"arch": arch, "builder": GRAPH_BUILDER_VERSION, "n_mels": n_mels, "frames": frames}
    proto = g.model([(INPUT_NAME, ["batch", n_mels, frames])], [(OUTPUT_NAME, ["batch", k])],
                    meta={"genrekit_graph": json.dumps(info, sort_keys=True)})
    return proto.SerializeToString()


def _graph_key(tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> str:
    from genrekit.store import tensors_sha256

    n_mels, frames = deep_input_shape(meta)
    h = hashlib.sha256(tensors_sha256(tensors).encode())
    h.update(json.dumps({"arch": meta.get("arch"), "width": meta.get("width", 1), "n_mels": n_mels, "frames": frames,
                         "classes": len(meta.get("classes") or []), "builder": GRAPH_BUILDER_VERSION,
                         "opset": ONNX_OPSET}, sort_keys=True).encode())
    return h.hexdigest()[:16]


def graph_cache_path(tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
    """Where :func:`deep_graph_bytes` caches a graph: ``cache_root()/deep/<arch>-<key>.onnx``, the key a
    digest of the tensors, the input shape and the builder version."""
    from genrekit.store import cache_root

    return cache_root() / "deep" / f"{meta.get('arch')}-{_graph_key(tensors, meta)}.onnx"


def deep_graph_bytes(tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any], *, source: Any = "model",
                     cache: bool = True, rebuild: bool = False) -> bytes:
    """:func:`deep_graph`, read from the cache when it is there, else built and written to it
    (atomically; an unwritable cache only costs the rebuild next time)."""
    return cached_bytes(graph_cache_path(tensors, meta), lambda: deep_graph(tensors, meta, source=source),
                        enabled=cache, rebuild=rebuild)


def torch_graph(model_path: str | os.PathLike, *, opset: int = ONNX_OPSET) -> bytes:
    """A deep model's graph by ``torch.onnx.export`` (tracing): the fallback for an architecture
    :func:`deep_graph` does not build, and the reference the builder is tested against."""
    import torch

    from genrekit.models.deep import DeepModel

    deep = DeepModel.load(model_path)
    dummy = torch.zeros(2, int(deep.input_.get("n_mels", 128)), deep.slice_width())
    with tempfile.TemporaryDirectory() as d:
        graph = Path(d) / "graph.onnx"
        torch.onnx.export(
            deep.net_.eval(), (dummy,), str(graph), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, opset_version=opset, dynamo=False,
        )
        return graph.read_bytes()


# ------------------------------------------------------------------------------------------ musicnn heads


def musicnn_head_graph(head: Any, *, source: Any = "model") -> Any:
    """ONNX graph (ModelProto) of a logistic head on musicnn embeddings, musicnn included: input
    ``patches`` ``(n, 187, 96)`` (one track's audible patches, time before mel, as
    ``networks.musicnn.patches``); outputs ``proba`` ``(1, k)`` (the track: the head on the mean of the
    patches' standardised vectors, as ``GenreClassifier`` scores it), ``patch_proba`` ``(n, k)`` (each
    patch), ``taggram`` ``(n, 50)`` and ``penultimate`` ``(n, 200)``."""
    import onnx

    from genrekit.networks.musicnn.graph import build_onnx

    inp = head.input_
    if getattr(head, "kind", None) != "linear":
        raise ModelError(f"{source}: only a logistic (linear) head on musicnn embeddings goes into an ONNX graph, "
                         f"not a {getattr(head, 'kind', '?')!r} one")
    if head.log_columns_:
        raise ModelError(f"{source}: a musicnn head with log-transformed columns has no ONNX graph")
    base = onnx.load_from_string(build_onnx(inp.get("model", "MSD_musicnn")))
    layer = inp.get("layer", "penultimate")
    # one affine map from the layer's vector to the logits: musicnn_vectors' standardisation, then
    # the head's own scaler and coefficients, folded in float64
    std = (inp.get("standardise") or {}).get("audio")
    m1 = np.asarray(std["mean"], np.float64) if std else 0.0
    s1 = np.asarray(std["std"], np.float64) if std else 1.0
    a = 1.0 / (s1 * head.scale_)  # x -> ((x - m1) / s1 - mean_) / scale_ = a * x + c
    c = -(m1 / s1 + head.mean_) / head.scale_
    w = head.coef_ * a[None, :]
    b = head.coef_ @ c + head.intercept_
    g = GraphWriter(prefix="head.")
    wc, bc = g.const(w.astype(np.float32), "w"), g.const(b.astype(np.float32), "b")
    mean = g.op("ReduceMean", [layer], axes=[0], keepdims=1)
    g.op("Softmax", [g.op("Gemm", [mean, wc, bc], transB=1)], out="proba", axis=1)
    g.op("Softmax", [g.op("Gemm", [layer, wc, bc], transB=1)], out="patch_proba", axis=1)
    k = len(head.classes_)
    outs = [("proba", [1, k]), ("patch_proba", ["batch", k]), ("taggram", ["batch", 50]), ("penultimate", ["batch", 200])]
    if layer not in ("taggram", "penultimate"):
        outs.append((layer, None))
    from genrekit.networks.musicnn.spec import N_MELS, PATCH_FRAMES

    return g.model([(MUSICNN_INPUT, ["batch", PATCH_FRAMES, N_MELS])], outs, base=base)
