"""`genrekit serve`: the web page and REST API (FastAPI under uvicorn)."""

from __future__ import annotations

HELP = "serve the web page and REST API (upload a song, see its genres)"
DESCRIPTION = (
    "Starts the genrekit web app: a page at / to upload a song and see its genres, spectrogram and "
    "timeline; POST /api/predict returning the record of `genrekit predict --format json`; GET /api/health, "
    "GET /api/genres; OpenAPI docs at /docs. The model loads once; inference runs in a bounded pool of "
    "--workers threads. Uploads are processed in memory and never written to disk, decoded as a stream "
    "(at most --max-duration minutes of audio) and answered within --time-budget seconds. There is no "
    "authentication: keep the default --host 127.0.0.1 unless a proxy in front of it controls access. "
    "Requests whose Host header names neither the bound address, localhost nor an --allowed-hosts name "
    "get 421 (DNS rebinding)."
)


def add_arguments(p) -> None:
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    p.add_argument("--model", "-m", default=None, help="a genrekit model file (default: the shipped model)")
    p.add_argument("--max-upload-mb", type=float, default=50.0, help="largest accepted upload (default 50 MB)")
    p.add_argument("--workers", type=int, default=2, help="concurrent inferences (default 2)")
    p.add_argument("--max-duration", type=float, default=20.0, metavar="MIN",
                   help="refuse (413) uploads whose decoded audio is longer than MIN minutes; decoding "
                        "stops there (default 20)")
    p.add_argument("--time-budget", type=float, default=60.0, metavar="SEC",
                   help="answer 503 and free the worker when a request is not done SEC seconds after its "
                        "upload arrived (default 60)")
    p.add_argument("--backend", choices=("onnx", "torch"), default="onnx", help="inference backend")
    p.add_argument("--library", default=None, metavar="PATH",
                   help="a music folder: the page then lists the tracks of it most similar to each upload "
                        "(its musicnn index is brought up to date first, as by genrekit similar)")
    p.add_argument("--index", default=None, metavar="DIR", help="the --library index folder (default: per library)")
    p.add_argument("--allowed-hosts", default="", metavar="NAMES",
                   help="comma-separated Host names the server also answers to, besides the bound address "
                        "and localhost (e.g. music.example.org, *.example.org; * for any): requests naming "
                        "another host get 421, a guard against DNS rebinding")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))


def run(args) -> int:
    import sys

    for ok, msg in ((0 <= args.port <= 65535, "--port must be in 0..65535"),
                    (args.workers >= 1, "--workers must be >= 1"),
                    (args.max_upload_mb > 0, "--max-upload-mb must be > 0"),
                    (args.max_duration > 0, "--max-duration must be > 0 minutes"),
                    (args.time_budget > 0, "--time-budget must be > 0 seconds")):
        if not ok:
            print(f"genrekit serve: error: {msg}", file=sys.stderr)
            return 2
    try:
        import uvicorn

        from genrekit.serve import create_app, default_allowed_hosts
    except ImportError as exc:
        print(f"genrekit serve: error: {exc.name} is not installed; install the web extra: "
              "pip install 'genrekit[web]'", file=sys.stderr)
        return 1
    extra = [h.strip() for h in args.allowed_hosts.split(",") if h.strip()]
    if any(any(c in h for c in "/ @") for h in extra):
        print(f"genrekit serve: error: --allowed-hosts takes host names, not URLs: {args.allowed_hosts!r}",
              file=sys.stderr)
        return 2
    from genrekit.predict import GenreClassifier

    # Load up front: a bad --model is one clear error before the server starts listening.
    clf = GenreClassifier.load(args.model, backend=args.backend)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"genrekit serve: warning: listening on {args.host} without authentication", file=sys.stderr)
    index = None
    if args.library:
        from pathlib import Path

        from genrekit.library import musicnn, similar

        if not Path(args.library).is_dir():
            print(f"genrekit serve: error: --library {args.library}: not a folder", file=sys.stderr)
            return 2
        print(f"genrekit serve: indexing {args.library} (new and changed files only)…", file=sys.stderr)
        index, rep = similar.update_index(args.library, index_dir=args.index, cache=musicnn.summary_cache())
        print(f"genrekit serve: library of {rep.total} tracks ({rep.added} new, {rep.changed} changed, "
              f"{len(rep.failed)} failed)", file=sys.stderr)
    app = create_app(clf, max_upload_mb=args.max_upload_mb, workers=args.workers, backend=args.backend,
                     library=index, library_root=args.library,
                     max_duration=args.max_duration * 60.0, time_budget=args.time_budget,
                     allowed_hosts=default_allowed_hosts(args.host, extra))
    print(f"genrekit serve: model {clf.path} ({', '.join(clf.genres)}); http://{args.host}:{args.port}/",
          file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=5)
    return 0
