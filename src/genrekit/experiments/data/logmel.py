"""Log-mel matrices as a run's data: one normalised matrix per track, from audio (cached by content) or
Kaggle's images (inverted onto the audio grid), sliced by role (train with crop frames, valid, test with
the prediction overlap)."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import DatasetError, GenrekitError
from genrekit.experiments.data.tables import Arrays

__all__ = ["LOGMEL_CACHE_VERSION", "LogmelData", "LogmelSource", "audio_logmel_cached", "load_logmels", "make_slices"]

LOGMEL_CACHE_VERSION = 1


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


def audio_logmel_cached(path: str | os.PathLike, *, sr: int = 22050, n_fft: int = 2048, hop_length: int = 512,
                        n_mels: int = 128, time_resolution: str = "full", cache: bool = True) -> np.ndarray:
    """Log-mel of an audio file, cached by file content + parameters (:class:`genrekit.store.Cache`)."""
    from genrekit import audio, spectrogram
    from genrekit.store import Cache

    settings = {"sr": sr, "n_fft": n_fft, "hop": hop_length, "n_mels": n_mels, "tr": time_resolution,
                "v": LOGMEL_CACHE_VERSION}
    store = Cache("logmel", settings, enabled=cache)
    key = None
    if cache:
        try:
            key = store.key(path)
        except OSError:
            key = None  # unreadable: audio.load below says why, in its own words
        hit = store.get_array(key) if key is not None else None
        if hit is not None:
            return hit
    y = audio.load(path, sr=sr)
    m = spectrogram.logmel(y, sr=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, time_resolution=time_resolution)
    if key is not None:
        try:
            store.put_array(key, m)
        except OSError:
            pass  # a full or read-only cache costs time, not correctness
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
    found, image_root = datasets.image_or_audio_tracks(root, source=source, genres_only=genres_only)
    items = [(t.track_id, t.label, t.path, kind) for t, kind in found]  # (track id, label, path, kind)
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


class LogmelSource:
    """Log-mel matrices as a run's data: slices of the tracks asked for, in the order asked.

    Training slices are ``width + train_extra_frames`` wide (the extra frames feed the random-crop
    augmentation) cut with ``train_overlap``; early-stopping slices use ``valid_overlap``; test slices
    ``eval_overlap``, the overlap prediction uses (recorded in :meth:`input_description`). ``input``
    overrides the input description (fine-tuning keeps the source model's).
    """

    kind = "logmel"
    segment_unit = "slice"

    def __init__(self, data: LogmelData, *, slice_seconds: float = 3.0, train_overlap: float = 0.0,
                 valid_overlap: float = 0.0, eval_overlap: float = 0.5, train_extra_frames: int = 0,
                 input: dict | None = None, width: int | None = None, source: str = "auto", path: str = ""):
        from genrekit import spectrogram

        self.data = data
        self.slice_seconds = float(slice_seconds)
        self.train_overlap = float(train_overlap)
        self.valid_overlap = float(valid_overlap)
        self.eval_overlap = float(eval_overlap)
        self.train_extra_frames = int(train_extra_frames)
        self.width = int(width or spectrogram.slice_frames(seconds=slice_seconds))
        self.input = dict(input) if input else spectrogram.input_description(
            slice_seconds=slice_seconds, slice_overlap=eval_overlap, time_resolution=data.time_resolution)
        self.source_kind = source
        self.path = str(path)
        self.track_ids = np.asarray(data.track_ids).astype(str)
        self.labels = np.asarray(data.labels).astype(str)
        self._pos = {t: i for i, t in enumerate(self.track_ids)}

    @classmethod
    def load(cls, data_path: str | os.PathLike, *, source: str = "auto", progress: bool = True,
             cache: bool = True, time_resolution: str | None = None, sr: int = 22050, n_fft: int = 2048,
             hop_length: int = 512, n_mels: int = 128, **slicing: Any) -> LogmelSource:
        """:func:`load_logmels` of ``data_path``; ``slicing`` are this class's slice settings."""
        data = load_logmels(data_path, source=source, progress=progress, cache=cache, time_resolution=time_resolution,
                            sr=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
        return cls(data, source=source, path=str(data_path), **slicing)

    @property
    def source(self) -> str:
        return self.path

    @property
    def segmented(self) -> bool:
        return True

    @property
    def segment_seconds(self) -> float:
        return self.slice_seconds

    @property
    def failed(self) -> list[tuple[str, str]]:
        return list(self.data.failed)

    def fingerprint(self) -> str:
        return self.data.fingerprint()

    def describe(self) -> dict[str, Any]:
        srcs = self.data.sources
        return {
            "n_tracks": int(len(self.track_ids)), "n_rows": int(len(self.track_ids)), "segmented": True,
            "segment_seconds": self.slice_seconds, "source": self.source_kind,
            "time_resolution": self.data.time_resolution,
            "sources_count": {str(s): int(np.sum(srcs == s)) for s in np.unique(srcs)},
            "input": self.input,
        }

    def positions(self, tracks: Sequence[str]) -> list[int]:
        """Index of each of ``tracks`` in :attr:`data`, in the order given."""
        return [self._pos[str(t)] for t in tracks]

    def arrays(self, tracks: Sequence[str], role: str = "test") -> Arrays:
        """Slices of ``tracks``: ``role`` "train", "valid" or "test" sets their width and overlap."""
        if role == "train":
            width, overlap = self.width + self.train_extra_frames, self.train_overlap
        elif role == "valid":
            width, overlap = self.width, self.valid_overlap
        elif role == "test":
            width, overlap = self.width, self.eval_overlap
        else:
            raise GenrekitError(f"unknown role {role!r}: use train, valid or test")
        X, y, g = make_slices(self.data, self.positions(tracks), width=width, overlap=overlap)
        return Arrays(X, y, g)

    def fit(self, model, train: Sequence[str], valid: Sequence[str]) -> None:
        """Fit ``model`` on the slices of ``train``, early-stopping on the slices of ``valid`` (may be empty)."""
        tr, va = self.arrays(train, "train"), self.arrays(valid, "valid")
        if not len(tr):
            raise DatasetError(f"{self.path or 'log-mel data'}: no slices of the training tracks")
        has_valid = len(valid) > 0
        model.fit(tr.X, tr.y, groups=tr.groups, X_valid=va.X if has_valid else None,
                  y_valid=va.y if has_valid else None, groups_valid=va.groups if has_valid else None)

    def predict(self, model, tracks: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        te = self.arrays(tracks, "test")
        return te.groups, te.y, model.predict_proba(te.X), [str(c) for c in model.classes_]
