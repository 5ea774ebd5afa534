"""Test helpers shared by the test modules: deterministic test signals and real audio files to decode.

Fixtures stay in ``conftest.py``; these are plain functions, imported with ``from helpers import ...``
(``tests/`` is on the path through ``pythonpath`` in pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["pyav_encode", "tone", "write_audio", "write_m4a"]


def tone(seconds: float = 2.0, sr: int = 22050, freq: float = 440.0, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A tone plus a little noise: a deterministic, non-trivial test signal (frames, channels)."""
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    y = 0.5 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.size)
    cols = [y * (1.0 - 0.2 * c) for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


def write_audio(path: Path, y: np.ndarray, sr: int = 22050, **kw) -> Path:
    """Write ``y`` with soundfile (format from the suffix: wav, flac, ogg ...), creating the folders."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y, sr, **kw)
    return path


def pyav_encode(y: np.ndarray, sr: int = 22050, *, codec: str = "aac", container: str = "mp4") -> bytes:
    """Encode mono audio with PyAV's bundled FFmpeg (no system ffmpeg): real AAC/MP3 files for tests."""
    import io

    import av

    buf = io.BytesIO()
    mono = y if y.ndim == 1 else y.mean(axis=1)
    with av.open(buf, "w", format=container) as out:
        s = out.add_stream(codec, rate=sr)
        s.layout = "mono"
        frame = av.AudioFrame.from_ndarray(mono[None, :].astype(np.float32), format="fltp", layout="mono")
        frame.sample_rate = sr
        for packet in s.encode(frame):
            out.mux(packet)
        for packet in s.encode(None):
            out.mux(packet)
    return buf.getvalue()


def write_m4a(path: Path, y: np.ndarray, sr: int = 22050) -> Path:
    """AAC in an MP4 container, written to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pyav_encode(y, sr, codec="aac", container="mp4"))
    return path


def load_script(name: str):
    """A module from the repository's ``scripts/`` folder (e.g. the musicnn reference's ``synth_clip``)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# musicnn references computed once by musicnn's own TF graph (scripts/musicnn_reference.py); the
# synthesised clips are regenerated from their seeds. Shared by test_embeddings and test_musicnn_runtime.
MUSICNN_REFERENCE = np.load(Path(__file__).resolve().parent / "data" / "musicnn_reference.npz")
MUSICNN_NAMES = [str(n) for n in MUSICNN_REFERENCE["names"]]


def musicnn_synth_wave(i: int) -> np.ndarray:
    """Reference ``i``'s synthesised clip, checked against the length and level it had for the reference."""
    import pytest

    ref = load_script("musicnn_reference")
    name = MUSICNN_NAMES[i]
    seconds = {n: s for n, _, s in ref.SYNTH}[name]
    y = ref.synth_clip(int(name.split(":")[1]), seconds=seconds)
    assert y.size == int(MUSICNN_REFERENCE[f"{i}/n_samples"])
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    assert rms == pytest.approx(float(MUSICNN_REFERENCE[f"{i}/wave_rms"]), rel=1e-6), "synth_clip changed since the reference"
    return y


def free_port() -> int:
    """A free TCP port on loopback."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn on a free loopback port in a thread: the real HTTP stack (slow, stalled and abandoned
    sockets); its log is captured by the test's capfd."""

    def __init__(self, app):
        import threading

        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error",
                                                    lifespan="on", timeout_keep_alive=2))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        import time

        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def music_like_noise(seconds: float, sr: int = 22050, *, seed: int = 0, sway_hz: float | None = None) -> np.ndarray:
    """Noise falling 3 dB per octave above 200 Hz and silent above 9 kHz, RMS 0.1 (music-like: the top bands
    reach a Kaggle image's 80 dB clip, as every GTZAN image does); ``sway_hz``: its level swaying by +-50 %."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    spec /= np.sqrt(np.maximum(f, 200.0) / 200.0)
    spec[f > 9000.0] = 0.0
    y = np.fft.irfft(spec, n)
    y *= 0.1 / y.std()
    if sway_hz is not None:
        y *= 1.0 + 0.5 * np.sin(2 * np.pi * sway_hz * np.arange(n) / sr)
    return y.astype(np.float32)
