"""genrekit.experiments.data: feature tables with image features, log-mel data, slices by track."""

from __future__ import annotations

import numpy as np
import pytest

from audio_folders import write_label_folders
from genrekit.datasets import FEATURE_COLUMNS, load_feature_table
from genrekit.errors import GenrekitError
from genrekit.experiments import image_band_features
from tabular_data import synthetic_rows, write_csv


def test_image_band_features_shape_and_values():
    levels = np.zeros((128, 40))
    levels[:4] = 1.0  # the lowest pooled band is loud and steady
    f = image_band_features(levels)
    assert f.shape == (64,)
    assert f[0] == 1.0 and f[1:32].sum() == 0.0 and f[32:].sum() == 0.0


def test_image_features_joined_by_track(tmp_path):
    """Kaggle-like PNGs (magma over the plotted area) add 64 columns; a track without image is dropped."""
    import matplotlib
    from PIL import Image

    from genrekit.experiments import join_image_features

    names, X, y = synthetic_rows(n_per_class=3)
    table = load_feature_table(write_csv(tmp_path / "t.csv", names, X, y))
    rng = np.random.default_rng(0)
    magma = matplotlib.colormaps["magma"]
    for tid in table.track_ids[1:]:  # the first track gets no image
        genre, num = tid.split(".")
        img = np.full((288, 432, 4), 255, dtype=np.uint8)
        img[35:252, 54:389] = (magma(rng.random((217, 335))) * 255).astype(np.uint8)
        (tmp_path / "img" / genre).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(tmp_path / "img" / genre / f"{genre}{num}.png")
    joined = join_image_features(table, tmp_path / "img", progress=False)
    assert joined.X.shape == (len(table.y) - 1, len(FEATURE_COLUMNS) + 64)
    assert joined.columns[-1] == "img_band31_std"
    assert joined.extra["image_missing"] == [table.track_ids[0]]
    assert np.isfinite(joined.X).all()


def test_logmel_source_slices_by_role_and_caches(tmp_path, monkeypatch):
    """Training slices carry the crop frames, test slices overlap; a second load reads the cache."""
    from genrekit.experiments.data import LogmelSource

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = write_label_folders(tmp_path / "d", ["a", "b"], per_label=2, seconds=7.0)
    src = LogmelSource.load(data, progress=False, train_extra_frames=16, eval_overlap=0.5)
    assert src.failed and "broken.wav" in src.failed[0][0]  # skipped and listed, the rest loaded
    assert len(src.track_ids) == 4 and src.input["time_resolution"] == "full"
    tracks = list(src.track_ids[:2])
    train, test = src.arrays(tracks, "train"), src.arrays(tracks, "test")
    assert train.X.shape[2] == src.width + 16 and test.X.shape[2] == src.width
    assert len(test) > len(src.arrays(tracks, "valid"))  # 50 % overlap: more slices than without
    assert set(test.groups) == set(tracks)
    assert list((tmp_path / "cache" / "genrekit" / "logmel").rglob("*.npy"))
    again = LogmelSource.load(data, progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(src.data.matrices, again.data.matrices, strict=True))
    with pytest.raises(GenrekitError, match="role"):
        src.arrays(tracks, "holdout")
