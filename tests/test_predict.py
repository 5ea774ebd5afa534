"""GenreClassifier, `genrekit predict/export/evaluate` with a tiny deep model trained here in seconds."""

import json

import numpy as np
import pytest

from genrekit.cli import main
from genrekit.errors import GenrekitError, LeakageError, ModelError
from genrekit.predict import GenreClassifier
from helpers import tone, write_audio


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A 2-genre CNN that tells a low tone (blues) from a high one (metal)."""
    from genrekit import spectrogram
    from genrekit.models.deep import DeepModel

    rng = np.random.default_rng(0)
    X, y = [], []
    for genre, f0 in (("blues", 110.0), ("metal", 3000.0)):
        for i in range(12):
            sig = tone(3.0, freq=f0 * (1 + 0.05 * rng.standard_normal()), seed=i)[:, 0]
            X.append(spectrogram.slices(spectrogram.logmel(sig))[0])
            y.append(genre)
    m = DeepModel("cnn", epochs=6, batch_size=8, lr=3e-3, verbose=False, device="cpu", patience=10, augment="none")
    m.fit(np.stack(X), np.array(y))
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    m.save(path, extra_meta={"train_tracks": ["blues.00001"]})
    return path


def test_predict_file_any_length(tiny_model, tmp_path):
    clf = GenreClassifier.load(tiny_model)
    low = write_audio(tmp_path / "low.wav", tone(70.0, freq=110.0))  # > 2 blocks, bounded memory
    r = clf.predict(low, top_k=1)
    assert r.genre == "blues"
    assert sum(r.scores.values()) == pytest.approx(1.0)
    assert set(r.scores) == {"blues", "metal"} and len(r.top) == 1
    assert r.duration == pytest.approx(70.0, abs=0.05)
    assert r.segments[0].start == 0.0 and r.segments[-1].end <= 70.0 + 1e-6
    assert len(r.segments) >= 20
    high = clf.predict(tone(5.0, sr=44100, freq=3000.0)[:, 0], sr=44100)
    assert high.genre == "metal"


def test_predict_short_clip_is_padded_and_tiny_one_rejected(tiny_model):
    clf = GenreClassifier.load(tiny_model)
    r = clf.predict(tone(1.0, freq=110.0)[:, 0], sr=22050)
    assert len(r.segments) == 1
    with pytest.raises(GenrekitError, match="shorter than one analysis frame"):
        clf.predict(np.zeros(100, np.float32), sr=22050)
    with pytest.raises(GenrekitError, match="sr="):
        clf.predict(np.zeros(22050, np.float32))


def test_tampered_model_is_rejected(tiny_model, tmp_path):
    data = bytearray(tiny_model.read_bytes())
    data[-10] ^= 0xFF
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum"):
        GenreClassifier.load(bad)
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ModelError):
        GenreClassifier.load(trunc)


def test_cli_predict_json_with_bad_files(tiny_model, tmp_path, capsys):
    write_audio(tmp_path / "in" / "a.wav", tone(4.0, freq=110.0))
    write_audio(tmp_path / "in" / "b.flac", tone(4.0, freq=3000.0))
    (tmp_path / "in" / "c.mp3").write_text("not audio\n" * 30)
    rc = main(["predict", str(tmp_path / "in"), "--model", str(tiny_model), "--format", "json", "--segments",
               "--no-progress"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    by = {r["file"].rsplit("/", 1)[1]: r for r in out}
    assert by["a.wav"]["genre"] == "blues" and by["b.flac"]["genre"] == "metal"
    assert by["a.wav"]["error"] is None and len(by["a.wav"]["segments"]) == 1
    assert by["c.mp3"]["genre"] is None and "not audio" in by["c.mp3"]["error"]


def test_cli_predict_out_resumes_from_journal(tiny_model, tmp_path):
    from genrekit.predict import GenreClassifier as GC
    from genrekit.run.predict import predict_settings
    from genrekit.run.sinks import JournalSink as Journal

    for i in range(3):
        write_audio(tmp_path / "in" / f"{i}.wav", tone(4.0, freq=110.0))
    out = tmp_path / "o.json"
    files = sorted(str(p) for p in (tmp_path / "in").iterdir())
    # a killed run left a journal with one finished record (and a torn line)
    j = Journal(out, settings=predict_settings(GC.load(tiny_model), segments=False, top_k=3))
    fake = {"file": files[0], "genre": "metal", "scores": {"metal": 1.0, "blues": 0.0}, "top": [["metal", 1.0]],
            "duration_s": 4.0, "error": None}
    j.append(files[0], fake)
    with open(j.path, "a") as f:
        f.write('{"key": "torn')
    cmd = ["predict", str(tmp_path / "in"), "--model", str(tiny_model), "--format", "json", "--out", str(out),
           "--no-progress"]
    assert main([*cmd, "--top-k", "2"]) == 0  # other settings (top-k): the journal is not used
    assert json.loads(out.read_text())[0]["genre"] == "blues"
    j = Journal(out, settings=predict_settings(GC.load(tiny_model), segments=False, top_k=3))
    j.append(files[0], fake)
    assert main(cmd) == 0
    recs = json.loads(out.read_text())
    assert [r["file"] for r in recs] == files
    assert recs[0]["genre"] == "metal"  # taken from the journal, not recomputed
    assert recs[1]["genre"] == "blues"
    assert not j.path.exists()


def test_cli_predict_parallel_matches_serial(tiny_model, tmp_path, capsys):
    for i in range(3):
        write_audio(tmp_path / "in" / f"{i}.wav", tone(4.0, freq=110.0 * (i + 1)))
    args = ["predict", str(tmp_path / "in"), "--model", str(tiny_model), "--format", "csv", "--no-progress"]
    main(args)
    serial = capsys.readouterr().out
    main([*args, "--jobs", "2"])
    assert capsys.readouterr().out == serial


def test_onnx_export_agrees_with_torch(tiny_model, tmp_path):
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", "--model", str(tiny_model), "--out", str(onnx_path)]) == 0
    a = GenreClassifier.load(tiny_model)
    b = GenreClassifier.load(onnx_path, backend="onnx")
    for f0 in (110.0, 500.0, 3000.0):
        y = tone(6.0, freq=f0)[:, 0]
        ra, rb = a.predict(y, sr=22050), b.predict(y, sr=22050)
        assert ra.genre == rb.genre
        assert ra.scores["blues"] == pytest.approx(rb.scores["blues"], abs=1e-4)


def test_cli_usage_errors(tiny_model, tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "genrekit", "predict", str(tmp_path), "--top-k", "0"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "top-k" in r.stderr
    r = subprocess.run([sys.executable, "-m", "genrekit", "predict", str(tmp_path), "--format", "xml"],
                       capture_output=True, text=True)
    assert r.returncode == 2


def test_evaluate_refuses_tracks_the_model_trained_on(tiny_model, tmp_path):
    from genrekit.experiments import evaluate_model

    for tid in ("blues.00001", "blues.00002", "metal.00001", "metal.00002"):
        g = tid.split(".")[0]
        write_audio(tmp_path / "d" / g / f"{tid}.wav", tone(3.0, freq=110.0 if g == "blues" else 3000.0))
    clf = GenreClassifier.load(tiny_model)
    with pytest.raises(LeakageError, match="trained on"):
        evaluate_model(clf, tmp_path / "d", protocol="all", progress=False)
    (tmp_path / "d" / "blues" / "blues.00001.wav").unlink()
    metrics = evaluate_model(clf, tmp_path / "d", protocol="all", progress=False).metrics
    assert metrics["n_tracks"] == 3 and metrics["accuracy"] == 1.0 and metrics["level"] == "track"


@pytest.fixture(scope="session")
def tiny_hybrid(tiny_model, tmp_path_factory):
    """The tiny CNN plus a logistic regression on a few cheap GTZAN features, as one hybrid file."""
    from genrekit import features
    from genrekit.models import load_model
    from genrekit.models.classic import SklearnModel
    from genrekit.models.hybrid import HybridModel

    cols = ["spectral_centroid_mean", "rolloff_mean", "zero_crossing_rate_mean", "mfcc1_mean", "mfcc2_mean"]
    rng = np.random.default_rng(1)
    X, y = [], []
    for genre, f0 in (("blues", 110.0), ("metal", 3000.0)):
        for i in range(8):
            sig = tone(3.0, freq=f0 * (1 + 0.05 * rng.standard_normal()), seed=10 + i)[:, 0]
            X.append(list(features.extract(sig, columns=cols).values()))
            y.append(genre)
    tab = SklearnModel("logreg", tune=False).fit(np.array(X), np.array(y), feature_names=cols)
    hybrid = HybridModel([load_model(tiny_model), tab], weights=[0.7, 0.3]).fit()
    path = tmp_path_factory.mktemp("hybrid") / "hybrid.safetensors"
    hybrid.save(path)
    return path


def test_hybrid_predicts_from_audio_and_precomputed_inputs(tiny_hybrid):
    from genrekit import features, spectrogram

    clf = GenreClassifier.load(tiny_hybrid)
    assert clf.input["type"] == "hybrid" and clf.genres == ["blues", "metal"]
    y = tone(12.0, freq=110.0)[:, 0]
    r = clf.predict(y, sr=22050)
    assert r.genre == "blues" and sum(r.scores.values()) == pytest.approx(1.0)
    assert len(r.segments) == 4  # the CNN's 3 s windows make the timeline
    row = features.extract(y)  # all 57 columns by name: the member takes its own
    pre = clf.predict_precomputed(levels=spectrogram.logmel(y), row=row)
    assert pre.genre == "blues" and pre.scores["blues"] == pytest.approx(r.scores["blues"], abs=0.02)
    with pytest.raises(ModelError, match="feature row"):
        clf.predict_precomputed(levels=spectrogram.logmel(y))


def test_hybrid_onnx_export_agrees(tiny_hybrid, tmp_path):
    out = tmp_path / "h.onnx"
    assert main(["export", "--model", str(tiny_hybrid), "--out", str(out)]) == 0
    a = GenreClassifier.load(tiny_hybrid)
    b = GenreClassifier.load(out, backend="onnx")
    for f0 in (110.0, 3000.0):
        y = tone(6.0, freq=f0)[:, 0]
        ra, rb = a.predict(y, sr=22050), b.predict(y, sr=22050)
        assert ra.genre == rb.genre and ra.scores["blues"] == pytest.approx(rb.scores["blues"], abs=1e-4)


def test_seed_ensemble_shares_one_front_end(tiny_model, tmp_path, monkeypatch):
    """A hybrid whose members are all spectrogram models (a seed ensemble) computes its log-mel once
    per block, and equals the mean of its members' track log-probabilities."""
    from genrekit import spectrogram
    from genrekit.models import load_model
    from genrekit.models.hybrid import HybridModel

    path = tmp_path / "ens.safetensors"
    HybridModel([load_model(tiny_model), load_model(tiny_model)]).fit().save(path)
    ens, single = GenreClassifier.load(path), GenreClassifier.load(tiny_model)
    calls = []
    real = spectrogram.logmel_for_input
    monkeypatch.setattr(spectrogram, "logmel_for_input", lambda y, inp: calls.append(1) or real(y, inp))
    y = tone(6.0, freq=110.0)[:, 0]
    r = ens.predict(y, sr=22050)
    assert len(calls) == 1
    assert r.scores == pytest.approx(single.predict(y, sr=22050).scores, abs=1e-6)
