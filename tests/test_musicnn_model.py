"""musicnn as a model member (issue 17): input validation, predict with a tiny musicnn head (tags, timeline,
temperature, min_confidence), shipped-model names, calibration metrics. Synthesised audio only."""

import json

import numpy as np
import pytest

from genrekit.errors import GenrekitError, ModelError
from helpers import tone, write_audio


def _head(tmp_path, *, temperature=None, standardise=False, name="head.safetensors"):
    """A logistic regression on random 200-d vectors as a musicnn head (2 genres), saved as a model file."""
    from genrekit.models.classic import SklearnModel
    from genrekit.models.inputs import musicnn_input

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 200))
    y = np.array(["blues", "metal"] * 20)
    X[y == "metal", :5] += 1.5
    std = {"audio": (np.full(200, 0.1), np.full(200, 2.0))} if standardise else None
    inp = musicnn_input(patches_per_block=2, backend="torch", standardise=std)
    m = SklearnModel("logreg", tune=False, params={"C": 1.0}, log_var=False).fit(X, y, feature_names=inp["columns"])
    m.input_ = inp
    extra = {} if temperature is None else {"temperature": temperature}
    return m.save(tmp_path / name, extra_meta=extra), m


def _bad_file(tmp_path, **changes):
    from genrekit.models.base import save_model_file
    from genrekit.models.inputs import musicnn_input

    inp = musicnn_input()
    inp.update(changes)
    return save_model_file(tmp_path / "bad.safetensors", {"x": np.zeros(1)}, {"kind": "sklearn", "input": inp})


@pytest.mark.parametrize("changes, text", [
    ({"layer": "cnn9"}, "input.layer"),
    ({"model": "VGG"}, "input.model"),
    ({"pool": "max"}, "input.pool"),
    ({"patches_per_block": 0}, "patches_per_block"),
    ({"patches_per_block": 11}, "patches_per_block"),
    ({"patches_per_block": True}, "patches_per_block"),
    ({"backend": "tf"}, "input.backend"),
    ({"columns": ["a"]}, "input.columns"),
    ({"standardise": {"image": {"mean": [0.0] * 200, "std": [1.0] * 200}}}, "input.standardise"),
    ({"standardise": {"audio": {"mean": [0.0] * 200, "std": [0.0] * 200}}}, "input.standardise.audio"),
])
def test_musicnn_member_input_is_validated_on_load(tmp_path, changes, text):
    from genrekit.models.base import load_model_file

    with pytest.raises(ModelError, match=text):
        load_model_file(_bad_file(tmp_path, **changes))


def test_temperature_is_validated(tmp_path):
    from genrekit.models.base import load_model_file, save_model_file

    for bad in (0.0, -1.0, "2", 1e9):
        p = save_model_file(tmp_path / "t.safetensors", {"x": np.zeros(1)}, {"kind": "sklearn", "temperature": bad})
        with pytest.raises(ModelError, match="temperature"):
            load_model_file(p)


def test_predict_with_a_musicnn_head(tmp_path):
    """Per 30 s block musicnn patches make the timeline; the track score is the head on the mean of the
    audible patches' vectors, calibrated by the file's temperature; tags come from the same pass."""
    from genrekit.dsp import rms_db
    from genrekit.networks import musicnn as embeddings
    from genrekit.predict import GenreClassifier, calibrate, record_for

    path, head = _head(tmp_path, temperature=0.5, standardise=True)
    clf = GenreClassifier.load(path)
    assert clf.temperature == 0.5 and clf.musicnn is not None
    y = tone(40.0, freq=330.0)[:, 0]
    silent = np.concatenate([np.zeros(22050 * 9, np.float32), y])  # 9 s of silence first
    f = write_audio(tmp_path / "a.wav", silent)
    r = clf.predict(silent, sr=22050, top_k=2)
    # 2 patches per full 30 s block (the first, at 6 s, in the silence), 2 in the 19 s tail block
    assert len(r.segments) == 4 and r.segments[0].silent and r.segments[0].genre is None
    assert not any(s.silent for s in r.segments[1:]) and r.segments[-1].end <= 49.0 + 1e-6
    # the expected score, recomputed from the audible patches
    vecs, tags = [], []
    for b in (silent[: 30 * 22050], silent[30 * 22050:]):
        e = embeddings.embed(b, sr=22050, patches_per_block=2)
        for i, s in enumerate(e.starts):
            seg = b[int(round(s * 22050)): int(round(min(b.size / 22050, s + embeddings.PATCH_SECONDS) * 22050))]
            if rms_db(seg) >= -60.0:
                vecs.append(e.penultimate[i])
                tags.append(e.taggram[i])
    assert len(vecs) == 3
    v = (np.mean(vecs, axis=0) - 0.1) / 2.0
    raw = head.predict_proba(v[None].astype(np.float64))
    want = calibrate(np.clip(raw, 1e-12, 1) / np.clip(raw, 1e-12, 1).sum(), 0.5)[0]
    got = np.array([r.scores[g] for g in clf.genres])
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert r.tags is not None and len(r.tags) == 5
    mean_tags = np.mean(tags, axis=0)
    assert r.tags[0][0] == embeddings.tag_names()[int(mean_tags.argmax())]

    rec = record_for(clf, str(f), min_confidence=1.0)
    assert rec["uncertain"] is True and [t for t, _ in rec["tags"]] == [t for t, _ in r.tags]
    assert record_for(clf, str(f), min_confidence=0.0)["uncertain"] is False
    assert "uncertain" not in record_for(clf, str(f))


def test_patches_per_block_override(tmp_path):
    """load(patches_per_block=) overrides the member's own count (2 in the file): "all" scores every
    patch of the block, an integer that many; bad values are refused before any work."""
    from genrekit.predict import GenreClassifier
    from genrekit.run.predict import PredictTask

    path, _ = _head(tmp_path)
    y = tone(30.0, freq=330.0)[:, 0]
    own = GenreClassifier.load(path).predict(y, sr=22050)
    every = GenreClassifier.load(path, patches_per_block="all").predict(y, sr=22050)
    four = GenreClassifier.load(path, patches_per_block="4").predict(y, sr=22050)
    assert (len(own.segments), len(every.segments), len(four.segments)) == (2, 10, 4)
    assert own.scores != every.scores
    for bad in (0, 11, "some", True):
        with pytest.raises(GenrekitError, match="patches_per_block"):
            GenreClassifier.load(path, patches_per_block=bad)
    # worker processes load the same override
    task = PredictTask(model=path, patches_per_block="all")
    f = write_audio(tmp_path / "a.wav", y)
    assert len(task(str(f))["scores"]) == 2 and task.classifier().patches_per_block == "all"


def test_musicnn_head_in_a_hybrid_with_precomputed_inputs(tmp_path, tiny_model):
    """The head mixes with a CNN member by the mean-log rule; an embedding can be handed in directly."""
    from genrekit.metrics import mean_log_proba
    from genrekit.models import load_model
    from genrekit.models.hybrid import HybridModel
    from genrekit.networks import musicnn as embeddings
    from genrekit.predict import GenreClassifier

    path, head = _head(tmp_path)
    hp = HybridModel([load_model(path), load_model(tiny_model)], weights=[0.5, 0.5]).fit().save(tmp_path / "h.safetensors")
    clf = GenreClassifier.load(hp)
    assert [m.input.type for m in clf.members] == ["musicnn", "logmel"]
    f = write_audio(tmp_path / "b.wav", tone(8.0, freq=500.0))
    r = clf.predict(f)
    assert r.tags is not None and abs(sum(r.scores.values()) - 1) < 1e-6
    assert all(s.end - s.start == pytest.approx(3.0, abs=0.05) for s in r.segments[:-1])  # the CNN's 3 s slices
    e = embeddings.embed(np.zeros(16000 * 4, np.float32) + np.sin(np.arange(64000) / 7.0).astype(np.float32))
    with pytest.raises(ModelError, match="log-mel"):
        clf.predict_precomputed(embedding=e)
    solo = GenreClassifier.load(path).predict_precomputed(embedding=e)
    p = head.predict_proba(e.penultimate.astype(np.float64))
    assert solo.genre == head.classes_[int(mean_log_proba(p).argmax())]


def test_shipped_model_names_resolve(tmp_path, capsys, tiny_model):
    from genrekit.cli import main
    from genrekit.predict import SHIPPED_MODELS, default_model_path, model_path

    fast = model_path("genrekit-gtzan-fast")
    assert fast == default_model_path("genrekit-gtzan-fast") and fast.is_file()
    assert fast.name == SHIPPED_MODELS["genrekit-gtzan-fast"] and model_path(None) == default_model_path()
    with pytest.raises(ModelError, match="unknown shipped model"):
        default_model_path("nope")
    f = write_audio(tmp_path / "c.wav", tone(4.0))
    assert main(["predict", str(f), "--model", "genrekit-gtzan-fast", "--format", "json", "--no-progress",
                 "--no-styles"]) == 0
    rec = json.loads(capsys.readouterr().out)[0]
    assert list(rec) == ["file", "genre", "scores", "top", "duration_s", "error"]  # no tags, no uncertain, no styles
    assert main(["predict", str(f), "--model", str(tiny_model), "--format", "json", "--no-progress",
                 "--min-confidence", "0.99", "--tags", "--no-styles"]) == 0  # the score rule alone
    rec = json.loads(capsys.readouterr().out)[0]
    assert list(rec) == ["file", "genre", "scores", "top", "duration_s", "tags", "uncertain", "error"]
    assert rec["uncertain"] is (max(rec["scores"].values()) < 0.99) and len(rec["tags"]) == 5
    assert main(["predict", str(f), "--min-confidence", "2"]) == 2


def test_calibration_metrics():
    from genrekit.metrics import expected_calibration_error, fit_temperature, reliability_bins, softmax

    rng = np.random.default_rng(1)
    classes = ["a", "b", "c"]
    logits = rng.normal(scale=3.0, size=(4000, 3))
    true_p = softmax(logits / 2.0)  # labels drawn at temperature 2: the raw softmax is over-confident
    y = np.array([rng.choice(classes, p=p) for p in true_p])
    over = softmax(logits)
    t = fit_temperature(y, over, classes)
    assert 1.7 < t < 2.3
    assert expected_calibration_error(y, true_p, classes) < 0.03 < expected_calibration_error(y, over, classes)
    b = reliability_bins(y, over, classes, n_bins=5)
    assert b["count"].sum() == 4000 and len(b["edges"]) == 6
    with pytest.raises(GenrekitError):
        reliability_bins(y, over[:, :2], classes)


def test_train_on_an_embedding_table_and_predict(tmp_path, capsys):
    """`genrekit train --input musicnn` on an .npz table: the saved model reads audio through musicnn."""
    from genrekit.cli import main
    from genrekit.predict import GenreClassifier

    rng = np.random.default_rng(2)
    labels = np.array(["blues", "metal"] * 15)
    X = rng.normal(size=(30, 200)).astype(np.float32)
    X[labels == "metal", :3] += 2.0
    ids = np.array([f"{g}.{i:05d}" for i, g in enumerate(labels)])
    table = tmp_path / "emb.npz"
    np.savez(table, track_ids=ids, labels=labels, penultimate=X)
    out = tmp_path / "run"
    assert main(["train", "--model", "logreg", "--data", str(table), "--input", "musicnn", "--protocol", "random",
                 "--out", str(out), "--no-progress"]) == 0
    clf = GenreClassifier.load(out / "model.safetensors")
    assert clf.input["type"] == "musicnn" and clf.input["layer"] == "penultimate"
    r = clf.predict(write_audio(tmp_path / "x.wav", tone(4.0)))
    assert r.genre in ("blues", "metal") and r.tags is not None
    bad = tmp_path / "bad.npz"
    np.savez(bad, track_ids=ids, labels=labels)
    capsys.readouterr()
    assert main(["train", "--model", "logreg", "--data", str(bad), "--input", "musicnn", "--protocol", "random",
                 "--out", str(tmp_path / "r2"), "--no-progress"]) != 0
    assert "lacks penultimate" in capsys.readouterr().err


def test_finetune_a_musicnn_head_on_labelled_folders(tmp_path):
    """Few-shot: 4 synthesised tracks per label, embeddings cached, a model predict takes."""
    from genrekit.experiments import finetune_musicnn
    from genrekit.predict import GenreClassifier

    for g, f0 in (("low", 110.0), ("high", 1760.0)):
        for i in range(4):
            write_audio(tmp_path / "data" / g / f"{g}{i}.wav", tone(3.5, freq=f0 * (1 + 0.05 * i), seed=i))
    res = finetune_musicnn(tmp_path / "data", tmp_path / "ft", head="logreg", valid_size=0.25, progress=False)
    assert sorted(res.classes) == ["high", "low"] and len(res.folds[0].track_ids) == 2
    clf = GenreClassifier.load(res.model_file)
    assert clf.input["type"] == "musicnn"
    r = clf.predict(write_audio(tmp_path / "q.wav", tone(4.0, freq=1800.0)))
    assert r.genre == "high"


def test_rest_min_confidence(tmp_path):
    """`POST /api/predict?min_confidence=P` marks the record; without it the record is as before."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from genrekit.serve import create_app

    path, _ = _head(tmp_path)
    data = write_audio(tmp_path / "s.wav", tone(4.0)).read_bytes()
    with TestClient(create_app(path, workers=1)) as c:
        def post(params):
            return c.post("/api/predict", files={"file": ("s.wav", data, "application/octet-stream")}, params=params)

        r = post({"min_confidence": 1.0})
        assert r.status_code == 200, r.text
        assert r.json()["uncertain"] is True and len(r.json()["tags"]) == 5
        assert "uncertain" not in post({}).json()
        assert post({"min_confidence": 2}).status_code == 422
