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

Any engine can feed this module (the local process pool or Ray): it only sees ``(input, rows | error)``;
``genrekit.run.sinks.ParquetSink`` is how batch runs use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from genrekit.errors import GenrekitError
from genrekit.store import atomic_path, atomic_write_text

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


def settings_key(settings: dict[str, Any]) -> str:
    """A short digest of the settings that decide an output's content (model, options): a manifest or a
    journal made with other settings is not resumed."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


class PartitionedOutput:
    """Write rows for many inputs as Parquet parts plus a manifest; see the module docstring.

    >>> out = PartitionedOutput("results/", kind="predict", settings={"model": "x"}).open()
    >>> todo = out.pending(files)            # inputs not finished by an earlier run
    >>> for f in todo: out.add(f, rows=[{"file": f, "genre": "rock"}])   # or out.add(f, error="...")
    >>> out.close()                          # flushes the last part
    """

    def __init__(self, directory: str | os.PathLike, *, kind: str, settings: dict[str, Any],
                 part_size: int = 1000, part_seconds: float = 120.0, vectors: dict[str, int] | None = None):
        self.dir = Path(directory)
        self.vectors = dict(vectors or {})  # columns of fixed-length float32 vectors: rows_to_table
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
            with atomic_path(path) as tmp:
                pq.write_table(table, str(tmp))
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
            table = rows_to_table(self._rows, vectors=self.vectors)
            with atomic_path(self.dir / part) as tmp:
                pq.write_table(table, str(tmp))
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
        atomic_write_text(self.dir / MANIFEST, json.dumps(self.manifest, indent=1, default=str))

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


def rows_to_table(rows: list[dict[str, Any]], *, vectors: dict[str, int] | None = None):
    """Rows (dicts) as a pyarrow Table: every column any row has (``Table.from_pylist`` alone takes the
    first row's keys and silently drops the others; a row without a column gets null), and each
    ``vectors`` column (name -> length) as ``fixed_size_list<float32>[length]``, which pandas reads as
    one float32 numpy array per cell (``np.stack(df[col])`` is the matrix)."""
    pa, _ = require_pyarrow()
    vectors = dict(vectors or {})
    names: dict[str, None] = {}
    for r in rows:
        names.update(dict.fromkeys(r))
    if not rows:
        return pa.table({c: pa.array([], pa.list_(pa.float32(), n)) for c, n in vectors.items()})
    columns = {}
    for c in names:
        values = [r.get(c) for r in rows]
        if c in vectors:
            n = vectors[c]
            bad = next((v for v in values if v is not None and len(v) != n), None)
            if bad is not None:
                raise OutputError(f"column {c!r} holds vectors of {n} values, got one of {len(bad)}")
            columns[c] = pa.array(values, pa.list_(pa.float32(), n))
        else:
            columns[c] = pa.array(values)
    return pa.table(columns)


def write_parquet(path: str | os.PathLike, rows: list[dict[str, Any]], *, vectors: dict[str, int] | None = None) -> None:
    """One Parquet file of ``rows`` (:func:`rows_to_table`), written atomically: a killed run leaves the
    old file or the new one, never half of it. An existing file is replaced only when it is a Parquet
    file with the same columns (an earlier run's output) or one genrekit wrote: never a user's file."""
    _, pq = require_pyarrow()
    table = rows_to_table(rows, vectors=vectors)

    def same_columns(p: Path) -> bool:
        try:
            return pq.read_schema(str(p)).names == table.schema.names
        except Exception:  # noqa: BLE001 - pyarrow raises several kinds for a file that is not Parquet
            return False

    with atomic_path(path, replace=same_columns) as tmp:
        pq.write_table(table, str(tmp))


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
def tag_structs(pairs: list | None) -> list[dict[str, Any]] | None:
    """``[[tag, score], ...]`` (a record's tags) as ``[{"tag": ..., "score": ...}, ...]``: a Parquet
    ``list<struct<tag: string, score: double>>``, best first.

    A list of structs rather than a JSON string: pandas gives each cell as an array of dicts
    (``[t["tag"] for t in row.tags]``), pyarrow / DuckDB / polars query it without parsing
    (``UNNEST(tags)``, ``list.eval``), and the scores stay numbers."""
    if pairs is None:
        return None
    return [{"tag": str(t), "score": float(s)} for t, s in pairs]


def predict_row(record: dict[str, Any]) -> dict[str, Any]:
    """A prediction record as one flat row: genre, duration, one ``score_<genre>`` column each, top-k,
    and, when the record has them, ``tags`` and ``styles`` (:func:`tag_structs`) and ``uncertain``
    (``--min-confidence``).

    Flat columns keep a 100,000-row table easy to query (``df.groupby("genre")``); the per-window
    timeline, when asked for, is kept losslessly as JSON text."""
    row: dict[str, Any] = {"file": record["file"], "genre": record["genre"], "duration_s": record["duration_s"]}
    scores = record.get("scores") or {}
    for g in sorted(scores):  # a fixed column order, whatever the ranking
        row[f"score_{g}"] = scores[g]
    row["top"] = [g for g, _ in record.get("top") or []]
    if "tags" in record:
        row["tags"] = tag_structs(record["tags"])
    if "styles" in record:  # the same list<struct<tag, score>> as tags: AudioSet genre classes, calibrated
        row["styles"] = tag_structs(record["styles"])
    if "uncertain" in record:
        row["uncertain"] = record["uncertain"]
    if "segments" in record:
        row["segments_json"] = json.dumps(record["segments"])
    return row


# ------------------------------------------------------------------------------------ tags rows
def tags_row(record: dict[str, Any]) -> dict[str, Any]:
    """A ``genrekit tags`` record as one row: file, model, duration, patches, ``tags``
    (:func:`tag_structs`, as ``predict_row``'s) and, with ``--segments``, the timeline as JSON text."""
    row: dict[str, Any] = {"file": record["file"], "model": record["model"], "duration_s": record["duration_s"],
                           "n_patches": record["n_patches"], "tags": tag_structs(record["tags"])}
    if "segments" in record:
        row["segments_json"] = json.dumps(record["segments"])
    return row
