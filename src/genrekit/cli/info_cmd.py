"""`genrekit info`: what a dataset, folder or file holds, and which files cannot be read (and why)."""

from __future__ import annotations

HELP = "summarise audio files/folders or feature tables: tracks per genre, duration, rates, errors"
DESCRIPTION = (
    "Decodes every audio file under PATH (recursively) to check it, then reports tracks per genre "
    "(from GTZAN names or genre/label folders), total duration, sample rates and formats, and every "
    "unreadable file with its reason. A .csv PATH is read as a feature table. Exit code 1 when some "
    "files could not be read."
)


def add_arguments(p) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files, folders, or feature CSVs")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def summarise_audio(paths, *, progress: bool = True) -> dict:
    """Decode-check every audio file under ``paths`` and summarise (see DESCRIPTION)."""
    from collections import Counter
    from pathlib import Path

    from tqdm import tqdm

    from genrekit import audio, datasets
    from genrekit.errors import GenrekitError

    genres: Counter[str] = Counter()
    rates: Counter[int] = Counter()
    formats: Counter[str] = Counter()
    errors: list[dict] = []
    duration = 0.0
    files: list[tuple[Path, Path]] = []
    for raw in paths:
        base = Path(raw)
        found, skipped = audio.find_audio([base], unique=False)  # regular files only, the rest with why
        files += [(Path(f), base) for f in found]
        errors += [{"file": where, "error": str(exc)} for where, exc in skipped]
    for f, base in tqdm(files, desc="info", unit="file", disable=None if progress and len(files) >= 20 else True, leave=False):
        try:
            head = audio.info(f)
            n = sum(b.size for b in audio.stream(f, sr=head.sr or audio.SR, block_seconds=60.0))
            if n < audio.N_FFT:
                raise audio.EmptyAudioError(f"{f}: {n} samples is shorter than one analysis frame ({audio.N_FFT})")
        except GenrekitError as exc:
            errors.append({"file": str(f), "error": str(exc)})
            continue
        except OSError as exc:  # e.g. a file removed or made unreadable mid-scan
            errors.append({"file": str(f), "error": f"{f}: {exc.strerror or exc}"})
            continue
        tid = datasets.track_id(f.name)
        if tid is not None:
            label = datasets.genre_of(tid) or ""
        elif f.parent != base and base.is_dir():
            label = f.parent.name
        else:
            label = ""
        genres[label or "(unlabelled)"] += 1
        rates[head.sr] += 1
        formats[f.suffix.lower().lstrip(".")] += 1
        duration += n / (head.sr or audio.SR)
    return {
        "tracks": sum(genres.values()),
        "genres": dict(sorted(genres.items())),
        "duration_s": round(duration, 3),
        "sample_rates": {str(k): v for k, v in sorted(rates.items())},
        "formats": dict(sorted(formats.items())),
        "errors": errors,
    }


def summarise_table(path) -> dict:
    from collections import Counter

    from genrekit import datasets

    t = datasets.load_feature_table(path)
    tracks = {}
    for tid, lab in zip(t.track_ids, t.y, strict=True):
        tracks[tid] = lab
    return {
        "table": str(path),
        "rows": len(t.y),
        "tracks": len(tracks),
        "segmented": t.is_segmented,
        "columns": len(t.columns),
        "genres": dict(sorted(Counter(tracks.values()).items())),
        "errors": [],
    }


def run(args) -> int:
    import json
    from pathlib import Path

    from genrekit.errors import GenrekitError

    tables = [p for p in args.paths if p.lower().endswith(".csv")]
    others = [p for p in args.paths if not p.lower().endswith(".csv")]
    result = summarise_audio(others) if others else {"tracks": 0, "genres": {}, "duration_s": 0.0, "errors": []}
    if tables:
        result["tables"] = []
        for t in tables:
            try:
                result["tables"].append(summarise_table(t))
            except GenrekitError as exc:
                result["errors"].append({"file": t, "error": str(exc)})
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_human(result, Path)
    return 1 if result["errors"] else 0


def _print_human(r: dict, Path) -> None:
    hours, rem = divmod(r["duration_s"], 3600)
    print(f"tracks: {r['tracks']}   duration: {int(hours)}h{int(rem // 60):02d}m{rem % 60:04.1f}s")
    if r.get("genres"):
        width = max(len(g) for g in r["genres"])
        for g, n in r["genres"].items():
            print(f"  {g:<{width}}  {n}")
    if r.get("sample_rates"):
        print("sample rates: " + ", ".join(f"{k} Hz x{v}" for k, v in r["sample_rates"].items()))
    if r.get("formats"):
        print("formats: " + ", ".join(f"{k} x{v}" for k, v in r["formats"].items()))
    for t in r.get("tables", []):
        kind = "segment rows" if t["segmented"] else "rows"
        print(f"table {t['table']}: {t['rows']} {kind}, {t['tracks']} tracks, {t['columns']} feature columns")
        print("  " + ", ".join(f"{g} {n}" for g, n in t["genres"].items()))
    if r["errors"]:
        print(f"unreadable: {len(r['errors'])}")
        from genrekit.names import display_name  # terminal form: a name's control bytes escaped

        for e in r["errors"]:
            print("  " + display_name(e["error"]))
