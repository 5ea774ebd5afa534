"""Second ears (issue 23): musicnn + mn04 heads, zero-shot experts and blends, 10 x 5-fold CV on the 124 clips.

    python scripts/image_to_musicnn.py embed --kinds audio     # musicnn MSD means of the 124 clips (cached)
    python scripts/ears_study.py                                # mn04 (cached), CV table, smoke figures, JSON

Inputs, per track (means over the whole clip): musicnn ``MSD_musicnn`` penultimate (200) and taggram (50)
over every 3 s patch (``image_to_musicnn``'s audio table: the 124 shared clips); mn04 features (384) and
logits (527) per 10 s window (``genrekit.networks.mn04.model.embed_file``, up to 6 windows), cached here
under the genrekit cache, namespace ``ears-mn04``, per-window rows ``[features | logits]``.

Candidates (settings fixed before any run; nothing here reads a test track):
- heads: standardised logistic regression (C 0.1, lbfgs) on musicnn penultimate, on mn04 features, on
  both concatenated (also at C 0.03 and 1 to show how much C matters), and on the concatenation plus
  mn04's 48 genre logits;
- zero-shot experts, no training: each GTZAN genre's score = the same-named MSD tag (mean patch sigmoid)
  or AudioSet class (mean window sigmoid), :data:`ZERO_SHOT` (reggae, disco, classical from AudioSet:
  MSD has no such tag), and :data:`ZERO_SHOT_AS` (all ten from AudioSet); the ten scores divided by their
  sum are the expert's probabilities;
- blends: a head and a zero-shot expert by weighted mean log-probability (``genrekit.metrics.mean_log_proba``),
  head weight 0.75 / 0.5 / 0.25; and a head with both experts sharing the rest (head 0.5 / 0.33 / 0.25).

CV: 10 repeats of 5 folds on the 124 clips, stratified by genre, by track (a clip is a track). Two
protocols: ``stratified`` (StratifiedKFold; the maintainers' figures are on this one) and ``artist``
(StratifiedGroupKFold on ``splits.artist_groups``: no artist on both sides; clips without a group are
their own). Per repeat the out-of-fold top-1 / top-3 over all 124; the table gives mean +- std over the
10 repeats. The smoke set (../shared/data/realworld, 13 clips with a GTZAN genre) is scored for the few
best candidates, each fitted on all 124 clips, for the report only: nothing is chosen from it.

Threads: one (OMP/BLAS/onnxruntime), the machine is shared.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "gtzan"
MN04_NAMESPACE = "ears-mn04"
MUSICNN_NAMESPACE = "ears-musicnn"  # smoke clips only; the 124 GTZAN clips come from image_to_musicnn's table
MUSICNN_MODEL = "MSD_musicnn"
C_DEFAULT = 0.1
REPEATS, FOLDS = 10, 5
BLEND_WEIGHTS = (0.75, 0.5, 0.25)  # the head's weight; the zero-shot expert gets the rest

# GTZAN genre -> ("msd", tag) or ("as", AudioSet class): the same-named label (reggae, disco, classical: AudioSet)
ZERO_SHOT: dict[str, tuple[str, str]] = {
    "blues": ("msd", "blues"), "classical": ("as", "Classical music"), "country": ("msd", "country"),
    "disco": ("as", "Disco"), "hiphop": ("msd", "Hip-Hop"), "jazz": ("msd", "jazz"), "metal": ("msd", "metal"),
    "pop": ("msd", "pop"), "reggae": ("as", "Reggae"), "rock": ("msd", "rock"),
}
ZERO_SHOT_AS: dict[str, tuple[str, str]] = {
    "blues": ("as", "Blues"), "classical": ("as", "Classical music"), "country": ("as", "Country"),
    "disco": ("as", "Disco"), "hiphop": ("as", "Hip hop music"), "jazz": ("as", "Jazz"),
    "metal": ("as", "Heavy metal"), "pop": ("as", "Pop music"), "reggae": ("as", "Reggae"), "rock": ("as", "Rock music"),
}


# ------------------------------------------------------------------------------------------ per-track inputs


def mn04_cache():
    from genrekit import store as engine
    from genrekit.networks.mn04 import model as M

    return engine.Cache(MN04_NAMESPACE, {"model": "mn04_as", "max_windows": M.DEFAULT_MAX_WINDOWS,
                                         "precision": "float32", "format": 1})


def mn04_windows(path: Path, cache) -> np.ndarray:
    """Per-window ``[features (384) | logits (527)]`` of a file, cached by content."""
    from genrekit.networks.mn04 import model as M

    key = cache.key(path)
    arr = cache.get_array(key)
    if arr is None:
        e = M.embed_file(path)
        arr = np.concatenate([e.features, e.logits], axis=1).astype(np.float32)
        cache.put_array(key, arr)
    return arr


def musicnn_windows(path: Path, cache) -> np.ndarray:
    """Per-patch ``[taggram (50) | penultimate (200)]`` of a file (every patch, torch reference), cached."""
    key = cache.key(path)
    arr = cache.get_array(key)
    if arr is None:
        import torch

        from genrekit.networks import musicnn as E

        torch.set_num_threads(1)
        e = E.embed_file(path, model=MUSICNN_MODEL)
        arr = np.concatenate([e.taggram, e.penultimate], axis=1).astype(np.float32)
        cache.put_array(key, arr)
    return arr


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -np.asarray(z, dtype=np.float64)))


def mn04_track(arr: np.ndarray) -> dict[str, np.ndarray]:
    """Track summaries from per-window rows: mean features, mean logits, mean window sigmoid (527)."""
    feats, logits = arr[:, :384].astype(np.float64), arr[:, 384:].astype(np.float64)
    return {"features": feats.mean(0), "logits": logits.mean(0), "probs": sigmoid(logits).mean(0)}


def gtzan_inputs(data: Path) -> dict:
    """The 124 clips: ids, labels, musicnn penultimate / taggram means, mn04 summaries, artist groups."""
    import image_to_musicnn as I

    from genrekit import datasets, splits

    table = I.load_table("audio")
    ids = table["track_ids"].tolist()
    tracks = {t.track_id: t for t in datasets.GTZAN(data).audio_tracks()}
    missing = [t for t in ids if t not in tracks]
    if missing:
        raise SystemExit(f"audio table names clips not under {data}: {missing[:3]}")
    cache = mn04_cache()
    t0, mn = time.time(), []
    for i, t in enumerate(ids):
        mn.append(mn04_track(mn04_windows(tracks[t].path, cache)))
        if (i + 1) % 25 == 0:
            print(f"mn04: {i + 1}/{len(ids)} clips ({time.time() - t0:.0f} s)", file=sys.stderr)
    groups_known = splits.artist_groups()
    groups = np.array([groups_known.get(t, 10_000 + i) for i, t in enumerate(ids)])
    return {"ids": ids, "y": np.asarray(table["labels"]).astype(str), "penultimate": table["penultimate"].astype(np.float64),
            "taggram": table["taggram"].astype(np.float64), "mn04_features": np.stack([m["features"] for m in mn]),
            "mn04_logits": np.stack([m["logits"] for m in mn]), "mn04_probs": np.stack([m["probs"] for m in mn]),
            "groups": groups, "n_grouped": int(sum(t in groups_known for t in ids))}


def smoke_inputs(root: Path) -> dict:
    """The smoke set's clips with a GTZAN genre or a style: the same per-track inputs."""
    from genrekit import store as engine

    rows = list(csv.DictReader((root / "labels.csv").open(encoding="utf-8")))
    mcache = engine.Cache(MUSICNN_NAMESPACE, {"model": MUSICNN_MODEL, "patches": "all", "format": 1})
    ncache = mn04_cache()
    out = {"files": [], "y": [], "style": [], "outside": [], "penultimate": [], "taggram": [], "mn04_features": [],
           "mn04_logits": [], "mn04_probs": [], "mn04_windows": []}
    for r in rows:
        path = root / r["file"]
        mus = musicnn_windows(path, mcache)
        arr = mn04_windows(path, ncache)
        mn = mn04_track(arr)
        out["files"].append(r["file"])
        out["y"].append(r["gtzan_genre"])
        out["style"].append(r["style"])
        out["outside"].append(r["outside_gtzan"])
        out["taggram"].append(mus[:, :50].mean(0))
        out["penultimate"].append(mus[:, 50:].mean(0))
        out["mn04_features"].append(mn["features"])
        out["mn04_logits"].append(mn["logits"])
        out["mn04_probs"].append(mn["probs"])
        out["mn04_windows"].append(arr[:, 384:])
    for k in ("penultimate", "taggram", "mn04_features", "mn04_logits", "mn04_probs"):
        out[k] = np.stack(out[k]).astype(np.float64)
    out["y"] = np.asarray(out["y"])
    return out


# ------------------------------------------------------------------------------------------ candidates


def design(inputs: dict, name: str) -> np.ndarray:
    """The feature matrix of a head's input set."""
    from genrekit.networks.mn04.spec import GENRE_ROWS

    parts = {
        "musicnn": [inputs["penultimate"]],
        "mn04": [inputs["mn04_features"]],
        "concat": [inputs["penultimate"], inputs["mn04_features"]],
        "concat+genre-logits": [inputs["penultimate"], inputs["mn04_features"],
                                inputs["mn04_logits"][:, GENRE_ROWS.start:GENRE_ROWS.stop]],
    }[name]
    return np.concatenate(parts, axis=1)


def zero_shot(inputs: dict, mapping: dict[str, tuple[str, str]]) -> np.ndarray:
    """``(n, 10)`` expert probabilities in GENRES order: the mapped scores over their sum."""
    from genrekit import GENRES
    from genrekit.networks.mn04.spec import labels
    from genrekit.networks.musicnn.spec import tag_names

    msd, aset = list(tag_names(MUSICNN_MODEL)), list(labels())
    cols = []
    for g in GENRES:
        src, name = mapping[g]
        cols.append(inputs["taggram"][:, msd.index(name)] if src == "msd" else inputs["mn04_probs"][:, aset.index(name)])
    s = np.stack(cols, axis=1)
    return s / s.sum(axis=1, keepdims=True)


def head(C: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))


def fit_predict(X: np.ndarray, y: np.ndarray, tr: np.ndarray, te: np.ndarray, C: float, Xte: np.ndarray | None = None
                ) -> tuple[np.ndarray, object]:
    """Probabilities in GENRES order of a head fitted on rows ``tr``, on rows ``te`` (or on ``Xte``)."""
    from genrekit import GENRES

    m = head(C).fit(X[tr], y[tr])
    p = m.predict_proba(X[te] if Xte is None else Xte)
    cls = [str(c) for c in m.classes_]
    out = np.full((p.shape[0], len(GENRES)), 1e-12)
    for j, c in enumerate(cls):
        out[:, GENRES.index(c)] = p[:, j]
    return out / out.sum(1, keepdims=True), m


def blend(p_head: np.ndarray, p_zero: np.ndarray, w: float) -> np.ndarray:
    from genrekit.metrics import mean_log_proba

    return mean_log_proba([p_head, p_zero], weights=[w, 1 - w])


HEADS: tuple[tuple[str, str, float], ...] = (  # (label, input set, C)
    ("musicnn", "musicnn", C_DEFAULT), ("mn04", "mn04", C_DEFAULT), ("concat", "concat", C_DEFAULT),
    ("concat C0.03", "concat", 0.03), ("concat C1", "concat", 1.0),
    ("concat+genre-logits", "concat+genre-logits", C_DEFAULT),
)
BLENDED = ("musicnn", "concat")  # heads blended with each zero-shot expert
BOTH_WEIGHTS = (0.5, 0.33, 0.25)  # the head's weight when blended with both experts (they share the rest)


def both_name(head_name: str, w: float) -> str:
    return f"{head_name} {w:g} + both zero-shots {(1 - w) / 2:.3g} each"


def candidate_probs(inputs: dict, tr: np.ndarray, te: np.ndarray, Z: dict[str, np.ndarray],
                    test_inputs: dict | None = None) -> dict[str, np.ndarray]:
    """Every candidate's probabilities on ``te`` (or on ``test_inputs``' rows), fitted on ``tr``."""
    y = inputs["y"]
    out: dict[str, np.ndarray] = {}
    for label, feats, C in HEADS:
        X = design(inputs, feats)
        Xte = None if test_inputs is None else design(test_inputs, feats)
        out[label], _ = fit_predict(X, y, tr, te, C, Xte)
    for zname, z in Z.items():
        out[zname] = z
        for h in BLENDED:
            for w in BLEND_WEIGHTS:
                out[f"{h} {w} + {zname} {1 - w:.2f}"] = blend(out[h], z, w)
    if len(Z) == 2:  # a head with both experts, a quarter each
        from genrekit.metrics import mean_log_proba

        z1, z2 = Z.values()
        for h in BLENDED:
            for w in BOTH_WEIGHTS:
                out[both_name(h, w)] = mean_log_proba([out[h], z1, z2], weights=[w, (1 - w) / 2, (1 - w) / 2])
    return out


def topk_hits(p: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    from genrekit import GENRES

    order = np.argsort(-p, axis=1, kind="stable")[:, :k]
    idx = np.array([GENRES.index(g) for g in y])
    return (order == idx[:, None]).any(axis=1)


def run_cv(inputs: dict, protocol: str, repeats: int, folds: int) -> dict[str, dict[str, list[float]]]:
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = inputs["y"]
    zs = {"zero-shot": zero_shot(inputs, ZERO_SHOT), "zero-shot-AS": zero_shot(inputs, ZERO_SHOT_AS)}
    res: dict[str, dict[str, list[float]]] = {}
    for r in range(repeats):
        if protocol == "stratified":
            splits = StratifiedKFold(folds, shuffle=True, random_state=r).split(y, y)
        else:
            splits = StratifiedGroupKFold(folds, shuffle=True, random_state=r).split(y, y, inputs["groups"])
        oof: dict[str, np.ndarray] = {}
        for tr, te in splits:
            probs = candidate_probs(inputs, tr, te, {k: v[te] for k, v in zs.items()})
            for k, p in probs.items():
                oof.setdefault(k, np.zeros((len(y), p.shape[1])))[te] = p
        for k, p in oof.items():
            d = res.setdefault(k, {"top1": [], "top3": [], "nll": []})
            d["top1"].append(float(topk_hits(p, y, 1).mean()))
            d["top3"].append(float(topk_hits(p, y, 3).mean()))
            from genrekit import GENRES

            d["nll"].append(float(-np.mean(np.log(np.clip(p[np.arange(len(y)), [GENRES.index(g) for g in y]], 1e-12, 1)))))
        print(f"{protocol}: repeat {r + 1}/{repeats} done", file=sys.stderr)
    return res


def valid_side(g: dict) -> dict[str, dict[str, float]]:
    """Every candidate fitted on the clips of the fault-filtered TRAIN side, scored on those of VALID
    (artist-disjoint by construction; small: about 49 and 57 clips). Test clips are not read."""
    from genrekit import splits

    ff = splits.fault_filtered()
    tr = np.array([i for i, t in enumerate(g["ids"]) if t in set(ff["train"])])
    va = np.array([i for i, t in enumerate(g["ids"]) if t in set(ff["valid"])])
    zs = {"zero-shot": zero_shot(g, ZERO_SHOT)[va], "zero-shot-AS": zero_shot(g, ZERO_SHOT_AS)[va]}
    y = g["y"][va]
    return {k: {"top1": float(topk_hits(p, y, 1).mean()), "top3": float(topk_hits(p, y, 3).mean()),
                "n_train": int(tr.size), "n_valid": int(va.size)}
            for k, p in candidate_probs(g, tr, va, zs).items()}


def summary(res: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    return {k: {f"{m}_{s}": float(getattr(np, s)(v[m])) for m in ("top1", "top3", "nll") for s in ("mean", "std")}
            for k, v in res.items()}


# ------------------------------------------------------------------------------------------ smoke and styles


def smoke_figures(g: dict, s: dict, names: list[str]) -> dict[str, dict]:
    """Candidates fitted on all 124 clips, scored on the smoke clips with a GTZAN genre (report only)."""
    lab = s["y"] != ""
    zs = {"zero-shot": zero_shot(s, ZERO_SHOT), "zero-shot-AS": zero_shot(s, ZERO_SHOT_AS)}
    probs = candidate_probs(g, np.arange(len(g["y"])), np.arange(len(s["y"])), zs, test_inputs=s)
    out = {}
    for n in names:
        p = probs[n]
        out[n] = {"top1": int(topk_hits(p[lab], s["y"][lab], 1).sum()), "top3": int(topk_hits(p[lab], s["y"][lab], 3).sum()),
                  "n": int(lab.sum()), "probs": p}
    return out


def uncertain_rates(g: dict, s: dict, name: str, smoke_p: np.ndarray, temperature: float = 1.0) -> dict:
    """How often :func:`styles.uncertain` fires: on the 124 GTZAN clips (out-of-fold, one stratified 5-fold
    pass; all are within the ten, so every flag is a false alarm) and on the smoke clips outside the ten."""
    from sklearn.model_selection import StratifiedKFold

    from genrekit import GENRES
    from genrekit.networks.mn04 import styles as S
    from genrekit.networks.mn04.spec import GENRE_ROWS

    y = g["y"]
    zs = {"zero-shot": zero_shot(g, ZERO_SHOT), "zero-shot-AS": zero_shot(g, ZERO_SHOT_AS)}
    oof = np.zeros((len(y), len(GENRES)))
    for tr, te in StratifiedKFold(FOLDS, shuffle=True, random_state=0).split(y, y):
        oof[te] = candidate_probs(g, tr, te, {k: v[te] for k, v in zs.items()})[name]
    from genrekit.predict import calibrate

    oof, smoke_p = calibrate(oof, temperature), calibrate(smoke_p, temperature)

    def flags(P: np.ndarray, probs527: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        low, outvoted = [], []
        for p, a in zip(P, probs527, strict=True):
            genre, score = GENRES[int(p.argmax())], float(p.max())
            sty = dict(zip(S.genre_labels(), S.calibrate(a[GENRE_ROWS.start:GENRE_ROWS.stop]).tolist(), strict=True))
            low.append(score < S.MIN_CONFIDENCE)
            outvoted.append(S.uncertain(genre, 1.0, sty))
        return np.array(low), np.array(outvoted)

    gl, go = flags(oof, g["mn04_probs"])
    outside = np.array([o == "yes" for o in s["outside"]])
    sl, so = flags(smoke_p[outside], s["mn04_probs"][outside])
    return {"gtzan_n": len(y), "gtzan_low_score": int(gl.sum()), "gtzan_outvoted": int(go.sum()),
            "gtzan_either": int((gl | go).sum()), "outside_n": int(outside.sum()), "outside_low_score": int(sl.sum()),
            "outside_outvoted": int(so.sum()), "outside_either": int((sl | so).sum())}


def styles_calibration(g: dict, repeats: int = 5) -> dict:
    """The Platt map of ``networks.mn04.styles.calibrate``, fitted on (clip, class) pairs of the ten
    families' classes (positive: the class is in the clip's genre's family), raw mean-window sigmoid in;
    held-out NLL / ECE (10 bins) raw vs mapped over ``repeats`` x 5 folds by clip, and the fit on all."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    from genrekit.networks.mn04 import styles as S
    from genrekit.networks.mn04.spec import GENRE_ROWS

    names = list(S.genre_labels())
    P = g["mn04_probs"][:, GENRE_ROWS.start:GENRE_ROWS.stop]
    cls = [names.index(c) for fam in S.FAMILY.values() for c in fam]

    def pairs(rows) -> tuple[np.ndarray, np.ndarray]:
        x = np.clip(P[np.ix_(rows, cls)].ravel(), 1e-9, 1 - 1e-9)
        y = np.array([names[c] in S.FAMILY[g["y"][i]] for i in rows for c in cls])
        return np.log(x / (1 - x))[:, None], y

    def nll(p, y) -> float:
        p = np.clip(p, 1e-9, 1 - 1e-9)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    def ece(p, y, bins: int = 10) -> float:
        b = np.minimum((p * bins).astype(int), bins - 1)
        return float(sum((b == i).mean() * abs(p[b == i].mean() - y[b == i].mean()) for i in range(bins) if (b == i).any()))

    raw, cal = [], []
    for r in range(repeats):
        for tr, te in StratifiedKFold(FOLDS, shuffle=True, random_state=r).split(g["y"], g["y"]):
            (X, Y), (Xt, Yt) = pairs(tr), pairs(te)
            m = LogisticRegression(C=1e6).fit(X, Y)
            pr, pc = sigmoid(Xt[:, 0]), m.predict_proba(Xt)[:, 1]
            raw.append((nll(pr, Yt), ece(pr, Yt)))
            cal.append((nll(pc, Yt), ece(pc, Yt)))
    X, Y = pairs(np.arange(len(g["y"])))
    m = LogisticRegression(C=1e6).fit(X, Y)
    return {"A": float(m.coef_[0, 0]), "B": float(m.intercept_[0]), "heldout_raw_nll_ece": np.mean(raw, 0).tolist(),
            "heldout_calibrated_nll_ece": np.mean(cal, 0).tolist(), "pairs": int(len(Y)), "positives": int(Y.sum())}


def fmt(d: dict[str, float], m: str) -> str:
    return f"{d[f'{m}_mean']:.3f} +- {d[f'{m}_std']:.3f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--realworld", type=Path, default=None, help="default: <data>/../realworld")
    ap.add_argument("--repeats", type=int, default=REPEATS)
    ap.add_argument("--temperature", type=float, default=1.0,
                    help="T applied to the first --smoke candidate (the recipe: build_ears_default.py prints it)'s scores for the uncertain rates")
    ap.add_argument("--no-cv", action="store_true", help="only the smoke figures (CV table taken from --out)")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "ears" / "study.json")
    ap.add_argument("--smoke", default="concat 0.25 + both zero-shots 0.375 each,concat 0.5 + both zero-shots 0.25 each,"
                    "zero-shot-AS,zero-shot,concat,musicnn",
                    help="comma-separated candidates scored on the smoke set (report only)")
    args = ap.parse_args(argv)
    t0 = time.time()
    g = gtzan_inputs(args.data)
    print(f"124-clip inputs ready ({time.time() - t0:.0f} s); {g['n_grouped']} clips with an artist group", file=sys.stderr)
    if args.no_cv:
        results = json.loads(args.out.read_text())["cv"]
    else:
        results = {p: summary(run_cv(g, p, args.repeats, FOLDS)) for p in ("stratified", "artist")}
    lines = [f"# ears study: {args.repeats} x {FOLDS}-fold CV on the {len(g['y'])} shared GTZAN clips (top-1 / top-3 / NLL, "
             f"mean +- std over repeats)", "",
             "| candidate | stratified top-1 | top-3 | NLL | artist-grouped top-1 | top-3 | NLL |", "|---|---|---|---|---|---|---|"]
    for k in results["stratified"]:
        a, b = results["stratified"][k], results["artist"][k]
        lines.append(f"| {k} | {fmt(a, 'top1')} | {fmt(a, 'top3')} | {fmt(a, 'nll')} | {fmt(b, 'top1')} | "
                     f"{fmt(b, 'top3')} | {fmt(b, 'nll')} |")
    report: dict = {"cv": results, "settings": {"repeats": args.repeats, "folds": FOLDS, "C": C_DEFAULT,
                                                "zero_shot": ZERO_SHOT, "zero_shot_as": ZERO_SHOT_AS,
                                                "n_clips": len(g["y"]), "n_grouped": g["n_grouped"]}}
    vs = valid_side(g)
    first = next(iter(vs.values()))
    lines += ["", f"fault-filtered valid side: heads fitted on the {first['n_train']} train-side clips, scored on the "
              f"{first['n_valid']} valid-side clips (top-1 / top-3):", ""]
    lines += [f"- {k}: {v['top1']:.3f} / {v['top3']:.3f}" for k, v in vs.items()]
    report["valid_side"] = vs
    sc = styles_calibration(g)
    lines += ["", f"styles calibration (Platt on logit of the mean window sigmoid, {sc['pairs']} (clip, family class) pairs, "
              f"{sc['positives']} positive): A {sc['A']:.4f}, B {sc['B']:.4f}; held-out NLL / ECE raw "
              f"{sc['heldout_raw_nll_ece'][0]:.3f} / {sc['heldout_raw_nll_ece'][1]:.3f}, mapped "
              f"{sc['heldout_calibrated_nll_ece'][0]:.3f} / {sc['heldout_calibrated_nll_ece'][1]:.3f}"]
    report["styles_calibration"] = sc
    root = args.realworld or args.data.parent / "realworld"
    if (root / "labels.csv").is_file():
        s = smoke_inputs(root)
        names = [n.strip() for n in args.smoke.split(",") if n.strip()]
        sm = smoke_figures(g, s, names)
        lines += ["", f"smoke set (fitted on all 124 clips; {sm[names[0]]['n']} clips with a GTZAN genre; report only):"]
        for n in names:
            lines.append(f"- {n}: top-1 {sm[n]['top1']}/{sm[n]['n']}, top-3 {sm[n]['top3']}/{sm[n]['n']}")
        rates = uncertain_rates(g, s, names[0], sm[names[0]]["probs"], args.temperature)
        from genrekit.networks.mn04 import styles as S

        lines += ["", f"uncertain rule (styles.uncertain; min_confidence {S.MIN_CONFIDENCE}, min_beyond {S.MIN_BEYOND}, "
                  f"calibrated styles) with {names[0]}, scores at T {args.temperature:g}: "
                  f"GTZAN clips (all within the ten) flagged: low score {rates['gtzan_low_score']}, outvoted by a style "
                  f"beyond the ten {rates['gtzan_outvoted']}, either {rates['gtzan_either']} of {rates['gtzan_n']}; "
                  f"smoke clips outside the ten flagged: low {rates['outside_low_score']}, outvoted "
                  f"{rates['outside_outvoted']}, either {rates['outside_either']} of {rates['outside_n']}"]
        report["smoke"] = {n: {k: v for k, v in d.items() if k != "probs"} for n, d in sm.items()}
        report["uncertain"] = rates
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    args.out.with_suffix(".md").write_text(text + "\n")
    print(f"wrote {args.out} in {time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
