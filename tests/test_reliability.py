"""Reliability: every face (info, features, predict, REST API) over a generated bad-input corpus, a 2-hour
file, kill -9 in the middle of batch runs, and a web server under hostile uploads.

Contract checked here (see SECURITY.md): each bad file gets one specific message naming it, good files are
still processed with finite outputs, no traceback reaches the user, exit codes are 0 ok / 1 some failed /
2 usage, memory stays bounded, and an interrupted run leaves no half-written output and resumes.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from badinput import Case, make_corpus, make_unreadable, write_long_wav
from genrekit.cli import main
from helpers import LiveServer

ROOT = Path(__file__).resolve().parents[1]
GENREKIT = [sys.executable, "-m", "genrekit"]
RSS_LIMIT_KB = 1024 * 1024  # 1 GB


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[Case]]:
    root = tmp_path_factory.mktemp("bad") / "corpus"
    return root, make_corpus(root)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "xdg-cache"), PYTHONPATH=str(ROOT / "src"),
               OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _assert_no_traceback(*texts: str) -> None:
    for t in texts:
        assert "Traceback" not in t, t


def _bad(cases):
    return [c for c in cases if not c.ok]


def _good(cases):
    return [c for c in cases if c.ok]


def _only_message_for(case: Case, messages: list[str]) -> str:
    """The one message that names ``case``'s file; it must match the case's needle."""
    mine = [m for m in messages if str(case.path) in m]
    assert len(mine) == 1, (case.name, mine)
    assert re.search(case.needle, mine[0]), (case.name, mine[0])
    return mine[0]


# ------------------------------------------------------------------------------------ info
def test_info_names_each_bad_file_and_counts_the_good(corpus, capsys):
    root, cases = corpus
    rc = main(["info", str(root), "--json"])
    cap = capsys.readouterr()
    _assert_no_traceback(cap.out, cap.err)
    assert rc == 1
    r = json.loads(cap.out)
    assert r["tracks"] == len(_good(cases))  # the folder symlink loop did not duplicate anything
    assert len(r["errors"]) == len(_bad(cases))
    for c in _bad(cases):
        _only_message_for(c, [e["error"] for e in r["errors"]])
    assert r["sample_rates"] == {"8000": 1, "22050": 5, "96000": 1}
    assert math.isfinite(r["duration_s"]) and r["duration_s"] == pytest.approx(6 * 4.0 + 6.0, abs=0.1)


# ------------------------------------------------------------------------------------ features
def test_features_cli_writes_good_rows_and_lists_bad_files(corpus, tmp_path, capsys):
    root, cases = corpus
    out = tmp_path / "table.csv"
    rc = main(["features", str(root), "--out", str(out), "--jobs", "1", "--quiet"])
    cap = capsys.readouterr()
    _assert_no_traceback(cap.out, cap.err)
    assert rc == 1
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["filename"] for r in rows) == sorted(c.name for c in _good(cases))
    for r in rows:
        values = [float(v) for k, v in r.items() if k not in ("filename", "label")]
        assert all(math.isfinite(v) for v in values), r["filename"]
    errors = (tmp_path / "table.csv.errors.tsv").read_text(encoding="utf-8").splitlines()[1:]
    assert len(errors) == len(_bad(cases))
    for c in _bad(cases):
        if c.name == "self.wav":  # the link loop fails before decoding, when its content is hashed
            assert re.search(r"symbolic links", _only_message_for(Case(c.name, c.path, False, "."), errors))
            continue
        _only_message_for(c, errors)
        _only_message_for(c, cap.err.splitlines())


# ------------------------------------------------------------------------------------ predict
def test_predict_cli_classifies_good_files_and_reports_bad_ones(corpus, tiny_model, capsys):
    root, cases = corpus
    rc = main(["predict", str(root), "--model", str(tiny_model), "--format", "json", "--no-progress"])
    cap = capsys.readouterr()
    _assert_no_traceback(cap.out, cap.err)
    assert rc == 1
    records = {Path(r["file"]).name: r for r in json.loads(cap.out)}
    assert set(records) == {c.name for c in cases}
    for c in _good(cases):
        r = records[c.name]
        if c.silent:  # decodable, but no music: no genre
            assert r["genre"] is None and r["scores"] is None
            assert re.fullmatch(re.escape(str(c.path)) + ": " + Case.NO_MUSIC, r["error"]), r
            continue
        assert r["error"] is None and r["genre"] in ("blues", "metal"), r
        assert all(math.isfinite(s) for s in r["scores"].values())
        assert sum(r["scores"].values()) == pytest.approx(1.0, abs=1e-4)
    for c in _bad(cases):
        r = records[c.name]
        assert r["genre"] is None and r["scores"] is None
        _only_message_for(c, [r["error"]])
    silent = [c for c in cases if c.silent]
    assert len(silent) == 2
    assert f"{len(_bad(cases)) + len(silent)} of {len(cases)} files failed" in cap.err


def test_explicit_paths_missing_and_unsupported(tmp_path, tiny_model, capsys):
    """A path that does not exist and a non-audio file given by name get their own messages."""
    (tmp_path / "notes.txt").write_text("not audio")
    missing, notes = str(tmp_path / "nope.wav"), str(tmp_path / "notes.txt")
    argvs = [["info", missing, notes, "--json"],
             ["features", missing, notes, "--out", str(tmp_path / "t.csv"), "-q", "-j", "1"],
             ["predict", missing, notes, "--model", str(tiny_model), "--no-progress"]]
    for argv in argvs:
        assert main(argv) == 1, argv
        cap = capsys.readouterr()
        _assert_no_traceback(cap.out, cap.err)
        text = cap.out + cap.err
        assert re.search(r"nope\.wav: no such file", text), (argv, text)
        assert re.search(r"notes\.txt: unsupported container '\.txt'", text), (argv, text)


def test_unreadable_file(tmp_path, tiny_model, capsys):
    locked = make_unreadable(tmp_path)
    if locked is None:
        pytest.skip("running as root: chmod 000 does not stop this process from reading the file")
    for argv in (["info", str(locked), "--json"], ["predict", str(locked), "--model", str(tiny_model)],
                 ["features", str(locked), "--out", str(tmp_path / "t.csv"), "-q", "-j", "1"]):
        assert main(argv) == 1
        cap = capsys.readouterr()
        _assert_no_traceback(cap.out, cap.err)
        assert re.search(r"locked\.wav: .*(permission denied|Permission denied)", cap.out + cap.err)


@pytest.mark.parametrize("argv", [
    ["info"],
    ["features", "x.wav"],  # --out is required
    ["features", "x.wav", "--out", "t.csv", "--segment", "0"],
    ["predict", "x.wav", "--top-k", "0"],
    ["predict", "x.wav", "--jobs", "0"],
    ["predict", "x.wav", "--format", "yaml"],
    ["no-such-command"],
])
def test_usage_errors_exit_2(argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse
        rc = exc.code
    assert rc == 2
    _assert_no_traceback(*capsys.readouterr())


def test_bad_model_path_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "a.wav").write_bytes(b"")
    rc = main(["predict", str(tmp_path / "a.wav"), "--model", str(tmp_path / "missing.safetensors")])
    cap = capsys.readouterr()
    assert rc == 1 and "missing.safetensors: model file not found" in cap.err
    _assert_no_traceback(cap.out, cap.err)


# ------------------------------------------------------------------------------------ a 2-hour file
@pytest.fixture(scope="module")
def two_hours(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("long")
    return write_long_wav(d / "two hours ♫.wav", seconds=7200.0, sr=8000)


def _run_measured(argv: list[str], tmp_path: Path, timeout: float = 600) -> tuple[subprocess.CompletedProcess, int]:
    """Run genrekit in a subprocess; return it and its peak RSS in KB (ru_maxrss of the child)."""
    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "sys.stdout.write(r.stdout); sys.stderr.write(r.stderr); "
            "print('MAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
            "sys.exit(r.returncode)")
    p = subprocess.run([sys.executable, "-c", code, *GENREKIT, *argv], capture_output=True, text=True,
                       env=_env(tmp_path), timeout=timeout, cwd=tmp_path)
    rss = int(re.search(r"MAXRSS (\d+)", p.stderr).group(1))
    return p, rss


def test_two_hour_file_info_and_features_bounded(two_hours, tmp_path):
    p, rss = _run_measured(["info", str(two_hours), "--json"], tmp_path)
    assert p.returncode == 0, p.stderr
    _assert_no_traceback(p.stdout, p.stderr)
    r = json.loads(p.stdout)
    assert r["tracks"] == 1 and r["duration_s"] == pytest.approx(7200.0)
    assert rss < RSS_LIMIT_KB, f"info peak RSS {rss / 1024:.0f} MB"

    # one row per whole file is refused past 30 min (memory), quickly and with the way out
    p, rss = _run_measured(["features", str(two_hours), "--out", str(tmp_path / "t.csv"), "-q"], tmp_path)
    assert p.returncode == 1
    _assert_no_traceback(p.stdout, p.stderr)
    assert re.search(r"two hours ♫\.wav: 120\.0 min is too long .* use --segment 30", p.stderr)
    assert rss < RSS_LIMIT_KB


@pytest.mark.slow
def test_two_hour_file_predict_streams_in_bounded_memory(two_hours, tiny_model, tmp_path):
    p, rss = _run_measured(["predict", str(two_hours), "--model", str(tiny_model), "--format", "json",
                            "--segments", "--no-progress"], tmp_path)
    assert p.returncode == 0, p.stderr
    _assert_no_traceback(p.stdout, p.stderr)
    (r,) = json.loads(p.stdout)
    assert r["duration_s"] == pytest.approx(7200.0, abs=0.1)
    assert all(math.isfinite(v) for v in r["scores"].values())
    assert len(r["segments"]) == 2400  # 3 s windows
    assert rss < RSS_LIMIT_KB, f"predict peak RSS {rss / 1024:.0f} MB"


# ------------------------------------------------------------------------------------ kill -9
def _kill_when(proc: subprocess.Popen, ready, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"finished before it could be killed (rc {proc.returncode}): {err[-2000:]}")
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no progress before the deadline")


def _music(tmp_path: Path, n: int, seconds: float) -> Path:
    import soundfile as sf

    root = tmp_path / "music"
    root.mkdir()
    rng = np.random.default_rng(5)
    t = np.arange(int(seconds * 22050)) / 22050
    for i in range(n):
        y = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(str(root / f"song {i:02d}.wav"), y.astype(np.float32), 22050)
    return root


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_kill_9_during_features_then_resume(tmp_path):
    root = _music(tmp_path, 12, 6.0)
    out = tmp_path / "out" / "table.csv"
    cache = tmp_path / "xdg-cache" / "genrekit" / "features"
    argv = [*GENREKIT, "features", str(root), "--out", str(out), "--jobs", "1", "--quiet"]

    def entries() -> int:
        return sum(1 for _ in cache.rglob("*.json")) - sum(1 for _ in cache.rglob("settings.json"))

    proc = subprocess.Popen(argv, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _kill_when(proc, lambda: cache.is_dir() and entries() >= 3)
    done = entries()
    assert 3 <= done < 12
    assert not out.exists() or len(list(csv.DictReader(out.open()))) == 12  # never half a table
    assert not out.parent.exists() or _leftovers(out.parent) == []

    p = subprocess.run(argv, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    _assert_no_traceback(p.stdout, p.stderr)
    assert f"({done} from cache)" in p.stderr  # finished files were not recomputed
    rows = list(csv.DictReader(out.open(newline="")))
    assert sorted(r["filename"] for r in rows) == [f"song {i:02d}.wav" for i in range(12)]
    assert all(math.isfinite(float(r["mfcc1_mean"])) for r in rows)
    assert _leftovers(out.parent) == []


def test_kill_9_during_predict_out_then_resume(tmp_path, tiny_model):
    root = _music(tmp_path, 10, 8.0)
    out = tmp_path / "preds.json"
    journal = tmp_path / "preds.json.partial.jsonl"
    argv = [*GENREKIT, "predict", str(root), "--model", str(tiny_model), "--format", "json", "--out", str(out),
            "--no-progress"]

    def journalled() -> int:
        try:
            return max(0, len(journal.read_text(encoding="utf-8").splitlines()) - 1)  # minus the settings line
        except FileNotFoundError:
            return 0

    proc = subprocess.Popen(argv, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _kill_when(proc, lambda: journalled() >= 3)
    done = journalled()
    assert 3 <= done < 10
    assert not out.exists()  # the final file is only ever written whole, at the end
    assert _leftovers(tmp_path) == []

    p = subprocess.run(argv, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    _assert_no_traceback(p.stdout, p.stderr)
    m = re.search(r"resuming: (\d+) of 10 files already done", p.stderr)
    assert m and int(m.group(1)) >= done, p.stderr
    records = json.loads(out.read_text(encoding="utf-8"))
    assert sorted(Path(r["file"]).name for r in records) == [f"song {i:02d}.wav" for i in range(10)]
    assert all(r["error"] is None and math.isfinite(sum(r["scores"].values())) for r in records)
    assert not journal.exists() and _leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------ REST API
@pytest.fixture
def app_model(tiny_model):
    pytest.importorskip("fastapi")
    pytest.importorskip("python_multipart")
    return tiny_model


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """Point every temporary-file API at an empty folder, so anything written there shows."""
    import tempfile

    d = tmp_path / "tmpdir"
    d.mkdir()
    monkeypatch.setenv("TMPDIR", str(d))
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_api_bad_corpus(corpus, app_model, private_tmp):
    from fastapi.testclient import TestClient

    from genrekit.serve import create_app

    _, cases = corpus
    with TestClient(create_app(app_model, max_upload_mb=2, workers=2)) as client:
        for c in cases:
            if c.path.is_symlink():
                continue  # a link has no bytes to upload
            r = client.post("/api/predict", files={"file": (c.name, c.path.read_bytes(), "application/octet-stream")})
            body = r.json()
            _assert_no_traceback(r.text)
            if c.silent:
                assert r.status_code == 422, (c.name, body)
                assert body["file"] == c.name and body["genre"] is None
                assert re.fullmatch(re.escape(c.name) + ": " + Case.NO_MUSIC, body["error"]), (c.name, body)
            elif c.ok:
                assert r.status_code == 200, (c.name, body)
                assert body["file"] == c.name and all(math.isfinite(s) for s in body["scores"].values())
            else:
                assert r.status_code == 415, (c.name, body)
                assert body["file"] == c.name and body["genre"] is None
                assert body["error"].startswith(c.name) and re.search(c.needle, body["error"]), (c.name, body)
    assert list(private_tmp.iterdir()) == []


def _wav(seconds: float = 3.0, freq: float = 300.0) -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * 22050)) / 22050
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 22050, format="WAV")
    return buf.getvalue()


@pytest.mark.parametrize("name", ["../../x.wav", "/etc/cron.d/x.wav", "..\\..\\x.wav", "a/../../../x.wav",
                                  "x.wav\x00.sh", "....//....//x.wav"])
def test_api_path_like_names_write_nothing(name, app_model, private_tmp, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from genrekit.serve import create_app

    work = tmp_path / "work" / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)  # a relative "../../x.wav" would land inside tmp_path/work
    with TestClient(create_app(app_model, max_upload_mb=1, workers=1)) as client:
        # a first upload warms the model (its ONNX graph is built into the cache once): then nothing
        # but the path-like upload happens between the two snapshots
        assert client.post("/api/predict", files={"file": ("warm.wav", _wav(), "audio/wav")}).status_code == 200
        before = _tree(tmp_path)
        r = client.post("/api/predict", files={"file": (name, _wav(), "audio/wav")})
    assert r.status_code == 200, r.text
    shown = r.json()["file"]
    assert "/" not in shown and "\\" not in shown and "\x00" not in shown and shown not in ("", ".", "..")
    assert _tree(tmp_path) == before
    assert not Path("/etc/cron.d/x.wav").exists()


def _multipart(data: bytes, name: str = "song.wav") -> tuple[bytes, str]:
    boundary = "genrekitboundary7e3"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_live_server_concurrency_slow_and_abandoned_uploads(app_model, private_tmp, capfd):
    import httpx

    from genrekit.serve import create_app

    good, garbage = _wav(3.0), b"\x00garbage" * 5000
    over = b"\x01" * (1024 * 1024 + 200_000)
    with LiveServer(create_app(app_model, max_upload_mb=1, workers=2)) as srv:
        with httpx.Client(timeout=60) as c:
            assert c.get(srv.url("/api/health")).status_code == 200
            assert c.post(srv.url("/api/predict"), files={"file": ("w.wav", good)}).status_code == 200  # warm up
        threads0, rss0 = threading.active_count(), _rss_kb()

        # many concurrent requests: all answered with the right status, threads and memory bounded
        def one(i: int) -> int:
            data, name = [(good, "ok.wav"), (garbage, "bad.wav"), (over, "big.wav")][i % 3]
            with httpx.Client(timeout=120) as c:
                return c.post(srv.url("/api/predict"), files={"file": (name, data)}).status_code

        peak_threads = [0]
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                peak_threads[0] = max(peak_threads[0], threading.active_count())
                time.sleep(0.01)

        w = threading.Thread(target=watch)
        w.start()
        with ThreadPoolExecutor(12) as ex:
            statuses = list(ex.map(one, range(30)))
        stop.set()
        w.join()
        assert statuses == [[200, 415, 413][i % 3] for i in range(30)]
        assert peak_threads[0] - threads0 <= 12 + 4  # the client threads, the watcher, no per-request threads
        assert _rss_kb() - rss0 < 400 * 1024

        # a slow upload (a chunk every 50 ms) completes, and health answers meanwhile
        body, ctype = _multipart(good, "slow.wav")
        with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as s:
            s.sendall(f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
                      f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
            step = len(body) // 20 + 1
            for i in range(0, len(body), step):
                s.sendall(body[i:i + step])
                if i == step * 5:
                    t0 = time.monotonic()
                    assert httpx.get(srv.url("/api/health"), timeout=10).status_code == 200
                    assert time.monotonic() - t0 < 5
                time.sleep(0.05)
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["file"] == "slow.wav"

        # abandoned uploads: clients that vanish half-way leave nothing behind and block nothing
        for _ in range(8):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            s.sendall(f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
            s.close()
        time.sleep(0.5)
        with httpx.Client(timeout=60) as c:
            assert c.post(srv.url("/api/predict"), files={"file": ("after.wav", good)}).status_code == 200
    assert list(private_tmp.iterdir()) == []
    _assert_no_traceback(*capfd.readouterr())  # the server logged no exception for any of it


def test_stalled_uploads_are_cut_off_and_do_not_block_others(app_model, private_tmp, monkeypatch, capfd):
    """Clients that open an upload and stop sending get 408 after the idle timeout; meanwhile and after,
    other uploads are still served (stalled clients cannot hold every upload slot forever)."""
    import httpx

    from genrekit import serve
    from genrekit.serve import upload

    monkeypatch.setattr(upload, "UPLOAD_IDLE_SECONDS", 1.5)
    good = _wav(3.0)
    body, ctype = _multipart(good, "stalled.wav")
    with LiveServer(serve.create_app(app_model, max_upload_mb=1, workers=1)) as srv:
        stalled = []
        for _ in range(8):  # more than the 2 * workers + 2 upload slots
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
            s.sendall(f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:1000])
            stalled.append(s)
        t0 = time.monotonic()
        r = httpx.post(srv.url("/api/predict"), files={"file": ("fine.wav", good)}, timeout=60)
        assert r.status_code == 200 and time.monotonic() - t0 < 30
        for s in stalled:
            reply = s.recv(65536)
            s.close()
            assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
            assert b"upload too slow" in reply
    assert list(private_tmp.iterdir()) == []
    _assert_no_traceback(*capfd.readouterr())
