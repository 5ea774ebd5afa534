"""genrekit.features: librosa-equal definitions on synthesised audio, Kaggle-equal values on real clips,
edge cases, segments and the `genrekit features` command."""

from __future__ import annotations

import csv
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genrekit import datasets, features
from genrekit.errors import EmptyAudioError, FeatureError, GenrekitError, NonFiniteAudioError
from genrekit.run import features as batch_features
from genrekit.run import sinks
from helpers import write_audio

SR = 22050


def music(seconds: float = 6.0, seed: int = 0) -> np.ndarray:
    """A chord with vibrato, noise and drum-like clicks at 2 Hz: tonal and percussive content."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = sum(0.2 * np.sin(2 * np.pi * f * t * (1 + 0.002 * np.sin(2 * np.pi * 5 * t))) for f in (196.0, 247.0, 294.0, 445.0))
    clicks = np.zeros_like(t)
    clicks[(np.arange(0, t.size, SR // 2))] = 1.0
    y = y + np.convolve(clicks, rng.standard_normal(400) * np.exp(-np.arange(400) / 80), mode="same")
    return (y + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def y() -> np.ndarray:
    return music()


@pytest.fixture(scope="module")
def lr():
    return pytest.importorskip("librosa")


def close(a, b, rtol=1e-4, atol=1e-6):
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------------------------- columns


def test_columns_are_kaggles_in_order():
    assert features.FEATURE_COLUMNS is datasets.FEATURE_COLUMNS
    cols = features.columns()
    assert len(cols) == 57 and cols[:4] == ["chroma_stft_mean", "chroma_stft_var", "rms_mean", "rms_var"]
    assert cols[16] == "tempo" and cols[-1] == "mfcc20_var"
    ext = features.columns(extended=True)
    assert ext[:57] == cols and len(ext) == len(set(ext)) == 57 + len(features.EXTENDED_COLUMNS)


def test_the_package_keeps_every_name_of_the_old_module():
    """features.py became a package by concern; ``from genrekit.features import X`` still finds every
    name the module had, and each name is defined once (the package re-exports, it does not copy)."""
    from genrekit.features import decompose, filters, gtzan, rhythm, spectral

    old = ["EXTENDED_COLUMNS", "FEATURES_VERSION", "FEATURE_COLUMNS", "FeatureSettings", "analyse_file",
           "chroma_filterbank", "chroma_stft", "columns", "delta", "estimate_tuning", "extract", "extract_segments",
           "fft_frequencies", "hpss", "median_filter", "remedian_filter", "mel_filterbank", "melspectrogram", "mfcc",
           "onset_strength", "power_to_db", "rms", "spectral_bandwidth", "spectral_centroid", "spectral_contrast",
           "spectral_flatness", "spectral_rolloff", "stft", "tempo", "tonnetz", "zero_crossing_rate", "SR", "N_FFT",
           "HOP_LENGTH", "N_MELS", "N_MFCC", "HPSS_KERNEL", "HPSS_MODES", "REMEDIAN_DILATIONS", "BLOCK_FRAMES",
           "MAX_WHOLE_FILE_SECONDS", "N_CONTRAST_BANDS"]
    assert not [n for n in old if not hasattr(features, n)]
    assert set(old) <= set(features.__all__)
    homes = {}
    for mod in (spectral, decompose, rhythm, filters, gtzan):
        for name in mod.__all__:
            assert name not in homes, f"{name} defined in {homes.get(name)} and {mod.__name__}"
            homes[name] = mod.__name__
            if name in features.__all__:
                assert getattr(features, name) is getattr(mod, name)


def test_extract_keys_follow_columns(y):
    out = features.extract(y)
    assert list(out) == features.columns()
    out = features.extract(y, extended=True)
    assert list(out) == features.columns(extended=True)
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())


# ---------------------------------------------------------------------------------------------- vs librosa


def test_stft_and_spectral_shape_features_match_librosa(y, lr):
    D = features.stft(y)
    ref = lr.stft(y, pad_mode="reflect")
    assert D.shape == ref.shape
    close(np.abs(D), np.abs(ref), rtol=1e-4, atol=1e-4)
    S = np.abs(ref)
    # centroid/bandwidth moments are float32 sums (one matmul shared with the rolloff): ~1e-6 relative
    close(features.spectral_centroid(S=S), lr.feature.spectral_centroid(S=S, sr=SR)[0], rtol=1e-5)
    close(features.spectral_bandwidth(S=S), lr.feature.spectral_bandwidth(S=S, sr=SR)[0], rtol=1e-5)
    close(features.spectral_rolloff(S=S), lr.feature.spectral_rolloff(S=S, sr=SR)[0], rtol=0, atol=0)
    close(features.spectral_flatness(S=S), lr.feature.spectral_flatness(S=S)[0], rtol=1e-4)
    close(features.spectral_contrast(S=S), lr.feature.spectral_contrast(S=S, sr=SR), rtol=1e-4, atol=1e-4)
    # from y, our functions use the reflect-padded STFT (librosa 0.7, which made Kaggle's table)
    close(features.spectral_centroid(y=y), lr.feature.spectral_centroid(S=S, sr=SR)[0], rtol=1e-4)


def test_rms_and_zcr_match_librosa(y, lr):
    close(features.rms(y=y), lr.feature.rms(y=y, pad_mode="reflect")[0], rtol=1e-5)
    S = np.abs(lr.stft(y, pad_mode="reflect"))
    close(features.rms(S=S), lr.feature.rms(S=S)[0], rtol=1e-5)
    close(features.zero_crossing_rate(y), lr.feature.zero_crossing_rate(y)[0], rtol=0, atol=0)
    noisy = np.random.default_rng(3).standard_normal(5000).astype(np.float32)
    noisy[100:300] = 0.0
    close(features.zero_crossing_rate(noisy), lr.feature.zero_crossing_rate(noisy)[0], rtol=0, atol=0)


def test_chroma_tuning_mel_mfcc_match_librosa(y, lr):
    P = np.abs(lr.stft(y, pad_mode="reflect")) ** 2
    assert features.estimate_tuning(S=P) == pytest.approx(lr.estimate_tuning(S=P, sr=SR), abs=1e-9)
    detuned = lr.effects.pitch_shift(y, sr=SR, n_steps=0.3)
    Pd = np.abs(lr.stft(detuned, pad_mode="reflect")) ** 2
    assert features.estimate_tuning(S=Pd) == pytest.approx(lr.estimate_tuning(S=Pd, sr=SR), abs=1e-9)
    close(features.chroma_stft(S=P), lr.feature.chroma_stft(S=P, sr=SR), rtol=1e-4, atol=1e-6)
    close(features.chroma_filterbank(tuning=0.13), lr.filters.chroma(sr=SR, n_fft=2048, tuning=0.13), rtol=1e-5, atol=1e-7)
    close(features.mel_filterbank(), lr.filters.mel(sr=SR, n_fft=2048), rtol=1e-5, atol=1e-8)
    mel = features.melspectrogram(S=P)
    close(mel, lr.feature.melspectrogram(S=P, sr=SR), rtol=1e-4, atol=1e-8)
    db = features.power_to_db(mel)
    close(db, lr.power_to_db(mel), rtol=1e-5, atol=1e-4)
    close(features.mfcc(S=db), lr.feature.mfcc(S=db, n_mfcc=20), rtol=1e-4, atol=1e-3)
    m = features.mfcc(S=db)
    close(features.delta(m), lr.feature.delta(m), rtol=1e-4, atol=1e-4)
    chroma = features.chroma_stft(S=P)
    close(features.tonnetz(chroma=chroma), lr.feature.tonnetz(chroma=chroma), rtol=1e-4, atol=1e-6)


def test_onset_and_tempo_match_librosa(y, lr):
    P = np.abs(lr.stft(y, pad_mode="reflect")) ** 2
    db = lr.power_to_db(lr.feature.melspectrogram(S=P, sr=SR))
    env = features.onset_strength(S=db)
    close(env, lr.onset.onset_strength(S=db, sr=SR, aggregate=np.median), rtol=1e-5, atol=1e-5)
    ref = float(lr.feature.tempo(onset_envelope=env, sr=SR)[0])
    assert features.tempo(onset_envelope=env, prior="log1p") == pytest.approx(ref)
    # clicks every 0.5 s: 120 BPM, up to the lag grid (60 * sr / hop / lag: 117.5 or 123.0), either prior rule
    assert features.tempo(onset_envelope=env) == pytest.approx(120.0, rel=0.03)
    assert features.tempo(onset_envelope=np.zeros(500)) == 0.0


def test_median_filter_and_hpss_match_scipy_and_librosa(y, lr):
    from scipy import ndimage

    rng = np.random.default_rng(1)
    for shape in [(40, 70), (5, 9), (33, 3)]:
        x = rng.random(shape, dtype=np.float32)
        for axis, size in [(1, (1, 31)), (0, (31, 1))]:
            close(features.median_filter(x, size=31, axis=axis), ndimage.median_filter(x, size=size, mode="reflect"), rtol=0, atol=0)
    h, p = features.hpss(y)
    D = lr.stft(y, pad_mode="reflect")
    H, P = lr.decompose.hpss(D)
    # librosa 0.7's effects.hpss: istft without length, then zero-padded to len(y)
    h_ref = lr.util.fix_length(lr.istft(H, dtype=np.float32), size=y.size)
    p_ref = lr.util.fix_length(lr.istft(P, dtype=np.float32), size=y.size)
    close(h, h_ref, rtol=0, atol=2e-5)
    close(p, p_ref, rtol=0, atol=2e-5)
    out = features.extract(y, hpss="exact")
    assert out["harmony_var"] == pytest.approx(float(np.var(h_ref)), rel=1e-4)
    assert out["perceptr_var"] == pytest.approx(float(np.var(p_ref)), rel=1e-4)
    assert out["harmony_mean"] == pytest.approx(float(np.mean(h_ref)), rel=1e-3, abs=1e-9)
    assert out["perceptr_mean"] == pytest.approx(float(np.mean(p_ref)), rel=1e-3, abs=1e-9)
    # the default remedian approximation: variances within a few percent, means within 2 %
    fast = features.extract(y)
    assert fast["harmony_var"] == pytest.approx(out["harmony_var"], rel=0.08)
    assert fast["perceptr_var"] == pytest.approx(out["perceptr_var"], rel=0.15)
    assert fast["harmony_mean"] == pytest.approx(out["harmony_mean"], rel=0.02, abs=1e-7)
    assert fast["perceptr_mean"] == pytest.approx(out["perceptr_mean"], rel=0.02, abs=1e-7)
    for k in fast:
        if not k.startswith(("harmony_", "perceptr_")):
            assert fast[k] == out[k], k
    with pytest.raises(FeatureError, match="hpss must be one of"):
        features.extract(y, hpss="approximate")


def test_remedian_is_three_dilated_medians_of_three():
    """remedian_filter == median of 3 taps d apart, three times, reflecting at the edges like scipy."""
    rng = np.random.default_rng(3)

    def reference(x, dilations):
        for d in dilations:
            p = np.pad(x, ((d, d), (0, 0)), mode="symmetric")
            n = x.shape[0]
            x = np.median(np.stack([p[:n], p[d : d + n], p[2 * d : 2 * d + n]]), axis=0)
        return x

    for n in (200, 31, 19, 10):
        x = rng.random((n, 13), dtype=np.float32) ** 4
        want = reference(x, features.REMEDIAN_DILATIONS)
        close(features.remedian_filter(x, axis=0), want, rtol=0, atol=0)
        close(features.remedian_filter(np.ascontiguousarray(x.T), axis=1), want.T, rtol=0, atol=0)
    # a lone spike is removed and a step edge kept, as a running median would
    x = np.zeros((64, 1), dtype=np.float32)
    x[20] = 9.0
    x[40:] = 1.0
    got = features.remedian_filter(x, axis=0)[:, 0]
    assert got[20] == 0.0 and np.all(got[:37] == 0.0) and np.all(got[44:] == 1.0)
    with pytest.raises(FeatureError, match="dilations"):
        features.remedian_filter(x, axis=0, dilations=(0, 3))


def test_extract_equals_librosa_pipeline(y, lr):
    """The whole 57-column row against librosa calls (reflect padding, librosa 0.7's HPSS length)."""
    out = features.extract(y)
    S = np.abs(lr.stft(y, pad_mode="reflect"))
    ref = {
        "chroma_stft": lr.feature.chroma_stft(S=S**2, sr=SR),
        "rms": lr.feature.rms(y=y, pad_mode="reflect"),
        "spectral_centroid": lr.feature.spectral_centroid(S=S, sr=SR),
        "spectral_bandwidth": lr.feature.spectral_bandwidth(S=S, sr=SR),
        "rolloff": lr.feature.spectral_rolloff(S=S, sr=SR),
        "zero_crossing_rate": lr.feature.zero_crossing_rate(y),
    }
    for k, v in ref.items():
        assert out[f"{k}_mean"] == pytest.approx(float(np.mean(v)), rel=1e-4), k
        assert out[f"{k}_var"] == pytest.approx(float(np.var(v)), rel=1e-4), k
    m = lr.feature.mfcc(S=lr.power_to_db(lr.feature.melspectrogram(S=S**2, sr=SR)), n_mfcc=20)
    for i in range(20):
        assert out[f"mfcc{i + 1}_mean"] == pytest.approx(float(m[i].mean()), rel=1e-4, abs=1e-3)
        assert out[f"mfcc{i + 1}_var"] == pytest.approx(float(m[i].var()), rel=1e-4)


def test_blockwise_equals_single_pass():
    """Long inputs are processed in blocks; the result must not depend on where blocks fall."""
    y = music(12.0, seed=4)
    one = features.extract(y, extended=True)
    blocks = features.extract(y, extended=True, block_frames=97)
    for k in one:
        assert blocks[k] == pytest.approx(one[k], rel=1e-5, abs=1e-9), k


# ---------------------------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize(
    "signal",
    [
        np.zeros(SR * 2, dtype=np.float32),
        (0.5 * np.sin(2 * np.pi * 440 * np.arange(SR * 2) / SR)).astype(np.float32),
        np.clip(3 * np.sin(2 * np.pi * 100 * np.arange(SR * 2) / SR), -1, 1).astype(np.float32),
        music(1.0),
        music(1.0)[:2048],
    ],
    ids=["silence", "pure_tone", "clipped", "one_second", "one_frame"],
)
def test_degenerate_signals_give_finite_values(signal):
    out = features.extract(signal, extended=True)
    bad = [k for k, v in out.items() if not math.isfinite(v)]
    assert not bad, bad


def test_silence_and_tone_values_are_sensible():
    out = features.extract(np.zeros(SR, dtype=np.float32))
    assert out["rms_mean"] == 0 and out["tempo"] == 0 and out["spectral_centroid_mean"] == 0
    tone = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(SR * 2) / SR)).astype(np.float32)
    out = features.extract(tone)
    assert out["spectral_centroid_mean"] == pytest.approx(1000, rel=0.02)
    assert out["rms_mean"] == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
    assert out["harmony_var"] > 50 * out["perceptr_var"]  # a steady tone is harmonic


def test_bad_inputs_raise_specific_errors():
    with pytest.raises(EmptyAudioError, match="shorter than one analysis frame"):
        features.extract(np.zeros(2047, dtype=np.float32))
    with pytest.raises(EmptyAudioError):
        features.extract(np.zeros(0, dtype=np.float32))
    y = music(1.0)
    y[10] = np.nan
    with pytest.raises(NonFiniteAudioError):
        features.extract(y)
    with pytest.raises(FeatureError, match="mono"):
        features.extract(np.zeros((SR, 2), dtype=np.float32))
    with pytest.raises(FeatureError, match="shorter than one analysis frame"):
        features.extract_segments(music(2.0), segment_seconds=0.05)


def test_too_loud_waveforms_are_refused_never_nan():
    """A finite waveform far beyond full scale would overflow the float32 analysis: it is refused in
    words (the audio layer's amplitude limit, or extract's own finite check behind it) instead of
    returning NaN/inf, and every value extract does return is finite (1e5 x full scale still fits)."""
    loud = music(3.0) * np.float32(1e5)
    assert all(math.isfinite(v) for v in features.extract(loud, extended=True).values())
    refused = "NaN or infinite|beyond full scale"
    for scale in (1e18, 1e30):
        with pytest.raises(GenrekitError, match=refused):
            features.extract(music(3.0) * np.float32(scale))
        with pytest.raises(GenrekitError, match=refused):
            features.extract_segments(music(4.0) * np.float32(scale), segment_seconds=3.0)
        with pytest.raises(GenrekitError, match=refused):
            features.extract(music(3.0) * np.float32(scale), columns=["mfcc1_mean", "tempo"])


def test_a_file_whose_features_overflow_is_an_error_naming_it_and_the_batch_goes_on(tmp_path):
    root = tmp_path / "music"
    good = write_audio(root / "blues" / "blues.00001.wav", music(3.0, seed=1))
    loud = write_audio(root / "blues" / "blues.00002.wav", music(3.0, seed=2) * np.float32(1e18), subtype="FLOAT")
    for seg in (None, 1.0):
        with pytest.raises(GenrekitError, match=re.escape(str(loud))):
            features.analyse_file(loud, segment_seconds=seg)
    results = list(batch_features.feature_rows([good, loud], features.FeatureSettings(), cache=False))
    by = {r.input: r for r in results}
    assert by[str(good)].ok and not by[str(loud)].ok and str(loud) in str(by[str(loud)].error)
    sink = sinks.CsvSink(tmp_path / "t.csv", header=batch_features.feature_header(features.FeatureSettings()))
    sinks.write(iter(results), sink)
    rows = _read(tmp_path / "t.csv")
    assert [r["filename"] for r in rows] == ["blues.00001.wav"]
    assert all(math.isfinite(float(rows[0][c])) for c in features.FEATURE_COLUMNS)


def test_a_cached_analysis_holding_nan_is_a_miss(tmp_path):
    """Older versions cached NaN analyses; a hit must not bring one back into a table."""
    good = write_audio(tmp_path / "rock" / "rock.00003.wav", music(3.0, seed=3))
    settings = features.FeatureSettings()
    store = batch_features.feature_cache(settings, root=tmp_path / "cache")
    fresh = features.analyse_file(good)
    stale = [{**fresh[0], "values": [float("nan")] + fresh[0]["values"][1:]}]
    assert features.finite_analysis(fresh) is fresh and features.finite_analysis(stale) is None
    assert features.finite_analysis(None) is None and features.finite_analysis([{"no": "values"}]) is None
    store.put(store.key(str(good)), stale)
    [r] = list(batch_features.feature_rows([good], settings, cache=store))
    assert r.ok and not r.cached and r.value[0]["chroma_stft_mean"] == fresh[0]["values"][0]
    [again] = list(batch_features.feature_rows([good], settings, cache=store))  # the recomputed analysis replaced it
    assert again.cached and again.value == r.value


# ---------------------------------------------------------------------------------------------- segments and files


def test_segments_are_named_like_kaggles_3s_table(tmp_path):
    path = write_audio(tmp_path / "blues" / "blues.00042.wav", music(10.0))
    rows = batch_features.extract_file(path, segment_seconds=3.0)
    assert [r["filename"] for r in rows] == ["blues.00042.0.wav", "blues.00042.1.wav", "blues.00042.2.wav"]
    assert {r["track_id"] for r in rows} == {"blues.00042"} and {r["label"] for r in rows} == {"blues"}
    assert all(r["length"] == 66150 for r in rows)
    assert all(datasets.track_id(r["filename"]) == "blues.00042" for r in rows)
    from genrekit.audio import load

    segs = features.extract_segments(load(path), segment_seconds=3.0)
    assert len(segs) == 3
    assert [rows[1][c] for c in features.FEATURE_COLUMNS] == pytest.approx(list(segs[1].values()), rel=1e-9)
    whole = batch_features.extract_file(path)
    assert len(whole) == 1 and whole[0]["filename"] == "blues.00042.wav" and whole[0]["length"] == 10 * SR
    short = write_audio(tmp_path / "x" / "short.wav", music(2.0))
    with pytest.raises(FeatureError, match="shorter than one 3 s segment"):
        batch_features.extract_file(short, segment_seconds=3.0)
    assert batch_features.extract_file(short)[0]["label"] == ""


# ---------------------------------------------------------------------------------------------- CLI


def _cli(args, cache: Path, **kw):
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    return subprocess.run([sys.executable, "-m", "genrekit", "features", *map(str, args), "-q"],
                          capture_output=True, text=True, env=env, **kw)


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_cli_table_bad_files_exit_code_and_cache(tmp_path):
    root = tmp_path / "music"
    write_audio(root / "blues" / "blues.00001.wav", music(3.0, seed=1))
    write_audio(root / "metal" / "metal.00002.flac", music(3.0, seed=2))
    write_audio(root / "misc" / "song.wav", music(3.0, seed=3))
    (root / "metal" / "broken.wav").write_bytes(b"RIFF not really a wav")
    write_audio(root / "metal" / "tiny.wav", np.zeros(1000, dtype=np.float32))
    cache, out = tmp_path / "cache", tmp_path / "out" / "table.csv"

    r = _cli([root, "--out", out, "--jobs", "2"], cache)
    assert r.returncode == 1, r.stderr
    rows = _read(out)
    with open(out) as f:
        header = f.readline().strip().split(",")
    assert header == ["filename", "length", *datasets.FEATURE_COLUMNS, "label"]
    assert [(x["filename"], x["label"]) for x in rows] == [
        ("blues.00001.wav", "blues"), ("metal.00002.flac", "metal"), ("song.wav", "")]
    errs = (tmp_path / "out" / "table.csv.errors.tsv").read_text().splitlines()
    assert errs[0] == "path\terror\tmessage" and len(errs) == 3
    assert any("broken.wav\tDecodeError" in e for e in errs) and any("tiny.wav\tEmptyAudioError" in e for e in errs)
    assert "broken.wav" in r.stderr and "2 file(s) failed" in r.stderr

    # second run: every good file comes from the cache, same table
    r2 = _cli([root, "--out", tmp_path / "again.csv"], cache)
    assert r2.returncode == 1 and "(3 from cache)" in r2.stderr
    assert _read(tmp_path / "again.csv") == rows

    # all good: exit 0, stale error list removed; --no-cache neither reads nor writes
    (root / "metal" / "broken.wav").unlink()
    (root / "metal" / "tiny.wav").unlink()
    r3 = _cli([root, "--out", out, "--no-cache"], tmp_path / "cache2")
    assert r3.returncode == 0, r3.stderr
    assert "(0 from cache)" in r3.stderr and not (tmp_path / "cache2").exists()
    assert not (tmp_path / "out" / "table.csv.errors.tsv").exists()
    assert [float(a["mfcc3_var"]) for a in _read(out)] == pytest.approx([float(a["mfcc3_var"]) for a in rows])


def test_cli_resumes_from_cache_and_segments(tmp_path):
    root = tmp_path / "music" / "rock"
    for i in range(3):
        write_audio(root / f"rock.0000{i}.wav", music(6.5, seed=10 + i))
    cache = tmp_path / "cache"
    # a run that stopped after one file left its cache entry: the full run recomputes only the rest
    assert _cli([root / "rock.00000.wav", "--out", tmp_path / "a.csv", "--segment", "3"], cache).returncode == 0
    r = _cli([root, "--out", tmp_path / "b.csv", "--segment", "3", "--jobs", "2"], cache)
    assert r.returncode == 0 and "(1 from cache)" in r.stderr
    rows = _read(tmp_path / "b.csv")
    assert [x["filename"] for x in rows] == [f"rock.0000{i}.{j}.wav" for i in range(3) for j in range(2)]
    assert {x["track_id"] for x in rows} == {"rock.00000", "rock.00001", "rock.00002"}
    assert all(x["label"] == "rock" for x in rows)
    # a different setting is a different cache entry
    r = _cli([root, "--out", tmp_path / "c.csv", "--extended"], cache)
    assert r.returncode == 0 and "(0 from cache)" in r.stderr
    assert len(_read(tmp_path / "c.csv")[0]) == 3 + 57 + len(features.EXTENDED_COLUMNS)
    # --exact-hpss is a setting too, and changes only the four HPSS columns
    r = _cli([root, "--out", tmp_path / "d.csv", "--segment", "3", "--exact-hpss"], cache)
    assert r.returncode == 0 and "(0 from cache)" in r.stderr
    exact = _read(tmp_path / "d.csv")
    assert [x["filename"] for x in exact] == [x["filename"] for x in rows]
    for a, b in zip(rows, exact, strict=True):
        assert a["perceptr_var"] != b["perceptr_var"]
        assert {k: v for k, v in a.items() if not k.startswith(("harmony_", "perceptr_"))} == \
            {k: v for k, v in b.items() if not k.startswith(("harmony_", "perceptr_"))}


def test_cli_usage_and_missing_paths(tmp_path):
    r = _cli([tmp_path / "nope.wav", "--out", tmp_path / "x.csv"], tmp_path / "c")
    assert r.returncode == 1 and "nope.wav" in r.stderr and "no such file" in r.stderr
    (tmp_path / "empty").mkdir()
    r = _cli([tmp_path / "empty", "--out", tmp_path / "x.csv"], tmp_path / "c")
    assert r.returncode == 1 and "no audio files" in r.stderr
    r = _cli([tmp_path, "--out", tmp_path / "x.csv", "--segment", "-1"], tmp_path / "c")
    assert r.returncode == 2


def test_features_path_never_imports_torch_or_librosa(tmp_path):
    path = write_audio(tmp_path / "a.wav", music(2.0))
    code = (
        "import sys\n"
        "from genrekit.cli import main\n"
        f"rc = main(['features', {str(path)!r}, '--out', {str(tmp_path / 'o.csv')!r}, '--no-cache', '-q'])\n"
        "heavy = [m for m in ('torch', 'librosa', 'numba', 'sklearn', 'pandas') if m in sys.modules]\n"
        "print(rc, heavy)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "0 []", r.stdout + r.stderr


# ---------------------------------------------------------------------------------------------- real data


@pytest.mark.shared
@pytest.mark.parametrize("name", ["blues.00000", "classical.00003", "metal.00004"])
def test_matches_kaggle_table_on_real_clips(gtzan, name):
    import pandas as pd

    kaggle = pd.read_csv(gtzan / "features_30_sec.csv").set_index("filename").loc[f"{name}.wav"]
    path = gtzan / "audio" / name.split(".")[0] / f"{name}.flac"
    if not path.exists():
        pytest.skip(f"{path} not in the shared subset")
    row = batch_features.extract_file(path, hpss="exact")[0]
    assert row["length"] == kaggle["length"] and row["label"] == kaggle["label"]
    assert row["tempo"] == pytest.approx(kaggle["tempo"], rel=1e-9)
    for col in datasets.FEATURE_COLUMNS:
        assert row[col] == pytest.approx(kaggle[col], rel=1e-4, abs=1e-9), col


def test_feature_table_for_training(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "music"
    write_audio(root / "jazz" / "jazz.00001.wav", music(3.0, seed=5))
    write_audio(root / "pop" / "pop.00002.wav", music(3.0, seed=6))
    (root / "pop" / "pop.00003.wav").write_bytes(b"garbage")
    tracks = datasets.scan_audio([root])
    with pytest.warns(UserWarning, match="pop.00003.wav"):
        table = batch_features.feature_table(tracks, jobs=1, progress=False)
    assert table.X.shape == (2, 57) and list(table.y) == ["jazz", "pop"]
    assert list(table.track_ids) == ["jazz.00001", "pop.00002"] and table.columns == datasets.FEATURE_COLUMNS
