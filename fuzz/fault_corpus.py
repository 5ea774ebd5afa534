"""The fault corpus of issue 21: every class of fault, built fresh in a temp dir and run through the real
CLI (``python -m genrekit ...`` in a subprocess, 120 s timeout, peak RSS measured), each case judged on
what "held" means for it: no traceback, the documented exit code, the user's files byte for byte, peak
RSS <= 1 GB, undo restoring what it should.

    python fuzz/fault_corpus.py              # every class; exit 1 if any case fails
    python fuzz/fault_corpus.py --class 3    # one class (repeat --class for more)
    python fuzz/fault_corpus.py --list       # the cases, without running them

Output: per class, cases tried and held, the worst peak RSS and time of its commands; then every case
that failed, with why. Classes: 1 destroying user files, 2 two runs at once, 3 undo trusting its journal,
4 special files, 5 decode bombs, 6 names, 7 numbers, 8 model files, 9 server, 10 resources and exits.
The server's hardening cases (class 9) run ``genrekit serve`` on a free loopback port.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np  # noqa: E402
from faultlib import CASES, Case, Ctx, Outcome, Skip, case, check, library, tone, unchanged, write_audio  # noqa: E402

CLASSES = {
    1: "destroying user files", 2: "two runs at once", 3: "undo trusting its journal", 4: "special files",
    5: "decode bombs", 6: "names", 7: "numbers", 8: "model files", 9: "server", 10: "resources and exits",
}


# ==================================================================================== 1 destroying user files
USER_M3U = b"#EXTM3U\n# my own hand-made list\n/music/favourite.mp3\n"
PLAYLIST_NAMES = ["Blues", "Classical", "Country", "Disco", "Hip-Hop", "Jazz", "Metal", "Pop", "Reggae", "Rock"]


@case(1, "playlists --out DIR holding the user's own <Genre>.m3u8")
def c1_playlists(ctx, d):
    lib, _ = library(d)
    out = d / "pl"
    out.mkdir()
    mine = {}
    for g in PLAYLIST_NAMES:
        (out / f"{g}.m3u8").write_bytes(USER_M3U)
        mine[out / f"{g}.m3u8"] = USER_M3U
    run = ctx.cli(["playlists", lib, "--out", out, "--no-progress"], d)
    return check(run) + unchanged(mine, " (a playlist genrekit did not write)")


def _user_out(ctx, d, args, name):
    lib, _ = library(d, 1)
    target = d / name
    target.write_bytes(b"the user's own file, not genrekit's\n")
    run = ctx.cli([a if a != "LIB" else lib for a in args] + ["--out", target], d)
    return check(run, rcs=(0, 1, 2)) + unchanged({target: b"the user's own file, not genrekit's\n"})


@case(1, "predict --out over the user's own file")
def c1_predict_out(ctx, d):
    return _user_out(ctx, d, ["predict", "LIB", "--format", "json", "--no-progress"], "notes.json")


@case(1, "features --out over the user's own file")
def c1_features_out(ctx, d):
    return _user_out(ctx, d, ["features", "LIB", "--quiet"], "table.csv")


@case(1, "export --out over the user's own file")
def c1_export_out(ctx, d):
    target = d / "model.onnx"
    target.write_bytes(b"the user's own model\n")
    run = ctx.cli(["export", "--out", target], d)
    return check(run, rcs=(0, 1, 2)) + unchanged({target: b"the user's own model\n"})


@case(1, "tag --write --journal over the user's own file")
def c1_journal(ctx, d):
    lib, _ = library(d, 1)
    j = d / "diary.txt"
    j.write_bytes(b"dear diary\n")
    run = ctx.cli(["tag", lib, "--write", "--journal", j, "--no-progress"], d)
    return check(run, rcs=(0, 1, 2)) + unchanged({j: b"dear diary\n"})


# ==================================================================================== 2 two runs at once
def _undo(ctx, d, journal, files, *, mention=()) -> list[str]:
    run = ctx.cli(["tag", "--undo", journal], d)
    return check(run, mention=mention) + unchanged(files, " after undo")


def _leftovers(lib: Path, files) -> list[str]:
    extra = sorted(p.name for p in lib.iterdir() if p not in files)
    return [f"left in the music folder: {', '.join(extra)}"] if extra else []


@case(2, "the same tag --write started twice on one journal")
def c2_twice(ctx, d):
    lib, files = library(d, 3)
    j = d / "journal.jsonl"
    a = ctx.spawn(["tag", lib, "--write", "--journal", j, "--no-progress"], d)
    b = ctx.spawn(["tag", lib, "--write", "--journal", j, "--no-progress"], d)
    ra, rb = ctx.finish(a), ctx.finish(b)
    problems = check(ra, rcs=(0, 1, 2)) + check(rb, rcs=(0, 1, 2))
    if ra.rc != 0 and rb.rc != 0:
        problems.append("neither run completed (want one writer: the other waits or refuses clearly)")
    return problems + _leftovers(lib, files) + _undo(ctx, d, j, files)


@case(2, "tag --write killed with SIGKILL mid-run, then undo")
def c2_kill9(ctx, d):
    lib, files = library(d, 6)
    j = d / "journal.jsonl"
    p = ctx.spawn(["tag", lib, "--write", "--journal", j, "--no-progress"], d)
    deadline = time.monotonic() + min(60.0, ctx.timeout)
    caught = False
    while time.monotonic() < deadline and p.popen.poll() is None:  # kill it while it writes a file
        if len(os.listdir(lib)) > len(files):
            caught = True
            break
        time.sleep(0.0005)
    p.kill()
    ctx.finish(p)
    if not caught:
        raise Skip("the run ended before it could be caught writing a file (nothing to test this time)")
    problems = _undo(ctx, d, j, files)
    return problems + _leftovers(lib, files)


@case(2, "undo of a journal with a torn last line")
def c2_torn(ctx, d):
    lib, files = library(d, 2)
    j = d / "journal.jsonl"
    problems = check(ctx.cli(["tag", lib, "--write", "--journal", j, "--no-progress"], d))
    with open(j, "ab") as f:
        f.write(b'{"type": "change", "seq": 99, "file": "/tmp/x", "bef')
    return problems + _undo(ctx, d, j, files, mention=("line",))


# ==================================================================================== 3 undo trusting its journal
def _journal(path: Path, changes: list[dict]) -> None:
    lines = [{"type": "header", "format": "genrekit-tag-journal", "version": 1, "genrekit": "0",
              "created": "2026-01-01T00:00:00+0000", "settings": {}}]
    for i, ch in enumerate(changes, 1):
        lines += [{"type": "change", "seq": i, **ch}, {"type": "done", "seq": i}]
    lines.append({"type": "finished", "summary": {}})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


@case(3, "a hand-written journal aimed at a file genrekit never touched")
def c3_victim(ctx, d):
    import hashlib

    victim = d / "notes.txt"
    victim.write_bytes(b"my notes\n")
    victim.chmod(0o644)
    evil = b"#!/bin/sh\necho pwned\n"
    sha = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    j = d / "crafted.jsonl"
    _journal(j, [{"file": str(victim), "before": {"sha256": sha(evil), "mtime_ns": 0, "mode": 0o6777},
                  "after_sha256": sha(b"my notes\n"), "old": None, "new": "Rock",
                  "patch": {"ops": [["l", base64.b64encode(evil).decode()]], "new_size": 9,
                            "old_sha256": sha(evil)}}])
    run = ctx.cli(["tag", "--undo", j], d)
    problems = check(run) + unchanged({victim: b"my notes\n"})
    if victim.stat().st_mode & 0o7777 != 0o644:
        problems.append(f"notes.txt: mode changed to {oct(victim.stat().st_mode & 0o7777)}")
    return problems


def _tagged(ctx, d) -> tuple[Path, Path, dict, list[str]]:
    lib, files = library(d, 1)
    j = d / "journal.jsonl"
    run = ctx.cli(["tag", lib, "--write", "--journal", j, "--no-progress"], d)
    f = next(iter(files))
    problems = check(run)
    if f.read_bytes() == files[f]:
        problems.append("tag --write changed nothing (nothing to undo)")
    return f, j, files, problems


@case(3, "a journal whose recorded mode is 6777")
def c3_mode(ctx, d):
    f, j, files, problems = _tagged(ctx, d)
    if problems:
        return problems
    lines = [json.loads(x) for x in j.read_text().splitlines() if x.strip()]
    for x in lines:
        if x.get("type") == "change":
            x["before"]["mode"] = 0o6777
    j.write_text("".join(json.dumps(x) + "\n" for x in lines))
    problems = check(ctx.cli(["tag", "--undo", j], d))
    mode = f.stat().st_mode & 0o7777
    if mode & 0o6002:
        problems.append(f"undo set mode {oct(mode)} (setuid/setgid/world-writable)")
    return problems


@case(3, "undo of a file the user made read-only since")
def c3_readonly(ctx, d):
    f, j, files, problems = _tagged(ctx, d)
    if problems:
        return problems
    tagged = f.read_bytes()
    f.chmod(0o444)
    problems = check(ctx.cli(["tag", "--undo", j], d)) + unchanged({f: tagged}, " (read-only: undo must leave it)")
    return problems


@case(3, "undo of a journal that is random bytes")
def c3_garbage(ctx, d):
    j = d / "garbage.jsonl"
    j.write_bytes(os.urandom(4096))
    return check(ctx.cli(["tag", "--undo", j], d), rcs=(1,), mention=("garbage.jsonl",))


# ==================================================================================== 4 special files
WALKERS = {
    "info": lambda lib, d: ["info", lib],
    "predict": lambda lib, d: ["predict", lib, "--no-progress"],
    "features": lambda lib, d: ["features", lib, "--out", d / "f.csv", "--quiet"],
    "tags": lambda lib, d: ["tags", lib, "--no-progress"],
    "embed": lambda lib, d: ["embed", lib, "--out", d / "e.npz", "--no-progress"],
    "tag": lambda lib, d: ["tag", lib, "--no-progress"],
    "playlists": lambda lib, d: ["playlists", lib, "--out", d / "pl", "--no-progress"],
    "similar": lambda lib, d: ["similar", "--library", lib, "--index", d / "idx", "--no-progress"],
}


def _special(kind: str, cmd: str):
    def fn(ctx, d):
        lib, _ = library(d, 1)
        if kind == "fifo":
            name = "p.flac"
            os.mkfifo(lib / name)
        else:
            name = "z.mp3"
            os.symlink("/dev/zero", lib / name)
        return check(ctx.cli(WALKERS[cmd](lib, d), d), mention=(name,))
    return fn


for _cmd in WALKERS:
    case(4, f"{_cmd}: a FIFO p.flac in the folder")(_special("fifo", _cmd))
    case(4, f"{_cmd}: z.mp3 -> /dev/zero in the folder")(_special("zero", _cmd))


# ==================================================================================== 5 decode bombs
def _one_hz(d: Path) -> Path:
    from badinput import wav_header

    data = (np.random.default_rng(0).integers(-8000, 8000, 64 * 1024)).astype("<i2").tobytes()
    p = d / "lib" / "one_hz.wav"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(wav_header(sr=1, channels=1, bits=16, data_bytes=len(data)) + data)
    return p


for _cmd, _args in {"predict": lambda p, d: ["predict", p, "--no-progress"],
                    "features": lambda p, d: ["features", p, "--out", d / "f.csv", "--quiet"],
                    "tags": lambda p, d: ["tags", p, "--no-progress"],
                    "info": lambda p, d: ["info", p]}.items():
    def _bomb(ctx, d, _args=_args):
        p = _one_hz(d)
        run = ctx.cli(_args(p, d), d)
        return check(run, mention=() if run.rc == 0 else ("one_hz.wav",))
    case(5, f"{_cmd}: a 128 KB PCM WAV at 1 Hz")(_bomb)


@case(5, "tag --write verification streams (peak RSS within 100 MB of predict's)")
def c5_verify(ctx, d):
    seconds = 360.0
    y = tone(seconds, sr=44100, freq=330.0, channels=2)
    f = write_audio(d / "lib" / "long.flac", y, 44100)
    del y
    pred = ctx.cli(["predict", f, "--no-progress", "--format", "json"], d)
    problems = check(pred)
    tag = ctx.cli(["tag", f, "--write", "--journal", d / "j.jsonl", "--no-progress"], d)
    problems += check(tag)
    if tag.rss_mb > pred.rss_mb + 100:  # whole-file decoding would add ~250 MB (float64 stereo, 6 min)
        problems.append(f"tag --write peaks at {tag.rss_mb:.0f} MB, predict at {pred.rss_mb:.0f} MB on the same "
                        f"{seconds / 60:.0f}-minute file: verification does not stream")
    return problems


@case(5, "tag --write and --undo on a 1-hour FLAC (44.1 kHz stereo, 220 MB): RSS < 1 GB, undo exact")
def c5_hour(ctx, d):
    import hashlib

    import soundfile as sf

    f = d / "lib" / "hour.flac"
    f.parent.mkdir(parents=True)
    rng, sr = np.random.default_rng(0), 44100
    with sf.SoundFile(str(f), "w", samplerate=sr, channels=2, format="FLAC", subtype="PCM_16") as out:
        for i in range(360):  # 10 s at a time: a quiet tone under low-level noise, built without holding it
            t = (np.arange(sr * 10) + i * sr * 10) / sr
            out.write((0.1 * np.sin(2 * np.pi * 330 * t)[:, None] + rng.standard_normal((sr * 10, 2)) * 3e-4)
                      .astype(np.float32))
    h = hashlib.sha256()
    with open(f, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    before = h.hexdigest()
    j = d / "j.jsonl"
    problems = check(ctx.cli(["tag", f, "--write", "--journal", j, "--no-progress"], d), rcs=(0,))
    problems += check(ctx.cli(["tag", "--undo", j], d), rcs=(0,), mention=("1 restored",))
    h = hashlib.sha256()
    with open(f, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != before:
        problems.append("hour.flac: not restored byte for byte by undo")
    return problems


import fault_cases  # noqa: E402, F401  (classes 6 to 10 register themselves)


# ==================================================================================== the run
def run_cases(cases: list[Case], ctx_factory: Callable[[Path], Ctx], *, keep: bool = False,
              progress=None) -> list[Outcome]:
    """Run each case in its own temp dir under one session dir; a case that raises is a failure."""
    outcomes = []
    root = Path(tempfile.mkdtemp(prefix="genrekit-faults-"))
    try:
        ctx = ctx_factory(root)
        for i, c in enumerate(cases):
            d = root / f"case{i:03d}"
            d.mkdir()
            ctx.runs = []
            t0 = time.monotonic()
            skipped = ""
            try:
                problems = list(c.fn(ctx, d))
            except Skip as exc:
                problems, skipped = [], str(exc)
            except Exception as exc:  # the case could not be built or judged: a failure with its reason
                problems = [f"case error: {type(exc).__name__}: {exc} "
                            f"({traceback.extract_tb(exc.__traceback__)[-1].lineno})"]
            o = Outcome(c, problems, max((r.rss_mb for r in ctx.runs), default=0.0),
                        max((r.seconds for r in ctx.runs), default=time.monotonic() - t0), skipped, ctx.runs)
            outcomes.append(o)
            if progress:
                progress(o)
            if not keep:
                _rmtree(d)
    finally:
        if not keep:
            _rmtree(root)
    return outcomes


def _rmtree(d: Path) -> None:
    for p in d.rglob("*"):  # read-only files and folders from the cases must not stop the clean-up
        try:
            if not p.is_symlink():
                p.chmod(0o700 if p.is_dir() else 0o600)
        except OSError:
            pass
    shutil.rmtree(d, ignore_errors=True)


def table(outcomes: list[Outcome]) -> str:
    """Per class: tried, held, worst peak RSS and time; then each failing case with why."""
    lines = [f"{'class':<31} {'tried':>5} {'held':>5} {'skipped':>7} {'worst RSS':>10} {'worst time':>10}"]
    for k, title in CLASSES.items():
        os_ = [o for o in outcomes if o.case.cls == k]
        if not os_:
            continue
        tried = [o for o in os_ if not o.skipped]
        runs = [r for o in os_ for r in o.runs]
        mem_cut = "+" if any(r.over_memory for r in runs) else " "
        time_cut = "+" if any(r.timed_out for r in runs) else " "
        lines.append(f"{k:>2} {title:<28} {len(tried):>5} {sum(o.held for o in tried):>5} "
                     f"{len(os_) - len(tried):>7} {max((o.rss_mb for o in os_), default=0):>7.0f} MB{mem_cut}"
                     f"{max((o.seconds for o in os_), default=0):>7.1f} s{time_cut}")
    tried = [o for o in outcomes if not o.skipped]
    lines.append(f"{'all':<31} {len(tried):>5} {sum(o.held for o in tried):>5} {len(outcomes) - len(tried):>7}")
    if any(r.over_memory or r.timed_out for o in outcomes for r in o.runs):
        lines.append("+ a command was killed at the memory cap or the timeout: the real figure is higher")
    failed = [o for o in tried if not o.held]
    if failed:
        lines += ["", "failing cases:"]
        for o in failed:
            lines.append(f"[{o.case.cls}] {o.case.name}")
            lines += [f"      {p}" for p in o.problems]
    skipped = [o for o in outcomes if o.skipped]
    if skipped:
        lines += ["", "skipped:"] + [f"[{o.case.cls}] {o.case.name}: {o.skipped}" for o in skipped]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--class", dest="classes", type=int, action="append", choices=sorted(CLASSES),
                    help="run only this class (repeatable)")
    ap.add_argument("--case", default=None, help="run only cases whose name contains this text")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per command (default 120)")
    ap.add_argument("--kill-mb", type=float, default=3072.0,
                    help="kill a command whose process group passes this RSS (default 3072 MB)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs (their path is printed)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--verbose", "-v", action="store_true", help="show the output of failing cases' commands")
    args = ap.parse_args(argv)
    cases = [c for c in CASES if (not args.classes or c.cls in args.classes)
             and (args.case is None or args.case in c.name)]
    if args.list:
        for c in cases:
            print(f"[{c.cls}] {c.name}")
        return 0

    def progress(o: Outcome) -> None:
        verdict = "skipped" if o.skipped else "held" if o.held else "FAILED"
        print(f"[{o.case.cls:>2}] {verdict:<7} {o.seconds:6.1f} s {o.rss_mb:6.0f} MB  {o.case.name}",
              file=sys.stderr, flush=True)

    outcomes = run_cases(cases, lambda root: Ctx(root, timeout=args.timeout, kill_mb=args.kill_mb),
                         keep=args.keep, progress=progress)
    print(table(outcomes))
    if args.verbose:
        for o in outcomes:
            if o.held or o.skipped:
                continue
            for r in o.runs:
                print(f"\n--- [{o.case.cls}] {o.case.name}: {' '.join(r.argv)} (exit {r.rc})")
                print("\n".join(r.text.rstrip().splitlines()[-15:]))
    return 1 if any(not o.held and not o.skipped for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
