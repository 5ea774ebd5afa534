"""genrekit.experiments.schema: one record layout written, read back, and older run folders mapped onto it.

The old layouts below are those genrekit 0.1.0's ``train.train_run`` (tabular), ``deep.train_run`` (deep,
one fold and k-fold summary) and ``evaluate`` wrote, with long values trimmed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genrekit.experiments.schema import SCHEMA_VERSION, normalise_metrics, read_metrics, trained_tracks

OLD_TABULAR = {  # genrekit 0.1.0: train --model logreg --protocol fault-filtered
    "protocol": "fault-filtered", "level": "track", "model": "logreg", "model_kind": "sklearn", "seed": 0,
    "data": "features_30_sec.csv", "data_sha256": "9426", "n_tracks": 1000, "n_rows": 1000, "segmented": False,
    "accuracy": 0.5517, "accuracy_std": 0.0, "macro_f1": 0.5367, "n_folds": 1,
    "fold_scores": [{"fold": 0, "accuracy": 0.5517, "macro_f1": 0.5367, "n_test_tracks": 290, "n_train_tracks": 443,
                     "n_valid_tracks": 197}],
    "model_file": "model.safetensors", "model_trained_on": "train", "n": 290,
}
OLD_DEEP_ONE_FOLD = {  # genrekit 0.1.0: train --model cnn --protocol random (metrics.json of the run)
    "model": "cnn", "protocol": "random", "fold": 0, "seed": 0, "data": "synth", "data_fingerprint": "c772459dbacc94b7",
    "source": "auto", "time_resolution": "full", "n_tracks": 15, "split": {"train": 9, "valid": 3, "test": 3},
    "aggregate": "mean_log", "refit": False, "best_epoch": 1, "track_accuracy": 0.6667, "slice_accuracy": 0.5,
    "track_vote_accuracy": 0.6667, "level": "track", "accuracy": 0.6667, "macro_f1": 0.5556, "n": 3,
}
OLD_DEEP_KFOLD = {  # genrekit 0.1.0: train --model cnn --protocol kfold --folds 2 (the run's summary)
    "model": "cnn", "protocol": "kfold", "level": "track", "seed": 0, "data": "real",
    "data_fingerprint": "0f3a", "accuracy": 0.75, "accuracy_std": 0.05, "fold_accuracies": [0.7, 0.8],
    "slice_accuracy": 0.6, "slice_fold_accuracies": [0.55, 0.65], "n": 18,
}
OLD_EVALUATION = {  # genrekit 0.1.0: evaluate --protocol fault-filtered
    "protocol": "fault-filtered", "fold": None, "level": "track", "track_accuracy": 0.6759, "macro_f1": 0.6571,
    "n_tracks": 290, "n_test_tracks_in_protocol": 290, "data": "gtzan", "seed": 0, "accuracy": 0.6759, "n": 290,
}


def test_old_keys_map_to_the_schema():
    tab = normalise_metrics(OLD_TABULAR)
    assert tab["metrics_schema"] == 1 and tab["accuracy"] == 0.5517 and tab["fold_scores"] == OLD_TABULAR["fold_scores"]
    assert tab["trained_on"] is None  # not recorded in the file: read_metrics takes it from the model files

    one = normalise_metrics(OLD_DEEP_ONE_FOLD)
    assert one["accuracy"] == 0.6667 and one["n_folds"] == 1 and one["data_sha256"] == "c772459dbacc94b7"
    assert one["fold_scores"] == [{"fold": 0, "accuracy": 0.6667, "macro_f1": 0.5556, "n_test_tracks": 3,
                                   "n_train_tracks": 9, "n_valid_tracks": 3, "segment_accuracy": 0.5,
                                   "track_vote_accuracy": 0.6667}]
    assert one["segment_level"]["accuracy"] == 0.5

    kf = normalise_metrics(OLD_DEEP_KFOLD)
    assert kf["n_folds"] == 2 and [f["accuracy"] for f in kf["fold_scores"]] == [0.7, 0.8]
    assert [f["segment_accuracy"] for f in kf["fold_scores"]] == [0.55, 0.65]
    assert kf["segment_level"]["accuracy"] == 0.6 and kf["segment_level"]["accuracy_std"] == pytest.approx(0.05)

    ev = normalise_metrics({k: v for k, v in OLD_EVALUATION.items() if k != "accuracy"})
    assert ev["accuracy"] == 0.6759 and ev["fold_scores"][0]["n_test_tracks"] == 290

    current = {"metrics_schema": SCHEMA_VERSION, "accuracy": 0.5, "trained_on": [["a"]]}
    assert normalise_metrics(current) == current


def _tiny_model(path, meta):
    """A fitted logistic regression saved with ``meta`` in its file, as an old run would have."""
    from genrekit.experiments.runner import save_model
    from genrekit.models.registry import make_model

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(12, 3)), np.array(["a", "b"] * 6)
    model = make_model("logreg", family="tabular").fit(X, y, feature_names=["f0", "f1", "f2"])
    return save_model(model, path, meta)


def test_old_deep_kfold_folder_gets_trained_on_from_its_fold_models(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(OLD_DEEP_KFOLD))
    for i, (train, valid) in enumerate(((["t1", "t2"], ["t3"]), (["t4"], []))):
        _tiny_model(tmp_path / f"fold{i}" / "model.safetensors",
                    {"trained_on": {"protocol": "kfold", "fold": i, "train_tracks": train, "valid_tracks": valid}})
    m = read_metrics(tmp_path)
    assert m["trained_on"] == [["t1", "t2", "t3"], ["t4"]] and m["accuracy"] == 0.75


def test_old_tabular_folder_gets_trained_on_from_its_model(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(OLD_TABULAR))
    _tiny_model(tmp_path / "model.safetensors", {"trained_on": {"protocol": "fault-filtered", "side": "train",
                                                                "tracks": ["blues.00001", "jazz.00002"]}})
    assert read_metrics(tmp_path / "metrics.json")["trained_on"] == [["blues.00001", "jazz.00002"]]


def test_trained_tracks_reads_every_name_genrekit_wrote():
    assert trained_tracks({}) == set()
    assert trained_tracks({"train_tracks": ["a"]}) == {"a"}  # a combined model's top-level list
    assert trained_tracks({"trained_on": {"tracks": ["b"]}}) == {"b"}  # tabular runs
    assert trained_tracks({"trained_on": {"train_tracks": ["c"], "valid_tracks": ["d"]}}) == {"c", "d"}  # deep runs


def test_unreadable_metrics_is_a_clear_error(tmp_path):
    from genrekit.errors import DatasetError

    with pytest.raises(DatasetError, match="no metrics.json"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(DatasetError, match="unreadable"):
        read_metrics(tmp_path)


def test_new_runs_write_the_schema_and_read_back_unchanged(tmp_path):
    from genrekit.experiments import run
    from tabular_data import synthetic_csv

    csv = synthetic_csv(tmp_path / "t.csv", n_per_class=6)
    result = run("kfold", "logreg", csv, k=2, out=tmp_path / "run", progress=False)
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["metrics_schema"] == SCHEMA_VERSION and on_disk == result.metrics
    assert read_metrics(tmp_path / "run") == on_disk
    assert on_disk["trained_on"] == result.trained_on and len(on_disk["trained_on"]) == 2
