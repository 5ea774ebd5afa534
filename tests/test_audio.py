import numpy as np
import pytest

from genrekit import audio
from genrekit.errors import (
    AudioError,
    AudioFileNotFoundError,
    DecodeError,
    EmptyAudioError,
    NonFiniteAudioError,
    UnsupportedFormatError,
)
from helpers import tone, write_audio, write_m4a


@pytest.mark.parametrize(
    "ext,kw",
    [("wav", {}), ("flac", {}), ("ogg", {}), ("au", {}), ("mp3", {}), ("aiff", {}), ("wav", {"subtype": "FLOAT"})],
)
def test_every_soundfile_format_decodes_to_mono_float32(tmp_path, ext, kw):
    y = tone(1.5, sr=22050, channels=2)
    p = write_audio(tmp_path / f"x.{ext}", y, **kw)
    out = audio.load(p)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(out.size - y.shape[0]) < 3000  # mp3 adds encoder padding
    # mono is the mean of the channels: correlated with it, and the right level
    ref = y.mean(axis=1)
    n = min(ref.size, out.size)
    if ext in ("ogg", "mp3"):  # lossy: the tone survives
        spec = np.abs(np.fft.rfft(out[4096 : 4096 + 16384]))
        assert abs(np.argmax(spec) * 22050 / 16384 - 440) < 3
    else:
        np.testing.assert_allclose(out[:n], ref[:n], atol=1e-3)
    assert 0.2 < np.abs(out).max() < 0.7


def test_m4a_via_pyav(tmp_path):
    y = tone(2.0, sr=22050)
    p = write_m4a(tmp_path / "x.m4a", y[:, 0])
    out = audio.load(p)
    assert out.dtype == np.float32
    assert abs(out.size - y.shape[0]) < 4096
    # the tone survives AAC: dominant frequency is 440 Hz
    spec = np.abs(np.fft.rfft(out[2048:2048 + 16384]))
    assert abs(np.argmax(spec) * 22050 / 16384 - 440) < 3


def test_resampling_and_offset_duration(tmp_path):
    y = tone(3.0, sr=44100, freq=1000.0)
    p = write_audio(tmp_path / "x.flac", y, sr=44100)
    out = audio.load(p, sr=22050)
    assert abs(out.size - 3 * 22050) <= 1
    spec = np.abs(np.fft.rfft(out[:22050]))
    assert abs(np.argmax(spec) - 1000) <= 1  # 1 Hz bins
    part = audio.load(p, sr=22050, offset=1.0, duration=0.5)
    assert abs(part.size - 11025) <= 1
    np.testing.assert_allclose(part[100:-100], out[22050 + 100 : 22050 + 11025 - 100], atol=1e-3)


def test_stream_is_blockwise_and_matches_load(tmp_path):
    y = tone(10.0, sr=44100)
    p = write_audio(tmp_path / "x.wav", y, sr=44100)
    blocks = list(audio.stream(p, sr=22050, block_seconds=2.0))
    assert len(blocks) >= 5 and max(b.size for b in blocks) <= 2 * 22050
    joined = np.concatenate(blocks)
    full = audio.load(p, sr=22050)
    assert abs(joined.size - full.size) <= 2
    n = min(joined.size, full.size)
    np.testing.assert_allclose(joined[1000 : n - 1000], full[1000 : n - 1000], atol=1e-3)


def test_windows_keep_track_and_time_span():
    y = np.zeros(22050 * 10, np.float32)
    ws = audio.windows(y, seconds=3.0, track_id="blues.00001")
    assert [w.index for w in ws] == [0, 1, 2]
    assert (ws[1].start, ws[1].end) == (3.0, 6.0) and ws[1].track_id == "blues.00001"
    over = audio.windows(y, seconds=3.0, overlap=0.5)
    assert len(over) == 5 and over[1].start == 1.5
    short = audio.windows(y[:22050], seconds=3.0, pad=True)
    assert len(short) == 1 and short[0].samples.size == 3 * 22050 and short[0].end == 1.0


def test_iter_windows_matches_in_memory_windows(tmp_path):
    y = tone(20.0)
    p = write_audio(tmp_path / "long.flac", y)
    streamed = list(audio.iter_windows(p, seconds=3.0, overlap=0.5, block_seconds=7.0))
    mem = audio.windows(audio.load(p), seconds=3.0, overlap=0.5)
    assert len(streamed) == len(mem)
    for a, b in zip(streamed, mem, strict=True):
        assert a.start == pytest.approx(b.start)
        np.testing.assert_allclose(a.samples, b.samples, atol=1e-6)


def test_missing_file(tmp_path):
    with pytest.raises(AudioFileNotFoundError, match="no such file"):
        audio.load(tmp_path / "nope.wav")


def test_zero_byte_file(tmp_path):
    p = tmp_path / "z.wav"
    p.write_bytes(b"")
    with pytest.raises(EmptyAudioError, match="0 bytes"):
        audio.load(p)


def test_text_named_mp3_is_not_audio(tmp_path):
    p = tmp_path / "t.mp3"
    p.write_text("this is not an mp3\n" * 50)
    with pytest.raises(DecodeError, match="not audio or corrupt"):
        audio.load(p)


def test_random_bytes_wav(tmp_path):
    p = tmp_path / "r.wav"
    p.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(DecodeError):
        audio.load(p)


def test_truncated_flac(tmp_path):
    p = write_audio(tmp_path / "x.flac", tone(5.0))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError):
        audio.load(p)


def test_unsupported_container(tmp_path):
    p = tmp_path / "x.xyz"
    p.write_bytes(b"abc")
    with pytest.raises(UnsupportedFormatError, match="unsupported container"):
        audio.load(p)


def test_shorter_than_one_frame(tmp_path):
    p = write_audio(tmp_path / "short.wav", tone(0.05))
    with pytest.raises(EmptyAudioError, match="shorter than one analysis frame"):
        audio.load(p)


def test_non_finite_samples(tmp_path):
    y = tone(1.0)
    y[100, 0] = np.nan
    y[200, 0] = np.inf
    p = write_audio(tmp_path / "nan.wav", y, subtype="FLOAT")
    with pytest.raises(NonFiniteAudioError, match="NaN"):
        audio.load(p)


def test_all_errors_are_audio_errors():
    for cls in (AudioFileNotFoundError, DecodeError, EmptyAudioError, NonFiniteAudioError, UnsupportedFormatError):
        assert issubclass(cls, AudioError)


def test_load_bytes_decodes_wav_and_rejects_text():
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, tone(1.0, sr=16000), 16000, format="WAV")
    y = audio.load_bytes(buf.getvalue(), filename="u.wav")
    assert abs(y.size - 22050) <= 2
    with pytest.raises(DecodeError):
        audio.load_bytes(b"hello" * 100, filename="u.mp3")


def test_iter_audio_files_skips_hidden_and_survives_symlink_loop(tmp_path):
    write_audio(tmp_path / "a" / "x.wav", tone(0.5))
    (tmp_path / "a" / ".hidden.wav").write_bytes(b"")
    (tmp_path / "a" / "cover.jpg").write_bytes(b"jpg")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a", target_is_directory=True)
    files = list(audio.iter_audio_files([tmp_path]))
    assert [f.name for f in files] == ["x.wav"]
    with pytest.raises(AudioFileNotFoundError):
        list(audio.iter_audio_files([tmp_path / "missing"]))


@pytest.mark.shared
def test_shared_formats_decode(gtzan):
    for name in ("blues/blues.00000.flac", "blues/blues.00066.au", "blues/blues.00099.mp3"):
        y = audio.load(gtzan / "audio" / name)
        assert abs(y.size - 661794) < 3000
