"""Load benchmark of `genrekit serve`: N concurrent uploads on loopback; throughput, latency, server RSS.

Starts the real server (``python -m genrekit serve``) in a subprocess, warms it up, then sends
``--uploads`` POST /api/predict requests of one clip with ``--concurrency`` in flight (stopping early
after ``--max-seconds``), and prints throughput, p50/p95/max latency, errors and the server's RSS
(VmRSS from /proc) at start-up, after the warm-up and at the end, plus its peak (VmHWM).

    python benchmarks/serve.py                          # shipped model if present, else a tiny one
    python benchmarks/serve.py --model tiny --uploads 200 --concurrency 8
    python benchmarks/serve.py --model src/genrekit/pretrained/genrekit-gtzan-default.safetensors

Targets (issue 7): 200 uploads of a 30 s clip at concurrency 8 on 2 cores: no errors, p95 <= 2 s,
RSS growth <= 50 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "src" / "genrekit" / "pretrained" / "genrekit-gtzan-default.safetensors"


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process from /proc (MB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def tiny_model(path: Path) -> Path:
    """A one-epoch CNN on random log-mel slices: exercises the full path at minimal model cost."""
    from genrekit import GENRES
    from genrekit.models.deep import DeepModel

    rng = np.random.default_rng(0)
    X = rng.random((40, 128, 130), dtype=np.float32)
    y = np.array([GENRES[i % 2] for i in range(40)])
    m = DeepModel("cnn-bn", epochs=1, batch_size=16, verbose=False, device="cpu", threads=2)
    m.fit(X, y)
    return m.save(path)


def clip_bytes(clip: str | None, seconds: float) -> tuple[bytes, str]:
    """The upload: a given file, a real GTZAN clip when ../shared is present, else a synthesised one."""
    if clip:
        return Path(clip).read_bytes(), Path(clip).name
    from genrekit.datasets import shared_root

    root = shared_root()
    if root is not None:
        real = sorted((root / "audio" / "rock").glob("rock.000*.*"))
        if real:
            return real[0].read_bytes(), real[0].name
    import soundfile as sf

    sr = 22050
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(0)
    y = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t)) + 0.05 * rng.standard_normal(t.size)
    buf = io.BytesIO()
    sf.write(buf, y.astype(np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue(), f"synth_{seconds:g}s.wav"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_load(url: str, data: bytes, name: str, *, uploads: int, concurrency: int, max_seconds: float,
                   params: dict, pid: int | None = None, trace_every: int = 50,
                   ) -> tuple[list[float], list[str], float, list[float]]:
    """Send ``uploads`` requests with ``concurrency`` in flight; sample the server's RSS every ``trace_every``."""
    import httpx

    latencies: list[float] = []
    trace: list[float] = []
    errors: list[str] = []
    next_i = 0
    t_end = time.perf_counter() + max_seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_i
        while next_i < uploads and time.perf_counter() < t_end:
            next_i += 1
            t0 = time.perf_counter()
            try:
                r = await client.post(url, files={"file": (name, data)}, params=params)
                if r.status_code != 200:
                    errors.append(f"{r.status_code}: {r.text[:200]}")
                else:
                    rec = r.json()
                    if rec.get("error") or abs(sum(rec["scores"].values()) - 1) > 1e-3:
                        errors.append(f"bad record: {str(rec)[:200]}")
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            latencies.append(time.perf_counter() - t0)
            if pid and len(latencies) % trace_every == 0:
                trace.append(round(rss_mb(pid), 1))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return latencies, errors, wall, trace


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model file, or 'tiny' (default: shipped model if present, else tiny)")
    ap.add_argument("--uploads", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="server inference workers")
    ap.add_argument("--clip", default=None, help="audio file to upload (default: a real GTZAN clip or a synthesised one)")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the synthesised clip")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="stop sending after this long")
    ap.add_argument("--segments", action="store_true", help="ask for the timeline as well")
    ap.add_argument("--spectrogram", action="store_true", help="ask for the spectrogram PNG as well (as the page does)")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)

    import httpx

    with tempfile.TemporaryDirectory(prefix="genrekit-bench-") as tmp:
        model = args.model
        if model is None:
            model = str(SHIPPED) if SHIPPED.is_file() else "tiny"
        if model == "tiny":
            model = str(tiny_model(Path(tmp) / "tiny.safetensors"))
        data, name = clip_bytes(args.clip, args.seconds)
        port = free_port()
        cmd = [sys.executable, "-m", "genrekit", "serve", "--port", str(port), "--model", model,
               "--workers", str(args.workers), "--log-level", "warning"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    print(proc.stderr.read(), file=sys.stderr)
                    raise SystemExit(f"server exited with code {proc.returncode}")
                try:
                    health = httpx.get(base + "/api/health", timeout=2).json()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise SystemExit("server did not start within 120 s") from None
                    time.sleep(0.3)
            rss_start = rss_mb(proc.pid)
            load_before = os.getloadavg()[0]
            params = {"segments": str(args.segments).lower(), "spectrogram": str(args.spectrogram).lower()}
            url = base + "/api/predict"
            _, warm_err, _, _ = asyncio.run(run_load(url, data, name, uploads=2 * args.concurrency,
                                                  concurrency=args.concurrency, max_seconds=300, params=params))
            if warm_err:
                raise SystemExit(f"warm-up failed: {warm_err[:3]}")
            rss_warm = rss_mb(proc.pid)
            lat, errors, wall, trace = asyncio.run(run_load(
                url, data, name, uploads=args.uploads, concurrency=args.concurrency, max_seconds=args.max_seconds,
                params=params, pid=proc.pid))
            rss_end = rss_mb(proc.pid)
            rss_peak = rss_mb(proc.pid, "VmHWM")
            load_after = os.getloadavg()[0]
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()

    a = np.asarray(lat)
    res = {
        "model": health["model"]["path"], "model_kind": health["model"]["kind"], "classes": len(health["model"]["classes"]),
        "clip": name, "clip_bytes": len(data), "uploads_done": len(lat), "uploads_asked": args.uploads,
        "concurrency": args.concurrency, "workers": args.workers, "cpu_count": os.cpu_count(),
        "segments": args.segments, "spectrogram": args.spectrogram,
        "errors": len(errors), "wall_s": round(wall, 2), "throughput_per_s": round(len(lat) / wall, 3),
        "latency_p50_s": round(float(np.percentile(a, 50)), 3), "latency_p95_s": round(float(np.percentile(a, 95)), 3),
        "latency_max_s": round(float(a.max()), 3),
        "rss_start_mb": round(rss_start, 1), "rss_after_warmup_mb": round(rss_warm, 1), "rss_end_mb": round(rss_end, 1),
        "rss_peak_mb": round(rss_peak, 1), "rss_growth_mb": round(rss_end - rss_warm, 1),
        "rss_growth_from_start_mb": round(rss_end - rss_start, 1),
        "rss_trace_mb_every_50": trace,
        # other processes on the machine skew latency: the 1-minute load average before and after
        "loadavg_1m_before": round(load_before, 2), "loadavg_1m_after": round(load_after, 2),
    }
    print(json.dumps(res, indent=2))
    for e in errors[:5]:
        print("error:", e, file=sys.stderr)
    ok = not errors and res["latency_p95_s"] <= 2.0 and res["rss_growth_mb"] <= 50 and len(lat) == args.uploads
    print(f"targets (no errors, p95 <= 2 s, RSS growth after warm-up <= 50 MB, all {args.uploads} done): "
          f"{'met' if ok else 'NOT met'}", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
