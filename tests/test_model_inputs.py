"""Typed model inputs (genrekit.models.inputs): built from a file's ``input`` block and written back
unchanged, validated, and each one's windows / precomputed form; get_params read from the signature."""

from __future__ import annotations

import numpy as np
import pytest

from genrekit.errors import ModelError
from genrekit.models.base import load_model_file
from genrekit.models.inputs import (
    FeatureInput,
    HybridInput,
    LogmelInput,
    NetworkInput,
    Precomputed,
    features_input,
    input_from_meta,
    musicnn_input,
)

LOGMEL = {"type": "logmel", "sr": 22050, "n_fft": 2048, "hop_length": 512, "n_mels": 128, "slice_seconds": 3.0}


def test_shipped_inputs_round_trip_exactly():
    """The typed classes write back the very dict they were built from (the file format stays)."""
    from genrekit.predict import SHIPPED_MODELS, default_model_path

    for name in SHIPPED_MODELS:
        meta = load_model_file(default_model_path(name))[1]
        typed = input_from_meta(meta["input"], source=name)
        assert isinstance(typed, HybridInput) and typed.to_meta() == meta["input"]
        for inp, desc in zip(typed.members, meta["input"]["members"], strict=True):
            assert inp.to_meta() == desc and inp.type == desc["type"]
            assert input_from_meta(inp.to_meta()) == inp


def test_each_kind_gets_its_class():
    assert isinstance(input_from_meta(LOGMEL), LogmelInput)
    assert isinstance(input_from_meta(features_input(["a", "b"], 2)), FeatureInput)
    net = input_from_meta(musicnn_input())
    assert isinstance(net, NetworkInput) and (net.network, net.layer) == ("MSD_musicnn", "penultimate")
    assert net.to_meta()["model"] == "MSD_musicnn" and net.to_meta()["type"] == "musicnn"  # the file's names
    with pytest.raises(ModelError, match="where.safetensors: model metadata 'input' must have type"):
        input_from_meta({"type": "waveform"}, source="where.safetensors")


def test_logmel_windows_cover_the_block_and_its_tail():
    inp = LogmelInput(LOGMEL)
    levels = np.random.default_rng(0).random((128, 700)).astype(np.float32)  # 700 frames: 5 slices + a tail
    X, spans = inp.slices(levels, 10.0, 700 * 512 / 22050)
    assert X.shape == (6, 128, 130) and spans[0] == (10.0, 13.0)
    np.testing.assert_array_equal(X[-1], levels[:, -130:])
    given = Precomputed(levels=levels)
    w = inp.precomputed(given, source="x")
    assert given.seconds == pytest.approx(700 * 512 / 22050) and w.inputs(None).shape == X.shape


def test_feature_rows_follow_the_columns_and_name_what_is_missing():
    inp = FeatureInput.create(["b", "a"], 2)
    np.testing.assert_array_equal(inp.row_of({"a": 1.0, "b": 2.0, "c": 3.0}, source="t"), [[2.0, 1.0]])
    with pytest.raises(ModelError, match="t.csv: the feature row lacks a"):
        inp.row_of({"b": 2.0}, source="t.csv")
    with pytest.raises(ModelError, match="3 feature names given for 2"):
        FeatureInput.create(["a", "b", "c"], 2)


def test_network_vectors_standardised_by_domain():
    mean, std = np.arange(200.0), np.full(200, 2.0)
    inp = NetworkInput(musicnn_input(standardise={"audio": (mean, std), "image": (mean + 1, std)}))
    x = np.ones((3, 200)) * 5
    np.testing.assert_allclose(inp.vectors(x), np.tile((5 - mean) / 2, (3, 1)))
    np.testing.assert_allclose(inp.vectors(x, domain="image"), np.tile((4 - mean) / 2, (3, 1)))
    assert inp.run_backend("onnx") == "onnx" and inp.run_backend("torch") == "torch"
    assert inp.run_patches("all") is None and inp.run_patches(4) == 4 and inp.run_patches(None) is None


def test_get_params_reads_the_signature():
    """Written once in the estimator base: nothing of __init__ is forgotten (the MLP's n_threads was)."""
    import inspect

    from genrekit.models import make_model

    for name in ("svm", "mlp", "cnn1d", "ensemble", "shortchunk"):
        m = make_model(name)
        got = m.get_params()
        names = {p for k in type(m).__mro__ if "__init__" in k.__dict__ and k is not object
                 for p in inspect.signature(k.__init__).parameters} - {"self", "kw"}
        assert set(got) == names - set(type(m).not_params), name
    assert make_model("mlp").get_params()["n_threads"] == 1
    assert make_model("cnn1d").get_params()["channels"] == [32, 64, 128]
    assert "factory" not in make_model("ensemble").get_params()


def test_replace_validates_again():
    net = NetworkInput(musicnn_input())
    q = net.replace(backend="onnx-int8")
    assert q.backend == "onnx-int8" and net.backend == "torch" and q.to_meta()["columns"] == net.columns
    with pytest.raises(ModelError, match="'input.backend'"):
        net.replace(backend="tpu")
    with pytest.raises(ModelError, match=r"'input\.hop_length'"):
        LogmelInput(LOGMEL).replace(hop_length=1)
