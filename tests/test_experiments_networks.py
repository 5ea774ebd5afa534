"""Heads on several networks (experiments.data.networks): --input mn04 and musicnn+mn04 for train / compare /
finetune, the saved model predicting audio, zero-shot experts scored on the same folds, and the rule that
a GTZAN track without audio is left out (synthesised audio, a few clips per label)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audio_folders import write_label_folders
from genrekit.errors import DatasetError, ModelError
from genrekit.experiments import compare_models, run
from genrekit.experiments.data import NetworkSource, network_table, zero_shot_model
from genrekit.experiments.factories import HybridFactory, TabularFactory, ZeroShotFactory, as_factory
from genrekit.models import load_model
from helpers import tone, write_audio


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two GTZAN genres as folders of tones (one broken file), with the module's own analysis caches."""
    root = tmp_path_factory.mktemp("networks")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        yield write_label_folders(root / "data", ["blues", "metal"], per_label=4, seconds=3.5, broken=True)


@pytest.fixture(autouse=True)
def _cache(data, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(data.parent / "cache"))


def test_tables_are_per_track_means_of_each_part(data):
    mn = network_table(data, input="mn04", progress=False)
    both = network_table(data, input="musicnn+mn04", progress=False)
    assert mn.X.shape == (8, 384) and mn.columns[0] == "mn04_features_mean_0"
    assert both.X.shape == (8, 584) and both.columns[199] == "musicnn_penultimate_mean_199"
    assert list(mn.track_ids) == list(both.track_ids)
    assert np.array_equal(both.X[:, 200:], mn.X)  # the same mn04 analysis (one cache)
    assert both.extra["parts"]["mn04_sigmoid"].shape == (8, 527)
    assert ((0 < both.extra["parts"]["mn04_sigmoid"]) & (both.extra["parts"]["mn04_sigmoid"] < 1)).all()
    # the broken file: left out once, with why
    assert [p.rsplit("/", 1)[-1] for p, _ in both.extra["failed"]] == ["broken.wav"]
    assert "not audio or corrupt" in both.extra["failed"][0][1]
    taggram = network_table(data, input="musicnn+mn04", layer="taggram", progress=False)
    assert taggram.columns[0] == "musicnn_taggram_mean_0" and taggram.X.shape == (8, 434)


def test_refusals_name_the_fix(data, tmp_path):
    from genrekit.cli import main

    with pytest.raises(DatasetError, match="penultimate or taggram"):
        network_table(data, input="musicnn+mn04", layer="pooled")
    with pytest.raises(DatasetError, match="audio"):
        network_table(tmp_path / "x.npz", input="mn04")
    with pytest.raises(DatasetError, match="--input musicnn only"):
        NetworkSource.load(data, input="mn04", standardise="domain")
    with pytest.raises(ModelError, match="ten GTZAN genres"):
        zero_shot_model("zeroshot-audioset", ["blues", "vaporwave"])
    for extra in (["--input", "mn04", "--layer", "taggram"], ["--input", "musicnn+mn04", "--layer", "pooled"],
                  ["--input", "mn04", "--standardise", "domain"]):
        assert main(["train", "--model", "logreg", "--data", str(data), "--out", str(tmp_path / "r"), *extra]) == 2
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("kind", ["mn04", "musicnn+mn04"])
def test_train_logreg_and_predict_with_the_saved_file(data, tmp_path, kind):
    """The saved head reads an ``ears`` input; predict hears a training file as the table did."""
    from genrekit.cli import main
    from genrekit.predict import GenreClassifier

    out = tmp_path / "run"
    assert main(["train", "--model", "logreg", "--input", kind, "--data", str(data), "--protocol", "random",
                 "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["network"]["input"] == kind and metrics["network"]["left_out"] == 1
    assert [f["path"].rsplit("/", 1)[-1] for f in metrics["failed"]] == ["broken.wav"]
    model = load_model(out / "model.safetensors")
    want = ["mn04_features"] if kind == "mn04" else ["musicnn_penultimate", "mn04_features"]
    assert model.input_["type"] == "ears" and model.input_["parts"] == want
    table = network_table(data, input=kind, progress=False)
    clf = GenreClassifier.load(out / "model.safetensors")
    for i in (0, 7):
        expect = dict(zip(model.classes_, model.predict_proba(table.X[i:i + 1])[0], strict=True))
        got = clf.predict(table.filenames[i], styles=False).scores
        assert all(abs(got[c] - expect[c]) < 1e-3 for c in expect), (got, expect)
    assert clf.predict(write_audio(tmp_path / "q.wav", tone(3.5, freq=610.0)), styles=False).genre == "metal"
    assert main(["predict", "--model", str(out / "model.safetensors"), str(tmp_path / "q.wav")]) == 0
    held = tmp_path / "held"  # new clips for evaluate (other track ids than the training files')
    write_audio(held / "blues" / "new_blues.wav", tone(3.5, freq=205.0, seed=3))
    write_audio(held / "metal" / "new_metal.wav", tone(3.5, freq=615.0, seed=4))
    assert main(["evaluate", "--model", str(out / "model.safetensors"), "--data", str(held), "--protocol", "all",
                 "--out", str(tmp_path / "ev")]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["n_tracks"] == 2
    # export: the head hears mn04, which has no exported graph here: a clear refusal
    assert main(["export", "--model", str(out / "model.safetensors"), "--out", str(tmp_path / "m.onnx")]) == 1
    assert not (tmp_path / "m.onnx").exists()


def test_zero_shot_member_is_scored_on_the_same_folds(data, tmp_path):
    """A zero-shot expert's fold probabilities are its AudioSet columns over their sum, on the heads' folds."""
    from genrekit.networks.mn04.spec import labels

    res = compare_models(["logreg", "zeroshot-audioset"], data, "kfold", tmp_path / "cmp", k=2,
                         input="musicnn+mn04", progress=False)
    assert [r["model"] for r in res["results"]] == ["logreg", "zeroshot-audioset"]
    assert res["input"]["type"] == "musicnn+mn04" and len(res["failed"]) == 1
    assert "zeroshot-audioset" in (tmp_path / "cmp" / "comparison.md").read_text()
    src = NetworkSource.load(data, input="musicnn+mn04", progress=False)
    zs = run("kfold", as_factory("zeroshot-audioset"), src, k=2, out=tmp_path / "zs", progress=False)
    aset = list(labels())
    cols = [aset.index("Blues"), aset.index("Heavy metal")]
    sig = src.parts["mn04_sigmoid"][:, cols]
    for f in zs.folds:
        rows = [list(src.track_ids).index(t) for t in f.track_ids]
        assert np.allclose(f.track_proba, sig[rows] / sig[rows].sum(axis=1, keepdims=True))
    acc = [r["accuracy"] for r in res["results"] if r["model"] == "zeroshot-audioset"][0]
    assert acc == pytest.approx(zs.track_level["accuracy"])
    # blends of names are fitted per fold too; a zero weight leaves the head's scores as they are
    from genrekit.experiments import compare

    blend = compare(["logreg", "logreg@1+zeroshot-audioset@0", "logreg@0.5+zeroshot-audioset@0.5"], data, "kfold",
                    k=2, input="musicnn+mn04", progress=False)
    rows = {r["model"]: r for r in blend["results"]}
    assert rows["logreg@1+zeroshot-audioset@0"]["members"] == [{"member": "logreg", "weight": 1.0},
                                                               {"member": "zeroshot-audioset", "weight": 0.0}]
    assert rows["logreg@1+zeroshot-audioset@0"]["fold_accuracies"] == rows["logreg"]["fold_accuracies"]
    assert len(rows["logreg@0.5+zeroshot-audioset@0.5"]["fold_accuracies"]) == 2
    # the mixed expert reads MSD tags too: musicnn+mn04 only
    assert ZeroShotFactory("zeroshot").name == "zeroshot"
    with pytest.raises(Exception, match="musicnn_taggram"):
        compare_models(["zeroshot"], data, "kfold", k=2, input="mn04", progress=False)


def test_finetune_head_on_mn04(data, tmp_path):
    from genrekit.cli import main

    assert main(["finetune", "--head", "logreg", "--input", "mn04", "--data", str(data), "--out",
                 str(tmp_path / "ft"), "--no-progress"]) == 1  # the broken file was skipped
    m = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert m["finetuned_from"] == "mn04 features (frozen) + logreg head"
    assert load_model(tmp_path / "ft" / "model.safetensors").input_["parts"] == ["mn04_features"]


def test_gtzan_track_without_audio_is_left_out(data, tmp_path):
    """An image-only GTZAN track cannot be heard by mn04: not in the table, listed in failed with why."""
    from test_experiments_embeddings import _kaggle_png

    root = tmp_path / "gtzan"
    rng = np.random.default_rng(0)
    for g, f0 in (("blues", 220.0), ("metal", 1760.0)):
        for i in range(3):
            write_audio(root / "audio" / g / f"{g}.{i:05d}.wav", tone(3.5, freq=f0, seed=i))
            _kaggle_png(root / "images_original" / g / f"{g}{i:05d}.png", rng.random((218, 336)) * 0.3)
        _kaggle_png(root / "images_original" / g / f"{g}00003.png", rng.random((218, 336)) * 0.3)  # image only
    t = network_table(root, input="musicnn+mn04", progress=False)
    assert sorted(t.track_ids) == [f"{g}.{i:05d}" for g in ("blues", "metal") for i in range(3)]
    assert sorted(p.rsplit("/", 1)[-1] for p, _ in t.extra["failed"]) == ["blues00003.png", "metal00003.png"]
    assert all("no audio" in why for _, why in t.extra["failed"])
    res = run("random", TabularFactory("logreg", input="mn04"), root, out=tmp_path / "r", progress=False)
    assert {f["path"].rsplit("/", 1)[-1] for f in res.metrics["failed"]} == {"blues00003.png", "metal00003.png"}


def test_hybrid_of_a_head_and_a_zero_shot_expert(data, tmp_path):
    """A concat head and an untrained expert as one hybrid file, as the shipped ears model is made."""
    from genrekit.predict import GenreClassifier

    f = HybridFactory([TabularFactory("logreg", input="musicnn+mn04"), "zeroshot-audioset"], weights=[0.75, 0.25])
    assert f.name == "musicnn-mn04:logreg+zeroshot-audioset" and f.parts == ["network", "network"]
    res = run("random", f, data, out=tmp_path / "hyb", progress=False)
    assert [x["path"].rsplit("/", 1)[-1] for x in res.metrics["failed"]] == ["broken.wav"]
    hyb = load_model(tmp_path / "hyb" / "model.safetensors")
    head, expert = hyb.members_
    table = network_table(data, input="musicnn+mn04", progress=False)
    from genrekit.metrics import mean_log_proba

    sig = table.extra["parts"]["mn04_sigmoid"][:1]
    want = mean_log_proba([head.predict_proba(table.X[:1]), expert.predict_proba(sig)], [0.75, 0.25])[0]
    clf = GenreClassifier.load(tmp_path / "hyb" / "model.safetensors")
    assert [m.input.type for m in clf.members] == ["ears", "ears"]
    got = clf.predict(table.filenames[0], styles=False).scores
    assert all(abs(got[c] - w) < 1e-3 for c, w in zip(head.classes_, want, strict=True)), (got, want)
    with pytest.raises(DatasetError, match="share one --input"):
        HybridFactory([TabularFactory("logreg", input="mn04"), TabularFactory("svm", input="musicnn+mn04")]
                      ).open_data(data, progress=False)
