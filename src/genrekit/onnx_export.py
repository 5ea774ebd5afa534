"""`genrekit export`: a model as one ``.onnx`` file, for onnxruntime alone.

A deep model's graph; for a logistic (linear) head on musicnn embeddings, musicnn's graph plus the head,
from log-mel patches to class probabilities; for a hybrid, its deep member's graph (or, without one, its
musicnn head's) with the other members riding in the ONNX ``metadata_props`` as their own verified
genrekit model files. The file carries the genrekit metadata (classes, input description) too, so
``GenreClassifier.load(path, backend="onnx")`` needs nothing else. Layer 4: it loads models
(:mod:`genrekit.models`), whose onnx backend uses the graphs of :mod:`genrekit.onnx`; kept apart so those
graphs import no loader (no import circle).
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import ModelError
from genrekit.models.base import load_model_file
from genrekit.models.runtime import musicnn_identity
from genrekit.networks.writer import ONNX_OPSET
from genrekit.onnx import GRAPH_ARCHS, META_KEY, deep_graph_bytes, musicnn_head_graph, torch_graph
from genrekit.store import atomic_write_bytes


def _deep_bytes(path: Path, tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> bytes:
    if meta.get("arch") in GRAPH_ARCHS:
        return deep_graph_bytes(tensors, meta, source=path)
    return torch_graph(path)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def export(model_path: str | os.PathLike, out: str | os.PathLike, *, opset: int = ONNX_OPSET) -> Path:
    """Write the model at ``model_path`` as ONNX to ``out`` (atomically); batch size is dynamic.

    A deep model becomes its graph (:func:`deep_graph`, no torch). A logistic head on musicnn
    embeddings becomes musicnn + head in one graph (:func:`musicnn_head_graph`). A hybrid's deep member
    becomes the graph (or, without one, its musicnn head) and its other members travel inside the ONNX
    metadata as their own verified genrekit model files, so the ``.onnx`` file alone reproduces the
    hybrid's predictions.
    """
    import onnx

    from genrekit.models import load_model

    model_path = Path(model_path)
    tensors, meta = load_model_file(model_path)
    kind, itype = meta.get("kind"), (meta.get("input") or {}).get("type")
    extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        if kind == "hybrid":
            n = len(meta.get("weights") or [])
            files = []
            for i in range(n):
                f = Path(d) / f"m{i}.safetensors"
                f.write_bytes(tensors[f"member{i}"].tobytes())
                files.append(f)
            metas = [load_model_file(f)[1] for f in files]
            deep_idx = [i for i, m in enumerate(metas) if m.get("kind") == "deep"]
            head_idx = [i for i, m in enumerate(metas) if m.get("kind") == "linear"
                        and (m.get("input") or {}).get("type") == "musicnn"]
            if len(deep_idx) > 1:
                raise ModelError(f"{model_path}: ONNX export takes at most one deep member in a hybrid "
                                 f"(this one has {len(deep_idx)})")
            if not deep_idx and not head_idx:
                raise ModelError(f"{model_path}: ONNX export of a hybrid needs a deep member or a logistic "
                                 "musicnn head to make its graph")
            graph_idx = deep_idx[0] if deep_idx else head_idx[0]
            others = [{"index": i, "file_b64": _b64(files[i].read_bytes())} for i in range(n) if i != graph_idx]
            extra = {"hybrid": {"meta": meta, "weights": [float(w) for w in meta["weights"]],
                                "onnx_member": graph_idx, "members": others}}
            member_path, member_tensors, member_meta = files[graph_idx], *load_model_file(files[graph_idx])
        else:
            member_path, member_tensors, member_meta = model_path, tensors, meta
        mkind, mtype = member_meta.get("kind"), (member_meta.get("input") or {}).get("type")
        if mkind == "deep":
            proto = onnx.load_from_string(_deep_bytes(member_path, member_tensors, member_meta))
        elif mtype == "musicnn":
            head = load_model(member_path)
            proto = musicnn_head_graph(head, source=member_path)
            # GenreClassifier runs the head on the vectors of networks.musicnn.graph's graph of the same weights
            extra["musicnn_head"] = {"file_b64": _b64(member_path.read_bytes()), **musicnn_identity(head.input_)}
        else:
            raise ModelError(f"{model_path}: only deep (log-mel) models, logistic musicnn heads and hybrids "
                             f"holding one can be exported to ONNX, not {kind!r} ({itype!r} input)")
    if opset != ONNX_OPSET:
        proto = onnx.version_converter.convert_version(proto, opset)
    gmeta = dict(member_meta)
    gmeta["exported_from"] = str(model_path)
    gmeta.update(extra)
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(gmeta)
    out = Path(out)
    atomic_write_bytes(out, proto.SerializeToString(), replace=is_genrekit_onnx)  # never over someone else's file
    return out


def is_genrekit_onnx(path: Path) -> bool:
    """An ONNX file that genrekit exported (its metadata holds genrekit's model record)."""
    import onnx

    try:
        return any(p.key == META_KEY for p in onnx.load(str(path), load_external_data=False).metadata_props)
    except Exception:  # noqa: BLE001 - not ONNX at all: someone else's file
        return False
