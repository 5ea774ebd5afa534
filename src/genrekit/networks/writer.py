"""The one ONNX graph writer: musicnn's graph (networks/musicnn/graph.py), the deep models' graphs and
the musicnn-head exports (genrekit.onnx) are all written with :class:`GraphWriter`, at one opset, and
run in onnxruntime sessions made with :func:`session_options`.

Graphs are built straight from numpy tensors with ``onnx.helper``: no torch, no tracing. ``onnx`` is
imported only when a graph is built and ``onnxruntime`` only when a session is made, so importing this
module costs numpy alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

ONNX_OPSET = 17
IR_VERSION = 8  # onnxruntime >= 1.14 reads it; opset 17


def check_threads(threads: int) -> int:
    """``threads`` as an int when it is a positive whole number; ValueError otherwise."""
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive number, got {threads!r}")
    return int(threads)


class GraphWriter:
    """Nodes and initialisers of one ONNX graph. Names are either given (:meth:`named`, ``out=``: the
    musicnn graph names every tensor after its layer) or made from ``prefix`` and a counter
    (:meth:`const`, :meth:`op` without ``out``: the deep graphs)."""

    def __init__(self, prefix: str = "") -> None:
        import onnx
        from onnx import helper, numpy_helper

        self.onnx, self.helper, self.numpy_helper = onnx, helper, numpy_helper
        self.prefix = prefix
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.count = 0

    def name(self, what: str) -> str:
        """A fresh name: ``<prefix><what>_<n>``."""
        self.count += 1
        return f"{self.prefix}{what}_{self.count}"

    def named(self, name: str, arr: Any) -> str:
        """An initialiser called exactly ``name``."""
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def const(self, arr: Any, what: str = "c") -> str:
        """An initialiser with a fresh name."""
        return self.named(self.name(what), arr)

    def op(self, op: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        """One node; its output (and node name) is ``out``, or a fresh name."""
        out = out or self.name(op.lower())
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def model(self, inputs: Sequence[tuple[str, Any]], outputs: Sequence[tuple[str, Any]], *,
              meta: Mapping[str, str] | None = None, base: Any = None, graph_name: str = "genrekit") -> Any:
        """The checked ModelProto (opset :data:`ONNX_OPSET`, float inputs and outputs of the given
        shapes, ``meta`` in its ``metadata_props``); ``base``: a graph whose nodes and initialisers
        come first (musicnn under a head)."""
        h, tp = self.helper, self.onnx.TensorProto
        nodes = [*(base.graph.node if base is not None else []), *self.nodes]
        inits = [*(base.graph.initializer if base is not None else []), *self.inits]
        graph = h.make_graph(nodes, graph_name, [h.make_tensor_value_info(n, tp.FLOAT, s) for n, s in inputs],
                             [h.make_tensor_value_info(n, tp.FLOAT, s) for n, s in outputs], inits)
        proto = h.make_model(graph, opset_imports=[h.make_opsetid("", ONNX_OPSET)], producer_name="genrekit")
        proto.ir_version = IR_VERSION
        for k, v in (meta or {}).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        self.onnx.checker.check_model(proto)
        return proto


def session_options(threads: int = 1) -> Any:
    """onnxruntime options for every genrekit graph: ``threads`` intra-op threads, sequential, full
    graph optimisation, no spinning (idle threads would steal the other worker processes' cores)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = check_threads(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so
