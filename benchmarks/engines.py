"""Local scaling: `genrekit predict` and `genrekit features` with the local engine (--jobs 1, 2) and with
Ray (a private local instance), wall-clock per command, printed as a Markdown table.

    python benchmarks/engines.py [--audio ../shared/data/gtzan/audio] [--model M.safetensors] [--repeat 1]

Each run is the full command in a fresh process (start-up, model load and Ray start included), as a user
would see it. Features run with --no-cache so every run computes. Without --model, the shipped model is
used when it is installed, else a tiny CNN (2 epochs on random log-mels) is trained into a temp folder:
the table then says so, since a bigger model shifts the balance towards compute.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def tiny_model(path: Path) -> Path:
    import numpy as np

    from genrekit.models.deep import DeepModel

    rng = np.random.default_rng(0)
    X = rng.standard_normal((24, 128, 130)).astype(np.float32)
    y = np.array(["blues", "metal"] * 12)
    m = DeepModel("cnn", epochs=2, batch_size=8, verbose=False, device="cpu", augment="none")
    m.fit(X, y)
    m.save(path)
    return path


def timed(cmd: list[str]) -> tuple[float, int]:
    t = time.perf_counter()
    rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    return time.perf_counter() - t, rc


def main() -> int:
    root = Path(__file__).resolve().parents[1]
    shared = Path(os.environ.get("GENREKIT_SHARED", root.parent / "shared"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--audio", default=str(shared / "data" / "gtzan" / "audio"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    audio = Path(args.audio)
    if not audio.is_dir():
        print(f"{audio}: not found (set GENREKIT_SHARED or --audio)", file=sys.stderr)
        return 1
    from genrekit.audio import find_audio

    n = len(find_audio([audio])[0])
    tmp = Path(tempfile.mkdtemp(prefix="genrekit-bench-"))
    model = args.model
    if model is None:
        try:
            from genrekit.predict import default_model_path

            model, model_name = str(default_model_path()), "shipped model"
        except Exception:  # noqa: BLE001 - not built yet: fall back to a tiny one
            model, model_name = str(tiny_model(tmp / "tiny.safetensors")), "tiny CNN (2 epochs, random data)"
    else:
        model_name = model
    gk = [sys.executable, "-m", "genrekit"]
    runs = [
        ("predict", "local", "--jobs 1", [*gk, "predict", str(audio), "--model", model, "--no-progress", "--jobs", "1",
                                          "--format", "csv", "--out", str(tmp / "p1.csv")]),
        ("predict", "local", "--jobs 2", [*gk, "predict", str(audio), "--model", model, "--no-progress", "--jobs", "2",
                                          "--format", "csv", "--out", str(tmp / "p2.csv")]),
        ("predict", "ray", "2 CPUs", [*gk, "predict", str(audio), "--model", model, "--no-progress", "--engine", "ray",
                                      "--format", "csv", "--out", str(tmp / "pr.csv")]),
        ("features", "local", "--jobs 1", [*gk, "features", str(audio), "--no-cache", "-q", "--jobs", "1",
                                           "--out", str(tmp / "f1.csv")]),
        ("features", "local", "--jobs 2", [*gk, "features", str(audio), "--no-cache", "-q", "--jobs", "2",
                                           "--out", str(tmp / "f2.csv")]),
        ("features", "ray", "2 CPUs", [*gk, "features", str(audio), "--no-cache", "-q", "--engine", "ray",
                                       "--jobs", "2", "--out", str(tmp / "fr.csv")]),
    ]
    print(f"{n} files under {audio}; model for predict: {model_name}; {os.cpu_count()} CPUs; "
          f"load average before: {os.getloadavg()[0]:.1f}")
    print(f"| command | engine | workers | wall s (best of {args.repeat}) | files/s | exit |")
    print("|---|---|---|---:|---:|---:|")
    for what, engine, workers, cmd in runs:
        best, rc = min(timed(cmd) for _ in range(max(1, args.repeat)))
        print(f"| {what} | {engine} | {workers} | {best:.1f} | {n / best:.2f} | {rc} |", flush=True)
    same_p = (tmp / "p1.csv").read_bytes() == (tmp / "p2.csv").read_bytes() == (tmp / "pr.csv").read_bytes()
    same_f = (tmp / "f1.csv").read_bytes() == (tmp / "f2.csv").read_bytes() == (tmp / "fr.csv").read_bytes()
    print(f"outputs identical across engines: predict {same_p}, features {same_f}; load average after: "
          f"{os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
