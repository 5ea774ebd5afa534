"""mn04 as an ONNX graph written straight from the shipped safetensors (``onnx.helper``: no torch, no tracing).

Every batch norm is folded into the convolution before it (in float64, then cast once to float32), so
the graph holds 62 convolutions, the squeeze-excitation gates as 1x1 convolutions on the pooled map,
and the ``mlp`` head as two Gemms. Input ``mel`` ``(batch, 1, 128, frames)`` (any frame count: the
pooling is global), outputs ``features`` ``(batch, 384)`` and ``logits`` ``(batch, 527)``.

``import genrekit.networks.mn04.graph`` costs nothing heavy: onnx is imported when a graph is built,
safetensors when the weights are read.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import ModelError
from genrekit.networks.mn04.spec import (
    BLOCKS,
    BN_EPS,
    INPUT_NAME,
    LAST_INDEX,
    N_CLASSES,
    N_FEATURES,
    N_MELS,
    NETWORK,
    OUTPUT_NAMES,
    read_spec,
    weights_path,
)
from genrekit.networks.writer import GraphWriter
from genrekit.store import file_digest

BUILDER_VERSION = 1  # bump when the built graph changes (the cache keys on it)


# ------------------------------------------------------------------------------------------ weights


@cache
def read_weights(path: str | None = None) -> Mapping[str, np.ndarray]:
    """The state dict of ``mn04_as`` (default: the shipped file, checked against ``mn04.json``'s sha256)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    p = Path(path) if path is not None else weights_path()
    if not p.is_file():
        raise ModelError(f"{p}: mn04 weights not found; rerun scripts/convert_mn04.py")
    if path is None:
        want = read_spec()["weights_sha256"]
        got = file_digest(p)
        if got != want:
            raise ModelError(f"{p}: sha256 {got[:16]}... differs from mn04.json's {want[:16]}...: the weights "
                             "are damaged or replaced; reinstall genrekit or rerun scripts/convert_mn04.py")
    try:
        return load_file(str(p))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{p}: not a readable safetensors file ({e})") from e


class _Net:
    """Walks the block table over the state dict, folding batch norms and writing nodes."""

    def __init__(self, g: GraphWriter, tensors: Mapping[str, np.ndarray], source: str) -> None:
        self.g, self.t, self.source = g, tensors, source
        self.used: set[str] = set()

    def take(self, key: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        if key not in self.t:
            raise ModelError(f"{self.source}: weights lack {key!r}: they are not mn04_as's")
        a = np.asarray(self.t[key], dtype=np.float64)
        if shape is not None and a.shape != shape:
            raise ModelError(f"{self.source}: {key} has shape {a.shape}, mn04_as needs {shape}")
        self.used.add(key)
        return a

    def conv_bn(self, x: str, prefix: str, *, c_in: int, c_out: int, k: int, stride: int = 1,
                groups: int = 1, act: str | None = None) -> str:
        """``<prefix>.0`` Conv2d (no bias, padding (k-1)//2) + ``<prefix>.1`` BatchNorm2d, folded; then ``act``."""
        w = self.take(f"{prefix}.0.weight", (c_out, c_in // groups, k, k))
        gamma, beta = self.take(f"{prefix}.1.weight", (c_out,)), self.take(f"{prefix}.1.bias", (c_out,))
        mean, var = self.take(f"{prefix}.1.running_mean", (c_out,)), self.take(f"{prefix}.1.running_var", (c_out,))
        self.used.add(f"{prefix}.1.num_batches_tracked")
        s = gamma / np.sqrt(var + BN_EPS)
        w, b = w * s[:, None, None, None], beta - mean * s
        p = (k - 1) // 2
        y = self.g.op("Conv", [x, self.g.const(w.astype(np.float32), "w"), self.g.const(b.astype(np.float32), "b")],
                      kernel_shape=[k, k], pads=[p, p, p, p], strides=[stride, stride], group=groups)
        return self.g.op(act, [y]) if act else y

    def se(self, x: str, prefix: str, *, c: int, squeeze: int) -> str:
        """Squeeze-excitation over channels: mean over (freq, time), fc1, ReLU, fc2, sigmoid, scale."""
        w1, b1 = self.take(f"{prefix}.fc1.weight", (squeeze, c)), self.take(f"{prefix}.fc1.bias", (squeeze,))
        w2, b2 = self.take(f"{prefix}.fc2.weight", (c, squeeze)), self.take(f"{prefix}.fc2.bias", (c,))
        m = self.g.op("ReduceMean", [x], axes=[2, 3], keepdims=1)
        h = self.g.op("Conv", [m, self.g.const(w1[:, :, None, None].astype(np.float32), "se_w"),
                               self.g.const(b1.astype(np.float32), "se_b")], kernel_shape=[1, 1])
        h = self.g.op("Relu", [h])
        h = self.g.op("Conv", [h, self.g.const(w2[:, :, None, None].astype(np.float32), "se_w"),
                               self.g.const(b2.astype(np.float32), "se_b")], kernel_shape=[1, 1])
        return self.g.op("Mul", [x, self.g.op("Sigmoid", [h])])

    def gemm(self, x: str, prefix: str, n_in: int, n_out: int) -> str:
        w, b = self.take(f"{prefix}.weight", (n_out, n_in)), self.take(f"{prefix}.bias", (n_out,))
        return self.g.op("Gemm", [x, self.g.const(w.astype(np.float32), "fc_w"), self.g.const(b.astype(np.float32), "fc_b")],
                         transB=1)


def build_proto(tensors: Mapping[str, np.ndarray] | None = None, *, source: str | None = None) -> Any:
    """The checked ``onnx.ModelProto`` of mn04 with ``tensors`` (default: the shipped weights)."""
    if tensors is None:
        tensors, source = read_weights(), str(weights_path())
    g = GraphWriter()
    net = _Net(g, tensors, source or "mn04 weights")
    x = net.conv_bn(INPUT_NAME, "features.0", c_in=1, c_out=BLOCKS[0].in_ch, k=3, stride=2, act="HardSwish")
    for b in BLOCKS:
        act = "HardSwish" if b.hardswish else "Relu"
        pre, i, y = f"features.{b.index}.block", 0, x
        if b.expands:
            y = net.conv_bn(y, f"{pre}.{i}", c_in=b.in_ch, c_out=b.expanded, k=1, act=act)
            i += 1
        y = net.conv_bn(y, f"{pre}.{i}", c_in=b.expanded, c_out=b.expanded, k=b.kernel, stride=b.stride,
                        groups=b.expanded, act=act)
        i += 1
        if b.se:
            y = net.se(y, f"{pre}.{i}.conc_se_layers.0", c=b.expanded, squeeze=b.squeeze)  # one SE: max-agg is itself
            i += 1
        y = net.conv_bn(y, f"{pre}.{i}", c_in=b.expanded, c_out=b.out_ch, k=1)
        x = g.op("Add", [y, x]) if b.residual else y
    x = net.conv_bn(x, f"features.{LAST_INDEX}", c_in=BLOCKS[-1].out_ch, c_out=N_FEATURES, k=1, act="HardSwish")
    feats = g.op("Flatten", [g.op("GlobalAveragePool", [x])], out=OUTPUT_NAMES[0], axis=1)
    h = g.op("HardSwish", [net.gemm(feats, "classifier.2", N_FEATURES, 512)])  # classifier.4: Dropout, off
    g.op("Identity", [net.gemm(h, "classifier.5", 512, N_CLASSES)], out=OUTPUT_NAMES[1])
    unused = sorted(set(tensors) - net.used)
    if unused:
        raise ModelError(f"{net.source}: tensors the mn04_as graph does not use: {unused[:5]}; these are not its weights")
    return g.model([(INPUT_NAME, ["batch", 1, N_MELS, "frames"])],
                   [(OUTPUT_NAMES[0], ["batch", N_FEATURES]), (OUTPUT_NAMES[1], ["batch", N_CLASSES])],
                   meta={"network": NETWORK, "builder_version": str(BUILDER_VERSION)})


def build_onnx() -> bytes:
    """The serialised float32 graph of the shipped weights."""
    return build_proto().SerializeToString()


def cache_path() -> Path:
    from genrekit.store import cache_root

    return cache_root() / "mn04" / f"{NETWORK}-{read_spec()['weights_sha256'][:16]}-b{BUILDER_VERSION}.onnx"


def onnx_model(*, cache: bool = True, rebuild: bool = False) -> bytes:
    """:func:`build_onnx`'s bytes, from genrekit's cache when there (keyed by the weights' sha256 and
    :data:`BUILDER_VERSION`), else built and written to it atomically; ``rebuild`` ignores the cached file."""
    from genrekit.store import cached_bytes

    read_weights()  # checks the shipped file's sha256 even when the graph comes from the cache
    return cached_bytes(cache_path(), build_onnx, enabled=cache, rebuild=rebuild)
