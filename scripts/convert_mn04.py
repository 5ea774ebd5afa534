"""Copy EfficientAT's ``mn04_as`` (MIT) into the package: weights, spec, licence, label list, model card.

genrekit never loads the original PyTorch pickle: ``../shared/models/efficientat_mn04/mn04_as.safetensors``
was converted from ``mn04_as_mAP_432.pt`` once (see that folder's README), and this script checks it
(312 tensors, 993,485 values, float32 but for 46 int64 batch-norm counters, the tensor names the graph builder needs) and copies it byte for
byte into ``src/genrekit/pretrained/mn04/`` with:

- ``mn04.json``: the spec the runtime checks the weights against (sha256 of the file and of the tensors,
  counts, input settings, where it came from);
- ``LICENSE-EfficientAT.md``: the MIT notice verbatim, the citation, and the AudioSet attribution;
- ``audioset_class_labels_indices.csv``: the 527 output names (AudioSet ontology, CC BY 4.0), unchanged;
- ``MODEL_CARD.md``: what the network is, what it was trained on, how genrekit runs and verifies it.

    python scripts/convert_mn04.py                      # from ../shared/models/efficientat_mn04
    python scripts/convert_mn04.py --source DIR --out DIR
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from genrekit.store import file_digest, tensors_sha256  # the digests genrekit's files record

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "models" / "efficientat_mn04"
DEFAULT_OUT = ROOT / "src" / "genrekit" / "pretrained" / "mn04"
WEIGHTS = "mn04_as.safetensors"
LABELS = "audioset_class_labels_indices.csv"
LICENSE_IN = "LICENSE-EfficientAT.txt"
LICENSE_OUT = "LICENSE-EfficientAT.md"
SPEC = "mn04.json"
FORMAT = "genrekit-mn04/1"
N_TENSORS = 312
N_VALUES = 993_485
N_CLASSES = 527
ORIGINAL_PT = "mn04_as_mAP_432.pt"
ORIGINAL_PT_SHA256 = "899a8c6217063f6941793102a2780b3dd788ab11fce468d9cf5f0577c453321c"

INPUT = {
    "sr": 32000,
    "preemphasis": 0.97,
    "n_fft": 1024,
    "hop_length": 320,
    "win_length": 800,
    "window": "symmetric Hann (periodic=False), zero-padded to n_fft centrally",
    "center": "reflect pad of n_fft // 2",
    "n_mels": 128,
    "fmin": 0.0,
    "fmax": 15000.0,
    "mel": "Kaldi triangular filters on 1127 ln(1 + f / 700), 512 FFT bins + a zero Nyquist column",
    "log": "(ln(mel + 1e-5) + 4.5) / 5",
    "window_seconds": 10.0,
}
ARCH = {
    "name": "mn04_as",
    "code": "fschmid56/EfficientAT models/mn/model.py get_model",
    "width_mult": 0.4,
    "head_type": "mlp",
    "se_dims": "c",
    "se_agg": "max",
    "se_r": 4,
    "strides": [2, 2, 2, 2],
    "bn_eps": 0.001,
    "features": 384,
    "classes": N_CLASSES,
}

ATTRIBUTION = """\
# EfficientAT mn04_as: licence and attribution

`mn04_as.safetensors` in this folder holds the pre-trained weights of **EfficientAT**'s `mn04_as`
(MobileNetV3, width 0.4, trained on AudioSet, mAP 0.432) by Florian Schmid, Khaled Koutini and Gerhard
Widmer, converted without change of value from the release file `{pt}` (sha256 `{pt_sha}`,
<https://github.com/fschmid56/EfficientAT>, release v0.0.1) to safetensors, and copied here by
genrekit's `scripts/convert_mn04.py`. genrekit's network and front end are its own code, written from
the original's description and verified against outputs of the original (tests/test_mn04.py).

Please cite:

> Florian Schmid, Khaled Koutini and Gerhard Widmer. *Efficient Large-Scale Audio Tagging via
> Transformer-to-CNN Knowledge Distillation.* ICASSP 2023. arXiv:2211.04772.

The weights are distributed under EfficientAT's MIT licence, reproduced verbatim below.

## AudioSet class labels

`audioset_class_labels_indices.csv` (the names of the 527 outputs) comes from the AudioSet ontology by
Google (<https://research.google.com/audioset/>), licensed under the Creative Commons Attribution 4.0
International licence (CC BY 4.0, <https://creativecommons.org/licenses/by/4.0/>); it is unchanged.

> Jort F. Gemmeke et al. *Audio Set: An ontology and human-labeled dataset for audio events.*
> ICASSP 2017.

---

{license}
"""

MODEL_CARD = """\
# mn04_as (EfficientAT) in genrekit

| | |
|---|---|
| what | a MobileNetV3 audio tagger (width 0.4, 0.5 M parameters without the head), 527 AudioSet classes (multi-label: sigmoid per class) |
| trained on | AudioSet (about 2 M ten-second YouTube clips), knowledge-distilled from transformers; mAP 0.432 on AudioSet eval |
| authors | Schmid, Koutini & Widmer, ICASSP 2023; code and weights MIT (`LICENSE-EfficientAT.md`) |
| input | mono 32 kHz, 10 s windows: {sr} Hz, pre-emphasis {preemphasis}, STFT n_fft {n_fft} hop {hop_length} win {win_length}, {n_mels} Kaldi mel bands {fmin:g}..{fmax:g} Hz, (ln(mel + 1e-5) + 4.5) / 5 |
| outputs | `features` (384, the pooled last conv layer: an embedding) and `logits` (527, before the sigmoid) |
| genre classes | AudioSet rows 216..263 (`Pop music` .. `Ska`): 48 music-genre classes, far beyond GTZAN's ten |
| in genrekit | `genrekit.networks.mn04`: numpy front end, an ONNX graph built from these weights (onnxruntime, no torch), `embed` / `tags` |
| verified | against outputs of the original code (`../shared/models/efficientat_mn04/reference_outputs.npz`): mel within 1e-3, features and logits within 1e-4 (tests/test_mn04.py) |
| weights | `mn04_as.safetensors`: {n_tensors} tensors (float32; 46 int64 batch-norm counters), {n_values:,} values, sha256 `{sha}` |

Limits: AudioSet's labels are weak (clip level) and its music genres are unevenly represented; the
genre classes are not mutually exclusive and their probabilities do not sum to one. Trained on YouTube
audio; the 10 s window means a song is judged from a few windows (`embed`'s per-song budget).
"""


def check_weights(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    t = load_file(str(path))
    bad = sorted(k for k, v in t.items() if v.dtype != np.float32 and not k.endswith("num_batches_tracked"))
    n_values = sum(int(v.size) for v in t.values())  # the 46 int64 num_batches_tracked counters included
    if len(t) != N_TENSORS or bad or n_values != N_VALUES:
        raise SystemExit(f"{path}: expected {N_TENSORS} tensors (float32 but the batch-norm counters) with {N_VALUES:,} values, got {len(t)} "
                         f"tensors, {n_values:,} values, non-float32: {bad[:5]}")
    for key, shape in (("features.0.0.weight", (8, 1, 3, 3)), ("features.16.0.weight", (384, 64, 1, 1)),
                       ("classifier.2.weight", (512, 384)), ("classifier.5.weight", (N_CLASSES, 512))):
        if key not in t or tuple(t[key].shape) != shape:
            raise SystemExit(f"{path}: {key} should have shape {shape}; is this mn04_as?")
    return t


def check_labels(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if rows[0] != ["index", "mid", "display_name"] or len(rows) != N_CLASSES + 1:
        raise SystemExit(f"{path}: expected a header and {N_CLASSES} rows of index,mid,display_name")
    if [int(r[0]) for r in rows[1:]] != list(range(N_CLASSES)):
        raise SystemExit(f"{path}: indices are not 0..{N_CLASSES - 1} in order")
    if rows[1 + 216][2] != "Pop music" or rows[1 + 263][2] != "Ska" or rows[1 + 137][2] != "Music":
        raise SystemExit(f"{path}: rows 216 / 263 / 137 are not Pop music / Ska / Music")
    return [r[2] for r in rows[1:]]


def convert(source: Path, out: Path) -> dict:
    weights_in = source / WEIGHTS
    tensors = check_weights(weights_in)
    check_labels(source / LABELS)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights_in, out / WEIGHTS)
    shutil.copyfile(source / LABELS, out / LABELS)
    sha = file_digest(out / WEIGHTS)
    if sha != file_digest(weights_in):
        raise SystemExit(f"{out / WEIGHTS}: the copy differs from {weights_in}")
    license_text = (source / LICENSE_IN).read_text(encoding="utf-8")
    if "MIT License" not in license_text or "Florian Schmid" not in license_text:
        raise SystemExit(f"{source / LICENSE_IN}: not EfficientAT's MIT licence")
    (out / LICENSE_OUT).write_text(
        ATTRIBUTION.format(pt=ORIGINAL_PT, pt_sha=ORIGINAL_PT_SHA256, license=license_text.strip() + "\n"),
        encoding="utf-8")
    spec = {
        "format": FORMAT,
        "weights": WEIGHTS,
        "weights_sha256": sha,
        "tensors_sha256": tensors_sha256(tensors),
        "n_tensors": N_TENSORS,
        "n_values": N_VALUES,
        "dtype": "float32",
        "labels": LABELS,
        "labels_sha256": file_digest(out / LABELS),
        "license": LICENSE_OUT,
        "architecture": ARCH,
        "input": INPUT,
        "source": {"file": ORIGINAL_PT, "sha256": ORIGINAL_PT_SHA256,
                   "url": "https://github.com/fschmid56/EfficientAT/releases/download/v0.0.1/" + ORIGINAL_PT},
    }
    (out / SPEC).write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    (out / "MODEL_CARD.md").write_text(
        MODEL_CARD.format(sha=sha, n_tensors=N_TENSORS, n_values=N_VALUES, **INPUT), encoding="utf-8")
    return spec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder with mn04_as.safetensors etc.")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = p.parse_args(argv)
    spec = convert(a.source, a.out)
    print(f"wrote {a.out}: {WEIGHTS} (sha256 {spec['weights_sha256'][:16]}...), {SPEC}, {LICENSE_OUT}, {LABELS}, "
          "MODEL_CARD.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
