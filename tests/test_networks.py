"""genrekit.networks: the registry, the light spec, the one graph writer, and the one per-file analysis
(cache and silence rule) that tags / embed, the library tools and the experiments share."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genrekit import errors as genrekit_errors
from genrekit import networks
from genrekit.errors import ModelError
from genrekit.networks import musicnn
from genrekit.networks.musicnn import analysis, model
from genrekit.run import networks as batch
from helpers import tone, write_audio

SR = 22050


pytestmark = pytest.mark.usefixtures("own_cache")  # each test its own cache (analyses, ONNX graphs)


@pytest.fixture
def gapped(tmp_path) -> Path:
    """9.5 s: a tone, a silent middle patch (2.99-5.98 s and some), a tone again."""
    y = tone(9.5, freq=440.0, seed=3)[:, 0]
    y[int(2.9 * SR): int(6.1 * SR)] = 0.0
    return write_audio(tmp_path / "lib" / "gapped.wav", y)


# ------------------------------------------------------------------------------------------ registry


def test_registry_names_every_network_and_refuses_unknown_ones():
    assert networks.models() == ("MSD_musicnn", "MTT_musicnn", "mn04")
    assert networks.models("musicnn") == musicnn.MODELS and networks.models("mn04") == ("mn04",)
    assert networks.model_choices() == ("MSD_musicnn", "MTT_musicnn", "mn04", "audioset")
    assert networks.family_of("MTT_musicnn") == "musicnn"
    assert networks.family_of("audioset") == networks.family_of("mn04") == "mn04"
    assert networks.spec("musicnn") is musicnn.spec
    assert networks.check_network("MSD_musicnn") == "MSD_musicnn"
    assert networks.check_network("audioset") == networks.check_network("audioset", "mn04") == "mn04"
    with pytest.raises(ModelError, match="unknown mn04 model 'MSD_musicnn'"):
        networks.check_network("MSD_musicnn", "mn04")
    with pytest.raises(ModelError, match="mn04 does not run on backend 'torch'; choose one of onnx"):
        networks.check_backend("torch", family="mn04", error=ModelError)
    assert type(networks.settings("audioset")).__name__ == "Mn04Settings"
    assert networks.settings("audioset").cache_settings() == networks.settings("mn04").cache_settings()
    with pytest.raises(ModelError, match="unknown pretrained network 'nope'; choose one of MSD_musicnn"):
        networks.check_network("nope")
    with pytest.raises(ModelError, match="unknown musicnn model 'nope'"):
        networks.check_network("nope", "musicnn")
    with pytest.raises(ModelError, match="unknown network family 'mn99'"):
        networks.spec("mn99")
    assert networks.check_backend("onnx-int8") == "onnx-int8"
    with pytest.raises(ValueError, match="unknown musicnn backend 'cuda'"):
        networks.check_backend("cuda")
    with pytest.raises(ModelError, match="unknown musicnn backend 'cuda'"):
        analysis.MusicnnSettings(backend="cuda")


def test_every_spec_has_the_shared_interface():
    for family in networks.FAMILIES:
        s = networks.spec(family)
        assert s.NAME == family and s.DEFAULT_MODEL in s.MODELS and s.SR > 0 and s.LICENSE
        assert all(isinstance(n, int) and n > 0 for n in s.LAYERS.values())
        for m in s.MODELS:
            assert s.weights_path(m).is_file() and len(s.weights_sha256(m)) == 64
            assert len(s.tag_names(m)) == len(set(s.tag_names(m))) > 0 and s.check_model(m) == m
        for alias, m in getattr(s, "ALIASES", {}).items():
            assert s.check_model(alias) == m and m in s.MODELS


def test_spec_and_registry_import_without_numpy():
    code = ("import sys, genrekit.networks as n, genrekit.networks.musicnn as m; "
            "n.models(); n.model_choices(); m.tag_names(); [n.spec(f).tag_names() for f in n.FAMILIES]; "
            "import genrekit.cli.tags_cmd; "
            "print(sorted(x for x in ('numpy', 'torch', 'onnx') if x in sys.modules))")
    env = {**os.environ}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "[]"


def test_one_onnx_writer_for_musicnn_and_the_deep_graphs():
    """The musicnn graph and the deep-model graphs come out of networks.writer: one opset, one writer."""
    import onnx

    from genrekit import onnx as gonnx
    from genrekit.networks import writer
    from genrekit.networks.musicnn import graph

    assert gonnx.ONNX_OPSET == graph.ONNX_OPSET == writer.ONNX_OPSET
    assert gonnx.session_options is writer.session_options and gonnx.GraphWriter is writer.GraphWriter
    proto = onnx.load_from_string(graph.build_onnx("MSD_musicnn"))
    assert proto.graph.name == "musicnn" and proto.ir_version == writer.IR_VERSION
    assert proto.opset_import[0].version == writer.ONNX_OPSET
    g = writer.GraphWriter(prefix="x.")
    assert g.const(np.ones(2, np.float32)) == "x.c_1" and g.named("w", np.ones(1, np.float32)) == "w"
    assert g.op("Relu", ["in"]) == "x.relu_2" and g.op("Relu", ["in"], "out") == "out"
    with pytest.raises(ValueError, match="threads must be a positive number"):
        writer.session_options(0)


# ------------------------------------------------------------------------------------------ silence rule


def test_silence_rule_is_the_dsp_threshold():
    from genrekit.dsp import SILENCE_DB

    assert analysis.audible(np.array([SILENCE_DB - 0.1, SILENCE_DB, -np.inf, -20.0])).tolist() == [
        False, True, False, True]


def test_every_network_shares_one_silence_rule_and_level_measure():
    """musicnn's and mn04's analyses use networks.analysis' rule and dsp.rms_db's measure."""
    from genrekit.dsp import rms_db
    from genrekit.networks import analysis as shared
    from genrekit.networks.mn04 import analysis as mn04_analysis

    assert analysis.audible is shared.audible is mn04_analysis.audible
    rng = np.random.default_rng(0)
    y = np.concatenate([0.3 * rng.standard_normal(1000) + 0.2, np.zeros(1000), 1e-4 * rng.standard_normal(1000)])
    got = shared.span_levels(y, np.array([0, 1000, 2000, 500]), 1000)
    want = [rms_db(y[s:s + 1000]) for s in (0, 1000, 2000, 500)]
    assert got[1] == -np.inf and np.allclose(got[[0, 2, 3]], np.array(want)[[0, 2, 3]], atol=1e-4)
    assert shared.audible(got).tolist() == [True, False, False, True]
    with pytest.raises(genrekit_errors.SilentAudioError, match="quiet.wav: no audible signal"):
        shared.check_audible("quiet.wav", got[1:3])


def test_a_damaged_mn04_cache_entry_is_a_miss(tmp_path):
    """An entry whose matrix does not fit its metadata (a partial or foreign write) is recomputed."""
    from genrekit.networks.mn04.analysis import Mn04Settings, mn04_analysis

    path = write_audio(tmp_path / "a.wav", tone(3.0, freq=440.0)[:, 0])
    settings = Mn04Settings()
    cache = settings.cache(root=tmp_path / "c")
    key = cache.key(path)
    a = mn04_analysis(path, settings)
    settings.save(cache, key, a)
    b = settings.load(cache, key)
    assert np.array_equal(b.logits, a.logits) and np.array_equal(b.features, a.features)
    assert b.levels.tolist() == a.levels.tolist() and b.offsets.tolist() == [0] and b.duration == a.duration
    cache.put_array(key, np.zeros((1, 5), np.float32))
    assert settings.load(cache, key) is None


def test_library_summary_equals_embed_and_tags_for_a_file_with_a_silent_patch(gapped, monkeypatch):
    """`similar` / `tag --tags` (library summaries) and `embed` / `tags` summarise a file alike: the
    audible patches only, from one cache entry (the library reuses what `tags` computed)."""
    from genrekit.library import musicnn as lib

    rec = batch.network_tags(str(gapped), top_k=5)
    (row,) = batch.network_embeddings(str(gapped)).to_dict("records")
    assert rec["n_patches"] == 3 and row["n_silent"] == 1
    calls: list[str] = []
    real = model.embed_file
    monkeypatch.setattr(model, "embed_file", lambda p, **kw: calls.append(str(p)) or real(p, **kw))
    digest, summary, err = lib.summary_file(lib.SummaryJob(str(gapped), "MSD_musicnn", lib.summary_cache()))
    assert err is None and calls == [] and len(digest) == 64  # served from the analysis `tags` made
    assert np.asarray(summary["embedding"], np.float32) == pytest.approx(row["penultimate"], abs=1e-7)
    assert [[t, round(s, 6)] for t, s in lib.top_tags(summary, 5)] == rec["tags"]
    # and computed afresh (no cache) it is the same summary, not a mean with the silent patch
    fresh = lib.summarise(gapped)
    assert calls == [str(gapped)] and fresh == summary
    everything = model.embed_file(gapped, backend="onnx").penultimate_mean
    assert not np.allclose(everything, summary["embedding"], atol=1e-4)


def test_library_summary_of_a_silent_file_is_an_error(tmp_path):
    from genrekit.library import musicnn as lib

    p = write_audio(tmp_path / "silent.wav", np.zeros(4 * SR, np.float32))
    digest, summary, err = lib.summary_file(lib.SummaryJob(str(p), "MSD_musicnn", lib.summary_cache()))
    assert summary is None and len(digest) == 64 and err.startswith(f"{p}: no audible signal")


def test_experiment_tables_leave_silent_patches_out(tmp_path):
    """The embedding table of folder-per-label audio: each track's mean over its audible patches (the
    torch reference backend, as these tables have always been made), an all-silent file listed as failed."""
    from genrekit.experiments.data import embedding_table

    root = tmp_path / "data"
    a = write_audio(root / "rock" / "gapped.wav", tone(9.5, freq=440.0, seed=3)[:, 0] * (
        (np.arange(int(9.5 * SR)) < int(2.9 * SR)) | (np.arange(int(9.5 * SR)) >= int(6.1 * SR))))
    write_audio(root / "rock" / "quiet.wav", np.zeros(4 * SR, np.float32))
    write_audio(root / "jazz" / "tone.wav", tone(4.0, freq=220.0, seed=4)[:, 0])
    table = embedding_table(root, layer="penultimate", progress=False)
    got = dict(zip(table.filenames, table.X, strict=True))
    want = analysis.musicnn_analysis(a, analysis.MusicnnSettings(backend="torch")).summary().penultimate_mean
    assert got[str(a)] == pytest.approx(want.astype(np.float64), abs=1e-6)
    assert [p for p, _ in table.extra["failed"]] == [str(root / "rock" / "quiet.wav")]
    assert "no audible signal" in table.extra["failed"][0][1]
