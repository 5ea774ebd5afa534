"""The default's fault-filtered TEST figure both ways for image-only tracks (issue 23, item 5).

    python scripts/blend_test.py [--model genrekit-gtzan-blend]

279 of the 290 test tracks exist here only as a Kaggle image, and mn04 hears audio (32 kHz, up to 15 kHz):
- way 1, shipped: the members that read mn04 are left out of an image-only track, the others' weights
  renormalised (what ``genrekit evaluate`` and ``predict_precomputed`` do);
- way 2: mn04's part estimated from the image (``networks.mn04.image.embed_image``, the track's ``rms_mean``
  setting the level; docs/ears.md "Image-derived mn04 input") and every member kept.
The 11 test tracks with audio are scored from it both times. Run after the choice, for the report only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def image_mn04(png, row: dict) -> tuple[np.ndarray, np.ndarray]:
    from genrekit.networks.mn04.image import embed_image
    from genrekit.networks.mn04.model import sigmoid

    e = embed_image(png, rms_mean=row.get("rms_mean"))
    return e.features.mean(axis=0), sigmoid(e.logits).mean(axis=0)


def main(argv=None) -> int:
    from tqdm import tqdm

    from genrekit import spectrogram, splits
    from genrekit.experiments import track_sources
    from genrekit.predict import GenreClassifier

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "gtzan")
    ap.add_argument("--model", default=None, help="model name or file (default: the shipped default)")
    args = ap.parse_args(argv)

    clf = GenreClassifier.load(args.model)
    found = track_sources(args.data, clf.input["type"])
    test = [t for t in splits.fault_filtered()["test"] if t in found]
    hits = {"way 1": [0, 0], "way 2": [0, 0]}  # top-1, top-3
    n_audio = 0
    for tid in tqdm(test, unit="track", desc="test"):
        label, kind, payload = found[tid]
        if kind == "audio":
            n_audio += 1
            r = clf.predict(payload, styles=False)
            got = {"way 1": r, "way 2": r}
        else:
            png, row = payload
            levels = spectrogram.invert_image_cached(png)
            got = {"way 1": clf.predict_precomputed(levels=levels, row=row, file=str(png), image=png),
                   "way 2": clf.predict_precomputed(levels=levels, row=row, file=str(png), image=png,
                                                    mn04=image_mn04(png, row))}
        for way, r in got.items():
            hits[way][0] += r.genre == label
            hits[way][1] += label in [g for g, _ in r.top[:3]]
    n = len(test)
    print(f"model: {clf.path}\nfault-filtered test: {n} tracks ({n_audio} from audio, {n - n_audio} image-only)")
    for way, (h1, h3) in hits.items():
        print(f"{way}: top-1 {h1}/{n} ({h1 / n:.3f}), top-3 {h3}/{n} ({h3 / n:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
