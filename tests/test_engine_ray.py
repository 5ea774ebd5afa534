"""The Ray engine on a real local Ray instance (2 CPUs): same results as the local engine, resume after a
killed run, and a worker that dies mid-run. One Ray instance serves the whole file (it takes seconds to
start); CLI runs in a subprocess join it with --address."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genrekit.cli import main
from helpers import tone, write_audio

ray = pytest.importorskip("ray", reason="the Ray engine is an optional extra: pip install 'genrekit[ray]'")


class CrashOn:
    """Wraps a per-file function; kills its worker process (like an OOM kill) on one chosen file, every
    time or only the first time (``marker``: a file that records the first crash)."""

    def __init__(self, inner, victim: str, marker: str | None = None):
        self.inner, self.victim, self.marker = inner, victim, marker

    def __call__(self, path: str):
        if os.path.basename(path) == self.victim:
            if self.marker is None or not os.path.exists(self.marker):
                if self.marker is not None:
                    Path(self.marker).touch()
                os._exit(3)
        return self.inner(path)


@pytest.fixture(scope="session")
def ray_address():
    """One real local Ray instance with 2 CPUs for every test here, shut down at the end."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # CrashOn travels to the workers
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def music(tmp_path_factory) -> Path:
    """Eight short clips (one longer than a 30 s block) and one file that is not audio."""
    root = tmp_path_factory.mktemp("music")
    for i in range(8):
        write_audio(root / f"clip{i:02d}.wav", tone(32.0 if i == 5 else 3.0, freq=150.0 * (i + 1), seed=i))
    (root / "broken.wav").write_bytes(b"RIFF not really audio")
    return root


def _files(root: Path) -> list[str]:
    from genrekit.audio import find_audio

    return find_audio([root])[0]


def _local(files, model, **kw):
    from genrekit.run.engines import LocalEngine
    from genrekit.run.predict import predict_records

    return list(predict_records(files, str(model), LocalEngine(jobs=1, progress=False), backend="torch", **kw))


# ============================================================================================ equality
@pytest.mark.ray
def test_predict_ray_gives_the_local_engines_records(ray_address, tiny_model, music):
    from genrekit.run.predict import predict_ray

    files = _files(music)
    local = _local(files, tiny_model, top_k=2, segments=True)
    remote = list(predict_ray(files, model=tiny_model, top_k=2, segments=True, batch_size=3, progress=False))
    assert remote == local  # same order, same numbers, same error record
    assert [r["file"] for r in remote] == files
    bad = [r for r in remote if r["error"]]
    assert [Path(r["file"]).name for r in bad] == ["broken.wav"] and "broken.wav" in bad[0]["error"]
    assert remote[6]["duration_s"] == pytest.approx(32.0, abs=0.05) and len(remote[6]["segments"]) >= 10


@pytest.mark.ray
def test_cli_predict_parquet_ray_equals_local(ray_address, tiny_model, music, tmp_path, capsys):
    from genrekit.parquet_out import read_dataset, read_manifest

    common = ["predict", str(music), "--model", str(tiny_model), "--part-size", "3", "--no-progress"]
    assert main([*common, "--out", f"{tmp_path / 'local'}/"]) == 1  # broken.wav failed, the rest done
    assert main([*common, "--out", f"{tmp_path / 'ray'}/", "--engine", "ray", "--address", ray_address]) == 1
    a = read_dataset(tmp_path / "local").to_pandas()
    b = read_dataset(tmp_path / "ray").to_pandas()
    assert len(a) == 8 and a.equals(b)
    m = read_manifest(tmp_path / "ray")
    assert len(m["done"]) == 8 and [Path(p).name for p in m["failed"]] == ["broken.wav"]
    assert "not audio" in next(iter(m["failed"].values()))["error"]
    assert sorted(p.name for p in (tmp_path / "ray").glob("part-*.parquet")) == [p["file"] for p in m["parts"]]


@pytest.mark.ray
def test_features_ray_gives_the_local_engines_rows(ray_address, music, tmp_path):
    from threadpoolctl import threadpool_limits

    from genrekit.features import analyse_file
    from genrekit.run.features import features_ray
    from genrekit.run.items import ItemError

    files = _files(music)
    remote = dict(features_ray(files, segment_seconds=3.0, batch_size=2, progress=False))
    for f in files:
        if f.endswith("broken.wav"):
            assert isinstance(remote[f], ItemError) and remote[f].kind == "DecodeError"
        else:
            with threadpool_limits(1):  # as the local engine (and Ray's workers) run: one BLAS thread
                assert remote[f] == analyse_file(f, segment_seconds=3.0)
    # and through the command: byte-identical tables
    args = ["features", str(music), "--no-cache", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "local.csv")]) == 1
    assert main([*args, "--out", str(tmp_path / "ray.csv"), "--engine", "ray", "--address", ray_address]) == 1
    assert (tmp_path / "ray.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()


# ============================================================================================ resume
def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.ray
def test_killed_run_resumes_without_redoing_finished_inputs(ray_address, tiny_model, tmp_path, capsys):
    from genrekit.parquet_out import read_dataset, read_manifest

    music = tmp_path / "many"
    for i in range(24):
        write_audio(music / f"t{i:02d}.wav", tone(3.0, freq=100.0 + 37.0 * i, seed=i))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "genrekit", "predict", str(music), "--model", str(tiny_model), "--out", f"{out}/",
           "--part-size", "2", "--engine", "ray", "--address", ray_address, "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / "_manifest.json").is_file() or not read_manifest(out)["parts"]:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no part written within 60 s"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver dies mid-run
    finally:
        proc.wait()
    before = read_manifest(out)
    assert 0 < len(before["done"]) < 24, "the run was killed part-way"
    kept = {p["file"]: _sha(out / p["file"]) for p in before["parts"]}

    capsys.readouterr()
    assert main(cmd[3:]) == 0
    err = capsys.readouterr().err
    assert f"resuming: {len(before['done'])} of 24 files already done" in err
    after = read_manifest(out)
    assert len(after["done"]) == 24 and not after["failed"]
    assert all(_sha(out / name) == digest for name, digest in kept.items())  # finished parts untouched
    table = read_dataset(out).to_pandas()
    assert sorted(table["file"]) == sorted(str(p) for p in music.glob("*.wav"))  # each exactly once
    ref = {r["file"]: r for r in _local(sorted(str(p) for p in music.glob("*.wav")), tiny_model, top_k=3, segments=False)}
    for row in table.itertuples():
        assert row.genre == ref[row.file]["genre"] and row.score_blues == ref[row.file]["scores"]["blues"]


# ============================================================================================ worker deaths
@pytest.mark.ray
def test_worker_killed_once_is_retried_and_the_run_completes(ray_address, tiny_model, music, tmp_path):
    from genrekit.run.predict import PredictTask, predict_ray

    files = _files(music)
    task = CrashOn(PredictTask(model=tiny_model, backend="torch", top_k=3, segments=False), "clip03.wav",
                   marker=str(tmp_path / "crashed-once"))
    got = list(predict_ray(files, model=tiny_model, task=task, batch_size=3, progress=False))
    assert (tmp_path / "crashed-once").exists()  # the worker really died
    assert got == _local(files, tiny_model, top_k=3, segments=False)


@pytest.mark.ray
def test_file_that_always_kills_its_worker_is_listed_and_the_rest_complete(ray_address, tiny_model, music):
    from genrekit.run.predict import PredictTask, predict_ray

    files = _files(music)
    task = CrashOn(PredictTask(model=tiny_model, backend="torch", top_k=3, segments=False), "clip03.wav")
    got = {r["file"]: r for r in predict_ray(files, model=tiny_model, task=task, batch_size=4, max_retries=1,
                                             progress=False)}
    victim = str(music / "clip03.wav")
    assert got[victim]["genre"] is None and "WorkerDied" in got[victim]["error"]
    for ref in _local(files, tiny_model, top_k=3, segments=False):
        if ref["file"] != victim:
            assert got[ref["file"]] == ref


# ============================================================================================ no ray installed
def test_missing_ray_says_how_to_install_it(monkeypatch, tiny_model, music):
    from genrekit.run.engines import RayEngineError
    from genrekit.run.predict import predict_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(RayEngineError, match=r"pip install 'genrekit\[ray\]'"):
        list(predict_ray(_files(music), model=tiny_model, progress=False))



@pytest.mark.ray
def test_predict_ray_silence_and_duration_limit_records_equal_local(ray_address, tiny_model, tmp_path):
    """No music, no genre, and the duration limit, on Ray exactly as locally (issue 15)."""
    import numpy as np

    from genrekit.run.predict import predict_ray

    rng = np.random.default_rng(3)
    write_audio(tmp_path / "a silence.wav", np.zeros((5 * 22050, 1), np.float32))
    write_audio(tmp_path / "b hiss.flac", (1e-4 * rng.standard_normal((5 * 22050, 1))).astype(np.float32),
                subtype="PCM_24")
    intro = np.concatenate([np.zeros((6 * 22050, 1), np.float32), tone(6.0, freq=300.0)])
    write_audio(tmp_path / "c intro.wav", intro)
    write_audio(tmp_path / "d long.wav", tone(70.0, freq=300.0))
    files = _files(tmp_path)
    local = _local(files, tiny_model, top_k=2, segments=True, max_duration=60.0)
    remote = list(predict_ray(files, model=tiny_model, top_k=2, segments=True, progress=False, max_duration=60.0))
    assert remote == local
    assert [r["genre"] is None for r in remote] == [True, True, False, True]
    assert all("no audible signal" in r["error"] for r in remote[:2])
    assert remote[2]["segments"][0]["silent"] is True
    assert "longer than the limit of 1 min" in remote[3]["error"]
