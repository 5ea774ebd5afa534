"""`genrekit finetune`: adapt a trained deep model to your own labelled folders (transfer learning)."""

from __future__ import annotations

HELP = "fine-tune a trained deep model on your own folder-per-label audio (new label set)"
DESCRIPTION = (
    "Transfer learning: starts from a trained genrekit deep model (--from), replaces its output layer with "
    "one for the labels found in --data (one sub-folder per label, audio files inside, any format), and "
    "trains on slices of your audio. --freeze keeps the convolutional body fixed and trains only the head "
    "(best with a few files per label); without it the whole network adapts. A part of your tracks is held "
    "out (by track) for early stopping and reported at slice and track level. Writes OUT/model.safetensors, "
    "metrics.json and plots. Exit codes: 0 ok, 1 some files failed or a genrekit error, 2 usage."
)


def add_arguments(p) -> None:
    p.add_argument("--from", dest="source_model", default=None, metavar="MODEL",
                   help="a genrekit deep model file, or a hybrid whose CNN is taken "
                        "(default: the shipped model's CNN)")
    p.add_argument("--data", required=True, metavar="PATH", help="folder with one sub-folder of audio per label")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder to write the new model and reports to")
    p.add_argument("--freeze", action="store_true", help="freeze the body; train only the new head")
    p.add_argument("--epochs", type=int, default=15, help="training epochs (default 15)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-3, 3e-3 with --freeze)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--augment", default="default",
                   help="none, default (crop,specaugment,mixup), all, or a comma list of "
                        "crop,gain,noise,pitch,specaugment,mixup")
    p.add_argument("--valid-size", type=float, default=0.2,
                   help="fraction of tracks held out for early stopping and the report (0 = none)")
    p.add_argument("--overlap", type=float, default=0.5, help="slice overlap for training slices (default 0.5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1: fastest on a shared CPU)")
    p.add_argument("--no-progress", action="store_true", help="quiet: no progress bar or epoch lines")
    p.add_argument("--head", default=None, metavar="NAME",
                   help="few-shot transfer instead: a tabular head (logreg, svm, mlp ...) on frozen musicnn "
                        "embeddings of your audio (--from, --freeze and the training flags do not apply)")
    p.add_argument("--input", choices=("musicnn", "mn04", "musicnn+mn04"), default="musicnn",
                   help="--head: which frozen network(s) the head learns from: musicnn (default), mn04 (AudioSet "
                        "features) or both per-track means side by side")
    p.add_argument("--layer", choices=("penultimate", "pooled", "taggram"), default="penultimate",
                   help="--head: which musicnn layer's per-track mean the head learns from (default penultimate)")
    p.add_argument("--standardise", choices=("none", "domain"), default="none",
                   help="--head: standardise the embeddings with the training tracks' mean/std, stored in the "
                        "model for predict (default none)")


def run(args) -> int:
    import sys

    from genrekit.augment import AugmentConfig
    from genrekit.errors import GenrekitError
    from genrekit.experiments import finetune

    if not 0.0 <= args.valid_size < 1.0:
        print("genrekit finetune: error: --valid-size must be in [0, 1)", file=sys.stderr)
        return 2
    try:
        AugmentConfig.parse(args.augment)
    except GenrekitError as exc:
        print(f"genrekit finetune: error: {exc}", file=sys.stderr)
        return 2
    if args.head:
        return _musicnn_head(args)
    result = finetune(args.data, args.out, source_model=args.source_model, freeze=args.freeze, epochs=args.epochs,
                      lr=args.lr, batch_size=args.batch_size, augment=args.augment, valid_size=args.valid_size,
                      overlap=args.overlap, seed=args.seed, device=args.device, threads=args.threads,
                      progress=not args.no_progress)
    failed = result.metrics.get("failed", [])
    for f in failed:
        print(f"genrekit finetune: skipped {f['path']}: {f['error']}", file=sys.stderr)
    labels, fold = len(result.classes), result.folds[0]
    if fold.scored:
        seg = result.segment_level
        print(f"fine-tuned {result.model} on {labels} labels: hold-out track-level accuracy "
              f"{result.track_level['accuracy']:.3f}, slice-level {seg['accuracy']:.3f} ({len(fold.track_ids)} tracks)")
    else:
        print(f"fine-tuned {result.model} on {labels} labels ({len(fold.train_tracks)} tracks, no hold-out)")
    print(f"wrote {result.model_file}")
    return 1 if failed else 0


def _musicnn_head(args) -> int:
    import sys

    from genrekit.errors import GenrekitError
    from genrekit.experiments import finetune_musicnn
    from genrekit.models.registry import model_names

    if args.head not in model_names("tabular"):
        print(f"genrekit finetune: error: --head {args.head!r} is not a tabular model "
              f"({', '.join(model_names('tabular'))})", file=sys.stderr)
        return 2
    try:
        result = finetune_musicnn(args.data, args.out, head=args.head, layer=args.layer, standardise=args.standardise,
                                  valid_size=args.valid_size, seed=args.seed, progress=not args.no_progress,
                                  input=args.input)
    except GenrekitError as exc:
        print(f"genrekit finetune: error: {exc}", file=sys.stderr)
        return 1
    for f in result.metrics.get("failed", []):
        print(f"genrekit finetune: skipped {f['path']}: {f['error']}", file=sys.stderr)
    fold = result.folds[0]
    if fold.scored:
        print(f"{args.input} + {args.head} on {len(result.classes)} labels: hold-out track-level accuracy "
              f"{result.track_level['accuracy']:.3f} ({len(fold.track_ids)} tracks)")
    else:
        print(f"{args.input} + {args.head} on {len(result.classes)} labels ({len(fold.train_tracks)} tracks, no hold-out)")
    print(f"wrote {result.model_file}")
    return 1 if result.metrics.get("failed") else 0
