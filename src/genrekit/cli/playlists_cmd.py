"""`genrekit playlists`: one M3U8 playlist per genre, from audio folders or saved predictions."""

from __future__ import annotations

HELP = "write one M3U8 playlist per genre (from audio, or a saved predict JSON / Parquet output)"
DESCRIPTION = (
    "Each PATH is audio (files or folders, classified now; predictions are cached by content, so a second "
    "run is quick) or a saved `genrekit predict` output: a --format json file, or a Parquet file or "
    "dataset folder. Writes DIR/<Genre>.m3u8 (UTF-8, #EXTINF with duration and 'Artist - Title', paths "
    "relative to DIR) for every genre that has tracks, and removes playlists genrekit wrote earlier for "
    "genres that have none now (never other playlists). A playlist of the same name that genrekit did not write "
    "is never replaced: genrekit's goes beside it as '<Genre> (genrekit).m3u8'. Exit code 1 when some files could "
    "not be classified."
)


def add_arguments(p) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files/folders, or saved predict outputs")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="folder for the playlists")
    p.add_argument("--min-confidence", type=float, default=0.0, metavar="P",
                   help="leave out tracks whose best score is below P (0..1, default 0)")
    p.add_argument("--top-k", type=int, default=1, metavar="K",
                   help="put a track into the playlists of its K best genres (each scoring >= P; default 1)")
    p.add_argument("--labels", choices=("display", "model"), default="display",
                   help="playlist names: Hip-Hop, Rock, ... (default) or the model's labels")
    p.add_argument("--sort", choices=("path", "confidence"), default="path", help="track order (default path)")
    p.add_argument("--base", default=None, metavar="DIR",
                   help="folder that relative paths in saved predictions are relative to (default: here)")
    p.add_argument("--no-titles", action="store_true", help="do not read titles from tags (file names only)")
    p.add_argument("--model", "-m", default=None, help="a genrekit model file (default: the shipped model)")
    p.add_argument("--backend", choices=("onnx", "torch"), default="onnx", help="inference backend")
    p.add_argument("--jobs", "-j", type=int, default=1, help="worker processes for classification (default 1)")
    p.add_argument("--no-cache", action="store_true", help="do not reuse or store predictions by file content")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args) -> int:
    import os
    import sys

    from genrekit import audio
    from genrekit.library import playlists
    from genrekit.predict import error_record

    for ok, msg in ((0.0 <= args.min_confidence <= 1.0, "--min-confidence must be within 0..1"),
                    (args.top_k >= 1, "--top-k must be >= 1"), (args.jobs >= 1, "--jobs must be >= 1")):
        if not ok:
            print(f"genrekit playlists: error: {msg}", file=sys.stderr)
            return 2
    records: list[dict] = []
    audio_files: list[str] = []
    for p in args.paths:
        if playlists.is_saved_predictions(p):
            recs = playlists.load_predictions(p, base=args.base)
            missing = [r for r in recs if not r.get("error") and not os.path.isfile(r["file"])]
            for r in missing:
                r["error"] = f"{r['file']}: listed in {p} but not found (pass --base DIR where it was made)"
            records += recs
            continue
        found, skipped = audio.find_audio([p], unique=False)  # regular files only, the rest with why
        audio_files += found
        records += [error_record(s, str(exc)) for s, exc in skipped]
    if audio_files:
        from genrekit.library import tagging
        from genrekit.predict import GenreClassifier

        clf = GenreClassifier.load(args.model, backend=args.backend)
        cache = tagging.prediction_cache(clf, enabled=not args.no_cache)
        order = {f: i for i, f in enumerate(audio_files)}
        fresh = [rec for _f, _d, rec in tagging.predict_files(
            audio_files, clf=clf, jobs=args.jobs, cache=cache,
            progress=not args.no_progress)]
        records += sorted(fresh, key=lambda r: order.get(r["file"], 0))
    if not records:
        print("genrekit playlists: error: no audio files or predictions found under " + ", ".join(args.paths),
              file=sys.stderr)
        return 1

    groups, left = playlists.group_by_genre(records, min_confidence=args.min_confidence, top_k=args.top_k,
                                            labels=args.labels)
    written = playlists.write_playlists(groups, args.out, sort=args.sort, titles=not args.no_titles)
    for genre, path in written.items():
        print(f"{len(groups[genre]):5d}  {path}")
        if path.name != playlists.playlist_name(genre):
            print(f"note: {path.with_name(playlists.playlist_name(genre))} is not a playlist genrekit wrote; "
                  f"left as it is, and the {genre} playlist written beside it as {path.name}", file=sys.stderr)
    failed = [r for r in left if r.get("error")]
    low = [r for r in left if not r.get("error")]
    print(f"wrote {len(written)} playlists to {args.out}"
          + (f"; {len(low)} tracks below --min-confidence left out" if low else ""), file=sys.stderr)
    if failed:
        print(f"{len(failed)} files could not be classified:", file=sys.stderr)
        for r in failed[:20]:
            print(f"  {r['reason']}", file=sys.stderr)
    return 1 if failed else 0
