"""Styles on every prediction record: the ear's windows, the record, every face, and `tag --styles` undo.

The genre model is a 2-genre CNN trained here in seconds; the styles come from the shipped mn04 (real
weights, onnxruntime), heard on synthesised audio."""

import csv
import io
import json

import numpy as np
import pytest

from genrekit.cli import main
from genrekit.networks.mn04.spec import SR as SR32
from genrekit.networks.mn04.spec import WINDOW_SAMPLES, genre_labels
from genrekit.predict import GenreClassifier, Prediction
from genrekit.styles_ear import MAX_WINDOWS, StylesEar
from helpers import tone, write_audio

OLD_KEYS = ["file", "genre", "scores", "top", "duration_s", "error"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 2-genre CNN (a low tone is blues, a high one metal): any model gets styles."""
    from genrekit import spectrogram
    from genrekit.models.deep import DeepModel

    rng = np.random.default_rng(0)
    X, y = [], []
    for genre, f0 in (("blues", 110.0), ("metal", 3000.0)):
        for i in range(8):
            sig = tone(3.0, freq=f0 * (1 + 0.05 * rng.standard_normal()), seed=i)[:, 0]
            X.append(spectrogram.slices(spectrogram.logmel(sig))[0])
            y.append(genre)
    m = DeepModel("cnn", epochs=3, batch_size=8, verbose=False, device="cpu", augment="none")
    m.fit(np.stack(X), np.array(y))
    return m.save(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def _music(seconds: float, sr: int = 44100, seed: int = 0) -> np.ndarray:
    """Chords with a beat: audible everywhere, different in every 10 s."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = sum(0.1 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))
    y = y * (0.6 + 0.4 * (np.sin(2 * np.pi * 2.0 * t) > 0)) + 0.02 * rng.standard_normal(t.size)
    return y.astype(np.float32)


# ------------------------------------------------------------------------------------ the ear's windows
def test_ear_hears_a_30s_clip_as_three_windows_side_by_side():
    ear = StylesEar()
    y = _music(30.0)
    for i in range(0, y.size, 44100 * 7):  # blocks of any size, as a decoder gives them
        ear.hear(y[i:i + 44100 * 7], 44100)
    ws = ear.windows()
    assert [w.size for w in ws] == [WINDOW_SAMPLES] * 3
    assert [j for j, _ in ear.kept] == [0, 1, 2]


def test_ear_spreads_a_budget_over_a_long_song_with_bounded_memory():
    ear = StylesEar()
    y = _music(10.0, sr=SR32)
    held = []
    for _ in range(40):  # 400 s: 40 candidate windows
        ear.hear(y, SR32)
        held.append(len(ear.kept))
    assert max(held) <= 2 * MAX_WINDOWS  # never more than twice the budget in memory
    ws = ear.windows()
    assert len(ws) == MAX_WINDOWS
    picked = [j for j, _ in ear.kept]
    assert picked[0] < 8 and picked[-1] >= 24  # spread: from the start to the last part of the song
    idx = (2 * np.arange(MAX_WINDOWS) + 1) * len(picked) // (2 * MAX_WINDOWS)
    chosen = [picked[int(i)] for i in idx]
    assert chosen == sorted(set(chosen)) and chosen[-1] - chosen[0] >= 20


def test_ear_skips_silent_windows_and_hears_short_clips_whole():
    ear = StylesEar()
    ear.hear(np.zeros(int(10 * SR32), np.float32), SR32)  # a silent intro is no style
    ear.hear(_music(10.0, sr=SR32), SR32)
    assert [j for j, _ in ear.kept] == [1]
    short = StylesEar()
    short.hear(_music(3.0), 44100)
    assert [w.size for w in short.windows()] == [3 * SR32]
    silent = StylesEar()
    silent.hear(np.zeros(5 * SR32, np.float32), SR32)
    assert silent.styles() is None
    with pytest.raises(ValueError, match="Hz"):
        short.hear(np.zeros(10, np.float32), 22050)  # one song, one rate


def test_ear_styles_match_mn04_on_the_whole_clip():
    """The streamed 32 kHz windows give the styles ``networks.mn04`` gives the whole clip."""
    from genrekit.networks.mn04.model import embed
    from genrekit.networks.mn04.styles import styles

    y = _music(30.0, seed=3)
    ear = StylesEar()
    ear.hear(y, 44100)
    got = ear.styles()
    want = styles(embed(y, 44100).logits, k=3)
    assert [n for n, _ in got] == [n for n, _ in want]
    assert np.allclose([p for _, p in got], [p for _, p in want], atol=2e-3)


# ------------------------------------------------------------------------------------ the record
def test_record_carries_styles_and_no_styles_leaves_it_as_before(tiny_model, tmp_path):
    clf = GenreClassifier.load(tiny_model)
    path = write_audio(tmp_path / "song.wav", _music(35.0), sr=44100)
    with_styles = clf.predict(path)
    without = clf.predict(path, styles=False)
    assert without.styles is None and list(without.to_dict()) == OLD_KEYS
    # the tap does not touch the genre model's stream: the same scores to the last bit
    assert with_styles.scores == without.scores and with_styles.to_dict(segments=True)["segments"] == \
        without.to_dict(segments=True)["segments"]
    rec = with_styles.to_dict()
    assert list(rec) == [*OLD_KEYS[:-1], "styles", "error"]
    names = [n for n, _ in rec["styles"]]
    ps = [p for _, p in rec["styles"]]
    assert len(rec["styles"]) == 3 and set(names) <= set(genre_labels()) and ps == sorted(ps, reverse=True)
    assert all(0.0 <= p <= 1.0 for p in ps)
    # samples in memory hear the same as the file
    y = _music(35.0)
    from_samples = clf.predict(y, sr=44100)
    assert [n for n, _ in from_samples.styles] == names


def test_uncertain_uses_the_styles():
    house = Prediction("disco", {"disco": 0.9, "pop": 0.1}, [("disco", 0.9)], 30.0,
                       styles=[("House music", 0.8), ("Electronic music", 0.7), ("Disco", 0.3)])
    assert house.to_dict(min_confidence=0.5)["uncertain"] is True  # a style beyond the ten outvotes disco
    disco = Prediction("disco", {"disco": 0.9, "pop": 0.1}, [("disco", 0.9)], 30.0,
                       styles=[("Disco", 0.85), ("House music", 0.8), ("Funk", 0.3)])
    assert disco.to_dict(min_confidence=0.5)["uncertain"] is False
    plain = Prediction("disco", {"disco": 0.9, "pop": 0.1}, [("disco", 0.9)], 30.0)
    assert plain.to_dict(min_confidence=0.5)["uncertain"] is False and "uncertain" not in house.to_dict()
    low = Prediction("disco", {"disco": 0.4, "pop": 0.6}, [("disco", 0.4)], 30.0, styles=house.styles)
    assert low.to_dict(min_confidence=0.5)["uncertain"] is True


# ------------------------------------------------------------------------------------ the faces
def test_cli_table_json_csv_parquet_carry_styles(tiny_model, tmp_path, capsys):
    song = write_audio(tmp_path / "a" / "song.wav", _music(12.0), sr=44100)
    bad = tmp_path / "a" / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk")
    assert main(["predict", str(song), "--model", str(tiny_model), "--format", "json", "--no-progress"]) == 0
    rec = json.loads(capsys.readouterr().out)[0]
    assert len(rec["styles"]) == 3

    assert main(["predict", str(song), "--model", str(tiny_model), "--no-progress"]) == 0
    assert "styles: " + rec["styles"][0][0] in capsys.readouterr().out

    assert main(["predict", str(tmp_path / "a"), "--model", str(tiny_model), "--format", "csv", "--no-progress"]) == 1
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    good = next(r for r in rows if r["file"].endswith("song.wav"))
    assert json.loads(good["styles"]) == rec["styles"]
    assert next(r for r in rows if r["file"].endswith("bad.wav"))["styles"] == ""

    assert main(["predict", str(song), "--model", str(tiny_model), "--format", "csv", "--no-styles",
                 "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "file,genre,blues,metal,error"  # as before

    import pandas as pd

    out = tmp_path / "parts"
    assert main(["predict", str(song), "--model", str(tiny_model), "--out", f"{out}/", "--no-progress"]) == 0
    capsys.readouterr()
    df = pd.read_parquet(out)
    assert [(s["tag"], round(s["score"], 6)) for s in df.iloc[0]["styles"]] == [tuple(s) for s in rec["styles"]]


def test_journal_resume_keeps_styles_and_no_styles_outputs_apart(tiny_model, tmp_path, capsys):
    song = write_audio(tmp_path / "song.wav", _music(5.0), sr=44100)
    out = tmp_path / "out.json"
    assert main(["predict", str(song), "--model", str(tiny_model), "--format", "json", "--out", str(out),
                 "--no-styles", "--no-progress"]) == 0
    assert "styles" not in json.loads(out.read_text())[0]
    assert main(["predict", str(song), "--model", str(tiny_model), "--format", "json", "--out", str(out),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert "styles" in json.loads(out.read_text())[0]  # other settings: redone, not resumed


def test_rest_records_equal_the_cli_s(tiny_model, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from genrekit.predict import record_for
    from genrekit.serve import create_app

    song = write_audio(tmp_path / "song.wav", _music(12.0), sr=44100)
    local = record_for(GenreClassifier.load(tiny_model), str(song), min_confidence=0.5)
    with TestClient(create_app(tiny_model, workers=1)) as c:
        r = c.post("/api/predict?min_confidence=0.5", files={"file": ("song.wav", song.read_bytes(), "audio/wav")})
        assert r.status_code == 200
        rec = r.json()
        assert rec["styles"] == local["styles"] and rec["uncertain"] == local["uncertain"]
        r = c.post("/api/predict", files={"file": ("song.wav", song.read_bytes(), "audio/wav")}, data={"styles": "false"})
        assert r.status_code == 200 and "styles" not in r.json()


def test_local_processes_give_the_records_of_this_process(tiny_model, tmp_path):
    """What a worker (local pool or Ray: the same PredictTask) returns is this process's record."""
    from genrekit.predict import record_for
    from genrekit.run.engines import LocalEngine
    from genrekit.run.predict import PredictTask, predict_records

    files = [str(write_audio(tmp_path / f"s{i}.wav", _music(6.0, seed=i), sr=44100)) for i in range(2)]
    clf = GenreClassifier.load(tiny_model)
    want = {f: record_for(clf, f) for f in files}
    got = {r["file"]: r for r in predict_records(files, str(tiny_model), LocalEngine(jobs=2, progress=False))}
    assert got == want
    task = PredictTask(model=str(tiny_model)).portable()  # what Ray ships
    assert task(files[0]) == want[files[0]]
    assert "styles" not in PredictTask(model=str(tiny_model), styles=False)(files[0])


def test_tag_styles_writes_genrekit_styles_and_undo_restores_every_byte(tiny_model, tmp_path, capsys):
    import mutagen

    from genrekit.library import tagging

    lib = tmp_path / "lib"
    lib.mkdir()
    ogg = write_audio(lib / "a.ogg", _music(12.0), sr=44100)
    flac = write_audio(lib / "b.flac", _music(12.0, seed=1), sr=44100)
    originals = {p: p.read_bytes() for p in (ogg, flac)}
    clf = GenreClassifier.load(tiny_model)
    want = {p: [n for n, _ in clf.predict(p).styles] for p in (ogg, flac)}
    jpath = tmp_path / "j.jsonl"
    assert main(["tag", str(lib), "--model", str(tiny_model), "--styles", "--write", "--journal", str(jpath),
                 "--no-progress", "--format", "json"]) == 0
    rows = {r["file"]: r for r in json.loads(capsys.readouterr().out)}
    for p in (ogg, flac):
        assert rows[str(p)]["new_styles"] == want[p] and rows[str(p)]["current_styles"] == []
        assert tagging.read_tags(p, fields=[tagging.STYLES_FIELD]).extra[tagging.STYLES_FIELD] == want[p]
    assert list(mutagen.File(ogg).tags["GENREKIT_STYLES"]) == want[ogg]
    assert list(mutagen.File(flac).tags["GENREKIT_STYLES"]) == want[flac]
    # a file whose genre the policy keeps still gets its styles, and a second run has nothing to do
    assert main(["tag", str(lib), "--model", str(tiny_model), "--styles", "--no-progress", "--format", "json"]) == 0
    assert {r["action"] for r in json.loads(capsys.readouterr().out)} == {"skipped"}
    assert main(["tag", "--undo", str(jpath)]) == 0
    capsys.readouterr()
    assert all(p.read_bytes() == b for p, b in originals.items())
    # without --styles nothing of the styles is read, proposed or written
    assert main(["tag", str(lib), "--model", str(tiny_model), "--no-progress", "--format", "json"]) == 0
    assert all("new_styles" not in r for r in json.loads(capsys.readouterr().out))
