"""Measure the options for fast musicnn embeddings (prints; asserts nothing). Issue 17, item 7.

    OMP_NUM_THREADS=1 python benchmarks/musicnn.py [--data ../shared/data/gtzan/audio] [--clips N]
        [--compile] [--sections 1,2,3,4,5] [--skip-children]
    OMP_NUM_THREADS=1 python benchmarks/musicnn.py calibrate   # int8 ranges for networks.musicnn.graph

Tables printed:

1. network speed: ms per 30 s clip (10 patches) on one thread, CPU (``time.process_time``) and wall,
   best of 3, per backend (torch, torch + dynamic int8 Linear, torch.compile with ``--compile``,
   onnxruntime float32 / int8, and onnxruntime's own quantize_dynamic / quantize_static on the float32
   graph for comparison) and batch size, and 2 threads;
2. agreement with torch on the committed references (tests/data/musicnn_reference.npz: 2 synthesised
   clips regenerated from their seeds + 3 shared GTZAN clips): max abs difference of taggram,
   penultimate and pooled;
3. track scores from fewer patches: per option (patches per 30 s block x backend) the cosine of the
   mean penultimate / taggram to torch's all-patch mean, and the top-1 changes of a quick head
   (standardised logistic regression trained on the all-patch torch mean penultimate of the shared
   clips, 5-fold stratified and leave-one-out) against its all-patch prediction, and the accuracy of
   a head trained on the option's own embeddings (as a shipped head would be);
4. end to end: ``embeddings.embed_file`` of a 30 s clip and of a 4-minute mp3 (44.1 kHz stereo, made
   from 8 real clips), clips/s with 2 worker processes, cold start of a fresh process to the first
   embedding (first use with an empty cache and with the ONNX graph cached), peak RSS of a
   10-minute file. The machine is shared: compare CPU seconds, and read ``load average`` above.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "gtzan" / "audio"
PER_BLOCK = (1, 2, 3, 4, 5, 10)


def best_of(fn: Callable[[], object], repeat: int = 3) -> tuple[float, float]:
    """(best CPU seconds, best wall seconds) of ``repeat`` calls."""
    cpu = wall = float("inf")
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu, wall = min(cpu, time.process_time() - c0), min(wall, time.perf_counter() - w0)
    return cpu, wall


def table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])


def load_clips(data: Path, limit: int | None) -> tuple[list[Path], np.ndarray, np.ndarray, float]:
    """The shared clips' patches ``(n_clips, 10, 187, 96)``, labels, and CPU s per clip to decode + log-mel."""
    from genrekit.audio import find_audio, load
    from genrekit.networks import musicnn as E

    files = sorted(map(Path, find_audio([data])[0]))
    if limit:  # the first clips of each genre, as evenly as the limit allows (>= 2 per genre for the folds)
        genres = sorted({f.parent.name for f in files})
        per = max(2, limit // len(genres))
        files = [f for g in genres for f in [f for f in files if f.parent.name == g][:per]]
    xs, labels = [], []
    c0 = time.process_time()
    for f in files:
        x = E.patches(E.musicnn_input(load(f, sr=E.SR)))
        xs.append(x[:10] if x.shape[0] >= 10 else np.concatenate([x] * (-(-10 // x.shape[0])))[:10])
        labels.append(f.parent.name)
    return files, np.stack(xs), np.array(labels), (time.process_time() - c0) / len(files)


def runners(with_compile: bool) -> dict[str, Callable[[np.ndarray, int], tuple[np.ndarray, ...]]]:
    """name -> f(patches, batch) -> (taggram, penultimate, pooled), every option measured."""
    import torch

    from genrekit.networks import musicnn as E
    from genrekit.networks.musicnn import graph as R

    def torch_of(net: torch.nn.Module) -> Callable[[np.ndarray, int], tuple[np.ndarray, ...]]:
        def run(x: np.ndarray, batch: int) -> tuple[np.ndarray, ...]:
            outs = []
            with torch.inference_mode():
                for i in range(0, len(x), batch):
                    tg, pen, mean_pool, max_pool = net(torch.from_numpy(x[i : i + batch]))
                    outs.append((tg.numpy(), pen.numpy(), torch.cat([max_pool, mean_pool], 1).numpy()))
            return tuple(np.concatenate([o[j] for o in outs]) for j in range(3))
        return run

    out = {"torch": lambda x, b: E.run_patches(x, batch=b)}
    dynq = torch.ao.quantization.quantize_dynamic(E.load_musicnn(), {torch.nn.Linear}, dtype=torch.qint8)
    out["torch-dynamic-int8 (Linear)"] = torch_of(dynq)
    if with_compile:
        out["torch.compile"] = torch_of(torch.compile(E.load_musicnn()))
    for backend in ("onnx", "onnx-int8"):
        sess = R.backend_runner(backend)
        out[backend] = lambda x, b, s=sess: s.run(x, batch=b)
    return out


def ort_quantized(cal: np.ndarray) -> dict[str, Callable[[np.ndarray, int], tuple[np.ndarray, ...]]]:
    """onnxruntime's own quantisers on genrekit's float32 graph, for comparison with the onnx-int8 backend:
    dynamic (ConvInteger on every conv, per-channel int8 weights) and static QDQ of the two timbral
    convs calibrated (MinMax) on ``cal``, the train-side patches."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    from genrekit.networks.musicnn import graph as R

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.i = 0

        def get_next(self) -> dict | None:
            if self.i >= len(cal):
                return None
            self.i += 4
            return {R.INPUT_NAME: cal[self.i - 4 : self.i]}

    out = {}
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "musicnn.onnx"
        src.write_bytes(R.build_onnx())
        dyn, qdq = Path(d) / "dynamic.onnx", Path(d) / "static.onnx"
        quantize_dynamic(src, dyn, weight_type=QuantType.QInt8, per_channel=True)
        quantize_static(src, qdq, Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True, nodes_to_quantize=[f"{n}.conv" for n in R.TIMBRAL])
        for name, path in (("ort quantize_dynamic", dyn), ("ort quantize_static (timbral)", qdq)):
            sess = R.OnnxMusicnn("MSD_musicnn", path.read_bytes())
            out[name] = lambda x, b, s=sess: s.run(x, batch=b)
    return out


def network_speed(run: dict, x10: np.ndarray) -> list[list[object]]:
    import torch

    from genrekit.networks.musicnn import graph as R

    rows = []
    for name, f in run.items():
        if name == "torch.compile":
            c0, w0 = time.process_time(), time.perf_counter()
            f(x10[:2], 2)
            rows.append([name, "first call (compile)", f"{1000 * (time.process_time() - c0):.0f}",
                         f"{1000 * (time.perf_counter() - w0):.0f}"])
        for b in ((1, 2, 4, 10) if name in ("torch", "onnx") else (2,)):
            if name.startswith("ort ") and b != 2:
                continue
            f(x10[:b], b)
            cpu, wall = best_of(lambda f=f, b=b: f(x10, b))
            rows.append([name, f"batch {b}, 1 thread", f"{1000 * cpu:.0f}", f"{1000 * wall:.0f}"])
    torch.set_num_threads(2)
    cpu, wall = best_of(lambda: run["torch"](x10, 2))
    rows.append(["torch", "batch 2, 2 threads", f"{1000 * cpu:.0f}", f"{1000 * wall:.0f}"])
    torch.set_num_threads(1)
    for backend in ("onnx", "onnx-int8"):
        s = R.load_onnx(int8=backend == "onnx-int8", threads=2)
        s.run(x10[:2])
        cpu, wall = best_of(lambda s=s: s.run(x10, batch=2))
        rows.append([backend, "batch 2, 2 threads", f"{1000 * cpu:.0f}", f"{1000 * wall:.0f}"])
    return rows


def reference_agreement(run: dict, data: Path) -> list[list[object]]:
    from genrekit.audio import load
    from genrekit.networks import musicnn as E

    ref = np.load(ROOT / "tests" / "data" / "musicnn_reference.npz")
    spec = importlib.util.spec_from_file_location("musicnn_reference", ROOT / "scripts" / "musicnn_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    seconds = {n: s for n, _, s in mod.SYNTH}
    inputs = []
    for i, name in enumerate(str(n) for n in ref["names"]):
        if name.startswith("synth:"):
            y = mod.synth_clip(int(name.split(":")[1]), seconds=seconds[name])
        else:
            path = data.parent / "audio" / name.split(":", 1)[1]
            if not path.is_file():
                continue
            y = load(path, sr=E.SR)
        inputs.append((i, E.patches(E.musicnn_input(y), hop=int(ref["hops"][i]))))
    rows = []
    base = {i: run["torch"](x, 2) for i, x in inputs}
    for name, f in run.items():
        if name == "torch":
            continue
        dev = np.zeros(3)
        tf_dev = np.zeros(2)
        for i, x in inputs:
            out = f(x, 2)
            dev = np.maximum(dev, [np.abs(a - b).max() for a, b in zip(out, base[i], strict=True)])
            tf_dev = np.maximum(tf_dev, [np.abs(out[j] - ref[f"{i}/MSD_musicnn/{k}"]).max()
                                         for j, k in ((0, "taggram"), (1, "penultimate"))])
        rows.append([name, *(f"{d:.1e}" for d in dev), *(f"{d:.1e}" for d in tf_dev)])
    rows.append(["(clips)", f"{len(inputs)} of {len(ref['names'])}", "", "", "", ""])
    return rows


def head_study(outputs: dict[str, tuple[np.ndarray, ...]], labels: np.ndarray) -> list[list[object]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import LeaveOneOut, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from genrekit.networks.musicnn import frontend as F

    n = len(labels)
    tg_full, pen_full = (outputs["torch"][j].reshape(n, 10, -1).mean(1) for j in (0, 1))
    options: dict[str, tuple[str, np.ndarray]] = {}
    for name in outputs:
        for k in PER_BLOCK:
            if name == "torch" or k in (3, 4, 10):
                options[f"{name}, {k}/block"] = (name, F.select_patches(np.arange(10) * 187, per_block=k))
    options["torch, first 3 (0,1,2)"] = ("torch", np.array([0, 1, 2]))
    options["torch, 3 from 0 (0,3,6)"] = ("torch", np.array([0, 3, 6]))
    inputs = {o: outputs[b][1].reshape(n, 10, -1)[:, idx].mean(1) for o, (b, idx) in options.items()}
    n_per_class = min(np.unique(labels, return_counts=True)[1])
    schemes = {"5-fold": list(StratifiedKFold(min(5, max(2, n_per_class)), shuffle=True, random_state=0).split(pen_full, labels)),
               "LOO": list(LeaveOneOut().split(pen_full))}
    preds = {s: {o: np.empty(n, dtype=object) for o in inputs} for s in schemes}
    own = {o: np.empty(n, dtype=object) for o in inputs}  # a head trained on the option's own embeddings
    base = {s: np.empty(n, dtype=object) for s in schemes}
    for s, splits in schemes.items():
        for tr, te in splits:
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000)).fit(pen_full[tr], labels[tr])
            base[s][te] = clf.predict(pen_full[te])
            for o, x in inputs.items():
                preds[s][o][te] = clf.predict(x[te])
                if s == "5-fold":
                    fit = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000)).fit(x[tr], labels[tr])
                    own[o][te] = fit.predict(x[te])

    def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))

    rows = []
    for o, (b, idx) in options.items():
        c_pen = cos(inputs[o], pen_full)
        c_tg = cos(outputs[b][0].reshape(n, 10, -1)[:, idx].mean(1), tg_full)
        changed = " / ".join(str(int(np.sum(preds[s][o] != base[s]))) for s in schemes)
        acc = " / ".join(f"{np.mean(preds[s][o] == labels):.3f}" for s in schemes)
        rows.append([o, ",".join(map(str, idx)), f"{c_pen.mean():.4f} ({c_pen.min():.3f})",
                     f"{c_tg.mean():.4f} ({c_tg.min():.3f})", changed, acc, f"{np.mean(own[o] == labels):.3f}"])
    return rows


def _embed_child(args: tuple[str, str, int | None]) -> int:
    from genrekit.networks import musicnn as E

    path, backend, k = args
    return E.embed_file(path, backend=backend, patches_per_block=k).n_patches


def _init_child(backend: str) -> None:
    from genrekit.networks import musicnn as E

    E.embed(np.zeros(E.SR * 4, np.float32) + 0.01, backend=backend)  # load the network before the clock


def encode_mp3(y: np.ndarray, sr: int, path: Path) -> Path:
    """44.1 kHz stereo mp3 (the two channels equal), as most users' files are."""
    import av

    with av.open(str(path), "w", format="mp3") as out:
        s = out.add_stream("libmp3lame", rate=sr)
        s.layout = "stereo"
        frame = av.AudioFrame.from_ndarray(np.stack([y, y]).astype(np.float32), format="fltp", layout="stereo")
        frame.sample_rate = sr
        for packet in s.encode(frame):
            out.mux(packet)
        for packet in s.encode(None):
            out.mux(packet)
    return path


def child(code: str, argv: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """(wall s, peak RSS MB, stdout) of ``python -c code argv...`` as a fresh process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out = proc.stdout.read().decode() if proc.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        print(proc.stderr.read().decode()[-2000:] if proc.stderr else "", file=sys.stderr)
    return wall, usage.ru_maxrss // 1024, out.strip()


OPTIONS = (("torch", None), ("onnx", None), ("onnx", 3), ("onnx", 4), ("onnx-int8", 4), ("onnx-int8", None))


def embed_speed(clip: Path, song: Path) -> list[list[object]]:
    from genrekit.networks import musicnn as E

    rows = []
    for backend, k in OPTIONS:
        E.embed_file(clip, backend=backend, patches_per_block=k)
        c_clip, w_clip = best_of(lambda b=backend, k=k: E.embed_file(clip, backend=b, patches_per_block=k))
        c_song, w_song = best_of(lambda b=backend, k=k: E.embed_file(song, backend=b, patches_per_block=k), 2)
        rows.append([f"{backend}, {k or 10}/block", f"{1000 * c_clip:.0f} / {1000 * w_clip:.0f}",
                     f"{c_song:.2f} / {w_song:.2f}"])
    for backend, k in (("onnx", 3), ("onnx", 4)):  # one file on both cores: 2 intra-op threads
        E.embed_file(clip, backend=backend, patches_per_block=k, threads=2)
        c_clip, w_clip = best_of(lambda b=backend, k=k: E.embed_file(clip, backend=b, patches_per_block=k, threads=2))
        c_song, w_song = best_of(lambda b=backend, k=k: E.embed_file(song, backend=b, patches_per_block=k, threads=2), 2)
        rows.append([f"{backend}, {k}/block, 2 threads", f"{1000 * c_clip:.0f} / {1000 * w_clip:.0f}",
                     f"{c_song:.2f} / {w_song:.2f}"])
    return rows


def fresh_processes(files: list[Path], clip: Path, ten: Path) -> list[list[object]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rows = []
    for backend, k in OPTIONS:
        with mp.get_context("forkserver").Pool(2, initializer=_init_child, initargs=(backend,)) as pool:
            pool.map(_embed_child, [(str(f), backend, k) for f in files[:4]])
            t0 = time.perf_counter()
            pool.map(_embed_child, [(str(f), backend, k) for f in files], chunksize=1)
            rate = len(files) / (time.perf_counter() - t0)
        code = ("import sys, time, json; t0 = time.perf_counter(); from genrekit.networks import musicnn as E; "
                "e = E.embed_file(sys.argv[1], backend=sys.argv[2], patches_per_block=json.loads(sys.argv[3])); "
                "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]; "
                "print(json.dumps({'s': time.perf_counter() - t0, 'torch': 'torch' in sys.modules, "
                "'onnx': 'onnx' in sys.modules, 'hwm_mb': int(hwm) // 1024}))")
        argv = [backend, json.dumps(k)]
        with tempfile.TemporaryDirectory() as cache:
            first = child(code, [str(clip), *argv], {**env, "XDG_CACHE_HOME": cache})
            warm = [child(code, [str(clip), *argv], {**env, "XDG_CACHE_HOME": cache}) for _ in range(3)]
            # VmHWM of the child's own memory map: wait4's ru_maxrss would include this (large) parent's
            # RSS at fork time, which Linux folds into the child's maximum at exec
            rss = json.loads(child(code, [str(ten), *argv], {**env, "XDG_CACHE_HOME": cache})[2])["hwm_mb"]
        info = json.loads(warm[-1][2])
        rows.append([f"{backend}, {k or 10}/block", f"{rate:.1f}", f"{first[0]:.2f}",
                     f"{np.median([w[0] for w in warm]):.2f}", f"{rss}",
                     f"torch {'yes' if info['torch'] else 'no'}, onnx {'yes' if info['onnx'] else 'no'}"])
    return rows


def calibrate(data: Path) -> int:
    from genrekit import splits
    from genrekit.networks import musicnn as E
    from genrekit.networks.musicnn import graph as R

    files, x, _, _ = load_clips(data, None)
    train = set(splits.fault_filtered()["train"])
    keep = [i for i, f in enumerate(files) if f.name.rsplit(".", 1)[0] in train]
    cal = x[keep].reshape(-1, E.PATCH_FRAMES, E.N_MELS)
    print(f"calibrating on {len(keep)} clips of the fault-filtered train side ({cal.shape[0]} patches)")
    values = {m: R.calibrate_int8(cal, model=m) for m in E.MODELS}
    print("INT8_CALIBRATION = " + json.dumps(values, indent=4))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", default="table", choices=("table", "calibrate"))
    p.add_argument("--data", type=Path, default=DATA, help="folder of 30 s clips (default: the shared GTZAN audio)")
    p.add_argument("--clips", type=int, default=None, help="use only N clips, spread over the folder")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile (about a minute to compile)")
    p.add_argument("--sections", default="1,2,3,4,5", help="which tables to print (default: all)")
    p.add_argument("--skip-children", action="store_true", help="skip worker pools and fresh processes (table 5)")
    args = p.parse_args()
    if args.command == "calibrate":
        return calibrate(args.data)
    sections = {int(t) for t in args.sections.split(",") if t.strip()} - ({5} if args.skip_children else set())

    import warnings

    import torch

    from genrekit.audio import find_audio, load

    warnings.filterwarnings("ignore", message=".*(deprecated|quantize_per_tensor).*")  # torch.ao's notices
    torch.set_num_threads(1)
    print(f"musicnn speed benchmark: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    if sections & {1, 2, 3}:
        files, x, labels, decode = load_clips(args.data, args.clips)
        print(f"{len(files)} clips from {args.data}; decode + log-mel {1000 * decode:.0f} ms CPU per clip")
        run = runners(args.compile)
        extra = {}
        if sections & {1, 2}:
            from genrekit import splits

            train = set(splits.fault_filtered()["train"])
            cal = x[[i for i, f in enumerate(files) if f.name.rsplit(".", 1)[0] in train]]
            extra = ort_quantized(cal.reshape(-1, *x.shape[2:]) if len(cal) else x[:4].reshape(-1, *x.shape[2:]))
    else:
        files = sorted(map(Path, find_audio([args.data])[0]))
    if 1 in sections:
        print("\n1. network, ms per 30 s clip (10 patches), best of 3\n")
        print(table(["backend", "setting", "CPU ms", "wall ms"], network_speed({**run, **extra}, x[0])))
    if 2 in sections:
        print("\n2. max abs difference on the committed references (vs torch | vs musicnn's TF graph)\n")
        print(table(["backend", "taggram", "penultimate", "pooled", "TF taggram", "TF penultimate"],
                    reference_agreement({**run, **extra}, args.data)))
    if 3 in sections:
        flat = x.reshape(-1, *x.shape[2:])
        outputs, cost = {}, {}
        for name, f in run.items():
            if name == "torch.compile":
                continue
            c0 = time.process_time()
            outputs[name] = f(flat, 2)
            cost[name] = (time.process_time() - c0) / len(files)
        print(f"\n3. track scores from fewer patches ({len(files)} clips; CPU ms per clip, all 10 patches: "
              + ", ".join(f"{k} {1000 * v:.0f}" for k, v in cost.items()) + ")\n")
        print(table(["option", "patches", "penultimate cos mean (min)", "taggram cos mean (min)",
                     "top-1 changed 5-fold / LOO", "head accuracy 5-fold / LOO", "own-head accuracy 5-fold"],
                    head_study(outputs, labels)))
    clip = next((f for f in files if f.suffix == ".flac"), files[0])
    with tempfile.TemporaryDirectory() as d:
        if 4 in sections:
            song = encode_mp3(np.concatenate([load(f, sr=44100) for f in files[:8]]), 44100, Path(d) / "four.mp3")
            print(f"\n4. end to end: embed_file, CPU / wall, best of 3 (30 s: {clip.name}; 4-minute mp3: 44.1 kHz "
                  "stereo, 8 real clips)\n")
            print(table(["option", "30 s clip ms", "4-min mp3 s"], embed_speed(clip, song)))
        if 5 in sections:
            ten = encode_mp3(np.concatenate([load(f, sr=44100) for f in files[:20]]), 44100, Path(d) / "ten.mp3")
            print(f"\n5. fresh processes: {len(files)} clips with 2 worker processes (warm), a fresh process to "
                  f"its first embedding of {clip.name} (empty cache, then cached; median of 3), a 10-minute mp3\n")
            print(table(["option", "clips/s, 2 workers", "cold start, first use s", "cold start, cached s",
                         "10-min mp3 peak RSS MB", "imported"], fresh_processes(files, clip, ten)))
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
