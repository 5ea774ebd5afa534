"""`genrekit compare`: models, saved runs and ensembles under one protocol, the same folds; a table and a chart."""

from __future__ import annotations

# one list of CLI protocols, and one set of musicnn-input flags, for train and compare
from genrekit.cli.train_cmd import PROTOCOL_CHOICES, add_musicnn_arguments, musicnn_options

HELP = "compare models and ensembles under one protocol; writes comparison.json, comparison.md and comparison.png"
DESCRIPTION = (
    "Fits each model under PROTOCOL on the same folds and writes DIR/comparison.json "
    '({"protocol": P, "results": [{"model", "accuracy", "accuracy_std", "macro_f1"}, ...]}), a markdown table '
    "(comparison.md), a bar chart (comparison.png), and prints the table. Accuracies are track-level; "
    "k-fold protocols give mean +- std over folds. --models may also name saved models (a model file or a run "
    "folder from `genrekit train`, deep or tabular) and ensembles of them and of tabular names, A+B or "
    "A@0.75+B@0.25 (weighted mean log-probability): with --data a GTZAN root, saved models are scored on the "
    "tracks they never trained on, on their own folds (a k-fold run folder's fold<i>/), and tabular names are "
    "fitted per fold on the same training tracks. --input musicnn: the tabular models learn from musicnn "
    "embeddings of --data (audio folders, a GTZAN root or an .npz table) instead of GTZAN features; --input mn04 "
    "or musicnn+mn04: from per-track network means of its audio, where --models may also name the zero-shot "
    "experts zeroshot-audioset (ten AudioSet classes) and zeroshot (musicnn+mn04: MSD tags and AudioSet classes), "
    "scored on the same folds."
)


def add_arguments(p) -> None:
    p.add_argument("--data", "-d", required=True,
                   help="feature CSV (e.g. ../shared/data/gtzan/features_30_sec.csv); with saved models a GTZAN root")
    p.add_argument("--protocol", "-p", default="fault-filtered", choices=PROTOCOL_CHOICES)
    p.add_argument("--models", default=None,
                   help="comma-separated model names, saved models (file or run folder) and ensembles A+B@w "
                        "(default: every tabular model)")
    p.add_argument("--out", "-o", required=True, help="folder for comparison.json/.md/.png")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--folds", type=int, default=None, help="number of folds for kfold (default 10)")
    p.add_argument("--image-features", metavar="ROOT", default=None,
                   help="Kaggle images_original folder: add per-mel-band statistics of the inverted images")
    p.add_argument("--aggregate", choices=("mean_log", "vote"), default="mean_log")
    add_musicnn_arguments(p)
    p.add_argument("--jobs", "-j", type=int, default=None,
                   help="worker processes for the (model, fold) fits (default: 2, or 1 on a one-core machine)")
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    import os
    import sys

    from genrekit import experiments
    from genrekit.experiments.compare import is_saved_entry, names_only

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else list(
        experiments.DEFAULT_COMPARE_MODELS)
    if not models:
        print("genrekit compare: error: --models is empty", file=sys.stderr)
        return 2
    saved = any(is_saved_entry(m) for m in models)
    if args.input in ("mn04", "musicnn+mn04") and all(names_only(m) for m in models):
        saved = False  # blends of names (logreg@0.25+zeroshot-audioset@0.75): fitted per fold on the network input
    if saved and (args.image_features or args.folds or args.input not in (None, "features")):
        print("genrekit compare: error: --image-features, --input and --folds apply to tabular model "
              "names only; saved models bring their own input and folds", file=sys.stderr)
        return 2
    options = musicnn_options(args, command="compare")
    if options is None:
        return 2
    kind = options.pop("input", None) or "features"
    result = experiments.compare(models, args.data, args.protocol, args.out, args.seed, k=args.folds,
                                 image_root=args.image_features, aggregate=args.aggregate, input=kind, **options,
                                 jobs=args.jobs or min(2, os.cpu_count() or 1), progress=not args.no_progress)
    print(experiments.comparison_markdown(result), end="")
    if saved:
        print(f"\n{len(models)} {'entry' if len(models) == 1 else 'entries'}, protocol {args.protocol}, folds from "
              f"{result['folds_from']}, {result['n_tracks']} test tracks, in {result['seconds']:.0f} s; written to "
              f"{args.out}")
        if result["errors"]:
            print(f"{len(result['errors'])} tracks could not be read by a member (listed in comparison.json)",
                  file=sys.stderr)
        return 0
    print(f"\n{len(models)} models on {result['input']['type']} input, protocol {args.protocol} "
          f"({result['protocol_description']}), in {result['seconds']:.0f} s "
          f"({result['jobs']} worker(s)); written to {args.out}")
    return 0
