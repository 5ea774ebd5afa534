"""genrekit.run.engines: the error-capturing process pool clamped to the machine, BLAS threads, prefetch,
and genrekit.run.cached.cached_map."""

from __future__ import annotations

import os

import pytest

from genrekit.run import engines
from genrekit.run.items import ItemError


def square(x: int) -> int:
    if x == 3:
        raise ValueError("three is not allowed")
    return x * x


def die_on_five(x: int) -> int:
    if x == 5:
        os._exit(13)  # a worker crash (what the OOM killer or a segfault looks like)
    return x + 100


# ---------------------------------------------------------------------------------------------- run_local


@pytest.mark.parametrize("jobs", [1, 2])
def test_run_local_captures_errors_per_item(jobs):
    out = dict(engines.run_local(square, range(6), jobs=jobs, progress=False))
    assert set(out) == set(range(6))
    assert {k: v for k, v in out.items() if k != 3} == {0: 0, 1: 1, 2: 4, 4: 16, 5: 25}
    err = out[3]
    assert isinstance(err, ItemError) and err.kind == "ValueError" and "three" in str(err)


def test_run_local_survives_a_dying_worker():
    out = dict(engines.run_local(die_on_five, range(8), jobs=2, progress=False))
    assert set(out) == set(range(8))
    assert isinstance(out[5], ItemError) and out[5].kind == "WorkerDied"
    assert {k: v for k, v in out.items() if k != 5} == {i: i + 100 for i in range(8) if i != 5}


def test_run_local_empty_and_progress(capsys):
    assert list(engines.run_local(square, [], jobs=2)) == []
    assert [r for _, r in engines.run_local(square, [2], jobs=4, progress=False)] == [4]


def test_limit_blas_threads_caps_loaded_blas():
    """Run in a child process: the cap is process-wide and must not leak into other tests."""
    import subprocess
    import sys

    code = (
        "import numpy, os\n"
        "from genrekit.run import engines\n"
        "engines.limit_blas_threads(1)\n"
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
            "from genrekit.run import engines\n"
            "def slow(i):\n"
            f"    open(os.path.join({str(marks)!r}, str(os.getpid())), 'w').close()\n"
            "    time.sleep(60)\n"
            "    return i\n"
            "if __name__ == '__main__':\n"
            f"    list(engines.run_local(slow, range(4), jobs=2, progress=False, start_method={method!r}))\n"
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
        for x in engines.prefetch(gen(), depth=2):
            got.append(x)
    assert got == [0, 1, 2, 3, 4]
    assert list(engines.prefetch(iter([]))) == []
    with pytest.raises(ValueError, match="depth"):
        list(engines.prefetch([1], depth=0))


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

    it = engines.prefetch(endless(), depth=1)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()  # what an exception in the consumer or a deadline does
    assert closed.wait(2.0)
    assert not any(t.name == "genrekit-prefetch" for t in threading.enumerate())
    assert len(produced) <= 3 + 2  # never more than depth ahead (plus the one being handed over)


# ------------------------------------------------------------------------------------------ how many workers
def test_clamp_jobs_to_the_work_and_the_machine():
    assert engines.clamp_jobs(64, 1000, cpus=2) == 2  # issue 21: --jobs 64 on 2 cores
    assert engines.clamp_jobs(8, 3, cpus=16) == 3  # never more workers than items
    assert engines.clamp_jobs(None, 100, cpus=6) == 6  # None: one per CPU
    assert engines.clamp_jobs(0, 5, cpus=4) == 1 and engines.clamp_jobs(4, 0, cpus=4) == 1
    assert 1 <= engines.usable_cpus() <= (os.cpu_count() or 1)
    assert engines.LocalEngine(jobs=10**6).workers == engines.usable_cpus()


def test_a_pool_clamped_to_one_cpu_still_keeps_crashes_out_of_this_process(monkeypatch):
    monkeypatch.setattr(engines, "usable_cpus", lambda: 1)
    out = dict(engines.run_local(die_on_five, range(7), jobs=2, progress=False))
    assert isinstance(out[5], ItemError) and out[5].kind == "WorkerDied" and out[6] == 106
    assert engines.LocalEngine(jobs=2).workers == 1 and not engines.LocalEngine(jobs=2).in_process
    assert engines.LocalEngine(jobs=1).in_process and engines.LocalEngine(jobs=None).in_process


def test_too_many_jobs_start_no_more_workers_than_cpus_and_say_so_once(tmp_path):
    """In a child process that may use 2 CPUs: 64 jobs asked twice, 2 worker processes, one notice."""
    import subprocess
    import sys

    code = (
        "import os\n"
        "from genrekit.run import engines\n"
        "engines.usable_cpus = lambda: 2\n"
        "def pid(i):\n"
        "    return os.getpid()\n"
        "for _ in range(2):\n"
        "    pids = {p for _, p in engines.run_local(pid, range(40), jobs=64, progress=False)}\n"
        "    print(len(pids))\n"
        "print(len(dict(engines.run_local(pid, range(4), jobs=2, progress=False))))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["2", "2", "4"]  # never 64 (or 24) worker processes
    notes = [line for line in r.stderr.splitlines() if line.startswith("genrekit: running")]
    assert notes == ["genrekit: running 2 worker process(es), not 64: 2 CPU(s) are usable here and more "
                     "workers would only add memory and slow the run"]


# ------------------------------------------------------------------------------------------ cached_map
def _double(x: str) -> str:
    if "bad" in x:
        raise ValueError(f"{x}: bad input")
    return x * 2


def test_cached_map_hits_first_then_computed_and_saved(tmp_path):
    from genrekit.run.cached import cached_map
    from genrekit.store import Cache

    files = []
    for name, text in (("a", "1"), ("b", "2"), ("bad", "3")):
        (tmp_path / name).write_text(text)
        files.append(str(tmp_path / name))
    cache = Cache("t", {"v": 1}, root=tmp_path / "c")
    first = list(cached_map(_double, files + [str(tmp_path / "missing")], cache))
    by = {r.input: r for r in first}
    assert first[0].input.endswith("missing") and first[0].error.kind == "AudioFileNotFoundError"  # keyed first
    assert str(tmp_path / "missing") in first[0].error.message
    assert by[files[0]].value == files[0] * 2 and not by[files[0]].cached and by[files[0]].key == cache.key(files[0])
    assert by[files[2]].error.kind == "ValueError" and by[files[2]].key is not None
    second = list(cached_map(_double, list(reversed(files)), cache))
    assert [(r.input, r.cached) for r in second[:2]] == [(files[1], True), (files[0], True)]  # input order
    assert second[2].input == files[2] and not second[2].ok  # failures are never cached: tried again


def test_cached_map_without_a_cache_and_a_cache_that_cannot_be_written(tmp_path, monkeypatch):
    from genrekit.run.cached import cached_map
    from genrekit.store import Cache, file_digest

    (tmp_path / "a").write_text("x")
    f = str(tmp_path / "a")
    [r] = cached_map(_double, [f], None)
    assert r.ok and r.key == file_digest(f) and not r.cached
    cache = Cache("t", {}, root=tmp_path / "c")

    def full(key, value):
        raise OSError(28, "No space left on device")

    with pytest.warns(UserWarning, match="cache not written"):
        [r] = cached_map(_double, [f], cache, save=full)
    assert r.ok and r.value == f * 2  # the result stands


def _touch_then_double(x: str) -> str:
    with open(x, "a") as fh:  # the file changes while it is being analysed
        fh.write("more")
    return x * 2


def test_cached_map_refuses_a_result_for_a_file_that_changed(tmp_path):
    from genrekit.run.cached import cached_map
    from genrekit.store import Cache

    (tmp_path / "a").write_text("x")
    f = str(tmp_path / "a")
    cache = Cache("t", {}, root=tmp_path / "c")
    [r] = cached_map(_touch_then_double, [f], cache, key=lambda p: "k", unchanged="changed while being analysed")
    assert not r.ok and r.error.message == f"{f}: changed while being analysed"
    assert cache.get("k") is None  # not saved
    [r] = cached_map(_double, [f], cache, key=lambda p: "k", unchanged="changed while being analysed")
    assert r.ok and cache.get("k") == f * 2
