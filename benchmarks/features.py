"""genrekit.features against librosa called the usual way, on the real GTZAN clips, in one run.

(a) genrekit: ``audio.load`` + ``features.extract`` (one STFT shared by all 57 features);
(b) reference: ``librosa.load`` then chroma_stft, rms, spectral_centroid, spectral_bandwidth,
    spectral_rolloff, zero_crossing_rate, effects.hpss, beat.beat_track and mfcc, each from ``y``,
    as GTZAN notebooks (and the Kaggle table's author) do.
Both run in this process, alternating clip by clip, after one warm-up call each (librosa's numba
compilation is reported separately, as part of its cold start). BLAS is limited to one thread for
both (what genrekit's workers do; threaded BLAS is slower on a busy machine for either).

Also measured: cold start of ``genrekit features one_clip.flac --out x.csv --no-cache`` as a fresh
process, and peak RSS of the same command on a synthesised 10-minute file.

    .venv/bin/python benchmarks/features.py [--limit N] [--no-reference] [--no-cold] [--no-memory]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from genrekit.run import engines  # noqa: E402

engines.limit_blas_threads(1)

import numpy as np  # noqa: E402

from genrekit import audio, features  # noqa: E402
from genrekit.datasets import shared_root  # noqa: E402

GENREKIT = [sys.executable, "-m", "genrekit"]


def reference(path: str) -> dict[str, float]:
    """The 57 features the usual librosa way: every call recomputes its own STFT from y."""
    import librosa

    y, sr = librosa.load(path)
    out: dict[str, float] = {}
    named = [
        ("chroma_stft", librosa.feature.chroma_stft(y=y, sr=sr)),
        ("rms", librosa.feature.rms(y=y)),
        ("spectral_centroid", librosa.feature.spectral_centroid(y=y, sr=sr)),
        ("spectral_bandwidth", librosa.feature.spectral_bandwidth(y=y, sr=sr)),
        ("rolloff", librosa.feature.spectral_rolloff(y=y, sr=sr)),
        ("zero_crossing_rate", librosa.feature.zero_crossing_rate(y)),
    ]
    harmony, perceptr = librosa.effects.hpss(y)
    named += [("harmony", harmony), ("perceptr", perceptr)]
    for name, v in named:
        out[f"{name}_mean"], out[f"{name}_var"] = float(np.mean(v)), float(np.var(v))
    t, _ = librosa.beat.beat_track(y=y, sr=sr)
    out["tempo"] = float(np.atleast_1d(t)[0])
    m = librosa.feature.mfcc(y=y, sr=sr)
    for i in range(20):
        out[f"mfcc{i + 1}_mean"], out[f"mfcc{i + 1}_var"] = float(m[i].mean()), float(m[i].var())
    return out


def ours(path: str) -> dict[str, float]:
    return features.extract(audio.load(path))


def timed(fn, *a):
    t = time.perf_counter()
    fn(*a)
    return time.perf_counter() - t


def cold_start(clip: Path, runs: int = 3) -> list[float]:
    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(runs):
            t = time.perf_counter()
            r = subprocess.run([*GENREKIT, "features", str(clip), "--out", f"{tmp}/x.csv", "--no-cache", "-q"],
                               capture_output=True, text=True)
            walls.append(time.perf_counter() - t)
            if r.returncode != 0:
                raise SystemExit(f"cold start run failed: {r.stderr}")
    return walls


def librosa_cold(clip: Path) -> float:
    code = f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import features as b; b.reference({str(clip)!r})"
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - t


def peak_rss_long(minutes: float = 10.0) -> tuple[float, float]:
    """Peak RSS (MB) and wall time of `genrekit features` on a synthesised file of ``minutes``."""
    import soundfile as sf

    sr = 22050
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.wav"
        n = int(minutes * 60 * sr)
        with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
            block = 60 * sr
            for s in range(0, n, block):
                t = np.arange(s, min(n, s + block)) / sr
                beat = (np.sin(2 * np.pi * 2.0 * t) > 0.95) * rng.standard_normal(t.size) * 0.3
                f.write((0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size) + beat).astype(np.float32))
        t0 = time.perf_counter()
        proc = subprocess.Popen([*GENREKIT, "features", str(path), "--out", f"{tmp}/x.csv", "--no-cache", "-q"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"long-file run failed: {proc.stderr.read().decode()}")
        return usage.ru_maxrss / 1024.0, wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="only the first N clips (sorted)")
    ap.add_argument("--no-reference", action="store_true", help="skip librosa (genrekit timings only)")
    ap.add_argument("--no-cold", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    args = ap.parse_args(argv)

    gtzan = shared_root()
    if gtzan is None:
        print("benchmark needs ../shared/data/gtzan (set GENREKIT_SHARED)", file=sys.stderr)
        return 1
    clips = sorted(p for p in (gtzan / "audio").rglob("*") if p.suffix.lower() in {".flac", ".au", ".mp3", ".wav"})
    clips = clips[: args.limit] if args.limit else clips
    print(f"{len(clips)} clips; machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; BLAS 1 thread")

    first = str(clips[0])
    warm_ours = timed(ours, first)
    print(f"warm-up genrekit: {warm_ours:.3f} s")
    if not args.no_reference:
        warm_ref = timed(reference, first)
        print(f"warm-up librosa (includes numba compilation in this process): {warm_ref:.3f} s")

    rows = []
    print(f"{'clip':<22} {'genrekit_s':>10} {'librosa_s':>10} {'ratio':>7}")
    for c in clips:
        a = timed(ours, str(c))
        b = timed(reference, str(c)) if not args.no_reference else float("nan")
        rows.append((c.name, a, b))
        print(f"{c.name:<22} {a:10.4f} {b:10.4f} {b / a:7.1f}")
    g = [r[1] for r in rows]
    print(f"\ngenrekit per clip: median {statistics.median(g) * 1000:.1f} ms, mean {statistics.mean(g) * 1000:.1f} ms")
    if not args.no_reference:
        ref = [r[2] for r in rows]
        ratios = [r[2] / r[1] for r in rows]
        print(f"librosa  per clip: median {statistics.median(ref) * 1000:.1f} ms, mean {statistics.mean(ref) * 1000:.1f} ms")
        print(f"speed-up: {sum(ref) / sum(g):.1f}x on total time, median per-clip ratio {statistics.median(ratios):.1f}x "
              f"(min {min(ratios):.1f}x, max {max(ratios):.1f}x)")

    if not args.no_cold:
        walls = cold_start(clips[0])
        print(f"\ncold start `genrekit features {clips[0].name} --out x.csv --no-cache` (fresh process): "
              + ", ".join(f"{w:.2f}" for w in walls) + f" s (median {statistics.median(walls):.2f} s)")
        if not args.no_reference:
            print(f"cold start librosa reference (fresh process: import + numba compile + one clip): "
                  f"{librosa_cold(clips[0]):.2f} s")
    if not args.no_memory:
        rss, wall = peak_rss_long(10.0)
        print(f"\n10-minute synthesised file: peak RSS {rss:.0f} MB, wall {wall:.2f} s "
              f"(`genrekit features long.wav --no-cache`, fresh process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
