"""genrekit.run: producers (feature rows, prediction records), engines, cached_map, sinks, resume, the shared cache."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from genrekit import store
from genrekit.errors import ModelError
from genrekit.features import FeatureSettings
from genrekit.run import engines, items, sinks
from genrekit.run import features as run_features
from genrekit.run import predict as run_predict
from genrekit.run.items import ItemError
from helpers import tone, write_audio


@pytest.fixture
def music(tmp_path):
    """Three short labelled clips and one file that is not audio, in walk order."""
    root = tmp_path / "music"
    for i, g in enumerate(("blues", "metal", "metal")):
        write_audio(root / g / f"{g}.0000{i}.wav", tone(2.5, freq=220.0 * (i + 1), seed=i))
    (root / "metal" / "metal.00009.wav").write_bytes(b"RIFF not really a wav")
    return root


def _files(root):
    files, errors = items.find_audio([root])
    assert not errors
    return files


# ---------------------------------------------------------------------------------------------- discovery


def test_find_audio_walks_dedupes_and_reports_missing_paths(music, tmp_path):
    files, errors = items.find_audio([music, music / "blues" / "blues.00000.wav", tmp_path / "nope.wav"])
    assert [os.path.basename(f) for f in files] == ["blues.00000.wav", "metal.00001.wav", "metal.00002.wav",
                                                    "metal.00009.wav"]
    assert len(errors) == 1 and errors[0][0].endswith("nope.wav") and errors[0][1].kind == "AudioFileNotFoundError"
    again, _ = items.find_audio([music / "blues", music / "blues"], unique=False)
    assert len(again) == 2  # predict keeps a path given twice, as it always has


# ---------------------------------------------------------------------------------------------- features


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_bad_file_among_good_ones_loses_nothing(music, tmp_path, jobs):
    files = _files(music)
    out = {r.input: r for r in run_features.feature_rows(files, FeatureSettings(), engines.LocalEngine(jobs=jobs, progress=False),
                                                   cache=store.Cache("features", {}, root=tmp_path / "c"))}
    assert set(out) == set(files)
    bad = out.pop(files[-1])
    assert not bad.ok and bad.error.kind == "DecodeError" and bad.value is None
    for f, r in out.items():
        assert r.ok and not r.cached and len(r.value) == 1
        assert r.value[0]["filename"] == os.path.basename(f) and r.value[0]["label"] in ("blues", "metal")


def test_cache_hits_are_flagged_and_computed_once(music, tmp_path, monkeypatch):
    files = _files(music)[:2]
    cache = run_features.feature_cache(FeatureSettings(), root=tmp_path / "c")
    first = list(run_features.feature_rows(files, FeatureSettings(), cache=cache))
    calls = []
    monkeypatch.setattr(FeatureSettings, "analyse", lambda self, p: calls.append(p))
    second = list(run_features.feature_rows(files, FeatureSettings(), cache=cache))
    assert calls == [] and all(r.cached for r in second)
    assert [r.value for r in second] == [r.value for r in first]


def test_features_cli_and_feature_table_share_one_cache(music, tmp_path, monkeypatch):
    """`genrekit features` fills the cache; training on audio (feature_table) then computes nothing."""
    from genrekit import datasets
    from genrekit.cli import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (music / "metal" / "metal.00009.wav").unlink()
    assert main(["features", str(music), "--out", str(tmp_path / "t.csv"), "-q", "--jobs", "1"]) == 0
    assert run_features.feature_cache(FeatureSettings()).dir.is_dir()
    monkeypatch.setattr(FeatureSettings, "analyse", lambda self, p: pytest.fail(f"recomputed {p}"))
    table = run_features.feature_table(datasets.scan_audio([music]), jobs=1, progress=False)
    with open(tmp_path / "t.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(table.filenames) == [r["filename"] for r in rows]
    assert table.X[:, table.columns.index("tempo")].tolist() == [float(r["tempo"]) for r in rows]


def test_csv_sink_orders_rows_and_lists_errors(tmp_path):
    out = tmp_path / "t.csv"
    sink = sinks.CsvSink(out, header=["filename", "v"])
    assert sink.pending(["a", "b", "c"]) == ["a", "b", "c"]
    sinks.write([items.Result("c", [{"filename": "c", "v": 3.0}]), items.Result("b", error=ItemError("DecodeError", "b: bad")),
                 items.Result("a", [{"filename": "a", "v": 0.1}, {"filename": "a.1", "v": 2}])], sink,
                before=[items.Result("gone", error=ItemError("AudioFileNotFoundError", "gone: no such file"))])
    assert out.read_text() == "filename,v\na,0.1\na.1,2\nc,3.0\n"
    assert sink.errors_path.read_text().splitlines() == [
        "path\terror\tmessage", "gone\tAudioFileNotFoundError\tgone: no such file", "b\tDecodeError\tb: bad"]
    assert (sink.rows, sink.files, sink.summary.ok, sink.summary.failed) == (3, 2, 2, 2)
    ok = sinks.CsvSink(out, header=["filename", "v"])
    ok.pending(["a"])
    sinks.write([items.Result("a", [{"filename": "a", "v": 1.0}])], ok)
    assert not ok.errors_path.exists()  # a stale error list is removed


# ---------------------------------------------------------------------------------------------- sinks: resume


def _interrupted(results, stop_after):
    for i, r in enumerate(results):
        if i == stop_after:
            raise KeyboardInterrupt
        yield r


def _records(inputs):
    return [items.Result(i, {"file": i, "genre": "rock", "error": None}) for i in inputs]


def test_journal_sink_resumes_and_redoes_changed_inputs(tmp_path):
    inputs = []
    for i in range(4):
        p = tmp_path / f"{i}.wav"
        p.write_bytes(b"x" * (i + 1))
        inputs.append(str(p))
    out = tmp_path / "o.json"
    sink = sinks.JournalSink(out, settings={"m": 1})
    assert sink.pending(inputs) == inputs
    with pytest.raises(KeyboardInterrupt):
        sinks.write(_interrupted(_records(inputs), 2), sink)
    assert not out.exists() and sink.path.is_file()  # no half output; the journal holds two records
    with open(inputs[1], "ab") as f:
        f.write(b"changed")
    again = sinks.JournalSink(out, settings={"m": 1})
    assert again.pending(inputs) == inputs[1:]  # 0 resumes; 1 changed since; 2, 3 never done
    assert again.summary.resumed == 1
    sinks.write(_records(inputs[1:]), again)
    assert [r["file"] for r in json.loads(out.read_text())] == inputs and not again.path.exists()
    other = sinks.JournalSink(out, settings={"m": 2})  # other settings: nothing resumes
    other.pending(inputs)
    other.append(inputs[0], {"file": inputs[0]})
    assert sinks.JournalSink(out, settings={"m": 1}).pending(inputs) == inputs


def test_parquet_sink_keeps_finished_parts_when_interrupted(tmp_path):
    pytest.importorskip("pyarrow")
    from genrekit.parquet_out import read_dataset

    inputs = []
    for i in range(5):
        p = tmp_path / f"{i}.wav"
        p.write_bytes(b"y" * (i + 1))
        inputs.append(str(p))
    make = lambda: sinks.ParquetSink(tmp_path / "out", kind="t", settings={"a": 1}, part_size=2,  # noqa: E731
                                     to_rows=lambda rec: [{"genre": rec["genre"]}])
    sink = make()
    assert sink.pending(inputs) == inputs
    with pytest.raises(KeyboardInterrupt):
        sinks.write(_interrupted(_records(inputs), 3), sink)
    again = make()
    assert again.pending(inputs) == inputs[3:] and again.summary.resumed == 3  # the third was flushed on abort
    sinks.write([*_records(inputs[3:4]), items.Result(inputs[4], error=ItemError("", "4.wav: broken"))], again)
    assert sorted(read_dataset(tmp_path / "out").to_pandas()["input"]) == inputs[:4]
    assert [f["error"] for f in again.failed.values()] == ["4.wav: broken"]
    assert again.describe(total=5)[1].startswith("1 of 5 inputs failed")


# ---------------------------------------------------------------------------------------------- predict


def test_predict_records_local_pool_equals_this_process(music, tiny_model):
    from genrekit.predict import GenreClassifier

    files = _files(music)
    clf = GenreClassifier.load(tiny_model)
    here = list(run_predict.predict_records(files, clf, engines.LocalEngine(jobs=1, progress=False), top_k=2, segments=True))
    pool = list(run_predict.predict_records(files, tiny_model, engines.LocalEngine(jobs=2, progress=False), top_k=2,
                                      segments=True))
    assert [r["file"] for r in here] == files  # this process: input order
    assert sorted(pool, key=lambda r: r["file"]) == sorted(here, key=lambda r: r["file"])
    bad = [r for r in here if r["error"]]
    assert [os.path.basename(r["file"]) for r in bad] == ["metal.00009.wav"] and bad[0]["genre"] is None
    assert sinks.record_result(bad[0]).error is not None and sinks.record_result(here[0]).ok


def test_predict_task_runs_in_forkserver_workers_and_needs_a_model_file(monkeypatch, tiny_model):
    from genrekit.predict import GenreClassifier

    seen = {}

    def fake_run_local(task, items, **kw):
        seen.update(kw)
        return iter(())

    monkeypatch.setattr(engines, "run_local", fake_run_local)
    list(run_predict.predict_records(["a.wav"], tiny_model, engines.LocalEngine(jobs=2)))
    assert seen["start_method"] == engines.safe_start_method()  # never fork a parent that holds torch
    list(run_features.feature_rows([], engine=engines.LocalEngine(jobs=2)))
    clf = GenreClassifier.load(tiny_model)
    clf.path = None  # an in-memory model: only this process can use it
    with pytest.raises(ModelError, match="cannot be sent to worker processes"):
        list(run_predict.predict_records(["a.wav"], clf, engines.LocalEngine(jobs=2)))
    task = run_predict.PredictTask(model=tiny_model)
    shipped = task.portable()
    assert shipped.blob is not None and shipped.blob.data == tiny_model.read_bytes() and task.blob is None
    assert shipped.blob.materialise().read_bytes() == tiny_model.read_bytes()


def test_batch_is_callable_from_python_without_the_cli(music, tmp_path):
    """The whole features path from Python, in a fresh interpreter: no torch, no CLI module."""
    code = (
        "import sys\n"
        "from genrekit.run import items, sinks\n"
        "from genrekit.run import features as run_features\n"
        f"files, _ = items.find_audio([{str(music / 'blues')!r}])\n"
        f"sink = sinks.CsvSink({str(tmp_path / 'x.csv')!r}, header=['filename', 'tempo'])\n"
        "sinks.write(run_features.feature_rows(sink.pending(files), cache=False), sink)\n"
        "print(sink.rows, [m for m in ('torch', 'genrekit.cli') if m in sys.modules])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "1 []", r.stdout + r.stderr
