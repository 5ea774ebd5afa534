"""The server's hardening (issue 21, class 9): stalled uploads cannot hold every slot, each body has a
deadline, a 5,000-byte multipart boundary is a 400, genrekit errors are 4xx (never 500), and requests
naming a host the server was not given are refused (DNS rebinding).

Live tests run the real HTTP stack: uvicorn on a free loopback port and raw sockets sending half a body.
"""

from __future__ import annotations

import io
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("python_multipart")

from fastapi.testclient import TestClient  # noqa: E402

from genrekit.serve import create_app, default_allowed_hosts, host_allowed  # noqa: E402
from genrekit.serve import upload as upload_mod  # noqa: E402
from helpers import LiveServer, free_port  # noqa: E402

BOUNDARY = "genrekitsafety0b1"


def _wav(seconds: float = 3.0, freq: float = 300.0, *, amplitude: float = 0.3, subtype: str = "PCM_16") -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * 22050)) / 22050
    buf = io.BytesIO()
    sf.write(buf, (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32), 22050, format="WAV",
             subtype=subtype)
    return buf.getvalue()


def _multipart(data: bytes, name: str = "song.wav", boundary: str = BOUNDARY) -> tuple[bytes, str]:
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _stall(port: int, body: bytes, ctype: str) -> socket.socket:
    """Open an upload, send its headers and half its body, then go silent."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall(f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
    return s


def _replied(socks: list[socket.socket], wait: float) -> list[bytes]:
    """The replies that arrive on ``socks`` within ``wait`` seconds."""
    ready, _, _ = select.select(socks, [], [], wait)
    return [s.recv(65536) for s in ready]


# ------------------------------------------------------------------------------------ stalled uploads
def test_stalled_uploads_give_their_slots_to_normal_uploads(tiny_model, monkeypatch, capfd):
    """Six stalled uploads hold all 2 * 2 + 2 slots; normal uploads are still answered in bounded time
    (a stalled upload's slot is taken, 408 to it), long before any idle timeout could free one."""
    import httpx

    monkeypatch.setattr(upload_mod, "UPLOAD_IDLE_SECONDS", 120.0)  # the idle timeout cannot be what frees them
    good = _wav(3.0)
    body, ctype = _multipart(good, "stalled.wav")
    with LiveServer(create_app(tiny_model, max_upload_mb=1, workers=2)) as srv:
        with httpx.Client(timeout=60) as c:  # warm: the first request pays no lazy start-up
            assert c.post(srv.url("/api/predict"), files={"file": ("w.wav", good)}).status_code == 200
        stalled = [_stall(srv.port, body, ctype) for _ in range(6)]
        time.sleep(0.5)
        try:
            for i in range(2):
                t0 = time.monotonic()
                r = httpx.post(srv.url("/api/predict"), files={"file": (f"fine{i}.wav", good)}, timeout=60)
                took = time.monotonic() - t0
                assert r.status_code == 200, r.text
                assert r.json()["file"] == f"fine{i}.wav"
                assert took < upload_mod.SLOT_STALL_SECONDS + 12, took  # before: the idle timeout (30 s)
            replies = _replied(stalled, 2.0)
            assert len(replies) >= 2, replies  # one slot taken per normal upload
            for reply in replies:
                assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
                assert b"upload too slow" in reply and b"waited for its slot" in reply
        finally:
            for s in stalled:
                s.close()
    assert "Traceback" not in "".join(capfd.readouterr())


def test_a_body_slower_than_its_deadline_gets_408(tiny_model, monkeypatch, capfd):
    """A client that trickles (a byte every 0.2 s: never idle) is cut off once its body's deadline,
    sized by its length, has passed, with no other request waiting."""
    monkeypatch.setattr(upload_mod, "UPLOAD_GRACE_SECONDS", 1.0)
    body, ctype = _multipart(_wav(0.5), "trickle.wav")
    with LiveServer(create_app(tiny_model, max_upload_mb=1, workers=1)) as srv:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        t0 = time.monotonic()
        s.sendall(f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode())
        reply = b""
        for b in body:
            if select.select([s], [], [], 0.2)[0]:
                reply = s.recv(65536)
                break
            s.sendall(bytes([b]))
        took = time.monotonic() - t0
        head, _, rest = reply.partition(b"\r\n\r\n")
        want = int(next((ln.split(b":", 1)[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")),
                        b"0"))
        while len(rest) < want and select.select([s], [], [], 5.0)[0]:  # the body may follow the headers
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        reply = head + b"\r\n\r\n" + rest
        s.close()
    limit = 1.0 + len(body) / upload_mod.MIN_UPLOAD_RATE
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"upload too slow" in reply
    assert limit - 0.1 < took < limit + 3.0, (took, limit)
    assert "Traceback" not in "".join(capfd.readouterr())


def test_upload_slots_take_the_stalest_slot_only_for_a_waiting_request():
    """UploadSlots: with a free slot nobody is evicted; when full, the upload idle the longest loses its
    slot, an upload still sending keeps its own, and one whose body has arrived is never taken."""
    import asyncio

    async def scenario():
        slots = upload_mod.UploadSlots(2)
        loop = asyncio.get_running_loop()
        got, done = [], asyncio.Event()

        async def newcomer():
            async with slots.hold() as s:
                got.append(s)
                await done.wait()

        async with slots.hold() as a:
            async with slots.hold() as b:
                now = loop.time()
                a.last = now - 10 * upload_mod.SLOT_STALL_SECONDS  # stalled
                b.start = now - 10 * upload_mod.SLOT_STALL_SECONDS
                b.received, b.last = 10**9, now  # fast and busy
                assert not a.evicted.is_set()  # nobody waits: nothing is taken
                task = asyncio.ensure_future(newcomer())
                await asyncio.sleep(0.05)
                assert a.evicted.is_set() and not b.evicted.is_set() and not got
                await asyncio.sleep(0.6)  # a second round does not take another slot while one is freed
                assert not b.evicted.is_set()
            await asyncio.sleep(0.05)  # b released: the newcomer holds a slot now
            assert len(got) == 1 and slots.held == 2
            c = got[0]
            c.reading = False
            c.last = loop.time() - 100
            assert c.stall(loop.time()) is None  # a body that has arrived keeps its slot
        done.set()
        await task
        assert slots.held == 0

    asyncio.run(scenario())


# ------------------------------------------------------------------------------------ malformed bodies
@pytest.fixture(scope="module")
def client(tiny_model):
    with TestClient(create_app(tiny_model, max_upload_mb=1, workers=1)) as c:
        yield c


@pytest.mark.parametrize("length", [71, 257, 5000])
def test_a_long_multipart_boundary_is_400(client, length, capfd):
    body, ctype = _multipart(_wav(0.5), "long.wav", boundary="b" * length)
    r = client.post("/api/predict", content=body, headers={"content-type": ctype})
    assert r.status_code == 400, r.text
    assert "boundary" in r.json()["error"]
    assert "Traceback" not in "".join(capfd.readouterr())


def test_a_70_byte_boundary_is_still_accepted(client):
    body, ctype = _multipart(_wav(1.0), "ok.wav", boundary="b" * 70)
    r = client.post("/api/predict", content=body, headers={"content-type": ctype})
    assert r.status_code == 200, r.text


# ------------------------------------------------------------------------------------ errors are 4xx
def test_absurd_amplitude_is_a_4xx_naming_the_file(client, capfd):
    """Float samples of 1e30 overflow every spectrogram: a clear 4xx naming the upload, never 500."""
    data = _wav(2.0, amplitude=1e30, subtype="FLOAT")
    r = client.post("/api/predict", files={"file": ("huge.wav", data)})
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"].startswith("huge.wav: ")
    assert r.json()["file"] == "huge.wav" and r.json()["genre"] is None
    assert "Traceback" not in "".join(capfd.readouterr())


def test_a_genrekit_error_during_classification_is_422(client, monkeypatch):
    from genrekit.errors import FeatureError
    from genrekit.serve import app as app_mod

    def refuse(clf, data, name, **kw):
        raise FeatureError(f"{name}: refused for the test")

    monkeypatch.setattr(app_mod, "classify", refuse)
    r = client.post("/api/predict", files={"file": ("x.wav", _wav(0.5))})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "x.wav: could not classify: x.wav: refused for the test"
    assert r.json()["file"] == "x.wav"


def test_a_genrekit_error_anywhere_in_a_request_is_422_not_500(client, monkeypatch):
    """Outside the classification too (here: reading the upload), a genrekit error is its message."""
    from genrekit.errors import DecodeError
    from genrekit.serve import app as app_mod

    async def broken(request, **kw):
        raise DecodeError("upload.wav: refused while reading")

    monkeypatch.setattr(app_mod, "read_upload", broken)
    r = client.post("/api/predict", files={"file": ("upload.wav", _wav(0.5))})
    assert r.status_code == 422 and r.json() == {"error": "upload.wav: refused while reading"}


# ------------------------------------------------------------------------------------ Host check
@pytest.mark.parametrize("header,ok", [
    ("localhost", True), ("localhost:8000", True), ("127.0.0.1:8000", True), ("[::1]:8000", True),
    ("LOCALHOST.", True), ("evil.example", False), ("evil.example:8000", False), ("", False),
    ("127.0.0.1.evil.example", False), ("localhost.evil.example", False), ("192.168.1.9", False),
])
def test_default_hosts_are_the_bound_address_and_localhost(header, ok):
    assert host_allowed(header, default_allowed_hosts("127.0.0.1")) is ok


def test_host_patterns():
    allowed = default_allowed_hosts("0.0.0.0", ["music.example.org", "*.home.arpa"])
    assert host_allowed("192.168.1.9:8000", allowed)  # a wildcard bind: any IP literal (cannot be rebound)
    assert host_allowed("[fe80::1]", allowed)
    assert host_allowed("music.example.org", allowed) and not host_allowed("x.music.example.org", allowed)
    assert host_allowed("nas.home.arpa", allowed) and host_allowed("home.arpa", allowed)
    assert not host_allowed("evilhome.arpa", allowed) and not host_allowed("evil.example", allowed)
    assert host_allowed("anything.example", ["*"])


def test_app_with_allowed_hosts_refuses_other_hosts(tiny_model):
    app = create_app(tiny_model, workers=1, allowed_hosts=default_allowed_hosts("127.0.0.1"))
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        assert c.get("/api/health").status_code == 200
        r = c.get("/api/health", headers={"host": "evil.example"})
        assert r.status_code == 421
        assert "evil.example" in r.json()["error"] and "--allowed-hosts" in r.json()["error"]
        body, ctype = _multipart(_wav(0.5))
        r = c.post("/api/predict", content=body, headers={"content-type": ctype, "host": "evil.example:8000"})
        assert r.status_code == 421
        assert c.get("/", headers={"host": "evil.example"}).status_code == 421


def test_genrekit_serve_refuses_other_hosts_by_default_and_allows_named_ones(tiny_model, tmp_path):
    """The real command: `genrekit serve` checks Host by default; --allowed-hosts adds names."""
    import httpx

    port = free_port()
    log = open(tmp_path / "serve.log", "wb")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "genrekit", "serve", "--model", str(tiny_model), "--port",
                             str(port), "--workers", "1", "--allowed-hosts", "music.example.org, *.home.arpa"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/api/health"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, Path(tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "server did not start"
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        for host, status in (("evil.example", 421), (f"evil.example:{port}", 421), (f"localhost:{port}", 200),
                             ("music.example.org", 200), ("nas.home.arpa", 200), ("other.example.org", 421)):
            assert httpx.get(url, headers={"host": host}, timeout=10).status_code == status, host
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def test_allowed_hosts_refuses_urls(tmp_path):
    r = subprocess.run([sys.executable, "-m", "genrekit", "serve", "--allowed-hosts", "http://x.example/"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--allowed-hosts takes host names" in r.stderr
