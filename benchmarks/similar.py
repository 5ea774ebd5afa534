"""Measure `genrekit similar` (prints; asserts nothing).

    python benchmarks/similar.py [--data ../shared/data/gtzan/audio] [--n 1000]

- quality: the index of the shared GTZAN clips (musicnn MSD embeddings, cosine); for each clip its 10
  nearest other clips; precision@10 = the share of them with the clip's genre, per genre, against chance
  ((clips of the genre - 1) / (clips - 1));
- speed: building the index from ``--n`` embeddings (the real ones plus perturbed copies up to n), exact
  and usearch HNSW, and one query, median of 5; an incremental update with nothing changed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "gtzan" / "audio"))
    p.add_argument("--n", type=int, default=1000, help="embeddings for the build timing (default 1000)")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--jobs", type=int, default=1)
    args = p.parse_args()

    from genrekit.library import musicnn, similar

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        ix = Path(tmp) / "index"
        t = time.perf_counter()
        idx, rep = similar.update_index(args.data, index_dir=ix, jobs=args.jobs, cache=musicnn.summary_cache(),
                                        progress=False)
        print(f"index of {args.data}: {rep.total} tracks, {len(rep.failed)} failed, "
              f"{time.perf_counter() - t:.1f} s (musicnn embeddings cached by content after the first run)")
        t = time.perf_counter()
        _, rep2 = similar.update_index(args.data, index_dir=ix, cache=musicnn.summary_cache(), progress=False)
        print(f"incremental update with nothing changed: {time.perf_counter() - t:.3f} s ({rep2.kept} kept)")

    genres = [Path(f).parent.name for f in idx.paths]
    n = len(genres)
    per: dict[str, list[float]] = {}
    for i, g in enumerate(genres):
        found = idx.search(idx.vectors[i], k=args.k, exclude=[i])
        per.setdefault(g, []).append(sum(genres[idx.paths.index(x.file)] == g for x in found) / args.k)
    print(f"\nprecision@{args.k} per genre ({n} clips):")
    print(f"{'genre':<10} {'clips':>5} {'P@10':>6} {'chance':>7} {'x chance':>8}")
    all_p, all_c = [], []
    for g in sorted(per):
        cnt = genres.count(g)
        chance = (cnt - 1) / (n - 1)
        pk = float(np.mean(per[g]))
        all_p += per[g]
        all_c += [chance] * cnt
        print(f"{g:<10} {cnt:5d} {pk:6.3f} {chance:7.3f} {pk / chance:8.1f}")
    print(f"{'all':<10} {n:5d} {np.mean(all_p):6.3f} {np.mean(all_c):7.3f} {np.mean(all_p) / np.mean(all_c):8.1f}")

    rng = np.random.default_rng(0)
    real = idx.vectors
    extra = real[rng.integers(0, len(real), max(0, args.n - len(real)))]
    vec = np.concatenate([real, extra + 0.05 * rng.standard_normal(extra.shape).astype(np.float32)])[: args.n]
    paths = [f"/lib/{i}" for i in range(len(vec))]
    print(f"\nbuilding an index of {len(vec)} embeddings ({vec.shape[1]}-d), median of 5:")
    for backend in ("exact", "usearch"):
        try:
            build = timed(lambda b=backend: similar.SimilarityIndex(paths, vec, backend=b).build())
        except similar.GenrekitError as exc:
            print(f"  {backend}: {exc}")
            continue
        built = similar.SimilarityIndex(paths, vec, backend=backend).build()
        query = timed(lambda b=built: b.search(vec[3], k=10, exclude=[3]), repeat=50)
        print(f"  {backend:<8} build {build * 1000:8.2f} ms   query {query * 1000:6.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
