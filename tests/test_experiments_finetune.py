"""genrekit.experiments.finetune and `genrekit finetune`: a deep model adapted to new labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from audio_folders import write_label_folders
from genrekit.errors import ModelError
from genrekit.models.deep import DeepModel

torch.set_num_threads(1)


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
    write_label_folders(data, ["lofi", "techno"], per_label=4)
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
    write_label_folders(data, ["lofi", "techno"], per_label=3)
    out = tmp_path / "ft"
    main(["finetune", "--data", str(data), "--out", str(out), "--freeze", "--epochs", "1", "--no-progress",
          "--threads", "1", "--valid-size", "0.34"])
    tuned = DeepModel.load(out / "model.safetensors")
    assert list(tuned.classes_) == ["lofi", "techno"]
    assert tuned.meta_["finetuned_from"]["path"].endswith("(its CNN member)")
    assert tuned.meta_["finetuned_from"]["classes"][0] == "blues" and tuned.arch == "shortchunk"


def test_finetune_api_returns_a_run_and_refuses_other_kinds(tmp_path, monkeypatch):
    """The Python call behind the command: one hold-out fold of the runner, metrics in the run schema."""
    from genrekit.experiments import finetune
    from genrekit.experiments.schema import SCHEMA_VERSION
    from genrekit.spectrogram import input_description

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(1)
    base = DeepModel("cnn", epochs=1, batch_size=8, augment="none", input=input_description(), threads=1,
                     verbose=False).fit(rng.random((16, 128, 130)).astype(np.float32), np.array(["a", "b"] * 8))
    src = base.save(tmp_path / "base.safetensors")
    data = write_label_folders(tmp_path / "mine", ["lofi", "techno"], per_label=4, broken=False)
    result = finetune(data, tmp_path / "ft", source_model=src, freeze=True, epochs=1, valid_size=0.25, threads=1,
                      progress=False)
    fold = result.folds[0]
    assert result.metrics["metrics_schema"] == SCHEMA_VERSION and result.metrics["freeze_body"] is True
    assert set(fold.test_tracks) == set(fold.valid_tracks) and len(fold.test_tracks) == 2  # the hold-out
    assert set(fold.train_tracks).isdisjoint(fold.test_tracks) and result.segment_level is not None
    saved = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert saved["accuracy"] == result.track_level["accuracy"] and saved["layers_transferred"] > 0
    # no hold-out: trained, nothing scored, the metrics say so
    none = finetune(data, tmp_path / "ft0", source_model=src, epochs=1, valid_size=0.0, threads=1, progress=False)
    assert not none.folds[0].scored and "nothing scored" in json.loads((tmp_path / "ft0" / "metrics.json").read_text())["note"]
    from genrekit.experiments.runner import save_model
    from genrekit.models.registry import make_model

    tab = make_model("logreg", family="tabular").fit(rng.normal(size=(8, 2)), np.array(["a", "b"] * 4),
                                                     feature_names=["x", "y"])
    with pytest.raises(ModelError, match="cannot be fine-tuned"):
        finetune(data, tmp_path / "ft1", source_model=save_model(tab, tmp_path / "tab.safetensors", {}))
