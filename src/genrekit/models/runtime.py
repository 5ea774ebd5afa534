"""Models on onnxruntime: the ``backend="onnx"`` half of :func:`genrekit.models.load`.

A deep model runs as :class:`OnnxModel`, a session on the graph that :mod:`genrekit.onnx` builds from its
file's tensors (cached; no torch). An exported ``.onnx`` file (``genrekit export``) is rebuilt here too:
its graph plus the member files it carries, each loaded and verified by the same loader. Loading an
ONNX graph executes no Python code from the file.
"""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import ModelError
from genrekit.metrics import softmax
from genrekit.models.base import Estimator

__all__ = ["OnnxModel", "load_exported", "musicnn_identity"]

Loader = Callable[[Path], Any]  # a member file -> its model, on the caller's backend


def _session(data: bytes, threads: int):
    import onnxruntime as ort

    from genrekit.networks.writer import session_options

    return ort.InferenceSession(data, session_options(threads), providers=["CPUExecutionProvider"])


def musicnn_identity(inp: Mapping[str, Any]) -> dict[str, Any]:
    """The musicnn weights a head ran on: their name and the installed file's sha256."""
    from genrekit.networks.musicnn.spec import weights_sha256

    model = inp.get("model", "MSD_musicnn")
    return {"model": model, "weights_sha256": weights_sha256(model)}


class OnnxModel(Estimator):
    """A deep model run by onnxruntime: ``predict_proba`` on log-mel slices, like :class:`DeepModel`."""

    kind = "deep-onnx"

    def __init__(self, threads: int = 1):
        self.threads = threads

    @classmethod
    def from_session(cls, session: Any, meta: Mapping[str, Any], *, threads: int = 1) -> OnnxModel:
        from genrekit.onnx import deep_input_shape

        m = cls(threads=threads)
        m.session_ = session
        m.meta_ = dict(meta)
        m.input_ = meta["input"]
        m.classes_ = np.array(meta["classes"])
        m.width_ = deep_input_shape(meta)[1]
        return m

    @classmethod
    def from_graph(cls, data: bytes, meta: Mapping[str, Any], *, threads: int = 1, source: Any = "model",
                   rebuild: Callable[[], bytes | None] | None = None) -> OnnxModel:
        """A session on a serialised ``logmel -> logits`` graph; ``rebuild``: called once for fresh
        bytes when ``data`` does not load (a damaged cache file)."""
        try:
            session = _session(data, threads)
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph types
            fresh = rebuild() if rebuild is not None else None
            if fresh is None:
                raise ModelError(f"{source}: not a valid ONNX model ({type(exc).__name__}: {exc})") from None
            session = _session(fresh, threads)
        return cls.from_session(session, meta, threads=threads)

    @classmethod
    def from_deep_file(cls, path: Path, tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any], *,
                       threads: int = 1) -> OnnxModel:
        """A deep model file's net on onnxruntime: the graph built from its tensors (cached), or by
        ``torch.onnx.export`` for an architecture the builder does not know."""
        from genrekit.onnx import GRAPH_ARCHS, deep_graph_bytes, torch_graph

        built = meta.get("arch") in GRAPH_ARCHS
        data = deep_graph_bytes(tensors, meta, source=path) if built else torch_graph(path)
        return cls.from_graph(data, meta, threads=threads, source=path,
                              rebuild=(lambda: deep_graph_bytes(tensors, meta, source=path, rebuild=True))
                              if built else None)

    def predict_proba(self, X) -> np.ndarray:
        from genrekit.onnx import INPUT_NAME, OUTPUT_NAME

        self._check_fitted()
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 3:
            raise ModelError(f"predict_proba: X must be log-mel slices [n, n_mels, frames], got shape {X.shape}")
        w = self.width_
        if X.shape[2] < w:
            X = np.pad(X, ((0, 0), (0, 0), (0, w - X.shape[2])))
        s = (X.shape[2] - w) // 2
        X = np.ascontiguousarray(X[:, :, s : s + w])
        return softmax(self.session_.run([OUTPUT_NAME], {INPUT_NAME: X})[0].astype(np.float64))


def _embedded(b64: Any, load: Loader, *, what: str, source: Path) -> Any:
    """A model file carried base64-encoded inside an exported graph, loaded (and verified) by ``load``."""
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "member.safetensors"
        try:
            f.write_bytes(base64.b64decode(b64, validate=True))
            return load(f)
        except (ModelError, ValueError, TypeError) as exc:
            raise ModelError(f"{source}: {what} is invalid ({exc})") from None


def load_exported(path: Path, load: Loader, *, threads: int = 1) -> tuple[Any, dict[str, Any] | None]:
    """What an exported ``.onnx`` file holds: its main model (the graph, or the musicnn head it carries)
    and, for a hybrid, ``{"members", "weights", "meta"}`` (the graph's model among the members); the
    carried genrekit model files are loaded by ``load``, the caller's loader. No hybrid is built here:
    :func:`genrekit.models.load` does that, so this module imports no estimator above it."""
    from genrekit.models.base import check_meta, parse_meta
    from genrekit.onnx import META_KEY

    try:
        session = _session(path.read_bytes(), threads)
        meta_json = session.get_modelmeta().custom_metadata_map[META_KEY]
    except KeyError:
        raise ModelError(f"{path}: ONNX file lacks genrekit metadata (export it with `genrekit export`)") from None
    except Exception as exc:  # onnxruntime raises many types for a damaged file
        raise ModelError(f"{path}: not a valid ONNX model ({type(exc).__name__}: {exc})") from None
    meta: dict[str, Any] = parse_meta(meta_json, source=path)
    for key in ("classes", "input"):
        if key not in meta:
            raise ModelError(f"{path}: the ONNX file's genrekit metadata lacks {key!r}")
    check_meta(meta, source=path)
    if "musicnn_head" in meta:
        spec = meta["musicnn_head"]
        head = _embedded(spec.get("file_b64"), load, what="the embedded musicnn head", source=path)
        now = musicnn_identity(head.input_)
        if now["weights_sha256"] != spec.get("weights_sha256"):  # the predict path runs the installed weights
            raise ModelError(f"{path}: exported with other {now['model']} weights than the installed ones; "
                             "export the model again with this genrekit")
        main = head
    else:
        main = OnnxModel.from_session(session, meta, threads=threads)
    spec = meta.get("hybrid")
    if spec is None:
        return main, None
    try:
        n = len(spec["weights"])
        members: list[Any] = [None] * n
        members[int(spec["onnx_member"])] = main
        for m in spec["members"]:
            members[int(m["index"])] = _embedded(m["file_b64"], load, what=f"member {m['index']}", source=path)
        hybrid = {"members": members, "weights": [float(w) for w in spec["weights"]], "meta": dict(spec["meta"])}
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelError(f"{path}: exported hybrid's description is malformed ({exc})") from None
    if any(m is None for m in members):
        raise ModelError(f"{path}: exported hybrid lacks some of its members")
    return main, hybrid
