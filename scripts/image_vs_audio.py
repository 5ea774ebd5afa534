"""Prove the image -> log-mel mapping on the GTZAN clips that have both audio and a Kaggle image.

For every such clip: invert the PNG (genrekit.spectrogram.invert_image) and compute the log-mel of the
audio (genrekit.spectrogram.logmel); report correlations between the two matrices at frame level, after
giving the audio the image's time sampling (to_image_grid), over 1 s blocks, and of the mel-band means.
With ``--model`` (a deep model trained on images): track-level accuracy of that model on the same clips
computed from AUDIO (its own time resolution, and full resolution) versus from their images, split into
clips the model never saw (test side of its protocol) and clips it trained or early-stopped on.

    .venv/bin/python scripts/image_vs_audio.py [--model runs/deep-best/model.safetensors] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _blocks(m: np.ndarray, frames: int = 43) -> np.ndarray:
    n = m.shape[1] // frames
    return m[:, : n * frames].reshape(m.shape[0], n, frames).mean(2)


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from genrekit import audio, datasets, spectrogram

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=None, help="GTZAN root (default ../shared/data/gtzan)")
    ap.add_argument("--model", default=None, help="deep model trained on images, to classify the clips' audio")
    ap.add_argument("--json", default=None, help="write the results here as JSON")
    args = ap.parse_args(argv)
    root = args.root or datasets.shared_root()
    if root is None:
        print("image_vs_audio: no GTZAN data found (../shared/data/gtzan); pass --root", file=sys.stderr)
        return 1
    g = datasets.GTZAN(root)
    images = {t.track_id: t for t in g.image_tracks()}
    clips = [t for t in g.audio_tracks() if t.track_id in images]
    print(f"{len(clips)} clips with both audio and image under {root}")
    rows, pairs = [], {}
    for t in tqdm(clips, desc="clips", file=sys.stderr):
        L = spectrogram.logmel(audio.load(t.path))
        img = spectrogram.invert_image_cached(images[t.track_id].path)
        n = min(L.shape[1], img.shape[1])
        Lc, Ic = L[:, :n], img[:, :n]
        rows.append({
            "track": t.track_id, "frames_audio": int(L.shape[1]),
            "frame_corr": _corr(Ic, Lc), "image_grid_corr": _corr(Ic, spectrogram.to_image_grid(Lc)),
            "block_1s_corr": _corr(_blocks(Ic), _blocks(Lc)), "band_mean_corr": _corr(Ic.mean(1), Lc.mean(1)),
            "mean_abs_diff": float(np.abs(Ic - Lc).mean()),
        })
        pairs[t.track_id] = (t.label, L, img)
    summary = {}
    for key in ("frame_corr", "image_grid_corr", "block_1s_corr", "band_mean_corr", "mean_abs_diff"):
        v = np.array([r[key] for r in rows])
        summary[key] = {"mean": float(v.mean()), "median": float(np.median(v)), "min": float(v.min())}
        print(f"{key:16s} mean {v.mean():.3f}  median {np.median(v):.3f}  min {v.min():.3f}  (n={len(v)})")
    result: dict = {"n_clips": len(rows), "summary": summary, "clips": rows}
    if args.model:
        from genrekit.experiments import trained_tracks
        from genrekit.models.deep import DeepModel

        model = DeepModel.load(args.model)
        meta = model.meta_
        seen = trained_tracks(meta)
        tr = meta["input"].get("time_resolution", "full")
        inputs = {
            f"audio, {tr} time resolution (as predict does)": lambda L, i: spectrogram.to_image_grid(L) if tr == "image" else L,
            "audio, full time resolution": lambda L, i: L,
            "image (inverted PNG)": lambda L, i: i,
        }
        preds = {name: {k: model.predict_track_label(fn(pairs[k][1], pairs[k][2])) for k in pairs}
                 for name, fn in tqdm(inputs.items(), desc="inputs", file=sys.stderr)}
        first, image_name = next(iter(inputs)), "image (inverted PNG)"
        acc: dict = {}
        for group, ids in (("unseen (test side)", [k for k in pairs if k not in seen]),
                           ("seen (train/valid)", [k for k in pairs if k in seen]), ("all", list(pairs))):
            if not ids:
                continue
            res = {}
            for name in inputs:
                hits = [preds[name][k] == pairs[k][0] for k in ids]
                res[name] = float(np.mean(hits))
                print(f"track-level accuracy on {group} clips ({len(ids)}), input {name}: {np.mean(hits):.3f}")
            agree = [preds[first][k] == preds[image_name][k] for k in ids]
            res["audio_vs_image_prediction_agreement"] = float(np.mean(agree))
            print(f"  audio and image predictions agree on {np.mean(agree):.3f} of the {group} clips")
            acc[group] = {"n": len(ids), **res}
        result["model"] = {"path": str(args.model), "protocol": meta.get("trained_on", {}).get("protocol"),
                           "time_resolution": tr, "level": "track", "accuracy": acc}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
