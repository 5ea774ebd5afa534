"""Issue 21, the gaps left after the first wave: side outputs (``OUT.errors.tsv``, ``OUT.partial.jsonl``),
``.npz`` and Parquet single files and run / report folders never replace or delete a file genrekit did not
write; a copy of a shipped model with edited metadata is refused; undo after a run killed before its first
change removes the temp copy; a file swapped for a FIFO or a device after it was found is refused on its
descriptor, never read. Every bad input is built here."""

from __future__ import annotations

import json
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from genrekit import store
from genrekit.errors import AudioFileNotFoundError, ModelError
from genrekit.run import sinks
from genrekit.run.items import ItemError, Result
from helpers import tone, write_audio, write_m4a

USER = b"the user's own file, not genrekit's\n"
PRETRAINED = Path(store.__file__).parent / "pretrained"


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _csv_sink(out: Path, results: list[Result]) -> sinks.CsvSink:
    sink = sinks.CsvSink(out, header=["file", "x"])
    sink.pending([r.input for r in results])
    sinks.write(results, sink)
    return sink


GOOD = Result("a.wav", value=[{"file": "a.wav", "x": 1.0}])
BAD = Result("b.wav", error=ItemError("DecodeError", "b.wav: not audio"))


# ------------------------------------------------------------------------------- OUT.errors.tsv
def test_errors_list_never_replaces_or_deletes_a_user_file(tmp_path):
    out = tmp_path / "table.csv"
    errors = tmp_path / "table.csv.errors.tsv"
    errors.write_bytes(USER)
    for results in ([GOOD, BAD], [GOOD]):  # with errors to list, and with none (the list would be removed)
        with pytest.raises(store.ForeignFileError, match="table.csv.errors.tsv"):
            _csv_sink(out, results)
        assert errors.read_bytes() == USER
        assert not out.exists()  # refused before the work: nothing half-done


def test_errors_list_replaces_and_removes_its_own(tmp_path):
    out = tmp_path / "table.csv"
    errors = tmp_path / "table.csv.errors.tsv"
    _csv_sink(out, [GOOD, BAD])
    assert errors.read_text().startswith("path\terror\tmessage\n") and "b.wav" in errors.read_text()
    _csv_sink(out, [GOOD, BAD])  # an earlier run's list is replaced
    _csv_sink(out, [GOOD])  # and removed once nothing failed
    assert not errors.exists() and out.is_file()


# ------------------------------------------------------------------------------- OUT.partial.jsonl
def test_partial_journal_never_replaces_or_deletes_a_user_file(tmp_path):
    out = tmp_path / "preds.json"
    partial = tmp_path / "preds.json.partial.jsonl"
    partial.write_bytes(USER)
    sink = sinks.JournalSink(out, settings={"model": "m"})
    with pytest.raises(store.ForeignFileError, match="partial.jsonl"):
        sink.pending(["a.wav"])
    assert partial.read_bytes() == USER and not out.exists()


def test_partial_journal_of_an_earlier_run_is_resumed_and_removed(tmp_path):
    audio_file = write_audio(tmp_path / "a.wav", tone(0.2))
    out = tmp_path / "preds.json"
    sink = sinks.JournalSink(out, settings={"model": "m"})
    sink.pending([str(audio_file)])
    sink.add(Result(str(audio_file), value={"file": str(audio_file), "genre": "rock"}))
    sink.abort()  # killed: the journal stays
    again = sinks.JournalSink(out, settings={"model": "m"})
    assert again.pending([str(audio_file)]) == [] and again.summary.resumed == 1
    again.close()
    assert json.loads(out.read_text())[0]["genre"] == "rock"
    assert not (tmp_path / "preds.json.partial.jsonl").exists()


# ------------------------------------------------------------------------------- .npz and Parquet files
ROWS = [{"file": "a.wav", "duration_s": 1.0, "penultimate": np.zeros(200, np.float32)}]


def test_npz_never_replaces_a_user_file_but_replaces_its_own(tmp_path):
    from genrekit.run.networks import write_embeddings

    mine = tmp_path / "mine.npz"
    with zipfile.ZipFile(mine, "w") as z:  # a user's own npz: other arrays
        z.writestr("weights.npy", b"not ours")
    before = mine.read_bytes()
    with pytest.raises(store.ForeignFileError, match="mine.npz"):
        write_embeddings(mine, ROWS, vectors={"penultimate": 200})
    assert mine.read_bytes() == before
    (tmp_path / "text.npz").write_bytes(USER)
    with pytest.raises(store.ForeignFileError):
        write_embeddings(tmp_path / "text.npz", ROWS, vectors={"penultimate": 200})
    ours = tmp_path / "ours.npz"
    write_embeddings(ours, ROWS, vectors={"penultimate": 200})
    write_embeddings(ours, ROWS + ROWS, vectors={"penultimate": 200})  # an earlier run's output is replaced
    assert np.load(ours)["penultimate"].shape == (2, 200)


def test_parquet_never_replaces_a_user_file_but_replaces_its_own(tmp_path):
    pytest.importorskip("pyarrow")
    from genrekit.parquet_out import write_parquet

    mine = tmp_path / "mine.parquet"
    mine.write_bytes(USER)
    with pytest.raises(store.ForeignFileError, match="mine.parquet"):
        write_parquet(mine, ROWS, vectors={"penultimate": 200})
    assert mine.read_bytes() == USER
    ours = tmp_path / "ours.parquet"
    write_parquet(ours, ROWS, vectors={"penultimate": 200})
    write_parquet(ours, ROWS + ROWS, vectors={"penultimate": 200})  # same columns: an earlier run's
    import pyarrow.parquet as pq

    assert pq.read_table(ours).num_rows == 2


# ------------------------------------------------------------------------------- run and report folders
def test_run_folder_is_claimed_only_when_new_empty_or_genrekit_s(tmp_path):
    from genrekit.experiments.schema import claim_run_folder

    user = tmp_path / "thesis"
    user.mkdir()
    (user / "metrics.json").write_bytes(USER)  # a file of the same name as genrekit's, not genrekit's
    (user / "chapter1.tex").write_bytes(USER)
    with pytest.raises(store.ForeignFileError, match="thesis"):
        claim_run_folder(user)
    assert sorted(p.name for p in user.iterdir()) == ["chapter1.tex", "metrics.json"]
    assert (user / "metrics.json").read_bytes() == USER
    (tmp_path / "afile").write_bytes(USER)
    with pytest.raises(store.ForeignFileError, match="not a folder"):
        claim_run_folder(tmp_path / "afile")
    new = claim_run_folder(tmp_path / "runs" / "new")  # new: claimed; claimed again: fine
    (new / "metrics.json").write_text("{}")
    assert claim_run_folder(new) == new
    legacy = tmp_path / "old-run"  # a run folder genrekit wrote before folders were marked
    legacy.mkdir()
    (legacy / "metrics.json").write_text(json.dumps({"metrics_schema": 2, "genrekit_version": "0.2"}))
    assert claim_run_folder(legacy) == legacy


def test_train_refuses_a_user_folder_before_any_work(tmp_path):
    from genrekit import experiments

    user = tmp_path / "docs"
    user.mkdir()
    (user / "report.txt").write_bytes(USER)
    t0 = time.monotonic()
    with pytest.raises(store.ForeignFileError, match="docs"):
        experiments.run("random", "knn", tmp_path / "no-such-data.csv", out=user)
    assert time.monotonic() - t0 < 30
    assert (user / "report.txt").read_bytes() == USER and len(list(user.iterdir())) == 1


def test_remove_output_leaves_a_user_file(tmp_path):
    p = tmp_path / "x.tsv"
    p.write_bytes(USER)
    assert not store.remove_output(p) and p.read_bytes() == USER
    with pytest.raises(store.ForeignFileError):
        store.atomic_write_text(p, "ours\n", replace=store.ours_only)
    assert p.read_bytes() == USER
    q = tmp_path / "y.tsv"
    store.atomic_write_text(q, "ours\n", replace=store.ours_only)  # new: written and noted as genrekit's
    store.atomic_write_text(q, "ours again\n", replace=store.ours_only)  # so a later run may replace it
    assert store.remove_output(q) and not q.exists()


# ------------------------------------------------------------------------------- model files
def _with_meta(src: Path, dst: Path, edit) -> Path:
    """A copy of a model file with its metadata JSON edited; tensors and their ``sha256`` untouched."""
    data = src.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["meta"])
    edit(meta)
    header["__metadata__"]["meta"] = json.dumps(meta, sort_keys=True)
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    dst.write_bytes(len(new).to_bytes(8, "little") + new + data[8 + n :])
    return dst


@pytest.mark.parametrize("name", ["genrekit-gtzan-default.safetensors", "genrekit-gtzan-musicnn.safetensors",
                                  "genrekit-gtzan-blend.safetensors"])
def test_a_shipped_model_with_swapped_class_names_is_refused(tmp_path, name):
    from genrekit.models.base import load_model_file

    def swap(meta):
        meta["classes"][0], meta["classes"][1] = meta["classes"][1], meta["classes"][0]

    bad = _with_meta(PRETRAINED / name, tmp_path / name, swap)
    with pytest.raises(ModelError, match="metadata checksum mismatch"):
        load_model_file(bad)
    load_model_file(PRETRAINED / name)  # the shipped file itself loads, unchanged on disk


# ------------------------------------------------------------------------------- undo after an early kill
def test_undo_removes_the_copy_of_a_run_killed_before_its_first_change(tmp_path):
    from genrekit.library import files, undo
    from genrekit.library.undo import UndoJournal

    lib = tmp_path / "lib"
    song = write_audio(lib / "song.flac", tone(0.5))
    original = song.read_bytes()
    j = UndoJournal(tmp_path / "j.jsonl")
    j.open(settings={"x": 1}, resume=False)
    j.record_folder(str(lib))  # what tag --write journals before its first temporary copy in a folder
    j.close()
    dead_pid = 2 ** 22 + 12345  # above the default pid_max: no such process
    left = lib / f".song.flac.{dead_pid}{files.TEMP_SUFFIX}"
    left.write_bytes(original[:100])  # the copy that the kill left
    assert UndoJournal.read(tmp_path / "j.jsonl").folders == [str(lib)]
    results = list(undo.undo(tmp_path / "j.jsonl"))
    assert not left.exists() and song.read_bytes() == original
    assert all(r.status != "error" for r in results)


# ------------------------------------------------------------------------------- files swapped after the finder
@pytest.mark.parametrize("ext", [".flac", ".m4a"])
@pytest.mark.parametrize("swap", ["fifo", "zero"])
def test_a_file_swapped_for_a_fifo_or_device_after_it_was_checked_is_refused(tmp_path, ext, swap):
    from genrekit import audio
    from genrekit.audio.source import open_source

    p = tmp_path / f"song{ext}"
    if ext == ".flac":
        write_audio(p, tone(1.0))  # libsndfile's path
    else:
        write_m4a(p, tone(1.0))  # FFmpeg's path
    src = open_source(p)  # checked by stat: a regular file
    p.unlink()
    if swap == "fifo":
        os.mkfifo(p)  # nobody writes it: a blocking open would hang forever
    else:
        os.symlink("/dev/zero", p)  # would read zeros until memory runs out
    t0 = time.monotonic()
    with pytest.raises(AudioFileNotFoundError, match="not a regular file"):
        list(audio.stream(src))
    assert time.monotonic() - t0 < 5


def test_similar_index_never_writes_into_a_user_folder(tmp_path):
    from genrekit.library import similar

    lib = tmp_path / "lib"
    write_audio(lib / "a.wav", tone(1.0))
    user = tmp_path / "mine"
    user.mkdir()
    (user / "manifest.json").write_bytes(USER)
    calls = []

    def summarise(paths):  # never reached: the folder is refused first
        calls.append(paths)
        return []

    with pytest.raises(store.ForeignFileError, match="mine"):
        similar.update_index(lib, index_dir=user, summarise=summarise, progress=False)
    assert not calls and (user / "manifest.json").read_bytes() == USER and len(list(user.iterdir())) == 1


# ------------------------------------------------------------------------------- special files in the library tools
def test_undo_never_opens_a_fifo_or_device_named_by_a_journal_or_given_as_one(tmp_path):
    from genrekit.library import undo
    from genrekit.library.undo import JournalError

    fifo = tmp_path / "song.flac"
    os.mkfifo(fifo)  # nobody writes it: a blocking open would hang undo forever
    j = tmp_path / "crafted.jsonl"
    change = {"type": "change", "seq": 1, "file": str(fifo), "before": {"sha256": "a" * 64, "mode": 0o644},
              "after_sha256": "b" * 64, "old": None, "new": "Rock", "patch": {"ops": [], "new_size": 0}}
    j.write_text("".join(json.dumps(x) + "\n" for x in (
        {"type": "header", "format": "genrekit-tag-journal", "version": 1, "settings": {}}, change)))
    t0 = time.monotonic()
    (res,) = list(undo.undo(j))
    assert res.status == "error" and "not a regular file" in res.message and time.monotonic() - t0 < 5
    os.mkfifo(tmp_path / "j.fifo")
    os.symlink("/dev/zero", tmp_path / "j.zero")  # would read forever
    for bad, why in ((tmp_path / "j.fifo", "FIFO"), (tmp_path / "j.zero", "character device"), (tmp_path, "folder")):
        with pytest.raises(JournalError, match=why):
            list(undo.undo(bad))
        assert not undo.UndoJournal.is_journal(bad)


def test_tag_reading_refuses_a_file_swapped_for_a_fifo(tmp_path):
    from genrekit.library import files, tagging

    p = tmp_path / "song.flac"
    os.mkfifo(p)
    t0 = time.monotonic()
    with pytest.raises(tagging.TagError, match="not a regular file"):
        tagging.read_tags(p)
    with pytest.raises(files.FileChangedError, match="not a regular file"):
        with files.file_lock(p):
            pass
    assert time.monotonic() - t0 < 5
