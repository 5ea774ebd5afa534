"""`genrekit train`: fit one model under an evaluation protocol and write its report and model file."""

from __future__ import annotations

HELP = "fit a model under a protocol; writes metrics.json, report, plots and model.safetensors"
DESCRIPTION = (
    "Fits MODEL on PATH (a Kaggle-style feature CSV, or audio folders featurised on the way) under PROTOCOL "
    "and writes the run to --out: metrics.json (protocol, model, parameters, seed, data fingerprint, accuracy, "
    "macro-F1, per-genre precision/recall/F1, confusion matrix, fold scores), report.txt, confusion.png, "
    "pr_curves.png, importance.png, curves.png (iterative models) and model.safetensors. "
    "Tabular models: rf, extratrees, svm, knn, logreg, hgb, rf-top30 (or <model>-top<k>), mlp, mlp-512, "
    "mlp-512-sgd, mlp-1024-rmsprop, cnn1d, ensemble, stacking; on --input mn04 or musicnn+mn04 also the untrained "
    "zero-shot experts zeroshot-audioset and zeroshot (musicnn+mn04 only). Deep log-mel models (cnn, cnn-bn, resnet, "
    "shortchunk, ...; see genrekit.experiments) take a GTZAN root, audio or image folder as PATH. Figures are "
    "track-level; segment tables (3 s rows) and log-mel slices are split by track and also scored per segment."
)

PROTOCOL_CHOICES = ("random", "kfold", "fault-filtered", "artist3")
INPUT_CHOICES = ("features", "musicnn", "mn04", "musicnn+mn04")


def add_arguments(p) -> None:
    p.add_argument("--model", "-m", required=True, help="model name, e.g. svm, mlp, ensemble (deep: cnn, resnet ...)")
    p.add_argument("--data", "-d", required=True, help="feature CSV (features_30_sec.csv / 3 s table) or audio folders")
    p.add_argument("--protocol", "-p", default="fault-filtered", choices=PROTOCOL_CHOICES,
                   help="evaluation protocol (default: fault-filtered, the honest one)")
    p.add_argument("--out", "-o", required=True, help="run folder to write")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--folds", type=int, default=None, help="number of folds for kfold (default 10)")
    p.add_argument("--image-features", metavar="ROOT", default=None,
                   help="Kaggle images_original folder: add per-mel-band statistics of the inverted images")
    p.add_argument("--aggregate", choices=("mean_log", "vote"), default="mean_log",
                   help="how segment probabilities make a track's (segment tables only)")
    p.add_argument("--epochs", type=int, default=None, help="deep models: maximum epochs")
    p.add_argument("--device", default="auto", help="deep models: cpu, cuda or auto")
    p.add_argument("--augment", default=None,
                   help="deep models: none, default (crop, specaugment, mixup), all, or a comma list of "
                        "crop, gain, noise, pitch, specaugment, mixup (recorded in the run)")
    p.add_argument("--ema", type=float, default=None, help="deep models: weight averaging decay (default 0.995; 0 = off)")
    p.add_argument("--resume", action="store_true", help="deep models: continue from the run's last checkpoint")
    p.add_argument("--valid-size", type=float, default=None, metavar="FRACTION",
                   help="deep models: share of the training tracks held out for early stopping where the protocol "
                        "has no valid side (default 0.15)")
    p.add_argument("--split-seed", type=int, default=None,
                   help="deep models: seed of the folds alone (default --seed), so runs can share folds")
    p.add_argument("--refit", action="store_true",
                   help="deep models: train on train + valid tracks for exactly --epochs (no early stopping); "
                        "choose the recipe and epochs on a run without --refit first")
    add_musicnn_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_musicnn_arguments(p) -> None:
    """--input, --layer, --standardise: shared by train and compare."""
    p.add_argument("--input", choices=INPUT_CHOICES, default=None,
                   help="tabular models: what they learn from: GTZAN features (default), musicnn embeddings "
                        "(of audio folders, a GTZAN root (audio, Kaggle images where a track has none) or an "
                        ".npz embedding table given as --data), mn04 features (AudioSet, 384 values) or "
                        "musicnn+mn04 (both per-track means side by side); mn04 hears audio only: a GTZAN track "
                        "with only an image is left out and listed in metrics.json")
    p.add_argument("--layer", choices=("penultimate", "pooled", "taggram"), default=None,
                   help="--input musicnn (or musicnn+mn04: penultimate or taggram): which musicnn layer's "
                        "per-track mean (default penultimate, 200 values)")
    p.add_argument("--standardise", choices=("none", "domain"), default=None,
                   help="--input musicnn: 'domain' centres and scales audio- and image-derived embeddings each with "
                        "its own mean/std, computed on the training tracks only and stored in the model for "
                        "predict (default none)")


def musicnn_options(args, *, command: str, deep: bool = False) -> dict | None:
    """The data options of --input musicnn, mn04 or musicnn+mn04 (None: a usage error, printed)."""
    import sys

    if args.input in ("mn04", "musicnn+mn04"):
        bad = [f for f, v, ok in (("--layer", args.layer, args.input != "mn04" and args.layer != "pooled"),
                                  ("--standardise", args.standardise, args.standardise in (None, "none")),
                                  ("--image-features", args.image_features, False)) if v and not ok]
        if bad or deep:
            print(f"genrekit {command}: error: --input {args.input} applies to tabular models and takes "
                  f"{'--layer penultimate or taggram only' if args.input != 'mn04' else 'no --layer'}, no "
                  f"--standardise domain, no --image-features (given: {', '.join(bad) or 'a deep model'})",
                  file=sys.stderr)
            return None
        return {"input": args.input, "layer": args.layer or "penultimate"}
    musicnn = args.input == "musicnn" or (args.input is None and str(args.data).lower().endswith(".npz"))
    if not musicnn:
        given = [f for f, v in (("--layer", args.layer), ("--standardise", args.standardise)) if v is not None]
        if given:
            print(f"genrekit {command}: error: {', '.join(given)} apply to --input musicnn only", file=sys.stderr)
            return None
        return {}
    if deep or args.image_features:
        print(f"genrekit {command}: error: --input musicnn applies to tabular models without --image-features",
              file=sys.stderr)
        return None
    return {"input": "musicnn", "layer": args.layer or "penultimate", "standardise": args.standardise or "none"}


def run(args) -> int:
    import sys

    from genrekit import experiments
    from genrekit.errors import ModelError
    from genrekit.models.registry import model_names

    progress = not args.no_progress
    deep = args.model in model_names("deep")
    # the deep models' flags, as given (None / False: not given)
    model_flags = {"epochs": args.epochs or None, "augment": args.augment, "ema": args.ema, "resume": args.resume or None}
    split_flags = {"valid_size": args.valid_size, "split_seed": args.split_seed, "refit": args.refit or None}
    params: dict = {}
    split: dict = {}
    if deep:
        params = {"device": args.device, **{k: v for k, v in model_flags.items() if v is not None}}
        if "ema" in params:
            params["ema"] = params["ema"] or None  # --ema 0: no weight averaging
        split = {k: v for k, v in split_flags.items() if v is not None}
    else:
        given = [f"--{k.replace('_', '-')}" for k, v in {**model_flags, **split_flags}.items() if v is not None]
        if given:
            print(f"genrekit train: {', '.join(given)} apply to deep models only; ignored", file=sys.stderr)
    if deep and args.image_features:
        print("genrekit train: error: --image-features applies to tabular models only", file=sys.stderr)
        return 2
    try:
        factory = experiments.as_factory(args.model, **params)
    except ModelError as exc:
        print(f"genrekit train: error: {exc}", file=sys.stderr)
        return 2
    options = musicnn_options(args, command="train", deep=deep)
    if options is None:
        return 2
    if args.image_features:
        options = {"image_root": args.image_features}
    data = experiments.open_data(args.data, factory, progress=progress, **options)
    for path, why in data.failed:
        print(f"genrekit train: skipped {path}: {why}", file=sys.stderr)
    result = experiments.run(args.protocol, factory, data, seed=args.seed, out=args.out, k=args.folds,
                             aggregate=args.aggregate, progress=progress, **split)
    track = result.track_level
    std, n_folds = track.get("accuracy_std") or 0.0, track.get("n_folds", 1)
    spread = f" +- {std:.3f} over {n_folds} folds" if n_folds > 1 else ""
    print(f"{args.model}: accuracy {track['accuracy']:.3f}{spread}, macro-F1 {track['macro_f1']:.3f} "
          f"(protocol {args.protocol}, track-level)")
    seg = result.segment_level
    if seg is not None:
        unit = f"{data.segment_seconds:g} s slices" if data.segment_unit == "slice" else "segments"
        print(f"{args.model}: segment-level accuracy {seg['accuracy']:.3f} (protocol {args.protocol}; {unit})")
    print(f"report written to {args.out}")
    return 0
