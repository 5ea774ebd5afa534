"""`genrekit predict`: genres for songs and folders, one record per file, bad files reported not fatal."""

from __future__ import annotations

HELP = "classify audio files/folders with the shipped model (or --model)"
DESCRIPTION = (
    "Walks folders recursively and prints (or writes with --out) one record per file: the genre, every "
    "genre's score, and with --segments the per-window timeline. A file that cannot be read gets "
    "genre null and its error; the rest still complete. With --out, finished records are journalled so an "
    "interrupted run resumes where it stopped. Exit code 0 when all succeeded, 1 when some failed, 2 on "
    "usage errors."
)


def add_arguments(p) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders")
    p.add_argument("--model", "-m", default=None, help="a genrekit model file (default: the shipped model)")
    p.add_argument("--top-k", type=int, default=3, help="genres to show per file (default 3)")
    p.add_argument("--segments", action="store_true", help="include the per-window timeline")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--jobs", "-j", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--out", "-o", default=None, help="write to FILE instead of standard output")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch", help="inference backend")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="run locally or on Ray")
    p.add_argument("--address", default=None, help="Ray cluster address (with --engine ray)")
    p.add_argument("--part-size", type=int, default=1000, metavar="N",
                   help="with --out DIR/ (Parquet parts + _manifest.json, resumable): files per part (default 1000)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--max-duration", type=float, default=None, metavar="MIN",
                   help="skip files whose decoded audio is longer than MIN minutes: their record gets an "
                        "error and decoding stops there (default: no limit, any length is streamed)")


# ------------------------------------------------------------------------------------ workers
_CLF = None


def _init_worker(model, backend, threads=1):
    global _CLF
    from genrekit.predict import GenreClassifier

    _CLF = GenreClassifier.load(model, backend=backend, threads=threads)


def _classify(path: str, top_k: int, segments: bool, max_duration: float | None = None) -> dict:
    """One file -> its record (module level so process pools can pickle it); ``max_duration`` in seconds."""
    from genrekit.predict import record_for

    return record_for(_CLF, path, top_k=top_k, segments=segments, max_duration=max_duration)


def classify_paths(files, *, model, backend, top_k, segments, jobs, progress=True, max_duration=None):
    """Yield records in input order (one model load per worker process)."""
    from tqdm import tqdm

    bar = tqdm(total=len(files), desc="predict", unit="file", disable=None if progress else True, leave=False)
    try:
        if jobs <= 1 or len(files) <= 1:
            _init_worker(model, backend)
            for f in files:
                yield _classify(f, top_k, segments, max_duration)
                bar.update()
            return
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=(model, backend)) as ex:
            futures = [ex.submit(_classify, f, top_k, segments, max_duration) for f in files]
            for fut in futures:
                yield fut.result()
                bar.update()
    finally:
        bar.close()


# ------------------------------------------------------------------------------------ output
def _render(records, fmt: str, top_k: int, genres: list[str]) -> str:
    import csv
    import io
    import json

    if fmt == "json":
        return json.dumps(records, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["file", "genre", *genres, "error"])
        for r in records:
            scores = r.get("scores") or {}
            w.writerow([r["file"], r["genre"] or "", *[f"{scores[g]:.6f}" if g in scores else "" for g in genres],
                        r["error"] or ""])
        return buf.getvalue()
    lines = []
    width = max([len(r["file"]) for r in records] + [4])
    width = min(width, 60)
    for r in records:
        name = r["file"] if len(r["file"]) <= width else "…" + r["file"][-(width - 1):]
        if r["error"]:
            lines.append(f"{name:<{width}}  ERROR  {r['error']}")
        else:
            tops = "  ".join(f"{g} {s * 100:5.1f}%" for g, s in r["top"][:top_k])
            lines.append(f"{name:<{width}}  {r['genre']:<10} {tops}")
        for s in r.get("segments") or []:
            if s.get("silent"):
                lines.append(f"    {s['start']:8.2f}-{s['end']:8.2f}s  (silent)")
                continue
            lines.append(f"    {s['start']:8.2f}-{s['end']:8.2f}s  {s['genre']:<10} {max(s['scores'].values()) * 100:5.1f}%")
    return "\n".join(lines) + "\n"


def run(args) -> int:
    import sys
    from pathlib import Path

    from genrekit import GENRES, audio
    from genrekit.errors import GenrekitError
    from genrekit.journal import Journal

    if args.top_k < 1:
        print("genrekit predict: error: --top-k must be >= 1", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print("genrekit predict: error: --jobs must be >= 1", file=sys.stderr)
        return 2
    if args.max_duration is not None and not args.max_duration > 0:
        print("genrekit predict: error: --max-duration must be > 0 minutes", file=sys.stderr)
        return 2
    max_duration = None if args.max_duration is None else args.max_duration * 60.0
    files: list[str] = []
    missing: list[dict] = []
    from genrekit.predict import error_record

    for p in args.paths:
        try:
            files += [str(f) for f in audio.iter_audio_files([p])]
        except GenrekitError as exc:
            missing.append(error_record(p, str(exc), segments=args.segments))
    if not files and not missing:
        print("genrekit predict: error: no audio files found under " + ", ".join(args.paths), file=sys.stderr)
        return 1

    # Load the model once up front: a bad --model is one clear error, not one per file.
    from genrekit.predict import GenreClassifier

    clf = GenreClassifier.load(args.model, backend=args.backend)
    genres = clf.genres if clf.genres else list(GENRES)

    def engine(todo):
        if args.engine == "ray":
            from genrekit.engine_ray import predict_ray

            return predict_ray(todo, model=args.model, backend=args.backend, top_k=args.top_k,
                               segments=args.segments, address=args.address, progress=not args.no_progress,
                               max_duration=max_duration)
        return classify_paths(todo, model=args.model, backend=args.backend, top_k=args.top_k,
                              segments=args.segments, jobs=args.jobs, progress=not args.no_progress,
                              max_duration=max_duration)

    from genrekit.parquet_out import is_dataset_target, predict_to_dataset

    if is_dataset_target(args.out):  # a folder: Parquet parts + manifest, resumable at any size
        return predict_to_dataset(args.out, files, missing, engine, identity=clf.identity,
                                  segments=args.segments, top_k=args.top_k, part_size=args.part_size,
                                  max_duration=max_duration)

    settings = {"model": clf.identity, "segments": args.segments}
    if max_duration is not None:  # absent otherwise, so journals written before the option still resume
        settings["max_duration_s"] = max_duration
    journal = Journal(Path(args.out), settings=settings) if args.out else None
    done = journal.load() if journal else {}
    todo = [f for f in files if f not in done]
    if done:
        print(f"resuming: {len(done)} of {len(files)} files already done", file=sys.stderr)

    stream = engine(todo)
    new = {}
    for rec in stream:
        new[rec["file"]] = rec
        if journal:
            journal.append(rec["file"], rec)
    by_file = {**done, **new}
    records = missing + [by_file[f] for f in files]
    text = _render(records, args.format, args.top_k, genres)
    if journal:
        journal.finish(text)
        print(f"wrote {len(records)} records to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    failed = [r for r in records if r["error"]]
    if failed:
        print(f"{len(failed)} of {len(records)} files failed:", file=sys.stderr)
        for r in failed[:20]:
            print(f"  {r['error']}", file=sys.stderr)
    return 1 if failed else 0
