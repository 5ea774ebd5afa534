import numpy as np
import pytest

from genrekit import datasets
from genrekit.datasets import FEATURE_COLUMNS
from genrekit.errors import DatasetError
from helpers import tone, write_audio


@pytest.mark.parametrize(
    "name,expected",
    [
        ("blues.00012.wav", ("blues.00012", None)),
        ("genres/blues/blues.00012.au", ("blues.00012", None)),
        ("blues00012.png", ("blues.00012", None)),
        ("./blues_00012.wav", ("blues.00012", None)),
        ("blues.00012.3.wav", ("blues.00012", 3)),
        ("hiphop.00099.flac", ("hiphop.00099", None)),
        ("my song.mp3", None),
        ("bluesy.00012.wav", None),
    ],
)
def test_parse_name(name, expected):
    assert datasets.parse_name(name) == expected


def _table(tmp_path, rows=None, drop=None, nan_at=None, label_override=None, segments=False):
    import pandas as pd

    rng = np.random.default_rng(0)
    recs = []
    for g in ("blues", "rock"):
        for i in range(4):
            for s in range(3) if segments else [None]:
                name = f"{g}.{i:05d}.{s}.wav" if segments else f"{g}.{i:05d}.wav"
                rec = {"filename": name, "length": 66149}
                rec.update({c: float(rng.normal()) for c in FEATURE_COLUMNS})
                rec["label"] = g
                recs.append(rec)
    df = pd.DataFrame(recs)
    if drop:
        df = df.drop(columns=[drop])
    if nan_at:
        df.loc[2, nan_at] = np.nan
    if label_override:
        df.loc[1, "label"] = label_override
    p = tmp_path / "t.csv"
    df.to_csv(p, index=False)
    return p


def test_load_feature_table_30s_and_3s(tmp_path):
    t = datasets.load_feature_table(_table(tmp_path))
    assert t.X.shape == (8, 57) and not t.is_segmented
    assert list(t.track_ids[:2]) == ["blues.00000", "blues.00001"]
    s = datasets.load_feature_table(_table(tmp_path, segments=True))
    assert s.X.shape == (24, 57) and s.is_segmented
    assert list(s.segments[:3]) == [0, 1, 2] and len(set(s.track_ids)) == 8
    assert t.fingerprint() != s.fingerprint()


def test_table_errors_name_the_culprit(tmp_path):
    with pytest.raises(DatasetError, match="missing column.*tempo"):
        datasets.load_feature_table(_table(tmp_path, drop="tempo"))
    with pytest.raises(DatasetError, match="rms_var.*row 4"):
        datasets.load_feature_table(_table(tmp_path, nan_at="rms_var"))
    with pytest.raises(DatasetError, match="unknown label.*'polka'"):
        datasets.load_feature_table(_table(tmp_path, label_override="polka"))
    with pytest.raises(DatasetError, match="not found"):
        datasets.load_feature_table(tmp_path / "none.csv")


def test_single_class_table(tmp_path):
    import pandas as pd

    p = _table(tmp_path)
    df = pd.read_csv(p)
    df[df.label == "blues"].to_csv(p, index=False)
    with pytest.raises(DatasetError, match="only 1 class"):
        datasets.load_feature_table(p)


def test_scan_audio_layouts(tmp_path):
    # original layout (.au), Kaggle layout (.wav) and a user's folder-per-label tree
    write_audio(tmp_path / "genres" / "jazz" / "jazz.00003.au", tone(0.5))
    write_audio(tmp_path / "genres_original" / "pop" / "pop.00007.wav", tone(0.5))
    write_audio(tmp_path / "mine" / "chiptune" / "level 1.ogg", tone(0.5))
    a = datasets.scan_audio(tmp_path / "genres")
    assert [(t.track_id, t.label) for t in a] == [("jazz.00003", "jazz")]
    b = datasets.scan_audio(tmp_path / "genres_original")
    assert [(t.track_id, t.label) for t in b] == [("pop.00007", "pop")]
    c = datasets.scan_audio(tmp_path / "mine")
    assert [(t.track_id, t.label) for t in c] == [("chiptune/level 1", "chiptune")]


def test_duplicate_ids_and_known_corrupt_are_skipped_with_warning(tmp_path):
    write_audio(tmp_path / "jazz" / "jazz.00001.wav", tone(0.5))
    write_audio(tmp_path / "jazz" / "jazz.00001.flac", tone(0.5))
    (tmp_path / "jazz" / "jazz.00054.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.warns(UserWarning) as rec:
        tracks = datasets.scan_audio(tmp_path)
    assert [t.track_id for t in tracks] == ["jazz.00001"]
    msgs = " ".join(str(r.message) for r in rec)
    assert "known-corrupt" in msgs and "already read" in msgs


def _png(path):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (432, 288)).save(path)
    return path


def test_image_or_audio_tracks_takes_images_first_then_audio(tmp_path):
    """A GTZAN root with images and audio: each track once, its image where it has one, else its audio;
    the image folder is returned (it decides the time resolution); each source alone takes one kind."""
    root = tmp_path / "Data"
    _png(root / "images_original" / "blues" / "blues00001.png")
    _png(root / "images_original" / "rock" / "rock00002.png")
    write_audio(root / "genres_original" / "blues" / "blues.00001.wav", tone(0.5))
    write_audio(root / "genres_original" / "jazz" / "jazz.00003.wav", tone(0.5))
    found, image_root = datasets.image_or_audio_tracks(root)
    assert image_root == root / "images_original"
    assert [(t.track_id, t.label, kind) for t, kind in found] == [
        ("blues.00001", "blues", "image"), ("rock.00002", "rock", "image"), ("jazz.00003", "jazz", "audio")]
    only_images, _ = datasets.image_or_audio_tracks(root, source="images")
    assert {kind for _, kind in only_images} == {"image"} and len(only_images) == 2
    only_audio, none = datasets.image_or_audio_tracks(root, source="audio")
    assert none is None and [t.track_id for t, _ in only_audio] == ["blues.00001", "jazz.00003"]
    assert all(kind == "audio" for _, kind in only_audio)
    # a folder-per-label tree of audio alone (labels need not be genres unless asked)
    write_audio(tmp_path / "mine" / "chiptune" / "a.wav", tone(0.5))
    found, image_root = datasets.image_or_audio_tracks(tmp_path / "mine")
    assert image_root is None and [(t.label, k) for t, k in found] == [("chiptune", "audio")]
    assert [t.label for t, _ in datasets.image_or_audio_tracks(tmp_path / "mine", genres_only=True)[0]] == [""]
    with pytest.raises(DatasetError, match="holds no Kaggle images"):
        datasets.image_or_audio_tracks(tmp_path / "mine", source="images")
    with pytest.raises(DatasetError, match="unknown data source 'video'"):
        datasets.image_or_audio_tracks(root, source="video")


def test_kaggle_levels_read_each_images_level_and_length(tmp_path):
    csv = tmp_path / "features_30_sec.csv"
    csv.write_text("filename,length,rms_mean,label\nblues.00000.wav,661794,0.13,blues\n"
                   "not a gtzan name.wav,1000,0.2,blues\nrock.00001.wav,661500.0,,rock\njazz.00002.wav,22050,0.05,jazz\n")
    assert datasets.kaggle_levels(csv) == {"blues.00000": (0.13, 661794), "jazz.00002": (0.05, 22050)}


@pytest.mark.shared
def test_shared_gtzan(gtzan):
    g = datasets.GTZAN(gtzan)
    assert g.verify() == {"features_30_sec.csv": True}
    assert len(g.audio_tracks()) == 124
    imgs = g.image_tracks()
    assert len(imgs) == 999 and "jazz.00054" not in {t.track_id for t in imgs}
    t = datasets.load_feature_table(g.feature_csv())
    assert t.X.shape == (1000, 57) and t.columns == FEATURE_COLUMNS
