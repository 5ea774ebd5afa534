"""Fault corpus classes 6 to 10 (names, numbers, model files, server, resources and exits); classes 1 to
5 and the runner are in ``fault_corpus.py``. Each case builds its input in its own temp dir ``d``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from faultlib import SRC, Skip, audio_bytes, case, check, library, tone, unchanged, write_audio

# ==================================================================================== 6 names
NON_UTF8 = b"x\xff.ogg"
ESCAPE = "a\x1b[31mred.flac"


def _odd_names(d: Path) -> tuple[Path, dict[Path, bytes]]:
    lib, files = library(d, 0)
    ogg = write_audio(lib / "plain.ogg", tone(4.0, freq=330.0))
    os.rename(ogg, os.path.join(os.fsencode(lib), NON_UTF8))
    esc = write_audio(lib / ESCAPE, tone(4.0, freq=550.0))
    weird = Path(os.fsdecode(os.path.join(os.fsencode(lib), NON_UTF8)))
    return lib, {weird: weird.read_bytes(), esc: esc.read_bytes()}


def _no_raw_escape(run) -> list[str]:
    return [f"{run.label}: a raw escape character reached the output"] if b"\x1b" in run.out else []


@case(6, "info on names that are not UTF-8 or hold escape characters")
def c6_info(ctx, d):
    lib, _ = _odd_names(d)
    run = ctx.cli(["info", lib], d)
    return check(run, rcs=(0,)) + _no_raw_escape(run)


@case(6, "predict (table) on odd names: both classified, shown escaped")
def c6_predict(ctx, d):
    lib, _ = _odd_names(d)
    run = ctx.cli(["predict", lib, "--no-progress"], d)
    return check(run, rcs=(0,)) + _no_raw_escape(run)


@case(6, "predict --format json on odd names: both records classified")
def c6_predict_json(ctx, d):
    lib, _ = _odd_names(d)
    run = ctx.cli(["predict", lib, "--no-progress", "--format", "json"], d)
    problems = check(run, rcs=(0,))
    try:
        recs = json.loads(run.out)
        if len(recs) != 2 or any(r.get("genre") is None for r in recs):
            problems.append(f"want 2 classified records, got {[(r.get('file'), r.get('error')) for r in recs]}")
    except (ValueError, AttributeError) as exc:
        problems.append(f"output is not a JSON list of records ({exc})")
    return problems


@case(6, "tag --write and undo on odd names")
def c6_tag(ctx, d):
    lib, files = _odd_names(d)
    j = d / "journal.jsonl"
    run = ctx.cli(["tag", lib, "--write", "--journal", j, "--no-progress"], d)
    problems = check(run, rcs=(0,)) + _no_raw_escape(run)
    if j.is_file():
        problems += check(ctx.cli(["tag", "--undo", j], d), rcs=(0,)) + unchanged(files, " after undo")
    return problems


@case(6, "playlists on odd names")
def c6_playlists(ctx, d):
    lib, _ = _odd_names(d)
    run = ctx.cli(["playlists", lib, "--out", d / "pl", "--no-progress"], d)
    return check(run, rcs=(0,)) + _no_raw_escape(run)


# ==================================================================================== 7 numbers
def _huge(d: Path) -> Path:
    y = np.sin(np.arange(4 * 22050) * 0.05).astype(np.float32) * np.float32(1e30)
    return write_audio(d / "lib" / "huge.wav", y, subtype="FLOAT")


@case(7, "predict on float audio of amplitude 1e30")
def c7_predict(ctx, d):
    return check(ctx.cli(["predict", _huge(d), "--no-progress"], d), rcs=(1,), mention=("huge.wav",))


@case(7, "features on float audio of amplitude 1e30: no NaN written")
def c7_features(ctx, d):
    out = d / "f.csv"
    problems = check(ctx.cli(["features", _huge(d), "--out", out, "--quiet"], d), rcs=(1,), mention=("huge.wav",))
    if out.is_file():
        bad = [w for w in out.read_text(errors="replace").lower().replace(",", " ").split() if w in ("nan", "inf", "-inf")]
        if bad:
            problems.append(f"f.csv holds {len(bad)} non-finite values")
    return problems


def _truncated(fmt: str, ext: str):
    def fn(ctx, d):
        data = audio_bytes(tone(4.0), format=fmt, subtype="PCM_16")
        p = d / "lib" / f"half.{ext}"
        p.parent.mkdir(parents=True)
        p.write_bytes(data[: len(data) // 2])
        return check(ctx.cli(["predict", p, "--no-progress"], d), rcs=(1,), mention=(f"half.{ext}", "truncated"))
    return fn


for _fmt, _ext in (("WAV", "wav"), ("AU", "au"), ("AIFF", "aiff")):
    case(7, f"predict on a {_fmt} cut in half: reported truncated")(_truncated(_fmt, _ext))


# ==================================================================================== 8 model files
PRETRAINED = SRC / "genrekit" / "pretrained"


def _rewrite_model(src: Path, dst: Path, edit) -> Path:
    """Copy a model file with its safetensors header's metadata edited, tensors (and sha256) untouched."""
    data = src.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8: 8 + n])
    edit(header["__metadata__"])
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    dst.write_bytes(len(new).to_bytes(8, "little") + new + data[8 + n:])
    return dst


def _meta_edit(fn):
    def edit(md):
        meta = json.loads(md["meta"])
        fn(meta)
        md["meta"] = json.dumps(meta, sort_keys=True)
    return edit


def _refused(ctx, d, model: Path) -> list[str]:
    clip = write_audio(d / "clip.wav", tone(4.0))
    run = ctx.cli(["predict", clip, "--model", model, "--no-progress"], d)
    return check(run, rcs=(1,), mention=(model.name,))


@case(8, "two class names swapped in the metadata, checksum left stale")
def c8_swapped(ctx, d):
    def swap(meta):
        meta["classes"][0], meta["classes"][1] = meta["classes"][1], meta["classes"][0]
    m = _rewrite_model(PRETRAINED / "genrekit-gtzan-musicnn.safetensors", d / "swapped.safetensors", _meta_edit(swap))
    return _refused(ctx, d, m)


@case(8, "a log-mel input with hop_length 1")
def c8_hop(ctx, d):
    def hop(meta):
        for m in meta["input"]["members"]:
            if m.get("type") == "logmel":
                m["hop_length"] = 1
    m = _rewrite_model(PRETRAINED / "genrekit-gtzan-default.safetensors", d / "hop1.safetensors", _meta_edit(hop))
    return _refused(ctx, d, m)


@case(8, "metadata nested 200,000 deep")
def c8_nested(ctx, d):
    def nest(md):
        md["meta"] = '{"kind": "deep", "x": ' + "[" * 200_000 + "]" * 200_000 + "}"
    m = _rewrite_model(PRETRAINED / "genrekit-gtzan-musicnn.safetensors", d / "nested.safetensors", nest)
    return _refused(ctx, d, m)


# ==================================================================================== 9 server
class _Server:
    """``genrekit serve`` on a free loopback port, measured like any other command."""

    def __init__(self, ctx, d: Path, *extra: str):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.ctx, self.d = ctx, d
        self.proc = ctx.spawn(["serve", "--port", str(self.port), "--workers", "2", "--log-level", "warning",
                               *extra], d)

    def __enter__(self):
        import httpx

        deadline = time.monotonic() + min(90.0, self.ctx.timeout)
        while time.monotonic() < deadline and self.proc.popen.poll() is None:
            try:
                if httpx.get(self.url("/api/health"), timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.2)
        self.proc.kill()
        run = self.ctx.finish(self.proc)
        raise RuntimeError(f"genrekit serve did not start: {run.text[-300:]}")

    def __exit__(self, *exc):
        os.killpg(self.proc.pid, signal.SIGINT)  # the server, not its launcher, handles it
        self.run = self.ctx.finish(self.proc)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _multipart(data: bytes, name: str, boundary: str = "faultcorpus7") -> tuple[bytes, str]:
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@case(9, "six stalled uploads (half a body, then silence) and a normal upload")
def c9_stalled(ctx, d):
    import httpx

    clip = audio_bytes(tone(4.0), format="WAV", subtype="PCM_16")
    body, ctype = _multipart(clip, "stalled.wav")
    problems = []
    with _Server(ctx, d) as srv:
        socks = []
        for _ in range(6):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
            s.sendall(f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
            socks.append(s)
        time.sleep(0.5)
        t0 = time.monotonic()
        try:
            r = httpx.post(srv.url("/api/predict"), files={"file": ("normal.wav", clip)}, timeout=60)
            took = time.monotonic() - t0
            if r.status_code != 200:
                problems.append(f"the normal upload got {r.status_code}: {r.text[:200]}")
            elif took > 15:
                problems.append(f"the normal upload waited {took:.0f} s behind stalled ones (want < 15 s)")
        except httpx.TimeoutException:
            problems.append("the normal upload got no answer in 60 s")
        for s in socks:
            s.close()
    return problems + check(srv.run, rcs=(0,))


@case(9, "a 5,000-byte multipart boundary")
def c9_boundary(ctx, d):
    import httpx

    body, ctype = _multipart(b"RIFF....", "x.wav", boundary="b" * 5000)
    with _Server(ctx, d) as srv:
        r = httpx.post(srv.url("/api/predict"), content=body, headers={"content-type": ctype}, timeout=30)
    problems = [] if r.status_code == 400 else [f"answered {r.status_code}, want 400: {r.text[:200]}"]
    return problems + check(srv.run, rcs=(0,))


@case(9, "Host: evil.example (DNS rebinding)")
def c9_host(ctx, d):
    import httpx

    problems = []
    with _Server(ctx, d) as srv:
        r = httpx.get(srv.url("/api/health"), headers={"host": "evil.example"}, timeout=30)
        if r.status_code not in (400, 421):
            problems.append(f"Host evil.example answered {r.status_code}, want 421 or 400")
        if httpx.get(srv.url("/api/health"), headers={"host": f"localhost:{srv.port}"}, timeout=30).status_code != 200:
            problems.append("Host localhost refused")
    with _Server(ctx, d, "--allowed-hosts", "evil.example") as srv2:
        if httpx.get(srv2.url("/api/health"), headers={"host": "evil.example"}, timeout=30).status_code != 200:
            problems.append("--allowed-hosts evil.example: still refused")
    return problems + check(srv.run, rcs=(0,)) + check(srv2.run, rcs=(0,))


@case(9, "an upload of float audio at 1e30")
def c9_huge(ctx, d):
    import httpx

    data = audio_bytes(np.sin(np.arange(4 * 22050) * 0.05).astype(np.float32) * np.float32(1e30),
                       format="WAV", subtype="FLOAT")
    with _Server(ctx, d) as srv:
        r = httpx.post(srv.url("/api/predict"), files={"file": ("huge.wav", data)}, timeout=60)
    problems = []
    if not 400 <= r.status_code < 500 or "huge.wav" not in r.text:
        problems.append(f"answered {r.status_code} ({r.text[:150]}), want a 4xx naming huge.wav")
    return problems + check(srv.run, rcs=(0,))


# ==================================================================================== 10 resources and exits
@case(10, "predict --jobs 64 on three files")
def c10_jobs(ctx, d):
    lib, _ = library(d, 3)
    run = ctx.cli(["predict", lib, "--jobs", "64", "--no-progress"], d)
    problems = check(run, rcs=(0,))
    limit = min(3, os.cpu_count() or 1) + 2  # the workers, plus a resource tracker or two
    if run.max_children > limit:
        problems.append(f"{run.max_children} processes besides the command (want at most {limit}: "
                        f"min(jobs, files, CPUs) workers)")
    return problems


@case(10, "tag --write with its journal on a full disk, then undo")
def c10_enospc(ctx, d):
    if not shutil.which("unshare") or subprocess.run(
            ["unshare", "-r", "-m", "true"], capture_output=True).returncode != 0:
        raise Skip("needs unshare (a private mount namespace) to mount a tiny tmpfs")
    lib, files = library(d, 12, seconds=3.0)  # their journal outgrows the one free page
    full = d / "full"
    full.mkdir()
    script = ('mount -t tmpfs -o size=8k none "$1" && head -c 4096 /dev/zero > "$1/ballast" || exit 99; '
              '"$2" -m genrekit tag "$3" --write --journal "$1/j.jsonl" --no-progress; echo "write-rc=$?"; '
              'cp "$1/j.jsonl" "$4/journal-copy.jsonl" 2>/dev/null; '
              '"$2" -m genrekit tag --undo "$1/j.jsonl"; echo "undo-rc=$?"')
    run = ctx.cli(["-r", "-m", "sh", "-c", script, "sh", full, sys.executable, lib, d], d, argv0=["unshare"])
    if run.rc == 99:
        raise Skip(f"cannot mount a tmpfs here: {run.text[-200:]}")
    problems = check(run, rcs=(0,), mention=("write-rc=1",))
    copy = d / "journal-copy.jsonl"
    if copy.is_file():
        lines = copy.read_bytes().split(b"\n")
        for i, ln in enumerate(lines[:-2]):
            try:
                json.loads(ln) if ln.strip() else None
            except ValueError:
                problems.append(f"journal line {i + 1} is damaged")
                break
    return problems + unchanged(files, " after undo")


@case(10, "beet genrekit with an item that fails")
def c10_beets(ctx, d):
    if subprocess.run([sys.executable, "-c", "import beets"], capture_output=True).returncode != 0:
        raise Skip("beets is not installed")
    lib, _ = library(d, 2)
    home = d / "bh"
    (home / "beets").mkdir(parents=True)
    (home / "beets" / "config.yaml").write_text(
        f"directory: {home / 'library'}\nlibrary: {home / 'beets' / 'library.db'}\nplugins: [genrekit]\n"
        "import:\n  copy: yes\n  write: no\n  quiet: yes\n  autotag: no\ngenrekit:\n  auto: no\n  cache: no\n")
    env = ctx.env(d, BEETSDIR=str(home / "beets"))
    beet = [sys.executable, "-m", "beets"]
    problems = check(ctx.cli(["import", "-q", lib], d, argv0=beet, env=env), rcs=(0,))
    imported = sorted(p for p in (home / "library").rglob("*") if p.is_file())
    if len(imported) != 2:
        return problems + [f"beets imported {len(imported)} files, want 2"]
    imported[0].write_bytes(imported[0].read_bytes()[:200])  # the item now fails to decode
    run = ctx.cli(["genrekit"], d, argv0=beet, env=env)
    return problems + check(run, rcs=tuple(range(1, 256)))


# ==================================================================================== 1 (more): side outputs, folders
def _bad_library(d: Path) -> Path:
    lib, _ = library(d, 1)
    (lib / "broken.wav").write_bytes(b"RIFF" + os.urandom(200))  # one input fails: an error list is due
    return lib


@case(1, "features --out beside the user's own OUT.errors.tsv")
def c1_errors_tsv(ctx, d):
    lib = _bad_library(d)
    mine = d / "table.csv.errors.tsv"
    mine.write_bytes(b"my own tab-separated notes\n")
    run = ctx.cli(["features", lib, "--out", d / "table.csv", "--quiet"], d)
    return check(run, rcs=(1,), mention=("errors.tsv",)) + unchanged({mine: b"my own tab-separated notes\n"})


@case(1, "predict --out beside the user's own OUT.partial.jsonl")
def c1_partial(ctx, d):
    lib, _ = library(d, 1)
    mine = d / "preds.json.partial.jsonl"
    mine.write_bytes(b'{"my": "log"}\n')
    run = ctx.cli(["predict", lib, "--format", "json", "--out", d / "preds.json", "--no-progress"], d)
    return check(run, rcs=(1,), mention=("partial.jsonl",)) + unchanged({mine: b'{"my": "log"}\n'})


@case(1, "embed --out over the user's own .npz")
def c1_npz(ctx, d):
    import io
    import zipfile

    lib, _ = library(d, 1)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("weights.npy", b"my arrays")
    mine = d / "vectors.npz"
    mine.write_bytes(buf.getvalue())
    run = ctx.cli(["embed", lib, "--out", mine, "--no-progress"], d)
    return check(run, rcs=(1,), mention=("vectors.npz",)) + unchanged({mine: buf.getvalue()})


@case(1, "train --out a folder of the user's own files")
def c1_run_folder(ctx, d):
    data = SRC.parents[1] / "shared" / "data" / "gtzan" / "features_30_sec.csv"
    if not data.is_file():
        raise Skip(f"needs the GTZAN feature table ({data})")
    folder = d / "thesis"
    folder.mkdir()
    mine = {folder / "metrics.json": b"my own metrics\n", folder / "report.txt": b"my own report\n"}
    for p, b in mine.items():
        p.write_bytes(b)
    run = ctx.cli(["train", "--model", "knn", "--data", data, "--protocol", "random", "--out", folder], d)
    problems = check(run, rcs=(1,), mention=("thesis",)) + unchanged(mine)
    extra = sorted(p.name for p in folder.iterdir() if p not in mine)
    return problems + ([f"written into the user's folder: {', '.join(extra)}"] if extra else [])


# ==================================================================================== 4 (more): special files in undo
@case(4, "tag --undo of a journal that names a FIFO")
def c4_undo_names_fifo(ctx, d):
    fifo = d / "song.flac"
    os.mkfifo(fifo)
    j = d / "crafted.jsonl"
    lines = [{"type": "header", "format": "genrekit-tag-journal", "version": 1, "settings": {}},
             {"type": "change", "seq": 1, "file": str(fifo), "before": {"sha256": "a" * 64, "mode": 0o644},
              "after_sha256": "b" * 64, "old": None, "new": "Rock", "patch": {"ops": [], "new_size": 0}}]
    j.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return check(ctx.cli(["tag", "--undo", j], d), rcs=(1,), mention=("song.flac",))


def _special_journal(kind: str):
    def fn(ctx, d):
        j = d / "j.jsonl"
        if kind == "fifo":
            os.mkfifo(j)
        else:
            os.symlink("/dev/zero", j)
        lib, files = library(d, 1)
        problems = check(ctx.cli(["tag", "--undo", j], d), rcs=(1,), mention=("j.jsonl",))
        problems += check(ctx.cli(["tag", lib, "--write", "--journal", j, "--no-progress"], d), rcs=(1,),
                          mention=("j.jsonl",))
        return problems + unchanged(files)
    return fn


case(4, "tag --undo / --journal given a FIFO as the journal")(_special_journal("fifo"))
case(4, "tag --undo / --journal given a link to /dev/zero as the journal")(_special_journal("zero"))
