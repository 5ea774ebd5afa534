"""`genrekit evaluate`: score a saved (or the shipped) model on the test side of a protocol."""

from __future__ import annotations

HELP = "score a trained or the shipped model on a protocol's test tracks; writes the usual reports"
DESCRIPTION = (
    "Scores a fixed model on the test side of a hold-out protocol (fault-filtered: 290 tracks; random), or on "
    "one fold of a k-fold protocol with --fold, or on every track with --protocol all. PATH may be a GTZAN root "
    "such as ../shared/data/gtzan: each test track is read from its audio where present, otherwise from its "
    "Kaggle image (log-mel models) or feature row (feature models). Refuses to score a model on tracks it "
    "was trained on."
)


def add_arguments(p) -> None:
    p.add_argument("--model", "-m", default=None, help="model file (default: the shipped model)")
    p.add_argument("--data", required=True, help="GTZAN root, audio folder, Kaggle image folder or feature CSV")
    p.add_argument("--protocol", default="fault-filtered",
                   help="fault-filtered (default), random, kfold/artist3 with --fold, or all")
    p.add_argument("--fold", type=int, default=None, help="fold index for k-fold protocols")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", "-o", default=None, help="report folder (default runs/evaluate-<protocol>)")
    p.add_argument("--backend", choices=("onnx", "torch"), default="onnx")


def run(args) -> int:
    import sys

    from genrekit.experiments import evaluate_model, write_run
    from genrekit.experiments.schema import claim_run_folder
    from genrekit.predict import GenreClassifier

    out = claim_run_folder(args.out or f"runs/evaluate-{args.protocol}")  # before the work: never a user's folder
    clf = GenreClassifier.load(args.model, backend=args.backend)
    result = evaluate_model(clf, args.data, protocol=args.protocol, fold=args.fold, seed=args.seed)
    write_run(out, result)
    track, errors = result.track_level, result.metrics["errors"]
    src = ", ".join(f"{v} from {k}" for k, v in result.data["sources"].items() if v)
    ece = _reliability(result, out)
    print(f"{args.protocol} test, track level: accuracy {track['accuracy']:.3f}, macro-F1 "
          f"{track['macro_f1']:.3f} on {result.data['n_tracks']} tracks ({src}); ECE {ece:.3f}")
    if errors:
        print(f"{len(errors)} test tracks could not be read (listed in metrics.json)", file=sys.stderr)
    print(f"reports in {out}/", file=sys.stderr)
    return 1 if errors else 0


def _reliability(result, out) -> float:
    """reliability.png and calibration.json (ECE of the track scores, 10 bins) beside the run's reports."""
    import numpy as np

    from genrekit.reports import plot_reliability, write_json

    f = result.folds[0]
    proba = np.asarray(f.track_proba, dtype=float)
    ece = plot_reliability(f.track_true, proba, f.classes, f"{result.model}: {result.protocol} test",
                           out / "reliability.png")
    write_json(out / "calibration.json", {"ece": ece, "n_bins": 10, "n_tracks": int(len(proba))})
    return ece
