"""`genrekit features`: Kaggle-compatible feature tables from audio files and folders.

Every file's features are cached by its content and the settings, so a second run is near-instant
and a run killed half-way resumes where it stopped; the table itself is written atomically.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HELP = "compute the 57 Kaggle GTZAN features (or the extended set) into a CSV table"
DESCRIPTION = (
    "Walk PATHs (files or folders, recursively) and write one CSV row per file, or per --segment window, "
    "in Kaggle's column order: filename, length, <57 features>, label (the genre-named parent folder, "
    "empty otherwise). Files that fail are listed at the end and in OUT.errors.tsv; the exit code is then 1. "
    "Results are cached under $XDG_CACHE_HOME/genrekit (default ~/.cache/genrekit)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders (searched recursively)")
    parser.add_argument("--out", "-o", required=True, metavar="FILE.csv",
                        help="output CSV table; a folder (ending in /) gets Parquet parts + _manifest.json, "
                             "resumable, for libraries of any size")
    parser.add_argument("--part-size", type=int, default=1000, metavar="N",
                        help="with --out DIR/: files per Parquet part (default 1000)")
    parser.add_argument("--segment", type=float, default=None, metavar="SECONDS",
                        help="one row per window of SECONDS (3 gives Kaggle's 3-second table); default: one row per file")
    parser.add_argument("--jobs", "-j", type=int, default=None, metavar="N",
                        help="worker processes (default: number of CPUs)")
    parser.add_argument("--extended", action="store_true",
                        help="add spectral contrast, flatness, tonnetz, MFCC deltas and log-mel band statistics")
    parser.add_argument("--exact-hpss", action="store_true",
                        help="exact 31-point HPSS medians, as librosa (about 2.5x slower); by default a fast "
                             "approximation keeps harmony/perceptr variances within a few percent")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local processes (default) or Ray tasks (pip install 'genrekit[ray]'); same rows")
    parser.add_argument("--address", default=None, metavar="ADDR",
                        help="with --engine ray: a Ray cluster ('auto' = the one `ray start` made here); "
                             "default: a private local instance with --jobs CPUs")


def _engine_stream(args, todo: list[str]):
    """(path, analysis | ItemError) for ``todo`` from the chosen engine."""
    import functools

    from genrekit import engine

    if args.engine == "ray":
        from genrekit.engine_ray import features_ray

        return features_ray(todo, segment_seconds=args.segment, extended=bool(args.extended),
                            hpss=_hpss(args), address=args.address, num_cpus=args.jobs, progress=not args.quiet)
    work = functools.partial(_analyse, segment_seconds=args.segment, extended=bool(args.extended), hpss=_hpss(args))
    return engine.run_local(work, todo, jobs=args.jobs or os.cpu_count() or 1, progress=not args.quiet,
                            desc="features")


def _to_dataset(args, files, errors, settings) -> int:
    """`--out DIR/`: Parquet parts + manifest, written per part; a rerun skips finished files."""
    from genrekit import engine
    from genrekit.errors import GenrekitError
    from genrekit.features import rows_from_analysis
    from genrekit.parquet_out import PartitionedOutput, report

    out = PartitionedOutput(args.out, kind="features", settings=settings, part_size=args.part_size).open()
    todo = out.pending([str(f) for f in files])
    if len(todo) < len(files):
        print(f"resuming: {len(files) - len(todo)} of {len(files)} files already done in {args.out}", file=sys.stderr)
    for raw, err in errors:
        out.add(raw, error=str(err))
    try:
        for path, res in _engine_stream(args, todo) if todo else []:
            if isinstance(res, engine.ItemError):
                out.add(path, error=str(res))
                continue
            try:
                out.add(path, rows_from_analysis(Path(path), res, extended=bool(args.extended)))
            except GenrekitError as exc:
                out.add(path, error=str(exc))
    except KeyboardInterrupt:
        out.close()
        print(f"genrekit features: interrupted; finished parts are kept in {args.out}, run again to resume",
              file=sys.stderr)
        return 130
    out.close()
    return report(out, total=len(files) + len(errors))


def _format(v) -> str:
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _hpss(args) -> str:
    return "exact" if getattr(args, "exact_hpss", False) else "fast"


def _analyse(path: str, *, segment_seconds, extended, hpss="fast"):
    """Worker entry point (module level so process pools can pickle it)."""
    from genrekit.features import analyse_file

    return analyse_file(path, segment_seconds=segment_seconds, extended=extended, hpss=hpss)


def run(args: argparse.Namespace) -> int:
    from genrekit import engine

    engine.limit_blas_threads(1)  # before numpy loads: one thread per process is fastest here

    import csv
    import io

    from genrekit.audio import iter_audio_files
    from genrekit.errors import GenrekitError
    from genrekit.features import FEATURES_VERSION, SR, columns, rows_from_analysis

    if args.segment is not None and args.segment <= 0:
        print("genrekit features: error: --segment must be a positive number of seconds", file=sys.stderr)
        return 2
    if args.jobs is not None and args.jobs < 1:
        print("genrekit features: error: --jobs must be >= 1", file=sys.stderr)
        return 2
    out = Path(args.out)
    errors: list[tuple[str, engine.ItemError]] = []

    files: list[Path] = []
    for raw in args.paths:
        try:
            files.extend(iter_audio_files([raw]))
        except GenrekitError as exc:
            errors.append((raw, engine.ItemError.from_exception(exc)))
    seen: set[str] = set()
    files = [f for f in files if not (str(f) in seen or seen.add(str(f)))]
    if not files and not errors:
        print(f"genrekit features: error: no audio files found under {', '.join(args.paths)}", file=sys.stderr)
        return 1

    settings = {"features": FEATURES_VERSION, "sr": SR, "segment_seconds": args.segment, "extended": bool(args.extended),
                "hpss": _hpss(args)}
    from genrekit.parquet_out import is_dataset_target

    if is_dataset_target(args.out):
        return _to_dataset(args, files, errors, settings)
    cache = engine.Cache("features", settings, enabled=not args.no_cache)
    results: dict[str, list] = {}
    todo: list[str] = []
    keys: dict[str, str] = {}
    n_cached = 0
    for f in files:
        try:
            keys[str(f)] = key = cache.key(f)
        except OSError as exc:
            errors.append((str(f), engine.ItemError("AudioFileNotFoundError" if isinstance(exc, FileNotFoundError)
                                                    else type(exc).__name__, f"{f}: {exc.strerror or exc}")))
            continue
        hit = cache.get(key)
        if hit is not None:
            results[str(f)] = hit
            n_cached += 1
        else:
            todo.append(str(f))

    try:
        for path, res in _engine_stream(args, todo):
            if isinstance(res, engine.ItemError):
                errors.append((path, res))
                continue
            results[path] = res
            try:
                cache.put(keys[path], res)
            except OSError as exc:  # a full or read-only cache must not lose the results
                print(f"genrekit features: warning: cache not written ({exc})", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"genrekit features: interrupted; {len(results)} file(s) done are cached, "
              "run the same command again to resume", file=sys.stderr)
        return 130

    names = columns(extended=bool(args.extended))
    header = ["filename", "length", *names, "label"] + (["track_id"] if args.segment is not None else [])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    n_rows = 0
    for f in files:
        analysis = results.get(str(f))
        if analysis is None:
            continue
        try:
            rows = rows_from_analysis(f, analysis, extended=bool(args.extended))
        except GenrekitError as exc:
            errors.append((str(f), engine.ItemError.from_exception(exc)))
            continue
        for row in rows:
            writer.writerow([_format(row[c]) for c in header])
            n_rows += 1
    engine.atomic_write_text(out, buf.getvalue())

    err_path = out.with_name(out.name + ".errors.tsv")
    if errors:
        lines = ["path\terror\tmessage"] + [
            f"{p}\t{e.kind}\t{e.message}".replace("\n", " ") for p, e in errors
        ]
        engine.atomic_write_text(err_path, "\n".join(lines) + "\n")
    elif err_path.exists():
        err_path.unlink()  # a stale list from an earlier run would be misleading

    print(f"genrekit features: wrote {n_rows} row(s) for {len(results)} file(s) to {out} "
          f"({n_cached} from cache)", file=sys.stderr)
    if errors:
        print(f"genrekit features: {len(errors)} file(s) failed (also listed in {err_path}):", file=sys.stderr)
        for p, e in errors:
            print(f"  {p}: {e}", file=sys.stderr)
        return 1
    return 0
