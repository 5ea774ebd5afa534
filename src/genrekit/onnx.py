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

from genrekit.errors import ModelError
from genrekit.models.base import Estimator

META_KEY = "genrekit_meta"


def export(model_path: str | os.PathLike, out: str | os.PathLike, *, opset: int = 17) -> Path:
    """Write the deep model at ``model_path`` as ONNX to ``out`` (atomically); batch size is dynamic."""
    import onnx
    import torch

    from genrekit.models import load_model

    model = load_model(model_path)
    if getattr(model, "kind", None) != "deep":
        raise ModelError(f"{model_path}: only deep (log-mel) models can be exported to ONNX, not {model.kind!r}")
    net = model.net_.eval()
    dummy = torch.zeros(2, int(model.input_.get("n_mels", 128)), model._width())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        torch.onnx.export(
            net, (dummy,), tmp, input_names=["logmel"], output_names=["logits"],
            dynamic_axes={"logmel": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset, dynamo=False,
        )
        proto = onnx.load(tmp)
        meta = dict(model.meta_)
        meta["exported_from"] = str(model_path)
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_KEY, json.dumps(meta)
        onnx.save(proto, tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


class OnnxModel(Estimator):
    """A deep model run by onnxruntime: ``predict_proba`` on log-mel slices, like :class:`DeepModel`."""

    kind = "deep-onnx"

    def __init__(self, threads: int = 2):
        self.threads = threads

    @classmethod
    def load(cls, path: str | os.PathLike, *, threads: int = 2) -> OnnxModel:
        """Load an exported ``.onnx`` file, or export a genrekit deep model file on the fly (in memory)."""
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
        logits = self.session_.run(["logits"], {"logmel": X})[0].astype(np.float64)
        z = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
