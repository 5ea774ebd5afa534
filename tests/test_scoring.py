"""genrekit.experiments.scoring: saved models scored on a protocol's test side, never on tracks they saw."""

from __future__ import annotations

import pytest

from genrekit.datasets import load_feature_table
from genrekit.errors import LeakageError
from genrekit.experiments import evaluate_model, run, track_sources
from genrekit.models import load_model_file
from genrekit.predict import GenreClassifier
from tabular_data import fault_filtered_ids, synthetic_rows, write_csv


def test_fault_filtered_fits_on_train_tunes_on_valid(tmp_path):
    from genrekit.splits import fault_filtered

    names, X, y = synthetic_rows(ids=fault_filtered_ids(per_side=5))
    csv = write_csv(tmp_path / "ff.csv", names, X, y)
    m = run("fault-filtered", "svm", csv, out=tmp_path / "run", progress=False).metrics
    ff = fault_filtered()
    fold = m["fold_scores"][0]
    assert (fold["n_train_tracks"], fold["n_valid_tracks"], fold["n_test_tracks"]) == (20, 20, 20)
    assert m["tuned_params"] and m["accuracy_std"] == 0.0
    _, meta = load_model_file(tmp_path / "run" / "model.safetensors")
    assert meta["trained_on"]["side"] == "train"
    assert set(meta["trained_on"]["tracks"]) <= set(ff["train"])
    assert not set(meta["trained_on"]["tracks"]) & (set(ff["valid"]) | set(ff["test"]))
    # evaluate scores the file on the test side, and refuses every track (it trained on the train side)
    clf = GenreClassifier.load(tmp_path / "run" / "model.safetensors")
    metrics = evaluate_model(clf, csv, protocol="fault-filtered", progress=False).metrics
    assert metrics["n_tracks"] == 20 and metrics["accuracy"] == pytest.approx(m["accuracy"])
    with pytest.raises(LeakageError, match="trained on 20 of these test tracks"):
        evaluate_model(clf, csv, protocol="all", progress=False)


def test_evaluation_is_a_run_result_written_like_a_run(tmp_path):
    """evaluate's result has a run's layout: one fold, the file's training tracks as trained_on."""
    from genrekit.experiments import read_metrics, write_run

    names, X, y = synthetic_rows(ids=fault_filtered_ids(per_side=4))
    csv = write_csv(tmp_path / "ff.csv", names, X, y)
    run("fault-filtered", "logreg", csv, out=tmp_path / "run", progress=False)
    clf = GenreClassifier.load(tmp_path / "run" / "model.safetensors")
    result = evaluate_model(clf, csv, protocol="fault-filtered", progress=False)
    assert len(result.folds) == 1 and result.data["sources"]["features"] == 16
    assert result.trained_on == [sorted(set(map(str, load_model_file(tmp_path / "run" / "model.safetensors")[1]
                                                ["trained_on"]["tracks"])) | set(result.folds[0].valid_tracks))]
    write_run(tmp_path / "eval", result)
    back = read_metrics(tmp_path / "eval")
    assert back["accuracy"] == result.track_level["accuracy"] and back["errors"] == []
    for name in ("report.txt", "confusion.png", "pr_curves.png"):
        assert (tmp_path / "eval" / name).is_file()
    assert set(track_sources(csv, "features")) == set(load_feature_table(csv).track_ids)
