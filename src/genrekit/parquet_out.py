"""Partitioned Parquet output with a manifest: resumable batch results for libraries of any size.

A run writes ``DIR/part-00000.parquet``, ``DIR/part-00001.parquet``, ... and ``DIR/_manifest.json``. Each
part is written to a temporary name and renamed into place, and only then is the manifest (also written
atomically) updated to list the part and the inputs it finished. So a run killed at any moment (or a lost
Ray worker, or a dead driver) leaves a directory whose manifest names only complete parts, and a rerun
with the same settings skips every input the manifest lists as done. A part the manifest does not name
(killed between the two renames) is deleted on the next open, and its inputs are simply done again.

Inputs are identified by absolute path plus size and modification time: an input that changed since it
was finished is done again and its old rows are removed from their part. Failed inputs are listed in the
manifest with their reasons and are retried by the next run (a failure may have been a lost machine).

Any engine can feed this module (the local process pool or Ray): it only sees ``(input, rows | error)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from genrekit.errors import GenrekitError

# Leading underscore: pyarrow and pandas skip it, so `pd.read_parquet(DIR)` reads just the parts.
MANIFEST = "_manifest.json"
FORMAT = "genrekit-parquet-dataset"
VERSION = 1
PART_RE = re.compile(r"^part-(\d{5,})\.parquet$")


class OutputError(GenrekitError):
    """An output directory cannot be used (other settings, corrupt manifest, not a directory)."""


def require_pyarrow():
    """Import pyarrow or say how to install it (it ships with the ``ray`` and ``dev`` extras)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise OutputError(
            "Parquet output needs pyarrow: pip install 'genrekit[ray]' (or pip install pyarrow)"
        ) from exc
    return pa, pq


def is_dataset_target(out: str | os.PathLike | None) -> bool:
    """True when ``--out`` names a Parquet dataset directory: an existing folder or a path ending in '/'."""
    if out is None:
        return False
    s = os.fspath(out)
    return s.endswith(("/", os.sep)) or Path(s).is_dir()


def input_stat(path: str | os.PathLike) -> dict[str, int] | None:
    """Size and modification time (ns) of an input, or None when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def _atomic_bytes(path: Path, write: Callable[[str], None]) -> None:
    """Run ``write(tmp_path)`` then rename the temporary file onto ``path`` (same folder, fsynced)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def settings_key(settings: dict[str, Any]) -> str:
    """A short digest of the settings that decide the rows' content (model, options)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


class PartitionedOutput:
    """Write rows for many inputs as Parquet parts plus a manifest; see the module docstring.

    >>> out = PartitionedOutput("results/", kind="predict", settings={"model": "x"}).open()
    >>> todo = out.pending(files)            # inputs not finished by an earlier run
    >>> for f in todo: out.add(f, rows=[{"file": f, "genre": "rock"}])   # or out.add(f, error="...")
    >>> out.close()                          # flushes the last part
    """

    def __init__(self, directory: str | os.PathLike, *, kind: str, settings: dict[str, Any],
                 part_size: int = 1000, part_seconds: float = 120.0):
        self.dir = Path(directory)
        self.kind = kind
        self.settings = settings
        self.part_size = int(part_size)
        self.part_seconds = float(part_seconds)
        self.manifest: dict[str, Any] = {}
        self._rows: list[dict[str, Any]] = []
        self._inputs: dict[str, dict[str, Any]] = {}
        self._failed: dict[str, dict[str, Any]] = {}
        self._since = time.monotonic()

    # ------------------------------------------------------------------------------------ opening
    def open(self) -> PartitionedOutput:
        """Create or load the directory; refuse one made with other settings; drop unlisted parts."""
        if self.part_size < 1:
            raise OutputError(f"part size must be >= 1, got {self.part_size}")
        require_pyarrow()
        if self.dir.exists() and not self.dir.is_dir():
            raise OutputError(f"{self.dir}: exists and is not a directory; choose another --out")
        self.dir.mkdir(parents=True, exist_ok=True)
        key = settings_key(self.settings)
        mpath = self.dir / MANIFEST
        if mpath.is_file():
            try:
                m = json.loads(mpath.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise OutputError(f"{mpath}: unreadable manifest ({exc}); delete the directory to start over") from exc
            if m.get("format") != FORMAT:
                raise OutputError(f"{mpath}: not a genrekit output manifest; choose another --out")
            if m.get("kind") != self.kind or m.get("settings_key") != key:
                raise OutputError(
                    f"{self.dir}: holds {m.get('kind')} output made with other settings "
                    f"({json.dumps(m.get('settings'), default=str)[:200]}); choose another --out or delete it"
                )
            self.manifest = m
        else:
            others = [p.name for p in self.dir.iterdir() if not p.name.startswith(".")]
            if others:
                raise OutputError(
                    f"{self.dir}: not empty and has no {MANIFEST} ({', '.join(sorted(others)[:3])}, ...); "
                    "choose an empty or new directory for --out"
                )
            self.manifest = {"format": FORMAT, "version": VERSION, "kind": self.kind, "settings": self.settings,
                             "settings_key": key, "parts": [], "done": {}, "failed": {}}
            self._write_manifest()  # the folder is claimed for these settings from the start
        listed = {p["file"] for p in self.manifest["parts"]}
        for p in self.dir.iterdir():  # parts of a run killed between the part and the manifest rename
            if (PART_RE.match(p.name) and p.name not in listed) or (p.name.startswith(".") and p.name.endswith(".tmp")):
                p.unlink(missing_ok=True)
        return self

    # ------------------------------------------------------------------------------------ resuming
    def pending(self, paths: Iterable[str | os.PathLike]) -> list[str]:
        """The inputs still to do: not done, failed earlier, or changed since they were done.

        Rows of changed inputs are removed from their parts now, so a rerun never duplicates a row."""
        done = self.manifest["done"]
        todo: list[str] = []
        stale: dict[str, set[str]] = {}
        for raw in paths:
            p = os.fspath(raw)
            key = os.path.abspath(p)
            entry = done.get(key)
            if entry is not None and {"size": entry.get("size"), "mtime_ns": entry.get("mtime_ns")} == input_stat(p):
                continue
            if entry is not None:
                stale.setdefault(entry["part"], set()).add(key)
            todo.append(p)
        if stale:
            self._drop_rows(stale)
        return todo

    def _drop_rows(self, stale: dict[str, set[str]]) -> None:
        pa, pq = require_pyarrow()
        import pyarrow.compute as pc

        for part, keys in stale.items():
            path = self.dir / part
            table = pq.read_table(path)
            given = {self.manifest["done"][k]["path"] for k in keys}
            keep = pc.invert(pc.is_in(table.column("input"), value_set=pa.array(sorted(given), pa.string())))
            table = table.filter(keep)
            _atomic_bytes(path, lambda tmp, t=table: pq.write_table(t, tmp))
            for entry in self.manifest["parts"]:
                if entry["file"] == part:
                    entry["rows"] = table.num_rows
            for k in keys:
                del self.manifest["done"][k]
        self._write_manifest()

    # ------------------------------------------------------------------------------------ writing
    def add(self, path: str | os.PathLike, rows: list[dict[str, Any]] | None = None, *,
            error: str | None = None) -> None:
        """Record one finished input: its rows, or the reason it failed. Flushes a part when due."""
        p = os.fspath(path)
        key = os.path.abspath(p)
        stat = input_stat(p) or {"size": None, "mtime_ns": None}
        if error is not None:
            self._failed[key] = {"path": p, **stat, "error": str(error)}
        else:
            self._rows += [{"input": p, **r} for r in rows or []]
            self._inputs[key] = {"path": p, **stat, "rows": len(rows or [])}
        if len(self._inputs) + len(self._failed) >= self.part_size or (
            time.monotonic() - self._since >= self.part_seconds
        ):
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as the next part (atomically), then the manifest that lists it."""
        self._since = time.monotonic()
        if not self._inputs and not self._failed:
            return
        pa, pq = require_pyarrow()
        m = self.manifest
        part = None
        if self._rows:
            used = [int(PART_RE.match(p["file"]).group(1)) for p in m["parts"]]
            part = f"part-{(max(used) + 1) if used else 0:05d}.parquet"
            table = pa.Table.from_pylist(self._rows)
            _atomic_bytes(self.dir / part, lambda tmp: pq.write_table(table, tmp))
            m["parts"].append({"file": part, "rows": table.num_rows, "inputs": len(self._inputs)})
        for key, entry in self._inputs.items():
            m["done"][key] = {**entry, "part": part}
            m["failed"].pop(key, None)
        for key, entry in self._failed.items():
            m["failed"][key] = entry
            m["done"].pop(key, None)
        self._write_manifest()
        self._rows, self._inputs, self._failed = [], {}, {}

    def _write_manifest(self) -> None:
        self.manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        text = json.dumps(self.manifest, indent=1, default=str)

        def write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)

        _atomic_bytes(self.dir / MANIFEST, write)

    def close(self) -> None:
        """Flush what is buffered; the directory is then complete for the inputs given so far."""
        self.flush()

    # ------------------------------------------------------------------------------------ summary
    @property
    def failed(self) -> dict[str, dict[str, Any]]:
        """Failed inputs (absolute path -> {path, size, mtime_ns, error}), as last written."""
        return self.manifest.get("failed", {})

    @property
    def done(self) -> dict[str, dict[str, Any]]:
        return self.manifest.get("done", {})


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """The manifest of an output directory (raises OutputError when missing or unreadable)."""
    mpath = Path(directory) / MANIFEST
    try:
        return json.loads(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise OutputError(f"{mpath}: no manifest; is {directory} a genrekit output directory?") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OutputError(f"{mpath}: unreadable manifest ({exc})") from exc


def read_dataset(directory: str | os.PathLike):
    """All rows of the parts the manifest lists, as one pyarrow Table (``.to_pandas()`` for a frame)."""
    pa, pq = require_pyarrow()
    m = read_manifest(directory)
    tables = [pq.read_table(Path(directory) / p["file"]) for p in m["parts"]]
    if not tables:
        return pa.table({"input": pa.array([], pa.string())})
    return pa.concat_tables(tables, promote_options="default")


# ------------------------------------------------------------------------------------ predict rows
def predict_row(record: dict[str, Any]) -> dict[str, Any]:
    """A prediction record as one flat row: genre, duration, one ``score_<genre>`` column each, top-k.

    Flat columns keep a 100,000-row table easy to query (``df.groupby("genre")``); the per-window
    timeline, when asked for, is kept losslessly as JSON text."""
    row: dict[str, Any] = {"file": record["file"], "genre": record["genre"], "duration_s": record["duration_s"]}
    scores = record.get("scores") or {}
    for g in sorted(scores):  # a fixed column order, whatever the ranking
        row[f"score_{g}"] = scores[g]
    row["top"] = [g for g, _ in record.get("top") or []]
    if "segments" in record:
        row["segments_json"] = json.dumps(record["segments"])
    return row


def write_records(out: PartitionedOutput, stream: Iterable[dict[str, Any]], *,
                  rows: Callable[[dict[str, Any]], list[dict[str, Any]]] = lambda r: [predict_row(r)]) -> Iterator[dict]:
    """Feed engine records (``file``, ``error`` keys) into ``out``; yields each record on (for progress)."""
    for rec in stream:
        if rec.get("error"):
            out.add(rec["file"], error=rec["error"])
        else:
            out.add(rec["file"], rows(rec))
        yield rec
    out.close()


def predict_to_dataset(out_dir: str | os.PathLike, files: list[str], missing: list[dict[str, Any]],
                       engine: Callable[[list[str]], Iterable[dict[str, Any]]], *, identity: dict[str, Any],
                       segments: bool, top_k: int, part_size: int = 1000, max_duration: float | None = None) -> int:
    """`genrekit predict --out DIR/`: run ``engine`` on what is left and write parts; returns the exit code.

    ``max_duration`` (seconds) is only recorded in the settings: a run with another limit starts afresh."""
    import sys

    model = dict(identity)
    if model.get("path") and os.path.isfile(model["path"]):  # the bytes name the model, not where it lies
        from genrekit.engine import file_digest

        model["path"], model["file_sha256"] = None, file_digest(model["path"])
    settings = {"model": model, "segments": segments, "top_k": top_k}
    if max_duration is not None:  # absent otherwise, so folders written before the option still resume
        settings["max_duration_s"] = max_duration
    out = PartitionedOutput(out_dir, kind="predict", part_size=part_size, settings=settings).open()
    todo = out.pending(files)
    if len(todo) < len(files):
        print(f"resuming: {len(files) - len(todo)} of {len(files)} files already done in {out_dir}", file=sys.stderr)
    for rec in missing:
        out.add(rec["file"], error=rec["error"])
    for _ in write_records(out, engine(todo) if todo else []):
        pass
    out.close()
    return report(out, total=len(files) + len(missing))


def report(out: PartitionedOutput, *, total: int) -> int:
    """Print where the output is and which inputs failed; exit code 1 when any failed."""
    import sys

    m = out.manifest
    rows = sum(p["rows"] for p in m["parts"])
    print(f"wrote {len(m['done'])} inputs ({rows} rows) in {len(m['parts'])} parts to {out.dir} "
          f"(manifest: {out.dir / MANIFEST})", file=sys.stderr)
    failed = list(m["failed"].values())
    if failed:
        print(f"{len(failed)} of {total} inputs failed (listed in the manifest; retried on the next run):",
              file=sys.stderr)
        for f in failed[:20]:
            print(f"  {f['error']}", file=sys.stderr)
    return 1 if failed else 0
