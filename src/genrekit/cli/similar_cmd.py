"""`genrekit similar`: the library's tracks nearest to a song, by musicnn embedding (cosine)."""

from __future__ import annotations

HELP = "list a library's tracks most similar to a song (musicnn embeddings, cosine)"
DESCRIPTION = (
    "Keeps an index of the library (one musicnn embedding per track, stored outside the library under "
    "~/.local/state/genrekit/similar/ unless --index DIR) and brings it up to date first: only new and "
    "changed files are analysed, removed files drop out. SONG may be a library track or any audio file. "
    "Search is exact up to 50,000 tracks and uses an HNSW index (usearch) above. Without SONG, only "
    "updates the index. Exit code 1 when some library files could not be analysed."
)


def add_arguments(p) -> None:
    p.add_argument("songs", nargs="*", metavar="SONG", help="audio files to find neighbours of")
    p.add_argument("--library", "-l", required=True, metavar="PATH", help="the music library folder")
    p.add_argument("-k", type=int, default=10, help="neighbours per song (default 10)")
    p.add_argument("--index", default=None, metavar="DIR", help="index folder (default: per library, in the state dir)")
    p.add_argument("--no-update", action="store_true", help="use the saved index as it is, without rescanning")
    p.add_argument("--search", choices=("auto", "exact", "usearch"), default="auto",
                   help="exact search, usearch HNSW, or auto: exact up to 50,000 tracks (default)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--jobs", "-j", type=int, default=1, help="worker processes for analysis (default 1)")
    p.add_argument("--no-cache", action="store_true", help="do not reuse or store embeddings by file content")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args) -> int:
    import csv
    import io
    import json
    import os
    import sys
    from pathlib import Path

    from genrekit.errors import GenrekitError
    from genrekit.library import musicnn, similar
    from genrekit.names import json_escaped

    if args.k < 1 or args.jobs < 1:
        print("genrekit similar: error: -k and --jobs must be >= 1", file=sys.stderr)
        return 2
    if not Path(args.library).is_dir():
        print(f"genrekit similar: error: {args.library}: not a folder", file=sys.stderr)
        return 2
    cache = musicnn.summary_cache(enabled=not args.no_cache)
    index_dir = Path(args.index) if args.index else similar.default_index_dir(args.library)
    failed: list = []
    if args.no_update:
        idx = similar.load_index(index_dir, backend=args.search)
    else:
        idx, rep = similar.update_index(args.library, index_dir=index_dir, jobs=args.jobs, cache=cache,
                                        progress=not args.no_progress, backend=args.search)
        failed = rep.failed
        print(f"index {index_dir}: {rep.total} tracks ({rep.added} new, {rep.changed} changed, {rep.removed} "
              f"removed, {len(rep.failed)} failed) in {rep.seconds:.1f} s; search: {idx.backend}", file=sys.stderr)
        for _path, why in failed[:20]:
            print(f"  {why}", file=sys.stderr)
    root = os.path.realpath(args.library)
    results = []
    for song in args.songs:
        try:
            found = similar.similar(song, idx, k=args.k, cache=cache)
        except GenrekitError as exc:
            results.append({"song": song, "error": str(exc), "similar": []})
            continue
        results.append({"song": song, "error": None, "similar": [
            {"file": os.path.relpath(n.file, root), "similarity": round(n.similarity, 6)} for n in found]})
    if args.songs:
        if args.format == "json":
            sys.stdout.write(json_escaped(json.dumps(results, indent=2, ensure_ascii=False)) + "\n")
        elif args.format == "csv":
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["song", "rank", "file", "similarity", "error"])
            for r in results:
                if r["error"]:
                    w.writerow([r["song"], "", "", "", r["error"]])
                for i, n in enumerate(r["similar"], 1):
                    w.writerow([r["song"], i, n["file"], f"{n['similarity']:.6f}", ""])
            sys.stdout.write(buf.getvalue())
        else:
            for r in results:
                print(r["song"])
                if r["error"]:
                    print(f"  error: {r['error']}")
                for i, n in enumerate(r["similar"], 1):
                    print(f"  {i:3d}  {n['similarity']:.3f}  {n['file']}")
    bad = [r for r in results if r["error"]]
    return 1 if bad or failed else 0
