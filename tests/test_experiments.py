"""genrekit.experiments.run: tabular and deep runs under protocols, their reports and model files, the
segment / track scoring, and one RunResult layout for tabular, log-mel and hybrid models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audio_folders import write_label_folders
from genrekit.datasets import load_feature_table
from genrekit.errors import GenrekitError, LeakageError
from genrekit.experiments import FoldSpec, RunResult, fit_fold, protocol_folds, read_metrics, run
from genrekit.experiments.data import FeatureSource
from genrekit.experiments.factories import DeepFactory, HybridFactory, as_factory
from genrekit.models import load_model, load_model_file
from genrekit.models.deep import DeepModel
from genrekit.models.registry import model_names
from tabular_data import synthetic_csv

FAST_MLP = {"max_epochs": 4}


@pytest.fixture(scope="module")
def csv30(tmp_path_factory):
    return synthetic_csv(tmp_path_factory.mktemp("d") / "features_30_sec.csv", n_per_class=15)


@pytest.fixture(scope="module")
def csv3(tmp_path_factory):
    return synthetic_csv(tmp_path_factory.mktemp("d") / "features_3_sec.csv", n_per_class=8, segments=4)


def test_kfold_run_writes_full_report(csv30, tmp_path):
    run("kfold", "logreg", csv30, out=tmp_path, seed=1, k=3, progress=False)
    for name in ("metrics.json", "report.txt", "confusion.png", "pr_curves.png", "importance.png",
                 "model.safetensors"):
        assert (tmp_path / name).exists(), name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("protocol", "model", "params", "seed", "data_sha256", "genrekit_version", "accuracy",
                "accuracy_std", "macro_f1", "per_class", "confusion", "fold_scores"):
        assert key in saved, key
    assert saved["protocol"] == "kfold" and saved["seed"] == 1 and saved["level"] == "track"
    assert len(saved["fold_scores"]) == 3
    assert saved["accuracy"] == pytest.approx(np.mean([f["accuracy"] for f in saved["fold_scores"]]))
    assert sum(f["n_test_tracks"] for f in saved["fold_scores"]) == 60  # every track tested once
    assert saved["data_sha256"] == load_feature_table(csv30).fingerprint()
    # CV protocol: the saved model is refitted on every track and says so
    _, meta = load_model_file(tmp_path / "model.safetensors")
    assert meta["trained_on"]["side"] == "all" and meta["trained_on"]["n_tracks"] == 60
    assert meta["evaluation"]["protocol"] == "kfold"


def test_mlp_run_writes_curves(csv30, tmp_path):
    run("random", "mlp", csv30, out=tmp_path, params=FAST_MLP, progress=False)
    assert (tmp_path / "curves.png").exists()
    model = load_model(tmp_path / "model.safetensors")
    assert model.history_


def test_segment_table_split_by_track_and_scored_both_ways(csv3, tmp_path):
    table = load_feature_table(csv3)
    assert table.is_segmented
    source = FeatureSource(table)
    for fold in protocol_folds("kfold", source, k=4):
        r = fit_fold(as_factory("knn"), source, fold, seed=0, aggregate="mean_log")
        train_tracks = set(table.track_ids[source.rows(r.train_tracks)])
        test_tracks = set(table.track_ids[source.rows(r.test_tracks)])
        assert not train_tracks & test_tracks  # no track on both sides
        assert len(r.track_ids) == len(test_tracks)  # scored once per track
    m = run("kfold", "knn", table, out=tmp_path, k=4, progress=False).metrics
    assert m["segmented"] and m["level"] == "track" and m["segment_seconds"] == 3.0
    assert "accuracy" in m["segment_level"]
    assert sum(f["n_test_tracks"] for f in m["fold_scores"]) == 32
    assert sum(f["n_test_segments"] for f in m["fold_scores"]) == 128
    _, meta = load_model_file(tmp_path / "model.safetensors")
    assert meta["input"]["segment_seconds"] == 3.0


def test_folds_guard_against_leakage_and_bad_options(csv30, tmp_path):
    with pytest.raises(LeakageError, match="blues.00000"):
        FoldSpec(0, train=("blues.00000", "blues.00001"), test=("blues.00000",))
    with pytest.raises(GenrekitError, match="epochz"):  # a misspelled option is refused, not swallowed
        run("random", "cnn", tmp_path, params={"epochz": 2})
    with pytest.raises(GenrekitError, match="reads logmel data"):
        run("random", "cnn", load_feature_table(csv30))
    with pytest.raises(GenrekitError, match="unknown model 'xgboostish'"):
        run("random", "xgboostish", csv30)


def test_deep_run_on_audio_folders_writes_a_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = tmp_path / "data"
    write_label_folders(data, ["calm", "mid", "sharp"], per_label=5)
    assert "cnn" in model_names("deep")
    out = tmp_path / "run"
    res = run("random", "cnn", data, out=out, params=dict(epochs=2, augment="crop,specaugment", threads=1,
                                                           batch_size=8), valid_size=0.2, progress=False).metrics
    assert res["protocol"] == "random" and 0.0 <= res["accuracy"] <= 1.0
    for f in ("model.safetensors", "metrics.json", "report.txt", "confusion.png", "slices/metrics.json", "config.json"):
        assert (out / f).is_file(), f
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["level"] == "track" and metrics["augment"]["enabled"] == ["crop", "specaugment"]
    assert json.loads((out / "slices" / "metrics.json").read_text())["level"] == "slice"
    m = DeepModel.load(out / "model.safetensors")
    assert m.meta_["trained_on"]["protocol"] == "random"
    assert set(m.meta_["trained_on"]["train_tracks"]).isdisjoint(m.meta_["trained_on"]["valid_tracks"])
    with pytest.raises(GenrekitError, match="unknown deep model"):
        run("random", DeepFactory("vgg"), data, out=out)
    # refit: the same split, the valid tracks join training, exactly `epochs` epochs, test untouched
    from genrekit.cli import main

    rc = main(["train", "--model", "cnn", "--data", str(data), "--protocol", "random", "--out", str(tmp_path / "refit"),
               "--epochs", "2", "--augment", "crop", "--refit", "--valid-size", "0.2", "--seed", "5", "--split-seed", "0", "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "cnn: accuracy" in printed and "track-level" in printed and "3 s slices" in printed
    r = DeepModel.load(tmp_path / "refit" / "model.safetensors").meta_["trained_on"]
    assert json.loads((tmp_path / "refit" / "metrics.json").read_text())["refit"] is True and r["refit"] is True and r["valid_tracks"] == [] and r["split_seed"] == 0
    before = m.meta_["trained_on"]
    assert set(r["train_tracks"]) == set(before["train_tracks"]) | set(before["valid_tracks"])
    assert len(DeepModel.load(tmp_path / "refit" / "model.safetensors").history_) == 2


def _layout(result: RunResult) -> dict:
    """The shape of a result, without its values: what must not depend on the kind of model."""
    m = result.metrics
    return {
        "fields": sorted(vars(result)),
        "fold_fields": sorted(vars(result.folds[0])),
        "track_level": sorted(result.track_level),
        "schema": m["metrics_schema"],
        "core": sorted(k for k in m if k in CORE),
        "fold_score": sorted(k for k in m["fold_scores"][0] if k in FOLD_CORE),
        "trained_on": [type(t).__name__ for t in result.trained_on],
    }


CORE = ("metrics_schema", "protocol", "level", "model", "model_kind", "reads", "params", "seed", "split_seed",
        "refit", "data", "data_sha256", "n_tracks", "genrekit_version", "accuracy", "accuracy_std", "macro_f1",
        "n_folds", "per_class", "confusion", "classes", "fold_scores", "trained_on", "model_file")
FOLD_CORE = ("fold", "accuracy", "macro_f1", "n_test_tracks", "n_train_tracks", "n_valid_tracks")


def test_one_result_layout_for_tabular_logmel_and_hybrid(tmp_path, monkeypatch):
    """The same RunResult fields, metrics.json keys and trained_on lists whatever the model reads."""
    from genrekit.cli import main
    from genrekit.experiments.data import HybridSource, LogmelSource

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = write_label_folders(tmp_path / "data", ["blues", "metal"], per_label=6, broken=False)
    csv = data / "features_30_sec.csv"
    assert main(["features", str(data), "--out", str(csv), "--jobs", "1", "--quiet", "--no-cache"]) == 0
    deep = {"epochs": 1, "threads": 1, "batch_size": 8, "augment": "none"}
    logmel = LogmelSource.load(data, progress=False)
    runs = {
        "tabular": run("kfold", "logreg", csv, k=2, out=tmp_path / "tab", progress=False),
        "logmel": run("kfold", "cnn", logmel, k=2, params=deep, valid_size=0.34, out=tmp_path / "cnn", progress=False),
        "hybrid": run("kfold", HybridFactory([DeepFactory("cnn", **deep), "logreg"], weights=[0.5, 0.5]),
                      HybridSource(logmel, FeatureSource(load_feature_table(csv))), k=2, valid_size=0.34,
                      out=tmp_path / "hyb", progress=False),
    }
    layouts = {kind: _layout(r) for kind, r in runs.items()}
    assert layouts["tabular"] == layouts["logmel"] == layouts["hybrid"], layouts
    assert layouts["tabular"]["core"] == sorted(CORE)
    for kind, r in runs.items():
        assert r.metrics["reads"] == ("features" if kind == "tabular" else kind)
        assert len(r.trained_on) == 2 and all(len(t) == 6 for t in r.trained_on)  # 12 tracks, two folds
        for f in r.folds:
            assert set(f.trained_on).isdisjoint(f.track_ids)  # scored only on tracks it never saw
        assert read_metrics(r.out)["trained_on"] == r.trained_on  # written and read back
    assert runs["logmel"].segment_level is not None and runs["hybrid"].segment_level is None
    hybrid = load_model(tmp_path / "hyb" / "model.safetensors")  # the k-fold hybrid keeps its folds' models
    assert hybrid.kind == "hybrid" and (tmp_path / "hyb" / "fold1" / "model.safetensors").is_file()
