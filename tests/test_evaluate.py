"""genrekit.evaluate: metrics agree with scikit-learn, aggregation is right, reports are complete."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genrekit.errors import GenrekitError
from genrekit.evaluate import aggregate_tracks, classification_metrics, write_run_report

CLASSES = ["blues", "jazz", "rock"]


def _labels(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.choice(CLASSES, n)
    pred = np.where(rng.random(n) < 0.6, y, rng.choice(CLASSES, n))
    return y, pred


def test_metrics_agree_with_sklearn():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    y, pred = _labels()
    m = classification_metrics(y, pred, CLASSES)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["confusion"] == confusion_matrix(y, pred, labels=CLASSES).tolist()
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=CLASSES, zero_division=0)
    for i, c in enumerate(CLASSES):
        assert m["per_class"][c]["precision"] == pytest.approx(p[i])
        assert m["per_class"][c]["recall"] == pytest.approx(r[i])
        assert m["per_class"][c]["f1"] == pytest.approx(f[i])
        assert m["per_class"][c]["support"] == s[i]


def test_metrics_reject_unknown_true_label_and_length_mismatch():
    with pytest.raises(GenrekitError, match="pop"):
        classification_metrics(["pop"], ["blues"], CLASSES)
    with pytest.raises(GenrekitError, match="labels"):
        classification_metrics(["blues", "jazz"], ["blues"], CLASSES)


def test_aggregate_mean_log_and_vote():
    tids = ["b", "a", "a", "a"]
    proba = np.array([[0.2, 0.8], [0.9, 0.1], [0.4, 0.6], [0.45, 0.55]])
    ids, p = aggregate_tracks(tids, proba)
    assert ids.tolist() == ["a", "b"]
    assert np.allclose(p.sum(axis=1), 1.0)
    # geometric mean of track a: (0.9*0.4*0.45)^(1/3) vs (0.1*0.6*0.55)^(1/3)
    ga, gb = (0.9 * 0.4 * 0.45) ** (1 / 3), (0.1 * 0.6 * 0.55) ** (1 / 3)
    assert p[0, 0] == pytest.approx(ga / (ga + gb))
    assert p[1].tolist() == pytest.approx([0.2, 0.8])
    # majority vote: two of three segments of "a" vote for class 1 although mean_log prefers class 0
    ids, v = aggregate_tracks(tids, proba, method="vote")
    assert v[0].argmax() == 1 and p[0].argmax() == 0
    assert v[0, 1] == pytest.approx(2 / 3, abs=1e-4)


def test_aggregate_rejects_bad_input():
    with pytest.raises(GenrekitError):
        aggregate_tracks(["a"], np.ones((2, 2)))
    with pytest.raises(GenrekitError, match="method"):
        aggregate_tracks(["a"], np.ones((1, 2)), method="max")


def test_write_run_report_files_and_caller_keys(tmp_path):
    y, pred = _labels()
    rng = np.random.default_rng(1)
    proba = rng.dirichlet(np.ones(3), len(y))
    history = [{"epoch": i, "loss": 1 / i, "val_loss": 1.2 / i, "acc": 0.5, "val_acc": 0.4} for i in range(1, 6)]
    metrics = {"protocol": "kfold", "model": "svm", "accuracy": 0.5, "accuracy_std": 0.1, "seed": 3}
    write_run_report(tmp_path, metrics, y_true=y, y_pred=pred, proba=proba, classes=CLASSES,
                     history=history, importances={"tempo": 0.3, "rms_mean": 0.1})
    for name in ("metrics.json", "report.txt", "confusion.png", "pr_curves.png", "curves.png", "importance.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["accuracy"] == 0.5  # the caller's (mean over folds) wins
    assert saved["pooled"]["accuracy"] == pytest.approx(np.mean(y == pred))
    assert saved["confusion"] and saved["per_class"]["jazz"]["support"] == int((y == "jazz").sum())
    text = (tmp_path / "report.txt").read_text()
    assert "kfold" in text and "track-level" in text
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


def test_write_run_report_skips_optional_plots(tmp_path):
    y, pred = _labels()
    write_run_report(tmp_path, {"protocol": "random", "model": "knn"}, y_true=y, y_pred=pred, proba=None,
                     classes=CLASSES)
    assert (tmp_path / "confusion.png").exists()
    assert not (tmp_path / "curves.png").exists()
    assert not (tmp_path / "importance.png").exists()
    assert not (tmp_path / "pr_curves.png").exists()
