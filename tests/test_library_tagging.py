"""genrekit.library.tagging / undo and `genrekit tag`: every format, the policies, the safety checks,
crashes at each step, resume and byte-exact undo. Synthesised audio, so these run on a fresh clone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from genrekit.library import tagging, undo
from genrekit.library.undo import UndoJournal
from library_media import EXT, FORMATS, decoded_pcm, make_file, other_tags


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path, monkeypatch):
    """Journals and the prediction cache in the test's own folder, never the user's."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _journal(tmp_path) -> UndoJournal:
    j = UndoJournal(tmp_path / "undo.jsonl")
    j.open(settings={"test": 1}, resume=False)
    return j


# ------------------------------------------------------------------------------------ every format
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("genre", [None, ["Jazz"]])
def test_write_each_format_keeps_everything_and_undo_is_byte_exact(tmp_path, fmt, genre):
    p = make_file(tmp_path / f"song{EXT[fmt]}", fmt, genre=genre, seed=3)
    os.utime(p, ns=(1_600_000_000_123_456_789, 1_500_000_000_987_654_321))
    original = p.read_bytes()
    pcm, others = decoded_pcm(p), other_tags(p)
    assert tagging.read_genres(p) == (genre or [])

    j = _journal(tmp_path)
    res = tagging.write_genres(p, {"genre": ["Rock", "Hip-Hop"]}, journal=j)
    j.close()
    want = ["Rock/Hip-Hop"] if fmt == "mp3v23" else ["Rock", "Hip-Hop"]
    assert tagging.read_genres(p) == want
    assert res.old == {"genre": genre or []} and res.before_sha256 != res.after_sha256
    assert np.array_equal(decoded_pcm(p), pcm)  # decoded audio identical
    assert tagging.audio_frames_digest(p.read_bytes()) == tagging.audio_frames_digest(original)
    assert other_tags(p) == others and others  # other tags and pictures kept
    assert p.stat().st_mtime_ns == 1_500_000_000_987_654_321
    assert not tagging.temp_path_for(p).exists()
    assert res.patch_bytes < 1024  # the journal stores the few changed bytes, not a copy

    results = list(undo.undo(tmp_path / "undo.jsonl"))
    assert [r.status for r in results] == ["restored"]
    assert p.read_bytes() == original
    assert p.stat().st_mtime_ns == 1_500_000_000_987_654_321
    assert [r.status for r in undo.undo(tmp_path / "undo.jsonl")] == ["already original"]  # idempotent


def test_id3v1_trailer_keeps_its_bytes_but_the_genre(tmp_path):
    p = make_file(tmp_path / "v1.mp3", "mp3v23", seed=1)  # ID3v2.3 + ID3v1
    old_v1 = p.read_bytes()[-128:]
    assert old_v1[:3] == b"TAG"
    j = _journal(tmp_path)
    tagging.write_genres(p, {"genre": ["Rock"]}, journal=j)
    new_v1 = p.read_bytes()[-128:]
    assert new_v1[:127] == old_v1[:127]
    assert new_v1[127] == 17  # ID3v1's index of Rock
    import mutagen

    assert mutagen.File(p).tags.version[:2] == (2, 3)  # the ID3v2 version is kept


def test_symlink_target_is_tagged_and_the_link_stays(tmp_path):
    target = make_file(tmp_path / "real" / "a.flac", "flac", seed=2)
    link = tmp_path / "link.flac"
    link.symlink_to(target)
    tagging.write_genres(link, {"genre": ["Blues"]}, journal=_journal(tmp_path))
    assert link.is_symlink() and tagging.read_genres(target) == ["Blues"]


# ------------------------------------------------------------------------------------ refusals
def test_read_only_hard_linked_unsupported_and_changed_files_are_left_alone(tmp_path):
    j = _journal(tmp_path)
    ro = make_file(tmp_path / "ro.flac", "flac", seed=1)
    ro.chmod(0o444)
    with pytest.raises(tagging.ReadOnlyError, match="read-only"):
        tagging.write_genres(ro, {"genre": ["Rock"]}, journal=j)
    hard = make_file(tmp_path / "h.flac", "flac", seed=2)
    os.link(hard, tmp_path / "h2.flac")
    with pytest.raises(tagging.ReadOnlyError, match="hard links"):
        tagging.write_genres(hard, {"genre": ["Rock"]}, journal=j)
    wav = make_file(tmp_path / "plain.wav", "wav", seed=3)
    with pytest.raises(tagging.UnsupportedTagFormatError, match="no ID3 chunk"):
        tagging.write_genres(wav, {"genre": ["Rock"]}, journal=j)
    txt = tmp_path / "notes.mp3"
    txt.write_bytes(b"not audio at all " * 100)
    with pytest.raises(tagging.TagError):
        tagging.write_genres(txt, {"genre": ["Rock"]}, journal=j)
    changed = make_file(tmp_path / "c.ogg", "ogg", seed=4)
    with pytest.raises(undo.FileChangedError, match="changed since"):
        tagging.write_genres(changed, {"genre": ["Rock"]}, journal=j, expected_sha256="0" * 64)
    j.close()
    assert UndoJournal.read(tmp_path / "undo.jsonl").changes == []  # nothing was journalled
    for f in (ro, hard, wav, changed):
        assert not tagging.temp_path_for(f).exists()
    assert tagging.read_genres(ro) == [] and tagging.read_genres(changed) == []


def test_a_rewrite_that_touches_other_tags_is_refused(tmp_path, monkeypatch):
    """The verification is real: a writer bug that also changes the title keeps the original file."""
    p = make_file(tmp_path / "s.m4a", "m4a", seed=5)
    before = p.read_bytes()
    real_set = tagging.set_values

    def buggy_set(f, family, name, values):
        real_set(f, family, name, values)
        f.tags["\xa9nam"] = ["clobbered"]

    monkeypatch.setattr(tagging, "set_values", buggy_set)
    with pytest.raises(tagging.VerificationError, match="other tags"):
        tagging.write_genres(p, {"genre": ["Pop"]}, journal=_journal(tmp_path))
    assert p.read_bytes() == before and not tagging.temp_path_for(p).exists()


def test_a_file_edited_while_being_written_is_not_clobbered(tmp_path):
    p = make_file(tmp_path / "s.flac", "flac", seed=6)

    def someone_else_writes():
        p.write_bytes(p.read_bytes() + b"")  # same bytes, new mtime: another program saved it
        os.utime(p, ns=(time.time_ns(), time.time_ns() + 10**9))

    with pytest.raises(undo.FileChangedError, match="while genrekit was writing"):
        tagging.write_genres(p, {"genre": ["Pop"]}, journal=_journal(tmp_path), before_replace=someone_else_writes)
    assert tagging.read_genres(p) == []


# ------------------------------------------------------------------------------------ crashes
def test_crash_before_the_rename_leaves_the_original(tmp_path):
    p = make_file(tmp_path / "s.opus", "opus", seed=7)
    before = p.read_bytes()

    def killed():
        raise KeyboardInterrupt  # any exit between journal and rename

    j = _journal(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        tagging.write_genres(p, {"genre": ["Pop"]}, journal=j, before_replace=killed)
    j.close()  # what the end of a killed process does: its journal lock goes with it
    assert p.read_bytes() == before and not tagging.temp_path_for(p).exists()
    state = UndoJournal.read(tmp_path / "undo.jsonl")
    assert len(state.changes) == 1 and not state.done  # journalled first, never marked done
    assert [r.status for r in undo.undo(tmp_path / "undo.jsonl")] == ["already original"]


def test_torn_journal_line_and_stale_temp_copy_are_handled(tmp_path):
    p = make_file(tmp_path / "s.mp3", "mp3", seed=8)
    original = p.read_bytes()
    j = _journal(tmp_path)
    tagging.write_genres(p, {"genre": ["Metal"]}, journal=j)
    j.close()
    with open(tmp_path / "undo.jsonl", "ab") as f:
        f.write(b'{"type": "change", "seq": 2, "file": "x", "bef')  # killed mid-line
    stale = tagging.temp_path_for(p)
    stale.write_bytes(b"half a file")
    assert tagging.cleanup_temp(p) and not stale.exists()
    res = list(undo.undo(tmp_path / "undo.jsonl"))
    assert [r.status for r in res] == ["skipped line", "restored"] and "line 5 " in res[0].message  # header, folder, change, done, torn
    assert p.read_bytes() == original


def test_undo_refuses_a_file_edited_after_tagging(tmp_path):
    p = make_file(tmp_path / "s.flac", "flac", seed=9)
    j = _journal(tmp_path)
    tagging.write_genres(p, {"genre": ["Metal"]}, journal=j)
    tagging.write_genres(p, {"genre": ["Metal", "Rock"]}, journal=j)
    j.close()
    from mutagen.flac import FLAC

    f = FLAC(p)
    f["TITLE"] = "edited by the user"
    f.save()
    edited = p.read_bytes()
    assert {r.status for r in undo.undo(tmp_path / "undo.jsonl")} == {"changed since"}
    assert p.read_bytes() == edited


# ------------------------------------------------------------------------------------ patches
@pytest.mark.parametrize("case", ["grow-head", "shrink-head", "into-padding", "ogg-renumber", "moved-far",
                                  "append", "identical", "random"])
def test_patch_rebuilds_the_old_bytes(case):
    rng = np.random.default_rng(0)
    old = rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    if case == "grow-head":
        new = old[:100] + b"X" * 900 + old[100:]
    elif case == "shrink-head":
        new = old[:100] + old[700:]
    elif case == "into-padding":  # a frame inserted before a picture, absorbed by the tag's padding
        pic, audio = old[:20_000], old[20_000:]
        old = b"ID3" + pic + b"\0" * 1000 + audio
        new = b"ID3" + b"TCON\0\0\0\x05Rock" + pic + b"\0" * (1000 - 13) + audio
    elif case == "ogg-renumber":  # a grown header, then 8 changed bytes every 4 kB
        b = bytearray(old[:200] + b"Y" * 37 + old[200:])
        for i in range(300, len(b) - 8, 4096):
            b[i:i + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
        new = bytes(b)
    elif case == "moved-far":  # an MP4 whose moov moved behind mdat
        new = old[30_000:] + b"moov" + old[:30_000]
    elif case == "append":
        new = old + b"tail"
    elif case == "identical":
        new = old
    else:
        new = rng.integers(0, 256, 30_000, dtype=np.uint8).tobytes()
    patch = undo.make_patch(old, new)
    assert undo.apply_patch(new, patch) == old
    stored = undo.patch_size(patch)
    limit = {"grow-head": 0, "shrink-head": 600 + undo.STEP, "into-padding": 0, "ogg-renumber": 16 * 13 + 64,
             "moved-far": 0, "append": 0, "identical": 0, "random": len(old)}[case]
    assert stored <= limit
    with pytest.raises(undo.FileChangedError):
        undo.apply_patch(new + b"!", patch)


# ------------------------------------------------------------------------------------ policies
REC = {"file": "x", "error": None, "scores": {"rock": 0.55, "metal": 0.30, "hiphop": 0.15}}


@pytest.mark.parametrize("current,policy,kw,action,values", [
    ([], "only-empty", {}, "write", ["Rock"]),
    (["Jazz"], "only-empty", {}, "skip", ["Jazz"]),
    (["  "], "only-empty", {}, "write", ["Rock"]),
    (["Jazz"], "overwrite", {}, "write", ["Rock"]),
    (["Jazz"], "append", {}, "write", ["Jazz", "Rock"]),
    (["rock"], "append", {}, "unchanged", ["rock"]),
    (["Rock"], "overwrite", {}, "unchanged", ["Rock"]),
    ([], "only-empty", {"top_k": 3}, "write", ["Rock", "Metal", "Hip-Hop"]),
    ([], "only-empty", {"top_k": 3, "min_confidence": 0.2}, "write", ["Rock", "Metal"]),
    ([], "only-empty", {"min_confidence": 0.6}, "skip", []),
    ([], "only-empty", {"top_k": 2, "labels": "model"}, "write", ["rock", "metal"]),
])
def test_decide_policies(current, policy, kw, action, values):
    d = tagging.decide(current, REC, policy=policy, **kw)
    assert d.action == action and d.values == values
    assert d.confidence == pytest.approx(0.55)


def test_decide_needs_no_prediction_for_files_it_will_keep():
    assert not tagging.needs_prediction(["Jazz"], policy="only-empty")
    assert tagging.needs_prediction(["Jazz"], policy="append")
    assert tagging.decide(["Jazz"], None).action == "skip"
    assert tagging.decide([], {"error": "bad file"}).action == "error"
    with pytest.raises(tagging.GenrekitError, match="policy"):
        tagging.decide([], REC, policy="clobber")


# ------------------------------------------------------------------------------------ the command
def _cli(*args):
    from genrekit.cli import main

    return main(list(map(str, args)))


def _library(root: Path, n: int = 8) -> dict[Path, bytes]:
    files = {}
    fmts = ("mp3", "flac", "ogg", "m4a")
    for i in range(n):
        fmt = fmts[i % 4]
        p = make_file(root / f"sub{i % 2}" / f"t{i:02d}{EXT[fmt]}", fmt, genre=["Jazz"] if i == 1 else None, seed=i)
        files[p] = p.read_bytes()
    return files


def test_cli_dry_run_write_and_undo(tmp_path, tiny_model, capsys):
    lib = _library(tmp_path / "lib")
    assert _cli("tag", tmp_path / "lib", "--model", tiny_model, "--no-progress", "--format", "json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 8 and {r["action"] for r in rows} == {"would write", "skipped"}
    assert all(p.read_bytes() == b for p, b in lib.items())  # a dry run writes nothing

    jpath = tmp_path / "j.jsonl"
    assert _cli("tag", tmp_path / "lib", "--model", tiny_model, "--no-progress", "--write",
                "--journal", jpath, "--format", "json") == 0
    rows = {Path(r["file"]).name: r for r in json.loads(capsys.readouterr().out)}
    assert rows["t01.flac"]["action"] == "skipped" and rows["t01.flac"]["current"] == ["Jazz"]
    written = [r for r in rows.values() if r["action"] == "written"]
    assert len(written) == 7
    for r in written:
        assert tagging.read_genres(r["file"]) == r["new"] and r["new"][0] in ("Blues", "Metal")

    # the same command again: everything has a genre now, nothing to do, nothing journalled
    assert _cli("tag", tmp_path / "lib", "--model", tiny_model, "--no-progress", "--write", "--format", "json") == 0
    assert {r["action"] for r in json.loads(capsys.readouterr().out)} == {"skipped"}

    assert _cli("tag", "--undo", jpath) == 0
    assert all(p.read_bytes() == b for p, b in lib.items())


def test_cli_reports_bad_files_and_exits_1(tmp_path, tiny_model, capsys):
    lib = tmp_path / "lib"
    make_file(lib / "ok.flac", "flac", seed=1)
    make_file(lib / "ro.flac", "flac", seed=2).chmod(0o444)
    make_file(lib / "plain.wav", "wav", seed=3)
    (lib / "junk.mp3").write_bytes(b"\0" * 5000)
    code = _cli("tag", lib, "--model", tiny_model, "--no-progress", "--write", "--format", "json")
    rows = {Path(r["file"]).name: r for r in json.loads(capsys.readouterr().out)}
    assert code == 1
    assert rows["ok.flac"]["action"] == "written"
    assert "read-only" in rows["ro.flac"]["reason"] and "no ID3 chunk" in rows["plain.wav"]["reason"]
    assert rows["junk.mp3"]["action"] == "error"
    assert _cli("tag", "--undo", tmp_path / "nope.jsonl") == 1
    assert _cli("tag", lib, "--top-k", "0") == 2


def test_cli_overwrite_append_top_k_and_min_confidence(tmp_path, tiny_model, capsys):
    p = make_file(tmp_path / "a.flac", "flac", genre=["Jazz"], seed=1)
    base = ["tag", p, "--model", tiny_model, "--no-progress", "--format", "json"]
    assert _cli(*base, "--min-confidence", "1.0", "--overwrite", "--write") == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["action"] == "skipped" and "below" in row["reason"] and tagging.read_genres(p) == ["Jazz"]
    assert _cli(*base, "--append", "--top-k", "2", "--write") == 0
    (row,) = json.loads(capsys.readouterr().out)
    genres = tagging.read_genres(p)
    assert row["action"] == "written" and genres[0] == "Jazz" and set(genres[1:]) == {"Blues", "Metal"}
    assert _cli(*base, "--overwrite", "--write") == 0
    assert len(tagging.read_genres(p)) == 1


@pytest.mark.slow
def test_kill_9_mid_run_then_rerun_finishes_every_file(tmp_path, tiny_model):
    """SIGKILL a real `genrekit tag --write` run part-way, rerun it: no file corrupt, all tagged, and the
    undo journal (one for both runs) restores every file byte for byte."""
    lib = tmp_path / "lib"
    originals = {}
    for i in range(40):
        fmt = ("mp3", "flac", "ogg", "m4a")[i % 4]
        p = make_file(lib / f"t{i:02d}{EXT[fmt]}", fmt, seed=i)
        originals[p] = p.read_bytes()
    jpath = tmp_path / "journal.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(tagging.__file__).parents[2]),
                                                        os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "genrekit", "tag", str(lib), "--model", str(tiny_model), "--write",
           "--journal", str(jpath), "--no-progress", "--no-cache"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if jpath.exists() and jpath.read_bytes().count(b'"type": "done"') >= 5:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = UndoJournal.read(jpath)
    assert 5 <= len(state.changes) < 40 and not state.finished
    for p, orig in originals.items():  # every file is either the original or completely tagged
        cur = p.read_bytes()
        assert cur == orig or tagging.audio_frames_digest(cur) == tagging.audio_frames_digest(orig)

    done = subprocess.run(cmd + ["--format", "json"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert {r["action"] for r in rows} <= {"written", "done earlier"}
    assert sum(r["action"] == "done earlier" for r in rows) >= 5
    for p, orig in originals.items():
        assert tagging.read_genres(p), p
        assert tagging.audio_frames_digest(p.read_bytes()) == tagging.audio_frames_digest(orig)
    assert not [f for f in lib.iterdir() if f.name.endswith(".genrekit-tmp")]  # the killed run's copy too
    assert UndoJournal.read(jpath).finished
    assert {r.status for r in undo.undo(jpath)} == {"restored"}
    assert all(p.read_bytes() == b for p, b in originals.items())


def test_cli_tags_writes_the_musicnn_tags_into_genrekit_s_own_field(tmp_path, tiny_model, capsys):
    """--tags N: the N best MSD tags (as genrekit.networks.musicnn computes them) go into GENREKIT_TAGS in each
    format's own way, also on files whose genre the policy keeps; undo restores every byte."""
    import mutagen

    from genrekit.networks import musicnn as embeddings

    lib = tmp_path / "lib"
    files = {fmt: make_file(lib / f"{fmt}{EXT[fmt]}", fmt, seed=i, genre=["Jazz"] if fmt == "ogg" else None)
             for i, fmt in enumerate(("mp3", "flac", "ogg", "m4a"))}
    originals = {p: p.read_bytes() for p in files.values()}
    jpath = tmp_path / "j.jsonl"
    assert _cli("tag", lib, "--model", tiny_model, "--tags", "3", "--write", "--journal", jpath,
                "--no-progress", "--format", "json") == 0
    rows = {Path(r["file"]).suffix: r for r in json.loads(capsys.readouterr().out)}
    for fmt, p in files.items():
        want = [t for t, _ in embeddings.top_tags(embeddings.embed_file(p), 3)]  # audio unchanged by tagging
        row = rows[p.suffix]
        assert row["action"] == "written" and row["new_tags"] == want and row["current_tags"] == []
        tags = mutagen.File(p).tags
        if fmt == "mp3":
            got = tags.getall("TXXX:GENREKIT_TAGS")[0].text
        elif fmt == "m4a":
            got = [bytes(v).decode() for v in tags["----:com.apple.iTunes:GENREKIT_TAGS"]]
        else:
            got = tags["GENREKIT_TAGS"]
        assert list(got) == want
        assert tagging.read_tags(p, fields=[tagging.TAGS_FIELD]).extra[tagging.TAGS_FIELD] == want
    assert rows[".ogg"]["reason"] == "tags only; genre kept" and tagging.read_genres(files["ogg"]) == ["Jazz"]
    # again: nothing left to change
    assert _cli("tag", lib, "--model", tiny_model, "--tags", "3", "--no-progress", "--format", "json") == 0
    assert {r["action"] for r in json.loads(capsys.readouterr().out)} == {"skipped"}  # genres kept, tags current
    assert _cli("tag", "--undo", jpath) == 0
    assert all(p.read_bytes() == b for p, b in originals.items())
