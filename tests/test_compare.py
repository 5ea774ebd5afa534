"""genrekit.experiments.compare: tabular models on the same folds, and saved runs, tabular names and
ensembles of them on the runs' own folds (leakage-checked)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audio_folders import write_label_folders
from genrekit.errors import GenrekitError
from genrekit.experiments.compare import compare, compare_models
from tabular_data import synthetic_csv


@pytest.fixture(scope="module")
def csv30(tmp_path_factory):
    return synthetic_csv(tmp_path_factory.mktemp("d") / "features_30_sec.csv", n_per_class=15)


def test_compare_run_same_folds_and_outputs(csv30, tmp_path):
    res = compare_models(["logreg", "knn"], csv30, "kfold", tmp_path, k=3, progress=False)
    assert res["protocol"] == "kfold"
    assert [r["model"] for r in res["results"]] == ["logreg", "knn"]
    for r in res["results"]:
        assert 0 <= r["accuracy"] <= 1 and r["accuracy_std"] >= 0 and 0 <= r["macro_f1"] <= 1
    saved = json.loads((tmp_path / "comparison.json").read_text())
    assert saved["results"][0]["model"] == "logreg"
    assert "kfold" in (tmp_path / "comparison.md").read_text()
    assert (tmp_path / "comparison.png").stat().st_size > 0


def test_compare_rows_match_the_runs_and_workers_agree(csv30, tmp_path):
    """A comparison row is the run's own summary on the same folds, whether fitted here or in workers."""
    from genrekit.experiments import run

    one = compare_models(["logreg", "svm"], csv30, "kfold", k=3, progress=False)
    two = compare_models(["logreg", "svm"], csv30, "kfold", k=3, progress=False, jobs=2)
    for a, b in zip(one["results"], two["results"], strict=True):
        assert a["fold_accuracies"] == b["fold_accuracies"] and a["macro_f1"] == b["macro_f1"]
    alone = run("kfold", "svm", csv30, k=3, progress=False).metrics
    assert one["results"][1]["accuracy"] == alone["accuracy"] and one["results"][1]["macro_f1"] == alone["macro_f1"]
    with pytest.raises(GenrekitError, match="tabular models only"):
        compare(["logreg+svm"], csv30, "kfold", k=3)
    with pytest.raises(GenrekitError, match="unknown model"):
        compare_models(["logreg", "svmm"], csv30, "kfold")


@pytest.mark.shared
def test_compare_on_real_csv_fault_filtered(gtzan, tmp_path):
    res = compare_models(["logreg", "knn"], gtzan / "features_30_sec.csv", "fault-filtered", tmp_path, progress=False)
    assert res["n_tracks"] == 1000
    accs = {r["model"]: r["accuracy"] for r in res["results"]}
    assert 0.45 < accs["logreg"] < 0.7  # honest split: far below the ~0.75 of random splits
    assert 0.3 < accs["knn"] < accs["logreg"]


def test_deep_ensemble_script_and_compare_on_kfold_runs(tmp_path):
    """scripts/deep_ensemble.py and `genrekit compare` on k-fold runs: per-fold ensembles scored on their
    own test tracks, feature members blended by the hybrid rule (weight 0 = that member ignored), and
    members trained on other folds refused."""
    import importlib.util
    import json
    import shutil

    from genrekit.cli import main as cli

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("deep_ensemble", root / "scripts" / "deep_ensemble.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    data = tmp_path / "data"
    write_label_folders(data, ["blues", "metal"], per_label=8)
    (data / "blues" / "broken.wav").unlink()
    assert cli(["features", str(data), "--out", str(data / "features_30_sec.csv"), "--jobs", "1", "--quiet",
                "--no-cache"]) == 0
    out = tmp_path / "ens"
    base = ["--data", str(data), "--out", str(out), "--protocol", "kfold", "--folds", "2", "--seeds", "0,1",
            "--refit", "--epochs", "1"]
    assert script.main([*base, "--feature-weight", "0"]) == 0
    card = json.loads((out / "ensemble-features.json").read_text())
    assert len(card["folds"]) == 2 and sum(f["n_test_tracks"] for f in card["folds"]) == 16
    assert all(len(f["members_track"]) == 2 for f in card["folds"])
    assert card["with_features_track_accuracy"] == pytest.approx(card["track_accuracy"])  # weight 0: deep only
    assert script.main([*base, "--feature-weight", "1"]) == 0  # members reused, only scored
    card = json.loads((out / "ensemble-features.json").read_text())
    assert card["with_features_track_accuracy"] == pytest.approx(card["features_alone_track_accuracy"])
    assert card["features_alone_track_accuracy"] > 0.9  # two tones an octave and a half apart
    # the same runs through `genrekit compare`: saved runs, tabular names and ensembles on the runs' folds
    from genrekit.errors import LeakageError, SplitError
    from genrekit.experiments.compare import compare_saved, parse_entry

    s0, s1 = str(out / "seed0"), str(out / "seed1")
    assert cli(["compare", "--data", str(data), "--protocol", "kfold", "--out", str(tmp_path / "cmp"), "--no-progress",
                "--models", f"{s0},{s0}+{s1},logreg,{s0}@0+logreg,{s0}@0.75+logreg@0.25"]) == 0
    res = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert (tmp_path / "cmp" / "comparison.png").is_file() and res["folds_from"] == s0
    by = {r["model"]: r for r in res["results"]}
    assert all(r["n_folds"] == 2 and r["n_tracks"] == 16 for r in by.values())
    assert by[f"{s0}@0+logreg"]["fold_accuracies"] == by["logreg"]["fold_accuracies"]  # weight 0: logreg alone
    assert by["logreg"]["accuracy"] > 0.9 and [m["weight"] for m in by[f"{s0}@0.75+logreg@0.25"]["members"]] == [0.75, 0.25]
    with pytest.raises(LeakageError, match="trained on"):  # fold 0's model file scored on a random split
        compare_saved([s0], data, "random")
    with pytest.raises(SplitError, match="run folder"):
        compare_saved([str(out / "seed0" / "fold0" / "model.safetensors")], data, "kfold")
    with pytest.raises(GenrekitError, match="neither a tabular model name"):
        parse_entry("logreg+no-such-model")
    with pytest.raises(GenrekitError, match="not a number"):
        parse_entry("logreg@heavy")
    # a member whose folds came from another split seed trained on this fold's test tracks: refused
    other = tmp_path / "other"
    assert script.main(["--data", str(data), "--out", str(other), "--protocol", "kfold", "--folds", "2",
                        "--seeds", "0,1", "--split-seed", "1", "--epochs", "1"]) == 0
    shutil.rmtree(out / "seed1")
    shutil.copytree(other / "seed1", out / "seed1")
    with pytest.raises(SystemExit, match="trained on"):
        script.main(base)
    with pytest.raises(LeakageError, match="folds differ"):
        compare_saved([s0, f"{s0}+{s1}"], data, "kfold")
