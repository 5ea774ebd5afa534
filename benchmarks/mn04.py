"""Measure mn04 (genrekit.networks.mn04) speed and the int8 question (prints; asserts nothing). Issue 23.

    OMP_NUM_THREADS=1 python benchmarks/mn04.py [--data ../shared/data/gtzan/audio] [--clips N] [--no-int8]

1. speed per 30 s clip on one thread (onnxruntime, one intra-op thread), best of 5, CPU seconds
   (``time.process_time``) and wall: decoding, resampling 22.05 -> 32 kHz, the numpy front end (3 windows),
   the float32 network (3 windows in one batch), and ``embed_file`` end to end;
2. int8: onnxruntime's ``quantize_dynamic`` and ``quantize_static`` (QDQ, per-channel weights, calibrated
   on the first clip of each genre folder) on the float32 graph; per variant the network's ms per 30 s
   clip and, over every clip, whether the top AudioSet class (of 527) and the top genre class (of 48) of
   the mean sigmoid over the windows equal float32's. genrekit ships int8 only if top-1 is identical on
   every shared clip AND it is worth it (see the printout: the front end costs more than the network).
The machine is shared: compare CPU seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from genrekit.audio import load  # noqa: E402
from genrekit.networks.mn04 import frontend as F  # noqa: E402
from genrekit.networks.mn04 import graph as G  # noqa: E402
from genrekit.networks.mn04 import model as M  # noqa: E402
from genrekit.networks.mn04.spec import GENRE_ROWS, INPUT_NAME, OUTPUT_NAMES  # noqa: E402
from genrekit.networks.writer import session_options  # noqa: E402


def best(fn, n: int = 5) -> tuple[float, float]:
    cpu, wall = [], []
    for _ in range(n):
        c, w = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return min(cpu) * 1e3, min(wall) * 1e3


def session(data: bytes):
    import onnxruntime as ort

    return ort.InferenceSession(data, session_options(1), providers=["CPUExecutionProvider"])


def speed(clip: Path) -> None:
    y22 = load(clip, sr=22050)
    y32 = F.to_32k(y22, 22050)
    starts = M.window_starts(y32.size)
    mel = M.mel_windows(y32, starts)
    M.embed(y32, 32000)  # session built / loaded
    rows = [
        ("decode (flac, 22.05 kHz)", lambda: load(clip, sr=22050)),
        ("resample 22.05 -> 32 kHz", lambda: F.to_32k(y22, 22050)),
        (f"front end ({starts.size} windows)", lambda: M.mel_windows(y32, starts)),
        (f"network float32 ({starts.size} windows)", lambda: M.run(mel)),
        ("embed_file (all of it)", lambda: M.embed_file(clip)),
    ]
    print(f"\n1. speed per 30 s clip ({clip.name}), one thread, best of 5   [load average "
          f"{os.getloadavg()[0]:.2f}]")
    print(f"   {'step':<34} {'CPU ms':>8} {'wall ms':>8}")
    for name, fn in rows:
        c, w = best(fn)
        print(f"   {name:<34} {c:8.1f} {w:8.1f}")


def quantised(float_model: bytes, calib: list[np.ndarray]) -> dict[str, bytes]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{INPUT_NAME: m[None]} for batch in calib for m in batch])

        def get_next(self):
            return next(self.items, None)

    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "f32.onnx"
        src.write_bytes(float_model)
        dyn = Path(d) / "dyn.onnx"
        quantize_dynamic(str(src), str(dyn), weight_type=QuantType.QInt8)
        out["int8 dynamic"] = dyn.read_bytes()
        sta = Path(d) / "static.onnx"
        quantize_static(str(src), str(sta), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        out["int8 static QDQ"] = sta.read_bytes()
    return out


def top1(logits: np.ndarray) -> tuple[int, int]:
    p = M.sigmoid(logits).mean(axis=0)
    g = np.arange(GENRE_ROWS.start, GENRE_ROWS.stop)
    return int(np.argmax(p)), int(g[np.argmax(p[g])])


def int8(clips: list[Path]) -> None:
    print(f"\n2. int8 against float32 on {len(clips)} clips (top-1 of the mean sigmoid over 3 windows)")
    mels = [M.mel_windows(y, M.window_starts(y.size)) for y in (load(c, sr=32000) for c in clips)]
    f32 = G.onnx_model()
    genre_dirs: dict[str, int] = {}
    for i, c in enumerate(clips):
        genre_dirs.setdefault(c.parent.name, i)
    calib = [mels[i] for i in genre_dirs.values()]
    variants = {"float32": f32, **quantised(f32, calib)}
    ref = None
    print(f"   {'variant':<18} {'net ms/clip':>11} {'top-1 same':>11} {'genre top-1 same':>17} {'max |dlogit|':>13}")
    for name, data in variants.items():
        s = session(data)
        outs = [s.run(list(OUTPUT_NAMES), {INPUT_NAME: m})[1] for m in mels]
        c, _ = best(lambda s=s: s.run(list(OUTPUT_NAMES), {INPUT_NAME: mels[0]}))
        tops = [top1(o) for o in outs]
        if ref is None:
            ref, ref_out = tops, outs
        same = sum(a[0] == b[0] for a, b in zip(tops, ref, strict=True))
        gsame = sum(a[1] == b[1] for a, b in zip(tops, ref, strict=True))
        diff = max(float(np.abs(o - r).max()) for o, r in zip(outs, ref_out, strict=True))
        print(f"   {name:<18} {c:11.1f} {same:>7}/{len(clips)} {gsame:>13}/{len(clips)} {diff:13.4f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "gtzan" / "audio")
    p.add_argument("--clips", type=int, default=0, help="at most this many clips for section 2 (0: all)")
    p.add_argument("--no-int8", action="store_true")
    a = p.parse_args(argv)
    clips = sorted(q for q in a.data.rglob("*") if q.suffix.lower() in (".flac", ".wav", ".au", ".mp3"))
    if not clips:
        print(f"no audio under {a.data}", file=sys.stderr)
        return 1
    speed(clips[0])
    if not a.no_int8:
        int8(clips[: a.clips] if a.clips else clips)
    return 0


if __name__ == "__main__":
    sys.exit(main())
