"""Train several seeds of one deep recipe and combine them into one ensemble model file.

Each member is a plain `genrekit train` run (a subprocess, so members train in parallel on separate
cores); the ensemble averages the members' track-level log-probabilities with equal weights (a
`HybridModel` whose members are all spectrogram models) and is scored once on the protocol's test side.
Runs that already hold a model are reused, so an interrupted build resumes.

    .venv/bin/python scripts/deep_ensemble.py --data ../shared/data/gtzan --out runs/deep-ens-ff \
        --seeds 0,1,2,3 --refit --epochs 30 --jobs 2

Writes OUT/seed<i>/ (each member's run), OUT/model.safetensors (the ensemble), OUT/metrics.json,
OUT/report.txt and OUT/confusion.png (track level, the protocol's test side).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _train_cmd(args, seed: int, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "genrekit", "train", "--model", args.model, "--data", args.data,
           "--protocol", args.protocol, "--out", str(out), "--seed", str(seed), "--epochs", str(args.epochs),
           "--no-progress", "--split-seed", str(args.split_seed)]
    if args.folds:
        cmd += ["--folds", str(args.folds)]
    if args.refit:
        cmd.append("--refit")
    if args.augment:
        cmd += ["--augment", args.augment]
    return cmd


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="GTZAN root (audio and/or images_original)")
    ap.add_argument("--out", required=True, help="folder for the members' runs and the ensemble")
    ap.add_argument("--model", default="shortchunk", help="deep architecture (default shortchunk)")
    ap.add_argument("--protocol", default="fault-filtered",
                    help="fault-filtered (default) or any protocol; for k-fold ones every fold gets its ensemble")
    ap.add_argument("--folds", type=int, default=None, help="number of folds for kfold (default 10)")
    ap.add_argument("--split-seed", type=int, default=0, help="seed of the folds, shared by all members (default 0)")
    ap.add_argument("--seeds", default="0,1,2,3", help="comma-separated seeds, one member each")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--augment", default=None, help="augmentation list (default: train's default)")
    ap.add_argument("--refit", action="store_true", help="members train on train + valid (see `genrekit train --refit`)")
    ap.add_argument("--jobs", type=int, default=2, help="members trained at once (one CPU thread each)")
    ap.add_argument("--feature-weight", type=float, default=None,
                    help="k-fold only: also score each fold's ensemble blended with a logistic regression on the "
                         "Kaggle feature table (the shipped model's recipe: C 0.3, no HPSS columns) at this weight")
    args = ap.parse_args(argv)

    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if len(seeds) < 2:
        ap.error("an ensemble needs at least two seeds")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    todo = [s for s in seeds if not (out / f"seed{s}" / "model.safetensors").is_file()]
    running: list[tuple[int, subprocess.Popen]] = []
    failed = []
    while todo or running:
        while todo and len(running) < max(1, args.jobs):
            s = todo.pop(0)
            log = open(out / f"seed{s}.log", "w")  # noqa: SIM115 - closed when the process ends
            print(f"member seed {s}: training ({' '.join(_train_cmd(args, s, out / f'seed{s}'))})", file=sys.stderr)
            running.append((s, subprocess.Popen(_train_cmd(args, s, out / f"seed{s}"), stdout=log, stderr=log)))
        time.sleep(2)
        for s, p in list(running):
            if p.poll() is not None:
                running.remove((s, p))
                if p.returncode:
                    failed.append(s)
                print(f"member seed {s}: exit {p.returncode} after {time.time() - t0:.0f} s", file=sys.stderr)
    if failed:
        print(f"members {failed} failed; see {out}/seed<i>.log", file=sys.stderr)
        return 1

    if (out / f"seed{seeds[0]}" / "fold0").is_dir():
        return _kfold_ensemble(args, seeds, out, t0, argv)

    from genrekit.experiments import evaluate_model, read_metrics, trained_tracks, write_run
    from genrekit.models import load_model
    from genrekit.models.hybrid import HybridModel
    from genrekit.predict import GenreClassifier
    from genrekit.reports import write_json

    members = [load_model(out / f"seed{s}" / "model.safetensors") for s in seeds]
    seen: set[str] = set().union(*(trained_tracks(m.meta_) for m in members))
    ensemble = HybridModel(members).fit()
    clf = GenreClassifier(ensemble, path=str(out / "model.safetensors"))
    result = evaluate_model(clf, args.data, protocol=args.protocol, progress=False)
    metrics = result.metrics
    member_scores = [read_metrics(out / f"seed{s}").get("accuracy") for s in seeds]
    like_train = _fold_scores(args, seeds, out)[0]
    card = {
        "what": f"mean log-probability ensemble of {len(seeds)} {args.model} models (seeds {seeds})",
        "protocol": args.protocol, "level": "track", "refit": bool(args.refit), "epochs": args.epochs,
        "track_accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
        "n_tracks": metrics["n_tracks"], "sources": metrics.get("sources"), "member_track_accuracies": member_scores,
        "scored_like_train_run": like_train,
        "command": "python scripts/deep_ensemble.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seconds": round(time.time() - t0, 1),
    }
    ensemble.save(out / "model.safetensors", extra_meta={"name": out.name, "card": card, "train_tracks": sorted(seen)})
    result.model = f"{args.model} x{len(seeds)} ensemble"
    write_run(out, result)
    write_json(out / "ensemble.json", card)
    print(json.dumps({k: card[k] for k in ("track_accuracy", "macro_f1", "n_tracks", "member_track_accuracies")}))
    return 0


def _fold_scores(args, seeds: list[int], out: Path) -> list[dict]:
    """Per fold, scored as ``train_run`` scores a run (3 s slices with 50 % overlap from the same
    log-mel data the members trained on): each member and the members' mean slice log-probability."""
    import numpy as np

    from genrekit import spectrogram, splits
    from genrekit.experiments import load_logmels, make_slices, trained_tracks
    from genrekit.metrics import aggregate_tracks
    from genrekit.models import load_model

    data = load_logmels(args.data, progress=False)
    table = None
    if args.feature_weight is not None:
        from genrekit import datasets

        table = datasets.load_feature_table(Path(args.data) / "features_30_sec.csv")
    kw = {"valid_size": 0.15}
    if args.folds:
        kw["k"] = args.folds
    folds = splits.protocol_folds(args.protocol, data.track_ids, data.labels, seed=args.split_seed, **kw)
    pos = {t: i for i, t in enumerate(data.track_ids)}
    width = spectrogram.slice_frames(seconds=3.0)
    rows = []
    for fold in folds:
        sub = f"fold{fold.index}" if len(folds) > 1 else ""
        members = [load_model(out / f"seed{s}" / sub / "model.safetensors") for s in seeds]
        test = set(map(str, fold.test))
        for s, m in zip(seeds, members, strict=True):
            seen = trained_tracks(m.meta_)
            if seen & test:
                raise SystemExit(f"seed {s} fold {fold.index} trained on {len(seen & test)} of this fold's test "
                                 "tracks: the members' folds differ (use one --split-seed)")
        X, y, g = make_slices(data, [pos[t] for t in fold.test], width=width, overlap=0.5)
        logs = [np.log(np.clip(m.predict_proba(X), 1e-12, 1.0)) for m in members]
        classes = np.asarray(members[0].classes_)
        lab = dict(zip(g, y, strict=True))
        accs = []
        for lp in [*logs, np.mean(logs, axis=0)]:
            p = np.exp(lp - lp.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            tids, tp = aggregate_tracks(g, p, method="mean_log")
            accs.append((float(np.mean(classes[tp.argmax(1)] == np.array([lab[t] for t in tids]))),
                         float(np.mean(classes[p.argmax(1)] == y))))
        row = {"fold": fold.index, "n_test_tracks": len(fold.test), "members_track": [a[0] for a in accs[:-1]],
               "track_accuracy": accs[-1][0], "slice_accuracy": accs[-1][1]}
        if args.feature_weight is not None:
            row.update(_with_features(args, table, fold, tids, tp, classes, lab))
        rows.append(row)
        extra = f", with features {row['features_track']:.3f} (features alone {row['features_alone_track']:.3f})" \
            if args.feature_weight is not None else ""
        print(f"fold {fold.index}: members {[round(a[0], 3) for a in accs[:-1]]} -> ensemble track "
              f"{accs[-1][0]:.3f}, slice {accs[-1][1]:.3f}{extra}", file=sys.stderr)
    return rows


def _with_features(args, table, fold, tids, track_proba, classes, lab) -> dict:
    """The fold's deep ensemble blended with a logistic regression on the Kaggle feature table, fitted on
    the same tracks the members trained on (train + valid when refitting), with the shipped model's fixed
    recipe (C 0.3, no HPSS columns, ``--feature-weight``): nothing here is chosen on the fold's test tracks."""
    import numpy as np

    from genrekit import datasets
    from genrekit.metrics import mean_log_proba
    from genrekit.models.classic import SklearnModel

    cols = [c for c in datasets.FEATURE_COLUMNS if not c.startswith(("harmony_", "perceptr_"))]
    ci = [table.columns.index(c) for c in cols]

    def rows(ids) -> list[int]:
        ids = [str(t) for t in ids]
        found = datasets.table_rows(table, ids)
        missing = [t for t in ids if t not in found]
        if missing:
            raise SystemExit(f"features_30_sec.csv lacks {len(missing)} of the fold's tracks, e.g. {missing[:3]}")
        return [found[t] for t in ids]

    fit = rows(sorted(set(map(str, fold.train)) | (set(map(str, fold.valid)) if args.refit else set())))
    tab = SklearnModel("logreg", tune=False, params={"C": 0.3}, random_state=0).fit(
        table.X[fit][:, ci], table.y[fit], feature_names=cols)
    fp = tab.predict_proba(table.X[rows(tids)][:, ci])
    if list(map(str, tab.classes_)) != list(map(str, classes)):
        raise SystemExit(f"feature model classes {list(tab.classes_)} differ from the deep members' {list(classes)}")
    w = args.feature_weight
    both = mean_log_proba([track_proba, fp], [1 - w, w])
    truth = np.array([lab[t] for t in tids])
    return {"features_track": float(np.mean(classes[both.argmax(1)] == truth)),
            "features_alone_track": float(np.mean(classes[fp.argmax(1)] == truth))}


def _kfold_ensemble(args, seeds: list[int], out: Path, t0: float, argv) -> int:
    """Per fold: the members' mean slice log-probability on the fold's test tracks, tracks by mean log."""
    import numpy as np

    from genrekit.reports import write_json

    rows = _fold_scores(args, seeds, out)
    acc = np.array([r["track_accuracy"] for r in rows])
    card = {
        "what": f"per-fold mean log-probability ensembles of {len(seeds)} {args.model} models (seeds {seeds})",
        "protocol": args.protocol, "level": "track", "refit": bool(args.refit), "epochs": args.epochs,
        "split_seed": args.split_seed, "track_accuracy": float(acc.mean()), "track_accuracy_std": float(acc.std()),
        "slice_accuracy": float(np.mean([r["slice_accuracy"] for r in rows])),
        "member_track_accuracies": [float(np.mean([r["members_track"][i] for r in rows])) for i in range(len(seeds))],
        "folds": rows,
        "command": "python scripts/deep_ensemble.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seconds": round(time.time() - t0, 1),
    }
    keys = ["track_accuracy", "track_accuracy_std", "slice_accuracy", "member_track_accuracies"]
    if args.feature_weight is not None:
        both = np.array([r["features_track"] for r in rows])
        card.update({"feature_weight": args.feature_weight, "with_features_track_accuracy": float(both.mean()),
                     "with_features_track_accuracy_std": float(both.std()),
                     "features_alone_track_accuracy": float(np.mean([r["features_alone_track"] for r in rows]))})
        keys += ["with_features_track_accuracy", "with_features_track_accuracy_std", "features_alone_track_accuracy"]
    write_json(out / ("ensemble.json" if args.feature_weight is None else "ensemble-features.json"), card)
    print(json.dumps({k: card[k] for k in keys}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
