"""Tabular models: fit, predict, safe save/load round trips, tampering and bad input rejected."""

from __future__ import annotations

import numpy as np
import pytest

from genrekit.datasets import FEATURE_COLUMNS
from genrekit.errors import ModelError
from genrekit.models import load_model, load_model_file, save_model_file
from genrekit.models.registry import make_model
from tabular_data import synthetic_rows


@pytest.fixture(scope="module")
def data():
    _, X, y = synthetic_rows(n_per_class=30, seed=0)
    y = np.asarray(y)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(y))
    tr, va, te = idx[:70], idx[70:90], idx[90:]
    return X[tr], y[tr], X[va], y[va], X[te], y[te]


FAST = {
    "rf": {"params": {"n_estimators": 30}},
    "extratrees": {"params": {"n_estimators": 30}},
    "svm": {},
    "knn": {},
    "logreg": {},
    "hgb": {"params": {"max_iter": 20}},
    "rf-top30": {"params": {"n_estimators": 30}},
    "mlp": {"max_epochs": 15},
    "mlp-512": {"max_epochs": 5},
    "mlp-512-sgd": {"max_epochs": 5},
    "mlp-1024-rmsprop": {"max_epochs": 3},
    "cnn1d": {"max_epochs": 5},
}


def _fit(name, data, **extra):
    Xtr, ytr, Xva, yva, _, _ = data
    model = make_model(name, random_state=0, **{**FAST.get(name, {}), **extra})
    return model.fit(Xtr, ytr, X_valid=Xva, y_valid=yva, feature_names=FEATURE_COLUMNS)


@pytest.mark.parametrize("name", list(FAST))
def test_fit_predict_save_load_round_trip(name, data, tmp_path):
    *_, Xte, yte = data
    model = _fit(name, data)
    proba = model.predict_proba(Xte)
    assert proba.shape == (len(yte), 4)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert set(model.predict(Xte)) <= set(model.classes_)
    path = model.save(tmp_path / f"{name}.safetensors")
    again = load_model(path)
    assert type(again) is type(model)
    assert np.allclose(again.predict_proba(Xte), proba, atol=1e-6)
    assert (again.predict(Xte) == model.predict(Xte)).all()
    _, meta = load_model_file(path)
    assert meta["classes"] == ["blues", "classical", "country", "disco"]
    assert meta["input"] == {"type": "features", "columns": FEATURE_COLUMNS, "segment_seconds": None}
    assert meta["kind"] in ("sklearn", "mlp", "cnn1d")


@pytest.mark.parametrize("name", ["logreg", "svm", "mlp"])
def test_models_learn_the_synthetic_classes(name, data):
    *_, Xte, yte = data
    model = _fit(name, data, **({"max_epochs": 60} if name == "mlp" else {}))
    assert np.mean(model.predict(Xte) == yte) > 0.6  # chance is 0.25


def test_tuning_uses_the_validation_set(data):
    model = _fit("logreg", data)
    assert len(model.tuning_) == 5
    assert model.best_params_["C"] in [t["params"]["C"] for t in model.tuning_]
    untuned = make_model("logreg", tune=False).fit(data[0], data[1], X_valid=data[2], y_valid=data[3])
    assert untuned.tuning_ == [] and untuned.best_params_["C"] == 1.0


def test_top_k_selection_keeps_k_features(data):
    model = _fit("rf-top30", data)
    selected = model.selected_features()
    assert len(selected) == 30 and set(selected) <= set(FEATURE_COLUMNS)
    assert len(model.feature_importances()) == len(FEATURE_COLUMNS)
    with pytest.raises(ModelError, match="top_k"):
        make_model("svm-top99").fit(data[0], data[1])


def test_mlp_history_and_early_stopping(data):
    model = _fit("mlp", data, max_epochs=40, patience=3)
    assert model.history_ and {"loss", "acc", "val_loss", "val_acc"} <= set(model.history_[0])
    assert len(model.history_) <= 40
    assert 1 <= model.best_epoch_ <= len(model.history_)
    if len(model.history_) < 40:  # stopped early: patience epochs after the best
        assert len(model.history_) - model.best_epoch_ >= 3


@pytest.mark.parametrize("method", ["soft", "stacking"])
def test_ensemble_one_file_round_trip(method, data, tmp_path):
    from genrekit.models.ensemble import EnsembleModel

    *_, Xte, yte = data
    model = EnsembleModel(members=("logreg", "knn"), method=method, cv=2).fit(
        data[0], data[1], X_valid=data[2], y_valid=data[3], feature_names=FEATURE_COLUMNS)
    path = model.save(tmp_path / "ens.safetensors")
    tensors, meta = load_model_file(path)
    assert meta["kind"] == "ensemble" and len(meta["members"]) == 2
    assert any(k.startswith("m0.") for k in tensors) and any(k.startswith("m1.") for k in tensors)
    assert ("stack.coef" in tensors) == (method == "stacking")
    again = load_model(path)
    assert np.allclose(again.predict_proba(Xte), model.predict_proba(Xte))
    assert set(model.member_scores(Xte, yte)) == {"logreg", "knn"}


def test_soft_vote_is_the_mean_of_members(data):
    from genrekit.models.ensemble import EnsembleModel

    *_, Xte, _ = data
    ens = EnsembleModel(members=("logreg", "knn")).fit(data[0], data[1])
    mean = (ens.members_[0].predict_proba(Xte) + ens.members_[1].predict_proba(Xte)) / 2
    assert np.allclose(ens.predict_proba(Xte), mean)


def test_tampered_file_is_rejected(data, tmp_path):
    path = _fit("logreg", data).save(tmp_path / "m.safetensors")
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF  # flip a byte inside the tensor data
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="checksum"):
        load_model(path)
    path.write_bytes(bytes(raw[: len(raw) // 2]))
    with pytest.raises(ModelError):
        load_model(path)


def test_file_naming_an_untrusted_type_is_refused(tmp_path):
    """A validly checksummed file whose skops payload names a non-allow-listed callable is not loaded."""
    import os

    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    blob = np.frombuffer(sio.dumps(FunctionTransformer(func=os.system)), dtype=np.uint8).copy()
    meta = {"kind": "sklearn", "classes": ["a", "b"], "params": {"name": "logreg"},
            "input": {"type": "features", "columns": ["x"], "segment_seconds": None}}
    path = save_model_file(tmp_path / "evil.safetensors", {"skops": blob}, meta)
    with pytest.raises(ModelError, match="refusing"):
        load_model(path)


def test_weights_that_do_not_match_metadata_are_rejected(data, tmp_path):
    model = _fit("mlp", data, max_epochs=2)
    tensors, meta = model.get_state()
    meta["config"]["hidden"] = [32, 16, 8]
    path = save_model_file(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(ModelError, match="do not match"):
        load_model(path)


def test_bad_inputs_give_model_errors(data):
    model = _fit("logreg", data)
    X = data[4].copy()
    X[2, 5] = np.nan
    with pytest.raises(ModelError, match="NaN"):
        model.predict(X)
    with pytest.raises(ModelError, match="features"):
        model.predict(data[4][:, :10])
    with pytest.raises(ModelError, match="2 classes"):
        make_model("svm").fit(data[0], np.full(len(data[1]), "blues"))
    with pytest.raises(ModelError, match="unknown model"):
        make_model("nope")
    with pytest.raises(ModelError, match="not fitted"):
        make_model("knn").predict(data[4])


def test_linear_model_serves_logreg_without_sklearn(tmp_path):
    """The numpy-only copy of a fitted logistic regression gives the same probabilities and round-trips."""
    import numpy as np

    from genrekit.models import load_model
    from genrekit.models.classic import SklearnModel
    from genrekit.models.linear import LinearModel

    rng = np.random.default_rng(0)
    cols = ["rms_mean", "rms_var", "tempo", "mfcc1_mean"]
    X = np.abs(rng.normal(size=(90, 4))) + 0.1
    y = np.array(["blues", "jazz", "rock"] * 30)
    X[y == "jazz", 0] += 1.0
    X[y == "rock", 1] *= 5.0
    sk = SklearnModel("logreg", tune=False).fit(X, y, feature_names=cols)
    lin = LinearModel.from_sklearn(sk)
    np.testing.assert_allclose(lin.predict_proba(X), sk.predict_proba(X), atol=1e-9)
    lin.save(tmp_path / "lin.safetensors")
    again = load_model(tmp_path / "lin.safetensors")
    np.testing.assert_allclose(again.predict_proba(X), sk.predict_proba(X), atol=1e-9)
    assert list(again.classes_) == ["blues", "jazz", "rock"] and again.input_["columns"] == cols
