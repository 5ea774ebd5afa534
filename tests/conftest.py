"""Shared fixtures: synthesised audio (so tests run on a fresh clone) and the real data in ../shared.

Plain helper functions (test signals, audio writers) live in ``helpers.py``: import them from there.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

from genrekit.datasets import shared_root  # noqa: E402
from helpers import tone, write_audio  # noqa: E402

SHARED = shared_root()


def pytest_collection_modifyitems(config, items):
    if SHARED is not None:
        return
    skip = pytest.mark.skip(reason="../shared/data/gtzan not found (set GENREKIT_SHARED to its parent)")
    for item in items:
        if "shared" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def own_cache(tmp_path, monkeypatch) -> Path:
    """This test's own genrekit cache (network analyses, built ONNX graphs): nothing leaks between tests.
    Modules that want it for every test say ``pytestmark = pytest.mark.usefixtures("own_cache")``."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


@pytest.fixture(scope="session")
def gtzan() -> Path:
    if SHARED is None:
        pytest.skip("../shared/data/gtzan not found")
    return SHARED


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
