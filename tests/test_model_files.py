"""Untrusted model files: loading never runs code from the file, a damaged file is refused with a clear
message, and the metadata (kind, classes, input description) is validated before anything is built."""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from genrekit.errors import ModelError
from genrekit.models import load_model, load_model_file, save_model_file
from genrekit.models.base import FORMAT_VERSION, tensors_sha256
from genrekit.predict import GenreClassifier

LOGMEL_INPUT = {"type": "logmel", "sr": 22050, "n_fft": 2048, "hop_length": 512, "n_mels": 128,
                "slice_seconds": 3.0}


def _loaders():
    return [load_model, GenreClassifier.load]


def _refused(path: Path, match: str) -> None:
    for load in _loaders():
        with pytest.raises(ModelError, match=match) as e:
            load(path)
        assert str(path) in str(e.value)


def _write_raw(path: Path, tensors: dict[str, np.ndarray], header: dict[str, str]) -> Path:
    from safetensors.numpy import save

    path.write_bytes(save(tensors, metadata=header))
    return path


def _write_meta(path: Path, meta: dict, tensors: dict[str, np.ndarray] | None = None) -> Path:
    """A correctly checksummed genrekit file with arbitrary metadata (save_model_file would refuse some)."""
    tensors = tensors or {"w": np.zeros(3, np.float32)}
    return _write_raw(path, tensors, {"genrekit_format": str(FORMAT_VERSION), "sha256": tensors_sha256(tensors),
                                      "meta": json.dumps(meta)})


# ------------------------------------------------------------------------------------ no code execution
class _Boom:
    """Unpickling this runs os.system: the payload a malicious 'model.pkl' would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _pickle_payloads(tmp_path: Path, marker: Path) -> dict[str, bytes]:
    import io

    import torch

    raw = pickle.dumps(_Boom(marker))
    buf = io.BytesIO()
    torch.save({"state": _Boom(marker)}, buf)  # a torch checkpoint is a zip holding a pickle
    return {"pickle.safetensors": raw, "pickle.pt": raw, "torch.safetensors": buf.getvalue(),
            "pickle.pkl": raw}


def test_pickle_and_torch_payloads_are_refused_without_running(tmp_path, monkeypatch):
    import torch

    marker = tmp_path / "PWNED"
    calls = []
    for mod, name in ((pickle, "loads"), (pickle, "load"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(mod, name, lambda *a, _n=name, **k: calls.append(_n))
    for name, data in _pickle_payloads(tmp_path, marker).items():
        path = tmp_path / name
        path.write_bytes(data)
        _refused(path, r"not a valid genrekit model file|truncated or corrupt")
    assert not marker.exists(), "loading a model file executed code from it"
    assert calls == [], f"a pickle loader was called: {calls}"


def test_a_valid_model_loads_without_any_unpickling(tiny_model, monkeypatch):
    import torch

    calls = []
    for mod, name in ((pickle, "loads"), (pickle, "load"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(mod, name, lambda *a, _n=name, **k: calls.append(_n))
    clf = GenreClassifier.load(tiny_model)
    assert clf.genres == ["blues", "metal"]
    assert calls == []


@pytest.mark.parametrize("header", [
    b"\xff" * 8,  # header length 2**64 - 1
    struct.pack("<Q", 10**12),  # longer than the file
    struct.pack("<Q", 4) + b"[1,2",  # not a JSON object
    struct.pack("<Q", 2) + b"{}",  # no tensors, no metadata
])
def test_crafted_safetensors_headers_are_refused(tmp_path, header):
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(header + b"\0" * 64)
    _refused(path, r"not a valid genrekit model file|not a genrekit model file")


def _crafted(tmp_path: Path, entries: dict, data: bytes, name: str) -> Path:
    head = json.dumps(entries).encode()
    head += b" " * (-len(head) % 8)
    path = tmp_path / name
    path.write_bytes(struct.pack("<Q", len(head)) + head + data)
    return path


def test_crafted_tensor_entries_are_refused(tmp_path):
    meta = {"genrekit_format": "1", "sha256": "0" * 64, "meta": json.dumps({"kind": "deep", "classes": ["a"]})}
    cases = {
        "offsets past the end": {"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}},
        "overlapping": {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                        "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}},
        "shape/size mismatch": {"w": {"dtype": "F32", "shape": [10**9, 10**9], "data_offsets": [0, 16]}},
        "unknown dtype": {"w": {"dtype": "PY_OBJECT", "shape": [4], "data_offsets": [0, 16]}},
        "metadata not strings": {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
    }
    for i, (what, entries) in enumerate(cases.items()):
        md = {"__metadata__": {"meta": {"kind": "deep"}}} if what == "metadata not strings" else {"__metadata__": meta}
        path = _crafted(tmp_path, {**entries, **md}, b"\0" * 32, f"c{i}.safetensors")
        _refused(path, r"not a valid genrekit model file|checksum|not a genrekit model")


# ------------------------------------------------------------------------------------ damage
def test_tampered_tensor_bytes_fail_the_checksum(tiny_model, tmp_path):
    raw = bytearray(tiny_model.read_bytes())
    for pos in (len(raw) - 5, len(raw) // 2, len(raw) - 4000):
        bad = bytearray(raw)
        bad[pos] ^= 0x01  # one bit
        path = tmp_path / f"flip{pos}.safetensors"
        path.write_bytes(bytes(bad))
        _refused(path, r"checksum mismatch: the model file was modified or damaged")


def test_tampered_metadata_is_refused(tiny_model, tmp_path):
    tensors, meta = load_model_file(tiny_model)
    from safetensors import safe_open

    with safe_open(str(tiny_model), "np") as f:
        header = dict(f.metadata())
    header["sha256"] = "0" * 64  # someone swapped the weights and forgot (or could not fix) the digest
    _refused(_write_raw(tmp_path / "digest.safetensors", tensors, header), "checksum mismatch")
    header = {k: v for k, v in header.items() if k != "genrekit_format"}
    _refused(_write_raw(tmp_path / "foreign.safetensors", tensors, header), "not a genrekit model file")
    tensors["extra"] = np.ones(2, np.float32)  # a tensor smuggled in alongside a stale digest
    with safe_open(str(tiny_model), "np") as f:
        _refused(_write_raw(tmp_path / "extra.safetensors", tensors, dict(f.metadata())), "checksum mismatch")


def test_truncated_files_are_refused(tiny_model, tmp_path):
    raw = tiny_model.read_bytes()
    for n in (0, 7, 8, 100, len(raw) // 2, len(raw) - 1):
        path = tmp_path / f"cut{n}.safetensors"
        path.write_bytes(raw[:n])
        _refused(path, r"truncated or corrupt|not a valid genrekit model file")


def test_missing_file_and_folder(tmp_path):
    _refused(tmp_path / "absent.safetensors", "model file not found")
    (tmp_path / "dir.safetensors").mkdir()
    _refused(tmp_path / "dir.safetensors", "model file not found")


# ------------------------------------------------------------------------------------ metadata
@pytest.mark.parametrize(("meta", "match"), [
    ({"classes": ["a", "b"], "input": LOGMEL_INPUT}, "lacks a 'kind'"),
    ({"kind": "", "classes": ["a", "b"], "input": LOGMEL_INPUT}, "lacks a 'kind'"),
    ({"kind": ["deep"], "classes": ["a", "b"], "input": LOGMEL_INPUT}, "lacks a 'kind'"),
    ({"kind": "os.system", "classes": ["a", "b"], "input": LOGMEL_INPUT}, "unknown model kind 'os.system'"),
    ({"kind": "deep", "input": LOGMEL_INPUT}, "lacks 'classes'"),
    ({"kind": "deep", "classes": [], "input": LOGMEL_INPUT}, "'classes' must be a non-empty list"),
    ({"kind": "deep", "classes": "blues,metal", "input": LOGMEL_INPUT}, "'classes' must be a non-empty list"),
    ({"kind": "deep", "classes": ["a", 3], "input": LOGMEL_INPUT}, "'classes' must be a non-empty list"),
    ({"kind": "deep", "classes": ["a", "b"]}, "lacks 'input'"),
    ({"kind": "deep", "classes": ["a", "b"], "input": "logmel"}, "'input' must have type"),
    ({"kind": "deep", "classes": ["a", "b"], "input": {"type": "waveform"}}, "'input' must have type"),
    ({"kind": "deep", "classes": ["a", "b"], "input": {**LOGMEL_INPUT, "sr": "22050"}}, r"'input\.sr'"),
    ({"kind": "deep", "classes": ["a", "b"], "input": {**LOGMEL_INPUT, "n_fft": 2**40}}, r"'input\.n_fft'"),
    ({"kind": "deep", "classes": ["a", "b"], "input": {**LOGMEL_INPUT, "n_mels": 0}}, r"'input\.n_mels'"),
    ({"kind": "deep", "classes": ["a", "b"], "input": {**LOGMEL_INPUT, "hop_length": 4096}}, "hop_length"),
    ({"kind": "deep", "classes": ["a", "b"], "input": {**LOGMEL_INPUT, "slice_seconds": -3}}, "slice_seconds"),
    ({"kind": "sklearn", "classes": ["a", "b"], "input": {"type": "features", "columns": []}}, r"'input\.columns'"),
    ({"kind": "sklearn", "classes": ["a", "b"],
      "input": {"type": "features", "columns": ["x"], "segment_seconds": "3"}}, "segment_seconds"),
])
def test_metadata_is_validated(meta, match, tmp_path):
    _refused(_write_meta(tmp_path / "m.safetensors", meta), match)


def test_metadata_that_is_not_json_or_not_an_object(tmp_path):
    t = {"w": np.zeros(3, np.float32)}
    for i, meta in enumerate(["{not json", "[1, 2]", "null"]):
        path = _write_raw(tmp_path / f"j{i}.safetensors", t,
                          {"genrekit_format": "1", "sha256": tensors_sha256(t), "meta": meta})
        _refused(path, r"not valid JSON|lacks a 'kind'")


def test_weights_that_do_not_fit_the_declared_classes(tiny_model, tmp_path):
    """Metadata claiming 3 genres for a 2-genre network: refused, not silently mis-shaped."""
    tensors, meta = load_model_file(tiny_model)
    meta["classes"] = ["blues", "metal", "pop"]
    _refused(save_model_file(tmp_path / "classes.safetensors", tensors, meta), "do not match")
    tensors, meta = load_model_file(tiny_model)
    meta["arch"] = "resnet"
    _refused(save_model_file(tmp_path / "arch.safetensors", tensors, meta), "do not match")


def test_feature_kind_with_logmel_weights_is_refused(tiny_model, tmp_path):
    tensors, meta = load_model_file(tiny_model)
    meta["kind"] = "mlp"
    meta["input"] = {"type": "features", "columns": ["a", "b"], "segment_seconds": None}
    with pytest.raises(ModelError):
        load_model(save_model_file(tmp_path / "mlp.safetensors", tensors, meta))


def test_save_refuses_metadata_without_kind(tmp_path):
    with pytest.raises(ModelError, match="kind"):
        save_model_file(tmp_path / "x.safetensors", {"w": np.zeros(2)}, {"classes": ["a"]})
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------------------ skops payloads
def _skops_file(tmp_path: Path, obj, name: str) -> Path:
    import skops.io as sio

    blob = np.frombuffer(sio.dumps(obj), dtype=np.uint8).copy()
    meta = {"kind": "sklearn", "classes": ["a", "b"], "params": {"name": "logreg"},
            "input": {"type": "features", "columns": ["x"], "segment_seconds": None}}
    return save_model_file(tmp_path / name, {"skops": blob}, meta)


def test_skops_payload_with_untrusted_types_is_refused(tmp_path):
    """Checksummed files whose embedded sklearn payload names callables outside the allow-list."""
    import operator
    import subprocess

    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    evil = {
        "os.system": FunctionTransformer(func=os.system),
        "subprocess": FunctionTransformer(func=subprocess.check_output),
        "builtins.eval": Pipeline([("f", FunctionTransformer(func=eval))]),
        "operator": FunctionTransformer(func=operator.attrgetter("__class__")),
    }
    for i, obj in enumerate(evil.values()):
        path = _skops_file(tmp_path, obj, f"evil{i}.safetensors")
        _refused(path, "refusing to load: the file names types outside the allow-list")


def test_skops_payload_that_is_garbage_is_refused(tmp_path):
    meta = {"kind": "sklearn", "classes": ["a", "b"], "params": {"name": "logreg"},
            "input": {"type": "features", "columns": ["x"], "segment_seconds": None}}
    for i, blob in enumerate([b"PK\x03\x04not a zip", pickle.dumps(_Boom(tmp_path / "PWNED")), b""]):
        path = save_model_file(tmp_path / f"g{i}.safetensors", {"skops": np.frombuffer(blob, np.uint8).copy()}, meta)
        _refused(path, "embedded sklearn model cannot be read")
    assert not (tmp_path / "PWNED").exists()


# ------------------------------------------------------------------------------------ metadata faults
def _header(path: Path) -> dict:
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + n])["__metadata__"]


def _rewrite_meta(src: Path, dst: Path, edit) -> Path:
    """``src`` with its metadata JSON edited and its tensors and both stored digests left as they were:
    what a hand edit of the header does."""
    tensors, _ = load_model_file(src)
    header = _header(src)
    meta = json.loads(header["meta"])
    edit(meta)
    return _write_raw(dst, tensors, {**header, "meta": json.dumps(meta, sort_keys=True)})


def test_swapped_class_names_fail_the_metadata_checksum(tiny_model, tmp_path):
    """Swapping two names would label rock "classical" at full confidence: the checksum covers metadata."""
    assert "sha256_meta" in _header(tiny_model)  # every new save writes it

    def swap(meta):
        meta["classes"] = meta["classes"][::-1]

    _refused(_rewrite_meta(tiny_model, tmp_path / "swapped.safetensors", swap), "metadata checksum mismatch")


def test_files_without_a_metadata_checksum_still_load(tiny_model, tmp_path):
    """Files written before sha256_meta (the shipped models among them) load; their metadata is still
    bounds-checked."""
    from genrekit.predict import SHIPPED_MODELS, default_model_path

    for name in SHIPPED_MODELS:  # genrekit-gtzan-ears and -blend came after sha256_meta: they have one
        assert ("sha256_meta" in _header(default_model_path(name))) == (name in ("genrekit-gtzan-ears",
                                                                                 "genrekit-gtzan-blend"))
    tensors, meta = load_model_file(tiny_model)
    header = {k: v for k, v in _header(tiny_model).items() if k != "sha256_meta"}
    old = _write_raw(tmp_path / "old.safetensors", tensors, header)
    assert list(load_model(old).classes_) == meta["classes"]
    bad = _write_raw(tmp_path / "old-bad.safetensors", tensors,
                     {**header, "meta": json.dumps({**meta, "input": {**meta["input"], "hop_length": 1}})})
    _refused(bad, r"'input\.hop_length' must be an integer in \[64, 4096\]")


@pytest.mark.parametrize("change, match", [
    ({"hop_length": 1}, r"'input\.hop_length' must be an integer in \[64, 4096\], got 1"),
    ({"n_fft": 8192, "hop_length": 64, "sr": 48000}, "STFT cells per 30 s block"),
    ({"sr": 10**12}, r"'input\.sr'"),
    ({"n_mels": 10**9}, r"'input\.n_mels'"),
    ({"slice_seconds": 1e308}, r"'input\.slice_seconds'"),
    ({"slice_seconds": float("nan")}, r"'input\.slice_seconds'"),
    ({"predict_overlap": 0.999}, r"'input\.predict_overlap'"),
])
def test_logmel_settings_that_scale_memory_or_time_are_bounded(tiny_model, tmp_path, change, match):
    tensors, meta = load_model_file(tiny_model)
    meta["input"] = {**meta["input"], **change}
    _refused(_write_meta(tmp_path / "huge.safetensors", meta, tensors), match)


@pytest.mark.parametrize("meta, match", [
    ({"kind": "sklearn", "classes": ["a", "b"],
      "input": {"type": "features", "columns": ["x"], "segment_seconds": 0.001}}, "segment_seconds"),
    ({"kind": "sklearn", "classes": ["a", "b"],
      "input": {"type": "features", "columns": [f"c{i}" for i in range(5000)], "segment_seconds": None}},
     r"'input\.columns'"),
    ({"kind": "deep", "classes": ["a", "a"], "input": LOGMEL_INPUT}, "names a class twice"),
    ({"kind": "deep", "classes": [f"g{i}" for i in range(2000)], "input": LOGMEL_INPUT}, "at most 1000"),
    ({"kind": "deep", "classes": ["a", "b"], "arch": "cnn", "width": 10**6, "input": LOGMEL_INPUT}, "'width'"),
    ({"kind": "deep", "classes": ["a", "b"], "arch": "cnn", "input_frames": 10**9, "input": LOGMEL_INPUT},
     "'input_frames'"),
    ({"kind": "mlp", "classes": ["a", "b"], "config": {"hidden": [10**9], "optimizer": "adam", "dropout": 0.1},
      "input": {"type": "features", "columns": ["x"], "segment_seconds": None}}, "layer sizes"),
    ({"kind": "hybrid", "classes": ["a", "b"], "weights": [0.5] * 20,
      "input": {"type": "hybrid", "members": [LOGMEL_INPUT] * 20}}, "2 to 8"),
    ({"kind": "deep", "classes": ["a", "b"], "input": LOGMEL_INPUT}, "not valid JSON"),
])
def test_huge_values_are_refused(meta, match, tmp_path):
    path = tmp_path / "m.safetensors"
    if match == "not valid JSON":  # n_fft of 5,001 digits: Python's int parser refuses it (a ValueError)
        text = json.dumps({**meta, "input": {**LOGMEL_INPUT, "n_fft": 0}}).replace('"n_fft": 0', '"n_fft": 1' + "0" * 5000)
        t = {"w": np.zeros(3, np.float32)}
        path = _write_raw(path, t, {"genrekit_format": "1", "sha256": tensors_sha256(t), "meta": text})
    else:
        _write_meta(path, meta)
    _refused(path, match)


def test_deeply_nested_metadata_is_one_clear_error(tmp_path):
    """200,000 levels of nesting: refused before parsing (no RecursionError traceback), whatever holds it."""
    t = {"w": np.zeros(3, np.float32)}
    deep = "[" * 200_000 + "]" * 200_000
    meta = '{"kind": "deep", "classes": ["a", "b"], "extra": ' + deep + "}"
    path = _write_raw(tmp_path / "nested.safetensors", t, {"genrekit_format": "1", "sha256": tensors_sha256(t),
                                                            "meta": meta})
    _refused(path, "nested more than 32 levels deep")
    # brackets inside strings are text, not nesting
    ok = _write_meta(tmp_path / "text.safetensors", {"kind": "linear", "classes": ["[[[[" * 50, "b"],
                                                      "input": {"type": "features", "columns": ["x"]}})
    from genrekit.models.base import parse_meta

    assert parse_meta(_header(ok)["meta"])["classes"][0] == "[[[[" * 50


def test_oversized_metadata_is_refused_before_parsing(tmp_path, monkeypatch):
    from genrekit.models import base

    monkeypatch.setattr(base, "MAX_META_BYTES", 1000)
    path = _write_meta(tmp_path / "big.safetensors", {"kind": "deep", "classes": ["a", "b"], "input": LOGMEL_INPUT,
                                                       "notes": "x" * 2000})
    _refused(path, "model metadata is 2,")
