"""The ears recipe's fault-filtered TEST figure, scored once after the choice (made on CV; nothing here chooses).

    python scripts/build_ears_default.py        # the recipe, head fitted on the 113 non-test clips
    python scripts/ears_test.py                 # today's default on the 290 test tracks + the recipe where audio exists

Of the 290 test tracks only 11 have audio here; every member of the recipe needs audio. Way 1 ("left
out, renormalised"): an image-only track is scored by the members that read images, i.e. today's default
(genrekit-gtzan-musicnn) alone; a track with audio by the recipe alone. Way 2 (an image-derived
approximation of mn04's input) is not implemented, so it has no figure. Prints both defaults' figures on
all 290 and on the 11 audio tracks; writes JSON to ``--out``.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def recipe_probs(g: dict, rows: np.ndarray, run: Path) -> np.ndarray:
    """The recipe written by build_ears_default.py on the 124-clip inputs' ``rows``."""
    import build_ears_default as B
    import ears_study as E

    from genrekit.metrics import mean_log_proba
    from genrekit.predict import calibrate

    recipe = json.loads((run / "recipe.json").read_text())
    head = next(m for m in recipe["members"] if m["name"] == "concat")
    lin = B.linear_from_arrays(run / head["file"], head["classes"], head["input"])
    trained = set(recipe["trained_on"])
    leak = [g["ids"][i] for i in rows if g["ids"][i] in trained]
    if leak:
        raise SystemExit(f"the recipe's head trained on {len(leak)} scored clips (e.g. {leak[0]}); rebuild without --all-clips")
    X = E.design(g, "concat")[rows]
    sub = {k: (v[rows] if isinstance(v, np.ndarray) and v.shape[:1] == (len(g["ids"]),) else v) for k, v in g.items()}
    probs = {"concat": lin.predict_proba(X), "zero-shot": E.zero_shot(sub, E.ZERO_SHOT),
             "zero-shot-AS": E.zero_shot(sub, E.ZERO_SHOT_AS)}
    w = {m["name"]: m["weight"] for m in recipe["members"]}
    p = mean_log_proba([probs[k] for k in w], weights=list(w.values()))
    return calibrate(p, recipe["temperature"])


def main(argv=None) -> int:
    import ears_study as E

    from genrekit import GENRES
    from genrekit.experiments.scoring import evaluate_model
    from genrekit.predict import GenreClassifier

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=E.DEFAULT_DATA)
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "ears-default")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "ears-default" / "test.json")
    args = ap.parse_args(argv)

    today = evaluate_model(GenreClassifier.load(), args.data, protocol="fault-filtered", progress=False).folds[0]
    ids = [str(t) for t in today.track_ids]
    y = np.asarray(today.track_true).astype(str)
    cls = list(today.classes)
    P_today = today.track_proba[:, [cls.index(c) for c in GENRES]]
    g = E.gtzan_inputs(args.data)
    pos = {t: i for i, t in enumerate(g["ids"])}
    audio = [i for i, t in enumerate(ids) if t in pos]
    P_new = P_today.copy()
    P_new[audio] = recipe_probs(g, np.array([pos[ids[i]] for i in audio]), args.run)

    def acc(P, rows) -> float:
        return float(np.mean(np.asarray(GENRES)[P[rows].argmax(1)] == y[rows]))

    def top3(P, rows) -> float:
        return float(np.mean(E.topk_hits(P[rows], y[rows], 3)))

    everything = np.arange(len(ids))
    out = {"n_test": len(ids), "n_audio": len(audio),
           "today_default": {"top1": acc(P_today, everything), "top3": top3(P_today, everything),
                             "audio_top1": acc(P_today, audio), "audio_top3": top3(P_today, audio)},
           "ears_left_out_way": {"top1": acc(P_new, everything), "top3": top3(P_new, everything),
                                 "audio_top1": acc(P_new, audio), "audio_top3": top3(P_new, audio)},
           "ears_image_approximation_way": None,
           "audio_tracks": [ids[i] for i in audio]}
    print(json.dumps(out, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
