from pathlib import Path

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


def test_load_of_bytes_decodes_wav_and_rejects_text():
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, tone(1.0, sr=16000), 16000, format="WAV")
    y = audio.load(buf.getvalue(), filename="u.wav")
    assert abs(y.size - 22050) <= 2
    with pytest.raises(DecodeError):
        audio.load(b"hello" * 100, filename="u.mp3")


def test_finder_skips_hidden_and_survives_symlink_loop(tmp_path):
    write_audio(tmp_path / "a" / "x.wav", tone(0.5))
    (tmp_path / "a" / ".hidden.wav").write_bytes(b"")
    (tmp_path / "a" / "cover.jpg").write_bytes(b"jpg")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a", target_is_directory=True)
    files, skipped = audio.find_audio([tmp_path])
    assert [Path(f).name for f in files] == ["x.wav"] and skipped == []
    files, skipped = audio.find_audio([tmp_path / "missing"])
    assert files == [] and isinstance(skipped[0][1], AudioFileNotFoundError)


@pytest.mark.shared
def test_shared_formats_decode(gtzan):
    for name in ("blues/blues.00000.flac", "blues/blues.00066.au", "blues/blues.00099.mp3"):
        y = audio.load(gtzan / "audio" / name)
        assert abs(y.size - 661794) < 3000


# ---------------------------------------------------------------------------------------------- one opener


def test_path_bytes_and_file_object_decode_identically(tmp_path, stereo_mp3):
    for p in (write_audio(tmp_path / "s.flac", tone(3.0, channels=2)), stereo_mp3):
        data = p.read_bytes()
        y = audio.load(p)
        with open(p, "rb") as f:
            np.testing.assert_array_equal(audio.load(f), y)  # named by the file object's own name
        np.testing.assert_array_equal(audio.load(data, filename=p.name), y)
        streamed = np.concatenate(list(audio.stream(p, block_seconds=1.0)))
        np.testing.assert_array_equal(np.concatenate(list(audio.stream(data, filename=p.name, block_seconds=1.0))),
                                      streamed)
        assert audio.decoded_seconds(p) == audio.decoded_seconds(data, filename=p.name)


@pytest.fixture
def stereo_mp3(tmp_path):
    """A stereo MP3 (FFmpeg's path); a stereo MP3 upload once decoded sqrt(2) louder than the same file."""
    return write_audio(tmp_path / "s.mp3", tone(3.0, channels=2))


# ---------------------------------------------------------------------------------------------- special files


def _alarm(seconds: int):
    """Fail instead of hanging when something opens a FIFO."""
    import signal

    def boom(*_):
        raise TimeoutError("a special file was opened")

    signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)


@pytest.fixture
def special_library(tmp_path):
    import os

    write_audio(tmp_path / "ok.wav", tone(0.5))
    os.mkfifo(tmp_path / "p.flac")
    (tmp_path / "z.mp3").symlink_to("/dev/zero")
    (tmp_path / "broken.wav").symlink_to(tmp_path / "nowhere.wav")
    (tmp_path / "link.wav").symlink_to(tmp_path / "ok.wav")  # a link to a regular file is followed
    return tmp_path


def test_finder_yields_regular_files_only_and_says_why_it_skipped_the_rest(special_library):
    import signal

    _alarm(10)
    try:
        files, skipped = audio.find_audio([special_library, special_library / "p.flac", special_library / "gone"])
    finally:
        signal.alarm(0)
    assert [f.rsplit("/", 1)[1] for f in files] == ["link.wav", "ok.wav"]
    why = {w.rsplit("/", 1)[1]: str(e) for w, e in skipped}
    assert set(why) == {"broken.wav", "p.flac", "z.mp3", "gone"}
    assert "FIFO" in why["p.flac"] and why["p.flac"].startswith(str(special_library / "p.flac"))
    assert "character device, through a symbolic link" in why["z.mp3"]
    assert "broken symbolic link" in why["broken.wav"]
    assert "no such file or folder" in why["gone"]
    assert all(isinstance(e, AudioFileNotFoundError) for _, e in skipped)


@pytest.mark.parametrize("name,words", [("p.flac", "FIFO"), ("z.mp3", "character device")])
def test_opener_refuses_special_files_before_opening_them(special_library, name, words):
    import signal

    from genrekit.store import file_digest

    _alarm(10)
    try:
        for call in (audio.load, audio.info, audio.decoded_seconds, lambda p: list(audio.stream(p))):
            with pytest.raises(AudioFileNotFoundError, match=f"{name}: not a regular file.*{words}"):
                call(special_library / name)
        with pytest.raises(OSError, match="not a regular file"):  # the content digest of tag/similar/beets
            file_digest(special_library / name)
    finally:
        signal.alarm(0)


# ---------------------------------------------------------------------------------------------- decode bombs


def _wav_header(sr: int, n_bytes: int, *, channels: int = 1, bits: int = 16) -> bytes:
    import struct

    align = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", 36 + n_bytes) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, channels, sr,
            sr * align, align, bits) + b"data" + struct.pack("<I", n_bytes))


def test_absurd_sample_rates_are_refused_with_the_file_name(tmp_path):
    data = _wav_header(1, 128 * 1024) + np.random.default_rng(0).integers(-3000, 3000, 64 * 1024, dtype=np.int16).tobytes()
    p = tmp_path / "one_hz.wav"
    p.write_bytes(data)
    for call in (audio.load, audio.decoded_seconds, lambda s: list(audio.stream(s)),
                 lambda s: list(audio.stream(s, max_duration=60))):
        with pytest.raises(UnsupportedFormatError, match=r"one_hz.wav: sample rate 1 Hz is outside"):
            call(p)
    with pytest.raises(UnsupportedFormatError, match=r"up.wav: sample rate 1 Hz"):
        list(audio.stream(data, filename="up.wav"))
    hi = tmp_path / "hi.wav"
    hi.write_bytes(_wav_header(10_000_000, 4000) + bytes(4000))
    with pytest.raises(UnsupportedFormatError, match="10000000 Hz"):
        audio.load(hi)


def test_native_reads_are_bounded_in_seconds_at_low_rates(tmp_path):
    sr = audio.MIN_RATE
    p = write_audio(tmp_path / "low.wav", tone(120.0, sr=sr, freq=100.0), sr=sr)
    for source in (p, p.read_bytes()):
        native_sr, blocks = audio.native_blocks(audio.open_source(source, filename="low.wav"), block_seconds=2.0)
        sizes = [b.size for b in blocks]
        assert native_sr == sr and sum(sizes) == 120 * sr and max(sizes) <= 2 * sr
    blocks = list(audio.stream(p, block_seconds=2.0))
    assert max(b.size for b in blocks) <= 2 * audio.SR


def test_predict_on_a_one_hz_wav_fails_fast_in_bounded_memory(tmp_path):
    import subprocess
    import sys

    p = tmp_path / "bomb.wav"
    p.write_bytes(_wav_header(1, 128 * 1024) + bytes(128 * 1024))
    code = ("import sys; from genrekit import audio\n"
            "try:\n    list(audio.stream(sys.argv[1], max_duration=None))\nexcept audio.AudioError as e:\n    print(e)\n"
            # VmHWM: this process's own peak (ru_maxrss would carry the forking test runner's across exec)
            "print(next(ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM')))")
    r = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, timeout=60)
    msg, rss_kb = r.stdout.strip().splitlines()
    assert "bomb.wav: sample rate 1 Hz" in msg and "Traceback" not in r.stderr
    assert int(rss_kb) < 400_000  # the old path allocated > 6 GB here


# ---------------------------------------------------------------------------------------------- truncation, amplitude


@pytest.mark.parametrize("ext,fmt,subtype", [("wav", "WAV", "PCM_16"), ("au", "AU", "PCM_16"), ("aiff", "AIFF", "PCM_16"),
                                             ("aifc", "AIFF", "FLOAT"), ("wav", "WAV", "FLOAT")])
def test_a_file_cut_in_half_is_reported_truncated(tmp_path, ext, fmt, subtype):
    p = write_audio(tmp_path / f"half.{ext}", tone(4.0), format=fmt, subtype=subtype)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    for call in (audio.load, audio.decoded_seconds, lambda s: list(audio.stream(s))):
        with pytest.raises(DecodeError, match=f"half.{ext}: truncated"):
            call(p)
    with pytest.raises(DecodeError, match=f"up.{ext}: truncated"):
        audio.load(data[: len(data) // 2], filename=f"up.{ext}")
    assert audio.load(data, filename=f"up.{ext}").size > 0  # the whole file still decodes


def test_float_audio_of_absurd_amplitude_is_refused_with_the_file_name(tmp_path):
    from genrekit.errors import AmplitudeError

    y = tone(2.0)
    y[1000:1010] = 1e30
    p = write_audio(tmp_path / "loud.wav", y, subtype="FLOAT")
    for call in (audio.load, lambda s: list(audio.stream(s)), lambda s: list(audio.iter_windows(s))):
        with pytest.raises(AmplitudeError, match=r"loud.wav: samples reach 1e\+30, far beyond full scale"):
            call(p)
    with pytest.raises(AmplitudeError, match="up.wav"):
        list(audio.stream(p.read_bytes(), filename="up.wav"))
    with pytest.raises(AmplitudeError, match="clip"):
        audio.validate(y[:, 0], name="clip")
    assert issubclass(AmplitudeError, NonFiniteAudioError)
    hot = tone(2.0) * 8.0  # a float file well over full scale (a mix before limiting) is still audio
    assert audio.load(write_audio(tmp_path / "hot.wav", hot, subtype="FLOAT")).max() > 1.0


# ---------------------------------------------------------------------------------------------- names


def test_any_posix_name_decodes_and_is_named_escaped(tmp_path):
    import os
    import shutil

    src = write_audio(tmp_path / "ok.wav", tone(0.5))
    raw = os.fsencode(tmp_path) + b"/x\xff\x1b[31m.wav"
    shutil.copy(src, raw)
    files, skipped = audio.find_audio([tmp_path])
    weird = [f for f in files if "x" in os.path.basename(f)]
    assert not skipped and len(weird) == 1 and os.fsencode(weird[0]) == raw  # lossless text form
    np.testing.assert_array_equal(audio.load(weird[0]), audio.load(src))
    np.testing.assert_array_equal(audio.load(os.fsdecode(raw)), audio.load(src))  # bytes are data: decode paths
    assert audio.find_audio([raw])[0] == [weird[0]]  # the finder takes bytes paths
    with open(raw, "r+b") as f:
        f.truncate(60)
    with pytest.raises(DecodeError) as e:
        audio.load(weird[0])
    assert "x\\xff\\x1b[31m.wav" in str(e.value) and "\x1b" not in str(e.value)
