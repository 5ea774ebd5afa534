"""Training runs of the deep (log-mel) models under an honest protocol.

``train_run("shortchunk", "../shared/data/gtzan", "fault-filtered", "runs/x")`` builds one log-mel matrix
per track, splits by TRACK (:func:`genrekit.splits.protocol_folds`) *before* slicing, trains a
:class:`~genrekit.models.deep.DeepModel` with early stopping on the validation tracks, scores the test
side at slice and at track level, and writes ``model.safetensors`` + ``metrics.json`` + plots.

Data sources (``source``):

* ``audio`` -- any folder-per-label audio (``genrekit.datasets.scan_audio`` + ``genrekit.audio.load``);
  the model then sees full-resolution log-mels (``time_resolution="full"``).
* ``images`` -- Kaggle ``images_original`` PNGs, inverted onto the audio grid
  (:func:`genrekit.spectrogram.invert_image`, cached as ``.npy`` under ``$XDG_CACHE_HOME/genrekit``).
* ``auto`` (default) -- a GTZAN root holding both (like ``../shared/data/gtzan``): every clip that has an
  image is taken from its image, and clips that only have audio (jazz.00054 here) from the audio passed
  through :func:`~genrekit.spectrogram.to_image_grid`. One consistent representation for all 1000
  clips; the model's input description says ``time_resolution="image"`` so prediction treats new audio
  the same way. (Replacing images by audio where audio exists would mix two time resolutions in
  training; ``scripts/image_vs_audio.py`` measures why that matters.)
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import DatasetError, GenrekitError
from genrekit.models.registry import model_names

DEEP_MODELS = model_names("deep")  # the registry is the one list of model names
DEFAULT_MODEL = "shortchunk"
CACHE_VERSION = 1


@dataclass
class LogmelData:
    """One normalised log-mel matrix per track, with its label and where it came from."""

    matrices: list[np.ndarray]
    labels: np.ndarray
    track_ids: np.ndarray
    sources: np.ndarray  # "image" | "audio"
    time_resolution: str
    failed: list[tuple[str, str]]

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for t, lab, s in zip(self.track_ids, self.labels, self.sources, strict=True):
            h.update(f"{t}|{lab}|{s};".encode())
        return h.hexdigest()[:16]


def _audio_cache_key(path: Path, params: dict) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    h.update(json.dumps(params, sort_keys=True).encode())
    return h.hexdigest()[:32]


def audio_logmel_cached(path: str | os.PathLike, *, sr: int = 22050, n_fft: int = 2048, hop_length: int = 512,
                        n_mels: int = 128, time_resolution: str = "full", cache: bool = True) -> np.ndarray:
    """Log-mel of an audio file, cached by file content + parameters (``.npy`` under the genrekit cache)."""
    from genrekit import audio, engine, spectrogram

    path = Path(path)
    params = {"sr": sr, "n_fft": n_fft, "hop": hop_length, "n_mels": n_mels, "tr": time_resolution, "v": CACHE_VERSION}
    target = None
    if cache:
        target = engine.cache_root() / "logmel" / f"{_audio_cache_key(path, params)}.npy"
        if target.is_file():
            try:
                return np.load(target, allow_pickle=False)
            except (OSError, ValueError):
                pass
    y = audio.load(path, sr=sr)
    m = spectrogram.logmel(y, sr=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, time_resolution=time_resolution)
    if target is not None:
        try:
            with engine.atomic_writer(target, "wb") as fh:
                np.save(fh, m, allow_pickle=False)
        except OSError:
            pass
    return m


def load_logmels(data_path: str | os.PathLike, *, source: str = "auto", sr: int = 22050, n_fft: int = 2048,
                 hop_length: int = 512, n_mels: int = 128, cache: bool = True, progress: bool = True,
                 time_resolution: str | None = None, genres_only: bool = False) -> LogmelData:
    """Log-mel matrices for every track under ``data_path`` (see the module docstring for ``source``).

    Bad files are skipped and listed in ``failed`` (path, reason); the rest load. ``time_resolution``
    forces how audio is computed (a fine-tuned image-trained model wants ``"image"``).
    """
    from tqdm import tqdm

    from genrekit import datasets, spectrogram

    root = Path(data_path).expanduser()
    if not root.exists():
        raise DatasetError(f"{root}: no such file or folder (give an audio folder, a GTZAN root or images_original)")
    if source not in ("auto", "audio", "images"):
        raise GenrekitError(f"unknown data source {source!r}: use auto, audio or images")
    image_root = None
    if source in ("auto", "images"):
        if (root / "images_original").is_dir():
            image_root = root / "images_original"
        elif root.is_dir() and any(root.rglob("*.png")):
            image_root = root
        elif source == "images":
            raise DatasetError(f"{root}: holds no Kaggle images (images_original/<genre>/*.png)")
    items: list[tuple[str, str, Path, str]] = []  # (track id, label, path, kind)
    if image_root is not None:
        for t in datasets.scan_images(image_root):
            items.append((t.track_id, t.label, t.path, "image"))
    if source != "images":
        have = {i[0] for i in items}
        if image_root is not None:
            audio_dirs = datasets.GTZAN(root).audio_dirs if root == image_root.parent else []
        else:
            audio_dirs = [root]
        for t in (datasets.scan_audio(audio_dirs, genres_only=genres_only) if audio_dirs else []):
            if t.track_id not in have:
                items.append((t.track_id, t.label, t.path, "audio"))
    if not items:
        raise DatasetError(f"{root}: found no audio files or Kaggle images to train on")
    unlabelled = [str(p) for _, lab, p, _ in items if not lab]
    if unlabelled:
        raise DatasetError(
            f"{unlabelled[0]}: no label (put each file in a folder named after its label); "
            f"{len(unlabelled)} such file(s)"
        )
    time_res = time_resolution or ("image" if image_root is not None else "full")
    mats, labs, tids, srcs, failed = [], [], [], [], []
    for tid, lab, path, kind in tqdm(items, desc="log-mel", unit="track", disable=not progress, file=sys.stderr):
        try:
            if kind == "image":
                m = spectrogram.invert_image_cached(path, n_mels=n_mels) if cache else spectrogram.invert_image(path, n_mels=n_mels)
            else:
                m = audio_logmel_cached(path, sr=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels,
                                        time_resolution=time_res, cache=cache)
        except GenrekitError as exc:
            failed.append((str(path), str(exc)))
            continue
        mats.append(m)
        labs.append(lab)
        tids.append(tid)
        srcs.append(kind)
    if not mats:
        raise DatasetError(f"{root}: none of the {len(items)} files could be read ({failed[0][1]})")
    return LogmelData(mats, np.array(labs), np.array(tids), np.array(srcs), time_res, failed)


def make_slices(data: LogmelData, idx, *, width: int, overlap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slices of ``width`` frames from the tracks ``idx`` -> (X, labels, track ids), one row per slice."""
    from genrekit.spectrogram import slice_starts

    xs, ys, gs = [], [], []
    for i in idx:
        m = data.matrices[i]
        if m.shape[1] < width:
            m = np.pad(m, ((0, 0), (0, width - m.shape[1])))
        starts = slice_starts(m.shape[1], width=width, overlap=overlap)
        xs.append(np.stack([m[:, s : s + width] for s in starts]))
        ys += [data.labels[i]] * len(starts)
        gs += [data.track_ids[i]] * len(starts)
    if not xs:
        return np.zeros((0, data.matrices[0].shape[0], width), np.float32), np.array([]), np.array([])
    return np.concatenate(xs).astype(np.float32), np.array(ys), np.array(gs)


def _score(model, data: LogmelData, idx, *, width: int, overlap: float, method: str = "mean_log") -> dict[str, Any]:
    from genrekit.evaluate import aggregate_tracks, classification_metrics

    X, y, g = make_slices(data, idx, width=width, overlap=overlap)
    proba = model.predict_proba(X)
    classes = [str(c) for c in model.classes_]
    slice_pred = np.asarray(model.classes_)[proba.argmax(1)]
    tids, tproba = aggregate_tracks(g, proba, method=method)
    lab = dict(zip(g, y, strict=True))
    ty = np.array([lab[t] for t in tids])
    tpred = np.asarray(model.classes_)[tproba.argmax(1)]
    return {
        "slice": classification_metrics(y, slice_pred, classes), "track": classification_metrics(ty, tpred, classes),
        "slice_y": y, "slice_pred": slice_pred, "slice_proba": proba,
        "track_ids": tids, "track_y": ty, "track_pred": tpred, "track_proba": tproba,
        "vote_track_accuracy": float(np.mean(
            np.asarray(model.classes_)[aggregate_tracks(g, proba, method="vote")[1].argmax(1)] == ty)),
    }


def train_run(
    model_name: str, data_path: str | os.PathLike, protocol: str, out_dir: str | os.PathLike, *, seed: int = 0,
    epochs: int = 30, device: str = "auto", augment: str | None = "default", resume: bool = False,
    batch_size: int = 64, lr: float = 2e-3, weight_decay: float = 1e-2, net_width: int = 1,
    slice_seconds: float = 3.0, train_overlap: float = 0.0, eval_overlap: float = 0.5, patience: int = 10,
    source: str = "auto", valid_size: float = 0.15, folds: int | None = None, threads: int | None = 1,
    max_minutes: float | None = None, aggregate: str = "mean_log", progress: bool = True, ema: float | None = 0.995,
    refit: bool = False, split_seed: int | None = None, **_ignored: Any,
) -> dict[str, Any]:
    """Train ``model_name`` on ``data_path`` under ``protocol``; write the run to ``out_dir``; return metrics.

    Split by track before slicing; early stopping on the validation tracks (the protocol's own valid
    side, else ``valid_size`` of the training tracks). Writes ``model.safetensors`` (for k-fold
    protocols, one per fold under ``fold<i>/`` and the first fold's copy at the top), ``metrics.json``
    (track level), ``slices/metrics.json`` (slice level), ``report.txt``, ``confusion.png``, ``curves.png``.

    ``refit=True`` trains on the training *and* validation tracks for exactly ``epochs`` epochs, without
    early stopping: once a recipe and its epoch count were chosen on validation, the final model may
    learn from those tracks too (on the fault-filtered split they add 197 tracks by other artists).
    Test tracks stay untouched either way. ``split_seed`` (default ``seed``) seeds the folds alone, so
    runs with different model seeds can share folds and be ensembled (``scripts/deep_ensemble.py``).
    """
    from genrekit import __version__, spectrogram, splits
    from genrekit.augment import AugmentConfig
    from genrekit.evaluate import write_json, write_run_report
    from genrekit.models.deep import DeepModel

    if model_name not in DEEP_MODELS:
        raise GenrekitError(f"unknown deep model {model_name!r}; choose one of {', '.join(DEEP_MODELS)}")
    aug = AugmentConfig.parse(augment)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = load_logmels(data_path, source=source, progress=progress)
    for path, why in data.failed:
        print(f"genrekit train: skipped {path}: {why}", file=sys.stderr)
    width = spectrogram.slice_frames(seconds=slice_seconds)
    train_width = width + (aug.crop_frames if aug.crop else 0)
    inp = spectrogram.input_description(slice_seconds=slice_seconds, slice_overlap=eval_overlap,
                                        time_resolution=data.time_resolution)
    kw = {"valid_size": valid_size} if protocol != "fault-filtered" else {}
    if folds:
        kw["k"] = folds
    split_seed = seed if split_seed is None else int(split_seed)
    fold_list = splits.protocol_folds(protocol, data.track_ids, data.labels, seed=split_seed, **kw)
    pos = {t: i for i, t in enumerate(data.track_ids)}
    fold_results, pooled = [], {"y": [], "pred": [], "proba": [], "sy": [], "spred": [], "sproba": []}
    first_model = None
    for fold in fold_list:
        fdir = out if len(fold_list) == 1 else out / f"fold{fold.index}"
        tr = [pos[t] for t in fold.train]
        va = [pos[t] for t in fold.valid]
        if refit:
            tr, va = tr + va, []
        te = [pos[t] for t in fold.test]
        Xtr, ytr, gtr = make_slices(data, tr, width=train_width, overlap=train_overlap)
        Xva, yva, gva = make_slices(data, va, width=width, overlap=0.0)
        print(f"{protocol} fold {fold.index}: {len(tr)} train / {len(va)} valid / {len(te)} test tracks; "
              f"{len(Xtr)} training slices of {train_width} frames", file=sys.stderr)
        model = DeepModel(model_name, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                          width=net_width, augment=aug, input=inp,
                          input_frames=width, patience=patience, seed=seed, device=device, threads=threads,
                          checkpoint_dir=fdir, resume=resume, verbose=progress, max_minutes=max_minutes, ema=ema)
        model.fit(Xtr, ytr, groups=gtr, X_valid=Xva if len(va) else None, y_valid=yva if len(va) else None,
                  groups_valid=gva if len(va) else None)
        sc = _score(model, data, te, width=width, overlap=eval_overlap, method=aggregate)
        split_meta = {
            "protocol": protocol, "fold": fold.index, "n_folds": len(fold_list), "seed": seed,
            "split_seed": split_seed,
            "train_tracks": [str(t) for t in (list(fold.train) + list(fold.valid) if refit else fold.train)],
            "valid_tracks": [] if refit else [str(t) for t in fold.valid], "refit": bool(refit),
            "n_test_tracks": len(fold.test),
            "note": "test tracks never seen in training or early stopping",
        }
        record = {
            "model": model_name, "protocol": protocol, "fold": fold.index, "seed": seed,
            "data": str(data_path), "data_fingerprint": data.fingerprint(), "source": source,
            "time_resolution": data.time_resolution, "n_tracks": len(data.track_ids),
            "sources_count": {s: int(np.sum(data.sources == s)) for s in np.unique(data.sources)},
            "params": model.get_params(), "augment": aug.to_dict(), "input": inp,
            "split": {"train": len(tr), "valid": len(va), "test": len(te)},
            "aggregate": aggregate, "refit": bool(refit), "best_epoch": model.best_epoch_, "stopped": model.stopped_,
            "train_seconds": model.train_seconds_, "genrekit_version": __version__,
            "torch_threads": threads, "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "track_accuracy": sc["track"]["accuracy"], "slice_accuracy": sc["slice"]["accuracy"],
            "track_vote_accuracy": sc["vote_track_accuracy"],
        }
        model.save(fdir / "model.safetensors", extra_meta={"trained_on": {**split_meta, "data_fingerprint": data.fingerprint(),
                                                                            "source": source, "data": str(data_path)},
                                                           "test_scores": {"track_accuracy": sc["track"]["accuracy"],
                                                                           "slice_accuracy": sc["slice"]["accuracy"]}})
        write_run_report(fdir, {**record, "level": "track"}, y_true=sc["track_y"], y_pred=sc["track_pred"],
                         proba=sc["track_proba"], classes=list(model.classes_), history=model.history_)
        write_run_report(fdir / "slices", {**record, "level": "slice"}, y_true=sc["slice_y"], y_pred=sc["slice_pred"],
                         proba=sc["slice_proba"], classes=list(model.classes_), history=None)
        write_json(fdir / "config.json", {"model": model_name, "data": str(data_path), "protocol": protocol,
                                          "params": model.get_params(), "augment": aug.to_dict(), "input": inp})
        print(f"{protocol} fold {fold.index} TEST: track-level accuracy {sc['track']['accuracy']:.3f}, "
              f"slice-level {sc['slice']['accuracy']:.3f} ({len(te)} tracks)", file=sys.stderr)
        fold_results.append(record)
        pooled["y"] += list(sc["track_y"])
        pooled["pred"] += list(sc["track_pred"])
        pooled["proba"].append(sc["track_proba"])
        if first_model is None:
            first_model = fdir / "model.safetensors"
    if len(fold_list) > 1:
        accs = [r["track_accuracy"] for r in fold_results]
        saccs = [r["slice_accuracy"] for r in fold_results]
        summary = {
            "model": model_name, "protocol": protocol, "level": "track", "seed": seed, "data": str(data_path),
            "data_fingerprint": data.fingerprint(), "accuracy": float(np.mean(accs)), "accuracy_std": float(np.std(accs)),
            "fold_accuracies": accs, "slice_accuracy": float(np.mean(saccs)), "slice_fold_accuracies": saccs,
            "augment": aug.to_dict(), "params": fold_results[0]["params"], "input": inp,
            "seconds": round(time.time() - t0, 1),
        }
        write_run_report(out, summary, y_true=pooled["y"], y_pred=pooled["pred"], proba=np.concatenate(pooled["proba"]),
                         classes=[str(c) for c in np.unique(data.labels)])
        import shutil

        shutil.copyfile(first_model, out / "model.safetensors")
        return summary
    result = dict(fold_results[0])
    result["seconds"] = round(time.time() - t0, 1)
    return result
