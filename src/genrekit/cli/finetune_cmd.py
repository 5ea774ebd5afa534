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


def _holdout(tids, labels, valid_size: float, seed: int):
    """Stratified hold-out of whole tracks when every label has >= 2 tracks, else random."""
    import numpy as np

    n_valid = int(round(len(tids) * valid_size))
    if valid_size <= 0 or n_valid < 1 or len(tids) - n_valid < 1:
        return np.arange(len(tids)), np.array([], dtype=int)
    from sklearn.model_selection import train_test_split

    _, counts = np.unique(labels, return_counts=True)
    strat = labels if counts.min() >= 2 and n_valid >= len(counts) else None
    tr, va = train_test_split(np.arange(len(tids)), test_size=n_valid, stratify=strat, random_state=seed)
    return np.sort(tr), np.sort(va)


def run(args) -> int:
    import sys
    from pathlib import Path

    import numpy as np

    from genrekit.augment import AugmentConfig
    from genrekit.deep import _score, load_logmels, make_slices
    from genrekit.errors import GenrekitError, ModelError
    from genrekit.evaluate import write_json, write_run_report
    from genrekit.models.base import load_model_file
    from genrekit.models.deep import DeepModel

    if not 0.0 <= args.valid_size < 1.0:
        print("genrekit finetune: error: --valid-size must be in [0, 1)", file=sys.stderr)
        return 2
    try:
        aug = AugmentConfig.parse(args.augment)
    except GenrekitError as exc:
        print(f"genrekit finetune: error: {exc}", file=sys.stderr)
        return 2
    import tempfile

    from genrekit.predict import default_model_path

    scratch = tempfile.TemporaryDirectory()
    args.source_model = args.source_model or str(default_model_path())
    source_name = str(args.source_model)
    _, meta = load_model_file(args.source_model)
    if meta.get("kind") == "hybrid":  # e.g. the shipped model: start from its spectrogram member
        from genrekit.models import load_model

        deep = [m for m in load_model(args.source_model).members_ if getattr(m, "kind", None) == "deep"]
        if deep:
            args.source_model = str(deep[0].save(Path(scratch.name) / "cnn.safetensors"))
            source_name += " (its CNN member)"
            _, meta = load_model_file(args.source_model)
    if meta.get("kind") != "deep":
        raise ModelError(
            f"{args.source_model}: a {meta.get('kind')!r} model cannot be fine-tuned here; give a deep "
            "(log-mel CNN/ResNet) model trained with genrekit train --model cnn|cnn-bn|resnet|shortchunk"
        )
    inp = dict(meta["input"])
    data = load_logmels(args.data, source="audio", sr=int(inp["sr"]), n_fft=int(inp["n_fft"]),
                        hop_length=int(inp["hop_length"]), n_mels=int(inp["n_mels"]),
                        time_resolution=inp.get("time_resolution", "full"), progress=not args.no_progress)
    for path, why in data.failed:
        print(f"genrekit finetune: skipped {path}: {why}", file=sys.stderr)
    labels = np.unique(data.labels)
    if len(labels) < 2:
        raise GenrekitError(f"{args.data}: found {len(labels)} label folder(s); fine-tuning needs at least two")
    tr, va = _holdout(data.track_ids, data.labels, args.valid_size, args.seed)
    width = int(meta.get("input_frames") or inp["slice_frames"])
    Xtr, ytr, gtr = make_slices(data, tr, width=width + (aug.crop_frames if aug.crop else 0), overlap=args.overlap)
    Xva, yva, gva = make_slices(data, va, width=width, overlap=0.5) if len(va) else (None, None, None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lr = args.lr or (3e-3 if args.freeze else 1e-3)
    model = DeepModel(meta["arch"], epochs=args.epochs, batch_size=args.batch_size, lr=lr,
                      width=int(meta.get("width", 1)), augment=aug, input=inp, input_frames=width,
                      seed=args.seed, device=args.device, threads=args.threads, checkpoint_dir=None,
                      verbose=not args.no_progress, init_from=args.source_model, freeze_body=args.freeze,
                      patience=max(3, args.epochs // 3))
    model.fit(Xtr, ytr, groups=gtr, X_valid=Xva, y_valid=yva, groups_valid=gva)
    record = {
        "model": meta["arch"], "protocol": f"finetune hold-out ({args.valid_size:.0%} of tracks, stratified)",
        "finetuned_from": source_name, "source_classes": meta.get("classes"),
        "freeze_body": bool(args.freeze), "layers_transferred": int(getattr(model, "transferred_", 0)),
        "params": model.get_params(), "augment": aug.to_dict(), "data": str(args.data),
        "split": {"train": len(tr), "valid": len(va)}, "seed": args.seed,
        "failed": [{"path": p, "error": e} for p, e in data.failed],
    }
    extra = {"finetuned_from": {"path": source_name, "classes": meta.get("classes"),
                                "trained_on": meta.get("trained_on")},
             "trained_on": {"protocol": "finetune", "data": str(args.data),
                            "train_tracks": [str(t) for t in data.track_ids[tr]],
                            "valid_tracks": [str(t) for t in data.track_ids[va]]}}
    model.save(out / "model.safetensors", extra_meta=extra)
    if len(va):
        sc = _score(model, data, va, width=width, overlap=0.5)
        record.update({"track_accuracy": sc["track"]["accuracy"], "slice_accuracy": sc["slice"]["accuracy"]})
        write_run_report(out, {**record, "level": "track"}, y_true=sc["track_y"], y_pred=sc["track_pred"],
                         proba=sc["track_proba"], classes=list(model.classes_), history=model.history_)
        print(f"fine-tuned {meta['arch']} on {len(labels)} labels: hold-out track-level accuracy "
              f"{sc['track']['accuracy']:.3f}, slice-level {sc['slice']['accuracy']:.3f} ({len(va)} tracks)")
    else:
        write_json(out / "metrics.json", {**record, "note": "no hold-out (--valid-size 0): nothing scored"})
        print(f"fine-tuned {meta['arch']} on {len(labels)} labels ({len(tr)} tracks, no hold-out)")
    print(f"wrote {out / 'model.safetensors'}")
    return 1 if data.failed else 0
