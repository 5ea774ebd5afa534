"""ONNX export of deep models and an onnxruntime inference path with the same interface.

The exported file carries the model's genrekit metadata (classes, input description) in the ONNX
``metadata_props``, so ``GenreClassifier.load(path, backend="onnx")`` needs nothing else. Loading an
ONNX graph executes no Python code from the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.engine import atomic_write_bytes
from genrekit.errors import ModelError
from genrekit.metrics import softmax
from genrekit.models.base import Estimator

META_KEY = "genrekit_meta"


def export(model_path: str | os.PathLike, out: str | os.PathLike, *, opset: int = 17) -> Path:
    """Write the model at ``model_path`` as ONNX to ``out`` (atomically); batch size is dynamic.

    A deep model becomes one graph. A hybrid's spectrogram member becomes the graph and its other members
    (small tabular models) travel inside the ONNX metadata as their own verified genrekit model files, so
    the ``.onnx`` file alone reproduces the hybrid's predictions.
    """
    import base64

    import onnx
    import torch

    from genrekit.models import load_model

    model = load_model(model_path)
    extra: dict[str, Any] = {}
    if getattr(model, "kind", None) == "hybrid":
        deep_idx = [i for i, m in enumerate(model.members_) if getattr(m, "kind", None) == "deep"]
        if len(deep_idx) != 1:
            raise ModelError(f"{model_path}: ONNX export needs exactly one deep member in the hybrid")
        others = []
        with tempfile.TemporaryDirectory() as d:
            for i, m in enumerate(model.members_):
                if i != deep_idx[0]:
                    f = Path(d) / f"m{i}.safetensors"
                    m.save(f)
                    others.append({"index": i, "file_b64": base64.b64encode(f.read_bytes()).decode()})
        extra = {"hybrid": {"meta": model.meta_, "weights": [float(w) for w in model.weights_],
                            "onnx_member": deep_idx[0], "members": others}}
        deep = model.members_[deep_idx[0]]
    elif getattr(model, "kind", None) == "deep":
        deep = model
    else:
        raise ModelError(f"{model_path}: only deep (log-mel) or hybrid models can be exported to ONNX, "
                         f"not {getattr(model, 'kind', '?')!r}")
    net = deep.net_.eval()
    dummy = torch.zeros(2, int(deep.input_.get("n_mels", 128)), deep.slice_width())
    out = Path(out)
    with tempfile.TemporaryDirectory() as d:
        graph = Path(d) / "graph.onnx"
        torch.onnx.export(
            net, (dummy,), str(graph), input_names=["logmel"], output_names=["logits"],
            dynamic_axes={"logmel": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset, dynamo=False,
        )
        proto = onnx.load(str(graph))
    meta = dict(deep.meta_)
    meta["exported_from"] = str(model_path)
    meta.update(extra)
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    atomic_write_bytes(out, proto.SerializeToString())
    return out


def _rebuild_hybrid(graph_model: OnnxModel, spec: dict, source: Path):
    """The hybrid an exported file describes: the ONNX graph plus the embedded member files."""
    import base64

    from genrekit.models import load_model
    from genrekit.models.hybrid import HybridModel

    n = len(spec["weights"])
    members: list[Any] = [None] * n
    members[int(spec["onnx_member"])] = graph_model
    with tempfile.TemporaryDirectory() as d:
        for m in spec["members"]:
            f = Path(d) / f"m{m['index']}.safetensors"
            f.write_bytes(base64.b64decode(m["file_b64"]))
            members[int(m["index"])] = load_model(f)
    if any(m is None for m in members):
        raise ModelError(f"{source}: exported hybrid lacks some of its members")
    hybrid = HybridModel(members, weights=spec["weights"]).fit()
    hybrid.meta_ = dict(spec["meta"])
    return hybrid


class OnnxModel(Estimator):
    """A deep model run by onnxruntime: ``predict_proba`` on log-mel slices, like :class:`DeepModel`."""

    kind = "deep-onnx"

    def __init__(self, threads: int = 2):
        self.threads = threads

    @classmethod
    def load(cls, path: str | os.PathLike, *, threads: int = 2):
        """Load an exported ``.onnx`` file, or export a genrekit model file on the fly (in a temp folder).

        Returns an :class:`OnnxModel`, or a hybrid whose spectrogram member is one."""
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        if path.suffix.lower() != ".onnx":
            with tempfile.TemporaryDirectory() as d:
                return cls.load(export(path, Path(d) / "model.onnx"), threads=threads)
        try:
            import onnx

            proto = onnx.load(str(path), load_external_data=False)
            props = {p.key: p.value for p in proto.metadata_props}
            meta: dict[str, Any] = json.loads(props[META_KEY])
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            session = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        except KeyError:
            raise ModelError(f"{path}: ONNX file lacks genrekit metadata (export it with `genrekit export`)") from None
        except Exception as exc:  # onnx/onnxruntime raise many types for a damaged file
            raise ModelError(f"{path}: not a valid ONNX model ({type(exc).__name__}: {exc})") from None
        m = cls(threads=threads)
        m.session_ = session
        m.meta_ = meta
        m.input_ = meta["input"]
        m.classes_ = np.array(meta["classes"])
        m.width_ = int(meta.get("input_frames") or meta["input"].get("slice_frames", 130))
        if "hybrid" in meta:
            return _rebuild_hybrid(m, meta["hybrid"], path)
        return m

    def predict_proba(self, X) -> np.ndarray:
        self._check_fitted()
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 3:
            raise ModelError(f"predict_proba: X must be log-mel slices [n, n_mels, frames], got shape {X.shape}")
        w = self.width_
        if X.shape[2] < w:
            X = np.pad(X, ((0, 0), (0, 0), (0, w - X.shape[2])))
        s = (X.shape[2] - w) // 2
        X = np.ascontiguousarray(X[:, :, s : s + w])
        return softmax(self.session_.run(["logits"], {"logmel": X})[0].astype(np.float64))
