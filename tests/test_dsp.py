"""genrekit.dsp: the one home of the STFT, the mel scale and filterbank and decibels, against librosa."""

from __future__ import annotations

import numpy as np
import pytest

from genrekit import dsp, features, spectrogram
from genrekit.errors import FeatureError

librosa = pytest.importorskip("librosa")


def _signal(seconds: float = 1.5, sr: int = dsp.SR, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.4 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def test_constants_are_librosas_defaults_and_shared():
    assert (dsp.SR, dsp.N_FFT, dsp.HOP_LENGTH, dsp.N_MELS) == (22050, 2048, 512, 128)
    assert (features.SR, features.N_FFT, features.HOP_LENGTH, features.N_MELS) == (22050, 2048, 512, 128)
    assert (spectrogram.SR, spectrogram.N_FFT, spectrogram.HOP_LENGTH, spectrogram.N_MELS) == (22050, 2048, 512, 128)
    # one implementation, re-exported where callers have always found it
    assert features.mel_filterbank is dsp.mel_filterbank is spectrogram.mel_filterbank
    assert features.power_to_db is dsp.power_to_db and spectrogram.hz_to_mel is dsp.hz_to_mel


@pytest.mark.parametrize("htk", [False, True])
def test_hz_mel_conversions_match_librosa(htk):
    f = np.array([0.0, 20.0, 440.0, 999.9, 1000.0, 1000.1, 4000.0, 11025.0])
    np.testing.assert_allclose(dsp.hz_to_mel(f, htk=htk), librosa.hz_to_mel(f, htk=htk), rtol=1e-12)
    m = dsp.hz_to_mel(f, htk=htk)
    np.testing.assert_allclose(dsp.mel_to_hz(m, htk=htk), f, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(dsp.mel_to_hz(m, htk=htk), librosa.mel_to_hz(m, htk=htk), rtol=1e-12)
    assert float(dsp.hz_to_mel(440.0, htk=htk)) == pytest.approx(float(librosa.hz_to_mel(440.0, htk=htk)), rel=1e-12)
    np.testing.assert_allclose(dsp.mel_frequencies(40, fmin=30.0, fmax=8000.0, htk=htk),
                               librosa.mel_frequencies(n_mels=40, fmin=30.0, fmax=8000.0, htk=htk), rtol=1e-12)


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax,htk", [
    (22050, 2048, 128, 0.0, None, False), (16000, 1024, 64, 50.0, 7000.0, False), (22050, 512, 40, 0.0, None, True),
])
def test_mel_filterbank_matches_librosa(sr, n_fft, n_mels, fmin, fmax, htk):
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk)
    ours = dsp.mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk)
    assert ours.shape == ref.shape == (n_mels, 1 + n_fft // 2) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-6 * ref.max())
    assert not ours.flags.writeable  # cached: a caller writing to it would change every later clip
    assert dsp.mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk) is ours


def test_mel_filterbank_rejects_bad_parameters():
    for kw in ({"n_mels": 0}, {"n_fft": 1}, {"sr": 0}):
        with pytest.raises(FeatureError, match="invalid mel filterbank"):
            dsp.mel_filterbank(**kw)


def test_windows_frequencies_and_frame_counts():
    from scipy.signal import get_window

    np.testing.assert_allclose(dsp.hann_window(2048), get_window("hann", 2048, fftbins=True), rtol=0, atol=1e-15)
    assert dsp.hann_window(512, dtype=np.float32).dtype == np.float32
    np.testing.assert_array_equal(dsp.fft_frequencies(sr=16000, n_fft=1024), librosa.fft_frequencies(sr=16000, n_fft=1024))
    y = _signal()
    assert dsp.frame_count(y.size) == librosa.stft(y, n_fft=2048, hop_length=512).shape[1]


@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
def test_stft_matches_librosa(pad_mode):
    y = _signal()
    ref = librosa.stft(y, n_fft=2048, hop_length=512, pad_mode=pad_mode)
    ours = dsp.stft(y, pad_mode=pad_mode)
    assert ours.shape == ref.shape and ours.dtype == np.complex64
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_stft_frames_blocks_equal_the_whole_transform_and_bad_shapes_are_refused():
    y = _signal(3.0)
    whole = dsp.stft(y)
    y_pad = np.pad(y, dsp.N_FFT // 2, mode="reflect")
    T = whole.shape[1]
    blocks = np.concatenate([dsp.stft_frames(y_pad, a, min(a + 37, T)) for a in range(0, T, 37)])
    np.testing.assert_array_equal(blocks.T, whole)
    with pytest.raises(FeatureError, match="mono"):
        dsp.stft(np.zeros((2, 4096), dtype=np.float32))


def test_power_and_amplitude_to_db_match_librosa():
    rng = np.random.default_rng(1)
    S = (rng.random((16, 40)) ** 4).astype(np.float32)
    S[0, :3] = 0.0
    for kw in ({}, {"ref": np.max}, {"top_db": None}, {"ref": 0.5, "amin": 1e-6, "top_db": 40.0}):
        np.testing.assert_allclose(dsp.power_to_db(S, **kw), librosa.power_to_db(S, **kw), rtol=1e-5, atol=1e-4)
    assert dsp.power_to_db(S).dtype == np.float32  # the feature pipeline keeps float32
    for kw in ({}, {"ref": np.max}, {"ref": np.max, "top_db": 60.0}):
        np.testing.assert_allclose(dsp.amplitude_to_db(S, **kw), librosa.amplitude_to_db(S, **kw), rtol=1e-5, atol=1e-3)
    with pytest.raises(FeatureError, match="top_db"):
        dsp.power_to_db(S, top_db=-1.0)


def test_spectrogram_levels_are_amplitude_to_db_of_mel_power():
    """power_to_levels is dsp.amplitude_to_db(ref=max), min-max scaled: the Kaggle images' colouring."""
    P = spectrogram.melspectrogram(_signal())
    db = dsp.amplitude_to_db(P, ref=np.max, top_db=spectrogram.TOP_DB)
    np.testing.assert_allclose(spectrogram.power_to_levels(P), (db - db.min()) / (db.max() - db.min()), atol=1e-6)


def test_one_melspectrogram_serves_both_paddings():
    """dsp.melspectrogram is THE mel: the log-mel front end is it with zero padding, the GTZAN features'
    melspectrogram with reflect padding; the padding is the only difference, and it must be chosen."""
    y = _signal()
    zeros = dsp.melspectrogram(y, pad_mode="constant")
    reflect = dsp.melspectrogram(y, pad_mode="reflect")
    assert zeros.dtype == reflect.dtype == np.float32 and zeros.shape == reflect.shape == (128, 1 + y.size // 512)
    assert np.array_equal(spectrogram.melspectrogram(y), zeros)
    assert np.array_equal(spectrogram.melspectrogram(y, pad_mode="reflect"), reflect)
    assert np.array_equal(features.melspectrogram(y=y), reflect)
    # the paddings differ only in the frames that reach past the edges (n_fft // 2 // hop = 2 each side)
    assert not np.allclose(zeros[:, 0], reflect[:, 0]) and not np.allclose(zeros[:, -1], reflect[:, -1])
    np.testing.assert_array_equal(zeros[:, 2:-2], reflect[:, 2:-2])
    for mode in ("constant", "reflect"):
        ref = librosa.feature.melspectrogram(y=y, sr=dsp.SR, pad_mode=mode)
        np.testing.assert_allclose(dsp.melspectrogram(y, pad_mode=mode), ref, rtol=1e-4, atol=1e-6 * ref.max())
    with pytest.raises(TypeError):
        dsp.melspectrogram(y)  # no default: the two conventions coexist, a caller says which


def test_mel_frames_is_the_projection_of_time_major_power():
    P = np.abs(dsp.stft(_signal())).T ** 2  # (frames, bins)
    fb = dsp.mel_filterbank()
    np.testing.assert_allclose(dsp.mel_frames(P, fb), fb @ P.T, rtol=1e-5, atol=1e-6)
    batch = np.stack([P, 2 * P])
    out = dsp.mel_frames(batch, fb)
    assert out.shape == (2, 128, P.shape[0])
    np.testing.assert_allclose(out[1], 2 * dsp.mel_frames(P, fb), rtol=1e-6)


def test_melspectrogram_refuses_bad_audio_and_pads_short_audio():
    for bad, match in ((np.zeros((2, 100), np.float32), "mono"), (np.zeros(0, np.float32), "no samples"),
                       (np.array([0.0, np.inf], np.float32), "NaN or infinity")):
        with pytest.raises(FeatureError, match=match):
            dsp.melspectrogram(bad, pad_mode="reflect")
    short = _signal()[:300]  # shorter than the pad: reflect cannot, zeros are used instead
    assert np.array_equal(dsp.melspectrogram(short, pad_mode="reflect"), dsp.melspectrogram(short, pad_mode="constant"))
    assert np.array_equal(dsp.pad_centred(short, pad_mode="reflect")[1024:-1024], short)
