"""`genrekit tags` / `genrekit embed` and their Python facade (genrekit.tags, genrekit.embed): musicnn
tags and embeddings of files and folders, cached by content, resumable, bad and silent files reported;
and `genrekit predict --out DIR/` carrying tags and uncertain."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import genrekit
from genrekit.cli import main
from genrekit.networks import musicnn as embeddings
from genrekit.networks.musicnn import model as musicnn_model
from genrekit.run import networks as run_networks
from genrekit.run import sinks
from helpers import tone, write_audio

SR = 22050


pytestmark = pytest.mark.usefixtures("own_cache")  # each test its own cache (analyses, ONNX graphs)


@pytest.fixture
def music(tmp_path) -> Path:
    """Two clips (2 patches and 1), one with a silent first patch, one silent file, one that is not audio."""
    root = tmp_path / "music"
    write_audio(root / "a.wav", tone(6.5, freq=330.0)[:, 0])
    write_audio(root / "b.flac", tone(3.5, freq=110.0, seed=1)[:, 0])
    y = tone(6.5, freq=660.0, seed=2)[:, 0]
    y[: int(3.2 * SR)] = 0.0  # the first patch (0-2.99 s) is digital silence
    write_audio(root / "c_intro.wav", y)
    write_audio(root / "d_silent.wav", np.zeros(3 * SR, np.float32))
    (root / "e_bad.wav").write_bytes(b"RIFF not really audio")
    return root


def _f(root: Path, name: str) -> str:
    return str(root / name)


def _counting(monkeypatch) -> list[str]:
    """Count runs of the network (this process: jobs=1)."""
    calls: list[str] = []
    real = musicnn_model.embed_file
    monkeypatch.setattr(musicnn_model, "embed_file", lambda path, **kw: calls.append(str(path)) or real(path, **kw))
    return calls


# ============================================================================================ tags


def test_tags_agree_with_embeddings_top_tags_per_file_and_per_patch(music):
    a = _f(music, "a.wav")
    rec = genrekit.tags(a, top_k=4, segments=True)
    e = embeddings.embed_file(a, backend="onnx")
    assert rec["error"] is None and rec["model"] == "MSD_musicnn" and rec["n_patches"] == e.n_patches == 2
    assert rec["duration_s"] == pytest.approx(6.5, abs=1e-3)
    ref = embeddings.top_tags(e, 4)
    assert [t for t, _ in rec["tags"]] == [t for t, _ in ref]
    assert [s for _, s in rec["tags"]] == pytest.approx([s for _, s in ref], abs=1e-6)
    assert len(rec["segments"]) == 2
    for i, seg in enumerate(rec["segments"]):
        assert seg["start"] == pytest.approx(e.starts[i], abs=1e-3)
        assert seg["end"] == pytest.approx(e.starts[i] + embeddings.PATCH_SECONDS, abs=1e-3)
        assert [t for t, _ in seg["tags"]] == [t for t, _ in embeddings.top_tags(e, 4, patch=i)]
    mtt = genrekit.tags(a, model="MTT_musicnn", top_k=50)
    assert mtt["model"] == "MTT_musicnn" and {t for t, _ in mtt["tags"]} == set(embeddings.tag_names("MTT_musicnn"))


def test_silent_file_is_an_error_and_silent_patches_are_left_out(music):
    silent = genrekit.tags(_f(music, "d_silent.wav"), segments=True)
    assert silent["tags"] is None and silent["segments"] is None and "no audible signal" in silent["error"]
    intro = _f(music, "c_intro.wav")
    rec = genrekit.tags(intro, segments=True, top_k=3)
    assert rec["error"] is None and rec["n_patches"] == 2
    assert rec["segments"][0] == {"start": 0.0, "end": 2.992, "tags": None, "silent": True}
    e = embeddings.embed_file(intro, backend="onnx")
    # the file's tags are those of its one audible patch, not a mean with the silence
    assert [t for t, _ in rec["tags"]] == [t for t, _ in embeddings.top_tags(e, 3, patch=1)]
    assert [t for t, _ in rec["tags"]] == [t for t, _ in rec["segments"][1]["tags"]]
    df = genrekit.embed(intro)
    assert df.loc[0, "n_silent"] == 1
    assert df.loc[0, "penultimate"] == pytest.approx(e.penultimate[1], abs=1e-6)


def test_cli_json_equals_the_facade_and_a_bad_file_does_not_stop_the_rest(music, tmp_path, capsys):
    out = tmp_path / "tags.json"
    rc = main(["tags", str(music), "--format", "json", "--out", str(out), "--no-progress", "--segments"])
    assert rc == 1  # two files failed (silent, not audio); the others completed
    cli = json.loads(out.read_text())
    assert [Path(r["file"]).name for r in cli] == ["a.wav", "b.flac", "c_intro.wav", "d_silent.wav", "e_bad.wav"]
    by = {Path(r["file"]).name: r for r in cli}
    assert by["e_bad.wav"]["tags"] is None and "e_bad.wav" in by["e_bad.wav"]["error"]
    assert by["b.flac"]["error"] is None and by["b.flac"]["n_patches"] == 1 and len(by["b.flac"]["tags"]) == 5
    assert "2 of 5 files failed" in capsys.readouterr().err
    api = genrekit.tags(str(music), segments=True)  # served from the cache the CLI filled
    assert json.loads(json.dumps(api)) == cli
    assert main(["tags", str(music / "nope.wav"), str(music / "a.wav"), "--format", "csv", "--no-progress"]) == 1
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].startswith("file,duration_s,n_patches,tag_1,score_1") and len(rows) == 3
    assert "nope.wav" in rows[1] and rows[2].split(",")[3] == by["a.wav"]["tags"][0][0]


def test_second_run_is_served_from_the_cache_shared_by_tags_and_embed(music, tmp_path, monkeypatch, capsys):
    calls = _counting(monkeypatch)
    files = [_f(music, "a.wav"), _f(music, "b.flac")]
    first = genrekit.tags(files)
    assert sorted(calls) == sorted(files)
    calls.clear()
    assert genrekit.tags(files) == first and calls == []
    df = genrekit.embed(files)  # the same analyses: embed computes nothing either
    assert calls == [] and len(df) == 2
    assert main(["embed", *files, "--out", str(tmp_path / "e.parquet"), "--no-progress"]) == 0
    assert calls == [] and "(2 from cache)" in capsys.readouterr().err
    assert genrekit.tags(files, cache=False) == first and sorted(calls) == sorted(files)
    calls.clear()
    assert genrekit.tags(files, model="MTT_musicnn") and len(calls) == 2  # other settings, other entries


def test_tags_resume_from_a_partial_journal(music, tmp_path, monkeypatch):
    files = [_f(music, "a.wav"), _f(music, "b.flac")]
    out = tmp_path / "t.json"
    settings = run_networks.network_settings()
    # a killed run left a journal with one finished record and a torn line
    j = sinks.JournalSink(out, settings={"musicnn": settings.cache_settings(), "top_k": 5, "segments": False})
    fake = {"file": files[0], "model": "MSD_musicnn", "duration_s": 6.5, "n_patches": 2,
            "tags": [["from the journal", 1.0]], "error": None}
    j.append(files[0], fake)
    with open(j.path, "a") as f:
        f.write('{"key": "torn')
    calls = _counting(monkeypatch)
    assert main(["tags", *files, "--format", "json", "--out", str(out), "--no-progress"]) == 0
    recs = json.loads(out.read_text())
    assert recs[0] == fake and recs[1]["tags"][0][0] != "from the journal"
    assert calls == [files[1]] and not j.path.exists()


def test_tags_to_parquet_folder_has_tag_structs(music, tmp_path):
    import pandas as pd

    out = tmp_path / "tags"
    assert main(["tags", _f(music, "a.wav"), _f(music, "e_bad.wav"), "--out", f"{out}/", "--no-progress"]) == 1
    df = pd.read_parquet(out)
    assert list(df["file"]) == [_f(music, "a.wav")] and df.loc[0, "n_patches"] == 2
    ref = genrekit.tags(_f(music, "a.wav"))["tags"]
    assert [(t["tag"], t["score"]) for t in df.loc[0, "tags"]] == [tuple(x) for x in ref]


def test_parallel_jobs_match_serial(music):
    files = [_f(music, "a.wav"), _f(music, "b.flac"), _f(music, "e_bad.wav")]
    serial = genrekit.tags(files, cache=False)
    parallel = genrekit.tags(files, jobs=2, cache=False)
    assert [r["tags"] for r in parallel] == [r["tags"] for r in serial]
    assert parallel[2]["error"] == serial[2]["error"]


def test_usage_errors_and_flag_choices(music, tmp_path, capsys):
    from genrekit import networks
    from genrekit.cli import tags_cmd

    assert tags_cmd.BACKENDS == networks.BACKENDS
    assert run_networks.layer_sizes() == {"penultimate": embeddings.N_PENULTIMATE, "pooled": embeddings.N_POOLED,
                                          "taggram": embeddings.N_TAGS}
    assert run_networks.network_tags is genrekit.tags
    a = _f(music, "a.wav")
    assert main(["tags", a, "--top-k", "0"]) == 2
    assert main(["embed", a, "--out", str(tmp_path / "e.txt")]) == 2
    assert main(["embed", a, "--out", str(tmp_path / "e.parquet"), "--layers", "penultimate,nope"]) == 2
    err = capsys.readouterr().err
    assert "--top-k must be within 1..50" in err and "--out must end in" in err and "'nope'" in err
    with pytest.raises(genrekit.errors.ModelError, match="unknown pretrained network 'musicnn'; choose one of "
                                                         "MSD_musicnn, MTT_musicnn, mn04, audioset"):
        genrekit.tags(a, model="musicnn")
    with pytest.raises(genrekit.errors.GenrekitError, match="top_k"):
        genrekit.tags(a, top_k=51)


def test_tags_and_import_need_no_torch(music):
    code = ("import sys, genrekit; assert 'torch' not in sys.modules and 'sklearn' not in sys.modules; "
            f"r = genrekit.tags({_f(music, 'a.wav')!r}); assert r['error'] is None, r; "
            "print(sorted(m for m in ('torch', 'sklearn', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['onnxruntime']"


# ============================================================================================ embed


def test_embed_parquet_round_trips_with_pandas(music, tmp_path):
    import pandas as pd
    import pyarrow.parquet as pq

    out = tmp_path / "emb.parquet"
    assert main(["embed", str(music), "--out", str(out), "--no-progress"]) == 1  # silent + bad listed
    schema = pq.read_schema(out)
    assert str(schema.field("penultimate").type) == "fixed_size_list<element: float>[200]"
    assert str(schema.field("pooled").type) == "fixed_size_list<element: float>[1506]"
    assert str(schema.field("taggram").type) == "fixed_size_list<element: float>[50]"
    df = pd.read_parquet(out)
    assert list(df.columns) == ["file", "duration_s", "n_patches", "n_silent", "penultimate", "pooled", "taggram"]
    assert [Path(f).name for f in df["file"]] == ["a.wav", "b.flac", "c_intro.wav"]
    errors = (tmp_path / "emb.parquet.errors.tsv").read_text()
    assert "d_silent.wav" in errors and "no audible signal" in errors and "e_bad.wav" in errors
    e = embeddings.embed_file(_f(music, "a.wav"), backend="onnx")
    assert np.stack(df["penultimate"]).shape == (3, 200)
    assert df.loc[0, "penultimate"] == pytest.approx(e.penultimate_mean, abs=1e-6)
    assert df.loc[0, "pooled"] == pytest.approx(e.pooled_mean, rel=1e-5, abs=1e-4)
    assert df.loc[0, "taggram"] == pytest.approx(e.taggram_mean, abs=1e-6)
    with pytest.warns(UserWarning, match="2 file"):
        api = genrekit.embed(str(music))
    assert list(api["file"]) == list(df["file"]) and set(api.attrs["errors"]) == {
        _f(music, "d_silent.wav"), _f(music, "e_bad.wav")}
    for col in ("penultimate", "pooled", "taggram"):
        assert np.array_equal(np.stack(api[col]), np.stack(df[col]))


def test_per_window_rows_count_patches_in_every_format(music, tmp_path):
    import pandas as pd

    files = [_f(music, "a.wav"), _f(music, "c_intro.wav")]
    args = ["embed", *files, "--per-window", "--layers", "taggram,penultimate", "--no-progress", "--out"]
    assert main([*args, str(tmp_path / "w.parquet")]) == 0
    df = pd.read_parquet(tmp_path / "w.parquet")
    assert list(df.columns) == ["file", "duration_s", "patch", "start", "end", "silent", "penultimate", "taggram"]
    assert len(df) == 4 and list(df["patch"]) == [0, 1, 0, 1] and list(df["silent"]) == [False, False, True, False]
    e = embeddings.embed_file(files[0], backend="onnx")
    assert list(df["start"][:2]) == pytest.approx(list(e.starts)) and np.allclose(
        np.stack(df["taggram"][:2]), e.taggram, atol=1e-6)
    assert main([*args, str(tmp_path / "w.npz")]) == 0
    z = np.load(tmp_path / "w.npz")  # no pickle needed
    assert z["penultimate"].shape == (4, 200) and list(z["file"]) == list(df["file"])
    assert np.array_equal(z["taggram"], np.stack(df["taggram"]))
    assert main([*args, str(tmp_path / "w.csv")]) == 0
    c = pd.read_csv(tmp_path / "w.csv")
    assert len(c) == 4 and c.shape[1] == 6 + 200 + 50
    assert c.filter(like="taggram_").to_numpy() == pytest.approx(np.stack(df["taggram"]), abs=1e-6)
    facade = genrekit.embed(files, per_window=True, layers=["taggram", "penultimate"])
    assert list(facade.columns) == list(df.columns) and len(facade) == 4


def test_interrupted_embed_leaves_no_output_and_resumes(music, tmp_path, monkeypatch, capsys):
    files = [_f(music, "a.wav"), _f(music, "b.flac"), _f(music, "c_intro.wav")]
    real = run_networks.analyse
    done: list[str] = []

    def killed(path, settings):
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(path)
        return real(path, settings)

    monkeypatch.setattr(run_networks, "analyse", killed)
    out, parts = tmp_path / "e.parquet", tmp_path / "parts"
    assert main(["embed", *files, "--out", str(out), "--no-progress"]) == 130
    assert not out.exists()  # nothing half-written
    assert "2 finished file(s) are cached" in capsys.readouterr().err
    monkeypatch.setattr(run_networks, "analyse", real)
    calls = _counting(monkeypatch)
    assert main(["embed", *files, "--out", str(out), "--no-progress"]) == 0
    assert calls == [files[2]] and "(2 from cache)" in capsys.readouterr().err
    # a Parquet folder: the finished files' part stays, a rerun does only the rest
    done.clear()
    monkeypatch.setattr(run_networks, "analyse", killed)
    args = ["embed", *files, "--out", f"{parts}/", "--no-progress", "--no-cache", "--part-size", "1"]
    assert main(args) == 130
    monkeypatch.setattr(run_networks, "analyse", real)
    calls.clear()
    assert main(args) == 0
    assert calls == [files[2]] and "resuming: 2 of 3 files already done" in capsys.readouterr().err
    from genrekit.parquet_out import read_dataset

    table = read_dataset(parts).to_pandas()
    assert sorted(table["file"]) == sorted(files)
    assert main(["embed", *files, "--out", f"{parts}/", "--per-window", "--no-progress"]) == 1  # other settings
    assert "other settings" in capsys.readouterr().err


# ============================================================================================ predict parquet


def test_predict_parquet_carries_tags_and_uncertain(music, tmp_path, tiny_model, capsys):
    import pandas as pd

    files = [_f(music, "a.wav"), _f(music, "e_bad.wav")]
    out = tmp_path / "pred"
    base = ["predict", *files, "--model", str(tiny_model), "--tags", "--no-progress"]
    assert main([*base, "--min-confidence", "0.99", "--out", f"{out}/"]) == 1
    df = pd.read_parquet(out)
    assert len(df) == 1 and df.loc[0, "uncertain"] in (True, False)
    assert df.loc[0, "uncertain"] == bool(df.loc[0, f"score_{df.loc[0, 'genre']}"] < 0.99)
    assert main([*base, "--min-confidence", "0.99", "--format", "json"]) == 1
    rec = json.loads(capsys.readouterr().out)[0]
    assert [(t["tag"], t["score"]) for t in df.loc[0, "tags"]] == [tuple(x) for x in rec["tags"]]
    assert df.loc[0, "uncertain"] == rec["uncertain"]
    # another threshold is other content: refused, never mixed into the same folder
    assert main([*base, "--min-confidence", "0.5", "--out", f"{out}/"]) == 1
    assert "other settings" in capsys.readouterr().err


def test_rows_to_table_keeps_columns_missing_from_the_first_row(tmp_path):
    import pandas as pd

    from genrekit.parquet_out import OutputError, predict_row, rows_to_table, write_parquet

    plain = {"file": "a.wav", "genre": "rock", "scores": {"rock": 1.0}, "top": [["rock", 1.0]], "duration_s": 3.0}
    tagged = {**plain, "file": "b.wav", "tags": [["rock", 0.5], ["pop", 0.25]], "uncertain": False}
    rows = [predict_row(plain), predict_row(tagged)]
    assert list(rows[1]) == ["file", "genre", "duration_s", "score_rock", "top", "tags", "uncertain"]
    write_parquet(tmp_path / "p.parquet", rows)
    df = pd.read_parquet(tmp_path / "p.parquet")
    assert df.loc[0, "tags"] is None and list(df.loc[1, "tags"]) == [{"tag": "rock", "score": 0.5},
                                                                      {"tag": "pop", "score": 0.25}]
    with pytest.raises(OutputError, match="vectors of 3 values"):
        rows_to_table([{"v": np.zeros(2)}], vectors={"v": 3})


# ============================================================================================ ray


@pytest.mark.ray
def test_ray_engine_gives_the_local_records(music):
    ray = pytest.importorskip("ray", reason="the Ray engine is an optional extra")
    from genrekit.run.engines import RayEngine

    files = [_f(music, "a.wav"), _f(music, "e_bad.wav")]
    local = genrekit.tags(files, cache=False)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        remote = genrekit.tags(files, engine=RayEngine(progress=False), cache=False)
    finally:
        if started:
            ray.shutdown()
    assert [r["tags"] for r in remote] == [r["tags"] for r in local] and remote[1]["error"]


# ============================================================================================ real clips


@pytest.mark.shared
def test_real_gtzan_clips_tags_and_windows(gtzan, tmp_path):
    """Two real 30 s clips: tags agree with embeddings.top_tags, every patch of real music is audible,
    the per-window rows are the clip's 10 patches, and a metal clip's tags say metal."""
    import pandas as pd

    files = [str(gtzan / "audio" / "metal" / "metal.00000.flac"), str(gtzan / "audio" / "classical" / "classical.00000.flac")]
    recs = genrekit.tags(files, segments=True)
    for f, rec in zip(files, recs, strict=True):
        e = embeddings.embed_file(f, backend="onnx")
        assert rec["error"] is None and rec["n_patches"] == e.n_patches == 10
        assert [t for t, _ in rec["tags"]] == [t for t, _ in embeddings.top_tags(e, 5)]
        assert not any(s.get("silent") for s in rec["segments"])
    assert "metal" in {t for t, _ in recs[0]["tags"]}
    assert main(["embed", *files, "--per-window", "--out", str(tmp_path / "w.parquet"), "--no-progress"]) == 0
    df = pd.read_parquet(tmp_path / "w.parquet")
    assert df.groupby("file").size().to_dict() == {f: 10 for f in files} and not df["silent"].any()
