import numpy as np
import pytest

from genrekit import splits
from genrekit.errors import LeakageError, SplitError

GENRES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]
ALL = np.array([f"{g}.{i:05d}" for g in GENRES for i in range(100)])
LABELS = np.array([t.split(".")[0] for t in ALL])


def test_fault_filtered_sizes_and_disjoint():
    ff = splits.fault_filtered()
    assert {k: len(v) for k, v in ff.items()} == {"train": 443, "valid": 197, "test": 290}
    splits.check_no_leakage(ff["train"], ff["valid"], ff["test"])
    (fold,) = splits.protocol_folds("fault-filtered", ALL, LABELS)
    assert (len(fold.train), len(fold.valid), len(fold.test)) == (443, 197, 290)


def test_artist3_is_artist_disjoint():
    folds = splits.protocol_folds("artist3", ALL, LABELS, valid_size=0.1)
    assert len(folds) == 3
    assert sum(len(f.test) for f in folds) == 948
    groups = splits.artist_groups()
    for f in folds:
        test_artists = {groups[t] for t in f.test}
        assert not test_artists & {groups[t] for t in np.concatenate([f.train, f.valid])}


@pytest.mark.parametrize("name", ["random", "kfold", "fault-filtered", "artist3"])
def test_segment_expansion_passes_the_guard(name):
    seg_tids = np.repeat(ALL, 10)
    seg_labels = np.repeat(LABELS, 10)
    for fold in splits.protocol_folds(name, seg_tids, seg_labels, valid_size=0.1 if name != "fault-filtered" else 0):
        tr, va, te = splits.expand_to_segments(fold, seg_tids)
        assert len(te) == 10 * len(fold.test)
        assert not set(seg_tids[tr]) & set(seg_tids[te])
        assert not set(seg_tids[va]) & set(seg_tids[te])


def test_kfold_covers_every_track_once():
    folds = splits.protocol_folds("kfold", ALL, LABELS)
    assert len(folds) == 10
    tested = np.concatenate([f.test for f in folds])
    assert sorted(tested) == sorted(ALL)


def test_random_is_stratified_and_seeded():
    a = splits.protocol_folds("random", ALL, LABELS, seed=1)[0]
    b = splits.protocol_folds("random", ALL, LABELS, seed=1)[0]
    c = splits.protocol_folds("random", ALL, LABELS, seed=2)[0]
    assert list(a.test) == list(b.test) and list(a.test) != list(c.test)
    _, counts = np.unique([t.split(".")[0] for t in a.test], return_counts=True)
    assert set(counts) == {20}


def test_group_kfold_keeps_groups_together():
    groups = {t: int(t.split(".")[1]) // 10 for t in ALL}  # 10 "artists" per genre
    folds = splits.protocol_folds("group-kfold", ALL, LABELS, groups=groups, k=5)
    for f in folds:
        assert not {groups[t] for t in f.test} & {groups[t] for t in f.train}
    with pytest.raises(SplitError, match="needs a group"):
        splits.protocol_folds("group-kfold", ALL, LABELS)


def test_guard_raises_on_leakage():
    with pytest.raises(LeakageError, match="blues.00001"):
        splits.check_no_leakage(["blues.00001", "blues.00002"], ["blues.00001"])
    with pytest.raises(LeakageError):
        splits.Fold("x", 0, np.array(["a"]), np.array([], dtype=str), np.array(["a"]))


def test_errors():
    with pytest.raises(SplitError, match="unknown protocol"):
        splits.protocol_folds("leaky", ALL, LABELS)
    with pytest.raises(SplitError, match="no tracks"):
        splits.protocol_folds("fault-filtered", ["x", "y"], ["a", "b"])
    with pytest.raises(SplitError, match="two labels"):
        splits.protocol_folds("random", ["a", "a", "b"], ["x", "y", "x"])


@pytest.mark.shared
def test_shipped_lists_match_shared_files(gtzan):
    from genrekit.datasets import track_id

    for side, n in (("train", 443), ("valid", 197), ("test", 290)):
        lines = [s for s in (gtzan / "splits" / f"{side}_filtered.txt").read_text().splitlines() if s.strip()]
        assert [track_id(s) for s in lines] == list(splits.fault_filtered()[side]) and len(lines) == n


def test_too_few_tracks_for_a_validation_side_is_a_clear_error():
    tids = [f"t{i}" for i in range(12)]
    labels = ["a", "b"] * 6
    with pytest.raises(SplitError, match="cannot carve a stratified validation side"):
        splits.protocol_folds("kfold", tids, labels, k=2, valid_size=0.15)  # 6 train tracks: 1 valid < 2 labels
    folds = splits.protocol_folds("kfold", tids, labels, k=2, valid_size=0.4)
    assert all(len(f.valid) >= 2 for f in folds)
