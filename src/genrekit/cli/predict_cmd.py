"""`genrekit predict`: genres for songs and folders, one record per file, bad files reported not fatal.

Parses the flags, renders and prints; the work is ``genrekit.run.predict.predict_records`` written through a
``JournalSink`` (``--out FILE``: resumable, rendered once at the end) or a ``ParquetSink`` (``--out DIR/``:
``parquet_out.predict_row``'s columns, with ``tags``, ``styles`` and ``uncertain`` when the records carry them).
"""

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
    p.add_argument("--model", "-m", default=None,
                   help="a genrekit model file or a shipped model's name: genrekit-gtzan-blend (the default), "
                        "genrekit-gtzan-musicnn (the previous default), genrekit-gtzan-fast (CNN + features, "
                        "faster), genrekit-gtzan-ears (musicnn + mn04 only)")
    p.add_argument("--top-k", type=int, default=3, help="genres to show per file (default 3)")
    p.add_argument("--segments", action="store_true", help="include the per-window timeline")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--jobs", "-j", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--out", "-o", default=None, help="write to FILE instead of standard output")
    p.add_argument("--backend", choices=("onnx", "torch"), default="onnx", help="inference backend")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="run locally or on Ray")
    p.add_argument("--address", default=None, help="Ray cluster address (with --engine ray)")
    p.add_argument("--part-size", type=int, default=1000, metavar="N",
                   help="with --out DIR/ (Parquet parts + _manifest.json, resumable): files per part (default 1000)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--max-duration", type=float, default=None, metavar="MIN",
                   help="skip files whose decoded audio is longer than MIN minutes: their record gets an "
                        "error and decoding stops there (default: no limit, any length is streamed)")
    p.add_argument("--min-confidence", type=float, default=None, metavar="P",
                   help="mark records whose top (calibrated) score is below P as \"uncertain\": true")
    p.add_argument("--patches", default=None, metavar="N|all",
                   help="musicnn patches scored per 30 s block: 1-10 or 'all' (default: the model's own; the "
                        "shipped default scores 3: 'all' is ~2x slower and a little more accurate, MODEL_CARD.md)")
    p.add_argument("--tags", action="store_true",
                   help="top MSD tags for models without a musicnn member too (models with one always give them)")
    p.add_argument("--no-styles", dest="styles", action="store_false",
                   help="leave the styles (the top 3 AudioSet music-genre classes, calibrated, heard by mn04 on "
                        "at most 6 10 s windows of each song) out of the records; faster only for a model that "
                        "does not read mn04 itself (the default does)")


def make_engine(args):
    """The engine the flags ask for: local processes (``--jobs``, default 1) or Ray."""
    if args.engine == "ray":
        from genrekit.run.engines import RayEngine

        return RayEngine(address=args.address, progress=not args.no_progress)
    from genrekit.run.engines import LocalEngine

    return LocalEngine(jobs=args.jobs, progress=not args.no_progress)


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
        styles = any("styles" in r for r in records)  # a JSON column, only when the records carry them
        w.writerow(["file", "genre", *genres, *(["styles"] if styles else []), "error"])
        for r in records:
            scores = r.get("scores") or {}
            extra = [json.dumps(r["styles"]) if r.get("styles") is not None else ""] if styles else []
            w.writerow([r["file"], r["genre"] or "", *[f"{scores[g]:.6f}" if g in scores else "" for g in genres],
                        *extra, r["error"] or ""])
        return buf.getvalue()
    from genrekit.names import display_name  # the terminal form: control bytes escaped, any name printable

    lines = []
    width = max([len(display_name(r["file"])) for r in records] + [4])
    width = min(width, 60)
    for r in records:
        shown = display_name(r["file"])
        name = shown if len(shown) <= width else "…" + shown[-(width - 1):]
        if r["error"]:
            lines.append(f"{name:<{width}}  ERROR  {r['error']}")
        else:
            tops = "  ".join(f"{g} {s * 100:5.1f}%" for g, s in r["top"][:top_k])
            more = "  uncertain" if r.get("uncertain") else ""
            if r.get("tags"):
                more += "  tags: " + ", ".join(t for t, _ in r["tags"][:3])
            if r.get("styles"):
                more += "  styles: " + ", ".join(f"{t} {p * 100:.0f}%" for t, p in r["styles"])
            lines.append(f"{name:<{width}}  {r['genre']:<10} {tops}{more}")
        for s in r.get("segments") or []:
            if s.get("silent"):
                lines.append(f"    {s['start']:8.2f}-{s['end']:8.2f}s  (silent)")
                continue
            lines.append(f"    {s['start']:8.2f}-{s['end']:8.2f}s  {s['genre']:<10} {max(s['scores'].values()) * 100:5.1f}%")
    return "\n".join(lines) + "\n"


def run(args) -> int:
    import functools
    import sys

    from genrekit import GENRES
    from genrekit.parquet_out import is_dataset_target, predict_row
    from genrekit.predict import GenreClassifier, error_record
    from genrekit.run import items, predict, sinks

    if args.top_k < 1:
        print("genrekit predict: error: --top-k must be >= 1", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print("genrekit predict: error: --jobs must be >= 1", file=sys.stderr)
        return 2
    if args.max_duration is not None and not args.max_duration > 0:
        print("genrekit predict: error: --max-duration must be > 0 minutes", file=sys.stderr)
        return 2
    if args.min_confidence is not None and not 0.0 <= args.min_confidence <= 1.0:
        print("genrekit predict: error: --min-confidence must be within 0..1", file=sys.stderr)
        return 2
    max_duration = None if args.max_duration is None else args.max_duration * 60.0  # seconds
    files, walk_errors = items.find_audio(args.paths, unique=False)
    if not files and not walk_errors:
        print("genrekit predict: error: no audio files found under " + ", ".join(args.paths), file=sys.stderr)
        return 1
    missing = [sinks.record_result(error_record(p, e.message, segments=args.segments)) for p, e in walk_errors]

    # Load the model once up front: a bad --model is one clear error, not one per file.
    clf = GenreClassifier.load(args.model, backend=args.backend, patches_per_block=args.patches)
    genres = clf.genres if clf.genres else list(GENRES)
    parquet = is_dataset_target(args.out)
    # what decides the output's content: an earlier run with the same settings resumes, any other is redone
    settings = predict.predict_settings(clf, segments=args.segments, top_k=args.top_k, max_duration=max_duration,
                                        min_confidence=args.min_confidence, tags=args.tags, styles=args.styles)
    if parquet:  # a folder: Parquet parts + manifest, resumable at any size
        sink = sinks.ParquetSink(args.out, kind="predict", part_size=args.part_size, to_rows=lambda r: [predict_row(r)],
                                 settings=settings)
    else:
        sink = sinks.JournalSink(args.out, settings=settings,
                                 render=functools.partial(_render, fmt=args.format, top_k=args.top_k, genres=genres))
    todo = sink.pending(files)
    if sink.summary.resumed:
        where = f" in {args.out}" if parquet else ""
        print(f"resuming: {sink.summary.resumed} of {len(files)} files already done{where}", file=sys.stderr)
    records = predict.predict_records(todo, clf, make_engine(args), top_k=args.top_k, segments=args.segments,
                                    max_duration=max_duration, min_confidence=args.min_confidence,
                                    tags=args.tags, styles=args.styles)
    sinks.write(map(sinks.record_result, records), sink, before=missing)
    if parquet:
        for line in sink.describe(total=len(files) + len(missing)):
            print(line, file=sys.stderr)
        return 1 if sink.failed else 0

    return report_journal(sink, args.out)


def report_journal(sink, out: str | None, *, note: str = "") -> int:
    """Print a finished ``JournalSink``'s text (or where it went) and its failures; the exit code."""
    import sys

    if out:
        print(f"wrote {len(sink.records)} records to {out}{note}", file=sys.stderr)
    else:
        sys.stdout.write(sink.text)
    failed = [r for r in sink.records if r["error"]]
    if failed:
        print(f"{len(failed)} of {len(sink.records)} files failed:", file=sys.stderr)
        from genrekit.names import display_name  # terminal form: a name's control bytes escaped

        for r in failed[:20]:
            print("  " + display_name(r["error"]), file=sys.stderr)
    return 1 if failed else 0
