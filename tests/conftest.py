"""Shared fixtures: synthesised audio (so tests run on a fresh clone) and the real data in ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

from genrekit.datasets import shared_root  # noqa: E402

SHARED = shared_root()


def pytest_collection_modifyitems(config, items):
    if SHARED is not None:
        return
    skip = pytest.mark.skip(reason="../shared/data/gtzan not found (set GENREKIT_SHARED to its parent)")
    for item in items:
        if "shared" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def gtzan() -> Path:
    if SHARED is None:
        pytest.skip("../shared/data/gtzan not found")
    return SHARED


def tone(seconds: float = 2.0, sr: int = 22050, freq: float = 440.0, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A tone plus a little noise: a deterministic, non-trivial test signal (frames, channels)."""
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    y = 0.5 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.size)
    cols = [y * (1.0 - 0.2 * c) for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


def write_audio(path: Path, y: np.ndarray, sr: int = 22050, **kw) -> Path:
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


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-genre (blues, metal) CNN trained for 2 epochs on random log-mel slices: the real model file
    format in a few seconds. Tests that need a model which has learned something define their own."""
    from genrekit.models.deep import DeepModel

    rng = np.random.default_rng(0)
    X = rng.random((24, 128, 130), dtype=np.float32)
    y = np.array(["blues", "metal"] * 12)
    m = DeepModel("cnn", epochs=2, batch_size=8, verbose=False, device="cpu", augment="none")
    m.fit(X, y)
    return m.save(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture
def synth_dataset(tmp_path) -> Path:
    """A tiny folder-per-genre dataset in several formats: 2 genres x 3 tracks, 4 s each."""
    root = tmp_path / "music"
    for g, f0 in (("blues", 220.0), ("metal", 880.0)):
        for i in range(3):
            y = tone(4.0, freq=f0 * (1 + 0.1 * i), seed=i)
            ext = ("wav", "flac", "ogg")[i]
            write_audio(root / g / f"{g}.{i:05d}.{ext}", y)
    return root
