"""Honest evaluation protocols, always split by TRACK, with a guard against leakage.

Cutting 3 s segments before splitting puts segments of one track on both sides, and a random split lets
one artist sit on both sides: both inflate GTZAN accuracy by 10 to 25 points. Every protocol here works
on track ids; segment rows are mapped to folds afterwards by :func:`expand_to_segments`, which checks
that no track id is on two sides.

Protocols: ``random`` (stratified 80/20 hold-out), ``kfold`` (stratified k-fold, default 10),
``fault-filtered`` (Kereliuk, Sturm & Larsen 2015: artist-disjoint, faults removed; 443/197/290),
``artist3`` (Foleis & Tavares: artist-filtered stratified 3-fold) and ``group-kfold`` (any grouping).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from genrekit.errors import LeakageError, SplitError

PROTOCOLS = ("random", "kfold", "fault-filtered", "artist3", "group-kfold")

PROTOCOL_DESCRIPTIONS = {
    "random": "stratified random 80/20 hold-out by track (not artist-filtered: optimistic)",
    "kfold": "stratified k-fold by track (not artist-filtered: optimistic), mean +- std over folds",
    "fault-filtered": "fault-filtered artist-disjoint split (Kereliuk, Sturm & Larsen 2015), test side",
    "artist3": "artist-filtered stratified 3-fold CV (Foleis & Tavares), mean +- std over folds",
    "group-kfold": "stratified group k-fold by the given groups (e.g. artist)",
}


@dataclass(frozen=True)
class Fold:
    """Track ids on each side of one fold; ``valid`` may be empty."""

    protocol: str
    index: int
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def __post_init__(self):
        check_no_leakage(self.train, self.valid, self.test, where=f"{self.protocol} fold {self.index}")


def check_no_leakage(*sides: Iterable[str], where: str = "split") -> None:
    """Raise :class:`LeakageError` if any track id appears on more than one side."""
    seen: dict[str, int] = {}
    for i, side in enumerate(sides):
        for tid in set(map(str, side)):
            if tid in seen and seen[tid] != i:
                raise LeakageError(f"{where}: track {tid} appears on two sides of the split (leakage)")
            seen[tid] = i


# ---------------------------------------------------------------------------------------------- shipped lists


def _read(name: str) -> str:
    return resources.files("genrekit").joinpath("data", "splits", name).read_text()


@lru_cache(maxsize=1)
def fault_filtered() -> dict[str, tuple[str, ...]]:
    """The fault-filtered split shipped with genrekit: {'train': 443, 'valid': 197, 'test': 290} ids."""
    return {
        side: tuple(line.strip() for line in _read(f"fault_filtered_{side}.txt").splitlines() if line.strip())
        for side in ("train", "valid", "test")
    }


@lru_cache(maxsize=1)
def artist3() -> dict[str, tuple[int, int, str]]:
    """track id -> (test fold 1..3, artist group id, label) for the artist-filtered 3-fold split."""
    out = {}
    for line in _read("artist3.tsv").splitlines()[1:]:
        if line.strip():
            tid, label, fold, artist = line.split("\t")
            out[tid] = (int(fold), int(artist), label)
    return out


def artist_groups() -> dict[str, int]:
    """Artist group id per track (948 GTZAN tracks), for group k-fold or artist-aware validation."""
    return {t: a for t, (_, a, _) in artist3().items()}


# ---------------------------------------------------------------------------------------------- protocols


def _unique_tracks(track_ids: Sequence[str], labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    tids = np.asarray(track_ids).astype(str)
    labs = np.asarray(labels).astype(str)
    if tids.shape != labs.shape:
        raise SplitError("track_ids and labels must have the same length")
    u, first = np.unique(tids, return_index=True)
    ul = labs[first]
    for t, lab in zip(tids, labs, strict=True):  # a track has one label
        if ul[np.searchsorted(u, t)] != lab:
            raise SplitError(f"track {t} carries two labels")
    return u, ul


def _carve_valid(train: np.ndarray, labels: dict[str, str], valid_size: float, seed: int, groups=None):
    if valid_size <= 0:
        return train, np.array([], dtype=str)
    y = np.array([labels[t] for t in train])
    if groups is not None:
        from sklearn.model_selection import GroupShuffleSplit

        g = np.array([groups.get(t, t) for t in train])
        tr, va = next(GroupShuffleSplit(1, test_size=valid_size, random_state=seed).split(train, y, g))
    else:
        from sklearn.model_selection import train_test_split

        n_valid = int(np.ceil(valid_size * len(train))) if valid_size < 1 else int(valid_size)
        _, counts = np.unique(y, return_counts=True)
        if n_valid < len(counts) or len(train) - n_valid < len(counts) or counts.min() < 2:
            raise SplitError(
                f"cannot carve a stratified validation side of {valid_size:g} from {len(train)} training tracks "
                f"of {len(counts)} labels (fewest per label: {counts.min()}): each side needs a track of every "
                "label; give more tracks per label or a validation size of 0")
        tr, va = train_test_split(np.arange(len(train)), test_size=valid_size, stratify=y, random_state=seed)
    return train[np.sort(tr)], train[np.sort(va)]


def protocol_folds(
    name: str,
    track_ids: Sequence[str],
    labels: Sequence[str],
    *,
    seed: int = 0,
    k: int | None = None,
    test_size: float = 0.2,
    valid_size: float = 0.0,
    groups: dict[str, object] | None = None,
) -> list[Fold]:
    """Folds of TRACK ids for protocol ``name`` over the tracks present in the data.

    ``track_ids``/``labels`` may be per segment (repeated ids): they are reduced to tracks first.
    ``valid_size`` > 0 carves a validation side out of each training side (for early stopping) where the
    protocol has none of its own (fault-filtered has one); under ``artist3``/``group-kfold`` it is carved
    by group. Tracks a shipped protocol does not list are left out (e.g. fault-filtered drops 70).
    """
    tids, labs = _unique_tracks(track_ids, labels)
    label_of = dict(zip(tids, labs, strict=True))
    folds: list[Fold] = []
    if name == "random":
        from sklearn.model_selection import train_test_split

        tr, te = train_test_split(tids, test_size=test_size, stratify=labs, random_state=seed)
        tr, va = _carve_valid(np.sort(tr), label_of, valid_size, seed)
        folds.append(Fold(name, 0, tr, va, np.sort(te)))
    elif name == "kfold":
        from sklearn.model_selection import StratifiedKFold

        k = k or 10
        _check_per_class(labs, k, name)
        for i, (tr, te) in enumerate(StratifiedKFold(k, shuffle=True, random_state=seed).split(tids, labs)):
            trn, va = _carve_valid(tids[tr], label_of, valid_size, seed)
            folds.append(Fold(name, i, trn, va, tids[te]))
    elif name == "fault-filtered":
        ff = fault_filtered()
        present = set(tids)
        sides = {s: np.array(sorted(present.intersection(ff[s])), dtype=str) for s in ff}
        if not len(sides["train"]) or not len(sides["test"]):
            raise SplitError(
                "fault-filtered: the data holds no tracks of the train or test list "
                f"({len(sides['train'])} train, {len(sides['test'])} test of {len(tids)} tracks given); "
                "it needs GTZAN track ids like blues.00012"
            )
        folds.append(Fold(name, 0, sides["train"], sides["valid"], sides["test"]))
    elif name == "artist3":
        a3 = artist3()
        present = [t for t in tids if t in a3]
        if not present:
            raise SplitError("artist3: the data holds none of the 948 listed GTZAN tracks")
        groups = groups or artist_groups()
        for f in (1, 2, 3):
            te = np.array([t for t in present if a3[t][0] == f], dtype=str)
            tr = np.array([t for t in present if a3[t][0] != f], dtype=str)
            tr, va = _carve_valid(tr, label_of, valid_size, seed, groups=groups)
            folds.append(Fold(name, f - 1, tr, va, te))
            _check_groups(folds[-1], groups)
    elif name == "group-kfold":
        if groups is None:
            raise SplitError("group-kfold needs a group per track (e.g. artist ids)")
        from sklearn.model_selection import StratifiedGroupKFold

        k = k or 5
        missing = [t for t in tids if t not in groups]
        if missing:
            raise SplitError(f"group-kfold: no group for track {missing[0]} ({len(missing)} tracks without one)")
        g = np.array([str(groups[t]) for t in tids])
        for i, (tr, te) in enumerate(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(tids, labs, g)):
            trn, va = _carve_valid(tids[tr], label_of, valid_size, seed, groups=groups)
            folds.append(Fold(name, i, trn, va, tids[te]))
            _check_groups(folds[-1], groups)
    else:
        raise SplitError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    return folds


def _check_per_class(labs: np.ndarray, k: int, name: str) -> None:
    _, counts = np.unique(labs, return_counts=True)
    if counts.min() < k:
        raise SplitError(f"{name}: a class has only {counts.min()} tracks, fewer than the {k} folds")


def _check_groups(fold: Fold, groups: dict[str, object]) -> None:
    """No artist (group) may sit on both the training and the test side."""
    train_groups = {groups[t] for t in np.concatenate([fold.train, fold.valid]) if t in groups}
    for t in fold.test:
        if t in groups and groups[t] in train_groups:
            raise LeakageError(f"{fold.protocol} fold {fold.index}: group {groups[t]} of track {t} on both sides")


def expand_to_segments(fold: Fold, segment_track_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of segment-level data on each side of a track-level fold (guarded against leakage)."""
    tids = np.asarray(segment_track_ids).astype(str)
    idx = tuple(np.flatnonzero(np.isin(tids, side)) for side in (fold.train, fold.valid, fold.test))
    check_no_leakage(*(tids[i] for i in idx), where=f"{fold.protocol} fold {fold.index} (segments)")
    return idx
