"""Issue 15: small files that decode to hours, and files with no music.

Decoded-duration limits (API, CLI, REST), the REST time budget, memory bounded by the block size
whatever a file decodes to, and silence (digital or below -60 dBFS) getting no genre on every face while
a song with a silent intro is still classified on its music. Every file is synthesised here."""

from __future__ import annotations

import io
import json
import math
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genrekit import audio
from genrekit.cli import main
from genrekit.errors import DurationLimitError, GenrekitError, SilentAudioError
from genrekit.predict import SILENCE_DB, GenreClassifier, record_for, rms_db
from helpers import tone, write_audio

SR = 22050


# ------------------------------------------------------------------------------------ files
def silent_flac_bomb(hours: float = 8.0, sr: int = 8000) -> bytes:
    """Digital silence at 8 kHz in FLAC: 8 hours in about 0.73 MB."""
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", sr, 1, format="FLAC", subtype="PCM_16") as f:
        z = np.zeros(sr * 600, np.int16)
        for _ in range(int(round(hours * 6))):
            f.write(z)
    return buf.getvalue()


def low_noise_flac_bomb(hours: float = 1.0, sr: int = 2000) -> bytes:
    """An hour of +-1 LSB noise (about -96 dBFS) at 2 kHz in FLAC: about 1.4 MB."""
    rng = np.random.default_rng(15)
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", sr, 1, format="FLAC", subtype="PCM_16") as f:
        for _ in range(int(round(hours * 60))):
            f.write(np.round(0.5 * rng.standard_normal(sr * 60)).astype(np.int16))
    return buf.getvalue()


def hiss(seconds: float, db: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """White noise whose RMS is ``db`` dBFS."""
    return (10 ** (db / 20) * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(np.float32)


def flac_bytes(y: np.ndarray, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def with_silent_intro(seconds_silent: float, y: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros(int(seconds_silent * SR), np.float32), y.astype(np.float32)])


class PeakRss:
    """Samples this process's RSS every few ms while the block runs; ``growth_mb`` is peak minus start."""

    def __init__(self):
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.005)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._rss())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / 1024


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A 2-genre CNN that tells a low tone (blues) from a high one (metal): it has learned something."""
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
    return m.save(tmp_path_factory.mktemp("model") / "lowhigh.safetensors")


@pytest.fixture(scope="module")
def hybrid(model, tmp_path_factory) -> Path:
    """The CNN plus a logistic regression on a few features of the whole block (the shipped model's shape)."""
    from genrekit import features
    from genrekit.models import load_model
    from genrekit.models.classic import SklearnModel
    from genrekit.models.hybrid import HybridModel

    cols = ["spectral_centroid_mean", "rolloff_mean", "zero_crossing_rate_mean", "mfcc1_mean"]
    X, y = [], []
    for genre, f0 in (("blues", 110.0), ("metal", 3000.0)):
        for i in range(6):
            X.append(list(features.extract(tone(3.0, freq=f0 * (1 + 0.03 * i), seed=20 + i)[:, 0], columns=cols).values()))
            y.append(genre)
    tab = SklearnModel("logreg", tune=False).fit(np.array(X), np.array(y), feature_names=cols)
    path = tmp_path_factory.mktemp("hybrid") / "hybrid.safetensors"
    HybridModel([load_model(model), tab], weights=[0.75, 0.25]).fit().save(path)
    return path


@pytest.fixture(scope="module")
def clf(model) -> GenreClassifier:
    return GenreClassifier.load(model)


# ------------------------------------------------------------------------------------ silence: API + CLI
def test_rms_db_measures_sound_not_dc():
    assert rms_db(np.zeros(1000)) == -math.inf
    assert rms_db(np.full(1000, 0.5)) == -math.inf  # a DC offset is no sound
    t = np.arange(SR) / SR
    assert rms_db(0.5 * np.sin(2 * np.pi * 440 * t)) == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.01)
    assert rms_db(hiss(1.0, -70.0)) == pytest.approx(-70.0, abs=0.2)
    assert rms_db(np.zeros(0)) == -math.inf


@pytest.mark.parametrize(("what", "y", "needle"), [
    ("digital silence", np.zeros(10 * SR, np.float32), r"RMS -inf dBFS < -60 dBFS"),
    ("DC offset", np.full(10 * SR, 0.25, np.float32), r"RMS -inf dBFS < -60 dBFS"),
    ("hiss at -70 dBFS", hiss(10.0, -70.0), r"RMS -7\d\.\d dBFS < -60 dBFS"),
])
def test_silent_and_near_silent_audio_has_no_genre(clf, tmp_path, what, y, needle):
    with pytest.raises(SilentAudioError, match=r"^samples: no audible signal \(" + needle + r"\)$"):
        clf.predict(y, sr=SR)
    path = write_audio(tmp_path / "quiet.flac", y, subtype="PCM_24")
    rec = record_for(clf, str(path), segments=True)
    assert rec["genre"] is None and rec["scores"] is None and rec["segments"] is None
    assert rec["error"].startswith(f"{path}: no audible signal (RMS ")


def test_quiet_music_above_the_threshold_is_classified(clf):
    y = tone(10.0, freq=3000.0)[:, 0]
    y = y * 10 ** ((SILENCE_DB + 12 - rms_db(y)) / 20)  # -48 dBFS: quieter than any GTZAN window
    r = clf.predict(y, sr=SR)
    assert r.genre == "metal" and not any(s.silent for s in r.segments)


def test_silent_intro_is_marked_and_the_song_classified_on_its_music(clf):
    music = tone(12.0, freq=3000.0)[:, 0]
    r = clf.predict(with_silent_intro(12.0, music), sr=SR)
    assert r.genre == "metal"
    silent = [s for s in r.segments if s.silent]
    heard = [s for s in r.segments if not s.silent]
    assert silent and heard and all(s.end <= 12.0 + 1e-6 for s in silent)
    assert all(s.genre is None and s.scores is None for s in silent)
    assert all(s.genre == "metal" for s in heard if s.start >= 12.0)  # (one window straddles the edge)
    # the track's score is the mean log-probability of the audible windows only
    logp = np.mean([np.log([s.scores[g] for g in clf.genres]) for s in heard], axis=0)
    expect = np.exp(logp - logp.max()) / np.exp(logp - logp.max()).sum()
    assert [r.scores[g] for g in clf.genres] == pytest.approx(list(expect), abs=1e-6)
    d = r.to_dict(segments=True)
    first = d["segments"][0]
    assert first == {"start": 0.0, "end": first["end"], "genre": None, "scores": None, "silent": True}
    assert "silent" not in d["segments"][-1]  # audible windows keep the record they always had


def test_silent_blocks_skip_the_spectrogram_and_give_the_same_record(model, monkeypatch):
    from genrekit import spectrogram

    class NoCache(dict):
        def __setitem__(self, k, v):
            pass

    y = with_silent_intro(95.0, tone(10.0, freq=3000.0)[:, 0])  # 3 silent blocks, then the music
    calls = []
    real = spectrogram.logmel_for_input
    monkeypatch.setattr(spectrogram, "logmel_for_input", lambda y, inp: calls.append(y.size) or real(y, inp))
    fast = GenreClassifier.load(model).predict(y, sr=SR)
    assert len(calls) == 2  # the first silent block (to learn a block's width) and the last one
    slow_clf = GenreClassifier.load(model)
    slow_clf._full_block_frames = NoCache()
    slow = slow_clf.predict(y, sr=SR)
    assert len(calls) == 2 + 4
    assert fast.to_dict(segments=True) == slow.to_dict(segments=True)
    assert fast.genre == "metal" and sum(s.silent for s in fast.segments) >= 30


def test_hybrid_skips_silent_windows_in_every_member(hybrid):
    h = GenreClassifier.load(hybrid)
    r = h.predict(with_silent_intro(40.0, tone(20.0, freq=110.0)[:, 0]), sr=SR)  # block 1 all silent
    assert r.genre == "blues" and sum(r.scores.values()) == pytest.approx(1.0)
    assert all(s.silent for s in r.segments if s.end <= 30.0)
    assert all(s.genre == "blues" for s in r.segments if s.start >= 40.0)
    with pytest.raises(SilentAudioError, match="no audible signal"):
        h.predict(np.zeros(40 * SR, np.float32), sr=SR)


def test_hybrid_member_that_hears_nothing_is_neutral(hybrid, model):
    """Half a second of quiet tone in 30 s: audible in its 3 s windows, not over the feature member's whole
    30 s window. That member then has no opinion (uniform), so the hybrid's score is the CNN's, sharpened
    by the CNN's weight: normalise(p_cnn ** 0.75)."""
    y = np.zeros(30 * SR, np.float32)
    t = np.arange(SR // 2) / SR
    burst = np.sin(2 * np.pi * 3000 * t)
    y[10 * SR : 10 * SR + burst.size] = burst * 10 ** ((-45 - rms_db(burst)) / 20)
    h, cnn = GenreClassifier.load(hybrid), GenreClassifier.load(model)
    assert rms_db(y) < SILENCE_DB
    r, c = h.predict(y, sr=SR), cnn.predict(y, sr=SR)
    assert [s.silent for s in r.segments] == [s.silent for s in c.segments] and not all(s.silent for s in r.segments)
    p = np.array([c.scores[g] for g in h.genres]) ** 0.75
    assert [r.scores[g] for g in h.genres] == pytest.approx(list(p / p.sum()), abs=1e-9)


def test_cli_silence_records_and_table(model, tmp_path, capsys):
    d = tmp_path / "in"
    write_audio(d / "a silence.wav", np.zeros(5 * SR, np.float32))
    write_audio(d / "b hiss.flac", hiss(5.0, -75.0), subtype="PCM_24")
    write_audio(d / "c intro.wav", with_silent_intro(9.0, tone(9.0, freq=110.0)[:, 0]))
    assert main(["predict", str(d), "--model", str(model), "--format", "json", "--segments", "--no-progress"]) == 1
    cap = capsys.readouterr()
    recs = {Path(r["file"]).name: r for r in json.loads(cap.out)}
    for name in ("a silence.wav", "b hiss.flac"):
        assert recs[name]["genre"] is None and "no audible signal" in recs[name]["error"]
    intro = recs["c intro.wav"]
    assert intro["genre"] == "blues" and intro["error"] is None
    assert intro["segments"][0]["silent"] is True and intro["segments"][-1]["genre"] == "blues"
    assert "2 of 3 files failed" in cap.err
    assert main(["predict", str(d / "c intro.wav"), "--model", str(model), "--segments", "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "(silent)" in table and "blues" in table


# ------------------------------------------------------------------------------------ duration: API + CLI
def test_max_duration_in_the_api(clf, tmp_path):
    y = tone(70.0, freq=110.0)[:, 0]
    with pytest.raises(DurationLimitError, match="longer than the limit of 60 s"):
        clf.predict(y, sr=SR, max_duration=60)
    assert clf.predict(y, sr=SR, max_duration=70).genre == "blues"
    path = write_audio(tmp_path / "long.flac", y)
    with pytest.raises(DurationLimitError, match=r"long\.flac: the audio is longer than the limit of 1 min"):
        clf.predict(path, max_duration=60)
    rec = record_for(clf, str(path), max_duration=60)
    assert rec["genre"] is None and "longer than the limit of 1 min" in rec["error"]
    with pytest.raises(GenrekitError, match="max_duration"):
        clf.predict(path, max_duration=0)


def test_max_duration_stops_decoding_early(tmp_path, monkeypatch):
    """Decoding stops at the limit: an 8-hour file is refused after reading minutes of it, not hours."""
    path = tmp_path / "eight hours.flac"
    path.write_bytes(silent_flac_bomb())
    assert path.stat().st_size < 2_000_000 and audio.info(path).duration == pytest.approx(8 * 3600)
    t0 = time.perf_counter()
    n = 0
    with pytest.raises(DurationLimitError, match=r"decoding stopped at 2:0\d"):
        for b in audio.stream(path, max_duration=120):
            n += b.size
    assert time.perf_counter() - t0 < 5 and n <= 130 * SR


def test_long_files_are_refused_before_any_classification(clf, tmp_path, monkeypatch):
    """With a limit, a file is decoded (only) first: one that decodes past it never reaches the model."""
    y = tone(75.0, freq=110.0)[:, 0]
    path = write_audio(tmp_path / "long.flac", y)
    assert audio.decoded_seconds(path) == pytest.approx(75.0)
    assert audio.decoded_seconds(path.read_bytes(), filename="x.flac") == pytest.approx(75.0)
    with pytest.raises(DurationLimitError, match=r"x\.flac: the audio is longer than the limit of 1 min"):
        audio.decoded_seconds(path.read_bytes(), filename="x.flac", max_duration=60)
    calls = []
    real = clf._block_parts
    monkeypatch.setattr(clf, "_block_parts", lambda *a: calls.append(1) or real(*a))
    with pytest.raises(DurationLimitError):
        clf.predict(path, max_duration=60)
    assert calls == []
    assert clf.predict(path, max_duration=80).genre == "blues" and len(calls) == 3


def test_cli_max_duration_minutes(model, tmp_path, capsys):
    write_audio(tmp_path / "short.wav", tone(20.0, freq=110.0))
    write_audio(tmp_path / "long.wav", tone(80.0, freq=110.0))
    assert main(["predict", str(tmp_path), "--model", str(model), "--format", "json", "--no-progress",
                 "--max-duration", "1"]) == 1
    recs = {Path(r["file"]).name: r for r in json.loads(capsys.readouterr().out)}
    assert recs["short.wav"]["genre"] == "blues"
    assert recs["long.wav"]["genre"] is None and "longer than the limit of 1 min" in recs["long.wav"]["error"]
    assert main(["predict", str(tmp_path), "--model", str(model), "--max-duration", "0"]) == 2
    assert main(["predict", str(tmp_path), "--model", str(model), "--format", "json", "--no-progress"]) == 0
    capsys.readouterr()
    # the limit is part of a resumable run's settings: the same limit resumes, another one is not mixed in
    pytest.importorskip("pyarrow")
    args = ["predict", str(tmp_path), "--model", str(model), "--no-progress", "--out", str(tmp_path / "parts") + "/"]
    assert main([*args, "--max-duration", "1"]) == 1
    capsys.readouterr()
    main([*args, "--max-duration", "1"])
    assert "resuming: 1 of 2 files already done" in capsys.readouterr().err  # failed files are retried
    assert main(args) != 0 and "other settings" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ in-memory decoding
def test_stream_of_bytes_equals_stream_of_path(tmp_path):
    from helpers import pyav_encode

    y = tone(40.0, freq=330.0)[:, 0]
    for name, data in (("a.flac", flac_bytes(y)), ("b.wav", flac_bytes(y)), ("noext", flac_bytes(y)),
                       ("c.m4a", pyav_encode(y)), ("d.flac", flac_bytes(y[: 8000 * 40], sr=8000))):
        path = tmp_path / (name if name != "noext" else "noext.flac")
        if name == "b.wav":
            sf.write(path, y, SR, subtype="PCM_16")
            data = path.read_bytes()
        else:
            path.write_bytes(data)
        streamed = list(audio.stream(path))
        from_bytes = list(audio.stream(data, filename=name))
        assert [b.size for b in from_bytes] == [b.size for b in streamed], name
        np.testing.assert_array_equal(np.concatenate(from_bytes), np.concatenate(streamed))
    with pytest.raises(DurationLimitError, match=r"c\.m4a: the audio is longer than the limit of 30 s"):
        list(audio.stream(pyav_encode(y), filename="c.m4a", max_duration=30))  # the FFmpeg path too


def test_stream_of_bytes_ignores_what_the_header_claims():
    """A WAV whose header claims 4 GB of samples (as streaming tools write it) decodes to what it holds."""
    data = bytearray(io.BytesIO(_wav_bytes(tone(3.0)[:, 0])).getvalue())
    i = data.index(b"data")
    data[i + 4 : i + 8] = (0xFFFFFFFF).to_bytes(4, "little")
    data[4:8] = (0xFFFFFFFF).to_bytes(4, "little")
    blocks = list(audio.stream(bytes(data), filename="liar.wav", max_duration=10))
    assert sum(b.size for b in blocks) == 3 * SR


def _wav_bytes(y: np.ndarray, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


# ------------------------------------------------------------------------------------ REST
def _client(model, **kw):
    pytest.importorskip("fastapi")
    pytest.importorskip("python_multipart")
    from fastapi.testclient import TestClient

    from genrekit.serve import create_app

    return TestClient(create_app(model, **kw))


def _post(c, data: bytes, name: str, params=None):
    return c.post("/api/predict", files={"file": (name, data, "application/octet-stream")}, params=params or {})


def test_rest_bombs_refused_fast_in_bounded_memory_then_serves(model):
    bomb, noise = silent_flac_bomb(), low_noise_flac_bomb()
    assert len(bomb) < 2_000_000 and len(noise) < 2_000_000
    normal = flac_bytes(tone(30.0, freq=3000.0)[:, 0])
    with _client(model, workers=2, max_duration=300.0) as c:  # the limit lowered to 5 minutes
        assert _post(c, normal, "warm.flac").status_code == 200
        for data, name in ((bomb, "bomb.flac"), (noise, "noise.flac")):
            with PeakRss() as rss:
                t0 = time.perf_counter()
                r = _post(c, data, name, params={"segments": "true", "spectrogram": "true"})
                took = time.perf_counter() - t0
            assert r.status_code == 413, r.text
            body = r.json()
            assert body["file"] == name and body["genre"] is None and body["segments"] is None
            assert re.search(rf"^{name}: the audio is longer than the limit of 5 min \(decoding stopped at 5:[0-3]\d",
                             body["error"]), body
            assert took < 5.0, f"{name} refused after {took:.1f} s"
            assert rss.growth_mb < 200, f"{name}: RSS grew {rss.growth_mb:.0f} MB"
            h = c.get("/api/health")
            assert h.status_code == 200 and h.json()["status"] == "ok"
            t0 = time.perf_counter()
            r = _post(c, normal, "normal.flac")
            assert r.status_code == 200 and r.json()["genre"] == "metal", r.text
            assert time.perf_counter() - t0 < 5.0
        assert h.json()["max_duration_min"] == 5.0 and h.json()["time_budget_s"] == 60.0


def test_rest_four_concurrent_bombs_leave_health_answering(model):
    bomb = silent_flac_bomb()
    with _client(model, workers=2) as c:  # the default 20-minute limit
        results, health = [], []
        threads = [threading.Thread(target=lambda: results.append(_post(c, bomb, "bomb.flac"))) for _ in range(4)]
        with PeakRss() as rss:
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                h0 = time.perf_counter()
                health.append((c.get("/api/health").status_code, time.perf_counter() - h0))
                time.sleep(0.05)
            for t in threads:
                t.join()
            took = time.perf_counter() - t0
        assert [r.status_code for r in results] == [413] * 4
        assert all("longer than the limit of 20 min" in r.json()["error"] for r in results)
        assert health and all(code == 200 for code, _ in health)
        assert max(s for _, s in health) < 1.0, f"slowest health check {max(s for _, s in health):.2f} s"
        assert took < 30.0 and rss.growth_mb < 300, (took, rss.growth_mb)
        assert _post(c, flac_bytes(tone(5.0, freq=110.0)[:, 0]), "after.flac").json()["genre"] == "blues"


@pytest.mark.parametrize(("name", "y"), [("silence.flac", np.zeros(8 * SR, np.float32)),
                                         ("hiss.flac", hiss(8.0, -72.0))])
def test_rest_silent_uploads_get_no_genre(model, name, y):
    with _client(model, workers=1) as c:
        r = _post(c, flac_bytes(y) if name == "silence.flac" else _flac24(y), name, params={"segments": "true"})
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["file"] == name and body["genre"] is None and body["scores"] is None
        assert re.match(rf"{name}: no audible signal \(RMS (-inf|-7\d\.\d) dBFS < -60 dBFS\)$", body["error"]), body
        # a silent intro: classified on its music, the silent windows marked
        r = _post(c, flac_bytes(with_silent_intro(9.0, tone(9.0, freq=3000.0)[:, 0])), "intro.flac",
                  params={"segments": "true", "spectrogram": "true"})
        assert r.status_code == 200, r.text
        rec = r.json()
        assert rec["genre"] == "metal" and rec["segments"][0] == {**rec["segments"][0], "genre": None, "silent": True}
        assert rec["spectrogram"]["duration_s"] == pytest.approx(18.0, abs=0.01)


def _flac24(y: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, SR, format="FLAC", subtype="PCM_24")
    return buf.getvalue()


def test_rest_time_budget_ends_the_work_and_frees_the_worker(model):
    data = flac_bytes(tone(240.0, freq=110.0)[:, 0])  # 8 blocks of 30 s
    with _client(model, workers=1, time_budget=1.5) as c:
        clf = c.app.state.clf
        real, calls = clf._block_parts, []

        def slow(*a, **k):
            calls.append(time.monotonic())
            time.sleep(0.4)
            return real(*a, **k)

        clf._block_parts = slow
        t0 = time.perf_counter()
        r = _post(c, data, "slow.flac", params={"segments": "true"})
        took = time.perf_counter() - t0
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["genre"] is None and re.match(r"slow\.flac: not classified within this server's time budget "
                                                  r"of 1\.5 s \(stopped after \d+ s of audio\)", body["error"]), body
        assert took < 3.0 and len(calls) < 8
        n = len(calls)
        time.sleep(0.6)
        assert len(calls) == n  # the work really stopped: nothing runs on in the background
        clf._block_parts = real
        t0 = time.perf_counter()
        r = _post(c, flac_bytes(tone(5.0, freq=110.0)[:, 0]), "next.flac")  # the one worker is free again
        assert r.status_code == 200 and r.json()["genre"] == "blues" and time.perf_counter() - t0 < 3.0


def test_serve_cli_rejects_bad_limits():
    assert main(["serve", "--max-duration", "0"]) == 2
    assert main(["serve", "--time-budget", "-1"]) == 2
    from genrekit.serve import create_app

    with pytest.raises(ValueError, match="max_duration"):
        create_app(max_duration=0)
    with pytest.raises(ValueError, match="time_budget"):
        create_app(time_budget=0)
