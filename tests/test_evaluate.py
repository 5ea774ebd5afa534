"""genrekit.evaluate: reports are complete."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genrekit.evaluate import write_run_report

CLASSES = ["blues", "jazz", "rock"]


def _labels(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.choice(CLASSES, n)
    pred = np.where(rng.random(n) < 0.6, y, rng.choice(CLASSES, n))
    return y, pred


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
