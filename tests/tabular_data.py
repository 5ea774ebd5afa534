"""Synthetic Kaggle-style feature tables for the tabular-model tests (tiny, deterministic, learnable)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genrekit import GENRES
from genrekit.datasets import FEATURE_COLUMNS


def synthetic_rows(n_per_class: int = 20, genres=GENRES[:4], *, seed: int = 0, segments: int = 0,
                   ids: list[str] | None = None):
    """(filenames, X, labels): class-dependent means plus noise; var columns stay positive.

    ``ids``: use these GTZAN track ids (e.g. from the fault-filtered lists) instead of numbering.
    ``segments``: rows per track named like Kaggle's 3 s table (``blues.00000.3.wav``); the segments
    of one track share a track-level offset, so leakage across a split would be rewarded.
    """
    rng = np.random.default_rng(seed)
    n_feat = len(FEATURE_COLUMNS)
    centers = {g: rng.normal(0, 1.0, n_feat) for g in GENRES}
    if ids is None:
        ids = [f"{g}.{i:05d}" for g in genres for i in range(n_per_class)]
    names, rows, labels = [], [], []
    for tid in ids:
        g = tid.split(".")[0]
        track_offset = rng.normal(0, 1.0, n_feat)
        for s in range(max(segments, 1)):
            x = centers[g] + track_offset + rng.normal(0, 0.5, n_feat)
            names.append(f"{tid}.{s}.wav" if segments else f"{tid}.wav")
            rows.append(x)
            labels.append(g)
    X = np.array(rows)
    var_cols = [i for i, c in enumerate(FEATURE_COLUMNS) if c.endswith("_var")]
    X[:, var_cols] = np.exp(X[:, var_cols])
    return names, X, labels


def write_csv(path: Path, names, X, labels, *, columns=None) -> Path:
    import pandas as pd

    columns = list(columns or FEATURE_COLUMNS)
    df = pd.DataFrame(X[:, : len(columns)], columns=columns)
    df.insert(0, "length", 661794)
    df.insert(0, "filename", names)
    df["label"] = labels
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


def synthetic_csv(path: Path, **kw) -> Path:
    names, X, labels = synthetic_rows(**kw)
    return write_csv(path, names, X, labels)


def fault_filtered_ids(per_side: int = 6) -> list[str]:
    """A few ids of each genre from each side of the shipped fault-filtered split."""
    from genrekit.splits import fault_filtered

    ff = fault_filtered()
    out = []
    for side in ("train", "valid", "test"):
        for g in GENRES[:4]:
            out += [t for t in ff[side] if t.startswith(g + ".")][:per_side]
    return out
