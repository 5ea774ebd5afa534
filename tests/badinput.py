"""A bad-input corpus generated on the fly (nothing binary is checked in), shared by the reliability tests.

Each :class:`Case` is one file plus the verdict genrekit must reach: ``ok`` files must be processed with
finite outputs; the others must fail with a message matching ``needle`` (a regex) that names the file.

What counts as bad: no decodable samples (empty, random bytes, text, a cut-off header), a file that
delivers less than its header promises (truncated flac/mp3/wav, a WAV that claims more data than it
holds), non-finite samples, fewer samples than one analysis frame, links that lead nowhere, files that
cannot be opened. What is fine however odd: 8 kHz and 96 kHz, 6 channels, spaces and non-ASCII names,
very long files. Silence and a DC offset decode fine (``info`` and ``features`` process them), but there
is no music in them, so ``predict`` and the API give no genre: "no audible signal" (``silent`` cases).
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SR = 22050


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    ok: bool
    needle: str | None = None  # regex every tool's message for this file must match (bad files only)
    silent: bool = False  # decodable, but below the silence threshold: no genre from predict / the API

    NO_MUSIC = r"no audible signal \(RMS -inf dBFS < -60 dBFS\)"


def _tone(seconds: float, sr: int, channels: int = 1, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    y = 0.4 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)
    return np.stack([y * (1.0 - 0.1 * c) for c in range(channels)], axis=1).astype(np.float32)


def _write(path: Path, y: np.ndarray, sr: int, **kw) -> Path:
    import soundfile as sf

    sf.write(str(path), y, sr, **kw)
    return path


def mp3_bytes(y: np.ndarray, sr: int = SR) -> bytes:
    """A real MP3 (LAME through PyAV), so the truncated one is a cut-off real file, not noise."""
    from helpers import pyav_encode

    return pyav_encode(y, sr, codec="mp3", container="mp3")


def wav_header(*, sr: int, channels: int, bits: int, data_bytes: int, fmt: int = 1) -> bytes:
    """A canonical 44-byte RIFF/WAVE header declaring ``data_bytes`` of sample data."""
    block = channels * bits // 8
    return (
        b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, fmt, channels, sr, sr * block, block, bits)
        + b"data" + struct.pack("<I", data_bytes)
    )


def write_long_wav(path: Path, *, seconds: float = 7200.0, sr: int = 8000, block_seconds: float = 60.0) -> Path:
    """A long 16-bit mono WAV written block by block (a few MB of memory, whatever its length).

    The blocks are one minute of a chirp-plus-noise pattern repeated, which is enough to exercise
    streaming decode, resampling and per-window inference end to end."""
    n_total = int(seconds * sr)
    n_block = int(block_seconds * sr)
    t = np.arange(n_block) / sr
    rng = np.random.default_rng(7)
    sig = 0.3 * np.sin(2 * np.pi * (200 + 300 * t / block_seconds) * t) + 0.05 * rng.standard_normal(n_block)
    block = (sig * 32767).astype("<i2").tobytes()
    with open(path, "wb") as f:
        f.write(wav_header(sr=sr, channels=1, bits=16, data_bytes=2 * n_total))
        left = n_total
        while left > 0:
            n = min(left, n_block)
            f.write(block[: 2 * n])
            left -= n
    return path


def make_corpus(root: Path) -> list[Case]:
    """Write every case into ``root`` (a folder) and return them; see the module docstring."""
    import soundfile as sf

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1234)
    cases: list[Case] = []

    def good(name: str, y: np.ndarray, sr: int, *, silent: bool = False, **kw) -> None:
        cases.append(Case(name, _write(root / name, y, sr, **kw), True, silent=silent))

    def bad(name: str, data: bytes, needle: str) -> None:
        p = root / name
        p.write_bytes(data)
        cases.append(Case(name, p, False, needle))

    # ---- fine, however odd
    good("silence.wav", np.zeros((4 * SR, 1), np.float32), SR, silent=True)
    good("dc offset.wav", np.full((4 * SR, 1), 0.5, np.float32), SR, subtype="PCM_16", silent=True)
    good("tone 8k.wav", _tone(4.0, 8000), 8000)
    good("tone_96k.flac", _tone(4.0, 96000), 96000)
    good("six_channels.wav", _tone(4.0, SR, channels=6), SR)
    good("ünïcødé ♫ 日本語.wav", _tone(4.0, SR, freq=220.0), SR)
    mp3 = mp3_bytes(_tone(6.0, SR)[:, 0])
    (root / "good.mp3").write_bytes(mp3)
    cases.append(Case("good.mp3", root / "good.mp3", True))

    # ---- no usable audio at all
    bad("empty.wav", b"", r"empty file \(0 bytes\)")
    bad("random.wav", rng.bytes(40_000), r"not audio or corrupt")
    bad("random.mp3", rng.bytes(40_000), r"not audio or corrupt|no decodable audio")
    bad("lyrics as.ogg", ("la la la, this is a text file\n" * 400).encode(), r"not audio or corrupt|no decodable audio")

    # ---- cut short: a header promising more than the file delivers
    flac = io.BytesIO()
    sf.write(flac, _tone(6.0, SR), SR, format="FLAC")
    flac_bytes = flac.getvalue()
    bad("truncated.flac", flac_bytes[: len(flac_bytes) // 2], r"truncated|corrupt|decoding failed")
    bad("truncated.mp3", mp3[: len(mp3) // 2], r"truncated")
    wav = io.BytesIO()
    sf.write(wav, _tone(3.0, SR), SR, format="WAV", subtype="PCM_16")
    bad("truncated header.wav", wav.getvalue()[:30], r"not audio or corrupt")
    data = (_tone(1.0, SR)[:, 0] * 32767).astype("<i2").tobytes()
    bad("overclaiming.wav", wav_header(sr=SR, channels=1, bits=16, data_bytes=20 * len(data)) + data, r"truncated")

    # ---- decodable but unusable samples
    y = _tone(3.0, SR)
    y[SR, 0] = np.nan
    good_nan = _write(root / "nan.wav", y, SR, subtype="FLOAT")
    cases.append(Case("nan.wav", good_nan, False, r"NaN or infinite"))
    y = _tone(3.0, SR)
    y[100, 0] = np.inf
    cases.append(Case("inf.wav", _write(root / "inf.wav", y, SR, subtype="FLOAT"), False, r"NaN or infinite"))
    cases.append(Case("one_sample.wav", _write(root / "one_sample.wav", np.full((1, 1), 0.1, np.float32), SR),
                      False, r"shorter than one analysis frame|no audio samples"))

    # ---- links that lead nowhere: a folder loop (must not hang the walk) and a file that links to itself
    os.symlink(".", root / "loop", target_is_directory=True)
    os.symlink("self.wav", root / "self.wav")
    cases.append(Case("self.wav", root / "self.wav", False, r"[Ss]ymbolic link|symlink"))
    return cases


def make_unreadable(root: Path) -> Path | None:
    """A WAV with mode 000, or None when this process can read it anyway (root ignores permissions)."""
    p = _write(root / "locked.wav", _tone(3.0, SR), SR)
    p.chmod(0)
    try:
        with open(p, "rb"):
            pass
    except PermissionError:
        return p
    p.chmod(0o644)
    p.unlink()
    return None
