"""Check that `genrekit-gtzan-ears` through `GenreClassifier.predict` (the real path: stream, styles ear,
musicnn per block) gives the study's recipe scores on its per-clip inputs (scripts/ears_study.py), on 20
shared clips outside the fault-filtered test side (no test clip is read).

    python scripts/ears_parity.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    import ears_study as E

    from genrekit import GENRES, datasets, splits
    from genrekit.models import load
    from genrekit.predict import GenreClassifier, calibrate, default_model_path

    g = E.gtzan_inputs(E.DEFAULT_DATA)
    test = set(splits.fault_filtered()["test"])
    m = load(default_model_path("genrekit-gtzan-ears"), backend="onnx")
    rows = [np.hstack([g["penultimate"], g["mn04_features"]]), np.hstack([g["taggram"], g["mn04_probs"]]),
            g["mn04_probs"]]
    study = calibrate(m.predict_proba(rows), m.meta_["temperature"])
    tracks = {t.track_id: t for t in datasets.GTZAN(E.DEFAULT_DATA).audio_tracks()}
    clf = GenreClassifier.load("genrekit-gtzan-ears")
    idx = [i for i, t in enumerate(g["ids"]) if t not in test][:40:2]
    same, diffs = 0, []
    for i in idx:
        r = clf.predict(tracks[g["ids"][i]].path, styles=False)
        p = np.array([r.scores[c] for c in GENRES])
        same += int(p.argmax() == study[i].argmax())
        diffs.append(float(np.abs(p - study[i]).max()))
    print(f"predict path vs study inputs on {len(idx)} non-test clips: same top-1 {same}/{len(idx)}, "
          f"max score difference {max(diffs):.3f}, median {np.median(diffs):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
