"""Fast musicnn backends (genrekit.musicnn_runtime) against the torch port and musicnn's own TF outputs.

float32 onnxruntime: the tolerances of the port itself (1e-4 absolute on taggram and penultimate,
1e-5 of the scale on pooled features). int8 (timbral convolutions quantised) has looser, documented
bounds (docs/embeddings.md "Speed"): taggram 0.05, penultimate 0.25 absolute, pooled 0.1 of the scale,
per-patch penultimate cosine >= 0.998; measured worst on the references: 0.022, 0.11, 0.044, 0.9993.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from genrekit.audio import load
from genrekit.errors import FeatureError, ModelError
from genrekit.networks import musicnn as E
from genrekit.networks.musicnn import frontend as F
from genrekit.networks.musicnn import graph as R
from helpers import MUSICNN_NAMES, MUSICNN_REFERENCE, musicnn_synth_wave

REFERENCE, NAMES = MUSICNN_REFERENCE, MUSICNN_NAMES
SYNTH = [i for i, n in enumerate(NAMES) if n.startswith("synth:")]
GTZAN = [i for i, n in enumerate(NAMES) if n.startswith("gtzan:")]
INT8_TOL = {"taggram": 0.05, "penultimate": 0.25, "pooled_rel": 0.1, "cosine": 0.998}


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    """The ONNX graphs go to a test cache, never the user's ~/.cache/genrekit."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


synth_wave = musicnn_synth_wave


def reference_patches(i: int, y: np.ndarray) -> np.ndarray:
    return E.patches(E.musicnn_input(y), hop=int(REFERENCE["hops"][i]))


def check_backends(i: int, y: np.ndarray) -> None:
    x = reference_patches(i, y)
    for model in E.MODELS:
        ref_pooled = np.concatenate([REFERENCE[f"{i}/{model}/max_pool"], REFERENCE[f"{i}/{model}/mean_pool"]], axis=1)
        scale = np.abs(ref_pooled).max()
        torch_out = E.run_patches(x, model=model)
        onnx_out = E.run_patches(x, model=model, backend="onnx")
        for got in (onnx_out, torch_out):  # onnx vs torch, and both vs musicnn's TF graph
            for j, key in ((0, "taggram"), (1, "penultimate")):
                np.testing.assert_allclose(got[j], REFERENCE[f"{i}/{model}/{key}"], rtol=0, atol=1e-4)
            np.testing.assert_allclose(got[2], ref_pooled, rtol=1e-5, atol=1e-5 * scale)
        for a, b in zip(onnx_out[:2], torch_out[:2], strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
        np.testing.assert_allclose(onnx_out[2], torch_out[2], rtol=0, atol=1e-5 * scale)

        q = E.run_patches(x, model=model, backend="onnx-int8")
        assert np.abs(q[0] - REFERENCE[f"{i}/{model}/taggram"]).max() <= INT8_TOL["taggram"]
        pen = REFERENCE[f"{i}/{model}/penultimate"]
        assert np.abs(q[1] - pen).max() <= INT8_TOL["penultimate"]
        assert np.abs(q[2] - ref_pooled).max() <= INT8_TOL["pooled_rel"] * scale
        cos = np.sum(q[1] * pen, 1) / (np.linalg.norm(q[1], axis=1) * np.linalg.norm(pen, axis=1))
        assert cos.min() >= INT8_TOL["cosine"]
        assert np.abs(q[1] - onnx_out[1]).max() > 1e-4  # it really is quantised


@pytest.mark.parametrize("i", SYNTH, ids=[NAMES[i] for i in SYNTH])
def test_onnx_backends_match_torch_and_tensorflow_on_synthesised_clips(i):
    check_backends(i, synth_wave(i))


@pytest.mark.shared
@pytest.mark.parametrize("i", GTZAN, ids=[NAMES[i] for i in GTZAN])
def test_onnx_backends_match_torch_and_tensorflow_on_gtzan_clips(i, gtzan):
    check_backends(i, load(gtzan / "audio" / NAMES[i].split(":", 1)[1], sr=E.SR))


def test_embed_and_embed_file_on_onnx_equal_run_patches(tmp_path):
    import soundfile as sf

    y = synth_wave(SYNTH[0])
    emb = E.embed(y, backend="onnx")
    np.testing.assert_array_equal(emb.taggram, E.run_patches(reference_patches(SYNTH[0], y), backend="onnx")[0])
    path = tmp_path / "clip.wav"
    sf.write(path, y, E.SR, subtype="FLOAT")
    streamed = E.embed_file(path, backend="onnx", block_seconds=1.7)
    np.testing.assert_allclose(streamed.penultimate, emb.penultimate, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(streamed.starts, emb.starts)


# ------------------------------------------------------------------------------------- patch subsets


def test_block_selection_spreads_patches_evenly():
    assert F.block_selection(10, 3).tolist() == [1, 5, 8]
    assert F.block_selection(10, 4).tolist() == [1, 3, 6, 8]
    assert F.block_selection(10, 5).tolist() == [1, 3, 5, 7, 9]
    assert F.block_selection(10, 1).tolist() == [5]
    assert F.block_selection(10, 10).tolist() == list(range(10))
    # a tail block keeps ceil(k * m / 10), evenly spread; never nothing
    assert F.block_selection(5, 3).tolist() == [1, 3]
    assert F.block_selection(1, 3).tolist() == [0]
    assert F.block_selection(3, 4).tolist() == [0, 2]


def test_select_patches_groups_30_second_blocks():
    starts = np.arange(25) * E.PATCH_HOP  # 74.8 s: blocks of 10, 10 and a 5-patch tail
    assert F.select_patches(starts, per_block=3).tolist() == [1, 5, 8, 11, 15, 18, 21, 23]
    assert F.select_patches(starts, per_block=10).tolist() == list(range(25))
    assert F.select_patches(np.zeros(1, np.int64), per_block=3).tolist() == [0]
    assert F.select_patches(np.zeros(0, np.int64), per_block=3).tolist() == []
    hop = 61  # musicnn's input_overlap=1: 31 starts per 30 s block
    starts61 = np.arange(40) * hop
    assert F.block_full(hop) == 31
    picked = F.select_patches(starts61, per_block=3, hop=hop)
    assert picked.tolist() == [5, 15, 25, 35]  # 3 of the first 31, then 1 of the 9 left


def test_embed_with_patches_per_block_keeps_the_rows_of_the_full_embedding(tmp_path):
    import soundfile as sf

    rng = np.random.default_rng(3)
    y = np.concatenate([synth_wave(SYNTH[0])] * 9)[: int(65 * E.SR)]  # 65 s: 21 patches, blocks 10 + 10 + 1
    y = (y + 0.01 * rng.standard_normal(y.size)).astype(np.float32)
    full = E.embed(y, backend="onnx")
    sub = E.embed(y, backend="onnx", patches_per_block=3)
    keep = [1, 5, 8, 11, 15, 18, 20]
    assert full.n_patches == 21 and sub.n_patches == len(keep)
    np.testing.assert_array_equal(sub.starts, full.starts[keep])
    # the same patches; onnxruntime's kernels round a little differently for another batch make-up
    np.testing.assert_allclose(sub.penultimate, full.penultimate[keep], rtol=0, atol=1e-5)
    np.testing.assert_allclose(sub.taggram, full.taggram[keep], rtol=0, atol=1e-6)
    assert sub.duration == full.duration
    path = tmp_path / "long.wav"
    sf.write(path, y, E.SR, subtype="FLOAT")
    streamed = E.embed_file(path, backend="onnx", patches_per_block=3, block_seconds=13.0, batch=3)
    np.testing.assert_array_equal(streamed.starts, sub.starts)
    np.testing.assert_allclose(streamed.penultimate, sub.penultimate, rtol=0, atol=1e-6)
    short = E.embed(y[: 2 * E.SR], backend="onnx", patches_per_block=1)  # under a patch: one padded patch
    assert short.n_patches == 1 and short.padded


def test_torch_backend_with_patches_per_block_is_a_subset_of_the_torch_embedding():
    y = np.concatenate([synth_wave(SYNTH[0])] * 4)  # 32 s: 10 patches
    full, sub = E.embed(y), E.embed(y, patches_per_block=4)
    np.testing.assert_array_equal(sub.starts, full.starts[[1, 3, 6, 8]])
    np.testing.assert_allclose(sub.penultimate, full.penultimate[[1, 3, 6, 8]], rtol=0, atol=1e-5)  # batch make-up


# ------------------------------------------------------------------------------------- graph, cache, imports


def test_graph_is_cached_by_weights_digest_and_variant(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    p32, p8 = R.onnx_cache_path("MSD_musicnn"), R.onnx_cache_path("MSD_musicnn", int8=True)
    assert p32 != p8 and p32.parent == tmp_path / "genrekit" / "musicnn"
    assert p32 != R.onnx_cache_path("MTT_musicnn")
    assert not p32.exists()
    data = R.onnx_model("MSD_musicnn")
    assert p32.read_bytes() == data
    assert R.onnx_model("MSD_musicnn") == data  # read back, not rebuilt
    p32.write_bytes(b"\x00not onnx")
    R.clear_sessions()
    sess = R.load_onnx("MSD_musicnn")  # a damaged cache file is rebuilt, not an error
    assert p32.read_bytes() == data
    x = reference_patches(SYNTH[0], synth_wave(SYNTH[0]))
    np.testing.assert_allclose(sess.run(x)[0], REFERENCE[f"{SYNTH[0]}/MSD_musicnn/taggram"], atol=1e-4, rtol=0)
    R.clear_sessions()


def test_graph_metadata_names_weights_and_variant():
    import onnx

    for int8 in (False, True):
        proto = onnx.load_from_string(R.build_onnx("MTT_musicnn", int8=int8))
        meta = {p.key: p.value for p in proto.metadata_props}
        info = __import__("json").loads(meta["genrekit_musicnn"])
        assert info["model"] == "MTT_musicnn" and info["int8"] is int8
        assert info["weights_sha256"] == E.read_weights(E.weights_path("MTT_musicnn"))[1]["sha256"]
        assert [o.name for o in proto.graph.output] == list(R.OUTPUT_NAMES)
        assert proto.opset_import[0].version == R.ONNX_OPSET


def test_onnx_path_imports_neither_torch_nor_onnx_once_cached(tmp_path):
    code = ("import sys, numpy as np, genrekit.networks.musicnn as E; "
            "e = E.embed(np.sin(np.arange(64000) / 9.0).astype(np.float32), backend='onnx', patches_per_block=3); "
            "print(e.n_patches, 'torch' in sys.modules, 'onnx' in sys.modules)")
    env = {"XDG_CACHE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
           **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}  # the checkout under test
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert first.stdout.split() == ["1", "False", "True"]  # first use builds the graph with onnx
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert again.stdout.split() == ["1", "False", "False"]  # then onnxruntime alone


def test_calibrate_int8_measures_the_timbral_outputs():
    x = reference_patches(SYNTH[0], synth_wave(SYNTH[0]))
    cal = R.calibrate_int8(x, model="MSD_musicnn")
    assert set(cal) == {"timbral74_max", "timbral77_max", "n_patches"} and cal["n_patches"] == x.shape[0]
    assert all(cal[k] > 0 for k in ("timbral74_max", "timbral77_max"))
    assert R.calibrate_int8(x, quantile=0.5)["timbral74_max"] <= cal["timbral74_max"]
    graph = R.build_onnx("MSD_musicnn", int8=True, calibration=cal)  # a graph from other ranges still builds
    assert graph != R.build_onnx("MSD_musicnn", int8=True)


# ------------------------------------------------------------------------------------- bad options


def test_bad_options_raise_clear_errors():
    y = synth_wave(SYNTH[0])
    with pytest.raises(ValueError, match="unknown musicnn backend"):
        E.embed(y, backend="tensorflow")
    with pytest.raises(ValueError, match="unknown musicnn backend"):
        E.run_patches(np.zeros((1, 187, 96), np.float32), backend="onnx-fp16")
    for bad in (0, 11, 2.5, True, "3"):
        with pytest.raises(ValueError, match="patches_per_block"):
            E.embed(y, backend="onnx", patches_per_block=bad)
    with pytest.raises(ValueError, match="patches_per_block"):
        E.embed_file("/nonexistent.wav", patches_per_block=0)  # checked before the file is opened
    with pytest.raises(ValueError, match="threads applies to the onnx backends"):
        E.embed(y, threads=2)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads"):
            E.run_patches(np.zeros((1, 187, 96), np.float32), backend="onnx", threads=bad)
    with pytest.raises(ModelError, match="unknown musicnn model"):
        R.load_onnx("MSD_vgg")
    with pytest.raises(ModelError, match="unknown musicnn model"):
        R.onnx_cache_path("MSD_vgg")
    with pytest.raises(ModelError, match="no int8 calibration"):
        R.build_onnx("MSD_musicnn", int8=True, calibration={"timbral74_max": 1.0})
    with pytest.raises(ValueError, match="backend 'torch' runs in genrekit.networks.musicnn.torch_ref"):
        R.backend_runner("torch")
    sess = R.load_onnx()
    with pytest.raises(FeatureError, match="patches must be"):
        sess.run(np.zeros((2, 100, 96), np.float32))
    with pytest.raises(ValueError, match="batch"):
        sess.run(np.zeros((2, 187, 96), np.float32), batch=0)
    assert [a.shape for a in sess.run(np.zeros((0, 187, 96), np.float32))] == [(0, 50), (0, 200), (0, 1506)]
    with pytest.raises(FeatureError, match="calibration patches"):
        R.calibrate_int8(np.zeros((0, 187, 96), np.float32))
    with pytest.raises(ValueError, match="quantile"):
        R.calibrate_int8(np.zeros((1, 187, 96), np.float32), quantile=0.1)
    with pytest.raises(ValueError, match="a block holds"):
        F.block_selection(0, 3)
