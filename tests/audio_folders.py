"""Folder-per-label audio for the experiment tests: tones a classifier can tell apart, one broken file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["write_label_folders"]


def write_label_folders(root: Path, labels, per_label: int = 4, seconds: float = 3.5, *, broken: bool = True) -> Path:
    """Each label is a tone at its own frequency plus noise; ``broken`` adds one unreadable file to the
    first label (skipped and reported by every loader). Returns ``root``."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 22050)) / 22050
    for k, lab in enumerate(labels):
        (root / lab).mkdir(parents=True)
        for i in range(per_label):
            f = 200.0 * (3 ** k) * (1 + 0.03 * i)
            y = 0.4 * np.sin(2 * np.pi * f * t) + 0.02 * rng.standard_normal(t.size)
            sf.write(root / lab / f"{lab}_{i}.wav", y.astype(np.float32), 22050)
    if broken:
        (root / labels[0] / "broken.wav").write_bytes(b"RIFF nonsense")
    return root
