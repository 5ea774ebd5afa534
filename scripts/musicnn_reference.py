"""Reference outputs of musicnn's own TensorFlow code, to verify genrekit's PyTorch port against.

Two steps, because genrekit never imports TensorFlow and the original never sees genrekit's code:

1. In genrekit's venv, fix the waveforms (the same samples feed both sides): two synthesised clips
   (:func:`synth_clip`, seeded; the test regenerates them) and three real GTZAN clips decoded with
   genrekit's own loader ``genrekit.audio.load(path, sr=16000)``::

       .venv/bin/python scripts/musicnn_reference.py waves --out /tmp/musicnn_waves.npz

2. In a throwaway TF venv (see scripts/convert_musicnn.py), compute what musicnn computes: librosa's
   mel spectrogram, the float16 cast and ``log10(10000 * x + 1)`` of ``extractor.batch_data`` (the log
   in float32, as NumPy 1.x promoted it under musicnn's pin ``numpy<1.17``; NumPy 2 keeps float16 and
   overflows to inf), the 187-frame patches, and the graph built by the wheel's own ``models.py`` with
   the checkpoint restored by ``tf.compat.v1.train.Saver``. Per patch, the taggram (sigmoid), the
   penultimate layer and the mean / max pooled features are read from the graph's tensors (not from
   ``extractor.extractor``'s returned features, which repeat the first patch in every row)::

       TF_USE_LEGACY_KERAS=1 /tmp/tfenv/bin/python scripts/musicnn_reference.py compute \\
           --waves /tmp/musicnn_waves.npz --out tests/data/musicnn_reference.npz [--wheel PATH]

Only the outputs and a few log-mel frames are committed (float32, < 1 MB), never the audio.

3. In genrekit's venv, print how far genrekit's port is from those references (float32 weights, and
   float16-rounded weights for the storage decision) and its speed on one CPU thread::

       OMP_NUM_THREADS=1 .venv/bin/python scripts/musicnn_reference.py check
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
MODELS = ("MSD_musicnn", "MTT_musicnn")
PATCH_FRAMES = 187
LOGMEL_KEEP = 64  # frames of the log-mel kept at each end of a clip (head and tail, edges included)

# (name, patch hop in frames). hop 61 = musicnn's extractor(input_overlap=1.0).
SYNTH = (("synth:0", 187, 8.0), ("synth:1", 61, 7.0))
GTZAN = (("gtzan:blues/blues.00066.au", 187), ("gtzan:disco/disco.00002.flac", 187),
         ("gtzan:metal/metal.00001.flac", 187))


def synth_clip(seed: int, *, seconds: float = 8.0, sr: int = SR) -> np.ndarray:
    """A deterministic music-like clip: a seeded pentatonic melody with harmonics, a bass line, a
    kick on each beat and noise hi-hats. Float64 maths, float32 out, peak 0.6."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    y = np.zeros(n)
    beat = 60.0 / rng.uniform(90, 140)
    scale = np.array([0, 2, 4, 7, 9, 12, 14, 16])
    root = rng.uniform(196, 330)
    starts = np.arange(0.0, seconds, beat / 2)
    for s in starts:
        i0, i1 = int(s * sr), min(n, int((s + beat / 2) * sr))
        tt = t[i0:i1] - s
        f = root * 2 ** (rng.choice(scale) / 12)
        env = np.exp(-tt * rng.uniform(3, 8)) * np.minimum(1.0, tt * 200)
        for h in range(1, 6):
            y[i0:i1] += 0.25 / h * env * np.sin(2 * np.pi * f * h * tt + rng.uniform(0, 2 * np.pi))
    for k, s in enumerate(np.arange(0.0, seconds, beat)):
        i0 = int(s * sr)
        i1 = min(n, i0 + int(0.4 * sr))
        tt = t[i0:i1] - s
        bass = root / 4 * 2 ** (scale[k % 4] / 12)
        y[i0:i1] += 0.3 * np.exp(-tt * 4) * np.sin(2 * np.pi * bass * tt)
        y[i0:i1] += 0.5 * np.exp(-tt * 25) * np.sin(2 * np.pi * (50 + 100 * np.exp(-tt * 30)) * tt)
        h0 = int((s + beat / 2) * sr)
        h1 = min(n, h0 + int(0.05 * sr))
        if h0 < n:
            y[h0:h1] += 0.15 * np.exp(-(t[h0:h1] - t[h0]) * 80) * rng.standard_normal(h1 - h0)
    return (0.6 * y / np.max(np.abs(y))).astype(np.float32)


def waves(out: Path, gtzan_root: Path) -> None:
    """Step 1 (genrekit venv): the exact samples both sides will use."""
    from genrekit.audio import load

    arrays: dict[str, np.ndarray] = {}
    names, hops = [], []
    for name, hop, seconds in SYNTH:
        arrays[f"wave_{len(names)}"] = synth_clip(int(name.split(":")[1]), seconds=seconds)
        names.append(name)
        hops.append(hop)
    for name, hop in GTZAN:
        arrays[f"wave_{len(names)}"] = load(gtzan_root / "audio" / name.split(":", 1)[1], sr=SR)
        names.append(name)
        hops.append(hop)
    np.savez(out, names=np.array(names), hops=np.array(hops), **arrays)
    print(f"{out}: {len(names)} clips")


def musicnn_logmel(y: np.ndarray):
    """extractor.batch_data's spectrogram, on given samples instead of librosa.load's."""
    import librosa

    rep = librosa.feature.melspectrogram(y=y, sr=SR, hop_length=256, n_fft=512, n_mels=96).T
    rep = rep.astype(np.float16)
    # NumPy 1.x (musicnn pins numpy<1.17) promotes float16 * 10000 to float32; do that explicitly
    return np.log10(10000 * rep.astype(np.float32) + 1).astype(np.float32)


def musicnn_patches(rep: np.ndarray, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """extractor.batch_data's patching: full patches only, starting every ``hop`` frames."""
    starts = np.arange(0, rep.shape[0] - PATCH_FRAMES + 1, hop)
    return np.stack([rep[s : s + PATCH_FRAMES] for s in starts]), starts


def compute(waves_path: Path, out: Path, wheel: Path | None) -> None:
    """Step 2 (TF venv): musicnn's own graph on the fixed samples."""
    import tempfile
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", message=r"`tf\.layers\.", category=UserWarning)  # models.py is TF1 code
    import librosa
    import tensorflow as tf

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from convert_musicnn import WHEEL_SHA256, download_wheel, extract_wheel

    tf.compat.v1.disable_eager_execution()
    data = np.load(waves_path)
    names, hops = list(data["names"]), [int(h) for h in data["hops"]]
    result: dict[str, np.ndarray] = {
        "names": np.array(names), "hops": np.array(hops),
        "versions": np.array([f"tensorflow {tf.__version__}", f"librosa {librosa.__version__}",
                              f"numpy {np.__version__}", f"musicnn wheel sha256 {WHEEL_SHA256}"]),
    }
    inputs = []
    for i, (name, hop) in enumerate(zip(names, hops, strict=True)):
        y = data[f"wave_{i}"]
        rep = musicnn_logmel(y)
        batch, starts = musicnn_patches(rep, hop)
        inputs.append(batch)
        result[f"{i}/n_samples"] = np.array(y.size)
        result[f"{i}/wave_rms"] = np.array(np.sqrt(np.mean(np.square(y, dtype=np.float64))), np.float32)
        result[f"{i}/n_frames"] = np.array(rep.shape[0])
        result[f"{i}/starts"] = starts
        result[f"{i}/logmel_head"] = rep[:LOGMEL_KEEP]
        result[f"{i}/logmel_tail"] = rep[-LOGMEL_KEEP:]
        print(f"{name}: {y.size} samples, {rep.shape[0]} frames, {len(starts)} patches (hop {hop})")

    with tempfile.TemporaryDirectory(prefix="musicnn-ref-") as tmp:
        wheel = wheel or download_wheel(Path(tmp) / "wheel")
        pkg_root = extract_wheel(wheel, Path(tmp) / "unzipped")
        sys.path.insert(0, str(pkg_root))
        from musicnn import configuration as config
        from musicnn import models

        for model in MODELS:
            labels = config.MSD_LABELS if model.startswith("MSD") else config.MTT_LABELS
            tf.compat.v1.reset_default_graph()
            with tf.name_scope("model"):  # as extractor.extractor builds it
                x = tf.compat.v1.placeholder(tf.float32, [None, PATCH_FRAMES, config.N_MELS])
                is_training = tf.compat.v1.placeholder(tf.bool)
                y, _timbral, _temporal, _cnn1, _cnn2, _cnn3, mean_pool, max_pool, penultimate = (
                    models.define_model(x, is_training, model, len(labels))
                )
                normalized_y = tf.nn.sigmoid(y)
            with tf.compat.v1.Session() as sess:
                sess.run(tf.compat.v1.global_variables_initializer())
                tf.compat.v1.train.Saver().restore(sess, str(pkg_root / "musicnn" / model) + "/")
                for i, batch in enumerate(inputs):
                    tg, pen, mp, xp = sess.run([normalized_y, penultimate, mean_pool, max_pool],
                                               feed_dict={x: batch, is_training: False})
                    for key, v in (("taggram", tg), ("penultimate", pen), ("mean_pool", mp), ("max_pool", xp)):
                        result[f"{i}/{model}/{key}"] = np.asarray(v, dtype=np.float32)
                    if not np.isfinite(tg).all():
                        raise SystemExit(f"{names[i]}: non-finite taggram from {model}")
            print(f"{model}: done")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **result)
    print(f"{out}: {out.stat().st_size:,} bytes")


def check(reference: Path, gtzan_root: Path) -> None:
    """Step 3 (genrekit venv): agreement with the references, float16 weights, one-thread speed."""
    import time

    import torch

    from genrekit.audio import load
    from genrekit.networks import musicnn as E

    torch.set_num_threads(1)
    ref = np.load(reference)
    names, hops = [str(n) for n in ref["names"]], [int(h) for h in ref["hops"]]
    seconds = {n: s for n, _, s in SYNTH}
    waves_: list[np.ndarray] = []
    for name in names:
        kind, what = name.split(":", 1)
        if kind == "synth":
            waves_.append(synth_clip(int(what), seconds=seconds[name]))
        else:
            waves_.append(load(gtzan_root / "audio" / what, sr=SR))
    logmel_err = max(
        float(np.abs(E.musicnn_input(y)[sl] - ref[f"{i}/logmel_{part}"]).max())
        for i, y in enumerate(waves_) for part, sl in (("head", slice(0, LOGMEL_KEEP)), ("tail", slice(-LOGMEL_KEEP, None)))
    )
    print(f"log-mel vs librosa + musicnn's float16/log: max abs error {logmel_err:.2e} ({len(names)} clips)")

    def net_with(model: str, half: bool):
        net = E.load_musicnn(model)
        if not half:
            return net
        rounded = E.Musicnn()
        rounded.load_state_dict({k: v.half().float() if v.is_floating_point() else v
                                 for k, v in net.state_dict().items()})
        return rounded.eval()

    for half in (False, True):
        print("float16-rounded weights, computed in float32:" if half else "float32 weights:")
        for model in MODELS:
            net = net_with(model, half)
            worst: dict[str, float] = {}
            for i, y in enumerate(waves_):
                x = torch.from_numpy(E.patches(E.musicnn_input(y), hop=hops[i]))
                with torch.inference_mode():
                    outs = [t.numpy() for t in net(x)]
                for key, got in zip(("taggram", "penultimate", "mean_pool", "max_pool"), outs, strict=True):
                    r = ref[f"{i}/{model}/{key}"]
                    err = float(np.abs(got - r).max())
                    worst[key] = max(worst.get(key, 0.0), err)
                    if key.endswith("pool"):
                        worst[key + " / max|ref|"] = max(worst.get(key + " / max|ref|", 0.0), err / float(np.abs(r).max()))
            print(f"  {model}: " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))

    y = next((w for w, n in zip(waves_, names, strict=True) if n.startswith("gtzan:")), None)
    if y is None:
        return
    x = E.patches(E.musicnn_input(y))

    def cpu(f, repeats: int = 3) -> float:
        best = float("inf")
        for _ in range(repeats):
            t = time.process_time()
            f()
            best = min(best, time.process_time() - t)
        return best

    E.run_patches(x)
    print(f"speed, one thread, CPU seconds per {y.size / SR:.0f} s clip ({x.shape[0]} patches):")
    print(f"  front end (log-mel): {cpu(lambda: E.musicnn_input(y)) * 1000:.1f} ms")
    for b in (1, 2, 4, 10):
        print(f"  network, batch {b}: {cpu(lambda b=b: E.run_patches(x, batch=b)):.3f} s")
    t = time.perf_counter()
    E.embed(y)
    print(f"  embed() wall time now: {time.perf_counter() - t:.3f} s (machine load: {os.getloadavg()[0]:.1f})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="step", required=True)
    w = sub.add_parser("waves", help="step 1, genrekit venv: fix the input samples")
    w.add_argument("--out", default="/tmp/musicnn_waves.npz")
    w.add_argument("--gtzan", default=str(ROOT.parent / "shared" / "data" / "gtzan"))
    c = sub.add_parser("compute", help="step 2, TF venv: musicnn's own outputs")
    c.add_argument("--waves", default="/tmp/musicnn_waves.npz")
    c.add_argument("--out", default=str(ROOT / "tests" / "data" / "musicnn_reference.npz"))
    c.add_argument("--wheel", help="a local musicnn-0.1.0 wheel (default: pip download it)")
    k = sub.add_parser("check", help="step 3, genrekit venv: port vs references, float16, speed")
    k.add_argument("--reference", default=str(ROOT / "tests" / "data" / "musicnn_reference.npz"))
    k.add_argument("--gtzan", default=str(ROOT.parent / "shared" / "data" / "gtzan"))
    args = p.parse_args(argv)
    if args.step == "check":
        check(Path(args.reference), Path(args.gtzan))
    elif args.step == "waves":
        waves(Path(args.out), Path(args.gtzan))
    else:
        compute(Path(args.waves), Path(args.out), Path(args.wheel) if args.wheel else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
