"""genrekit.reports: run reports are complete, caller keys win, optional plots are optional."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genrekit.reports import write_run_report

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


def test_json_safe_converts_numpy_paths_and_non_finite():
    from pathlib import Path

    from genrekit.reports import json_safe

    obj = {1: np.int64(3), "a": (np.float32(0.5), float("nan")), "p": Path("x/y"), "b": np.bool_(True),
           "arr": np.arange(3), "inf": np.float64(np.inf)}
    out = json_safe(obj)
    assert out == {"1": 3, "a": [0.5, None], "p": "x/y", "b": True, "arr": [0, 1, 2], "inf": None}
    assert json.loads(json.dumps(out)) == out


def test_write_json_is_atomic_and_readable(tmp_path):
    from genrekit.reports import write_json

    p = write_json(tmp_path / "sub" / "m.json", {"x": np.float64(1.5)})
    assert json.loads(p.read_text()) == {"x": 1.5}
    assert p.read_text().endswith("\n")
    assert [f.name for f in p.parent.iterdir()] == ["m.json"]


def test_format_report_names_protocol_level_and_folds():
    from genrekit.reports import format_report

    text = format_report({"model": "svm", "protocol": "kfold", "level": "segment", "accuracy": 0.75,
                          "accuracy_std": 0.05, "macro_f1": 0.7,
                          "fold_scores": [{"fold": 0, "accuracy": 0.7}, {"fold": 1, "accuracy": 0.8}],
                          "per_class": {"rock": {"precision": 1.0, "recall": 0.5, "f1": 0.667, "support": 4}}})
    assert "accuracy (kfold, segment-level): 0.7500 +- 0.0500" in text
    assert "macro-F1 (kfold, segment-level): 0.7000" in text
    assert "fold scores: 0=0.7000, 1=0.8000" in text
    assert "rock" in text and "0.667" in text


def test_save_figure_writes_a_png_and_closes_the_figure(tmp_path):
    from genrekit.reports import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure(fig, tmp_path / "deep" / "f.png")
    assert (tmp_path / "deep" / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
    assert [f.name for f in (tmp_path / "deep").iterdir()] == ["f.png"]
