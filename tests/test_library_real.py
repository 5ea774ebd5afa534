"""The issue's target on real music: `genrekit tag --write` over 100 files made from the shared clips
(mp3, flac, ogg, m4a re-encoded from GTZAN clips, plus real-world mp3s with their own ID3 tags), killed
with SIGKILL part-way and rerun: no file corrupt, all tagged, audio frames byte-identical, other tags and
pictures kept; `--undo` restores every file byte for byte."""

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

from genrekit.library import tagging
from genrekit.library.undo import UndoJournal
from library_media import EXT, add_tags, decode_mono, decoded_pcm, encode, other_tags

SRC = Path(__file__).resolve().parents[1] / "src"


def build_real_library(root: Path, shared: Path, *, n: int = 100) -> list[Path]:
    """``n`` files: real-world mp3 copies (their own tags) and GTZAN clips re-encoded in four formats,
    tagged with title/artist/album, a cover picture, and on every fifth file a genre already."""

    root.mkdir(parents=True)
    real = sorted((shared / "realworld" / "fma").glob("*.mp3"))
    files = []
    for p in real:
        dst = root / "fma" / p.name
        dst.parent.mkdir(exist_ok=True)
        dst.write_bytes(p.read_bytes())
        files.append(dst)
    clips = sorted((shared / "gtzan" / "audio").glob("*/*.flac"))
    rng = np.random.default_rng(0)
    pick = sorted(rng.choice(len(clips), size=n - len(files), replace=False))
    for i, k in enumerate(pick):
        clip = clips[k]
        y, sr = decode_mono(clip)
        fmt = ("mp3", "flac", "ogg", "m4a")[i % 4]
        dst = root / clip.parent.name / f"{clip.stem}{EXT[fmt]}"
        dst.parent.mkdir(exist_ok=True)
        dst.write_bytes(encode(y, sr, fmt))
        add_tags(dst, fmt, title=clip.stem, genre=["Unsorted"] if i % 5 == 0 else None, picture=True, seed=i)
        files.append(dst)
    return files


@pytest.mark.shared
@pytest.mark.slow
def test_100_real_files_kill_9_rerun_and_undo(tmp_path, gtzan):
    files = build_real_library(tmp_path / "lib", gtzan.parent)
    assert len(files) == 100
    assert {p.suffix for p in files} == {".mp3", ".flac", ".ogg", ".m4a"}
    originals = {p: p.read_bytes() for p in files}
    pcm = {p: decoded_pcm(p) for p in files}
    tags = {p: other_tags(p) for p in files}
    mtimes = {p: p.stat().st_mtime_ns for p in files}

    jpath = tmp_path / "journal.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "XDG_STATE_HOME": str(tmp_path / "state")}
    cmd = [sys.executable, "-m", "genrekit", "tag", str(tmp_path / "lib"), "--write", "--overwrite",
           "--journal", str(jpath), "--no-progress", "--format", "json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if jpath.exists() and jpath.read_bytes().count(b'"type": "done"') >= 30:
            break
        time.sleep(0.002)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_after = len(UndoJournal.read(jpath).changes)
    for p in files:  # none corrupt: each file is the original or a complete, verified rewrite
        cur = p.read_bytes()
        assert cur == originals[p] or np.array_equal(decoded_pcm(p), pcm[p]), p

    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    rerun_s = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)
    actions = [r["action"] for r in rows]
    assert set(actions) <= {"written", "done earlier", "unchanged"}, set(actions)
    assert actions.count("done earlier") >= 30
    state = UndoJournal.read(jpath)
    assert state.finished and len(state.done) == len(state.changes)

    for p in files:
        assert tagging.read_genres(p), p
        assert np.array_equal(decoded_pcm(p), pcm[p]), p  # decoded audio identical
        assert tagging.audio_frames_digest(p.read_bytes()) == tagging.audio_frames_digest(originals[p]), p
        assert other_tags(p) == tags[p], p  # every other tag and the pictures kept
        assert p.stat().st_mtime_ns == mtimes[p]
        assert not tagging.temp_path_for(p).exists()
    from genrekit.library.undo import patch_size

    patch_bytes = sum(patch_size(c["patch"]) for c in state.changes)

    r = subprocess.run([sys.executable, "-m", "genrekit", "tag", "--undo", str(jpath)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    for p in files:
        assert p.read_bytes() == originals[p], p
        assert p.stat().st_mtime_ns == mtimes[p]
    print(f"\n100 files: killed after {killed_after} changes; rerun {rerun_s:.1f} s; journal {jpath.stat().st_size} B "
          f"(~{patch_bytes} B of patches for {sum(map(len, originals.values()))} B of audio files)")
