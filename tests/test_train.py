"""Training under protocols, reports, CLI train/compare/eda, bad tables, and no leakage on segments."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genrekit.cli import main
from genrekit.datasets import FEATURE_COLUMNS, load_feature_table
from genrekit.errors import DatasetError
from genrekit.models import load_model, load_model_file
from genrekit.train import compare_run, image_band_features, train_run
from tabular_data import fault_filtered_ids, synthetic_csv, synthetic_rows, write_csv

FAST_MLP = {"max_epochs": 4}


@pytest.fixture(scope="module")
def csv30(tmp_path_factory):
    return synthetic_csv(tmp_path_factory.mktemp("d") / "features_30_sec.csv", n_per_class=15)


@pytest.fixture(scope="module")
def csv3(tmp_path_factory):
    return synthetic_csv(tmp_path_factory.mktemp("d") / "features_3_sec.csv", n_per_class=8, segments=4)


def test_kfold_run_writes_full_report(csv30, tmp_path):
    train_run("logreg", csv30, "kfold", tmp_path, seed=1, k=3)
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


def test_fault_filtered_fits_on_train_tunes_on_valid(tmp_path):
    from genrekit.splits import fault_filtered

    names, X, y = synthetic_rows(ids=fault_filtered_ids(per_side=5))
    csv = write_csv(tmp_path / "ff.csv", names, X, y)
    m = train_run("svm", csv, "fault-filtered", tmp_path / "run")
    ff = fault_filtered()
    fold = m["fold_scores"][0]
    assert (fold["n_train_tracks"], fold["n_valid_tracks"], fold["n_test_tracks"]) == (20, 20, 20)
    assert m["tuned_params"] and m["accuracy_std"] == 0.0
    _, meta = load_model_file(tmp_path / "run" / "model.safetensors")
    assert meta["trained_on"]["side"] == "train"
    assert set(meta["trained_on"]["tracks"]) <= set(ff["train"])
    assert not set(meta["trained_on"]["tracks"]) & (set(ff["valid"]) | set(ff["test"]))
    # evaluate scores the file on the test side, and refuses every track (it trained on the train side)
    from genrekit.errors import LeakageError
    from genrekit.evaluate import evaluate_model
    from genrekit.predict import GenreClassifier

    clf = GenreClassifier.load(tmp_path / "run" / "model.safetensors")
    metrics, _ = evaluate_model(clf, csv, protocol="fault-filtered", progress=False)
    assert metrics["n_tracks"] == 20 and metrics["track_accuracy"] == pytest.approx(m["accuracy"])
    with pytest.raises(LeakageError, match="trained on 20 of these test tracks"):
        evaluate_model(clf, csv, protocol="all", progress=False)


def test_mlp_run_writes_curves(csv30, tmp_path):
    train_run("mlp", csv30, "random", tmp_path, params=FAST_MLP)
    assert (tmp_path / "curves.png").exists()
    model = load_model(tmp_path / "model.safetensors")
    assert model.history_


def test_segment_table_split_by_track_and_scored_both_ways(csv3, tmp_path):
    from genrekit import splits
    from genrekit.train import _fit_fold

    table = load_feature_table(csv3)
    assert table.is_segmented
    for fold in splits.protocol_folds("kfold", table.track_ids, table.y, k=4):
        r = _fit_fold("knn", table, fold, seed=0, params={}, aggregate="mean_log")
        train_tracks = set(table.track_ids[r["train_rows"]])
        test_tracks = set(table.track_ids[r["test_rows"]])
        assert not train_tracks & test_tracks  # no track on both sides
        assert len(r["track_ids"]) == len(test_tracks)  # scored once per track
    m = train_run("knn", table, "kfold", tmp_path, k=4)
    assert m["segmented"] and m["level"] == "track" and m["segment_seconds"] == 3.0
    assert "accuracy" in m["segment_level"]
    assert sum(f["n_test_tracks"] for f in m["fold_scores"]) == 32
    assert sum(f["n_test_segments"] for f in m["fold_scores"]) == 128
    _, meta = load_model_file(tmp_path / "model.safetensors")
    assert meta["input"]["segment_seconds"] == 3.0


def test_compare_run_same_folds_and_outputs(csv30, tmp_path):
    res = compare_run(["logreg", "knn"], csv30, "kfold", tmp_path, k=3, progress=False)
    assert res["protocol"] == "kfold"
    assert [r["model"] for r in res["results"]] == ["logreg", "knn"]
    for r in res["results"]:
        assert 0 <= r["accuracy"] <= 1 and r["accuracy_std"] >= 0 and 0 <= r["macro_f1"] <= 1
    saved = json.loads((tmp_path / "comparison.json").read_text())
    assert saved["results"][0]["model"] == "logreg"
    assert "kfold" in (tmp_path / "comparison.md").read_text()
    assert (tmp_path / "comparison.png").stat().st_size > 0


def _bad_csv(tmp_path, kind):
    names, X, y = synthetic_rows(n_per_class=5)
    columns = list(FEATURE_COLUMNS)
    if kind == "missing":
        columns = columns[:-1]  # drop mfcc20_var
    elif kind == "nan":
        X[3, 7] = np.nan
    elif kind == "label":
        y = list(y)
        y[4] = "polka"
        names[4] = "polka.00004.wav"
    elif kind == "single":
        keep = [i for i, lab in enumerate(y) if lab == "blues"]
        names, X, y = [names[i] for i in keep], X[keep], [y[i] for i in keep]
    return write_csv(tmp_path / f"{kind}.csv", names, X, y, columns=columns)


@pytest.mark.parametrize("kind, needle", [
    ("missing", "mfcc20_var"), ("nan", FEATURE_COLUMNS[7]), ("label", "polka"), ("single", "class"),
])
def test_bad_tables_give_clear_errors(kind, needle, tmp_path, capsys):
    path = _bad_csv(tmp_path, kind)
    with pytest.raises(DatasetError, match=needle):
        train_run("logreg", path, "kfold", tmp_path / "out", k=2)
    rc = main(["train", "--model", "logreg", "--data", str(path), "--protocol", "kfold", "--out",
               str(tmp_path / "cli"), "--no-progress"])
    assert rc == 1
    err = capsys.readouterr().err
    assert needle in err and str(path) in err


def test_unknown_model_is_a_usage_error(csv30, tmp_path, capsys):
    rc = main(["train", "--model", "xgboostish", "--data", str(csv30), "--out", str(tmp_path)])
    assert rc == 2
    assert "xgboostish" in capsys.readouterr().err


def test_cli_train_compare_eda(csv30, tmp_path, capsys):
    rc = main(["train", "--model", "knn", "--data", str(csv30), "--protocol", "random", "--out",
               str(tmp_path / "t"), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "protocol random" in out and "track-level" in out
    assert (tmp_path / "t" / "metrics.json").exists() and (tmp_path / "t" / "model.safetensors").exists()

    rc = main(["compare", "--data", str(csv30), "--protocol", "kfold", "--folds", "3", "--models", "logreg,knn",
               "--out", str(tmp_path / "c"), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "kfold" in out and "| logreg |" in out
    assert json.loads((tmp_path / "c" / "comparison.json").read_text())["protocol"] == "kfold"

    rc = main(["eda", "--data", str(csv30), "--out", str(tmp_path / "e")])
    assert rc == 0
    for name in ("correlation.png", "tempo_by_genre.png", "distributions.png", "summary.txt"):
        assert (tmp_path / "e" / name).stat().st_size > 0


def test_image_band_features_shape_and_values():
    levels = np.zeros((128, 40))
    levels[:4] = 1.0  # the lowest pooled band is loud and steady
    f = image_band_features(levels)
    assert f.shape == (64,)
    assert f[0] == 1.0 and f[1:32].sum() == 0.0 and f[32:].sum() == 0.0


def test_image_features_joined_by_track(tmp_path):
    """Kaggle-like PNGs (magma over the plotted area) add 64 columns; a track without image is dropped."""
    import matplotlib
    from PIL import Image

    from genrekit.train import join_image_features

    names, X, y = synthetic_rows(n_per_class=3)
    table = load_feature_table(write_csv(tmp_path / "t.csv", names, X, y))
    rng = np.random.default_rng(0)
    magma = matplotlib.colormaps["magma"]
    for tid in table.track_ids[1:]:  # the first track gets no image
        genre, num = tid.split(".")
        img = np.full((288, 432, 4), 255, dtype=np.uint8)
        img[35:252, 54:389] = (magma(rng.random((217, 335))) * 255).astype(np.uint8)
        (tmp_path / "img" / genre).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(tmp_path / "img" / genre / f"{genre}{num}.png")
    joined = join_image_features(table, tmp_path / "img", progress=False)
    assert joined.X.shape == (len(table.y) - 1, len(FEATURE_COLUMNS) + 64)
    assert joined.columns[-1] == "img_band31_std"
    assert joined.extra["image_missing"] == [table.track_ids[0]]
    assert np.isfinite(joined.X).all()


@pytest.mark.shared
def test_compare_on_real_csv_fault_filtered(gtzan, tmp_path):
    res = compare_run(["logreg", "knn"], gtzan / "features_30_sec.csv", "fault-filtered", tmp_path, progress=False)
    assert res["n_tracks"] == 1000
    accs = {r["model"]: r["accuracy"] for r in res["results"]}
    assert 0.45 < accs["logreg"] < 0.7  # honest split: far below the ~0.75 of random splits
    assert 0.3 < accs["knn"] < accs["logreg"]


def test_cli_train_featurises_audio_folders(tmp_path, monkeypatch, capsys):
    """Audio in, features computed on the way (through the cache), model and report out."""
    import soundfile as sf

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    sr = 22050
    t = np.arange(int(1.5 * sr)) / sr
    for genre, base in (("blues", 220.0), ("metal", 2000.0)):
        for i in range(5):
            y = 0.4 * np.sin(2 * np.pi * base * (1 + 0.05 * i) * t)
            if genre == "metal":
                y = y + 0.3 * rng.standard_normal(t.size)
            (tmp_path / "audio" / genre).mkdir(parents=True, exist_ok=True)
            sf.write(tmp_path / "audio" / genre / f"{genre}.{i:05d}.wav", y.astype(np.float32), sr)
    rc = main(["train", "--model", "logreg", "--data", str(tmp_path / "audio"), "--protocol", "random",
               "--out", str(tmp_path / "run"), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["n_tracks"] == 10 and saved["protocol"] == "random"
    _, meta = load_model_file(tmp_path / "run" / "model.safetensors")
    assert meta["input"]["columns"] == FEATURE_COLUMNS
