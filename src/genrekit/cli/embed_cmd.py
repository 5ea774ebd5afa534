"""`genrekit embed`: embeddings of a pretrained network (musicnn or mn04) of audio files/folders into
Parquet (or .npz / .csv).

Parses the flags and prints; the work is ``genrekit.run.networks.embedding_results`` (the network's outputs
cached by file content, shared with ``genrekit tags``) written through a ``TableSink`` (one file, atomically,
at the end: the cache is what resumes a killed run) or a ``ParquetSink`` (``--out DIR/``: parts + manifest,
resumable at any size), as ``genrekit features`` does.

Parquet schema (``--out emb.parquet`` and ``--out DIR/``; ``DIR/`` adds ``input``, the path as given):

- per file: ``file`` string, ``duration_s`` double, ``n_patches`` int64 (the network's windows), ``n_silent``
  int64 (windows below the silence threshold, left out of the means), then one column per ``--layers``
  entry, the mean over the audible windows. musicnn (3 s patches): ``penultimate``
  ``fixed_size_list<float32>[200]``, ``pooled`` ``[1506]``, ``taggram`` ``[50]`` (columns are
  ``networks.musicnn.tag_names(model)``); mn04 (``--model mn04``, up to six 10 s windows across the song):
  ``features`` ``[384]``, ``logits`` ``[527]``, ``taggram`` ``[527]`` (the sigmoid probabilities; columns
  are AudioSet's labels, ``networks.mn04.spec.labels()``);
- ``--per-window``: ``file``, ``duration_s``, ``patch`` int64, ``start`` / ``end`` double seconds,
  ``silent`` bool, and the window's own vectors.

One list column per layer, not one column per value: pandas reads each cell as a float32 array and
``np.stack(df["penultimate"])`` is the (rows, 200) matrix; pyarrow, polars and DuckDB read a
fixed-size list as a vector/array type without parsing; and the file stays a 6-9 column table instead of
1756 columns, each with its own metadata in every row group. ``.csv`` has one column per value
(``penultimate_0`` ...) for tools that read nothing else.
"""

from __future__ import annotations

HELP = ("network embeddings (musicnn: penultimate 200, pooled 1506, taggram 50; mn04: features 384, logits 527, "
        "taggram 527) into Parquet / npz / csv")
DESCRIPTION = (
    "Walks folders recursively and writes each file's embeddings by a pretrained network (the mean over its "
    "audible windows, or one row per window with --per-window) to --out: FILE.parquet, FILE.npz or FILE.csv "
    "(written at the end, atomically), or a folder ending in / (Parquet parts + _manifest.json, resumable "
    "at any size). --model MSD_musicnn (default) / MTT_musicnn: musicnn, 3 s patches; --model mn04 (also "
    "audioset): EfficientAT mn04 trained on AudioSet (527 classes, 48 of them music genres; MIT weights, "
    "CC BY 4.0 labels), up to six 10 s windows across the song. Results are cached by file content under "
    "$XDG_CACHE_HOME/genrekit, so a second run, or a rerun after an interrupted one, is served from the "
    "cache. Files that fail (unreadable, no audible signal) are listed at the end and in OUT.errors.tsv; "
    "the exit code is then 1."
)

SUFFIXES = (".parquet", ".npz", ".csv")


def add_arguments(p) -> None:
    from genrekit.cli.tags_cmd import add_network_arguments

    add_network_arguments(p)
    p.add_argument("--out", "-o", required=True, metavar="FILE",
                   help="FILE.parquet, FILE.npz or FILE.csv; a folder (ending in /) gets Parquet parts + manifest")
    p.add_argument("--layers", default=None, metavar="L,..",
                   help="comma-separated layers (default: all of the network's): musicnn's penultimate (200), "
                        "pooled (1506), taggram (50); mn04's features (384), logits (527), taggram (527, the "
                        "sigmoid probabilities)")
    p.add_argument("--per-window", action="store_true",
                   help="one row per window (musicnn: 3 s patch, mn04: 10 s window), with its start and end")


def run(args) -> int:
    import functools
    import sys
    from pathlib import Path

    from genrekit.cli.predict_cmd import make_engine
    from genrekit.cli.tags_cmd import check_network_args, network_inputs, report_parquet
    from genrekit.errors import GenrekitError
    from genrekit.parquet_out import is_dataset_target
    from genrekit.run import items, networks, sinks

    problem, settings = check_network_args(args)
    parquet = is_dataset_target(args.out)
    if not problem and not parquet and Path(args.out).suffix.lower() not in SUFFIXES:
        problem = f"--out must end in {', '.join(SUFFIXES)} or / (a Parquet folder), got {args.out}"
    if not problem:
        asked = None if args.layers is None else [x.strip() for x in args.layers.split(",") if x.strip()]
        try:
            layers = networks.check_layers(asked, settings)
        except GenrekitError as exc:
            problem = str(exc)
    found = network_inputs(args, "embed", problem)
    if isinstance(found, int):
        return found
    files, walk_errors = found
    before = [items.Result(p, error=e) for p, e in walk_errors]
    vectors = {x: networks.layer_sizes(settings)[x] for x in layers}
    if parquet:
        sink = sinks.ParquetSink(args.out, kind="embed", part_size=args.part_size, to_rows=list, vectors=vectors,
                                 settings=networks.embedding_settings(settings, layers=layers,
                                                                      per_window=args.per_window))
    else:
        sink = sinks.TableSink(args.out, writer=functools.partial(networks.write_embeddings, vectors=vectors))
    todo = sink.pending(files)
    if sink.summary.resumed:
        print(f"resuming: {sink.summary.resumed} of {len(files)} files already done in {args.out}", file=sys.stderr)
    results = networks.embedding_results(todo, settings, make_engine(args), layers=layers,
                                         per_window=args.per_window, cache=not args.no_cache)
    try:
        sinks.write(results, sink, before=before)
    except KeyboardInterrupt:
        kept = (f"finished parts are kept in {args.out}" if parquet
                else f"{sink.summary.ok} finished file(s) are cached" if not args.no_cache else "nothing was kept (--no-cache)")
        print(f"genrekit embed: interrupted; {kept}; run the same command again to resume", file=sys.stderr)
        return 130
    if parquet:
        return report_parquet(sink, len(files) + len(walk_errors))
    print(f"genrekit embed: wrote {sink.rows} row(s) for {sink.files} file(s) to {sink.out} "
          f"({sink.summary.cached} from cache)", file=sys.stderr)
    if sink.errors:
        print(f"genrekit embed: {len(sink.errors)} file(s) failed (also listed in {sink.errors_path}):", file=sys.stderr)
        from genrekit.names import display_name  # terminal form: a name's control bytes escaped

        for p, e in sink.errors[:20]:
            print("  " + display_name(items.error_text(p, e)), file=sys.stderr)
        return 1
    return 0
