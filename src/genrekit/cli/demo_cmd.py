"""`genrekit demo`: the whole pipeline in one go, on a clip genrekit synthesises (or on your files)."""

from __future__ import annotations

HELP = "show the whole pipeline (decode, features, log-mel, prediction, honest comparison), or classify PATHs"
DESCRIPTION = (
    "With no PATH: synthesises a short clip (clearly not real music), decodes it, extracts the GTZAN features "
    "and the log-mel spectrogram, classifies it with the shipped model, and, when the GTZAN data is beside the "
    "project (../shared/data/gtzan), classifies the real clips the model never saw and compares classic models "
    "under the fault-filtered protocol. With PATHs: classifies them."
)


def add_arguments(p) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH", help="your audio files or folders (optional)")
    p.add_argument("--model", "-m", default=None, help="model file (default: the shipped model)")
    p.add_argument("--out", "-o", default="runs/demo", help="where to write the demo's reports (default runs/demo)")


def synth_clip(seconds: float = 12.0, *, sr: int = 22050, bpm: float = 120.0, seed: int = 0):
    """A drum-and-bass-and-chords loop made from sine waves and noise: a test signal, not music."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    y = np.zeros(n)
    beat = 60.0 / bpm
    for k in range(int(seconds / beat)):
        s = int(k * beat * sr)
        d = np.arange(min(int(0.25 * sr), n - s)) / sr
        y[s : s + d.size] += 0.8 * np.sin(2 * np.pi * (50 + 80 * np.exp(-d * 30)) * d) * np.exp(-d * 12)  # kick
        h = s + int(beat * sr / 2)
        if h < n:
            m = min(int(0.05 * sr), n - h)
            y[h : h + m] += 0.15 * rng.standard_normal(m) * np.exp(-np.arange(m) / (0.01 * sr))  # hi-hat
    roots = [110.0, 146.83, 130.81, 98.0]  # A D C G
    bar = 4 * beat
    for i, f in enumerate(roots * int(seconds / (bar * len(roots)) + 1)):
        s, e = int(i * bar * sr), min(int((i + 1) * bar * sr), n)
        if s >= n:
            break
        tt = t[s:e]
        y[s:e] += 0.3 * np.sin(2 * np.pi * f * tt)  # bass
        for ratio in (2.0, 2.52, 3.0):  # a chord
            y[s:e] += 0.08 * np.sin(2 * np.pi * f * ratio * tt)
    return (0.6 * y / np.abs(y).max()).astype(np.float32)


def _bar(p: float, width: int = 30) -> str:
    return "█" * int(round(p * width)) + "·" * (width - int(round(p * width)))


def _show_prediction(r, *, top_k: int = 3) -> None:
    for g, s in r.top[:top_k]:
        print(f"    {g:<10} {_bar(s)} {s * 100:5.1f}%")


def _timeline(r) -> str:
    abbrev = {g: g[:2] for g in r.scores}
    return " ".join(abbrev.get(s.genre, "--") for s in r.segments)  # -- : a silent window


def run(args) -> int:
    import tempfile
    import time
    from pathlib import Path

    from genrekit.predict import GenreClassifier

    clf = GenreClassifier.load(args.model)
    meta = getattr(clf.model, "meta_", {}) or {}
    if args.paths:
        from genrekit import audio
        from genrekit.errors import GenrekitError

        files, skipped = audio.find_audio(args.paths, unique=False)
        for _where, exc in skipped:
            print(f"ERROR {exc}")
        failed = len(skipped)
        for f in files:
            try:
                r = clf.predict(f)
            except GenrekitError as exc:
                print(f"{f}: ERROR {exc}")
                failed += 1
                continue
            print(f"{f}: {r.genre}  ({r.duration:.0f} s, {len(r.segments)} windows)")
            _show_prediction(r)
        _outro()
        return 1 if failed else 0

    from genrekit import audio, datasets, features, spectrogram

    print("genrekit demo — the whole pipeline\n")
    print(f"model: {Path(clf.path).name} ({meta.get('name') or meta.get('arch') or meta.get('kind')}, "
          f"genres: {', '.join(clf.genres)})")
    card = meta.get("card") or {}
    if card.get("track_accuracy") is not None:
        print(f"       measured: {card['track_accuracy']:.3f} track-level accuracy on the "
              f"{card.get('protocol', 'fault-filtered')} test split ({card.get('n_tracks')} tracks)")

    # 1. a synthetic clip, written and decoded like any file
    print("\n1. A clip genrekit synthesises itself (sine-wave drums, bass and chords: a test signal, NOT real music)")
    with tempfile.TemporaryDirectory() as d:
        import soundfile as sf

        path = Path(d) / "genrekit-synthetic-demo.flac"
        sf.write(str(path), synth_clip(), audio.SR)
        t0 = time.perf_counter()
        y = audio.load(path)
        print(f"   decoded {path.name}: {y.size} samples at {audio.SR} Hz ({y.size / audio.SR:.1f} s) "
              f"in {1000 * (time.perf_counter() - t0):.0f} ms")
        t0 = time.perf_counter()
        feats = features.extract(y)
        ms = 1000 * (time.perf_counter() - t0)
        print(f"2. GTZAN features ({len(feats)} columns, {ms:.0f} ms): tempo {feats['tempo']:.1f} BPM "
              f"(synthesised at 120), spectral centroid {feats['spectral_centroid_mean']:.0f} Hz, "
              f"mfcc1 {feats['mfcc1_mean']:.1f}")
        levels = spectrogram.logmel(y)
        print(f"3. log-mel spectrogram: {levels.shape[0]} mel bands x {levels.shape[1]} frames")
        r = clf.predict(path)
    print("4. classified by the shipped model (a synthetic clip has no true genre; this shows the output):")
    _show_prediction(r)
    print(f"   timeline ({len(r.segments)} windows of 3 s): {_timeline(r)}")

    root = datasets.shared_root()
    if root is None:
        print("\n(GTZAN data not found beside the project: skipping the real-data part; "
              "set GENREKIT_SHARED to the folder holding data/gtzan)")
        _outro()
        return 0

    # 5. real clips the model never saw: the fault-filtered TEST tracks among the shared audio
    from genrekit import splits

    test_ids = set(splits.fault_filtered()["test"])
    trained = set(meta.get("train_tracks") or [])
    clips = [t for t in datasets.scan_audio(root / "audio") if t.track_id in test_ids and t.track_id not in trained]
    if clips:
        print(f"\n5. Real GTZAN clips from the fault-filtered TEST split (never seen in training): {len(clips)}")
        right = 0
        t0 = time.perf_counter()
        for c in clips:
            p = clf.predict(c.path)
            ok = p.genre == c.label
            right += ok
            print(f"   {c.track_id:<16} true {c.label:<10} predicted {p.genre:<10} {p.top[0][1] * 100:5.1f}% "
                  f"{'✓' if ok else '✗'}")
        dt = time.perf_counter() - t0
        print(f"   {right}/{len(clips)} right on these {len(clips)} clips ({dt / len(clips) * 1000:.0f} ms per clip); "
              "the model card's figure covers all 290 test tracks")

    # 6. an honest comparison of classic models on the Kaggle feature table
    csv = root / "features_30_sec.csv"
    if csv.is_file():
        print("\n6. Classic models on Kaggle's features_30_sec.csv, protocol fault-filtered (artist-disjoint), "
              "test accuracy, track level:")
        from genrekit.experiments import compare_models

        res = compare_models(["logreg", "rf", "svm"], csv, "fault-filtered", Path(args.out) / "compare",
                             progress=False)
        for row in res["results"]:
            print(f"   {row['model']:<8} accuracy {row['accuracy']:.3f}   macro-F1 {row['macro_f1']:.3f}")
        print(f"   reports and plots in {Path(args.out) / 'compare'}/ (the same models on a random split "
              "score 10-25 points higher: that is leakage, not skill)")
    _outro()
    return 0


def _outro() -> None:
    print("\nYour own music:  genrekit predict ~/Music            (add --format json --out genres.json to save)")
    print("Your own model:  genrekit train --help   |   web page:  genrekit serve")
