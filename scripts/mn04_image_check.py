"""mn04 on Kaggle GTZAN images vs on the real audio (issue 23, item 5, "way 2"): how close
``genrekit.networks.mn04.image`` brings an image to what mn04 hears in the audio.

For every shared GTZAN clip with audio, mn04 runs on (a) its audio, (b) its Kaggle image (the clips that
have one; level from ``features_30_sec.csv``'s ``rms_mean``, length from its ``length``), (c) its audio
degraded through an image (the audio's librosa mel rendered like a Kaggle image: 336 columns, 256 colour
steps, as ``scripts/image_to_musicnn.py``'s "audio-as-image" kind does, level from the audio's own peak),
(b) and (c) once per fill of the bands above 11.025 kHz, and (d) "audio-smoothed": the audio's own mn04
mel with its power averaged over 9 frames (one image column), nothing else lost: the ceiling of any
mapping from an image, which cannot hold what happens within a column. It prints, per kind and fill: cosine of the
mean 384-value ``features`` against the audio's (median, mean, 10th percentile, min), agreement of the
argmax among the ten GTZAN-genre AudioSet classes with the audio's, and that argmax's accuracy against
the clip's label.

    python scripts/mn04_image_check.py [--fills silence,floor,slope] [--limit N] [--cache /tmp/mn04-image-check]

Per-clip results are cached under ``--cache`` (means only), keyed by the mapping version.
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "gtzan"
SMOOTH_FRAMES = 9  # mn04 frames (10 ms) per Kaggle image column (~89 ms): "audio-smoothed"
GENRE_CLASSES = {"blues": "Blues", "classical": "Classical music", "country": "Country", "disco": "Disco",
                 "hiphop": "Hip hop music", "jazz": "Jazz", "metal": "Heavy metal", "pop": "Pop music",
                 "reggae": "Reggae", "rock": "Rock music"}


def genre_rows() -> np.ndarray:
    """Rows of the ten GTZAN-genre AudioSet classes in the logits, in GTZAN's label order."""
    from genrekit.networks.mn04.spec import labels

    names = labels()
    return np.array([names.index(c) for c in GENRE_CLASSES.values()])


def clip_result(kind: str, fill: str, track: str, audio_path: Path, image_path: Path | None,
                rms_mean: float, length: int) -> np.ndarray | None:
    """``[mean features (384) | mean sigmoid probabilities (527)]`` of one clip, or None (no image)."""
    from genrekit import audio as A
    from genrekit.networks.mn04 import image as I
    from genrekit.networks.mn04.model import embed_file, sigmoid

    if kind == "audio":
        emb = embed_file(audio_path)
    elif kind == "image":
        if image_path is None:
            return None
        emb = I.embed_image(image_path, rms_mean=rms_mean, n_samples=length, fill=fill)
    elif kind == "audio-smoothed":  # the ceiling of any image: the audio's own mel, only blurred in time
        from scipy.ndimage import uniform_filter1d

        from genrekit.networks.mn04 import frontend as F
        from genrekit.networks.mn04.model import Embedding, mel_windows, run, window_starts

        y32 = F.to_32k(A.load(audio_path, sr=F.SR), F.SR)
        starts = window_starts(y32.size)
        mel = mel_windows(y32, starts)
        power = uniform_filter1d(np.exp(mel * F.LOG_SCALE - F.LOG_SHIFT), SMOOTH_FRAMES, axis=-1)
        feats, logits = run(((np.log(power) + F.LOG_SHIFT) / F.LOG_SCALE).astype(np.float32))
        emb = Embedding(feats, logits, starts)
    else:
        # the musicnn study's rendering, from the same script folder
        from image_to_musicnn import audio_as_image_levels

        y = A.load(audio_path, sr=I.IMAGE_SR)
        levels, peak = audio_as_image_levels(y)
        emb = I.embed_image(levels, peak_power=peak, n_samples=y.size, fill=fill, name=f"{audio_path} (as image)")
    return np.concatenate([emb.features.mean(0), sigmoid(emb.logits).mean(0)]).astype(np.float64)


def cached(cache: Path, kind: str, fill: str, track: str, compute) -> np.ndarray | None:
    from genrekit.networks.mn04.image import MN04_IMAGE_MAPPING_VERSION

    tag = "audio" if kind == "audio" else f"{kind}-{fill}-v{MN04_IMAGE_MAPPING_VERSION}"
    path = cache / tag / f"{track}.npy"
    missing = cache / tag / f"{track}.none"
    if path.is_file():
        return np.load(path)
    if missing.is_file():
        return None
    res = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    if res is None:
        missing.touch()
    else:
        np.save(path, res)
    return res


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--fills", default="silence,floor,slope")
    p.add_argument("--limit", type=int, default=0, help="first N clips only (smoke runs)")
    p.add_argument("--cache", default="/tmp/mn04-image-check")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from image_to_musicnn import feature_rows, sources

    from genrekit.networks.mn04.image import FILLS

    fills = args.fills.split(",")
    for f in fills:
        if f not in FILLS:
            raise SystemExit(f"unknown fill {f!r}; choose from {', '.join(FILLS)}")
    data, cache = Path(args.data), Path(args.cache)
    audio_src, image_src = sources(data)
    rows = feature_rows(data)
    tracks = sorted(audio_src)[: args.limit or None]
    gr = genre_rows()
    genres = list(GENRE_CLASSES)
    results: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    errors = []
    for kind, fill in [("audio", "-")] + [(k, f) for k in ("image", "audio-as-image") for f in fills] + [
            ("audio-smoothed", "-")]:
        out = {}
        for t in tracks:
            label, apath = audio_src[t]
            ipath = image_src[t][1] if t in image_src else None
            rms, length = rows.get(t, (None, None))
            try:
                r = cached(cache, kind, fill, t, partial(clip_result, kind, fill, t, apath, ipath, rms, length))
            except Exception as exc:  # noqa: BLE001 (report every bad clip, go on with the rest)
                errors.append(f"{kind} {fill} {t}: {exc}")
                continue
            if r is not None:
                out[t] = r
        results[(kind, fill)] = out
        print(f"{kind} {fill}: {len(out)} clips", file=sys.stderr)
    audio = results[("audio", "-")]
    labels = {t: audio_src[t][0] for t in tracks}

    def top_genre(r: np.ndarray) -> str:
        return genres[int(np.argmax(r[384:][gr]))]

    acc_audio = np.mean([top_genre(audio[t]) == labels[t] for t in audio])
    print(f"\nmn04 on {len(audio)} shared GTZAN clips; genre = argmax of the mean probability among the ten "
          f"GTZAN-genre AudioSet classes")
    print(f"audio: genre accuracy {acc_audio:.3f} ({len(audio)} clips)\n")
    head = ("| kind | fill | clips | cosine median | mean | p10 | min | genre agrees with audio | "
            "genre accuracy (audio on the same clips) |")
    print(head)
    print("|" + "---|" * 9)
    for (kind, fill), res in results.items():
        if kind == "audio":
            continue
        common = [t for t in res if t in audio]
        if not common:
            continue
        cos = np.array([cosine(res[t][:384], audio[t][:384]) for t in common])
        agree = np.mean([top_genre(res[t]) == top_genre(audio[t]) for t in common])
        acc = np.mean([top_genre(res[t]) == labels[t] for t in common])
        acc_a = np.mean([top_genre(audio[t]) == labels[t] for t in common])
        print(f"| {kind} | {fill} | {len(common)} | {np.median(cos):.3f} | {cos.mean():.3f} | "
              f"{np.percentile(cos, 10):.3f} | {cos.min():.3f} | {agree:.3f} | {acc:.3f} ({acc_a:.3f}) |")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
