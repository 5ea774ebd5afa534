"""`genrekit tags`: each file's top musicnn tags (MSD or MTT), optionally per 3 s patch.

Parses the flags, renders and prints; the work is ``genrekit.run.musicnn.tag_results`` (musicnn outputs cached
by file content, shared with ``genrekit embed``) written through a ``JournalSink`` (standard output or
``--out FILE``: resumable, rendered once at the end) or a ``ParquetSink`` (``--out DIR/``), as
``genrekit predict`` does. The flags both musicnn commands take are defined here once.
"""

from __future__ import annotations

from genrekit.networks import BACKENDS  # light (no numpy): `genrekit --help` stays fast
from genrekit.networks.musicnn.spec import MODELS

HELP = "top musicnn tags (rock, electronic, female vocalists, ...) of audio files/folders"
DESCRIPTION = (
    "Walks folders recursively and prints (or writes with --out) one record per file: the --top-k most "
    "probable tags of the pretrained musicnn network (mean over the audible 3 s patches) and, with "
    "--segments, each patch's own. A file that cannot be read, or has no audible signal, gets tags null "
    "and its error; the rest still complete. Results are cached by file content under "
    "$XDG_CACHE_HOME/genrekit; with --out, finished records are journalled so an interrupted run resumes. "
    "Exit code 0 when all succeeded, 1 when some failed, 2 on usage errors."
)


def add_musicnn_arguments(p) -> None:
    """The flags `tags` and `embed` share: inputs, network, engine, cache, progress."""
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders (searched recursively)")
    p.add_argument("--model", "-m", choices=MODELS, default="MSD_musicnn",
                   help="MSD_musicnn (Million Song Dataset tags, default) or MTT_musicnn (MagnaTagATune)")
    p.add_argument("--backend", choices=BACKENDS, default="onnx",
                   help="onnx (default: onnxruntime, no torch), onnx-int8 (faster, looser) or torch (the reference)")
    p.add_argument("--jobs", "-j", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="run locally or on Ray")
    p.add_argument("--address", default=None, help="Ray cluster address (with --engine ray)")
    p.add_argument("--part-size", type=int, default=1000, metavar="N",
                   help="with --out DIR/ (Parquet parts + _manifest.json, resumable): files per part (default 1000)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the musicnn cache")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def add_arguments(p) -> None:
    add_musicnn_arguments(p)
    p.add_argument("--top-k", type=int, default=5, metavar="N", help="tags per file (and per patch), 1-50 (default 5)")
    p.add_argument("--segments", action="store_true", help="include each 3 s patch's start, end and top tags")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--out", "-o", default=None,
                   help="write to FILE instead of standard output; a folder (ending in /) gets Parquet parts")


def check_musicnn_args(args) -> str | None:
    """The usage error in the shared flags, if any (the caller prints it and exits 2)."""
    if args.jobs < 1:
        return "--jobs must be >= 1"
    if args.part_size < 1:
        return "--part-size must be >= 1"
    return None


def musicnn_inputs(args, command: str):
    """(files, walk errors, settings) for the shared flags; None when nothing was found (printed)."""
    import sys

    from genrekit.run import items, musicnn

    files, walk_errors = items.find_audio(args.paths, unique=False)
    if not files and not walk_errors:
        print(f"genrekit {command}: error: no audio files found under " + ", ".join(args.paths), file=sys.stderr)
        return None
    return files, walk_errors, musicnn.MusicnnSettings(model=args.model, backend=args.backend)


def report_parquet(sink, total: int) -> int:
    """Print where a Parquet folder is and what failed; the exit code."""
    import sys

    for line in sink.describe(total=total):
        print(line, file=sys.stderr)
    return 1 if sink.failed else 0


# ------------------------------------------------------------------------------------ output
def _pct(pairs) -> str:
    return "  ".join(f"{t} {s * 100:.1f}%" for t, s in pairs)


def render(records, fmt: str, top_k: int, segments: bool) -> str:
    import csv
    import io
    import json

    if fmt == "json":
        return json.dumps(records, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        cells = [c for i in range(1, top_k + 1) for c in (f"tag_{i}", f"score_{i}")]
        seg = ["segment", "start", "end"] if segments else []
        w.writerow(["file", *seg, "duration_s", "n_patches", *cells, "error"])

        def pairs(tags):
            out = [c for t, s in (tags or []) for c in (t, f"{s:.6f}")]
            return out + [""] * (len(cells) - len(out))

        for r in records:
            head = [r["file"], *([""] * len(seg))]
            w.writerow([*head, r["duration_s"] if r["duration_s"] is not None else "", r["n_patches"] or "",
                        *pairs(r["tags"]), r["error"] or ""])
            for i, s in enumerate(r.get("segments") or []):  # the file's row, then one per patch
                w.writerow([r["file"], i, f"{s['start']:.3f}", f"{s['end']:.3f}", "", "", *pairs(s["tags"]),
                            "silent" if s.get("silent") else ""])
        return buf.getvalue()
    width = min(max([len(r["file"]) for r in records] + [4]), 60)
    lines = []
    for r in records:
        name = r["file"] if len(r["file"]) <= width else "…" + r["file"][-(width - 1):]
        lines.append(f"{name:<{width}}  ERROR  {r['error']}" if r["error"] else f"{name:<{width}}  {_pct(r['tags'])}")
        for s in r.get("segments") or []:
            lines.append(f"    {s['start']:8.2f}-{s['end']:8.2f}s  " + ("(silent)" if s.get("silent") else _pct(s["tags"])))
    return "\n".join(lines) + "\n"


def run(args) -> int:
    import functools
    import sys

    from genrekit.cli.predict_cmd import make_engine, report_journal
    from genrekit.parquet_out import is_dataset_target, tags_row
    from genrekit.run import items, musicnn, sinks

    problem = check_musicnn_args(args) or (None if 1 <= args.top_k <= 50 else "--top-k must be within 1..50")
    if problem:
        print(f"genrekit tags: error: {problem}", file=sys.stderr)
        return 2
    found = musicnn_inputs(args, "tags")
    if found is None:
        return 1
    files, walk_errors, settings = found
    missing = [sinks.record_result(musicnn.tag_error_record(p, items.error_text(p, e), model=args.model,
                                                          segments=args.segments)) for p, e in walk_errors]
    content = musicnn.tag_settings(settings, top_k=args.top_k, segments=args.segments)
    parquet = is_dataset_target(args.out)
    if parquet:
        sink = sinks.ParquetSink(args.out, kind="tags", settings=content, part_size=args.part_size,
                                 to_rows=lambda r: [tags_row(r)])
    else:
        sink = sinks.JournalSink(args.out, settings=content,
                                 render=functools.partial(render, fmt=args.format, top_k=args.top_k,
                                                          segments=args.segments))
    todo = sink.pending(files)
    if sink.summary.resumed:
        print(f"resuming: {sink.summary.resumed} of {len(files)} files already done in {args.out}", file=sys.stderr)
    results = musicnn.tag_results(todo, settings, make_engine(args), top_k=args.top_k, segments=args.segments,
                                cache=not args.no_cache)
    sinks.write(results, sink, before=missing)
    if parquet:
        return report_parquet(sink, len(files) + len(missing))
    return report_journal(sink, args.out, note=f" ({sink.summary.cached} from cache)")
