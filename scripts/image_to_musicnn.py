"""musicnn embeddings for all of GTZAN: audio where it exists, Kaggle images elsewhere (issue 17, item 4).

GTZAN's 1000 tracks exist here as 999 Kaggle images and only 124 as audio. This script measures and
proves the mapping ``genrekit.embeddings.musicnn_input_from_image`` (image -> musicnn's input) on the
clips that have both, caches per-track embedding tables, and runs the valid-side head study:

    python scripts/image_to_musicnn.py align       # where the image's pixel columns sit in time (fits 2 constants)
    python scripts/image_to_musicnn.py calibrate   # level recovery from rms_mean, clip floor, per-band offsets
    python scripts/image_to_musicnn.py embed --jobs 2   # cache embeddings: audio, images, audio-as-image
    python scripts/image_to_musicnn.py prove       # cosine image vs audio; heads trained on images, scored on audio
    python scripts/image_to_musicnn.py heads       # fault-filtered VALID side: heads, blends (never test)

Tables (``embed``): ``<genrekit cache>/musicnn-gtzan/tables/<kind>.npz`` with ``kind`` one of ``audio``
(124 clips), ``image`` (999 images), ``audio-as-image`` (the 124 clips degraded to an image's resolution
and passed through the same mapping), each holding ``track_ids``, ``labels``, ``n_patches`` and per-track
means ``penultimate`` (n, 200), ``taggram`` (n, 50), ``pooled`` (n, 1506), plus ``penultimate_std``
and ``settings`` (JSON). Load with :func:`load_table` or ``np.load(path)`` (no pickle). Per-track,
per-patch arrays stay in the content-keyed cache (``genrekit.engine.Cache``, namespace
``musicnn-gtzan``): rows ``[taggram | penultimate | pooled]`` per 3 s patch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "gtzan"
NAMESPACE = "musicnn-gtzan"
KINDS = ("audio", "image", "audio-as-image")
MODEL = "MSD_musicnn"


# ------------------------------------------------------------------------------------------ data


def feature_rows(data: Path) -> dict[str, tuple[float, int]]:
    """track id -> (rms_mean, length in samples) from Kaggle's 30 s table."""
    import pandas as pd

    from genrekit import datasets

    df = pd.read_csv(data / "features_30_sec.csv")
    return {datasets.track_id(f): (float(r), int(n)) for f, r, n in zip(df.filename, df.rms_mean, df.length, strict=True)}


def sources(data: Path) -> tuple[dict[str, tuple[str, Path]], dict[str, tuple[str, Path]]]:
    """(audio, images): track id -> (label, path)."""
    from genrekit import datasets

    g = datasets.GTZAN(data)
    audio = {t.track_id: (t.label, t.path) for t in g.audio_tracks()}
    images = {t.track_id: (t.label, t.path) for t in g.image_tracks()}
    return audio, images


def settings_for(kind: str, data: Path) -> dict:
    from genrekit import embeddings as E
    from genrekit.engine import file_digest

    s = {"kind": kind, "model": MODEL, "hop": E.PATCH_HOP, "format": 1}
    if kind != "audio":
        s["mapping"] = E.IMAGE_MAPPING_VERSION
        s["constants"] = {k: getattr(E, k) for k in ("IMAGE_FIRST_FRAME", "IMAGE_EXTRA_FRAMES", "IMAGE_FLOOR_DB")}
        s["band_offset"] = list(E.IMAGE_BAND_OFFSET)
    if kind == "image":
        s["features_csv"] = file_digest(data / "features_30_sec.csv")  # rms_mean and length come from it
    return s


# ------------------------------------------------------------------------------------------ embedding


def audio_as_image_levels(y22: np.ndarray) -> tuple[np.ndarray, float]:
    """What a Kaggle image would hold for this 22.05 kHz clip: levels at the image's 336 columns
    (nearest frame to each column's measured position), quantised to the colour map's 256 steps,
    and the clip's peak mel power."""
    from genrekit import embeddings as E
    from genrekit import spectrogram

    mel = spectrogram.melspectrogram(y22)
    levels = spectrogram.power_to_levels(mel)
    n22 = levels.shape[1]
    pos = E.IMAGE_FIRST_FRAME + np.arange(E.IMAGE_COLUMNS) * (n22 + E.IMAGE_EXTRA_FRAMES) / E.IMAGE_COLUMNS
    cols = np.clip(np.round(pos).astype(int), 0, n22 - 1)
    return np.round(levels[:, cols] * 255.0) / 255.0, float(mel.max())


def _stack(emb) -> np.ndarray:
    return np.concatenate([emb.taggram, emb.penultimate, emb.pooled], axis=1).astype(np.float32)


def embed_item(item: tuple) -> np.ndarray:
    """One track's per-patch ``[taggram | penultimate | pooled]`` (module level: runs in workers)."""
    import torch

    from genrekit import audio
    from genrekit import embeddings as E

    torch.set_num_threads(1)
    kind, path, rms_mean, length = item
    if kind == "audio":
        return _stack(E.embed_file(path, model=MODEL))
    if kind == "image":
        return _stack(E.embed_image(path, rms_mean=rms_mean, n_samples=length, model=MODEL))
    y = audio.load(path, sr=E.IMAGE_SR)
    levels, peak = audio_as_image_levels(y)
    return _stack(E.embed_image(levels, peak_power=peak, n_samples=y.size, model=MODEL))


def table_path(kind: str) -> Path:
    from genrekit.engine import cache_root

    return cache_root() / NAMESPACE / "tables" / f"{kind}.npz"


def load_table(kind: str) -> dict[str, np.ndarray]:
    """A table written by ``embed`` (see the module docstring), as a dict of arrays."""
    path = table_path(kind)
    if not path.is_file():
        raise SystemExit(f"{path}: no table yet; run `python scripts/image_to_musicnn.py embed` first")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def split_columns(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from genrekit import embeddings as E

    t, p = E.N_TAGS, E.N_TAGS + E.N_PENULTIMATE
    return arr[:, :t], arr[:, t:p], arr[:, p:]


def cmd_embed(args) -> int:
    from genrekit import embeddings as E
    from genrekit import engine

    data = Path(args.data)
    audio_src, image_src = sources(data)
    rows = feature_rows(data)
    kinds = args.kinds.split(",")
    for kind in kinds:
        if kind not in KINDS:
            raise SystemExit(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
        settings = settings_for(kind, data)
        cache = engine.Cache(NAMESPACE, settings)
        src = image_src if kind == "image" else audio_src
        tids = sorted(src)
        if args.limit:
            tids = tids[: args.limit]
        keys = {t: cache.key(src[t][1]) for t in tids}
        todo = [t for t in tids if cache.get_array(keys[t]) is None]
        print(f"{kind}: {len(tids)} tracks, {len(tids) - len(todo)} cached, {len(todo)} to compute", file=sys.stderr)
        items = [(kind, str(src[t][1]), *rows.get(t, (None, E.IMAGE_CLIP_SAMPLES))) for t in todo]
        by_path = {it[1]: t for it, t in zip(items, todo, strict=True)}
        t0 = time.time()
        errors = []
        for item, res in engine.run_local(embed_item, items, jobs=args.jobs, desc=kind):
            if isinstance(res, engine.ItemError):
                errors.append((by_path[item[1]], str(res)))
                continue
            cache.put_array(keys[by_path[item[1]]], res)
        wall = time.time() - t0
        if todo:
            print(f"{kind}: computed {len(todo) - len(errors)} in {wall:.0f} s wall ({wall / max(1, len(todo)):.2f} s "
                  f"per track, {args.jobs} process(es))", file=sys.stderr)
        for t, e in errors:
            print(f"  {t}: {e}", file=sys.stderr)
        ids, labels, n_patches, means, pen_std = [], [], [], [], []
        for t in tids:
            arr = cache.get_array(keys[t])
            if arr is None:
                continue
            ids.append(t)
            labels.append(src[t][0])
            n_patches.append(arr.shape[0])
            means.append(arr.mean(0))
            pen_std.append(split_columns(arr)[1].std(0))
        m = np.asarray(means, np.float32)
        tg, pen, pooled = split_columns(m)
        out = table_path(kind)
        with engine.atomic_writer(out, "wb") as fh:
            np.savez(fh, track_ids=np.asarray(ids), labels=np.asarray(labels), n_patches=np.asarray(n_patches),
                     taggram=tg, penultimate=pen, pooled=pooled, penultimate_std=np.asarray(pen_std, np.float32),
                     settings=np.asarray(json.dumps(settings, sort_keys=True)))
        print(f"{kind}: table of {len(ids)} tracks -> {out}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------------ main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("embed", help="cache per-track embeddings and write the tables")
    e.add_argument("--kinds", default="audio,image,audio-as-image")
    e.add_argument("--jobs", type=int, default=2)
    e.add_argument("--limit", type=int, default=0, help="first N tracks of each kind only (smoke runs)")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return {"embed": cmd_embed}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
