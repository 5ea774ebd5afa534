"""Kaggle image -> mn04 input (``networks.mn04.image``): the audio front end's layout, agreement with it on
synthesised audio rendered as image levels, the fill above 11.025 kHz, the windows, and bad input.

Everything but the ``shared`` test is synthesised; the figures on real GTZAN pairs are in docs/ears.md
("Image-derived mn04 input", ``scripts/mn04_image_check.py``).
"""

from __future__ import annotations

import numpy as np
import pytest

from genrekit import spectrogram
from genrekit.errors import DatasetError, FeatureError, GenrekitError
from genrekit.networks.mn04 import frontend as F
from genrekit.networks.mn04 import image as I
from genrekit.networks.mn04 import model as M
from genrekit.networks.mn04.frontend import kaldi_mel
from genrekit.networks.musicnn.image import IMAGE_EXTRA_FRAMES, IMAGE_FIRST_FRAME
from helpers import music_like_noise

SR22 = 22050


def _centres_hz() -> np.ndarray:
    """Centre frequency of each of mn04's 128 Kaldi bands."""
    step = kaldi_mel(15000.0) / 129.0
    return (np.exp((np.arange(1, 129) * step) / 1127.0) - 1.0) * 700.0


@pytest.fixture(scope="module")
def rendered():
    """(audio's own mn04 mel, full-frame image levels, the clip's peak mel power, length at 22.05 kHz)."""
    y = music_like_noise(30.0, SR22, sway_hz=0.5)
    mel = spectrogram.melspectrogram(y)
    return F.logmel(F.to_32k(y, SR22)), spectrogram.power_to_levels(mel), float(mel.max()), y.size


@pytest.mark.parametrize("n_samples", [661500, 661794, 220500])
def test_layout_matches_the_audio_front_end(n_samples):
    y = np.zeros(n_samples, np.float32)
    y[::97] = 0.1
    ref = F.logmel(F.to_32k(y, SR22))
    x = I.mn04_input_from_image(np.ones((128, 336)), n_samples=n_samples)
    assert x.shape == ref.shape and x.dtype == ref.dtype == np.float32
    assert x.flags.c_contiguous


def test_image_levels_of_audio_land_on_its_mn04_mel_under_11khz(rendered):
    """Measured: mean |image - audio| 0.111 log-mel units (noise frames fluctuate in mn04's 25 ms window,
    the image's 93 ms one smooths them) and every band's mean within 0.075 below 9 kHz, where this
    signal lives; the 336-column, 256-step image: 0.129."""
    aud, levels, peak, n = rendered
    x = I.mn04_input_from_image(levels, peak_power=peak, n_samples=n)
    live = _centres_hz() < 8500.0
    d = (x - aud)[live][:, 5:-5]  # the clip's first and last frames see padding
    assert np.abs(d).mean() < 0.14
    assert np.abs(d.mean(axis=1)).max() < 0.1
    cols = np.round(IMAGE_FIRST_FRAME + np.arange(336) * (levels.shape[1] + IMAGE_EXTRA_FRAMES) / 336)
    image = np.round(levels[:, np.clip(cols.astype(int), 0, levels.shape[1] - 1)] * 255.0) / 255.0
    d336 = (I.mn04_input_from_image(image, peak_power=peak, n_samples=n) - aud)[live][:, 5:-5]
    assert np.abs(d336).mean() < 0.16


def test_level_follows_peak_power(rendered):
    _, levels, peak, n = rendered
    lo = I.mn04_input_from_image(levels, peak_power=peak, n_samples=n)
    hi = I.mn04_input_from_image(levels, peak_power=peak * 100.0, n_samples=n)
    live = _centres_hz() < 8500.0
    assert (hi[live] > lo[live]).all()  # 20 dB more power: every live cell rises


def test_fills_differ_only_above_the_image(rendered):
    _, levels, peak, n = rendered
    out = {f: I.mn04_input_from_image(levels, peak_power=peak, n_samples=n, fill=f) for f in I.FILLS}
    fc = _centres_hz()
    below = fc < 10000.0  # bands whose triangles end under 11.025 kHz
    above = fc > 11600.0
    for f in ("floor", "slope"):
        np.testing.assert_array_equal(out[f][below], out["silence"][below])
        assert (out[f][above] > out["silence"][above]).all()
    silent = (np.log(F.LOG_OFFSET) + F.LOG_SHIFT) / F.LOG_SCALE
    np.testing.assert_allclose(out["silence"][above], silent, atol=1e-6)


def test_embed_image_uses_the_windows_of_embed(rendered):
    _, levels, peak, n = rendered
    emb = I.embed_image(levels, peak_power=peak, n_samples=n, max_windows=2)
    starts = M.window_starts(int(round(n * 32000 / SR22)), max_windows=2)
    np.testing.assert_array_equal(emb.starts, starts)
    assert emb.features.shape == (2, 384) and emb.logits.shape == (2, 527)
    assert np.isfinite(emb.features).all() and np.isfinite(emb.logits).all()
    short = I.embed_image(np.full((128, 1 + 110250 // 512), 0.5), n_samples=110250)  # 5 s: one window
    assert short.features.shape == (1, 384) and list(short.starts) == [0]


def test_image_windows_are_cut_where_audio_windows_are():
    mel = np.arange(3000, dtype=np.float32)[None, :].repeat(128, 0)
    w = I.image_mel_windows(mel, np.array([0, 320000, 640000]))
    assert w.shape == (3, 1, 128, 1000)
    assert [int(v[0, 0, 0]) for v in w] == [0, 1000, 2000]


@pytest.mark.parametrize("levels, kwargs, match", [
    (np.ones((128, 100)), {}, r"image levels: .*100 columns"),
    (np.ones((64, 336)), {}, r"image levels: .*\(128, columns >= 2\)"),
    (np.full((128, 336), 2.0), {}, r"image levels: .*\[0, 1\]"),
    (np.ones((128, 336)), {"rms_mean": 0.0}, r"image levels: rms_mean must be a positive"),
    (np.ones((128, 336)), {"rms_mean": -0.1, "name": "rock.00003"}, r"rock\.00003: rms_mean"),
    (np.ones((128, 336)), {"peak_power": float("nan")}, r"image levels: peak_power"),
    (np.ones((128, 336)), {"fill": "mirror"}, r"image levels: unknown fill 'mirror'"),
    (np.ones((128, 336)), {"n_samples": 100}, r"image levels: n_samples"),
])
def test_bad_input_raises_a_genrekit_error_naming_it(levels, kwargs, match):
    with pytest.raises(FeatureError, match=match):
        I.mn04_input_from_image(levels, **kwargs)


def test_bad_paths_raise_dataset_errors_naming_the_file(tmp_path):
    missing = tmp_path / "blues00000.png"
    with pytest.raises(DatasetError, match="blues00000.png: image not found"):
        I.mn04_input_from_image(missing)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    with pytest.raises(GenrekitError, match="junk.png"):
        I.embed_image(junk, rms_mean=0.1)
    with pytest.raises(FeatureError, match="junk.png: rms_mean"):
        I.mn04_input_from_image(np.ones((128, 336)), rms_mean=0, name=str(junk))


@pytest.mark.shared
def test_real_pair_image_features_are_close_to_the_audio(gtzan):
    """blues.00000: the image's mn04 features against its audio's (cosine of the window means), and its
    mel against the audio's below 9.5 kHz. Measured: cosine 0.188, mel correlation 0.600 (an image column
    averages ~9 of mn04's frames; docs/ears.md); asserted with margin."""
    import pandas as pd

    from genrekit.audio import load

    row = pd.read_csv(gtzan / "features_30_sec.csv").set_index("filename").loc["blues.00000.wav"]
    png = gtzan / "images_original" / "blues" / "blues00000.png"
    y = load(gtzan / "audio" / "blues" / "blues.00000.flac", sr=SR22)
    x = I.mn04_input_from_image(png, rms_mean=row.rms_mean, n_samples=int(row.length))
    ref = F.logmel(F.to_32k(y, SR22))
    assert x.shape == ref.shape
    live = _centres_hz() < 9500.0
    assert np.corrcoef(x[live].ravel(), ref[live].ravel())[0, 1] > REAL_MEL_CORR
    a = M.embed(y, SR22).features.mean(0)
    b = I.embed_image(png, rms_mean=row.rms_mean, n_samples=int(row.length)).features.mean(0)
    assert float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) > REAL_COSINE


REAL_MEL_CORR = 0.5  # measured 0.600 on blues.00000
REAL_COSINE = 0.13  # measured 0.188 on blues.00000 (median over the 123 pairs 0.330)
