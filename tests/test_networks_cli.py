"""mn04 as a registered network: `genrekit tags --model audioset [--genres]`, `genrekit embed --model mn04`
and genrekit.tags / genrekit.embed with it, in every format, with jobs, resume, the cache and the silence
rule that musicnn's commands have. Synthesised audio; the network is the shipped mn04."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import genrekit
from genrekit.cli import main
from genrekit.networks.mn04 import model as mn04_model
from genrekit.networks.mn04.analysis import Mn04Settings, mn04_analysis
from genrekit.networks.mn04.spec import GENRE_ROWS, genre_labels, labels
from genrekit.run import networks as run_networks
from genrekit.run import sinks
from helpers import tone, write_audio

SR = 22050


pytestmark = pytest.mark.usefixtures("own_cache")  # each test its own cache (analyses, ONNX graphs)


@pytest.fixture
def music(tmp_path) -> Path:
    """A 12 s clip (one 10 s window), a 31 s clip whose middle window (10.5-20.5 s) is digital silence,
    a short 4 s clip, a silent file and a file that is not audio."""
    root = tmp_path / "music"
    write_audio(root / "a.wav", tone(12.0, freq=330.0)[:, 0])
    y = tone(31.0, freq=220.0, seed=2)[:, 0]
    y[int(10.4 * SR): int(20.6 * SR)] = 0.0
    write_audio(root / "b_gap.wav", y)
    write_audio(root / "c.flac", tone(4.0, freq=880.0, seed=1)[:, 0])
    write_audio(root / "d_silent.wav", np.zeros(3 * SR, np.float32))
    (root / "e_bad.wav").write_bytes(b"RIFF not really audio")
    return root


def _f(root: Path, name: str) -> str:
    return str(root / name)


def _counting(monkeypatch) -> list[int]:
    """Count runs of the mn04 network in this process (jobs=1)."""
    calls: list[int] = []
    real = mn04_model.embed
    monkeypatch.setattr(mn04_model, "embed", lambda y, sr, **kw: calls.append(1) or real(y, sr, **kw))
    return calls


def _same_records(got: list[dict], want: list[dict]) -> None:
    """Records equal but for scores in the 6th decimal: workers limit BLAS to one thread, so the mel's
    sums may round apart from this process's (the tags and their order are the same)."""
    assert len(got) == len(want)
    for p, q in zip(got, want, strict=True):
        assert {k: v for k, v in p.items() if k not in ("tags", "segments")} == {
            k: v for k, v in q.items() if k not in ("tags", "segments")}
        assert [t for t, _ in p["tags"] or []] == [t for t, _ in q["tags"] or []]
        assert [s for _, s in p["tags"] or []] == pytest.approx([s for _, s in q["tags"] or []], abs=2e-6)
        assert [x.get("silent") for x in p.get("segments") or []] == [x.get("silent") for x in q.get("segments") or []]


def test_tags_are_the_models_own_and_the_alias_is_the_same_network(music):
    a = _f(music, "a.wav")
    rec = genrekit.tags(a, model="audioset", top_k=4, segments=True)
    assert rec["error"] is None and rec["model"] == "mn04" and rec["n_patches"] == 1
    assert rec["duration_s"] == pytest.approx(12.0, abs=1e-3)
    ref = mn04_model.tags_file(a, k=4)
    assert [t for t, _ in rec["tags"]] == [t for t, _ in ref]
    assert [s for _, s in rec["tags"]] == pytest.approx([round(s, 6) for _, s in ref], abs=1e-6)
    assert rec["segments"][0]["start"] == pytest.approx(1.0, abs=1e-3)  # one 10 s window, centred
    assert rec["segments"][0]["end"] == pytest.approx(11.0, abs=1e-3)
    assert genrekit.tags(a, model="mn04", top_k=4, segments=True) == rec
    everything = genrekit.tags(a, model="audioset", top_k=527)
    assert sorted(t for t, _ in everything["tags"]) == sorted(labels())


def test_genres_rank_only_the_48_genre_classes(music, capsys):
    a = _f(music, "a.wav")
    rec = genrekit.tags(a, model="audioset", genres=True, top_k=48)
    assert [t for t, _ in rec["tags"]] and {t for t, _ in rec["tags"]} == set(genre_labels())
    logits = mn04_model.embed_file(a).logits
    assert rec["tags"][0][0] == labels()[GENRE_ROWS.start + int(np.argmax(logits[0, GENRE_ROWS]))]
    with pytest.raises(genrekit.errors.GenrekitError, match="from 1 to 48"):
        genrekit.tags(a, model="audioset", genres=True, top_k=49)
    with pytest.raises(genrekit.errors.GenrekitError, match="MSD_musicnn has no genre classes"):
        genrekit.tags(a, genres=True)
    assert main(["tags", a, "--model", "audioset", "--genres", "--top-k", "49"]) == 2
    assert main(["tags", a, "--genres"]) == 2
    assert main(["tags", a, "--model", "mn04", "--backend", "torch"]) == 2
    assert main(["tags", a, "--model", "audioset", "--top-k", "528"]) == 2
    err = capsys.readouterr().err
    assert "--top-k must be within 1..48" in err and "has no genre classes" in err
    assert "mn04 does not run on backend 'torch'" in err and "--top-k must be within 1..527" in err


def test_silence_rule_leaves_the_silent_window_out_and_a_silent_file_is_an_error(music):
    gap = _f(music, "b_gap.wav")
    analysis = mn04_analysis(gap)
    assert analysis.n_windows == 3 and analysis.audible.tolist() == [True, False, True]
    rec = genrekit.tags(gap, model="audioset", segments=True, top_k=3)
    assert rec["segments"][1] == {"start": 10.5, "end": 20.5, "tags": None, "silent": True}
    # the file's tags are the mean over the two audible windows only
    ref = mn04_model.tag_scores(analysis.logits[[0, 2]], k=3)
    assert [t for t, _ in rec["tags"]] == [t for t, _ in ref]
    assert [s for _, s in rec["tags"]] == pytest.approx([s for _, s in ref], abs=1e-6)
    (row,) = genrekit.embed(gap, model="mn04").to_dict("records")
    assert row["n_patches"] == 3 and row["n_silent"] == 1
    assert row["features"] == pytest.approx(analysis.features[[0, 2]].mean(axis=0), abs=1e-6)
    silent = genrekit.tags(_f(music, "d_silent.wav"), model="audioset")
    assert silent["tags"] is None and "d_silent.wav: no audible signal" in silent["error"]
    with pytest.raises(genrekit.errors.GenrekitError, match="d_silent.wav: no audible signal"):
        genrekit.embed(_f(music, "d_silent.wav"), model="mn04")


def test_tags_every_format_and_a_bad_file_named(music, tmp_path, capsys):
    import pandas as pd

    out = tmp_path / "tags.json"
    rc = main(["tags", str(music), "--model", "audioset", "--format", "json", "--out", str(out), "--no-progress"])
    assert rc == 1 and "2 of 5 files failed" in capsys.readouterr().err
    recs = json.loads(out.read_text())
    by = {Path(r["file"]).name: r for r in recs}
    assert list(by) == ["a.wav", "b_gap.wav", "c.flac", "d_silent.wav", "e_bad.wav"]
    assert by["e_bad.wav"]["tags"] is None and "e_bad.wav" in by["e_bad.wav"]["error"]
    assert by["c.flac"]["error"] is None and by["c.flac"]["n_patches"] == 1
    assert json.loads(json.dumps(genrekit.tags(str(music), model="audioset"))) == recs
    assert main(["tags", str(music), "--model", "audioset", "--format", "csv", "--no-progress"]) == 1
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].startswith("file,duration_s,n_patches,tag_1,score_1") and len(rows) == 6
    assert rows[1].split(",")[3] == by["a.wav"]["tags"][0][0] and "e_bad.wav" in rows[5]
    assert main(["tags", str(music), "--model", "audioset", "--no-progress"]) == 1
    table = capsys.readouterr().out
    assert f"{by['a.wav']['tags'][0][0]} " in table and "ERROR" in table
    assert main(["tags", str(music), "--model", "audioset", "--out", f"{tmp_path / 'pq'}/", "--no-progress"]) == 1
    df = pd.read_parquet(tmp_path / "pq")
    assert [Path(f).name for f in df["file"]] == ["a.wav", "b_gap.wav", "c.flac"]
    assert [(t["tag"], t["score"]) for t in df.loc[0, "tags"]] == [tuple(x) for x in by["a.wav"]["tags"]]


def test_embed_every_format(music, tmp_path):
    import pandas as pd
    import pyarrow.parquet as pq

    files = [_f(music, "a.wav"), _f(music, "b_gap.wav"), _f(music, "e_bad.wav")]
    base = ["embed", *files, "--model", "mn04", "--no-progress", "--out"]
    assert main([*base, str(tmp_path / "e.parquet")]) == 1  # the bad file is listed, the rest written
    assert "e_bad.wav" in (tmp_path / "e.parquet.errors.tsv").read_text()
    schema = pq.read_schema(tmp_path / "e.parquet")
    assert str(schema.field("features").type) == "fixed_size_list<element: float>[384]"
    assert str(schema.field("logits").type) == "fixed_size_list<element: float>[527]"
    assert str(schema.field("taggram").type) == "fixed_size_list<element: float>[527]"
    df = pd.read_parquet(tmp_path / "e.parquet")
    assert list(df.columns) == ["file", "duration_s", "n_patches", "n_silent", "features", "logits", "taggram"]
    e = mn04_model.embed_file(files[0])
    assert df.loc[0, "features"] == pytest.approx(e.features[0], abs=1e-6)
    assert df.loc[0, "logits"] == pytest.approx(e.logits[0], abs=1e-5)
    assert df.loc[0, "taggram"] == pytest.approx(mn04_model.sigmoid(e.logits[0]), abs=1e-6)
    assert main([*base, str(tmp_path / "e.npz")]) == 1
    z = np.load(tmp_path / "e.npz")
    assert z["features"].shape == (2, 384) and np.array_equal(z["logits"], np.stack(df["logits"]))
    assert main([*base, str(tmp_path / "e.csv")]) == 1
    c = pd.read_csv(tmp_path / "e.csv")
    assert c.shape == (2, 4 + 384 + 527 + 527)
    assert c.filter(like="features_").to_numpy() == pytest.approx(np.stack(df["features"]), abs=1e-6)
    assert main([*base, f"{tmp_path / 'parts'}/", "--per-window", "--layers", "features"]) == 1
    w = pd.read_parquet(tmp_path / "parts")
    assert list(w.columns) == ["input", "file", "duration_s", "patch", "start", "end", "silent", "features"]
    assert list(w["silent"]) == [False, False, True, False] and list(w["patch"]) == [0, 0, 1, 2]
    facade = genrekit.embed(files[:2], model="audioset", per_window=True, layers=["features"])
    assert np.array_equal(np.stack(facade["features"]), np.stack(w["features"]))


def test_embed_refuses_musicnn_layers_for_mn04(music, tmp_path, capsys):
    a = _f(music, "a.wav")
    assert main(["embed", a, "--model", "mn04", "--layers", "penultimate", "--out", str(tmp_path / "e.npz")]) == 2
    assert "'penultimate'; choose from features, logits, taggram" in capsys.readouterr().err
    with pytest.raises(genrekit.errors.GenrekitError, match="choose from penultimate, pooled, taggram"):
        genrekit.embed(a, layers="features")


def test_cache_is_shared_by_tags_and_embed_and_by_both_names(music, tmp_path, monkeypatch, capsys):
    calls = _counting(monkeypatch)
    files = [_f(music, "a.wav"), _f(music, "c.flac")]
    first = genrekit.tags(files, model="audioset")
    assert len(calls) == 2
    calls.clear()
    assert genrekit.tags(files, model="mn04") == first and calls == []
    assert main(["embed", *files, "--model", "mn04", "--out", str(tmp_path / "e.npz"), "--no-progress"]) == 0
    assert calls == [] and "(2 from cache)" in capsys.readouterr().err
    assert genrekit.tags(files, model="audioset", cache=False) == first and len(calls) == 2
    calls.clear()
    genrekit.tags(files)  # musicnn: its own cache, mn04's entries untouched
    assert calls == [] and genrekit.tags(files, model="audioset") == first and calls == []


def test_parallel_jobs_match_serial(music):
    files = [_f(music, "a.wav"), _f(music, "b_gap.wav"), _f(music, "e_bad.wav")]
    serial = genrekit.tags(files, model="audioset", segments=True, cache=False)
    parallel = genrekit.tags(files, model="audioset", segments=True, jobs=2, cache=False)
    _same_records(parallel, serial)
    assert "e_bad.wav" in parallel[2]["error"]


def test_tags_resume_from_a_partial_journal_and_embed_parts_resume(music, tmp_path, monkeypatch, capsys):
    files = [_f(music, "a.wav"), _f(music, "c.flac")]
    out = tmp_path / "t.json"
    settings = Mn04Settings()
    content = run_networks.tags_settings(settings, top_k=5, segments=False, genres=True)
    j = sinks.JournalSink(out, settings=content)
    fake = {"file": files[0], "model": "mn04", "duration_s": 12.0, "n_patches": 1,
            "tags": [["from the journal", 1.0]], "error": None}
    j.append(files[0], fake)
    calls = _counting(monkeypatch)
    args = ["tags", *files, "--model", "audioset", "--genres", "--format", "json", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    recs = json.loads(out.read_text())
    assert recs[0] == fake and recs[1]["tags"][0][0] in genre_labels() and len(calls) == 1
    # a Parquet folder of embeddings: a killed run keeps its finished part, a rerun does only the rest
    real = run_networks.analyse
    done: list[str] = []

    def killed(path, settings):
        if done:
            raise KeyboardInterrupt
        done.append(path)
        return real(path, settings)

    monkeypatch.setattr(run_networks, "analyse", killed)
    parts = ["embed", *files, "--model", "mn04", "--out", f"{tmp_path / 'parts'}/", "--no-progress", "--no-cache",
             "--part-size", "1"]
    assert main(parts) == 130
    monkeypatch.setattr(run_networks, "analyse", real)
    calls.clear()
    assert main(parts) == 0
    assert len(calls) == 1 and "resuming: 1 of 2 files already done" in capsys.readouterr().err
    assert main([*parts[:-3], "--per-window"]) == 1 and "other settings" in capsys.readouterr().err


@pytest.mark.ray
def test_ray_engine_gives_the_local_mn04_records(music):
    ray = pytest.importorskip("ray", reason="the Ray engine is an optional extra")
    from genrekit.run.engines import RayEngine

    files = [_f(music, "a.wav"), _f(music, "e_bad.wav")]
    local = genrekit.tags(files, model="audioset", cache=False)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        remote = genrekit.tags(files, model="audioset", engine=RayEngine(progress=False), cache=False)
    finally:
        if started:
            ray.shutdown()
    _same_records(remote, local)
    assert "e_bad.wav" in remote[1]["error"]
