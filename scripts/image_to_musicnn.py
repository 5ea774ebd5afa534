"""musicnn embeddings for all of GTZAN: audio where it exists, Kaggle images elsewhere (issue 17, item 4).

GTZAN's 1000 tracks exist here as 999 Kaggle images and only 124 as audio. This script measures and
proves the mapping ``genrekit.networks.musicnn.musicnn_input_from_image`` (image -> musicnn's input) on the
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
per-patch arrays stay in the content-keyed cache (``genrekit.store.Cache``, namespace
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
    from genrekit.networks import musicnn as E
    from genrekit.store import file_digest

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
    from genrekit import spectrogram
    from genrekit.networks import musicnn as E

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
    from genrekit.networks import musicnn as E

    torch.set_num_threads(1)
    kind, path, rms_mean, length = item
    if kind == "audio":
        return _stack(E.embed_file(path, model=MODEL))
    if kind == "image":
        return _stack(E.embed_image(path, rms_mean=rms_mean, n_samples=length, model=MODEL))
    y = audio.load(path, sr=E.IMAGE_SR)
    levels, peak = audio_as_image_levels(y)
    return _stack(E.embed_image(levels, peak_power=peak, n_samples=y.size, model=MODEL))


def table_path(kind: str, per_block: int | None = None) -> Path:
    """``<kind>.npz`` (means over every patch) or ``<kind>-p<K>.npz`` (over K spread patches per 30 s block)."""
    from genrekit.store import cache_root

    return cache_root() / NAMESPACE / "tables" / (f"{kind}.npz" if per_block is None else f"{kind}-p{per_block}.npz")


def patch_subset(n: int, per_block: int | None) -> np.ndarray:
    """The patches of an ``n``-patch track that a ``patches_per_block`` track score keeps, exactly as
    ``genrekit predict`` selects them (:func:`genrekit.networks.musicnn.select_patches`)."""
    from genrekit.networks import musicnn as E
    from genrekit.networks.musicnn.frontend import select_patches

    if per_block is None:
        return np.arange(n)
    return select_patches(np.arange(n) * E.PATCH_HOP, per_block=per_block)


def load_table(kind: str, per_block: int | None = None) -> dict[str, np.ndarray]:
    """A table written by ``embed`` (see the module docstring), as a dict of arrays."""
    path = table_path(kind, per_block)
    if not path.is_file():
        hint = "" if per_block is None else f" --per-block {per_block}"
        raise SystemExit(f"{path}: no table yet; run `python scripts/image_to_musicnn.py embed{hint}` first")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def split_columns(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from genrekit.networks import musicnn as E

    t, p = E.N_TAGS, E.N_TAGS + E.N_PENULTIMATE
    return arr[:, :t], arr[:, t:p], arr[:, p:]


def cmd_embed(args) -> int:
    from genrekit import store
    from genrekit.networks import musicnn as E
    from genrekit.run.engines import run_local
    from genrekit.run.items import ItemError

    data = Path(args.data)
    audio_src, image_src = sources(data)
    rows = feature_rows(data)
    kinds = args.kinds.split(",")
    for kind in kinds:
        if kind not in KINDS:
            raise SystemExit(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
        settings = settings_for(kind, data)
        cache = store.Cache(NAMESPACE, settings)
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
        for item, res in run_local(embed_item, items, jobs=args.jobs, desc=kind):
            if isinstance(res, ItemError):
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
            arr = arr[patch_subset(arr.shape[0], args.per_block)]
            ids.append(t)
            labels.append(src[t][0])
            n_patches.append(arr.shape[0])
            means.append(arr.mean(0))
            pen_std.append(split_columns(arr)[1].std(0))
        m = np.asarray(means, np.float32)
        tg, pen, pooled = split_columns(m)
        out = table_path(kind, args.per_block)
        settings = {**settings, "patches_per_block": args.per_block}
        with store.atomic_writer(out, "wb") as fh:
            np.savez(fh, track_ids=np.asarray(ids), labels=np.asarray(labels), n_patches=np.asarray(n_patches),
                     taggram=tg, penultimate=pen, pooled=pooled, penultimate_std=np.asarray(pen_std, np.float32),
                     settings=np.asarray(json.dumps(settings, sort_keys=True)))
        print(f"{kind}: table of {len(ids)} tracks -> {out}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------------ measuring the mapping


def paired_clips(data: Path, limit: int = 0) -> list[dict]:
    """The clips with audio and image: audio mel power at 22.05 kHz (the image's grid), musicnn's own
    input of the audio, the image's levels per pixel column, Kaggle's rms_mean and length."""
    from genrekit import audio as A
    from genrekit import spectrogram
    from genrekit.networks import musicnn as E

    audio_src, image_src = sources(data)
    rows = feature_rows(data)
    out = []
    for t in sorted(set(audio_src) & set(image_src))[: limit or None]:
        y = A.load(audio_src[t][1], sr=E.IMAGE_SR)
        out.append({"track": t, "label": audio_src[t][0], "n": y.size, "mel": spectrogram.melspectrogram(y),
                    "musicnn": E.musicnn_input(y, sr=E.IMAGE_SR),
                    "levels": spectrogram.invert_image(image_src[t][1], n_frames=E.IMAGE_COLUMNS),
                    "rms_mean": rows[t][0], "length": rows[t][1]})
    return out


def _column_corr(levels: np.ndarray, truth: np.ndarray, first: float, step: float) -> float:
    """Correlation of the image's columns with the audio's levels interpolated at frames first + step * c."""
    n = truth.shape[1]
    pos = first + step * np.arange(levels.shape[1])
    j = np.clip(np.floor(pos).astype(int), 0, n - 2)
    a = np.clip(pos - j, 0.0, 1.0)
    s = truth[:, j] * (1 - a) + truth[:, j + 1] * a
    return float(np.corrcoef(s.ravel(), levels.ravel())[0, 1])


def _column_fit(levels: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """(first frame, frames per column, correlation): where the image's columns sit on the audio's frames."""
    from scipy.optimize import minimize

    n = truth.shape[1]

    def corr(v):
        return _column_corr(levels, truth, v[0], v[1])

    grid = [(corr((p0, st)), p0, st) for p0 in np.arange(0.0, 6.01, 0.5) for st in n / levels.shape[1] * np.array(
        [0.998, 1.0, 1.002, 1.004, 1.006])]
    _, p0, st = max(grid)
    r = minimize(lambda v: -corr(v), [p0, st], method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-7})
    return float(r.x[0]), float(r.x[1]), float(-r.fun)


def cmd_align(args) -> int:
    """Fit where each pixel column sits in time, per paired clip; print the constants."""
    from genrekit import spectrogram
    from genrekit.networks import musicnn as E

    clips = paired_clips(Path(args.data), args.limit)
    rows = []
    for c in clips:
        truth = spectrogram.power_to_levels(c["mel"])
        n = truth.shape[1]
        p0, st, r = _column_fit(c["levels"], truth)
        default = _column_corr(c["levels"], truth, 0.5 * n / E.IMAGE_COLUMNS - 0.5, n / E.IMAGE_COLUMNS)  # pixel centres
        rows.append((n, p0, st, st * E.IMAGE_COLUMNS - n, r, default))
    R = np.array(rows)
    med = np.median(R, axis=0)
    print(f"{len(R)} paired clips: first column at frame {med[1]:.3f} (IQR {np.percentile(R[:, 1], 25):.3f}-"
          f"{np.percentile(R[:, 1], 75):.3f}), step {med[2]:.5f} frames = (frames + {med[3]:.2f}) / 336 "
          f"(IQR of the extra {np.percentile(R[:, 3], 25):.2f}-{np.percentile(R[:, 3], 75):.2f})")
    print(f"correlation of the columns with the audio's levels: {med[4]:.3f} median (min {R[:, 4].min():.3f}) "
          f"at the fitted positions; {np.median(R[:, 5]):.3f} at pixel centres (spectrogram's grid)")
    print(f"constants: IMAGE_FIRST_FRAME = {med[1]:.2f}, IMAGE_EXTRA_FRAMES = {med[3]:.2f} "
          f"(in genrekit.networks.musicnn.image: {E.IMAGE_FIRST_FRAME}, {E.IMAGE_EXTRA_FRAMES})")
    return 0


def cmd_calibrate(args) -> int:
    """Level recovery, the clip floor and the per-band offsets, measured on the paired clips."""
    from genrekit import splits
    from genrekit.networks import musicnn as E

    data = Path(args.data)
    clips = paired_clips(data, args.limit)
    # 1. the peak mel power from rms_mean (Parseval, no fitted constant) against the audio's own
    err = np.array([10 * np.log10(E.image_peak_power(c["levels"], c["rms_mean"]) / c["mel"].max()) for c in clips])
    print(f"peak from rms_mean vs the audio's peak, {len(clips)} clips: mean {err.mean():+.2f} dB, "
          f"std {err.std():.2f} dB, worst {err[np.abs(err).argmax()]:+.2f} dB "
          f"({clips[int(np.abs(err).argmax())]['track']})")
    from genrekit.dsp import mel_frequencies

    f = mel_frequencies(E.IMAGE_N_MELS + 2, fmin=0.0, fmax=E.IMAGE_SR / 2)
    widths = (f[2:] - f[:-2]) / 2
    X = np.array([[1.0, np.log10(c["rms_mean"]), np.log10(np.sqrt(widths @ 10 ** (4 * (c["levels"] - 1))).mean())]
                  for c in clips])
    yv = np.log10([c["mel"].max() for c in clips])
    loo = []
    for k in range(len(clips)):
        m = np.arange(len(clips)) != k
        coef = np.linalg.lstsq(X[m], yv[m], rcond=None)[0]
        loo.append(X[k] @ coef - yv[k])
    print(f"  (a 3-constant regression on the same inputs, leave-one-out: std {10 * np.std(loo):.2f} dB)")
    _, image_src = sources(data)
    rows = feature_rows(data)
    from genrekit import spectrogram

    peaks, ranges = [], []
    for t, (_, path) in sorted(image_src.items())[:: args.every]:
        lv = spectrogram.invert_image_cached(path, n_frames=E.IMAGE_COLUMNS)
        ranges.append(lv.min())
        peaks.append(E.image_peak_power(lv, rows[t][0]))
    print(f"every {args.every}th image ({len(peaks)}): lowest level {max(ranges):.3f} at most (0 = the 80 dB clip is "
          f"reached); median peak {np.median(peaks):.0f} (IMAGE_TYPICAL_PEAK {E.IMAGE_TYPICAL_PEAK:.0f})")
    # 2. the floor and the per-band offsets on the fault-filtered TRAIN side's pairs
    train = set(splits.fault_filtered()["train"])
    fit = [c for c in clips if c["track"] in train]
    rest = [c for c in clips if c["track"] not in train]
    if not fit or not rest:
        raise SystemExit(f"{len(fit)} train-side and {len(rest)} other pairs: need both (drop --limit)")

    def band_bias(cs, floor, offset):
        d = []
        for c in cs:
            x = E.musicnn_input_from_image(c["levels"], rms_mean=c["rms_mean"], n_samples=c["n"], floor_db=floor,
                                           band_offset=False) + offset
            d.append((c["musicnn"][: len(x)] - x).mean(axis=0))
        return np.array(d)

    for floor in (-90.0, -100.0, -105.0, -110.0, -120.0):
        d = band_bias(fit, floor, 0.0)
        print(f"floor {floor:.0f} dB: audio - image log-mel per band on {len(fit)} train-side pairs: mean "
              f"{d.mean():+.3f}, mean |band mean| {np.abs(d.mean(0)).mean():.3f}")
    d = band_bias(fit, E.IMAGE_FLOOR_DB, 0.0)
    offset = d.mean(axis=0)
    before = np.abs(band_bias(rest, E.IMAGE_FLOOR_DB, 0.0).mean(0)).mean()
    after = np.abs(band_bias(rest, E.IMAGE_FLOOR_DB, offset).mean(0)).mean()
    print(f"offsets fitted on {len(fit)} train-side pairs; on the other {len(rest)} pairs the mean |band bias| "
          f"goes {before:.3f} -> {after:.3f}")
    print("IMAGE_BAND_OFFSET = (" + ", ".join(f"{v:.2f}" for v in offset) + ")")
    return 0


# ------------------------------------------------------------------------------------------ main
# The heads (prove, todays, heads) are scripts/image_heads.py.


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("embed", help="cache per-track embeddings and write the tables")
    e.add_argument("--kinds", default="audio,image,audio-as-image")
    e.add_argument("--jobs", type=int, default=2)
    e.add_argument("--limit", type=int, default=0, help="first N tracks of each kind only (smoke runs)")
    e.add_argument("--per-block", type=int, default=None, metavar="K",
                   help="table means over K evenly spread patches per 30 s block, as `predict` with "
                        "patches_per_block=K scores a track (tables <kind>-pK.npz; per-patch cache shared)")
    pr = sub.add_parser("prove", help="cosine and transfer accuracy on the clips with audio and image")
    pr.add_argument("--out", default="", help="also write the report here")
    for name, helptext in (("align", "fit the pixel columns' timing"), ("calibrate", "level, floor, band offsets")):
        a = sub.add_parser(name, help=helptext)
        a.add_argument("--limit", type=int, default=0, help="first N paired clips only")
        a.add_argument("--every", type=int, default=1, help="calibrate: every Nth image for the image-wide checks")
    td = sub.add_parser("todays", help="refit today's recipe on TRAIN, cache its VALID probabilities")
    td.add_argument("--workdir", default=str(ROOT / "runs" / "transfer"))
    h = sub.add_parser("heads", help="fault-filtered VALID side: heads on musicnn embeddings and blends")
    h.add_argument("--features", default="penultimate,taggram,pooled,pen+tag")
    h.add_argument("--heads", default="logreg,linsvm,rbfsvm,mlp")
    h.add_argument("--workdir", default=str(ROOT / "runs" / "transfer"), help="where today's recipe is refitted")
    h.add_argument("--no-shipped", action="store_true", help="skip the shipped file's (in-sample) valid scores")
    h.add_argument("--out", default="")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from image_heads import cmd_heads, cmd_prove, cmd_todays  # the head study (its own file)

    return {"embed": cmd_embed, "prove": cmd_prove, "heads": cmd_heads, "align": cmd_align,
            "calibrate": cmd_calibrate, "todays": cmd_todays}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
