"""models.deep: tiny training runs, save/load, track aggregation, checkpoints and resume, errors.

Runs of deep models under a protocol are in test_experiments.py, fine-tuning in
test_experiments_finetune.py, comparisons of saved deep runs in test_compare.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrekit.errors import ModelError
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
