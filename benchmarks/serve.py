"""Load benchmark of `genrekit serve`: N concurrent uploads on loopback; throughput, latency, server RSS.

Starts the real server (``python -m genrekit serve``) in a subprocess, warms it up, then sends
``--uploads`` POST /api/predict requests of one clip with ``--concurrency`` in flight (stopping early
after ``--max-seconds``), and prints throughput, p50/p95/max latency, errors and the server's RSS
(VmRSS from /proc) at start-up, after the warm-up and at the end, plus its peak (VmHWM).

    python benchmarks/serve.py                          # shipped model if present, else a tiny one
    python benchmarks/serve.py --model tiny --uploads 200 --concurrency 8
    python benchmarks/serve.py --model src/genrekit/pretrained/genrekit-gtzan-default.safetensors
    python benchmarks/serve.py --bombs 4 --concurrency 4     # mixed load: normal uploads plus bombs

Targets (issue 7): 200 uploads of a 30 s clip at concurrency 8 on 2 cores: no errors, p95 <= 2 s,
RSS growth <= 50 MB.

Mixed load (issue 15, ``--bombs N``): while the normal uploads run, waves of N concurrent "bombs" are
posted (``--bomb-waves``, one after the other): a FLAC of ``--bomb-hours`` (8) hours of digital silence
at 8 kHz, 0.73 MB, which the server must refuse (413, past its ``--max-duration``, 20 min by default)
without decoding it all. The server's RSS is sampled every 20 ms during the run. Targets: every bomb
refused in <= 10 s, RSS growth (peak during the run minus after the warm-up) <= 300 MB, normal uploads
p95 <= 2 s with none failed.
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


def silent_flac_bomb(hours: float = 8.0, sr: int = 8000) -> bytes:
    """Digital silence at 8 kHz in FLAC: 8 hours compress to about 0.73 MB."""
    import soundfile as sf

    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", sr, 1, format="FLAC", subtype="PCM_16") as f:
        z = np.zeros(sr * 600, np.int16)
        for _ in range(int(round(hours * 6))):
            f.write(z)
    return buf.getvalue()


async def run_bombs(url: str, data: bytes, *, concurrent: int, waves: int, delay: float = 1.0
                    ) -> list[tuple[int, float, str]]:
    """``waves`` rounds of ``concurrent`` bomb uploads at once: (status, seconds, error) of each."""
    import httpx

    out: list[tuple[int, float, str]] = []

    async def one(client: httpx.AsyncClient) -> None:
        t0 = time.perf_counter()
        try:
            r = await client.post(url, files={"file": ("bomb.flac", data)})
            out.append((r.status_code, time.perf_counter() - t0, r.json().get("error", "")[:200]))
        except httpx.HTTPError as exc:
            out.append((0, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"))

    await asyncio.sleep(delay)  # let the normal load get going first
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=concurrent)) as client:
        for _ in range(waves):
            await asyncio.gather(*(one(client) for _ in range(concurrent)))
            await asyncio.sleep(delay)
    return out


async def sample_rss(pid: int, stop: asyncio.Event, every: float = 0.02) -> float:
    """Peak VmRSS (MB) of ``pid`` until ``stop`` is set."""
    peak = 0.0
    while not stop.is_set():
        peak = max(peak, rss_mb(pid))
        await asyncio.sleep(every)
    return max(peak, rss_mb(pid))


async def run_mixed(url: str, data: bytes, name: str, bomb: bytes, *, uploads: int, concurrency: int,
                    max_seconds: float, params: dict, pid: int, bombs: int, waves: int):
    """The normal load and the bomb waves at the same time, with the server's RSS sampled throughout."""
    stop = asyncio.Event()
    rss_task = asyncio.create_task(sample_rss(pid, stop))
    normal_task = asyncio.create_task(run_load(url, data, name, uploads=uploads, concurrency=concurrency,
                                               max_seconds=max_seconds, params=params, pid=pid))
    bomb_res = await run_bombs(url, bomb, concurrent=bombs, waves=waves)
    normal = await normal_task
    stop.set()
    return normal, bomb_res, await rss_task


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
    ap.add_argument("--bombs", type=int, default=0,
                    help="mixed load: post this many 8-hour silent FLAC bombs at once, in waves, during the run")
    ap.add_argument("--bomb-waves", type=int, default=3, help="waves of --bombs concurrent bombs (default 3)")
    ap.add_argument("--bomb-hours", type=float, default=8.0, help="hours of silence in a bomb (default 8)")
    ap.add_argument("--max-duration", type=float, default=None, metavar="MIN",
                    help="the server's --max-duration (default: the server's default, 20 min)")
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
        if args.max_duration is not None:
            cmd += ["--max-duration", str(args.max_duration)]
        bomb = silent_flac_bomb(args.bomb_hours) if args.bombs else b""
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
            bomb_res: list[tuple[int, float, str]] = []
            rss_peak_run = None
            if args.bombs:
                (lat, errors, wall, trace), bomb_res, rss_peak_run = asyncio.run(run_mixed(
                    url, data, name, bomb, uploads=args.uploads, concurrency=args.concurrency,
                    max_seconds=args.max_seconds, params=params, pid=proc.pid, bombs=args.bombs,
                    waves=args.bomb_waves))
            else:
                lat, errors, wall, trace = asyncio.run(run_load(
                    url, data, name, uploads=args.uploads, concurrency=args.concurrency,
                    max_seconds=args.max_seconds, params=params, pid=proc.pid))
            health_after = httpx.get(base + "/api/health", timeout=5).status_code
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
        "health_after": health_after,
    }
    if args.bombs:
        secs = [t for _, t, _ in bomb_res]
        res["bombs"] = {
            "bytes": len(bomb), "hours": args.bomb_hours, "concurrent": args.bombs, "waves": args.bomb_waves,
            "sent": len(bomb_res), "refused_413": sum(s == 413 for s, _, _ in bomb_res),
            "statuses": sorted({s for s, _, _ in bomb_res}),
            "seconds_p50": round(float(np.percentile(secs, 50)), 2), "seconds_max": round(max(secs), 2),
            "error_example": bomb_res[0][2] if bomb_res else None,
        }
        res["rss_peak_during_run_mb"] = round(rss_peak_run, 1)
        res["rss_growth_peak_mb"] = round(rss_peak_run - rss_warm, 1)
    print(json.dumps(res, indent=2))
    for e in errors[:5]:
        print("error:", e, file=sys.stderr)
    if args.bombs:
        b = res["bombs"]
        ok = (not errors and len(lat) == args.uploads and res["latency_p95_s"] <= 2.0 and health_after == 200
              and b["refused_413"] == b["sent"] and b["seconds_max"] <= 10.0 and res["rss_growth_peak_mb"] <= 300)
        print(f"targets (every bomb 413 in <= 10 s, peak RSS growth <= 300 MB, normal uploads p95 <= 2 s, none "
              f"failed, all {args.uploads} done): {'met' if ok else 'NOT met'}", file=sys.stderr)
    else:
        ok = not errors and res["latency_p95_s"] <= 2.0 and res["rss_growth_mb"] <= 50 and len(lat) == args.uploads
        print(f"targets (no errors, p95 <= 2 s, RSS growth after warm-up <= 50 MB, all {args.uploads} done): "
              f"{'met' if ok else 'NOT met'}", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
