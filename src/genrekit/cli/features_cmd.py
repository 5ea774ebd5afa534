"""`genrekit features`: Kaggle-compatible feature tables from audio files and folders.

Parses the flags and prints; the work is ``genrekit.run.features.feature_rows`` (every file's features cached by
its content and the settings, so a second run is near-instant and a run killed half-way resumes where
it stopped) written through a ``CsvSink`` (the table, atomically) or a ``ParquetSink`` (``--out DIR/``).
"""

from __future__ import annotations

import argparse
import sys

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


def make_engine(args):
    """The engine the flags ask for: local processes (``--jobs``, default one per CPU) or Ray."""
    if args.engine == "ray":
        from genrekit.run.engines import RayEngine

        return RayEngine(address=args.address, num_cpus=args.jobs, progress=not args.quiet)
    from genrekit.run.engines import LocalEngine

    return LocalEngine(jobs=args.jobs, progress=not args.quiet)


def run(args: argparse.Namespace) -> int:
    from genrekit.run.engines import limit_blas_threads

    limit_blas_threads(1)  # before numpy loads: one thread per process is fastest here

    from genrekit.features import FeatureSettings
    from genrekit.parquet_out import is_dataset_target
    from genrekit.run import features, items, sinks

    if args.segment is not None and args.segment <= 0:
        print("genrekit features: error: --segment must be a positive number of seconds", file=sys.stderr)
        return 2
    if args.jobs is not None and args.jobs < 1:
        print("genrekit features: error: --jobs must be >= 1", file=sys.stderr)
        return 2
    files, walk_errors = items.find_audio(args.paths)
    if not files and not walk_errors:
        print(f"genrekit features: error: no audio files found under {', '.join(args.paths)}", file=sys.stderr)
        return 1
    settings = FeatureSettings(segment_seconds=args.segment, extended=bool(args.extended),
                               hpss="exact" if args.exact_hpss else "fast")
    before = [items.Result(p, error=e) for p, e in walk_errors]
    if is_dataset_target(args.out):  # a folder: Parquet parts + manifest, resumable at any size
        sink = sinks.ParquetSink(args.out, kind="features", settings=settings.cache_settings(),
                                 part_size=args.part_size, to_rows=list)
    else:
        sink = sinks.CsvSink(args.out, header=features.feature_header(settings))
    todo = sink.pending(files)
    if sink.summary.resumed:
        print(f"resuming: {sink.summary.resumed} of {len(files)} files already done in {args.out}", file=sys.stderr)
    rows = features.feature_rows(todo, settings, make_engine(args), cache=not args.no_cache)
    try:
        sinks.write(rows, sink, before=before)
    except KeyboardInterrupt:
        kept = (f"finished parts are kept in {args.out}, run again to resume" if isinstance(sink, sinks.ParquetSink)
                else f"{sink.summary.ok} file(s) done are cached, run the same command again to resume")
        print(f"genrekit features: interrupted; {kept}", file=sys.stderr)
        return 130
    if isinstance(sink, sinks.ParquetSink):
        for line in sink.describe(total=len(files) + len(walk_errors)):
            print(line, file=sys.stderr)
        return 1 if sink.failed else 0

    print(f"genrekit features: wrote {sink.rows} row(s) for {sink.files} file(s) to {sink.out} "
          f"({sink.summary.cached} from cache)", file=sys.stderr)
    if sink.errors:
        print(f"genrekit features: {len(sink.errors)} file(s) failed (also listed in {sink.errors_path}):",
              file=sys.stderr)
        from genrekit.names import display_name  # terminal form: a name's control bytes escaped

        for p, e in sink.errors:
            print("  " + display_name(f"{p}: {e}"), file=sys.stderr)
        return 1
    return 0
