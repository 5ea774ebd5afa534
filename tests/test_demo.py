"""`genrekit demo` and the shipped model: the out-of-the-box path a new user takes."""

import json
from pathlib import Path

import numpy as np
import pytest

from genrekit import GENRES
from genrekit.cli import main
from helpers import tone, write_audio


def test_shipped_model_loads_and_classifies_any_length():
    from genrekit import GenreClassifier

    clf = GenreClassifier.load()
    assert clf.genres == list(GENRES) and clf.input["type"] == "hybrid"
    card = clf.model.meta_["card"]
    assert card["protocol"] == "fault-filtered" and card["n_tracks"] == 290
    r = clf.predict(tone(40.0, freq=220.0)[:, 0], sr=22050)
    assert r.genre in GENRES and sum(r.scores.values()) == pytest.approx(1.0)
    assert 39.0 <= r.segments[-1].end <= 40.0 + 1e-6  # tails under a third of a window are not re-windowed


def test_demo_without_arguments_shows_the_pipeline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GENREKIT_SHARED", str(tmp_path / "nowhere"))  # the part without GTZAN data
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    for text in ("synthesises itself", "NOT real music", "GTZAN features (57 columns", "log-mel spectrogram",
                 "classified by the shipped model", "genrekit predict ~/Music"):
        assert text in out, text


def test_demo_with_paths_classifies_them(tmp_path, capsys):
    f = write_audio(tmp_path / "a.wav", tone(5.0))
    (tmp_path / "bad.mp3").write_text("no\n" * 50)
    assert main(["demo", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "a.wav" in out and "ERROR" in out and "genrekit predict ~/Music" in out
    assert str(f) in out


@pytest.mark.shared
@pytest.mark.parametrize("name", ["genrekit-gtzan-fast", "genrekit-gtzan-musicnn", "genrekit-gtzan-blend"])
def test_shipped_model_on_real_clips(gtzan, capsys, name):
    """Each shipped model: every shared clip gets a GTZAN genre with scores summing to 1, and the default
    onnxruntime backend agrees with torch (the reference) on top-1."""
    from genrekit import audio
    from genrekit.predict import GenreClassifier

    files = sorted(map(Path, audio.find_audio([gtzan / "audio"])[0]))[::4]  # 31 clips keep the test short
    torch_clf = GenreClassifier.load(name, backend="torch")
    onnx_clf = GenreClassifier.load(name)
    assert (torch_clf.backend, onnx_clf.backend) == ("torch", "onnx")
    for f in files:
        a, b = torch_clf.predict(f), onnx_clf.predict(f)
        assert a.genre in GENRES and abs(sum(a.scores.values()) - 1) < 1e-6
        assert a.genre == b.genre, f
        assert np.isclose(a.scores[a.genre], b.scores[b.genre], atol=1e-3)


@pytest.mark.shared
def test_predict_json_over_shared_audio_says_nothing_it_should_not(gtzan, capsys):
    rc = main(["predict", str(gtzan / "audio" / "rock"), "--format", "json", "--no-progress", "--jobs", "2"])
    recs = json.loads(capsys.readouterr().out)
    assert rc == 0 and len(recs) == 14
    for r in recs:
        assert r["error"] is None and r["genre"] in GENRES
        assert set(r["scores"]) == set(GENRES) and abs(sum(r["scores"].values()) - 1) < 1e-4
