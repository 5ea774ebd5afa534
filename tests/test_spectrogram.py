"""Log-mel front end vs librosa, slicing, and Kaggle image inversion (synthetic PNG + one real image)."""

from __future__ import annotations

import numpy as np
import pytest

from genrekit import spectrogram as S
from genrekit.errors import DatasetError, FeatureError

SR = 22050


def _audio(seconds=2.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = 0.5 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 2 * t)) + 0.05 * rng.standard_normal(t.size)
    return y.astype(np.float32)


@pytest.mark.parametrize("n_fft,n_mels,sr", [(2048, 128, 22050), (1024, 64, 16000), (512, 40, 8000)])
def test_mel_filterbank_matches_librosa(n_fft, n_mels, sr):
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)
    ours = S.mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-6 * ref.max())


def test_logmel_matches_librosa_amplitude_to_db_of_mel_power():
    librosa = pytest.importorskip("librosa")
    y = _audio()
    ref_power = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=2048, hop_length=512, n_mels=128)
    ours_power = S.melspectrogram(y)
    assert ours_power.shape == ref_power.shape == (128, 1 + y.size // 512)
    np.testing.assert_allclose(ours_power, ref_power, rtol=1e-3, atol=1e-6 * ref_power.max())
    db = librosa.amplitude_to_db(ref_power, ref=np.max, top_db=80.0)
    expected = (db - db.min()) / (db.max() - db.min())  # what matplotlib's colour scaling did
    levels = S.logmel(y)
    assert levels.min() == 0.0 and levels.max() == 1.0
    np.testing.assert_allclose(levels, expected, atol=1e-3)


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
@pytest.mark.parametrize("seconds", [0.02, 2.0])
def test_numpy_and_torch_melspectrograms_agree(pad_mode, seconds):
    """The CPU path (numpy, what prediction runs) and the torch path (accelerators, training) are one
    transform: same frames, same values to float32 rounding, for short (reflect falls back) and long audio."""
    pytest.importorskip("torch")
    y = _audio(seconds, seed=3)
    a = S.melspectrogram(y, pad_mode=pad_mode)
    b = S.melspectrogram(y, pad_mode=pad_mode, device="auto" if seconds > 1 else "cpu:0")
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape == (128, 1 + y.size // 512)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * float(b.max()))
    np.testing.assert_allclose(S.power_to_levels(a), S.power_to_levels(b), atol=1e-5)


def test_power_to_levels_floor_and_silence():
    p = np.array([[1.0, 1e-2, 1e-6, 0.0]])
    lv = S.power_to_levels(p)  # 20*log10: 0, -40, -120 -> floored at -80, -80
    np.testing.assert_allclose(lv, [[1.0, 0.5, 0.0, 0.0]], atol=1e-6)
    assert not S.power_to_levels(np.zeros((4, 5))).any()  # silence: zeros, no division by zero


def test_melspectrogram_rejects_bad_audio():
    with pytest.raises(FeatureError, match="mono"):
        S.melspectrogram(np.zeros((2, 100), np.float32))
    with pytest.raises(FeatureError, match="no samples"):
        S.melspectrogram(np.zeros(0, np.float32))
    with pytest.raises(FeatureError, match="NaN"):
        S.melspectrogram(np.array([0.0, np.nan], np.float32))
    with pytest.raises(FeatureError, match="time_resolution"):
        S.logmel(_audio(0.5), time_resolution="coarse")


def test_slicing_counts_overlap_and_padding():
    assert S.slice_frames() == 130
    m = np.random.default_rng(0).random((128, S.CLIP_FRAMES)).astype(np.float32)
    x = S.slices(m)
    assert x.shape == (9, 128, 130)
    np.testing.assert_array_equal(x[1], m[:, 130:260])
    x50 = S.slices(m, overlap=0.5)
    assert x50.shape == (18, 128, 130)
    np.testing.assert_array_equal(x50[1], m[:, 65:195])
    short = S.slices(m[:, :50])
    assert short.shape == (1, 128, 130)
    assert not short[0, :, 50:].any()
    with pytest.raises(FeatureError):
        S.slices(m, overlap=1.0)


def _render_kaggle_like(levels: np.ndarray, path) -> None:
    """Draw ``levels`` the way the Kaggle images are: magma, 432x288, plotted area at the Kaggle pixels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(4.32, 2.88), dpi=100)
    (r0, r1), (c0, c1) = S.IMAGE_ROWS, S.IMAGE_COLS
    ax = fig.add_axes([c0 / 432, 1 - r1 / 288, (c1 - c0) / 432, (r1 - r0) / 288])
    ax.imshow(levels, cmap="magma", vmin=0, vmax=1, origin="lower", aspect="auto", interpolation="nearest")
    ax.set_axis_off()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _known_matrix() -> np.ndarray:
    f = np.linspace(0, 1, 128)[:, None]
    t = np.linspace(0, 1, S.CLIP_FRAMES)[None, :]
    return (0.5 + 0.3 * np.sin(2 * np.pi * (3 * t + 0.5 * f)) * (1 - f) + 0.2 * f**2 - 0.1 * t).clip(0, 1)


def test_invert_image_recovers_a_known_matrix(tmp_path):
    known = _known_matrix()
    png = tmp_path / "blues00001.png"
    _render_kaggle_like(known, png)
    rec = S.invert_image(png)
    assert rec.shape == (128, S.CLIP_FRAMES)
    assert np.corrcoef(rec.ravel(), known.ravel())[0, 1] > 0.995
    assert np.abs(rec - known).mean() < 0.01
    # orientation: low mel bins are at the bottom of the picture
    flipped = known[::-1]
    assert np.abs(rec - flipped).mean() > 5 * np.abs(rec - known).mean()


def test_invert_image_cached_reuses_the_cache(tmp_path):
    png = tmp_path / "rock00002.png"
    _render_kaggle_like(_known_matrix(), png)
    cache = tmp_path / "cache"
    a = S.invert_image_cached(png, cache=cache)
    files = list(cache.glob("*.npy"))
    assert len(files) == 1
    np.save(files[0], np.full_like(a, 0.25))  # prove the second call reads the cache, not the PNG
    b = S.invert_image_cached(png, cache=cache)
    assert np.all(b == 0.25)


def test_invert_image_rejects_wrong_files(tmp_path):
    from PIL import Image

    small = tmp_path / "small.png"
    Image.new("RGB", (100, 80)).save(small)
    with pytest.raises(DatasetError, match="432x288"):
        S.invert_image(small)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png at all")
    with pytest.raises(DatasetError, match="not a readable image"):
        S.invert_image(junk)
    with pytest.raises(DatasetError, match="not found"):
        S.invert_image(tmp_path / "missing.png")


def test_to_image_grid_keeps_shape_and_smooth_content():
    known = _known_matrix().astype(np.float32)
    g = S.to_image_grid(known)
    assert g.shape == known.shape
    assert np.abs(g - known).max() < 0.02
    rough = np.random.default_rng(1).random((8, S.CLIP_FRAMES)).astype(np.float32)
    assert np.abs(S.to_image_grid(rough) - rough).mean() > 0.1  # fine time detail is not kept


def test_input_description_roundtrip():
    d = S.input_description()
    assert d["type"] == "logmel" and d["n_mels"] == 128 and d["slice_frames"] == 130
    y = _audio(1.0)
    np.testing.assert_array_equal(S.logmel_for_input(y, d), S.logmel(y))


@pytest.mark.shared
def test_real_kaggle_image_matches_its_audio():
    from genrekit import audio, datasets

    root = datasets.shared_root()
    if root is None:
        pytest.skip("../shared/data/gtzan not present")
    png = root / "images_original" / "blues" / "blues00000.png"
    flac = root / "audio" / "blues" / "blues.00000.flac"
    if not (png.is_file() and flac.is_file()):
        pytest.skip("blues.00000 image or audio not present")
    img = S.invert_image(png)
    lv = S.logmel(audio.load(flac))
    assert img.shape == lv.shape == (128, 1293)
    # the renderer samples ~1 frame in 4, so compare over 1 s blocks and per mel band
    blocks = lambda m: m[:, :1290].reshape(128, 30, 43).mean(2)  # noqa: E731
    assert np.corrcoef(blocks(img).ravel(), blocks(lv).ravel())[0, 1] > 0.9
    assert np.corrcoef(img.mean(1), lv.mean(1))[0, 1] > 0.95
    assert np.corrcoef(img.ravel(), lv.ravel())[0, 1] > 0.6
