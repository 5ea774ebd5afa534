"""Coverage-guided fuzzing of genrekit's untrusted-input parsers with atheris (optional; not used by tests).

Targets (pick with --target):
  audio     bytes -> genrekit.audio.load under a fuzzed file name (libsndfile and FFmpeg paths)
  file      bytes -> a temporary file with a fuzzed extension -> genrekit.audio.load (streaming reader)
  features  bytes -> float32 samples (any value, NaN/inf included) -> genrekit.features.extract
  model     bytes -> a temporary model file -> genrekit.models.load_model

The contract checked: a genrekit.errors.GenrekitError subclass or finite output, nothing else. Any
other exception, or NaN/inf in an output, is a finding (atheris stops and writes the input to crash-*).

    pip install atheris
    python fuzz/fuzz_inputs.py --target audio fuzz/corpus/audio -max_total_time=600
    python fuzz/fuzz_inputs.py --target model --replay crash-1234   # re-run one input, no atheris needed

Seed corpora: ``--make-seeds DIR`` writes small valid wav/flac/ogg/mp3 files to start from.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

EXTENSIONS = [".wav", ".flac", ".ogg", ".mp3", ".au", ".aiff", ".m4a", ".opus", ".webm", ".caf", ""]


def _check_finite(x) -> None:
    import numpy as np

    values = np.asarray(list(x.values()) if isinstance(x, dict) else x, dtype=np.float64)
    if not np.isfinite(values).all():
        raise AssertionError("non-finite value in an output")


def target_audio(data: bytes) -> None:
    from genrekit import audio
    from genrekit.errors import GenrekitError

    name = "upload" + EXTENSIONS[data[0] % len(EXTENSIONS)] if data else "upload.wav"
    try:
        y = audio.load(data[1:], filename=name)
    except GenrekitError:
        return
    _check_finite(y)


def target_file(data: bytes) -> None:
    from genrekit import audio
    from genrekit.errors import GenrekitError

    ext = EXTENSIONS[data[0] % len(EXTENSIONS)] if data else ".wav"
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"x{ext}"
        p.write_bytes(data[1:])
        try:
            y = audio.load(p)
        except GenrekitError:
            return
        _check_finite(y)


def target_features(data: bytes) -> None:
    import numpy as np

    from genrekit import features
    from genrekit.errors import GenrekitError

    y = np.frombuffer(data[: len(data) // 4 * 4], dtype=np.float32)
    try:
        out = features.extract(np.tile(y, max(1, 4096 // max(1, y.size))) if y.size else y)
    except GenrekitError:
        return
    _check_finite(out)


def target_model(data: bytes) -> None:
    from genrekit.errors import GenrekitError
    from genrekit.models import load_model

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.safetensors"
        p.write_bytes(data)
        try:
            load_model(p)
        except GenrekitError:
            return


TARGETS = {"audio": target_audio, "file": target_file, "features": target_features, "model": target_model}


def make_seeds(folder: Path) -> None:
    """Small valid inputs: coverage-guided fuzzing gets much further from real files than from nothing."""
    import io

    import numpy as np
    import soundfile as sf

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from badinput import mp3_bytes

    folder.mkdir(parents=True, exist_ok=True)
    y = (0.3 * np.sin(2 * np.pi * 440 * np.arange(4096) / 22050)).astype(np.float32)
    for i, (fmt, sub) in enumerate([("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")]):
        buf = io.BytesIO()
        sf.write(buf, y, 22050, format=fmt, subtype=sub)
        (folder / f"seed{i}").write_bytes(bytes([i]) + buf.getvalue())
    (folder / "seed_mp3").write_bytes(bytes([EXTENSIONS.index(".mp3")]) + mp3_bytes(np.tile(y, 3)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", choices=sorted(TARGETS), default="audio")
    ap.add_argument("--replay", nargs="*", metavar="FILE", help="run these inputs once (no atheris needed)")
    ap.add_argument("--make-seeds", metavar="DIR", help="write seed inputs to DIR and exit")
    args, rest = ap.parse_known_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    target = TARGETS[args.target]
    if args.make_seeds:
        make_seeds(Path(args.make_seeds))
        return 0
    if args.replay is not None:
        for f in args.replay:
            target(Path(f).read_bytes())
            print(f"{f}: ok")
        return 0
    try:
        import atheris
    except ImportError:
        print("atheris is not installed (pip install atheris); use --replay FILE to run single inputs", file=sys.stderr)
        return 2
    with atheris.instrument_imports():
        import genrekit.audio  # noqa: F401
        import genrekit.features  # noqa: F401
        import genrekit.models.base  # noqa: F401
    atheris.Setup([sys.argv[0], *rest], target)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
