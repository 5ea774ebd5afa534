"""Property tests (hypothesis) over the audio reader and the feature functions.

The contract: whatever the bytes or samples, genrekit either returns finite numbers or raises one of its
documented errors (a :class:`genrekit.errors.GenrekitError` subclass) -- never another exception, never
NaN or infinity in an output. Example counts are modest so the suite stays fast; ``fuzz/`` holds an
atheris harness for long coverage-guided runs.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genrekit import audio, features
from genrekit.errors import AudioError, FeatureError, GenrekitError

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
EXTENSIONS = [".wav", ".flac", ".ogg", ".mp3", ".au", ".aiff", ".m4a", ".opus", ".webm", ".caf"]


def _seed_files() -> dict[str, bytes]:
    """Small valid files to mutate: structure-aware fuzzing reaches the decoders, not just the sniffers."""
    import soundfile as sf

    from badinput import mp3_bytes

    t = np.arange(4096) / 22050
    y = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = {}
    for ext, fmt, sub in ((".wav", "WAV", "PCM_16"), (".wav", "WAV", "FLOAT"), (".flac", "FLAC", "PCM_16"),
                          (".ogg", "OGG", "VORBIS"), (".au", "AU", "PCM_16"), (".aiff", "AIFF", "PCM_16")):
        buf = io.BytesIO()
        sf.write(buf, y, 22050, format=fmt, subtype=sub)
        out[f"{fmt.lower()}-{sub.lower()}{ext}"] = buf.getvalue()
    out["lame.mp3"] = mp3_bytes(np.tile(y, 3))
    return out


SEEDS = _seed_files()


def _check_waveform(y: np.ndarray) -> None:
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.ndim == 1
    assert y.size >= audio.N_FFT
    assert np.isfinite(y).all()


def _load_file(path) -> None:
    try:
        y = audio.load(path)
    except GenrekitError:
        return
    _check_waveform(y)


@st.composite
def mutated(draw):
    """A seed file with a few bytes overwritten, a cut, or both; returned with its name."""
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(0, 6))):
        pos = draw(st.integers(0, len(data) - 1))
        chunk = draw(st.binary(min_size=1, max_size=8))
        data[pos : pos + len(chunk)] = chunk
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return name, bytes(data)


# ------------------------------------------------------------------------------------ audio reader
@FAST
@given(data=st.binary(max_size=4096), ext=st.sampled_from(EXTENSIONS))
def test_arbitrary_bytes_as_a_file(tmp_path_factory, data, ext):
    p = tmp_path_factory.mktemp("fz") / f"x{ext}"
    p.write_bytes(data)
    _load_file(p)
    try:
        audio.info(p)
    except GenrekitError:
        pass


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutated())
def test_mutated_real_files(tmp_path_factory, case):
    name, data = case
    p = tmp_path_factory.mktemp("fz") / name
    p.write_bytes(data)
    _load_file(p)
    try:  # the streaming reader obeys the same contract
        for block in audio.stream(p, block_seconds=0.05):
            assert np.isfinite(block).all()
    except GenrekitError:
        pass


@FAST
@given(data=st.one_of(st.binary(max_size=4096), mutated().map(lambda c: c[1])),
       name=st.sampled_from(["upload.wav", "x.mp3", "song.flac", "noext", "a.txt", "../../b.ogg"]))
def test_load_of_bytes(data, name):
    try:
        y = audio.load(data, filename=name)
    except GenrekitError:
        return
    _check_waveform(y)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=4096), mutated().map(lambda c: c[1])),
       name=st.sampled_from(["upload.wav", "x.mp3", "song.flac", "noext", "a.txt", "../../b.ogg", "c.m4a"]))
def test_stream_of_bytes_and_its_duration_check(data, name):
    """What the server decodes uploads with obeys the same contract: finite blocks or a GenrekitError."""
    try:
        for block in audio.stream(data, filename=name, block_seconds=0.05, max_duration=3600):
            assert block.dtype == np.float32 and np.isfinite(block).all()
    except GenrekitError:
        pass
    try:
        assert audio.decoded_seconds(data, filename=name, max_duration=3600) >= 0
    except GenrekitError:
        pass


def test_seed_files_themselves_decode():
    """The mutation seeds are valid, so the properties above start from real decoder paths."""
    for name, data in SEEDS.items():
        _check_waveform(audio.load(data, filename=name))


# ------------------------------------------------------------------------------------ features
def _signal(kind: str, n: int, amp: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    base = {
        "noise": rng.standard_normal(n),
        "sine": np.sin(2 * np.pi * 0.02 * t),
        "impulse": (t == n // 2).astype(float),
        "square": np.sign(np.sin(2 * np.pi * 0.003 * t)),
        "dc": np.ones(n),
        "zeros": np.zeros(n),
    }[kind]
    return (amp * base).astype(np.float32)


AMPLITUDES = st.sampled_from([0.0, 1e-30, 1e-12, 1e-6, 1e-3, 0.5, 1.0, 4.0, 1e3, 1e6])


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["noise", "sine", "impulse", "square", "dc", "zeros"]),
       n=st.integers(0, 3 * 22050), amp=AMPLITUDES, seed=st.integers(0, 2**16))
def test_extract_is_finite_or_a_documented_error(kind, n, amp, seed):
    y = _signal(kind, n, amp, seed)
    try:
        feats = features.extract(y)
    except GenrekitError:  # documented: too short for one frame, or samples beyond the amplitude limit
        from genrekit.audio import MAX_AMPLITUDE

        assert n < features.N_FFT or float(np.max(np.abs(y))) > MAX_AMPLITUDE
        return
    assert list(feats) == features.columns()
    bad = {k: v for k, v in feats.items() if not np.isfinite(v)}
    assert not bad, bad


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 6000), where=st.integers(0, 5999),
       value=st.sampled_from([np.nan, np.inf, -np.inf]), ndim=st.sampled_from([1, 1, 2]))
def test_nonfinite_or_malformed_input_raises_documented_errors(n, where, value, ndim):
    y = _signal("noise", n, 0.3, 0)
    if n:
        y[where % n] = value
    if ndim == 2:
        y = np.stack([y, y])
    with pytest.raises((AudioError, FeatureError)):
        features.extract(y)


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=0, max_size=5000))
def test_primitives_on_arbitrary_floats(values):
    """Each public feature function: finite output for finite input of any amplitude, else GenrekitError."""
    y = np.asarray(values, dtype=np.float32)
    fns = [features.spectral_centroid, features.spectral_bandwidth, features.spectral_rolloff, features.rms,
           features.zero_crossing_rate, features.mfcc, features.chroma_stft, features.spectral_flatness,
           features.spectral_contrast, features.melspectrogram, features.onset_strength]
    for fn in fns:
        try:
            out = fn(y=y)
        except GenrekitError:
            continue
        assert np.isfinite(np.asarray(out)).all(), (fn.__name__, y.size, float(np.abs(y).max(initial=0)))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 3 * 22050), amp=AMPLITUDES, kind=st.sampled_from(["noise", "sine", "zeros", "dc"]))
def test_logmel_is_finite_and_normalised(n, amp, kind):
    from genrekit import spectrogram

    y = _signal(kind, n, amp, 1)
    try:
        levels = spectrogram.logmel(y)
    except GenrekitError:
        assert n == 0
        return
    assert np.isfinite(levels).all() and levels.min() >= 0.0 and levels.max() <= 1.0
