"""`genrekit train`: fit one model under an evaluation protocol and write its report and model file."""

from __future__ import annotations

HELP = "fit a model under a protocol; writes metrics.json, report, plots and model.safetensors"
DESCRIPTION = (
    "Fits MODEL on PATH (a Kaggle-style feature CSV, or audio folders featurised on the way) under PROTOCOL "
    "and writes the run to --out: metrics.json (protocol, model, parameters, seed, data fingerprint, accuracy, "
    "macro-F1, per-genre precision/recall/F1, confusion matrix, fold scores), report.txt, confusion.png, "
    "pr_curves.png, importance.png, curves.png (iterative models) and model.safetensors. "
    "Tabular models: rf, extratrees, svm, knn, logreg, hgb, rf-top30 (or <model>-top<k>), mlp, mlp-512, "
    "mlp-512-sgd, mlp-1024-rmsprop, cnn1d, ensemble, stacking. Deep log-mel models (cnn, resnet, ...; see "
    "genrekit.deep) take a GTZAN root, audio or image folder as PATH. Figures are track-level; segment tables "
    "(3 s rows) are split by track and also scored per segment."
)

PROTOCOL_CHOICES = ("random", "kfold", "fault-filtered", "artist3")


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
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _deep_models() -> tuple[str, ...]:
    try:
        from genrekit import deep
    except ImportError:
        return ()
    return tuple(getattr(deep, "DEEP_MODELS", ()))


def run(args) -> int:
    import sys
    from pathlib import Path

    from genrekit.errors import GenrekitError
    from genrekit.models.tabular import TABULAR_MODELS, make_model

    progress = not args.no_progress
    name = args.model
    if name in _deep_models():
        from genrekit import deep

        kw = {"seed": args.seed, "device": args.device, "progress": progress, "aggregate": args.aggregate}
        if args.epochs:
            kw["epochs"] = args.epochs
        if args.folds:
            kw["folds"] = args.folds
        if args.augment is not None:
            kw["augment"] = args.augment
        if args.ema is not None:
            kw["ema"] = args.ema or None
        if args.resume:
            kw["resume"] = True
        if args.refit:
            kw["refit"] = True
        if args.split_seed is not None:
            kw["split_seed"] = args.split_seed
        if args.valid_size is not None:
            kw["valid_size"] = args.valid_size
        deep.train_run(name, args.data, args.protocol, args.out, **kw)
        import json

        # the run's own report (track level, with macro-F1) rather than train_run's per-fold record
        metrics = json.loads((Path(args.out) / "metrics.json").read_text())
        n = len(metrics.get("fold_accuracies") or [])
        metrics["n_folds"] = n or 1
        slices = Path(args.out) / "slices" / "metrics.json"
        if slices.is_file():
            metrics["segment_level"] = json.loads(slices.read_text())
        elif metrics.get("slice_accuracy") is not None:
            metrics["segment_level"] = {"accuracy": metrics["slice_accuracy"]}
    else:
        if args.epochs:
            print("genrekit train: --epochs applies to deep models only; ignored", file=sys.stderr)
        try:
            make_model(name)
        except GenrekitError:
            deep_names = ", ".join(_deep_models()) or "none installed"
            print(f"genrekit train: error: unknown model {name!r}; tabular: {', '.join(TABULAR_MODELS)}; "
                  f"deep: {deep_names}", file=sys.stderr)
            return 2
        from genrekit.train import train_run

        metrics = train_run(name, args.data, args.protocol, args.out, args.seed, k=args.folds,
                            image_root=args.image_features, aggregate=args.aggregate, progress=progress)
    level = metrics.get("level", "track")
    acc = metrics["accuracy"]
    std = metrics.get("accuracy_std") or 0.0
    n_folds = metrics.get("n_folds", 1)
    spread = f" +- {std:.3f} over {n_folds} folds" if n_folds and n_folds > 1 else ""
    print(f"{name}: accuracy {acc:.3f}{spread}, macro-F1 {metrics['macro_f1']:.3f} "
          f"(protocol {args.protocol}, {level}-level)")
    seg = metrics.get("segment_level")
    if isinstance(seg, dict) and seg.get("accuracy") is not None:
        print(f"{name}: segment-level accuracy {seg['accuracy']:.3f} (protocol {args.protocol}; "
              f"{'3 s slices' if name in _deep_models() else 'segments'})")
    print(f"report written to {args.out}")
    return 0
