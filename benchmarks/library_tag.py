"""Measure `genrekit tag` (prints; asserts nothing).

    python benchmarks/library_tag.py [--data ../shared/data/gtzan/audio] [--n 100]

Builds a library of ``--n`` files in a temporary folder (GTZAN clips re-encoded round-robin to mp3,
flac, ogg and m4a with PyAV / soundfile, each with a title and a cover picture), then times, as fresh
processes: the dry run (classification, cold cache), ``--write --overwrite`` (predictions now cached:
this is the cost of the safe rewrite itself), and ``--undo``; and reports the journal's size against
the library's, and whether undo gave back every byte.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def encode(y: np.ndarray, sr: int, fmt: str) -> bytes:
    import av
    import soundfile as sf

    if fmt in ("flac", "ogg"):
        buf = io.BytesIO()
        sf.write(buf, y, sr, format=fmt.upper(), subtype="VORBIS" if fmt == "ogg" else None)
        return buf.getvalue()
    codec, container = {"mp3": ("mp3", "mp3"), "m4a": ("aac", "mp4")}[fmt]
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        s = out.add_stream(codec, rate=sr)
        s.layout = "mono"
        frame = av.AudioFrame.from_ndarray(y[None, :].astype(np.float32), format="fltp", layout="mono")
        frame.sample_rate = sr
        for pkt in [*s.encode(frame), *s.encode(None)]:
            out.mux(pkt)
    return buf.getvalue()


def add_tags(path: Path, title: str, art: bytes) -> None:
    import mutagen
    from mutagen.flac import Picture
    from mutagen.id3 import APIC, ID3, TIT2
    from mutagen.mp4 import MP4Cover

    if path.suffix == ".mp3":
        t = ID3()
        t.add(TIT2(encoding=3, text=title))
        t.add(APIC(encoding=3, mime="image/png", type=3, desc="cover", data=art))
        t.save(path)
        return
    f = mutagen.File(path)
    if f.tags is None:
        f.add_tags()
    if path.suffix == ".m4a":
        f.tags["\xa9nam"] = [title]
        f.tags["covr"] = [MP4Cover(art, imageformat=MP4Cover.FORMAT_PNG)]
    else:
        f.tags["TITLE"] = title
        pic = Picture()
        pic.type, pic.mime, pic.data = 3, "image/png", art
        if path.suffix == ".flac":
            f.add_picture(pic)
        else:
            import base64

            f.tags["METADATA_BLOCK_PICTURE"] = [base64.b64encode(pic.write()).decode()]
    f.save()


def build(root: Path, data: Path, n: int) -> list[Path]:
    import av
    from PIL import Image

    clips = sorted(data.glob("*/*.flac"))[:n]
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(buf, "PNG")
    art = buf.getvalue()  # a 270 kB cover
    files = []
    for i in range(n):
        clip = clips[i % len(clips)]
        with av.open(str(clip)) as c:
            sr = c.streams.audio[0].sample_rate
            frames = [f.to_ndarray() for f in c.decode(audio=0)]
        # PyAV hands a 16-bit FLAC's integer samples: scale to full scale, or the copies are 90 dB too loud
        scale = float(np.iinfo(frames[0].dtype).max + 1) if np.issubdtype(frames[0].dtype, np.integer) else 1.0
        y = (np.concatenate([f.mean(axis=0) for f in frames]) / scale).astype(np.float32)
        fmt = ("mp3", "flac", "ogg", "m4a")[i % 4]
        p = root / f"{i:03d}-{clip.stem}.{fmt}"
        p.write_bytes(encode(y, sr, fmt))
        add_tags(p, clip.stem, art)
        files.append(p)
    return files


def run(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr[-2000:], file=sys.stderr)
    return time.perf_counter() - t


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "gtzan" / "audio"))
    p.add_argument("--n", type=int, default=100)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lib = tmp / "lib"
        lib.mkdir()
        t = time.perf_counter()
        files = build(lib, Path(args.data), args.n)
        size = sum(f.stat().st_size for f in files)
        print(f"library: {len(files)} files, {size / 1e6:.1f} MB, built in {time.perf_counter() - t:.1f} s")
        digests = {f: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp / "cache"), "XDG_STATE_HOME": str(tmp / "state"),
               "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        tag = [sys.executable, "-m", "genrekit", "tag", str(lib), "--no-progress", "--format", "json"]
        dry = run(tag, env)
        print(f"dry run (classify {len(files)} files, cold cache): {dry:.1f} s, {dry / len(files) * 1000:.0f} ms/file")
        journal = tmp / "journal.jsonl"
        wr = run(tag + ["--write", "--overwrite", "--journal", str(journal)], env)
        print(f"--write --overwrite (predictions cached): {wr:.1f} s, {wr / len(files) * 1000:.0f} ms/file "
              "(read, verify audio packets and tags, journal, fsync, atomic rename)")
        print(f"journal: {journal.stat().st_size / 1e3:.0f} kB for {size / 1e6:.1f} MB of files "
              f"({100 * journal.stat().st_size / size:.2f} %)")
        un = run([sys.executable, "-m", "genrekit", "tag", "--undo", str(journal)], env)
        same = sum(hashlib.sha256(f.read_bytes()).hexdigest() == digests[f] for f in files)
        print(f"--undo: {un:.1f} s; byte-identical afterwards: {same} of {len(files)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
