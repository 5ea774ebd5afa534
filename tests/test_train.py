"""`genrekit train`, `compare` and `eda` on the command line: runs, usage errors, bad tables, audio input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genrekit.cli import main
from genrekit.datasets import FEATURE_COLUMNS
from genrekit.errors import DatasetError
from genrekit.experiments import run
from genrekit.models import load_model_file
from tabular_data import synthetic_csv, synthetic_rows, write_csv


@pytest.fixture(scope="module")
def csv30(tmp_path_factory):
    return synthetic_csv(tmp_path_factory.mktemp("d") / "features_30_sec.csv", n_per_class=15)


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
        run("kfold", "logreg", path, out=tmp_path / "out", k=2, progress=False)
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
