"""Convert musicnn's TF1 checkpoints (PyPI wheel ``musicnn==0.1.0``, ISC licence) to safetensors.

genrekit never imports TensorFlow: this script is the only place that reads the original checkpoints,
and it runs in a throwaway virtualenv::

    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu safetensors numpy
    /tmp/tfenv/bin/python scripts/convert_musicnn.py            # pip-downloads the wheel
    /tmp/tfenv/bin/python scripts/convert_musicnn.py --wheel musicnn-0.1.0-py3-none-any.whl

It writes ``src/genrekit/pretrained/musicnn/{MSD,MTT}_musicnn.safetensors`` (the 64 model tensors,
792,079 values each, renamed to genrekit's torch layout; Adam slots and step counters dropped),
``{MODEL}.tags.json`` (the 50 tag names, in the network's output order, from the wheel's
``configuration.py``) and ``LICENSE-musicnn.md`` (the wheel's ISC notice and the attribution).
Each safetensors file carries JSON metadata: tag names, input settings, the wheel's sha256 and the
TF name every tensor came from.

Why float32 by default: with float16-rounded weights the taggram moves by up to 1.8e-3 and the
penultimate layer by up to 1.3e-2 (measured, docs/embeddings.md), 15 to 125 times the 1e-4 tolerance
against the original TF outputs; float32 costs 3.2 MB per model. ``--dtype float16`` is kept to re-run
that check.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from genrekit.store import file_digest, tensors_sha256  # the one digest of files and of tensor sets

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "src" / "genrekit" / "pretrained" / "musicnn"
WHEEL_NAME = "musicnn-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
MODELS = ("MSD_musicnn", "MTT_musicnn")
N_TENSORS = 64
N_VALUES = 792_079
FORMAT = "genrekit-musicnn/1"

# Input as musicnn's extractor.py computes it (configuration.py + batch_data).
INPUT = {
    "sr": 16000,
    "n_fft": 512,
    "hop_length": 256,
    "n_mels": 96,
    "mel": "librosa.feature.melspectrogram defaults: hann, centred (constant pad), power 2, slaney mel, slaney norm",
    "quantise": "mel power cast to float16 (as extractor.py does) before the log",
    "log": "log10(10000 * mel + 1), computed in float32",
    "patch_frames": 187,
    "patch_hop_frames": 187,
}

# TF variable prefix -> genrekit module name, in the order models.py creates the layers.
CONV = {
    "conv2d": "timbral74.conv",  # kernel [7, 38] over (time, mel), 204 filters
    "conv2d_1": "timbral77.conv",  # kernel [7, 67], 204 filters
    "conv2d_2": "temporal128.conv",  # kernel [128, 1], 51 filters
    "conv2d_3": "temporal64.conv",
    "conv2d_4": "temporal32.conv",
    "conv2d_5": "mid1.conv",  # kernel [7, 561]: a 1-D conv over time with 561 input channels
    "conv2d_6": "mid2.conv",
    "conv2d_7": "mid3.conv",
}
BN = {
    "batch_normalization": "input_bn",
    "batch_normalization_1": "timbral74.bn",
    "batch_normalization_2": "timbral77.bn",
    "batch_normalization_3": "temporal128.bn",
    "batch_normalization_4": "temporal64.bn",
    "batch_normalization_5": "temporal32.bn",
    "batch_normalization_6": "mid1.bn",
    "batch_normalization_7": "mid2.bn",
    "batch_normalization_8": "mid3.bn",
    "batch_normalization_9": "pool_bn",
    "batch_normalization_10": "dense_bn",
}
DENSE = {"dense": "dense", "dense_1": "out"}
BN_FIELDS = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}

ATTRIBUTION = """\
# musicnn weights: licence and attribution

The files `MSD_musicnn.safetensors` and `MTT_musicnn.safetensors` in this folder are the pre-trained
weights of **musicnn** by Jordi Pons and Xavier Serra (Music Technology Group, Universitat Pompeu Fabra),
converted (stored as {dtype}; only renamed and transposed to torch's layout) from the TensorFlow
checkpoints in the PyPI wheel `musicnn==0.1.0` (sha256 `{sha}`) by genrekit's
`scripts/convert_musicnn.py`.
The tag lists `*.tags.json` come from the same wheel's `configuration.py`.

- `MSD_musicnn`: trained on the Million Song Dataset (last.fm top-50 tags).
- `MTT_musicnn`: trained on MagnaTagATune (top-50 tags).

Please cite:

> Jordi Pons and Xavier Serra. *musicnn: Pre-trained convolutional neural networks for music audio
> tagging.* Late-breaking/demo session, ISMIR 2019. arXiv:1909.06654.
> <https://github.com/jordipons/musicnn>

> Jordi Pons, Oriol Nieto, Matthew Prockup, Erik M. Schmidt, Andreas F. Ehmann and Xavier Serra.
> *End-to-end learning for music audio tagging at scale.* ISMIR 2018.

The weights are distributed under the ISC licence of the musicnn package, reproduced verbatim below.

---

{license}
"""


def download_wheel(dest: Path) -> Path:
    """``pip download`` the pinned wheel (no dependencies: only its files are read)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "musicnn==0.1.0", "--no-deps", "--only-binary=:all:",
         "-d", str(dest)],
        check=True,
    )
    wheel = dest / WHEEL_NAME
    if not wheel.exists():
        raise SystemExit(f"pip download did not produce {WHEEL_NAME} in {dest}")
    return wheel


def extract_wheel(wheel: Path, dest: Path) -> Path:
    got = file_digest(wheel)
    if got != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: sha256 {got} is not the pinned musicnn 0.1.0 wheel ({WHEEL_SHA256})")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(dest)
    return dest


def tag_lists(pkg: Path) -> dict[str, list[str]]:
    """The tag names from the wheel's configuration.py (plain constants, no TF import)."""
    conf = runpy.run_path(str(pkg / "configuration.py"))
    return {"MSD_musicnn": list(conf["MSD_LABELS"]), "MTT_musicnn": list(conf["MTT_LABELS"])}


def read_checkpoint(ckpt_dir: Path) -> dict[str, np.ndarray]:
    """All model tensors of a TF1 checkpoint, opened by prefix (its ``checkpoint`` file names the
    author's home folder, so the usual latest-checkpoint lookup fails)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    reader = tf.compat.v1.train.NewCheckpointReader(str(ckpt_dir) + "/")
    names = reader.get_variable_to_shape_map()
    keep = {n for n in names if "Adam" not in n and n not in ("beta1_power", "beta2_power", "global_step")}
    return {n: np.asarray(reader.get_tensor(n), dtype=np.float32) for n in sorted(keep)}


def to_torch_layout(tf_tensors: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Rename and transpose: TF conv kernels are HWIO (time, freq, in, out), torch wants OIHW; the
    mid-end convs span the whole feature axis, so they become Conv1d weights (out, in=features, time)."""
    out: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    used: set[str] = set()

    def put(name: str, value: np.ndarray, tf_name: str) -> None:
        out[name] = np.ascontiguousarray(value, dtype=np.float32)
        origin[name] = tf_name
        used.add(tf_name)

    for tf_name, name in CONV.items():
        k = tf_tensors[f"{tf_name}/kernel"]
        if name.startswith("mid"):
            w = k[:, :, 0, :].transpose(2, 1, 0)  # (7, F, 1, O) -> (O, F, 7)
        else:
            w = k.transpose(3, 2, 0, 1)  # (H, W, I, O) -> (O, I, H, W)
        put(f"{name}.weight", w, f"{tf_name}/kernel")
        put(f"{name}.bias", tf_tensors[f"{tf_name}/bias"], f"{tf_name}/bias")
    for tf_name, name in BN.items():
        for tf_field, field in BN_FIELDS.items():
            put(f"{name}.{field}", tf_tensors[f"{tf_name}/{tf_field}"], f"{tf_name}/{tf_field}")
    for tf_name, name in DENSE.items():
        put(f"{name}.weight", tf_tensors[f"{tf_name}/kernel"].T, f"{tf_name}/kernel")  # (in, out) -> (out, in)
        put(f"{name}.bias", tf_tensors[f"{tf_name}/bias"], f"{tf_name}/bias")

    left = set(tf_tensors) - used
    if left:
        raise SystemExit(f"checkpoint holds tensors this converter does not map: {sorted(left)}")
    n_values = sum(v.size for v in out.values())
    if len(out) != N_TENSORS or n_values != N_VALUES:
        raise SystemExit(f"expected {N_TENSORS} tensors / {N_VALUES} values, got {len(out)} / {n_values}")
    return out, origin


def convert(pkg: Path, out_dir: Path, *, dtype: str, wheel_sha: str) -> None:
    from safetensors.numpy import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    tags = tag_lists(pkg)
    for model in MODELS:
        tf_tensors = read_checkpoint(pkg / model)
        tensors, origin = to_torch_layout(tf_tensors)
        if dtype == "float16":
            tensors = {k: v.astype(np.float16) for k, v in tensors.items()}
        if len(tags[model]) != 50:
            raise SystemExit(f"{model}: expected 50 tag names, got {len(tags[model])}")
        config = json.loads((pkg / model / "config.json").read_text())
        metadata = {
            "format": FORMAT,
            "model": model,
            "dtype": dtype,
            "sha256": tensors_sha256(tensors),
            "tags": json.dumps(tags[model]),
            "input": json.dumps(INPUT),
            "source": json.dumps({
                "wheel": WHEEL_NAME,
                "sha256": wheel_sha,
                "checkpoint": f"musicnn/{model}/",
                "n_tensors": len(tensors),
                "n_values": int(sum(v.size for v in tensors.values())),
                "train_config": {k: config[k] for k in ("n_frames", "pre_processing", "pad_short") if k in config},
            }),
            "tf_names": json.dumps(origin),
            "license": "ISC; (c) Music Technology Group, Universitat Pompeu Fabra 2019 (Jordi Pons); "
            "see LICENSE-musicnn.md",
        }
        path = out_dir / f"{model}.safetensors"
        save_file(tensors, str(path), metadata=metadata)
        path.chmod(0o644)  # safetensors writes 0600; package data must be world-readable
        (out_dir / f"{model}.tags.json").write_text(json.dumps(tags[model], indent=1) + "\n")
        print(f"{path}: {len(tensors)} tensors, {sum(v.size for v in tensors.values()):,} values, {dtype}, "
              f"{path.stat().st_size:,} bytes")
    licence = (pkg.parent / "musicnn-0.1.0.dist-info" / "LICENSE.md").read_text().strip()
    (out_dir / "LICENSE-musicnn.md").write_text(ATTRIBUTION.format(sha=wheel_sha, dtype=dtype, license=licence) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wheel", help=f"a local {WHEEL_NAME} (default: pip download it into a temp folder)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default: the package's)")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="musicnn-") as tmp:
        wheel = Path(args.wheel) if args.wheel else download_wheel(Path(tmp) / "wheel")
        root = extract_wheel(wheel, Path(tmp) / "unzipped")
        convert(root / "musicnn", Path(args.out), dtype=args.dtype, wheel_sha=file_digest(wheel))
    return 0


if __name__ == "__main__":
    sys.exit(main())
