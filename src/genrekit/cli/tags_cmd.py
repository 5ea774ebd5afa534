"""`genrekit tags`: each file's top tags by a pretrained network (musicnn: MSD or MTT; mn04: AudioSet),
optionally per window.

Parses the flags, renders and prints; the work is ``genrekit.run.networks.tag_results`` (the network's
outputs cached by file content, shared with ``genrekit embed``) written through a ``JournalSink`` (standard
output or ``--out FILE``: resumable, rendered once at the end) or a ``ParquetSink`` (``--out DIR/``), as
``genrekit predict`` does. The flags both network commands take are defined here once.
"""

from __future__ import annotations

from genrekit.networks import BACKENDS  # light (no numpy): `genrekit --help` stays fast

HELP = "top tags of audio files/folders: musicnn (rock, female vocalists, ...) or AudioSet's 527 classes (mn04)"
DESCRIPTION = (
    "Walks folders recursively and prints (or writes with --out) one record per file: the --top-k most "
    "probable tags of a pretrained network (mean over its audible windows) and, with --segments, each "
    "window's own. --model MSD_musicnn (default) or MTT_musicnn: musicnn's 50 tags, 3 s patches; --model "
    "audioset (also called mn04): EfficientAT mn04, AudioSet's 527 sound classes (MIT weights, CC BY 4.0 "
    "labels), 10 s windows, and with --genres only its 48 music-genre classes. A file that cannot be read, "
    "or has no audible signal, gets tags null and its error; the rest still complete. Results are cached "
    "by file content under $XDG_CACHE_HOME/genrekit; with --out, finished records are journalled so an "
    "interrupted run resumes. Exit code 0 when all succeeded, 1 when some failed, 2 on usage errors."
)
MODEL_HELP = ("MSD_musicnn (musicnn, Million Song Dataset tags, default), MTT_musicnn (musicnn, MagnaTagATune), "
              "audioset or mn04 (EfficientAT mn04: AudioSet's 527 classes, 48 of them music genres; MIT weights, "
              "CC BY 4.0 labels)")


def add_network_arguments(p) -> None:
    """The flags `tags` and `embed` share: inputs, network, engine, cache, progress."""
    from genrekit.networks import model_choices  # reads the light specs only

    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders (searched recursively)")
    p.add_argument("--model", "-m", choices=model_choices(), default="MSD_musicnn", help=MODEL_HELP)
    p.add_argument("--backend", choices=BACKENDS, default="onnx",
                   help="onnx (default: onnxruntime, no torch), onnx-int8 (musicnn: faster, looser) or torch "
                        "(musicnn's reference); mn04 runs on onnx only")
    p.add_argument("--jobs", "-j", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="run locally or on Ray")
    p.add_argument("--address", default=None, help="Ray cluster address (with --engine ray)")
    p.add_argument("--part-size", type=int, default=1000, metavar="N",
                   help="with --out DIR/ (Parquet parts + _manifest.json, resumable): files per part (default 1000)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the network's cache")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def add_arguments(p) -> None:
    add_network_arguments(p)
    p.add_argument("--top-k", type=int, default=5, metavar="N",
                   help="tags per file (and per window): 1-50 for musicnn, 1-527 for audioset, 1-48 with --genres "
                        "(default 5)")
    p.add_argument("--genres", action="store_true",
                   help="with --model audioset: rank only AudioSet's 48 music-genre classes (Pop music .. Ska)")
    p.add_argument("--segments", action="store_true", help="include each window's start, end and top tags")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--out", "-o", default=None,
                   help="write to FILE instead of standard output; a folder (ending in /) gets Parquet parts")


def check_network_args(args):
    """(usage error or None, the network's settings) for the shared flags; the caller prints the error
    and exits 2."""
    from genrekit.errors import GenrekitError
    from genrekit.run import networks

    if args.jobs < 1:
        return "--jobs must be >= 1", None
    if args.part_size < 1:
        return "--part-size must be >= 1", None
    try:
        return None, networks.network_settings(args.model, args.backend)
    except GenrekitError as exc:
        return str(exc), None


def network_inputs(args, command: str, problem: str | None = None):
    """(files, walk errors) under the paths, or the exit code when there is nothing to do: 2 for a usage
    ``problem`` found while checking the flags, 1 when no audio was found (both printed)."""
    import sys

    from genrekit.run import items

    if problem:
        print(f"genrekit {command}: error: {problem}", file=sys.stderr)
        return 2
    files, walk_errors = items.find_audio(args.paths, unique=False)
    if not files and not walk_errors:
        print(f"genrekit {command}: error: no audio files found under " + ", ".join(args.paths), file=sys.stderr)
        return 1
    return files, walk_errors


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
    from genrekit.errors import GenrekitError
    from genrekit.parquet_out import is_dataset_target, tags_row
    from genrekit.run import items, networks, sinks

    problem, settings = check_network_args(args)
    if not problem:
        try:
            n = networks.tag_count(settings, genres=args.genres)
            problem = None if 1 <= args.top_k <= n else f"--top-k must be within 1..{n}"
        except GenrekitError as exc:
            problem = f"--genres: {exc}"
    found = network_inputs(args, "tags", problem)
    if isinstance(found, int):
        return found
    files, walk_errors = found
    missing = [sinks.record_result(networks.tag_error_record(p, items.error_text(p, e), model=settings.model,
                                                           segments=args.segments)) for p, e in walk_errors]
    content = networks.tags_settings(settings, top_k=args.top_k, segments=args.segments, genres=args.genres)
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
    results = networks.tag_results(todo, settings, make_engine(args), top_k=args.top_k, segments=args.segments,
                                   genres=args.genres, cache=not args.no_cache)
    sinks.write(results, sink, before=missing)
    if parquet:
        return report_parquet(sink, len(files) + len(missing))
    return report_journal(sink, args.out, note=f" ({sink.summary.cached} from cache)")
