"""The head study of scripts/image_to_musicnn.py (issue 17; docs/transfer.md): heads on the cached musicnn
embedding tables, the image-vs-audio proof, and the fault-filtered VALID-side comparison with today's recipe.

    python scripts/image_to_musicnn.py prove | todays | heads    # the subcommands live here

Kept apart from the table building (``image_to_musicnn``: data, embedding, measuring the mapping) so each
file holds one concern; both run through ``image_to_musicnn``'s command line.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run from anywhere: the sibling script is a module

from image_to_musicnn import KINDS, load_table  # noqa: E402

FEATURES = ("penultimate", "taggram", "pooled")


def features_of(table: dict, feature: str) -> dict[str, np.ndarray]:
    """track id -> one feature vector (``pen+tag``: penultimate and taggram side by side)."""
    if feature == "pen+tag":
        X = np.concatenate([table["penultimate"], table["taggram"]], axis=1)
    else:
        X = table[feature]
    return dict(zip(table["track_ids"].tolist(), X, strict=True))


def make_head(name: str, seed: int = 0):
    """The heads compared, with settings fixed in advance: standardised inputs, then the classifier."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    heads = {
        "logreg": lambda: LogisticRegression(C=0.1, max_iter=5000),
        "linsvm": lambda: SVC(kernel="linear", C=0.01, probability=True, random_state=seed),
        "rbfsvm": lambda: SVC(kernel="rbf", C=10.0, gamma="scale", probability=True, random_state=seed),
        "mlp": lambda: MLPClassifier((256,), alpha=1.0, max_iter=2000, early_stopping=False, random_state=seed),
    }
    return make_pipeline(StandardScaler(), heads[name]())


def fit_score(head: str, Xtr, ytr, Xte, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Probabilities on ``Xte`` (columns: the returned classes) of ``head`` fitted on ``Xtr``."""
    m = make_head(head, seed).fit(np.asarray(Xtr), np.asarray(ytr))
    return m.predict_proba(np.asarray(Xte)), [str(c) for c in m.classes_]


def accuracy(proba: np.ndarray, classes: list[str], y) -> float:
    return float(np.mean(np.asarray(classes)[proba.argmax(1)] == np.asarray(y)))


@dataclass(frozen=True)
class Statistics:
    """Per-feature mean and standard deviation of one domain (image- or audio-derived embeddings):
    calling it standardises with them, so each domain is centred and scaled on its own."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def of(cls, X: np.ndarray) -> Statistics:
        X = np.asarray(X, dtype=np.float64)
        return cls(X.mean(axis=0), X.std(axis=0) + 1e-6)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype=np.float64) - self.mean) / self.std


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _summary(v: np.ndarray) -> str:
    return (f"median {np.median(v):.3f}, mean {v.mean():.3f}, p10 {np.percentile(v, 10):.3f}, "
            f"p90 {np.percentile(v, 90):.3f}")


def cmd_prove(args) -> int:
    """Image- vs audio-derived embeddings on the clips that have both, and heads trained on images of
    OTHER tracks scored on those clips' audio."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    from genrekit import splits

    audio, image, aai = (load_table(k) for k in KINDS)
    a_ids = audio["track_ids"].tolist()
    i_ids = image["track_ids"].tolist()
    paired = sorted(set(a_ids) & set(i_ids))
    lines = [f"# prove: {len(paired)} clips with audio and image; {len(i_ids)} images", ""]

    # (a) cosine similarity, per clip
    lines.append("## (a) cosine, image-derived vs audio-derived (per clip, mean over patches); 'another clip': a "
                 "random other paired clip (fixed seed)")
    other = np.random.default_rng(0).permutation(len(paired))
    while (other == np.arange(len(paired))).any():  # a derangement: never the clip itself
        other = np.random.default_rng(int(other[0])).permutation(len(paired))
    for feat in FEATURES:
        au, im, dg = (features_of(t, feat) for t in (audio, image, aai))
        a = np.stack([au[t] for t in paired])
        i = np.stack([im[t] for t in paired])
        d = np.stack([dg[t] for t in paired])
        rows = {"image vs audio": _cos(i, a), "audio-as-image vs audio": _cos(d, a),
                "image vs audio-as-image": _cos(i, d),
                "audio vs another clip's audio": _cos(a, a[other])}
        # standardised (z-scored with the image table's statistics): what a head sees
        mu, sd = image[feat].mean(0), image[feat].std(0) + 1e-6
        rows["image vs audio, standardised"] = _cos((i - mu) / sd, (a - mu) / sd)
        rows["audio vs another clip, standardised"] = _cos((a - mu) / sd, (a[other] - mu) / sd)
        # domain-z: each side standardised with its own domain's statistics (images: all 999; audio: the 124)
        zi, za = Statistics.of(image[feat])(i), Statistics.of(audio[feat])(a)
        rows["image vs audio, domain-z"] = _cos(zi, za)
        rows["audio vs another clip, domain-z"] = _cos(za, za[other])
        sim = (zi / np.linalg.norm(zi, axis=1, keepdims=True)) @ (za / np.linalg.norm(za, axis=1, keepdims=True)).T
        rank = (sim > np.diag(sim)[:, None]).sum(1)  # how many other clips' audio beat the clip's own
        for name, v in rows.items():
            lines.append(f"- {feat:11s} {name:38s} {_summary(v)}")
        lines.append(f"- {feat:11s} {'retrieval, domain-z':38s} the clip's own audio is the nearest of {len(a)} for "
                     f"{np.mean(rank == 0):.3f} of the images, in the top 5 for {np.mean(rank < 5):.3f} "
                     f"(median rank {np.median(rank) + 1:.0f})")
    lines.append("")

    # (b) heads trained on images of other tracks, scored on the paired clips' audio
    groups = splits.artist_groups()
    test_artists = {groups[t] for t in paired if t in groups}
    ff = splits.fault_filtered()
    label = dict(zip(i_ids, image["labels"].tolist(), strict=True)) | dict(zip(a_ids, audio["labels"].tolist(),
                                                                               strict=True))
    protocols = {
        "P1 images of the other tracks -> audio of the paired clips":
            ([t for t in i_ids if t not in set(a_ids)], paired),
        "P2 same, images of the paired clips' artists left out too":
            ([t for t in i_ids if t not in set(a_ids) and groups.get(t) not in test_artists], paired),
        "P3 fault-filtered: train-side images -> valid-side audio":
            ([t for t in ff["train"] if t in set(i_ids) and t not in set(a_ids)],
             [t for t in ff["valid"] if t in set(a_ids)]),
    }
    lines.append("## (b) track accuracy on AUDIO embeddings of heads trained on IMAGE embeddings of other tracks")
    lines.append("plain: one standardisation (the training images'); domain-z: images standardised with image "
                 "statistics, audio with audio statistics from audio clips outside the test side (P1, P2: the "
                 "other half of the paired clips, 2-fold; P3: the train side's audio clips)")
    feats = ("penultimate", "taggram", "pooled", "pen+tag")
    heads = ("logreg", "rbfsvm")
    rng = np.random.default_rng(0)
    for pname, (train_ids, test_ids) in protocols.items():
        lines.append(f"### {pname}: {len(train_ids)} train images, {len(test_ids)} test clips")
        if pname.startswith("P3"):
            stat_sets = [(test_ids, [t for t in a_ids if t in set(ff["train"])])]
        else:
            perm = rng.permutation(len(test_ids))
            halves = [[test_ids[j] for j in perm[::2]], [test_ids[j] for j in perm[1::2]]]
            stat_sets = [(halves[0], halves[1]), (halves[1], halves[0])]
        for feat in feats:
            im, au, dg = (features_of(t, feat) for t in (image, audio, aai))
            Xtr, ytr = np.stack([im[t] for t in train_ids]), [label[t] for t in train_ids]
            yte = [label[t] for t in test_ids]
            cells = []
            for head in heads:
                m = make_head(head).fit(Xtr, np.asarray(ytr))
                cl = [str(c) for c in m.classes_]
                pa = m.predict_proba(np.stack([au[t] for t in test_ids]))
                pd_ = m.predict_proba(np.stack([dg[t] for t in test_ids]))
                pi = m.predict_proba(np.stack([im[t] for t in test_ids if t in im]))
                yi = [label[t] for t in test_ids if t in im]
                zi = Statistics.of(Xtr)
                mz = make_head(head).fit(zi(Xtr), np.asarray(ytr))
                hits = []
                for scored, stat_ids in stat_sets:
                    za = Statistics.of(np.stack([au[t] for t in stat_ids]))
                    pz = mz.predict_proba(za(np.stack([au[t] for t in scored])))
                    hits += list(np.asarray([str(c) for c in mz.classes_])[pz.argmax(1)] == np.array(
                        [label[t] for t in scored]))
                cells.append(f"{head}: audio {accuracy(pa, cl, yte):.3f}, audio domain-z {np.mean(hits):.3f}, "
                             f"audio-as-image {accuracy(pd_, cl, yte):.3f}, their images {accuracy(pi, cl, yi):.3f}")
            lines.append(f"- {feat:11s} " + "; ".join(cells))
    # audio-only heads: the 124 clips, cross-validated by track and by artist
    lines.append("### heads trained on the other clips' AUDIO (124 clips, 5-fold by track / by artist), alone and "
                 "with every image outside the fold's tracks (by artist: and artists), plain / domain-z")
    y = np.array([label[t] for t in a_ids])
    g = np.array([str(groups.get(t, t)) for t in a_ids])
    for feat in feats:
        au, im = features_of(audio, feat), features_of(image, feat)
        X = np.stack([au[t] for t in a_ids])
        cells = []
        for head in heads:
            for cvname, cv in (("track", StratifiedKFold(5, shuffle=True, random_state=0).split(X, y)),
                               ("artist", StratifiedGroupKFold(5, shuffle=True, random_state=0).split(X, y, g))):
                hit, hit_mix, hit_z = [], [], []
                for tr, te in cv:
                    p, cl = fit_score(head, X[tr], y[tr], X[te])
                    hit += list(np.asarray(cl)[p.argmax(1)] == y[te])
                    fold_tracks, fold_artists = {a_ids[k] for k in te}, {g[k] for k in te}
                    extra = [t for t in i_ids if t not in fold_tracks
                             and (cvname == "track" or str(groups.get(t, t)) not in fold_artists)]
                    Xi = np.stack([im[t] for t in extra])
                    ym = np.concatenate([y[tr], [label[t] for t in extra]])
                    p, cl = fit_score(head, np.concatenate([X[tr], Xi]), ym, X[te])
                    hit_mix += list(np.asarray(cl)[p.argmax(1)] == y[te])
                    za, zi = Statistics.of(X[tr]), Statistics.of(Xi)
                    p, cl = fit_score(head, np.concatenate([za(X[tr]), zi(Xi)]), ym, za(X[te]))
                    hit_z += list(np.asarray(cl)[p.argmax(1)] == y[te])
                cells.append(f"{head} by {cvname}: audio {np.mean(hit):.3f}, +images {np.mean(hit_mix):.3f}, "
                             f"+images domain-z {np.mean(hit_z):.3f}")
        lines.append(f"- {feat:11s} " + "; ".join(cells))
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


def track_embeddings(feature: str, per_block: int | None = None
                     ) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, str]]:
    """track id -> embedding from audio where the track has audio, else from its image; labels; source.
    ``per_block``: means over that many spread patches per 30 s block (the tables of ``embed --per-block``)."""
    audio, image = load_table("audio", per_block), load_table("image", per_block)
    emb = features_of(image, feature) | features_of(audio, feature)
    label = dict(zip(image["track_ids"].tolist(), image["labels"].tolist(), strict=True)) | dict(
        zip(audio["track_ids"].tolist(), audio["labels"].tolist(), strict=True))
    src = {t: "image" for t in image["track_ids"].tolist()} | {t: "audio" for t in audio["track_ids"].tolist()}
    return emb, label, src


def todays_recipe_on_valid(data: Path, workdir: Path, train: list[str], valid: list[str], *,
                           progress: bool = True) -> dict[str, np.ndarray]:
    """Today's shipped recipe refitted on the fault-filtered TRAIN side only, its probabilities on VALID:
    the shipped file learnt from train + valid, so its own valid scores are in-sample. Members as
    ``scripts/build_pretrained.py --refit`` makes them (shortchunk CNN, 30 epochs, crop + SpecAugment +
    mixup, no EMA, no early stopping; logistic regression C 0.3 on the Kaggle features without HPSS),
    blended 0.75 / 0.25 by mean log-probability. Cached in ``workdir`` (the CNN takes minutes)."""
    from genrekit import GENRES, datasets
    from genrekit.experiments import DeepFactory, FoldSpec, run
    from genrekit.metrics import mean_log_proba
    from genrekit.models.classic import SklearnModel

    cached = workdir / "todays_recipe_valid.npz"
    if cached.is_file():
        with np.load(cached, allow_pickle=False) as z:
            if z["valid"].tolist() == list(valid):
                return {k: z[k] for k in ("deep", "features", "hybrid")}
    t0 = time.time()
    fold = FoldSpec(0, tuple(train), (), tuple(valid))
    res = run("fault-filtered", DeepFactory("shortchunk", epochs=30, ema=None, threads=1), str(data), folds=[fold],
              out=workdir / "deep-train-only", importance=False, progress=progress, seed=0)
    f = res.folds[0]
    pos = {t: i for i, t in enumerate(np.asarray(f.track_ids).astype(str))}
    order = [list(f.classes).index(g) for g in GENRES]
    deep = np.stack([f.track_proba[pos[t]][order] for t in valid])
    print(f"today's CNN, train only: {time.time() - t0:.0f} s", file=sys.stderr)
    table = datasets.load_feature_table(data / "features_30_sec.csv")
    cols = [c for c in datasets.FEATURE_COLUMNS if not c.startswith(("harmony_", "perceptr_"))]
    ci = [table.columns.index(c) for c in cols]
    row = {t: i for i, t in enumerate(table.track_ids)}
    tr = [row[t] for t in train]
    tab = SklearnModel("logreg", tune=False, params={"C": 0.3}, random_state=0).fit(
        table.X[tr][:, ci], table.y[tr], feature_names=cols)
    pf = tab.predict_proba(table.X[[row[t] for t in valid]][:, ci])
    feats = pf[:, [list(map(str, tab.classes_)).index(g) for g in GENRES]]
    hybrid = mean_log_proba([deep, feats], weights=[0.75, 0.25])
    with open(cached, "wb") as fh:
        np.savez(fh, valid=np.asarray(valid), deep=deep, features=feats, hybrid=hybrid)
    return {"deep": deep, "features": feats, "hybrid": hybrid}


def shipped_on_valid(data: Path, valid: list[str]) -> np.ndarray:
    """The shipped model's probabilities on VALID tracks, read as ``genrekit evaluate`` reads them (audio
    where it exists, else image + feature row). In-sample: it trained on these tracks."""
    from genrekit import GENRES
    from genrekit.experiments import score_tracks, track_sources
    from genrekit.predict import GenreClassifier

    clf = GenreClassifier.load()
    found = track_sources(data, clf.input["type"])
    scored, errors, _ = score_tracks(clf, found, valid, progress=False)
    if errors:
        raise SystemExit(f"shipped model could not score {len(errors)} valid tracks: {errors[:3]}")
    order = [clf.genres.index(g) for g in GENRES]
    return np.stack([scored[t][order] for t in valid])


def cmd_todays(args) -> int:
    """Refit today's recipe on TRAIN and cache its VALID probabilities (the slow part of ``heads``)."""
    from genrekit import splits

    ff = splits.fault_filtered()
    emb, _, _ = track_embeddings("penultimate")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    p = todays_recipe_on_valid(Path(args.data), workdir, [t for t in ff["train"] if t in emb],
                               [t for t in ff["valid"] if t in emb])
    print({k: v.shape for k, v in p.items()})
    return 0


def cmd_heads(args) -> int:
    """Heads on musicnn embeddings, fitted on the fault-filtered TRAIN side, scored on VALID only."""
    from genrekit import GENRES, splits
    from genrekit.metrics import mean_log_proba

    data = Path(args.data)
    ff = splits.fault_filtered()
    emb, label, src = track_embeddings("penultimate")
    train = [t for t in ff["train"] if t in emb]
    valid = [t for t in ff["valid"] if t in emb]
    yv = np.array([label[t] for t in valid])
    audio_v = np.array([src[t] == "audio" for t in valid])
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    todays = todays_recipe_on_valid(data, workdir, train, valid)
    others = {"today's recipe, train only": todays["hybrid"]}
    if not args.no_shipped:
        others["shipped file (in-sample on valid!)"] = shipped_on_valid(data, valid)

    def acc(p: np.ndarray, mask=None) -> float:
        m = np.ones(len(valid), bool) if mask is None else mask
        return float(np.mean(np.asarray(GENRES)[p[m].argmax(1)] == yv[m]))

    lines = [f"# heads: fault-filtered, fitted on {len(train)} TRAIN tracks, scored on {len(valid)} VALID tracks "
             f"({int(audio_v.sum())} from audio, {int((~audio_v).sum())} from images); track accuracy", ""]
    members = {"today's CNN member alone, train only": todays["deep"],
               "today's feature member alone, train only": todays["features"]}
    for name, p in {**others, **members}.items():
        lines.append(f"- {name}: {acc(p):.3f} (audio {acc(p, audio_v):.3f}, images {acc(p, ~audio_v):.3f})")
    weights = (0.25, 0.5, 0.75)
    ref = list(others)
    lines += ["", "| features | head | alone | audio / images | " + " | ".join(
        f"w={w} with {r.split(',')[0].split(' (')[0]}" for r in ref for w in weights) + " |",
        "|---" * (4 + len(ref) * len(weights)) + "|"]
    for feat in args.features.split(","):
        emb, _, _ = track_embeddings(feat)
        Xtr, ytr = np.stack([emb[t] for t in train]), [label[t] for t in train]
        Xv = np.stack([emb[t] for t in valid])
        # domain-z: each domain standardised with its own TRAIN-side statistics
        audio_tr = np.array([src[t] == "audio" for t in train])
        za, zi = Statistics.of(Xtr[audio_tr]), Statistics.of(Xtr[~audio_tr])
        Ztr = np.where(audio_tr[:, None], za(Xtr), zi(Xtr))
        Zv = np.where(audio_v[:, None], za(Xv), zi(Xv))
        for mode, (A, B) in (("plain", (Xtr, Xv)), ("domain-z", (Ztr, Zv))):
            for head in args.heads.split(","):
                t0 = time.time()
                p, cl = fit_score(head, A, ytr, B)
                p = p[:, [cl.index(g) for g in GENRES]]
                cells = [f"{acc(p):.3f}", f"{acc(p, audio_v):.3f} / {acc(p, ~audio_v):.3f}"]
                for r in ref:
                    for w in weights:
                        cells.append(f"{acc(mean_log_proba([p, others[r]], weights=[w, 1 - w])):.3f}")
                lines.append(f"| {feat} | {head} {mode} | " + " | ".join(cells) + " |")
                print(f"{feat} {head} {mode}: {acc(p):.3f} ({time.time() - t0:.1f} s)", file=sys.stderr)
    lines += ["", "w = weight of the musicnn head in a mean-log-probability blend (1 - w: the other model). plain: "
              "embeddings as they are (audio where the track has audio, else image), one standardisation; "
              f"domain-z: audio-derived ones standardised with the {int(audio_tr.sum())} train-side audio clips' "
              f"statistics, image-derived ones with the {int((~audio_tr).sum())} train-side images'."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0
