"""Kaggle image -> musicnn input (``networks.musicnn.musicnn_input_from_image``): shapes, where energy lands,
the absolute level, agreement with musicnn's own front end on synthesised audio, and bad input.

Everything here is synthesised (fresh-clone safe); the figures on real GTZAN pairs are in
docs/transfer.md (``scripts/image_to_musicnn.py prove``), and one ``shared`` test checks a real pair.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genrekit import spectrogram
from genrekit.dsp import hz_to_mel, mel_frequencies
from genrekit.errors import DatasetError, FeatureError, GenrekitError
from genrekit.networks import musicnn as E
from helpers import music_like_noise

N22 = 1 + E.IMAGE_CLIP_SAMPLES // E.IMAGE_HOP  # 1293 frames of a 30 s clip
N16 = 1 + round(E.IMAGE_CLIP_SAMPLES * E.SR / E.IMAGE_SR) // E.HOP_LENGTH  # 1876 musicnn frames


def _image_centres_hz() -> np.ndarray:
    return mel_frequencies(E.IMAGE_N_MELS + 2, fmin=0.0, fmax=E.IMAGE_SR / 2)[1:-1]


def _musicnn_centres_hz() -> np.ndarray:
    return mel_frequencies(E.N_MELS + 2, fmin=0.0, fmax=E.SR / 2)[1:-1]


def _one_band(band: int, cols: int = E.IMAGE_COLUMNS) -> np.ndarray:
    lv = np.zeros((E.IMAGE_N_MELS, cols))
    lv[band] = 1.0
    return lv


def _frame_rms_mean(y: np.ndarray, frame: int = 2048, hop: int = 512) -> float:
    """librosa.feature.rms(y).mean() (centred frames, zero padding): Kaggle's rms_mean."""
    p = np.pad(y.astype(np.float64), frame // 2)
    frames = np.lib.stride_tricks.sliding_window_view(p, frame)[::hop]
    return float(np.sqrt((frames**2).mean(axis=1)).mean())


# ------------------------------------------------------------------------------------------ shapes


def test_shapes_pixel_columns_and_frame_grid():
    rng = np.random.default_rng(0)
    x = E.musicnn_input_from_image(rng.random((128, 336)), rms_mean=0.1)
    assert x.shape == (N16, E.N_MELS) and x.dtype == np.float32
    assert np.isfinite(x).all() and x.min() >= 0.0
    assert E.patches(x).shape == (10, E.PATCH_FRAMES, E.N_MELS)  # a 30 s clip gives musicnn's 10 patches
    n = 22050 * 5
    grid = E.musicnn_input_from_image(rng.random((128, 1 + n // 512)), peak_power=10.0, n_samples=n)
    assert grid.shape == (1 + round(n * 16000 / 22050) // 256, E.N_MELS)
    short = E.musicnn_input_from_image(rng.random((128, 336)), n_samples=22050 * 4)  # any length, same image
    assert short.shape == (1 + round(22050 * 4 * 16000 / 22050) // 256, E.N_MELS)


def test_embed_image_returns_musicnn_embedding():
    emb = E.embed_image(np.random.default_rng(1).random((128, 336)), rms_mean=0.1)
    assert emb.n_patches == 10 and emb.penultimate.shape == (10, E.N_PENULTIMATE)
    assert emb.pooled.shape == (10, E.N_POOLED) and np.isfinite(emb.taggram).all()
    assert emb.duration == pytest.approx(E.IMAGE_CLIP_SAMPLES / E.IMAGE_SR)


# ------------------------------------------------------------------------------------------ frequency


@pytest.mark.parametrize("band", [8, 30, 55, 80, 100])
def test_energy_in_one_image_band_lands_in_the_musicnn_band_at_that_frequency(band):
    fc = _image_centres_hz()[band]
    assert fc < 8000  # musicnn stops at 8 kHz
    x = E.musicnn_input_from_image(_one_band(band), peak_power=1000.0, band_offset=False)  # the rest at the floor
    profile = x.mean(axis=0)
    got = int(np.argmax(profile))
    want = int(np.argmin(np.abs(hz_to_mel(_musicnn_centres_hz()) - hz_to_mel(fc))))
    assert abs(got - want) <= 1, (band, fc, got, want)
    # and the energy stays local: bands a few mel steps away are far below the peak
    far = np.abs(np.arange(E.N_MELS) - got) > 6
    assert profile[far].max() < profile[got] - 2.0


def test_energy_above_8khz_does_not_reach_musicnn():
    band = int(np.searchsorted(_image_centres_hz(), 9500.0))
    x = E.musicnn_input_from_image(_one_band(band), peak_power=100.0, band_offset=False, floor_db=-200.0)
    assert x.max() < 0.01  # silence everywhere: log10(1 + tiny)


def test_frames_follow_the_image_columns_in_time():
    """A burst in one pixel column appears at that column's measured time (frame 3.35 + c * 3.86)."""
    lv = np.zeros((128, 336))
    c = 200
    lv[:, c] = 1.0
    x = E.musicnn_input_from_image(lv, peak_power=100.0, band_offset=False, floor_db=-200.0)
    t_col = (E.IMAGE_FIRST_FRAME + c * (N22 + E.IMAGE_EXTRA_FRAMES) / 336) * 512 / 22050
    t_peak = np.argmax(x.mean(axis=1)) * 256 / 16000
    assert abs(t_peak - t_col) < 0.02


# ------------------------------------------------------------------------------------------ level


def test_level_rises_with_rms_mean_and_peak_scales_with_its_square():
    lv = np.random.default_rng(2).random((128, 336))
    means = [E.musicnn_input_from_image(lv, rms_mean=r).mean() for r in (0.01, 0.03, 0.1, 0.3)]
    assert all(b > a + 0.05 for a, b in zip(means, means[1:], strict=False))
    p1, p2 = E.image_peak_power(lv, 0.05), E.image_peak_power(lv, 0.1)
    assert p2 / p1 == pytest.approx(4.0, rel=1e-9)
    # rms_mean and the peak it implies give the same input
    np.testing.assert_allclose(E.musicnn_input_from_image(lv, rms_mean=0.05),
                               E.musicnn_input_from_image(lv, peak_power=p1), atol=1e-6)


def test_peak_from_rms_mean_matches_the_audio_within_a_decibel():
    """Parseval: on noise at 22.05 kHz, the peak mel power estimated from the image levels and the
    clip's mean frame RMS is the true peak (the paired GTZAN clips: 0.5 dB std)."""
    y = music_like_noise(10.0, E.IMAGE_SR)
    mel = spectrogram.melspectrogram(y)
    levels = spectrogram.power_to_levels(mel)
    est = E.image_peak_power(levels, _frame_rms_mean(y))
    assert abs(10 * np.log10(est / mel.max())) < 1.0


def test_frame_grid_levels_of_audio_reproduce_musicnn_input():
    """Audio -> 22.05 kHz image levels -> mapping lands on musicnn's own log-mel of that audio: the
    FFT-size scale (512/2048)^2 and the band mapping are right. What remains: the narrow low bands of
    musicnn's 512-point FFT fluctuate more, so the mean of their log is lower (up to 0.16 here), and
    the resampler's roll-off near 8 kHz dims musicnn's top two bands (IMAGE_BAND_OFFSET corrects both
    on real music)."""
    y = music_like_noise(8.0, E.IMAGE_SR)
    mel = spectrogram.melspectrogram(y)
    top_db = 400.0  # no clip: only the mapping is under test
    levels = 1.0 + 20.0 * np.log10(np.maximum(mel, 1e-30) / mel.max()) / top_db
    assert levels.min() > 0.0
    x = E.musicnn_input_from_image(levels, peak_power=float(mel.max()), n_samples=y.size, top_db=top_db,
                                   floor_db=None, band_offset=False)
    ref = E.musicnn_input(y, sr=22050)
    assert x.shape == ref.shape
    diff = (x.mean(axis=0) - ref.mean(axis=0))[:94]
    assert diff.min() > -0.05 and diff.max() < 0.2 and np.median(np.abs(diff)) < 0.1
    # a level error of 10 dB moves every band: the check above can fail
    off = E.musicnn_input_from_image(levels, peak_power=10 * float(mel.max()), n_samples=y.size, top_db=top_db,
                                     floor_db=None, band_offset=False)
    assert (off.mean(axis=0) - ref.mean(axis=0))[:94].min() > 0.3


def test_band_offset_and_floor():
    lv = np.random.default_rng(3).uniform(0.1, 1.0, (128, 336))
    lv[:, :50] = 0.0  # clipped cells, and only these
    a = E.musicnn_input_from_image(lv, rms_mean=0.1, band_offset=False)
    b = E.musicnn_input_from_image(lv, rms_mean=0.1)
    off = np.asarray(E.IMAGE_BAND_OFFSET, np.float32)
    np.testing.assert_allclose(b, np.maximum(a + off, 0.0), atol=1e-6)
    assert len(E.IMAGE_BAND_OFFSET) == E.N_MELS
    low = E.musicnn_input_from_image(lv, rms_mean=0.1, band_offset=False, floor_db=-150.0)
    high = E.musicnn_input_from_image(lv, rms_mean=0.1, band_offset=False, floor_db=-80.0)
    assert low[:100].mean() < a[:100].mean() < high[:100].mean()  # the clipped first columns
    np.testing.assert_allclose(low[600:], high[600:], atol=1e-6)  # untouched where nothing is clipped


# ------------------------------------------------------------------------------------------ a PNG


def _kaggle_png(path: Path, levels: np.ndarray) -> Path:
    """Draw ``levels`` (218 x 336 pixels, top row = highest band) the way Kaggle's images are laid out."""
    from matplotlib import colormaps
    from PIL import Image

    table = (np.asarray(colormaps["magma"].colors) * 255).round().astype(np.uint8)
    rgb = np.full((288, 432, 3), 255, np.uint8)
    rgb[35:253, 54:390] = table[np.round(levels * 255).astype(int)]
    Image.fromarray(rgb).save(path)
    return path


def test_png_path_is_inverted_and_mapped(tmp_path):
    px = np.zeros((218, 336))
    rows = (128 - (np.arange(218) + 0.5) * 128 / 218).astype(int)  # image band shown by each pixel row
    px[rows == 40] = 1.0
    png = _kaggle_png(tmp_path / "blues00000.png", px)
    x = E.musicnn_input_from_image(png, peak_power=100.0, band_offset=False, floor_db=-200.0)
    assert x.shape == (N16, E.N_MELS)
    want = int(np.argmin(np.abs(hz_to_mel(_musicnn_centres_hz()) - hz_to_mel(_image_centres_hz()[40]))))
    assert abs(int(np.argmax(x.mean(axis=0))) - want) <= 1
    from_levels = E.musicnn_input_from_image(spectrogram.invert_image(png, n_frames=336), peak_power=100.0,
                                             band_offset=False, floor_db=-200.0)
    np.testing.assert_array_equal(x, from_levels)


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("levels", "kwargs", "match"),
    [
        (np.zeros((128, 336, 1)), {}, "must be"),
        (np.zeros((96, 336)), {}, r"\(128, columns"),
        (np.zeros((128, 1)), {}, "columns >= 2"),
        (np.full((128, 336), 1.5), {}, r"\[0, 1\]"),
        (np.full((128, 336), -0.2), {}, r"\[0, 1\]"),
        (np.full((128, 336), np.nan), {}, "NaN"),
        (np.zeros((128, 336), complex), {}, "real numbers"),
        (np.array([["a"] * 336] * 128), {}, "real numbers"),
        (np.zeros((128, 500)), {}, "500 columns"),
        (np.zeros((128, 336)), {"rms_mean": 0.0}, "rms_mean"),
        (np.zeros((128, 336)), {"rms_mean": -1.0}, "rms_mean"),
        (np.zeros((128, 336)), {"rms_mean": float("nan")}, "rms_mean"),
        (np.zeros((128, 336)), {"rms_mean": "loud"}, "rms_mean"),
        (np.zeros((128, 336)), {"peak_power": float("inf")}, "peak_power"),
        (np.zeros((128, 336)), {"n_samples": 100}, "n_samples"),
        (np.zeros((128, 336)), {"n_samples": True}, "n_samples"),
        (np.zeros((128, 336)), {"n_samples": 66150.5}, "n_samples"),
        (np.zeros((128, 336)), {"top_db": 0}, "top_db"),
        (np.zeros((128, 336)), {"floor_db": float("nan")}, "floor_db"),
        (np.zeros((128, 336)), {"floor_db": "-105"}, "floor_db"),
        (np.zeros((128, 336)), {"band_offset": "yes"}, "band_offset"),
    ],
)
def test_bad_input_raises_a_specific_error(levels, kwargs, match):
    with pytest.raises(FeatureError, match=match):
        E.musicnn_input_from_image(levels, **kwargs)


def test_bad_paths_raise_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        E.musicnn_input_from_image(tmp_path / "missing.png")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="not a readable image"):
        E.musicnn_input_from_image(junk, rms_mean=0.1)
    with pytest.raises(GenrekitError):
        E.image_peak_power(np.zeros((128, 336)), rms_mean=0.0)
    with pytest.raises(GenrekitError, match="unknown musicnn model"):
        E.embed_image(np.zeros((128, 336)), model="VGG_nope")


@pytest.mark.shared
def test_real_pair_image_is_close_to_its_audio(gtzan):
    """blues.00000: the image's mapped log-mel follows the audio's (correlation over all cells)."""
    import pandas as pd

    from genrekit.audio import load

    df = pd.read_csv(gtzan / "features_30_sec.csv").set_index("filename")
    row = df.loc["blues.00000.wav"]
    x = E.musicnn_input_from_image(gtzan / "images_original" / "blues" / "blues00000.png",
                                   rms_mean=row.rms_mean, n_samples=int(row.length))
    ref = E.musicnn_input(load(gtzan / "audio" / "blues" / "blues.00000.flac", sr=22050), sr=22050)
    assert x.shape == ref.shape
    assert np.corrcoef(x.ravel(), ref.ravel())[0, 1] > 0.8
    assert abs(x.mean() - ref.mean()) < 0.15
