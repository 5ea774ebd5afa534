"""genrekit.engine: atomic writes, the content-addressed cache and the error-capturing process pool."""

from __future__ import annotations

import os

import pytest

from genrekit import engine


def square(x: int) -> int:
    if x == 3:
        raise ValueError("three is not allowed")
    return x * x


def die_on_five(x: int) -> int:
    if x == 5:
        os._exit(13)  # a worker crash (what the OOM killer or a segfault looks like)
    return x + 100


# ---------------------------------------------------------------------------------------------- atomic files


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "sub" / "out.csv"
    engine.atomic_write_text(p, "a,b\n1,2\n")
    assert p.read_text() == "a,b\n1,2\n"
    engine.atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"new"


def test_atomic_writer_leaves_old_file_on_error(tmp_path):
    p = tmp_path / "out.csv"
    p.write_text("old")
    with pytest.raises(RuntimeError), engine.atomic_writer(p) as f:
        f.write("half of the new ")
        raise RuntimeError("interrupted")
    assert p.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["out.csv"]  # no temporary file left
    with pytest.raises(ValueError):
        with engine.atomic_writer(p, "r"):
            pass


def test_atomic_path_for_writers_that_want_a_file_name(tmp_path):
    p = tmp_path / "fig.png"
    with engine.atomic_path(p, suffix=".png") as tmp:
        assert tmp.name.startswith(".fig.png.") and tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_bytes(b"png bytes")
        assert not p.exists()  # nothing at the target until the block ends
    assert p.read_bytes() == b"png bytes" and sorted(x.name for x in tmp_path.iterdir()) == ["fig.png"]
    with pytest.raises(OSError), engine.atomic_path(p) as tmp:
        tmp.write_bytes(b"half")
        raise OSError("disk full")
    assert p.read_bytes() == b"png bytes" and sorted(x.name for x in tmp_path.iterdir()) == ["fig.png"]


# ---------------------------------------------------------------------------------------------- cache


def test_cache_arrays_and_the_flat_cache_key(tmp_path):
    import numpy as np

    f = tmp_path / "clip.wav"
    f.write_bytes(b"audio bytes")
    c = engine.Cache("logmel", {"n_mels": 128}, root=tmp_path / "c")
    k = c.key(f)
    assert c.get_array(k) is None
    c.put_array(k, np.arange(6, dtype=np.float32).reshape(2, 3))
    got = c.get_array(k)
    assert got.dtype == np.float32 and got.tolist() == [[0, 1, 2], [3, 4, 5]]
    next(c.dir.rglob("*.npy")).write_bytes(b"torn")
    assert c.get_array(k) is None and not list(c.dir.rglob("*.npy"))  # a damaged entry is a miss, removed
    key = engine.cache_key(f, {"n_mels": 128})
    assert key == f"{engine.settings_digest({'n_mels': 128})}-{engine.file_digest(f)}" == f"{c.dir.name}-{k}"
    assert engine.cache_key(f, {"n_mels": 64}) != key


def test_cache_roundtrip_keys_and_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert engine.cache_root() == tmp_path / "xdg" / "genrekit"
    a = tmp_path / "a.bin"
    b = tmp_path / "b.bin"
    a.write_bytes(b"same content")
    b.write_bytes(b"same content")
    c = engine.Cache("features", {"segment": None, "v": 1})
    ka, kb = c.key(a), c.key(b)
    assert ka == kb == engine.file_digest(a)  # content, not name
    assert c.get(ka) is None and ka not in c
    c.put(ka, [{"values": [1.5, float("nan")]}])
    got = c.get(kb)
    assert got[0]["values"][0] == 1.5 and got[0]["values"][1] != got[0]["values"][1]
    assert c.dir.is_relative_to(tmp_path / "xdg" / "genrekit" / "features")
    assert (c.dir / "settings.json").is_file()
    other = engine.Cache("features", {"segment": 3.0, "v": 1})
    assert other.get(ka) is None  # other settings, other entry
    # the content digest is memoised per (path, size, mtime): a changed file gets a new key
    a.write_bytes(b"different content!")
    assert c.key(a) != ka


def test_cache_disabled_and_corrupt_entries(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc")
    off = engine.Cache("t", {}, root=tmp_path / "c", enabled=False)
    k = off.key(f)
    off.put(k, 1)
    assert off.get(k) is None and not (tmp_path / "c").exists()
    on = engine.Cache("t", {}, root=tmp_path / "c")
    on.put(k, {"x": 1})
    entry = next(p for p in on.dir.rglob("*.json") if p.name != "settings.json")
    entry.write_text('{"value": ')  # e.g. a disk that filled up under another tool
    assert on.get(k) is None and not entry.exists()
    with pytest.raises(ValueError):
        engine.Cache("../evil", {})


# ---------------------------------------------------------------------------------------------- run_local


@pytest.mark.parametrize("jobs", [1, 2])
def test_run_local_captures_errors_per_item(jobs):
    out = dict(engine.run_local(square, range(6), jobs=jobs, progress=False))
    assert set(out) == set(range(6))
    assert {k: v for k, v in out.items() if k != 3} == {0: 0, 1: 1, 2: 4, 4: 16, 5: 25}
    err = out[3]
    assert isinstance(err, engine.ItemError) and err.kind == "ValueError" and "three" in str(err)


def test_run_local_survives_a_dying_worker():
    out = dict(engine.run_local(die_on_five, range(8), jobs=2, progress=False))
    assert set(out) == set(range(8))
    assert isinstance(out[5], engine.ItemError) and out[5].kind == "WorkerDied"
    assert {k: v for k, v in out.items() if k != 5} == {i: i + 100 for i in range(8) if i != 5}


def test_run_local_empty_and_progress(capsys):
    assert list(engine.run_local(square, [], jobs=2)) == []
    assert [r for _, r in engine.run_local(square, [2], jobs=4, progress=False)] == [4]


def test_limit_blas_threads_caps_loaded_blas():
    """Run in a child process: the cap is process-wide and must not leak into other tests."""
    import subprocess
    import sys

    code = (
        "import numpy, os\n"
        "from genrekit import engine\n"
        "engine.limit_blas_threads(1)\n"
        "from threadpoolctl import threadpool_info\n"
        "print(os.environ['OPENBLAS_NUM_THREADS'], [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    first, threads = r.stdout.split(" ", 1)
    assert first == "1" and set(eval(threads)) <= {1}, r.stdout + r.stderr


def test_workers_exit_when_the_batch_process_is_killed(tmp_path):
    """A parent killed with SIGKILL cannot shut its pool down: its workers must not linger (each may hold
    a model in memory), neither fork workers nor forkserver ones."""
    import signal
    import subprocess
    import sys
    import time

    for method in ("fork", "forkserver"):
        marks = tmp_path / method
        marks.mkdir()
        code = (
            "import os, time\n"
            "from genrekit import engine\n"
            "def slow(i):\n"
            f"    open(os.path.join({str(marks)!r}, str(os.getpid())), 'w').close()\n"
            "    time.sleep(60)\n"
            "    return i\n"
            "if __name__ == '__main__':\n"
            f"    list(engine.run_local(slow, range(4), jobs=2, progress=False, start_method={method!r}))\n"
        )
        script = tmp_path / f"run_{method}.py"
        script.write_text(code)
        proc = subprocess.Popen([sys.executable, str(script)])
        deadline = time.monotonic() + 60
        while len(list(marks.iterdir())) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "workers did not start"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        workers = [int(p.name) for p in marks.iterdir()]
        deadline = time.monotonic() + 20
        while any(_alive(pid) for pid in workers):
            assert time.monotonic() < deadline, f"{method} workers outlived their parent: {workers}"
            time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:  # a zombie (exited, not yet reaped) counts as gone
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


# ------------------------------------------------------------------------------------------ prefetch
def test_prefetch_keeps_order_and_reraises_the_producers_error_in_place():
    def gen():
        yield from range(5)
        raise ValueError("bad block")

    got = []
    with pytest.raises(ValueError, match="bad block"):
        for x in engine.prefetch(gen(), depth=2):
            got.append(x)
    assert got == [0, 1, 2, 3, 4]
    assert list(engine.prefetch(iter([]))) == []
    with pytest.raises(ValueError, match="depth"):
        list(engine.prefetch([1], depth=0))


def test_prefetch_stops_and_closes_the_producer_when_the_consumer_stops_early():
    import threading

    closed = threading.Event()
    produced = []

    def endless():
        try:
            i = 0
            while True:
                produced.append(i)
                yield i
                i += 1
        finally:
            closed.set()

    it = engine.prefetch(endless(), depth=1)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()  # what an exception in the consumer or a deadline does
    assert closed.wait(2.0)
    assert not any(t.name == "genrekit-prefetch" for t in threading.enumerate())
    assert len(produced) <= 3 + 2  # never more than depth ahead (plus the one being handed over)


def test_atomic_writes_get_ordinary_permissions(tmp_path, monkeypatch):
    """A new file gets 0666 less the umask (not mkstemp's 0600); a replaced file keeps its mode."""
    import stat

    monkeypatch.setattr(engine, "_UMASK", 0o027)  # the umask engine read at import
    engine.atomic_write_text(tmp_path / "new.txt", "a")
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o640
    (tmp_path / "new.txt").chmod(0o604)
    engine.atomic_write_bytes(tmp_path / "new.txt", b"b")
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o604
    assert (tmp_path / "new.txt").read_bytes() == b"b"
