"""`genrekit tag`: write predicted genres into files' own tags, dry run first, undo always possible."""

from __future__ import annotations

HELP = "write predicted genres into the files' tags (dry run unless --write; undo with --undo)"
DESCRIPTION = (
    "Classifies audio files/folders and shows, per file, the current genre tag, the proposed genre and the "
    "confidence. Nothing is written without --write. With --write every change is first recorded in an "
    "undo journal, the file is rewritten through a temporary copy and an atomic rename, and the audio "
    "frames, other tags, cover art and the file's modification time (unless --touch) are checked "
    "unchanged; `genrekit tag --undo JOURNAL` restores the files byte for byte. Read-only files, files "
    "changed since classification and unsupported formats are reported and left alone. An interrupted "
    "--write run resumes when rerun with the same arguments; a second run on the same journal (or the same "
    "files and settings) while one is going is refused, and a file another run is changing is left alone. "
    "--undo restores only files that still hold what the run wrote, and only their tags. Formats: mp3 (ID3 TCON), flac/ogg/opus "
    "(GENRE), m4a (\u00a9gen), wav/aiff with an ID3 chunk. Exit code 1 when some files failed."
)


def add_arguments(p) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH", help="audio files or folders")
    p.add_argument("--write", action="store_true", help="apply the changes (default: dry run, nothing written)")
    pol = p.add_mutually_exclusive_group()
    pol.add_argument("--only-empty", dest="policy", action="store_const", const="only-empty",
                     help="tag only files without a genre (default)")
    pol.add_argument("--overwrite", dest="policy", action="store_const", const="overwrite",
                     help="replace existing genres")
    pol.add_argument("--append", dest="policy", action="store_const", const="append",
                     help="add the predicted genres after the existing ones")
    p.set_defaults(policy="only-empty")
    p.add_argument("--min-confidence", type=float, default=0.0, metavar="P",
                   help="leave files whose best score is below P alone (0..1, default 0)")
    p.add_argument("--top-k", type=int, default=1, metavar="K",
                   help="write the K best genres as a multi-value genre (each scoring >= --min-confidence)")
    p.add_argument("--tags", nargs="?", type=int, const=5, default=0, metavar="N",
                   help="also write the N (default 5) most probable musicnn tags (electronic, House, ...) "
                        "into GENREKIT_TAGS (TXXX:GENREKIT_TAGS in ID3), genrekit's own field")
    p.add_argument("--styles", action="store_true",
                   help="also write the 3 most probable AudioSet styles (House music, Salsa music, ...: predict's "
                        "`styles`) into GENREKIT_STYLES (TXXX:GENREKIT_STYLES in ID3), genrekit's own field; "
                        "undone by --undo like the genres")
    p.add_argument("--labels", choices=("display", "model"), default="display",
                   help="display: Hip-Hop, Rock, ... as tags spell them (default); model: the model's labels")
    p.add_argument("--touch", action="store_true", help="let the modification time change (default: kept)")
    p.add_argument("--journal", default=None, metavar="FILE",
                   help="undo journal (default: one per run under ~/.local/state/genrekit/tag-journals/)")
    p.add_argument("--undo", default=None, metavar="JOURNAL", help="restore every file a journal changed")
    p.add_argument("--model", "-m", default=None, help="a genrekit model file (default: the shipped model)")
    p.add_argument("--backend", choices=("onnx", "torch"), default="onnx", help="inference backend")
    p.add_argument("--jobs", "-j", type=int, default=1, help="worker processes for classification (default 1)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--no-cache", action="store_true", help="do not reuse or store predictions by file content")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _fmt_values(values) -> str:
    return "; ".join(values) if values else "-"


def render(rows, fmt: str) -> str:
    import csv
    import io
    import json

    from genrekit.names import display_name, json_escaped

    if fmt == "json":
        return json_escaped(json.dumps([r.to_dict() for r in rows], indent=2, ensure_ascii=False)) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        tags = any(r.new_tags is not None for r in rows)
        styles = any(r.new_styles is not None for r in rows)
        w.writerow(["file", "current", "proposed", "confidence", "action", "reason", "new"]
                   + (["current_tags", "new_tags"] if tags else [])
                   + (["current_styles", "new_styles"] if styles else []))
        for r in rows:
            w.writerow([r.file, _fmt_values(r.current), _fmt_values(r.proposed),
                        "" if r.confidence is None else f"{r.confidence:.4f}", r.action, r.reason,
                        _fmt_values(r.new)]
                       + ([_fmt_values(r.current_tags), _fmt_values(r.new_tags)] if tags else [])
                       + ([_fmt_values(r.current_styles), _fmt_values(r.new_styles)] if styles else []))
        return buf.getvalue()
    width = min(max([len(display_name(r.file)) for r in rows] + [4]), 50)
    cw = min(max([len(_fmt_values(r.current)) for r in rows] + [7]), 24)
    pw = min(max([len(_fmt_values(r.proposed)) for r in rows] + [8]), 24)
    tags = any(r.new_tags is not None for r in rows)
    tw = min(max([len(_fmt_values(r.new_tags)) for r in rows] + [4]), 40) if tags else 0
    styles = any(r.new_styles is not None for r in rows)
    sw = min(max([len(_fmt_values(r.new_styles)) for r in rows] + [6]), 50) if styles else 0
    lines = [f"{'file':<{width}}  {'current':<{cw}}  {'proposed':<{pw}}  {'conf':>5}  "
             + (f"{'tags':<{tw}}  " if tags else "") + (f"{'styles':<{sw}}  " if styles else "") + "action"]
    for r in rows:
        shown = display_name(r.file)  # the terminal form: control bytes escaped
        name = shown if len(shown) <= width else "…" + shown[-(width - 1):]
        conf = "" if r.confidence is None else f"{r.confidence * 100:4.0f}%"
        act = display_name(r.action + (f" ({r.reason})" if r.reason else ""))
        tag_col = f"{_fmt_values(r.new_tags)[:tw]:<{tw}}  " if tags else ""
        tag_col += f"{_fmt_values(r.new_styles)[:sw]:<{sw}}  " if styles else ""
        lines.append(f"{name:<{width}}  {_fmt_values(r.current)[:cw]:<{cw}}  {_fmt_values(r.proposed)[:pw]:<{pw}}  "
                     f"{conf:>5}  {tag_col}{act}")
    return "\n".join(lines) + "\n"


def _undo(args) -> int:
    import sys

    from genrekit.library.undo import undo
    from genrekit.names import display_name

    counts: dict[str, int] = {}
    bad = 0
    for res in undo(args.undo):
        if res.status == "skipped line":  # a torn record: said, and the intact changes are still restored
            print(f"  note: {res.message}", file=sys.stderr)
            continue
        counts[res.status] = counts.get(res.status, 0) + 1
        if res.status in ("changed since", "read-only", "missing", "error"):
            bad += 1
            print(f"  {res.status}: {display_name(res.message)}", file=sys.stderr)
        elif args.format == "table":
            print(f"{res.status:<17} {display_name(res.file)}")
    print("undo: " + ", ".join(f"{n} {s}" for s, n in counts.items()) if counts else "undo: nothing to restore",
          file=sys.stderr)
    return 1 if bad else 0


def _run_key(settings: dict, paths: list[str]) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps({"settings": settings, "paths": paths}, sort_keys=True).encode()).hexdigest()[:12]


def default_journal(settings: dict, paths: list[str]):
    """The journal an unfinished run with these settings and paths left (to resume), else a new one."""
    import time

    from genrekit.library.undo import UndoJournal, state_dir

    key = _run_key(settings, paths)
    folder = state_dir() / "tag-journals"
    for old in sorted(folder.glob(f"tag-*-{key}.jsonl"), reverse=True):
        try:
            if not UndoJournal.read(old).finished:
                return old
        except Exception:  # noqa: BLE001 - a damaged journal is not resumed; a new one is started
            continue
    return folder / f"tag-{time.strftime('%Y%m%d-%H%M%S')}-{key}.jsonl"


def run_lock(settings: dict, paths: list[str]):
    """One run at a time for the same settings and files: the second is refused before it picks (or
    starts) a default journal, so two runs started together never split into two journals."""
    from genrekit.library.files import lock_file
    from genrekit.library.undo import state_dir

    key = _run_key(settings, paths)
    return lock_file(state_dir() / "tag-journals" / f".run-{key}.lock",
                     busy="another `genrekit tag --write` with the same settings and files is running now; "
                          "wait for it to finish (rerunning afterwards resumes or finds nothing left to do)")


def run(args) -> int:
    import contextlib

    with contextlib.ExitStack() as held:  # locks taken on the way are released however the run ends
        return _run(args, held)


def _run(args, held) -> int:
    import os
    import sys
    from pathlib import Path

    from genrekit import audio
    from genrekit.library import tagging
    from genrekit.library.undo import JournalError, UndoJournal, sha256_bytes

    if args.undo:
        if args.paths or args.write:
            print("genrekit tag: error: --undo JOURNAL takes no PATH and no --write", file=sys.stderr)
            return 2
        return _undo(args)
    for ok, msg in ((bool(args.paths), "give one or more PATHs (or --undo JOURNAL)"),
                    (0.0 <= args.min_confidence <= 1.0, "--min-confidence must be within 0..1"),
                    (args.top_k >= 1, "--top-k must be >= 1"), (args.jobs >= 1, "--jobs must be >= 1"),
                    (0 <= args.tags <= 50, "--tags N must be within 0..50"),
                    (args.write or args.journal is None, "--journal only makes sense with --write")):
        if not ok:
            print(f"genrekit tag: error: {msg}", file=sys.stderr)
            return 2

    rows_missing: list = []
    files: list[str] = []
    for p in args.paths:
        found, skipped = audio.find_audio([p])  # regular files only: a FIFO or a link to a device is skipped
        files += found
        rows_missing += [tagging.TagRow(s, [], [], None, "error", str(exc)) for s, exc in skipped]
    files = list(dict.fromkeys(files))
    if not files and not rows_missing:
        print("genrekit tag: error: no audio files found under " + ", ".join(args.paths), file=sys.stderr)
        return 1

    from genrekit.predict import GenreClassifier

    clf = GenreClassifier.load(args.model, backend=args.backend)
    settings = tagging.TagSettings(policy=args.policy, min_confidence=args.min_confidence, top_k=args.top_k,
                                   labels=args.labels, touch=args.touch, tags=args.tags, styles=args.styles)
    jset = settings.journal_settings(model_sha256=clf.identity.get("sha256"))
    cache = tagging.prediction_cache(clf, enabled=not args.no_cache, styles=args.styles)
    tag_cache = None
    if args.tags:
        try:
            from genrekit.library.musicnn import summary_cache
        except ImportError as exc:
            raise tagging.TagError(f"--tags needs genrekit's musicnn embeddings ({exc})") from None
        tag_cache = summary_cache(enabled=not args.no_cache)

    journal = None
    resumed: set[str] = set()
    if args.write:
        if not args.journal:
            real = sorted(os.path.realpath(f) for f in files)
            held.enter_context(run_lock(jset, real))
        jpath = Path(args.journal) if args.journal else default_journal(jset, real)
        journal = UndoJournal(jpath)
        state = journal.open(settings=jset, resume=jpath.exists())
        if state is not None:
            for ch in state.changes:
                seq = int(ch["seq"])
                try:
                    now = sha256_bytes(Path(ch["file"]).read_bytes())
                except OSError:
                    continue
                if now == ch["after_sha256"]:
                    resumed.add(ch["file"])
                    if seq not in state.done:
                        journal.record_done(seq)  # killed between the rename and its "done" line
            print(f"resuming {jpath}: {len(resumed)} files written by the interrupted run", file=sys.stderr)
            for n in state.skipped:
                print(f"  note: {jpath}: line {n} is not a complete record (the interrupted run was killed while "
                      "writing it); skipped", file=sys.stderr)
        print(f"undo journal: {jpath}", file=sys.stderr)

    order = {f: i for i, f in enumerate(files)}
    rows = []
    stopped = None
    try:
        for row in tagging.tag_files(files, settings=settings, clf=clf, write=args.write, journal=journal,
                                     resumed=resumed, jobs=args.jobs, cache=cache, tag_cache=tag_cache,
                                     progress=not args.no_progress):
            rows.append(row)
    except KeyboardInterrupt:
        if journal is not None:
            journal.close()
            print(f"genrekit tag: interrupted; rerun the same command to resume (journal {journal.path})",
                  file=sys.stderr)
        raise
    except JournalError as exc:  # the journal cannot grow (a full disk): no file may change without it
        assert journal is not None
        journal.close()
        stopped = exc
    rows.sort(key=lambda r: order.get(r.file, -1))
    rows = rows_missing + rows
    sys.stdout.write(render(rows, args.format))
    if stopped is not None:
        assert journal is not None
        print(f"genrekit tag: error: {stopped}\nThe files not listed above were left alone. Free some space and "
              f"rerun the same command to go on, or undo with: genrekit tag --undo {journal.path}", file=sys.stderr)
        return 1
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.action] = counts.get(r.action, 0) + 1
    summary = ", ".join(f"{n} {a}" for a, n in sorted(counts.items()))
    if journal is not None:
        state = UndoJournal.read(journal.path)
        try:
            journal.finish({"counts": counts})
        except JournalError as exc:
            print(f"genrekit tag: error: {exc}. Undo with: genrekit tag --undo {journal.path}", file=sys.stderr)
            return 1
        if state.changes:
            print(f"{summary}. Undo with: genrekit tag --undo {journal.path}", file=sys.stderr)
        else:
            journal.path.unlink(missing_ok=True)  # nothing was changed: nothing to undo
            print(f"{summary}. Nothing was changed.", file=sys.stderr)
    else:
        hint = " Run again with --write to apply." if counts.get("would write") else ""
        print(f"dry run: {summary}.{hint}", file=sys.stderr)
    return 1 if counts.get("error") else 0
