"""Measure prediction speed and memory (prints; asserts nothing).

    python benchmarks/predict.py [--model M] [--patches N|all] [--no-styles] [--data ../shared/data/gtzan/audio]
                                 [--skip-folder] [--skip-torch]

- throughput: `genrekit predict DIR --format json` over a folder as a fresh process, jobs 1 and 2
  (wall time includes start-up and model load; clips/s = files / wall), and warm (workers started first);
- warm latency in-process: one 30 s clip, a 5-minute file (synthesised by concatenating real clips) and a
  4-minute 44.1 kHz stereo mp3 (8 real-world clips from ../shared/data/realworld, the format of a real song);
- cold start: `genrekit predict one.mp3` as a fresh process;
- peak RSS: `genrekit predict` of a 10-minute file as a fresh process;
- torch vs the default onnxruntime backend: top-1 agreement and the largest score difference over the folder.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GENREKIT = [sys.executable, "-m", "genrekit"]


# The command runs under a small launcher process: a child forked from this (large) process would count
# this process's pages in its peak RSS until it execs, so the peak would be ours, not the command's.
LAUNCHER = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL); "
            "_, st, ru = os.wait4(p.pid, 0); print(os.waitstatus_to_exitcode(st), ru.ru_maxrss)")


def run_child(cmd: list[str]) -> tuple[float, int, int]:
    """(wall seconds, exit code, peak RSS in MB) of a fresh process (the launcher's start-up included
    in the wall time: ~35 ms)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", LAUNCHER, *cmd], capture_output=True)
    wall = time.perf_counter() - t0
    rc, rss_kb = (int(v) for v in proc.stdout.split())
    if rc not in (0, 1):
        print(proc.stderr.decode(errors="replace")[-2000:], file=sys.stderr)
    return wall, rc, rss_kb // 1024


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model file (default: the shipped model)")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "gtzan" / "audio"))
    p.add_argument("--skip-folder", action="store_true", help="skip the folder throughput runs")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--patches", default=None, metavar="N|all",
                   help="musicnn patches per 30 s block, as `genrekit predict --patches` (default: the model's own)")
    p.add_argument("--no-styles", action="store_true", help="as `genrekit predict --no-styles` (no mn04 pass "
                   "for styles; a model whose members read mn04 still runs it)")
    p.add_argument("--skip-torch", action="store_true", help="skip the torch-backend agreement check")
    args = p.parse_args()
    styles = not args.no_styles

    import soundfile as sf

    from genrekit import audio
    from genrekit.predict import GenreClassifier

    model_args = ((["--model", args.model] if args.model else []) + (["--patches", args.patches] if args.patches else [])
                  + ([] if styles else ["--no-styles"]))
    data = Path(args.data)
    files = sorted(map(Path, audio.find_audio([data])[0]))
    print(f"genrekit predict benchmark: model {args.model or 'shipped default'}"
          f"{f', --patches {args.patches}' if args.patches else ''}{'' if styles else ', --no-styles'}, {len(files)} clips in {data}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

    if not args.skip_folder:
        for jobs in (1, 2):
            wall, rc, rss = run_child([*GENREKIT, "predict", str(data), "--format", "json", "--jobs", str(jobs),
                                       "--no-progress", *model_args])
            print(f"folder, jobs {jobs}: {len(files)} clips in {wall:.1f} s = {len(files) / wall:.1f} clips/s "
                  f"(fresh process, start-up and model load included; exit {rc}, peak RSS {rss} MB)")

    # warm throughput: worker processes started and their model loaded before the clock starts
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from genrekit.run.predict import PredictTask

    task = PredictTask(model=args.model, top_k=3, segments=False, patches_per_block=args.patches, styles=styles)  # what `genrekit predict` runs (default backend)
    for jobs in (1, 2):
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("forkserver"), initializer=task.classifier) as ex:
            list(ex.map(task, [str(f) for f in files[:jobs * 2]]))
            t0 = time.perf_counter()
            recs = list(ex.map(task, [str(f) for f in files]))
            wall = time.perf_counter() - t0
        bad = sum(r["error"] is not None for r in recs)
        print(f"warm throughput, jobs {jobs}: {len(files) / wall:.1f} clips/s ({len(files)} clips in {wall:.1f} s, "
              f"{bad} errors)")

    clf = GenreClassifier.load(args.model, patches_per_block=args.patches)
    clip = next((f for f in files if f.suffix == ".flac"), files[0])
    clf.predict(clip, styles=styles)
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        clf.predict(clip, styles=styles)
        times.append(time.perf_counter() - t0)
    print(f"warm latency, 30 s clip ({clip.name}): median {1000 * statistics.median(times):.0f} ms over {args.repeat}")

    if not args.skip_torch:
        torch_clf = GenreClassifier.load(args.model, backend="torch", patches_per_block=args.patches)
        agree, diff = 0, 0.0
        for f in files:
            a, b = clf.predict(f, styles=False), torch_clf.predict(f, styles=False)
            agree += a.genre == b.genre
            diff = max(diff, max(abs(a.scores[g] - b.scores[g]) for g in a.scores))
        print(f"default backend ({clf.backend}) vs torch: same top-1 on {agree}/{len(files)} clips, "
              f"max score difference {diff:.1e}")

    with tempfile.TemporaryDirectory() as d:
        y = np.concatenate([audio.load(f) for f in files[:10]])  # 10 real clips = 5 minutes
        five = Path(d) / "five-minutes.flac"
        sf.write(str(five), y, audio.SR)
        t0 = time.perf_counter()
        r = clf.predict(five, styles=styles)
        print(f"warm latency, 5-minute file: {time.perf_counter() - t0:.2f} s ({len(r.segments)} windows)")
        real = sorted((Path(args.data).parents[1] / "realworld").glob("**/*.mp3"))[:8]
        if len(real) == 8:
            song = Path(d) / "four-minutes.mp3"
            sf.write(str(song), np.concatenate([sf.read(str(f), dtype="float32")[0] for f in real]), 44100,
                     format="MP3")
            clf.predict(song, styles=styles)
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                r = clf.predict(song, styles=styles)
                times.append(time.perf_counter() - t0)
            print(f"warm latency, 4-minute 44.1 kHz stereo mp3 ({r.duration:.0f} s): median "
                  f"{statistics.median(times):.2f} s over 3 (runs: {', '.join(f'{t:.2f}' for t in times)})")
        else:
            print("4-minute mp3: skipped (needs 8 mp3s under ../shared/data/realworld)")
        ten = Path(d) / "ten-minutes.flac"
        sf.write(str(ten), np.concatenate([y, y]), audio.SR)
        wall, rc, rss = run_child([*GENREKIT, "predict", str(ten), "--format", "json", "--no-progress", *model_args])
        print(f"10-minute file as a fresh process: {wall:.1f} s, peak RSS {rss} MB (exit {rc})")
        mp3 = next((f for f in files if f.suffix == ".mp3"), clip)
        colds = [run_child([*GENREKIT, "predict", str(mp3), "--no-progress", *model_args])[0] for _ in range(3)]
        print(f"cold start, `genrekit predict {mp3.name}` as a fresh process: median {statistics.median(colds):.2f} s "
              f"(runs: {', '.join(f'{c:.2f}' for c in colds)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
