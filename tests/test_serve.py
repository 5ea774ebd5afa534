"""The web app and REST API: statuses, the CLI-identical record, uploads kept off disk, bounded
concurrency, and an end-to-end run of the page in headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("python_multipart")

from fastapi.testclient import TestClient  # noqa: E402

from genrekit import GENRES  # noqa: E402
from genrekit.serve import create_app, safe_filename  # noqa: E402
from helpers import tone, write_audio, write_m4a  # noqa: E402

SR = 22050
LIMIT_MB = 1
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A deep model trained for one epoch on random log-mel slices: seconds to build, real file format."""
    from genrekit.models.deep import DeepModel

    rng = np.random.default_rng(0)
    X = rng.random((40, 128, 130), dtype=np.float32)
    y = np.array([GENRES[i % 2] for i in range(40)])
    m = DeepModel("cnn-bn", epochs=1, batch_size=16, verbose=False, device="cpu")
    m.fit(X, y)
    return m.save(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def client(tiny_model):
    with TestClient(create_app(tiny_model, max_upload_mb=LIMIT_MB, workers=2)) as c:
        yield c


def wav_bytes(seconds: float = 4.0, freq: float = 440.0, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    import soundfile as sf

    sf.write(buf, tone(seconds, sr=sr, freq=freq), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def post(client, data: bytes, name: str = "song.wav", params=None, form=None):
    return client.post("/api/predict", files={"file": (name, data, "application/octet-stream")},
                       params=params or {}, data=form or {})


# ------------------------------------------------------------------------------------ 200
def test_predict_returns_the_cli_record(client, tiny_model, tmp_path, capsys):
    from genrekit.cli import main

    path = write_audio(tmp_path / "song.wav", tone(4.0, freq=330.0))
    r = post(client, path.read_bytes(), name="song.wav", params={"top_k": 2})
    assert r.status_code == 200, r.text
    rec = r.json()
    assert main(["predict", str(path), "--model", str(tiny_model), "--format", "json", "--top-k", "2",
                 "--no-progress"]) == 0
    cli = json.loads(capsys.readouterr().out)[0]
    assert list(rec) == list(cli)  # same keys, same order
    assert rec["file"] == "song.wav" and cli["file"] == str(path)
    assert rec["genre"] == cli["genre"] and rec["duration_s"] == cli["duration_s"]
    assert rec["scores"] == pytest.approx(cli["scores"], abs=1e-5)
    assert rec["error"] is None
    assert abs(sum(rec["scores"].values()) - 1.0) < 1e-4
    assert set(rec["scores"]) == set(client.get("/api/genres").json()["genres"])
    assert [g for g, _ in rec["top"]] == list(rec["scores"])[:2]
    assert "segments" not in rec and "spectrogram" not in rec


@pytest.mark.parametrize("how", ["query", "form"])
def test_segments_timeline_covers_the_track(client, how):
    params, form = ({"segments": "true"}, None) if how == "query" else (None, {"segments": "true"})
    r = post(client, wav_bytes(7.0), params=params, form=form)
    assert r.status_code == 200, r.text
    rec = r.json()
    segs = rec["segments"]
    assert len(segs) >= 2
    assert segs[0]["start"] == 0.0 and rec["duration_s"] - 3.1 <= segs[-1]["end"] <= rec["duration_s"]
    assert all(a["end"] <= b["start"] + 1e-6 for a, b in zip(segs, segs[1:], strict=False))
    assert all(s["genre"] in rec["scores"] and abs(sum(s["scores"].values()) - 1) < 1e-4 for s in segs)


def test_spectrogram_png_on_request(client):
    from PIL import Image

    from genrekit import spectrogram as spec

    rec = post(client, wav_bytes(6.0, freq=440.0), params={"spectrogram": "true"}).json()
    s = rec["spectrogram"]
    assert s["image"].startswith("data:image/png;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(s["image"].split(",", 1)[1])))
    assert img.size == (s["width"], s["height"]) and img.height == 128
    assert s["width"] == 1 + 6 * SR // 512  # short clip: one column per frame
    # the brightest row is the mel band of the 440 Hz tone, drawn with low frequencies at the bottom
    fb = spec.mel_filterbank(sr=SR)
    band = int(np.argmax(fb[:, int(round(440 * 2048 / SR))]))
    brightest = int(np.argmax(np.asarray(img.convert("L"), dtype=np.float64).mean(axis=1)))
    assert abs((127 - brightest) - band) <= 1


def test_spectrogram_blocks_are_seamless_and_long_tracks_pooled():
    from genrekit import spectrogram as spec
    from genrekit.serve import spectrogram_levels

    rng = np.random.default_rng(1)
    y = (rng.standard_normal(70 * SR) * np.linspace(0.1, 1, 70 * SR)).astype(np.float32)
    levels, pool = spectrogram_levels(y, sr=SR, max_columns=10_000)  # 3 blocks, no pooling
    whole = spec.power_to_levels(spec.melspectrogram(y, sr=SR))
    assert pool == 1 and levels.shape == whole.shape
    np.testing.assert_allclose(levels, whole, atol=1e-3)
    pooled, pool = spectrogram_levels(y, sr=SR, max_columns=400)
    assert pool == 8 and pooled.shape == (128, -(-whole.shape[1] // 8)) and pooled.shape[1] <= 400


def test_m4a_and_stereo_decode_from_memory(client, tmp_path):
    m4a = write_m4a(tmp_path / "a.m4a", tone(4.0, sr=SR)).read_bytes()
    r = post(client, m4a, name="a.m4a")
    assert r.status_code == 200, r.text
    assert r.json()["duration_s"] == pytest.approx(4.0, abs=0.1)
    stereo = write_audio(tmp_path / "s.flac", tone(3.0, sr=44100, channels=2), sr=44100).read_bytes()
    r = post(client, stereo, name="s.flac")
    assert r.status_code == 200 and r.json()["duration_s"] == pytest.approx(3.0, abs=0.01)


@pytest.mark.parametrize(("sent", "shown"), [
    ("../../etc/passwd.wav", "passwd.wav"), ("C:\\Users\\me\\song.wav", "song.wav"), ("", "upload"),
    ("/abs/dir/x.wav", "x.wav"),
])
def test_file_name_is_sanitised(client, sent, shown):
    r = post(client, wav_bytes(3.0), name=sent)
    assert r.status_code == 200, r.text
    assert r.json()["file"] == shown


def test_safe_filename_unit():
    assert safe_filename("..") == "upload"
    assert safe_filename("a\x00b\n.wav") == "ab.wav"
    long = safe_filename("x" * 400 + ".flac")
    assert len(long) == 255 and long.endswith(".flac")


# ------------------------------------------------------------------------------------ errors
def test_413_by_content_length(client):
    r = post(client, b"\0" * (LIMIT_MB * 1024 * 1024 + 100_000))
    assert r.status_code == 413
    assert "limit of 1 MB" in r.json()["error"]


def test_413_counts_streamed_bytes_and_stops_reading(client):
    """No Content-Length (chunked): the server counts what arrives and stops at the limit."""
    chunk = 64 * 1024
    total_chunks = 48  # 3 MB, three times the limit
    boundary = b"XyZ"
    head = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n'
            b"Content-Type: audio/wav\r\n\r\n")
    pieces = [head] + [b"\1" * chunk] * total_chunks + [b"\r\n--" + boundary + b"--\r\n"]
    sent = {"n": 0}
    messages = []

    async def receive():
        i = sent["n"]
        sent["n"] += 1
        return {"type": "http.request", "body": pieces[i], "more_body": i + 1 < len(pieces)}

    async def send(msg):
        messages.append(msg)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/api/predict", "raw_path": b"/api/predict", "root_path": "",
             "query_string": b"", "server": ("testserver", 80), "client": ("127.0.0.1", 5000),
             "headers": [(b"content-type", b"multipart/form-data; boundary=" + boundary),
                         (b"transfer-encoding", b"chunked")]}

    async def drive():
        await client.app(scope, receive, send)

    client.portal.call(drive)
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    assert start["status"] == 413, body
    assert "limit" in json.loads(body)["error"]
    read = sent["n"] - 1  # file chunks consumed
    assert read * chunk <= LIMIT_MB * 1024 * 1024 + 2 * chunk, f"read {read} chunks of {total_chunks}"


@pytest.mark.parametrize(("data", "name", "needle"), [
    (b"this is not audio at all" * 50, "notes.wav", "not audio"),
    (b"", "empty.wav", "empty"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 2000, "picture.png", "notes"),
    (None, "tiny.wav", "shorter"),
])
def test_415_for_undecodable_files(client, data, name, needle):
    if data is None:  # decodes, but 100 samples are not enough to classify
        buf = io.BytesIO()
        import soundfile as sf

        sf.write(buf, np.zeros(100, np.float32), SR, format="WAV")
        data = buf.getvalue()
    r = post(client, data, name=name)
    assert r.status_code == 415, r.text
    body = r.json()
    assert body["file"] == name and body["genre"] is None and body["scores"] is None
    assert name in body["error"]
    if needle != "notes":
        assert needle in body["error"].lower()


def test_415_for_a_body_that_is_not_multipart(client):
    r = client.post("/api/predict", content=wav_bytes(2.0), headers={"content-type": "audio/wav"})
    assert r.status_code == 415
    assert "multipart/form-data" in r.json()["error"]


@pytest.mark.parametrize(("params", "form", "needle"), [
    ({"top_k": 0}, None, "top_k"),
    ({"top_k": "many"}, None, "top_k"),
    (None, {"top_k": "-3"}, "top_k"),
    ({"segments": "perhaps"}, None, "segments"),
    (None, {"spectrogram": "perhaps"}, "spectrogram"),
])
def test_422_for_bad_parameters(client, params, form, needle):
    r = post(client, wav_bytes(2.0), params=params, form=form)
    assert r.status_code == 422, r.text
    assert needle in r.json()["error"]


def test_422_without_a_file_field(client):
    r = client.post("/api/predict", data={"top_k": "2"}, files={"other": ("x.txt", b"hi", "text/plain")})
    assert r.status_code == 422
    assert "'file'" in r.json()["error"]
    r = client.post("/api/predict", files={"top_k": (None, "2")})
    assert r.status_code == 422 and "no file" in r.json()["error"]


def test_unknown_route_is_json(client):
    r = client.get("/api/nope")
    assert r.status_code == 404 and r.json()["error"]


# ------------------------------------------------------------------------------------ other routes
def test_health_and_genres(client, tiny_model):
    h = client.get("/api/health").json()
    assert h["status"] == "ok" and h["max_upload_mb"] == LIMIT_MB and h["workers"] == 2
    assert h["model"]["path"] == str(tiny_model) and h["model"]["kind"] == "deep"
    assert client.get("/api/genres").json() == {"genres": ["blues", "classical"]}


def test_docs_and_openapi(client):
    r = client.get("/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower()
    # the docs page's scripts and styles come from the app itself, not a CDN
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', r.text)
    assert assets and all(a.startswith("/") for a in assets), assets
    for a in assets:
        assert client.get(a).status_code == 200, a
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/api/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert body["schema"]["required"] == ["file"]
    assert {"/api/health", "/api/genres"} <= set(spec["paths"])


def test_page_and_static_files_are_local(client):
    r = client.get("/")
    assert r.status_code == 200 and 'id="file-input"' in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        a = client.get(asset)
        assert a.status_code == 200 and a.text
        assert not re.search(r"https?://", a.text), f"{asset} refers to an external resource"
    assert not re.search(r"""(src|href)=["']https?://""", r.text)


# ------------------------------------------------------------------------------------ no disk
def test_uploads_never_touch_disk(client, tmp_path, monkeypatch):
    """Whatever the outcome, no temporary file is created (so none can be left behind)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setenv("TMPDIR", str(tmp))
    calls = []
    for fn in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp", "mkdtemp"):
        orig = getattr(tempfile, fn)

        def spy(*a, _orig=orig, _fn=fn, **k):
            calls.append(_fn)
            return _orig(*a, **k)

        monkeypatch.setattr(tempfile, fn, spy)
    big_ok = wav_bytes(20.0)  # ~880 KB, just under this app's 1 MB limit
    assert len(big_ok) > 800_000
    statuses = [
        post(client, big_ok, params={"segments": "true", "spectrogram": "true"}).status_code,
        post(client, b"\0" * (2 * 1024 * 1024)).status_code,
        post(client, b"garbage" * 1000).status_code,
        post(client, wav_bytes(2.0), params={"top_k": 0}).status_code,
    ]
    assert statuses == [200, 413, 415, 422]
    assert calls == [], f"temporary files created: {calls}"
    assert list(tmp.iterdir()) == []


# ------------------------------------------------------------------------------------ concurrency
class _Gate:
    """Stands in for GenreClassifier.predict_blocks: blocks until released and records peak concurrency."""

    def __init__(self, real):
        self.real = real
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.entered = 0
        self.loop_thread_calls = 0

    def __call__(self, *a, **k):
        if threading.current_thread() is threading.main_thread():
            self.loop_thread_calls += 1
        with self.lock:
            self.active += 1
            self.entered += 1
            self.peak = max(self.peak, self.active)
        try:
            assert self.release.wait(30)
            return self.real(*a, **k)
        finally:
            with self.lock:
                self.active -= 1


def test_inference_is_off_the_loop_bounded_and_loaded_once(tiny_model, monkeypatch):
    from genrekit.predict import GenreClassifier

    loads = []
    real_load = GenreClassifier.load.__func__

    def counting_load(cls, *a, **k):
        loads.append(a)
        return real_load(cls, *a, **k)

    monkeypatch.setattr(GenreClassifier, "load", classmethod(counting_load))
    app = create_app(tiny_model, workers=2)
    with TestClient(app) as c:
        gate = _Gate(app.state.clf.predict_blocks)  # what the server calls with the upload's decoded blocks
        app.state.clf.predict_blocks = gate
        data = wav_bytes(3.0)
        results = []
        threads = [threading.Thread(target=lambda: results.append(post(c, data))) for _ in range(5)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while gate.entered < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # give a third inference the chance to start if the pool were unbounded
        assert gate.peak == 2 and gate.entered == 2
        # the event loop still answers while both workers are busy
        assert c.get("/api/health").status_code == 200
        gate.release.set()
        for t in threads:
            t.join(60)
        assert [r.status_code for r in results] == [200] * 5
        assert len({json.dumps(r.json(), sort_keys=True) for r in results}) == 1
        assert gate.peak == 2 and gate.loop_thread_calls == 0
    assert len(loads) == 1


def test_create_app_rejects_bad_settings():
    with pytest.raises(ValueError):
        create_app(workers=0)
    with pytest.raises(ValueError):
        create_app(max_upload_mb=0)


# ------------------------------------------------------------------------------------ CLI
def test_serve_cli_usage_errors(tmp_path, capsys):
    from genrekit.cli import main

    assert main(["serve", "--port", "70000"]) == 2
    assert main(["serve", "--workers", "0"]) == 2
    assert main(["serve", "--model", str(tmp_path / "missing.safetensors")]) == 1
    assert "missing.safetensors" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ browser
@pytest.fixture
def live_server(tiny_model):
    """The real app under uvicorn on a free loopback port, in a thread."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(tiny_model, max_upload_mb=LIMIT_MB, workers=2),
                                           log_level="warning"))
    t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while not server.started and t.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(10)
        sock.close()


@pytest.fixture
def chromium() -> str:
    """Skip (with the reason) where there is no browser, before any server is started."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) to run this test")
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    return CHROMIUM


@pytest.mark.browser
def test_page_in_headless_chromium(chromium, live_server, tmp_path):
    import httpx
    from playwright.sync_api import sync_playwright

    song = write_audio(tmp_path / "upload me.wav", tone(8.0, freq=262.0))
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"definitely not an mp3 " * 100)
    intro = write_audio(tmp_path / "intro.wav", np.concatenate([np.zeros((6 * SR, 1), np.float32), tone(6.0)]))
    silent = write_audio(tmp_path / "silent.wav", np.zeros((4 * SR, 1), np.float32))
    expected = httpx.post(f"{live_server}/api/predict", files={"file": ("x.wav", song.read_bytes())}).json()
    shot = tmp_path / "serve_page.png"
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1300})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            # blob:<origin> is the user's own file played from memory by the page's player: not external
            page.on("request", lambda r: None if r.url.startswith((live_server, "data:", "blob:" + live_server))
                    else problems.append(f"external request: {r.url}"))
            page.goto(live_server + "/")
            # a locator wait, not wait_for_function: polling a JS string needs eval, which the page's CSP forbids
            page.locator("#limits", has_text="MB").wait_for()
            page.set_input_files("#file-input", str(song))
            page.wait_for_selector("#result:not([hidden])", timeout=60_000)
            genre = page.text_content("#genre")
            bars = page.locator("#bars li").count()
            pct = page.text_content("#bars li .pct")
            segs = page.locator("#timeline .seg").count()
            spec_w = page.eval_on_selector("#spectrogram", "img => img.complete ? img.naturalWidth : 0")
            meta = page.text_content("#meta")
            page.screenshot(path=str(shot), full_page=True)
            msg = f"screenshot: {shot}"
            assert genre == expected["genre"], msg
            assert bars == 2 and pct.endswith("%"), msg
            assert pct == f"{100 * expected['scores'][expected['genre']]:.1f}%", msg
            assert segs >= 2 and spec_w > 100, msg
            assert "upload me.wav" in meta, msg
            # a rejected file: a clear message, the old result hidden
            page.set_input_files("#file-input", str(junk))
            page.wait_for_selector("#error:not([hidden])", timeout=30_000)
            err = page.text_content("#error")
            page.screenshot(path=str(tmp_path / "serve_page_error.png"), full_page=True)
            assert "not an audio file" in err and "junk.mp3" in err, f"{err!r}; {msg}"
            assert page.is_hidden("#result"), msg
            # a silent intro: grey windows in the timeline; a silent file: no genre, and the page says why
            page.set_input_files("#file-input", str(intro))
            page.wait_for_selector("#result:not([hidden])", timeout=60_000)
            page.screenshot(path=str(tmp_path / "serve_page_intro.png"), full_page=True)
            assert page.locator("#timeline .seg[data-silent=true]").count() >= 1, msg
            assert "no audible" not in (page.text_content("#error") or ""), msg
            page.set_input_files("#file-input", str(silent))
            page.wait_for_selector("#error:not([hidden])", timeout=30_000)
            err = page.text_content("#error")
            assert "no music" in err and "no audible signal" in err and "silent.wav" in err, f"{err!r}; {msg}"
        finally:
            browser.close()
    # the 415 / 422 of the rejected uploads are logged as failed resource loads; anything else is a problem
    problems = [x for x in problems if "status of 415" not in x and "status of 422" not in x]
    assert problems == [], f"{problems}; screenshot: {shot}"
