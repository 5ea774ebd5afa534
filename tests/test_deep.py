"""Deep models: tiny training runs, save/load, track aggregation, resume, train_run and finetune."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from genrekit.errors import GenrekitError, ModelError
from genrekit.models.deep import ARCHS, DeepModel, build_net

torch.set_num_threads(1)


def _slices(n=48, m=32, t=40, seed=0):
    """Two easy classes: energy in the low band ('low') or in the high band ('high')."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, m, t)).astype(np.float32) * 0.3
    y = np.array(["low", "high"] * (n // 2))
    X[y == "low", : m // 3] += 0.6
    X[y == "high", -m // 3 :] += 0.6
    groups = np.array([f"t{i // 4}" for i in range(n)])
    return X.clip(0, 1), y, groups


def _fit(tmp_path=None, epochs=4, **kw):
    X, y, g = _slices()
    inp = {"type": "logmel", "sr": 22050, "n_fft": 2048, "hop_length": 512, "n_mels": 32, "slice_seconds": 0.9,
           "slice_frames": 40, "time_resolution": "full"}
    model = DeepModel("cnn", epochs=epochs, batch_size=16, lr=3e-3, augment="none", input=inp, input_frames=40,
                      threads=1, verbose=False, checkpoint_dir=tmp_path, **kw)
    return model.fit(X, y, groups=g), X, y


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_maps_slices_to_logits(arch):
    net = build_net(arch, n_classes=7)
    net.eval()
    with torch.no_grad():
        out = net(torch.rand(2, 128, 130))
    assert out.shape == (2, 7)


def test_tiny_training_learns_an_easy_task_and_round_trips(tmp_path):
    model, X, y = _fit()
    assert list(model.classes_) == ["high", "low"]
    proba = model.predict_proba(X)
    assert proba.shape == (48, 2) and np.allclose(proba.sum(1), 1)
    assert np.mean(model.predict(X) == y) >= 0.9
    path = model.save(tmp_path / "m.safetensors", extra_meta={"trained_on": {"protocol": "test"}})
    loaded = DeepModel.load(path)
    np.testing.assert_allclose(loaded.predict_proba(X), proba, atol=1e-6)
    assert loaded.meta_["kind"] == "deep" and loaded.meta_["classes"] == ["high", "low"]
    assert loaded.meta_["input"]["type"] == "logmel" and loaded.meta_["trained_on"]["protocol"] == "test"
    from genrekit.models import load_model

    assert isinstance(load_model(path), DeepModel)  # registry dispatch on kind "deep"


def test_predict_track_aggregates_slices():
    model, X, y = _fit(epochs=3)
    low = X[y == "low"]
    track = np.concatenate(list(low[:5]), axis=1)  # [32, 200]: a 'low' track of 5 slices
    p = model.predict_track(track)
    assert p.shape == (2,) and np.isclose(p.sum(), 1)
    assert model.predict_track_label(track) == "low"
    assert model.predict_track_label(track, method="vote") == "low"


@pytest.mark.parametrize("ema", [None, 0.9])
def test_checkpoint_resume_continues_the_history(tmp_path, ema):
    first, _, _ = _fit(tmp_path, epochs=2, ema=ema)
    ckpt = tmp_path / "checkpoint.safetensors"
    assert ckpt.is_file()
    from genrekit.models.base import load_model_file

    tensors, meta = load_model_file(ckpt)
    assert meta["checkpoint"]["epoch"] == 2 and any(k.startswith("opt.") for k in tensors)
    assert any(k.startswith("ema.") for k in tensors) == (ema is not None)
    resumed, _, _ = _fit(tmp_path, epochs=3, resume=True, ema=ema)
    assert len(resumed.history_) == 3
    assert resumed.history_[:2] == first.history_
    with pytest.raises(ModelError, match="another model"):
        DeepModel("cnn-bn", epochs=3, checkpoint_dir=tmp_path, resume=True, threads=1, verbose=False,
                  input_frames=40, augment="none").fit(*_slices()[:2])


def test_errors_are_specific(tmp_path):
    with pytest.raises(ModelError, match="not fitted"):
        DeepModel("cnn").predict_proba(np.zeros((1, 32, 40), np.float32))
    with pytest.raises(ModelError, match="slices"):
        DeepModel("cnn").fit(np.zeros((4, 32)), ["a", "b", "a", "b"])
    with pytest.raises(ModelError, match="two classes"):
        DeepModel("cnn").fit(np.zeros((4, 32, 40)), ["a"] * 4)
    with pytest.raises(ModelError, match="unknown architecture"):
        build_net("vgg99", n_classes=2)
    with pytest.raises(ModelError, match="not found"):
        DeepModel.load(tmp_path / "nope.safetensors")


def _write_label_folders(root, labels, per_label=4, seconds=3.5):
    """Folder-per-label audio: each label is a tone at its own frequency plus noise."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 22050)) / 22050
    for k, lab in enumerate(labels):
        (root / lab).mkdir(parents=True)
        for i in range(per_label):
            f = 200.0 * (3 ** k) * (1 + 0.03 * i)
            y = 0.4 * np.sin(2 * np.pi * f * t) + 0.02 * rng.standard_normal(t.size)
            sf.write(root / lab / f"{lab}_{i}.wav", y.astype(np.float32), 22050)
    (root / labels[0] / "broken.wav").write_bytes(b"RIFF nonsense")  # one bad file: skipped, reported


def test_train_run_on_audio_folders_writes_a_run(tmp_path, monkeypatch, capsys):
    from genrekit.deep import DEEP_MODELS, train_run

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = tmp_path / "data"
    _write_label_folders(data, ["calm", "mid", "sharp"], per_label=5)
    assert "cnn" in DEEP_MODELS
    out = tmp_path / "run"
    res = train_run("cnn", data, "random", out, epochs=2, augment="crop,specaugment", progress=False,
                    threads=1, batch_size=8, valid_size=0.2)
    assert res["protocol"] == "random" and 0.0 <= res["track_accuracy"] <= 1.0
    for f in ("model.safetensors", "metrics.json", "report.txt", "confusion.png", "slices/metrics.json", "config.json"):
        assert (out / f).is_file(), f
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["level"] == "track" and metrics["augment"]["enabled"] == ["crop", "specaugment"]
    assert json.loads((out / "slices" / "metrics.json").read_text())["level"] == "slice"
    m = DeepModel.load(out / "model.safetensors")
    assert m.meta_["trained_on"]["protocol"] == "random"
    assert set(m.meta_["trained_on"]["train_tracks"]).isdisjoint(m.meta_["trained_on"]["valid_tracks"])
    with pytest.raises(GenrekitError, match="unknown deep model"):
        train_run("vgg", data, "random", out)
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


def test_finetune_cli_new_labels_frozen_body(tmp_path, monkeypatch):
    from genrekit.cli import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    from genrekit.spectrogram import input_description

    rng = np.random.default_rng(0)
    X = rng.random((24, 128, 130)).astype(np.float32)
    base = DeepModel("cnn", epochs=1, batch_size=8, augment="none", input=input_description(), threads=1,
                     verbose=False).fit(X, np.array(["a", "b", "c"] * 8))
    src = base.save(tmp_path / "base.safetensors")
    data = tmp_path / "mine"
    _write_label_folders(data, ["lofi", "techno"], per_label=4)
    out = tmp_path / "ft"
    code = main(["finetune", "--from", str(src), "--data", str(data), "--out", str(out), "--freeze",
                 "--epochs", "2", "--no-progress", "--threads", "1", "--valid-size", "0.25"])
    assert code == 1  # one broken file was reported; the rest trained
    tuned = DeepModel.load(out / "model.safetensors")
    assert list(tuned.classes_) == ["lofi", "techno"]
    assert tuned.meta_["finetuned_from"]["classes"] == ["a", "b", "c"]
    for name, p in tuned.net_.body.state_dict().items():  # frozen body: weights unchanged
        assert torch.equal(p, base.net_.body.state_dict()[name]), name
    assert (out / "metrics.json").is_file()
    assert main(["finetune", "--from", str(src), "--data", str(data), "--out", str(out), "--valid-size", "2"]) == 2


def test_finetune_defaults_to_the_shipped_models_cnn(tmp_path, monkeypatch):
    """Transfer from our own pretrained model: --from defaults to the shipped hybrid, whose CNN is used."""
    from genrekit.cli import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = tmp_path / "mine"
    _write_label_folders(data, ["lofi", "techno"], per_label=3)
    out = tmp_path / "ft"
    main(["finetune", "--data", str(data), "--out", str(out), "--freeze", "--epochs", "1", "--no-progress",
          "--threads", "1", "--valid-size", "0.34"])
    tuned = DeepModel.load(out / "model.safetensors")
    assert list(tuned.classes_) == ["lofi", "techno"]
    assert tuned.meta_["finetuned_from"]["path"].endswith("(its CNN member)")
    assert tuned.meta_["finetuned_from"]["classes"][0] == "blues" and tuned.arch == "shortchunk"


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
    _write_label_folders(data, ["blues", "metal"], per_label=8)
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
    from genrekit.compare import compare_saved, parse_entry
    from genrekit.errors import LeakageError, SplitError

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
