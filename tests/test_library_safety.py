"""Nothing of the user's is lost (issue 21, classes 1-3, 5 and 10 for the library tools): outputs never
replace a file genrekit did not write, one writer per journal and per file, temp copies of killed runs
cleaned up, undo restores every intact change and trusts nothing else in its journal, a full disk under
the journal ends cleanly. Every bad input is built here (hand-made playlists, concurrent runs, SIGKILL,
torn and crafted journals, ENOSPC)."""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from genrekit import store
from genrekit.library import files, playlists, tagging, undo
from genrekit.library.undo import UndoJournal
from library_media import EXT, make_file

SRC = Path(tagging.__file__).parents[2]


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _cli(*args) -> int:
    from genrekit.cli import main

    return main(list(map(str, args)))


def _env(tmp_path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1", "XDG_STATE_HOME": str(tmp_path / "state"),
            "XDG_CACHE_HOME": str(tmp_path / "cache")}


def _library(root: Path, n: int) -> dict[Path, bytes]:
    out = {}
    for i in range(n):
        fmt = ("mp3", "flac", "ogg", "m4a")[i % 4]
        p = make_file(root / f"t{i:02d}{EXT[fmt]}", fmt, seed=i, picture=i % 4 == 0)
        out[p] = p.read_bytes()
    return out


def _temps(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.name.endswith(files.TEMP_SUFFIX))


def _journal(path: Path) -> UndoJournal:
    j = UndoJournal(path)
    j.open(settings={"test": 1}, resume=False)
    return j


# ------------------------------------------------------------------------------------ class 1: outputs


def test_atomic_write_never_replaces_a_file_genrekit_did_not_write(tmp_path):
    mine = tmp_path / "table.csv"
    mine.write_bytes(b"the user's own table\n")
    ours = lambda p: p.read_bytes().startswith(b"# genrekit")  # noqa: E731 - the marker of this test's files
    with pytest.raises(store.ForeignFileError, match=r"table\.csv: exists and was not written by genrekit"):
        store.atomic_write_text(mine, "# genrekit\nnew\n", replace=ours)
    with pytest.raises(store.ForeignFileError):
        store.atomic_write_bytes(mine, b"x", replace=False)
    assert mine.read_bytes() == b"the user's own table\n"
    fresh = tmp_path / "new.csv"
    store.atomic_write_text(fresh, "# genrekit\n1\n", replace=ours)  # a new name: created
    store.atomic_write_text(fresh, "# genrekit\n2\n", replace=ours)  # our own: replaced
    assert fresh.read_text() == "# genrekit\n2\n"
    link = tmp_path / "link.csv"
    link.symlink_to(fresh)
    with pytest.raises(store.ForeignFileError):  # a symlink is never written through
        store.atomic_write_text(link, "# genrekit\n3\n", replace=ours)
    assert fresh.read_text() == "# genrekit\n2\n" and link.is_symlink()
    # a file that appears while the output is being written is not replaced either
    late = tmp_path / "late.csv"
    with pytest.raises(store.ForeignFileError, match=r"late\.csv: exists and was not written by genrekit"):
        with store.atomic_writer(late, "w", replace=ours) as f:
            f.write("# genrekit\n")
            late.write_bytes(b"made meanwhile by the user")
    assert late.read_bytes() == b"made meanwhile by the user"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "state") == ["late.csv", "link.csv", "new.csv",
                                                                            "table.csv"]



def test_atomic_write_on_a_file_system_without_hard_links(tmp_path, monkeypatch):
    def no_links(src, dst, **kw):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    out = tmp_path / "Rock.m3u8"
    store.atomic_write_text(out, "#EXTM3U\n", replace=playlists.is_genrekit_playlist)
    assert out.read_text() == "#EXTM3U\n" and [p.name for p in tmp_path.iterdir() if p.name != "state"] == ["Rock.m3u8"]


def test_playlists_leave_a_hand_made_playlist_byte_identical(tmp_path, capsys):
    a = make_file(tmp_path / "music" / "a.flac", "flac", seed=1)
    b = make_file(tmp_path / "music" / "b.ogg", "ogg", seed=2)
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps([{"file": str(a), "genre": "rock", "scores": {"rock": 0.9}, "duration_s": 3},
                                 {"file": str(b), "genre": "jazz", "scores": {"jazz": 0.8}, "duration_s": 3}]))
    out = tmp_path / "lists"
    out.mkdir()
    hand = b"#EXTM3U\n#EXTINF:-1,My favourite\n../music/b.ogg\n"  # no genrekit marker: the user's
    (out / "Rock.m3u8").write_bytes(hand)
    assert _cli("playlists", preds, "--out", out, "--no-titles") == 0
    err = capsys.readouterr().err
    assert (out / "Rock.m3u8").read_bytes() == hand
    assert f"{out / 'Rock.m3u8'} is not a playlist genrekit wrote" in err and "Rock (genrekit).m3u8" in err
    beside = out / "Rock (genrekit).m3u8"
    assert playlists.is_genrekit_playlist(beside) and "../music/a.flac" in beside.read_text()
    assert playlists.is_genrekit_playlist(out / "Jazz.m3u8")
    # a rerun replaces only its own playlists, and again leaves the user's alone
    assert _cli("playlists", preds, "--out", out, "--no-titles") == 0
    assert (out / "Rock.m3u8").read_bytes() == hand
    assert sorted(p.name for p in out.iterdir()) == ["Jazz.m3u8", "Rock (genrekit).m3u8", "Rock.m3u8"]
    # once the user's playlist is gone, genrekit's takes the plain name and prunes the one beside
    (out / "Rock.m3u8").unlink()
    assert _cli("playlists", preds, "--out", out, "--no-titles") == 0
    assert sorted(p.name for p in out.iterdir()) == ["Jazz.m3u8", "Rock.m3u8"]
    # both names taken by the user's files: refused with both names, nothing of theirs touched
    (out / "Rock.m3u8").write_bytes(hand)
    beside.write_bytes(hand + b"#2\n")
    assert _cli("playlists", preds, "--out", out, "--no-titles") == 1
    err = capsys.readouterr().err
    assert "Rock.m3u8 and" in err and "Rock (genrekit).m3u8 are both files genrekit did not write" in err
    assert "Traceback" not in err
    assert (out / "Rock.m3u8").read_bytes() == hand and beside.read_bytes() == hand + b"#2\n"


def test_journal_option_never_overwrites_the_user_s_file(tmp_path, tiny_model, capsys):
    lib = _library(tmp_path / "lib", 2)
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"my notes, not a journal\n")
    code = _cli("tag", tmp_path / "lib", "--model", tiny_model, "--write", "--journal", notes, "--no-progress")
    err = capsys.readouterr().err
    assert code == 1 and f"{notes}: exists and is not a genrekit tag journal" in err and "Traceback" not in err
    assert notes.read_bytes() == b"my notes, not a journal\n"
    assert all(p.read_bytes() == b for p, b in lib.items())


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_predict_out_never_replaces_the_user_s_file_but_replaces_its_own(tmp_path, tiny_model, capsys, fmt):
    make_file(tmp_path / "lib" / "a.flac", "flac", seed=1)
    out = tmp_path / f"results.{fmt}"
    mine = {"json": b'[{"name": "my notes"}]\n', "csv": b"name,notes\nme,mine\n", "table": b"my notes\n"}[fmt]
    out.write_bytes(mine)
    args = ("predict", tmp_path / "lib", "--model", tiny_model, "--format", fmt, "--out", out, "--no-progress")
    assert _cli(*args) == 1
    err = capsys.readouterr().err
    assert f"{out}: exists and was not written by genrekit; left as it is" in err and "Traceback" not in err
    assert out.read_bytes() == mine
    out.unlink()
    assert _cli(*args) == 0 and out.exists()
    # its own output is replaced as before, also when the inputs changed (a table has no header to know it by)
    make_file(tmp_path / "lib" / "a longer name.ogg", "ogg", seed=2)
    assert _cli(*args) == 0 and b"a longer name.ogg" in out.read_bytes()
    if fmt == "table":  # rewritten by the user since, nothing of genrekit's left at its head: theirs now
        out.write_bytes(b"my summary\n" + out.read_bytes())
        edited = out.read_bytes()
        assert _cli(*args) == 1 and out.read_bytes() == edited


def test_features_out_and_export_never_replace_the_user_s_file(tmp_path, tiny_model, capsys):
    make_file(tmp_path / "lib" / "a.flac", "flac", seed=1)
    table = tmp_path / "features.csv"
    table.write_bytes(b"my,own,table\n1,2,3\n")
    assert _cli("features", tmp_path / "lib", "--out", table) == 1
    assert table.read_bytes() == b"my,own,table\n1,2,3\n"
    assert f"{table}: exists and was not written by genrekit" in capsys.readouterr().err
    table.unlink()
    assert _cli("features", tmp_path / "lib", "--out", table) == 0
    assert _cli("features", tmp_path / "lib", "--out", table) == 0  # its own: replaced

    onnx_out = tmp_path / "model.onnx"
    onnx_out.write_bytes(b"someone else's model\n")
    assert _cli("export", "--model", tiny_model, "--out", onnx_out) == 1
    err = capsys.readouterr().err
    assert f"{onnx_out}: exists and was not written by genrekit" in err and "Traceback" not in err
    assert onnx_out.read_bytes() == b"someone else's model\n"
    onnx_out.unlink()
    assert _cli("export", "--model", tiny_model, "--out", onnx_out) == 0
    assert _cli("export", "--model", tiny_model, "--out", onnx_out) == 0  # genrekit's own export: replaced


# ------------------------------------------------------------------------------------ class 2: two runs, kills


def test_a_second_writer_of_a_journal_is_refused(tmp_path, tiny_model):
    """Another process holding the journal (a run still going): `tag --write` and `tag --undo` with that
    journal refuse clearly and change nothing."""
    lib = _library(tmp_path / "lib", 2)
    jpath = tmp_path / "j.jsonl"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom genrekit.library.undo import UndoJournal\n"
         f"j = UndoJournal({str(jpath)!r})\nj.open(settings={{'x': 1}}, resume=False)\n"
         "print('held', flush=True)\ntime.sleep(60)\n"], env=_env(tmp_path), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = jpath.read_bytes()
        r = subprocess.run([sys.executable, "-m", "genrekit", "tag", str(tmp_path / "lib"), "--model", str(tiny_model),
                            "--write", "--journal", str(jpath), "--no-progress", "--no-cache"],
                           env=_env(tmp_path), capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and "another genrekit run is writing this journal now" in r.stderr, r.stderr
        assert str(jpath) in r.stderr and "Traceback" not in r.stderr
        r = subprocess.run([sys.executable, "-m", "genrekit", "tag", "--undo", str(jpath)], env=_env(tmp_path),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and "another genrekit run is writing this journal now" in r.stderr
        assert jpath.read_bytes() == before and all(p.read_bytes() == b for p, b in lib.items())
    finally:
        holder.kill()
        holder.wait()


def test_a_file_another_run_is_changing_is_left_alone(tmp_path):
    p = make_file(tmp_path / "s.flac", "flac", seed=3)
    before = p.read_bytes()
    j = _journal(tmp_path / "j.jsonl")
    busy_copy = p.with_name(f".{p.name}.{os.getppid()}{files.TEMP_SUFFIX}")  # the other run's copy
    busy_copy.write_bytes(b"in flight")
    with files.file_lock(p):  # what another genrekit process holds while it writes p
        with pytest.raises(tagging.FileBusyError, match=r"s\.flac: another genrekit run is changing this file"):
            tagging.write_genres(p, {"genre": ["Rock"]}, journal=j)
        assert files.sweep_leftovers(tmp_path) == [] and busy_copy.exists()  # its copy is in use: kept
        assert not tagging.cleanup_temp(p)
    j.close()
    assert p.read_bytes() == before and UndoJournal.read(tmp_path / "j.jsonl").changes == []
    assert files.sweep_leftovers(tmp_path) == [busy_copy]  # the lock is free: a leftover now


@pytest.mark.slow
def test_two_tag_runs_at_once_on_one_library(tmp_path, tiny_model):
    """The same `tag --write` started twice at once: the second refuses (or, if the first was already done,
    finds nothing to do); one journal, only whole, non-interleaved records; undo restores every file."""
    originals = _library(tmp_path / "lib", 24)
    cmd = [sys.executable, "-m", "genrekit", "tag", str(tmp_path / "lib"), "--model", str(tiny_model), "--write",
           "--no-progress", "--no-cache", "--format", "json"]
    runs = [subprocess.Popen(cmd, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]  # started together
    (out1, err1), (out2, err2) = (r.communicate(timeout=300) for r in runs)
    codes = sorted(r.returncode for r in runs)
    assert "Traceback" not in err1 + err2
    outs = {r.returncode: (o, e) for r, (o, e) in zip(runs, [(out1, err1), (out2, err2)], strict=True)}
    if codes == [0, 1]:  # the usual case: the second is refused before it touches anything
        assert "another `genrekit tag --write` with the same settings and files is running now" in outs[1][1]
        out1 = outs[0][0]
    else:  # one had finished before the other started: that one found nothing left to write
        assert codes == [0, 0]
        actions = [{r["action"] for r in json.loads(o)} for o in (out1, out2)]
        assert {"skipped"} in actions and {"written"} in actions
        out1 = out1 if actions[0] == {"written"} else out2
    folder = tmp_path / "state" / "genrekit" / "tag-journals"
    (jpath,) = folder.glob("*.jsonl")
    state = UndoJournal.read(jpath)
    assert state.skipped == [] and state.finished and len(state.changes) == 24
    assert sorted(c["seq"] for c in state.changes) == list(range(1, 25)) and state.done == set(range(1, 25))
    assert {r["action"] for r in json.loads(out1)} == {"written"}
    assert _temps(tmp_path / "lib") == []
    r = subprocess.run([sys.executable, "-m", "genrekit", "tag", "--undo", str(jpath)], env=_env(tmp_path),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert all(p.read_bytes() == b for p, b in originals.items())


def test_kill_9_while_the_copy_exists_then_undo_and_rerun_leave_no_temp_file(tmp_path, tiny_model):
    """SIGKILL between the journal line and the rename (the temporary copy is complete on disk): the next
    undo removes it and finds the file original; the next run removes any other run's leftovers too."""
    from helpers import tone

    p = make_file(tmp_path / "lib" / "long.flac", "flac", tone(8.0, sr=22050, freq=330.0, seed=4)[:, 0], seed=4)
    q = make_file(tmp_path / "lib" / "other.mp3", "mp3", seed=5)
    before = {p: p.read_bytes(), q: q.read_bytes()}
    jpath = tmp_path / "j.jsonl"
    code = ("import os, signal\nfrom genrekit.library import tagging\nfrom genrekit.library.undo import UndoJournal\n"
            f"j = UndoJournal({str(jpath)!r})\nj.open(settings={{'x': 1}}, resume=False)\n"
            f"tagging.write_genres({str(p)!r}, {{'genre': ['Rock']}}, journal=j,\n"
            "                     before_replace=lambda: os.kill(os.getpid(), signal.SIGKILL))\n")
    r = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), capture_output=True, timeout=120)
    assert r.returncode == -signal.SIGKILL
    (left,) = _temps(tmp_path / "lib")
    assert left.name.startswith(".long.flac.") and left.stat().st_size > 0.5 * len(before[p])
    old_style = q.with_name(f".{q.name}.genrekit-tmp")  # genrekit <= 0.x used one fixed name
    old_style.write_bytes(b"half")
    assert [x.status for x in undo.undo(jpath)] == ["already original"]
    assert _temps(tmp_path / "lib") == [] and p.read_bytes() == before[p]
    # a leftover of a killed run beside a file the next `tag --write` sees: removed before anything else
    left.write_bytes(b"half a copy")
    assert _cli("tag", tmp_path / "lib", "--model", tiny_model, "--write", "--journal", tmp_path / "j2.jsonl",
                "--no-progress", "--no-cache") == 0
    assert _temps(tmp_path / "lib") == []
    assert [x.status for x in undo.undo(tmp_path / "j2.jsonl")] == ["restored", "restored"]
    assert all(f.read_bytes() == b for f, b in before.items())


# ------------------------------------------------------------------------------------ torn and crafted journals


def _tagged(tmp_path, n: int = 3) -> tuple[dict[Path, bytes], Path]:
    lib = _library(tmp_path / "lib", n)
    jpath = tmp_path / "j.jsonl"
    j = _journal(jpath)
    for i, p in enumerate(lib):
        tagging.write_genres(p, {"genre": [f"Genre {i}"]}, journal=j)
    j.close()
    return lib, jpath


def test_undo_survives_torn_lines_and_says_which_it_skipped(tmp_path, capsys):
    lib, jpath = _tagged(tmp_path)
    lines = jpath.read_bytes().split(b"\n")
    # a kill mid-line, then a resumed run that went on after it (what made older undo refuse everything)
    torn = lines[:3] + [b'{"type": "change", "seq": 9, "file": "/etc/pass'] + lines[3:-1]
    jpath.write_bytes(b"\n".join(torn) + b"\n" + b'{"type": "done", "se')
    assert _cli("tag", "--undo", jpath) == 0
    err = capsys.readouterr().err
    assert f"{jpath}: line 4 is not a complete record" in err and f"{jpath}: line {len(torn) + 1}" in err
    assert "undo: 3 restored" in err and "Traceback" not in err
    assert all(p.read_bytes() == b for p, b in lib.items())


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _crafted(jpath: Path, target: Path, restore_to: bytes, *, mode: int = 0o6777) -> None:
    """A hand-written journal: 'undo' ``target`` into ``restore_to`` (a literal patch), with ``mode``."""
    now = target.read_bytes()
    change = {"type": "change", "seq": 1, "file": str(target),
              "before": {"sha256": _sha(restore_to), "size": len(restore_to), "mode": mode, "atime_ns": 0,
                         "mtime_ns": 0},
              "after_sha256": _sha(now), "old": {}, "new": {},
              "patch": {"ops": [["l", base64.b64encode(restore_to).decode()]], "new_size": len(now),
                        "old_sha256": _sha(restore_to)}}
    header = {"type": "header", "format": undo.JOURNAL_FORMAT, "version": 1, "settings": {}}
    jpath.write_text(json.dumps(header) + "\n" + json.dumps(change) + "\n" + '{"type": "done", "seq": 1}\n')


@pytest.mark.parametrize("case", ["text-file", "other-audio", "script"])
def test_a_crafted_journal_cannot_make_undo_write_anything_but_tags(tmp_path, case, capsys):
    if case == "text-file":
        target = tmp_path / "config.ini"
        target.write_bytes(b"[user]\nname = me\n")
        payload = b"#!/bin/sh\nrm -rf ~\n"
    elif case == "other-audio":  # an audio file, but the 'original' is another song
        target = make_file(tmp_path / "song.mp3", "mp3", seed=1)
        payload = make_file(tmp_path / "x" / "song.mp3", "mp3", seed=2).read_bytes()
    else:  # a real audio file made into a script
        target = make_file(tmp_path / "song.flac", "flac", seed=3)
        payload = b"#!/bin/sh\necho owned\n"
    target.chmod(0o644)
    before = target.read_bytes()
    jpath = tmp_path / "crafted.jsonl"
    _crafted(jpath, target, payload)
    assert _cli("tag", "--undo", jpath) == 1
    err = capsys.readouterr().err
    assert str(target) in err and "left alone" in err and "Traceback" not in err
    assert target.read_bytes() == before and stat.S_IMODE(target.stat().st_mode) == 0o644


def test_undo_never_sets_setuid_setgid_or_world_writable_bits(tmp_path):
    lib, jpath = _tagged(tmp_path, 1)
    (p,) = lib
    p.chmod(0o640)
    items = [json.loads(x) for x in jpath.read_text().splitlines()]
    for it in items:
        if it["type"] == "change":
            it["before"]["mode"] = 0o6777  # what a hand-edited journal asks for
    jpath.write_text("".join(json.dumps(it) + "\n" for it in items))
    assert [r.status for r in undo.undo(jpath)] == ["restored"]
    assert p.read_bytes() == lib[p] and stat.S_IMODE(p.stat().st_mode) == 0o640  # the file's own bits


def test_undo_respects_files_edited_or_made_read_only_since(tmp_path, capsys):
    lib, jpath = _tagged(tmp_path, 3)
    edited, readonly, fine = lib
    edited.write_bytes(edited.read_bytes() + b"\0")  # the user's own change since
    now_edited = edited.read_bytes()
    readonly.chmod(0o444)
    now_ro = readonly.read_bytes()
    assert _cli("tag", "--undo", jpath) == 1
    err = capsys.readouterr().err
    assert f"changed since: {edited}: edited after genrekit wrote it" in err
    assert f"read-only: {readonly}: read-only file; left alone (make it writable to undo)" in err
    assert "1 restored" in err and "Traceback" not in err
    assert edited.read_bytes() == now_edited and readonly.read_bytes() == now_ro and fine.read_bytes() == lib[fine]
    readonly.chmod(0o644)  # made writable again: the rerun restores it (undo is idempotent)
    assert _cli("tag", "--undo", jpath) == 1  # the edited file still refuses
    assert readonly.read_bytes() == lib[readonly]


# ------------------------------------------------------------------------------------ class 10: full disk


@pytest.mark.parametrize("fail_at", [1, 3])
def test_a_full_disk_under_the_journal_stops_cleanly(tmp_path, tiny_model, monkeypatch, capsys, fail_at):
    """ENOSPC on the journal's n-th change record: a clear error naming the journal, no traceback, the
    journal intact (whole records only), the files before it written and undoable, the rest untouched."""
    lib = _library(tmp_path / "lib", 4)
    jpath = tmp_path / "j.jsonl"
    real_write = os.write
    seen = {"n": 0}

    def full_disk(fd, data):
        if b'"type": "change"' in bytes(data[:40]):
            seen["n"] += 1
            if seen["n"] >= fail_at:
                real_write(fd, bytes(data[:25]))  # part of the record got out before the disk filled
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    code = _cli("tag", tmp_path / "lib", "--model", tiny_model, "--write", "--journal", jpath, "--no-progress",
                "--no-cache", "--format", "json")
    monkeypatch.setattr(os, "write", real_write)
    cap = capsys.readouterr()
    assert code == 1 and "Traceback" not in cap.err
    assert f"{jpath}: cannot write the undo journal (No space left on device)" in cap.err
    state = UndoJournal.read(jpath)
    assert state.skipped == [] and len(state.changes) == fail_at - 1 and not state.finished
    written = [Path(r["file"]) for r in json.loads(cap.out) if r["action"] == "written"]
    assert len(written) == fail_at - 1
    for p, b in lib.items():
        assert (p.read_bytes() != b) == (p in written)
    assert _temps(tmp_path / "lib") == []
    assert {r.status for r in undo.undo(jpath)} <= {"restored"}
    assert all(p.read_bytes() == b for p, b in lib.items())


def test_a_file_size_limit_under_the_journal_is_a_clean_error(tmp_path, tiny_model):
    """The real thing in a subprocess: RLIMIT_FSIZE below the size of the journal's header (the audio
    copies would not fit either, so the journal is the first write that fails)."""
    lib = _library(tmp_path / "lib", 3)
    jpath = tmp_path / "j.jsonl"
    code = ("import resource, signal, sys\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))\n"
            "from genrekit.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    r = subprocess.run([sys.executable, "-c", code, "tag", str(tmp_path / "lib"), "--model", str(tiny_model),
                        "--write", "--journal", str(jpath), "--no-progress", "--no-cache"],
                       env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"{jpath}: cannot create the journal (File too large)" in r.stderr
    assert not jpath.exists() and list(tmp_path.glob(".j.jsonl*")) == []  # no half journal left
    assert all(p.read_bytes() == b for p, b in lib.items()) and _temps(tmp_path / "lib") == []


# ------------------------------------------------------------------------------------ class 5: memory


# this process's own peak RSS (KiB): ru_maxrss would carry the forking test runner's peak across exec
HWM = "def hwm():\n    return int(next(ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM')))\n"


@pytest.mark.slow
def test_tag_write_holds_about_one_copy_of_a_long_file(tmp_path):
    """Verification streams from the files: a 5-minute FLAC (25 MB) costs well under three times its size
    at peak (the whole-file patch diff and re-reads cost five times before); so does its undo."""
    import numpy as np

    y = (np.random.default_rng(0).standard_normal(44100 * 300) * 0.2).astype(np.float32)
    p = make_file(tmp_path / "long.flac", "flac", y, sr=44100, seed=1)
    original = p.read_bytes()
    jpath = tmp_path / "j.jsonl"
    code = ("import json, resource, sys\nimport av, mutagen, numpy\nfrom genrekit.library import tagging\n"
            "from genrekit.library.undo import UndoJournal\n"
            f"j = UndoJournal({str(jpath)!r})\nj.open(settings={{}}, resume=False)\n"
            f"{HWM}base = hwm()\n"
            f"tagging.write_genres({str(p)!r}, {{'genre': ['Rock']}}, journal=j)\n"
            "print(json.dumps([base, hwm()]))\n")
    r = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    base, peak = json.loads(r.stdout)
    extra = (peak - base) * 1024  # VmHWM is in KiB
    assert extra < 2.5 * len(original), (extra / len(original), len(original))
    assert tagging.read_genres(p) == ["Rock"]
    code = ("import json, resource\nimport av, mutagen, numpy\nfrom genrekit.library import tagging, undo\n"
            f"{HWM}base = hwm()\n"
            f"statuses = [x.status for x in undo.undo({str(jpath)!r})]\n"
            "print(json.dumps([base, hwm(), statuses]))\n")
    r = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    base, peak, statuses = json.loads(r.stdout)
    assert statuses == ["restored"] and p.read_bytes() == original
    assert (peak - base) * 1024 < 2.5 * len(original), (peak - base) * 1024 / len(original)
