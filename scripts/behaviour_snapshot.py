"""Record what genrekit's commands write, so a restructuring can be checked for "no change in behaviour".

    python scripts/behaviour_snapshot.py record OUT_DIR        # run every case, keep normalised outputs
    python scripts/behaviour_snapshot.py compare OLD_DIR NEW_DIR

Each case runs the real CLI (``python -m genrekit``) in a fresh cache and state folder on a few of the shared
GTZAN clips (../shared, or $GENREKIT_SHARED). Outputs are kept byte for byte, except that the temporary
folder's path becomes ``<TMP>`` and JSON keys that hold wall time or the machine are dropped (listed in
``VOLATILE``); arrays (npz, Parquet, safetensors) are compared value for value. ``compare`` prints every file
that differs and exits 1 if any does.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

VOLATILE = {"seconds", "train_seconds", "machine", "cpu_count", "created", "elapsed", "timestamp",
            "started", "finished", "wall_seconds", "time", "date", "fit_seconds", "cpu_seconds", "mtime_ns", "updated"}
SKOPS_IDS = {"__id__", "file"}  # a skops schema names its members by object id
TIMED_STDOUT = {"compare"}  # its table has a seconds column; comparison.json is kept instead
CLIPS = ["blues/blues.00099.mp3", "classical/classical.00099.mp3", "metal/metal.00099.mp3",
         "reggae/reggae.00099.mp3", "hiphop/hiphop.00099.mp3", "jazz/jazz.00099.mp3"]


def shared_gtzan() -> Path:
    base = Path(os.environ.get("GENREKIT_SHARED") or Path(__file__).resolve().parents[2] / "shared")
    return base / "data" / "gtzan"


def clips(gtzan: Path) -> list[Path]:
    """The six clips, or the first file of each genre folder when a name is missing."""
    out = []
    for rel in CLIPS:
        p = gtzan / "audio" / rel
        if not p.exists():
            p = sorted((gtzan / "audio" / rel.split("/")[0]).iterdir())[0]
        out.append(p)
    return out


def cases(lib: Path, tmp: Path, gtzan: Path) -> list[tuple[str, list[str], list[str]]]:
    """(name, argv after ``genrekit``, output files to keep besides stdout)."""
    files = [str(p) for p in sorted(lib.iterdir())]
    two = files[:2]
    csv = str(gtzan / "features_30_sec.csv")
    o = str(tmp / "o")
    return [
        ("predict-table", ["predict", *files, "--no-progress"], []),
        ("predict-json-j2", ["predict", *files, "--format", "json", "--jobs", "2", "--no-progress"], []),
        ("predict-csv", ["predict", *files, "--format", "csv", "--no-progress"], []),
        ("predict-segments", ["predict", *two, "--format", "json", "--segments", "--no-progress"], []),
        ("predict-fast", ["predict", *files, "--model", "genrekit-gtzan-fast", "--format", "json",
                          "--segments", "--no-progress"], []),
        ("predict-fast-j2", ["predict", str(lib), "--model", "genrekit-gtzan-fast", "--format", "csv",
                             "--jobs", "2", "--no-progress"], []),
        ("predict-out-json", ["predict", str(lib), "--format", "json", "--out", o + "/p.json", "--no-progress"],
         ["o/p.json"]),
        ("predict-parquet", ["predict", str(lib), "--out", o + "/pq/", "--no-progress"], ["o/pq"]),
        ("tags", ["tags", *files, "--format", "json", "--no-progress"], []),
        ("tags-segments", ["tags", *two, "--format", "json", "--segments", "--no-progress"], []),
        ("embed-npz", ["embed", *two, "--out", o + "/e.npz", "--no-progress"], ["o/e.npz"]),
        ("embed-csv", ["embed", *two, "--out", o + "/e.csv", "--per-window", "--layers", "taggram",
                       "--no-progress"], ["o/e.csv"]),
        ("features", ["features", str(lib), "--out", o + "/f.csv", "--jobs", "2", "--quiet"], ["o/f.csv"]),
        ("features-3s", ["features", *two, "--out", o + "/f3.csv", "--segment", "3", "--extended", "--quiet"],
         ["o/f3.csv"]),
        ("info", ["info", str(lib)], []),
        ("train", ["train", "--model", "logreg", "--data", csv, "--protocol", "fault-filtered",
                   "--out", o + "/train", "--no-progress"], ["o/train/metrics.json", "o/train/model.safetensors"]),
        ("compare", ["compare", "--data", csv, "--protocol", "fault-filtered", "--models", "logreg,knn",
                     "--out", o + "/cmp", "--no-progress"], ["o/cmp/comparison.json"]),
        ("evaluate", ["evaluate", "--model", o + "/train/model.safetensors", "--data", str(gtzan),
                      "--out", o + "/eval"], ["o/eval/metrics.json"]),
        ("finetune", ["finetune", "--data", str(tmp / "labelled"), "--out", o + "/ft", "--epochs", "1",
                      "--threads", "1", "--no-progress"], ["o/ft/metrics.json", "o/ft/model.safetensors"]),
        ("finetune-head", ["finetune", "--data", str(tmp / "labelled"), "--out", o + "/fth", "--head", "logreg",
                           "--no-progress"], ["o/fth/metrics.json", "o/fth/model.safetensors"]),
        ("tag-dry", ["tag", str(lib), "--format", "json", "--no-progress"], []),
        ("tag-write", ["tag", str(lib), "--write", "--journal", o + "/j.jsonl", "--format", "json",
                       "--no-progress"], ["lib"]),
        ("tag-undo", ["tag", "--undo", o + "/j.jsonl"], ["lib"]),
        ("playlists", ["playlists", str(lib), "--out", o + "/pl", "--no-progress"], ["o/pl"]),
        ("similar", ["similar", files[0], "--library", str(lib), "-k", "3", "--format", "json",
                     "--index", o + "/idx", "--no-progress"], []),
    ]


def _strip(obj, drop=VOLATILE):
    if isinstance(obj, dict):
        return {k: _strip(v, drop) for k, v in obj.items() if k not in drop}
    if isinstance(obj, list):
        return [_strip(v, drop) for v in obj]
    return obj


def _drop_file_digests(obj):
    """A model file's sha256 inside a report changes with its skops zip's object ids: drop it there."""
    if isinstance(obj, dict):
        return {k: _drop_file_digests(v) for k, v in obj.items()
                if not (k == "sha256" and "path" in obj)}
    if isinstance(obj, list):
        return [_drop_file_digests(v) for v in obj]
    return obj


def normalise_text(text: str, tmp: Path) -> str:
    text = text.replace(str(tmp), "<TMP>")
    text = re.sub(r"/tmp/tmp[\w]+", "<TMPDIR>", text)  # a run's own scratch folder (finetune's init_from)
    try:
        return json.dumps(_drop_file_digests(_strip(json.loads(text))), indent=1, sort_keys=True) + "\n"
    except ValueError:
        pass
    lines = []
    for line in text.splitlines():
        try:  # JSON lines (journals)
            lines.append(json.dumps(_strip(json.loads(line)), sort_keys=True))
        except ValueError:
            lines.append(line)
    return "\n".join(lines) + "\n"


def array_digest(arrays: dict, tmp: Path) -> str:
    """Digest of named arrays; text arrays with the temporary folder's path normalised, and a skops zip
    (a model file's sklearn part) by its members' bytes, since the zip stores the time it was written."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        if a.dtype.kind in "US":
            a = np.char.replace(a.astype(str), str(tmp), "<TMP>")
        if k == "skops":
            import io
            import zipfile
            with zipfile.ZipFile(io.BytesIO(a.tobytes())) as z:
                # members are named by object id: keep their order and bytes, not their names
                parts = [json.dumps(_strip(json.loads(z.read(n)), SKOPS_IDS), sort_keys=True).encode()
                         if n.endswith(".json") else z.read(n) for n in z.namelist()]
                a = np.frombuffer(b"".join(parts), np.uint8)
        h.update(k.encode() + str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes() if a.dtype != object else repr(a.tolist()).encode())
    return h.hexdigest()


def normalise_file(p: Path, tmp: Path) -> str:
    """A text form of one output file: normalised text, or a digest of its arrays."""
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            return "arrays " + array_digest({k: z[k] for k in z.files}, tmp) + "\n"
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq
        rows = pq.read_table(p).to_pylist()
        return normalise_text(json.dumps(rows, default=str), tmp)
    if p.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.numpy import load_file
        with safe_open(str(p), "np") as f:
            meta = f.metadata() or {}
        # the digests cover the metadata's wall times too; the metadata itself is compared key by key
        meta = {k: normalise_text(v, tmp) for k, v in meta.items() if k not in ("sha256", "sha256_meta")}
        return json.dumps(meta, sort_keys=True, indent=1) + "\narrays " + array_digest(load_file(str(p)), tmp) + "\n"
    data = p.read_bytes()
    if p.suffix in {".mp3", ".wav", ".flac", ".ogg", ".m4a", ".png"}:
        return "sha256 " + hashlib.sha256(data).hexdigest() + "\n"
    return normalise_text(data.decode("utf-8", "surrogateescape"), tmp)


def record(out: Path, *, only: set[str] | None = None) -> None:
    gtzan = shared_gtzan()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gk-snap-") as t:
        tmp = Path(t)
        lib = tmp / "lib"
        lib.mkdir()
        for p in clips(gtzan):
            shutil.copyfile(p, lib / p.name)
            os.chmod(lib / p.name, 0o644)
        (tmp / "o").mkdir()
        for i, p in enumerate(sorted(lib.iterdir())):  # two labels, three clips each, for finetune
            (tmp / "labelled" / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, tmp / "labelled" / "ab"[i % 2] / p.name)
        env = dict(os.environ, XDG_CACHE_HOME=str(tmp / "cache"), XDG_STATE_HOME=str(tmp / "state"),
                   PYTHONHASHSEED="0", COLUMNS="120")
        for name, argv, keep in cases(lib, tmp, gtzan):
            if only and name not in only:
                continue
            r = subprocess.run([sys.executable, "-m", "genrekit", *argv], capture_output=True, env=env,
                               cwd=tmp, timeout=1800)
            d = out / name
            d.mkdir(exist_ok=True)
            (d / "exit").write_text(f"{r.returncode}\n")
            if name not in TIMED_STDOUT:
                (d / "stdout").write_text(normalise_text(r.stdout.decode("utf-8", "surrogateescape"), tmp))
            for rel in keep:
                src = tmp / rel
                for f in sorted([src] if src.is_file() else src.rglob("*") if src.exists() else []):
                    if f.is_file():
                        name_f = str(f.relative_to(tmp)).replace("/", "__")
                        (d / name_f).write_text(normalise_file(f, tmp))
            print(f"{name:18s} exit {r.returncode}", flush=True)
            if r.returncode not in (0, 1):
                print(r.stderr.decode(errors="replace")[-2000:], file=sys.stderr)


def compare(a: Path, b: Path) -> int:
    names = sorted({str(p.relative_to(a)) for p in a.rglob("*") if p.is_file()}
                   | {str(p.relative_to(b)) for p in b.rglob("*") if p.is_file()})
    bad = 0
    for n in names:
        pa, pb = a / n, b / n
        if not pa.exists() or not pb.exists():
            print(f"only in {'new' if pb.exists() else 'old'}: {n}")
            bad += 1
        elif pa.read_bytes() != pb.read_bytes():
            print(f"differs: {n}")
            bad += 1
    print(f"{len(names)} files, {bad} differ")
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("out", type=Path)
    r.add_argument("--only", help="comma-separated case names")
    c = sub.add_parser("compare")
    c.add_argument("old", type=Path)
    c.add_argument("new", type=Path)
    args = ap.parse_args()
    if args.cmd == "record":
        record(args.out, only=set(args.only.split(",")) if args.only else None)
        return 0
    return compare(args.old, args.new)


if __name__ == "__main__":
    sys.exit(main())
