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
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch")


def run(args) -> int:
    import sys
    from pathlib import Path

    from genrekit import __version__
    from genrekit.evaluate import evaluate_model, write_run_report
    from genrekit.predict import GenreClassifier

    clf = GenreClassifier.load(args.model, backend=args.backend)
    metrics, arrays = evaluate_model(clf, args.data, protocol=args.protocol, fold=args.fold, seed=args.seed)
    metrics["genrekit_version"] = __version__
    out = Path(args.out or f"runs/evaluate-{args.protocol}")
    write_run_report(out, metrics, **arrays)
    src = ", ".join(f"{v} from {k}" for k, v in metrics["sources"].items() if v)
    print(f"{args.protocol} test, track level: accuracy {metrics['track_accuracy']:.3f}, macro-F1 "
          f"{metrics['macro_f1']:.3f} on {metrics['n_tracks']} tracks ({src})")
    if metrics["errors"]:
        print(f"{len(metrics['errors'])} test tracks could not be read (listed in metrics.json)", file=sys.stderr)
    print(f"reports in {out}/", file=sys.stderr)
    return 1 if metrics["errors"] else 0
