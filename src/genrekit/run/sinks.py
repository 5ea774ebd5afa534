"""Sinks: where a batch's results go, one :class:`~genrekit.run.items.Result` per input.

- :class:`CsvSink` (the feature table) and :class:`TableSink` (any one-file table, e.g. embeddings):
  every input's rows in input order, written atomically at the end, failures listed in
  ``OUT.errors.tsv``; nothing is journalled because the producer's content cache holds every finished file;
- :class:`JournalSink`: records journalled as they come, fsynced, and rendered once at the end
  (``predict --out FILE``, JSON / CSV / table);
- :class:`ParquetSink`: Parquet parts + manifest (``genrekit.parquet_out``), for libraries of any size.

A sink knows which inputs an earlier run finished (:meth:`Sink.pending`), so a killed run, rerun, does
only what is left; :func:`write` feeds one and closes it, or aborts it (keeping finished work) on Ctrl-C.

>>> sink = ParquetSink("out/", kind="predict", settings={"model": "shipped"}, to_rows=lambda r: [r])
>>> todo = sink.pending(files)
>>> write(map(record_result, predict_records(todo, GenreClassifier.load(), LocalEngine(jobs=4))), sink)
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from genrekit.parquet_out import MANIFEST, PartitionedOutput, input_stat, settings_key
from genrekit.run.items import ItemError, Result
from genrekit.store import atomic_write_text, check_replace, remove_output, written_like

__all__ = ["CsvSink", "JournalSink", "ParquetSink", "Sink", "Summary", "TableSink", "record_result", "write"]


def record_result(record: dict[str, Any]) -> Result:
    """A prediction (or tag) record as a :class:`Result` (failed when the record carries an error)."""
    return Result(record["file"], record, error=ItemError("", record["error"]) if record.get("error") else None)


@dataclass
class Summary:
    """What a sink received: inputs done, failed, taken from the cache, and finished by an earlier run."""

    ok: int = 0
    failed: int = 0
    cached: int = 0
    resumed: int = 0

    def count(self, r: Result) -> None:
        if r.ok:
            self.ok += 1
        else:
            self.failed += 1
        self.cached += bool(r.cached)


class Sink(Protocol):
    """Where a batch's results go. ``pending(inputs)`` says which inputs an earlier run left to do (and
    fixes the output order); ``add`` takes each :class:`Result`; ``close`` completes the output;
    ``abort`` (an interrupted run) keeps what is finished for the next run and writes no final file."""

    summary: Summary

    def pending(self, inputs: Sequence[str]) -> list[str]: ...

    def add(self, result: Result) -> None: ...

    def close(self) -> Any: ...

    def abort(self) -> None: ...


def write(results: Iterable[Result], sink: Sink, *, before: Iterable[Result] = ()) -> Summary:
    """Feed ``before`` (e.g. paths that could not be walked) then ``results`` into ``sink`` and close it.

    On an exception (Ctrl-C) the sink is aborted, keeping finished work, and the exception goes on."""
    try:
        for r in before:
            sink.add(r)
        for r in results:
            sink.add(r)
    except BaseException:
        sink.abort()
        raise
    sink.close()
    return sink.summary


class _Ordered:
    """Results kept in the inputs' order: the inputs given to :meth:`pending`, in that order (an input
    given twice appears twice), after any others (added without being pending: paths that could not
    be walked, in the order added)."""

    def __init__(self) -> None:
        self.summary = Summary()
        self._inputs: list[str] = []
        self._declared: set[str] = set()
        self._got: dict[str, Result] = {}
        self._extra: list[Result] = []

    def _declare(self, inputs: Sequence[str]) -> None:
        self._inputs += [str(i) for i in inputs]
        self._declared.update(self._inputs)

    def _keep(self, r: Result) -> bool:
        """Store ``r``; False when it was not one of the declared inputs."""
        self.summary.count(r)
        if r.input in self._declared:
            self._got[r.input] = r
            return True
        self._extra.append(r)
        return False

    def ordered(self) -> list[Result]:
        return self._extra + [self._got[i] for i in self._inputs if i in self._got]


_ERRORS_LIKE = written_like("path\terror\tmessage\n")


def _write_error_list(path: Path, errors: list[tuple[str, ItemError]]) -> None:
    """``path`` (``OUT.errors.tsv``) listing the inputs that failed; removed when none did (a stale
    list from an earlier run would be misleading)."""
    if errors:
        lines = ["path\terror\tmessage"] + [f"{p}\t{e.kind}\t{e.message}".replace("\n", " ") for p, e in errors]
        atomic_write_text(path, "\n".join(lines) + "\n", replace=_ERRORS_LIKE)
    else:
        remove_output(path, _ERRORS_LIKE)  # a user's file of that name stays


class TableSink(_Ordered):
    """Every input's rows (a result's value is its list of rows) in input order, written at the end as
    one file by ``writer(out, rows)`` (e.g. :func:`write_embeddings`, atomic), and ``OUT.errors.tsv``
    listing the inputs that failed, as :class:`CsvSink`. Nothing is journalled: the producer's content
    cache (the musicnn cache for embeddings) holds every finished file, so a rerun after a kill
    recomputes nothing and a killed run leaves no half-written output."""

    def __init__(self, out: str | os.PathLike, *, writer: Callable[[Path, list[dict[str, Any]]], Any]):
        super().__init__()
        self.out = Path(out)
        self.writer = writer
        self.errors_path = self.out.with_name(self.out.name + ".errors.tsv")
        self.rows = 0
        self.files = 0
        self.errors: list[tuple[str, ItemError]] = []

    def pending(self, inputs: Sequence[str]) -> list[str]:
        check_replace(self.errors_path, _ERRORS_LIKE)  # before the work: a user's file there stays
        self._declare(inputs)
        return [str(i) for i in inputs]

    def add(self, result: Result) -> None:
        self._keep(result)

    def close(self) -> Path:
        rows: list[dict[str, Any]] = []
        self.errors = []
        for r in self.ordered():
            if r.ok:
                self.files += 1
                rows += r.value
            else:
                self.errors.append((r.input, r.error))
        self.writer(self.out, rows)
        self.rows = len(rows)
        _write_error_list(self.errors_path, self.errors)
        return self.out

    def abort(self) -> None:
        pass  # the cache holds every finished file


class CsvSink(TableSink):
    """The feature table: one CSV of every file's rows in input order, written atomically at the end,
    and ``OUT.errors.tsv`` listing the files that failed (removed when none did).

    Nothing is journalled: every finished file is already in the feature cache, so a rerun after a
    kill recomputes nothing (``pending`` is every input)."""

    def __init__(self, out: str | os.PathLike, *, header: Sequence[str]):
        self.header = list(header)
        super().__init__(out, writer=self._write)

    @staticmethod
    def _format(v: object) -> str:
        return repr(v) if isinstance(v, float) else str(v)

    def _write(self, out: Path, rows: list[dict[str, Any]]) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.header)
        for row in rows:
            writer.writerow([self._format(row[c]) for c in self.header])
        atomic_write_text(out, buf.getvalue(), replace=written_like(buf.getvalue()))


def _is_partial_journal(path: Path) -> bool:
    """A ``.partial.jsonl`` that a :class:`JournalSink` wrote: its first line is ``{"settings": KEY}``."""
    try:
        with open(path, "rb") as f:
            head = json.loads(f.readline(4096))
    except (OSError, ValueError):
        return False
    return isinstance(head, dict) and list(head) == ["settings"]


class JournalSink(_Ordered):
    """Records rendered into one output file at the end (JSON, CSV, a table: ``render`` decides), and
    meanwhile journalled to ``<out>.partial.jsonl``, one fsynced line per record.

    A run killed at any moment leaves no output file or a complete one; a rerun with the same
    ``settings`` takes the journal's records for inputs unchanged since (same size and mtime) and does
    only the rest. A torn last line (killed mid-write) is ignored. ``render`` defaults to a JSON array;
    ``out=None`` journals nothing and :meth:`close` just returns the text (standard output)."""

    def __init__(self, out: str | os.PathLike | None, *, settings: dict[str, Any],
                 render: Callable[[list[Any]], str] | None = None):
        super().__init__()
        self.out = None if out is None else Path(out)
        self.path = None if self.out is None else self.out.with_name(self.out.name + ".partial.jsonl")
        self.key = settings_key(settings)
        self.render = render or (lambda records: json.dumps(records, indent=2) + "\n")
        self.records: list[Any] = []
        self.text = ""
        self._done: dict[str, dict[str, Any]] = {}
        self._fh = None

    def _load(self) -> dict[str, dict[str, Any]]:
        """Journal entries of an earlier run with the same settings (others are discarded)."""
        if self.path is None or not self.path.is_file():
            return {}
        done: dict[str, dict[str, Any]] = {}
        with open(self.path, encoding="utf-8") as f:
            try:
                if json.loads(f.readline()).get("settings") != self.key:
                    return {}
            except (json.JSONDecodeError, AttributeError):
                return {}
            for line in f:
                try:
                    item = json.loads(line)
                    done[item["key"]] = {"record": item["record"], "stat": item.get("stat")}
                except (json.JSONDecodeError, KeyError, TypeError):
                    break  # torn tail of a killed run
        return done

    def pending(self, inputs: Sequence[str]) -> list[str]:
        if self.path is not None:
            check_replace(self.path, _is_partial_journal)  # before the work: a user's file there stays
        self._declare(inputs)
        old = self._load()
        self._done = {i: e for i in map(str, inputs) if (e := old.get(i)) is not None and e["stat"] == input_stat(i)}
        for i, e in self._done.items():
            self._got[i] = record_result(e["record"])
        self.summary.resumed = len(self._done)
        return [str(i) for i in inputs if str(i) not in self._done]

    def append(self, key: str, record: Any) -> None:
        """Journal one finished record (flushed and fsynced before returning)."""
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            check_replace(self.path, _is_partial_journal)
            self._fh = open(self.path, "w", encoding="utf-8")  # rewrite: keeps what resumes, drops a torn tail
            self._fh.write(json.dumps({"settings": self.key}) + "\n")
            for k, e in self._done.items():
                self._fh.write(json.dumps({"key": k, "record": e["record"], "stat": e["stat"]}) + "\n")
        self._fh.write(json.dumps({"key": key, "record": record, "stat": input_stat(key)}) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def add(self, result: Result) -> None:
        if self._keep(result) and self.path is not None:
            self.append(result.input, result.value)

    def close(self) -> str:
        """Render every record in input order; write the output atomically and drop the journal."""
        self.abort()
        self.records = [r.value for r in self.ordered()]
        self.text = self.render(self.records)
        if self.out is not None:
            atomic_write_text(self.out, self.text, replace=written_like(self.text))
            remove_output(self.path, _is_partial_journal)
        return self.text

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class ParquetSink:
    """Parquet parts + ``_manifest.json`` (:class:`genrekit.parquet_out.PartitionedOutput`): rows written a
    part at a time, resumable at any size; ``to_rows`` turns a result's value into its rows; ``vectors``
    names the columns of fixed-length float32 vectors (``parquet_out.rows_to_table``)."""

    def __init__(self, directory: str | os.PathLike, *, kind: str, settings: dict[str, Any],
                 to_rows: Callable[[Any], list[dict[str, Any]]], part_size: int = 1000,
                 vectors: dict[str, int] | None = None):
        self.out = PartitionedOutput(directory, kind=kind, settings=settings, part_size=part_size, vectors=vectors)
        self.to_rows = to_rows
        self.summary = Summary()
        self._opened = False

    def pending(self, inputs: Sequence[str]) -> list[str]:
        if not self._opened:
            self.out.open()
            self._opened = True
        todo = self.out.pending(inputs)
        self.summary.resumed = len(inputs) - len(todo)
        return todo

    def add(self, result: Result) -> None:
        self.summary.count(result)
        if result.ok:
            self.out.add(result.input, self.to_rows(result.value))
        else:
            self.out.add(result.input, error=str(result.error))

    def close(self) -> Path:
        self.out.close()
        return self.out.dir

    def abort(self) -> None:
        self.out.close()  # finished parts and the manifest that lists them stay for the next run

    @property
    def failed(self) -> dict[str, dict[str, Any]]:
        """Inputs that failed (absolute path -> {path, size, mtime_ns, error}), as the manifest lists them."""
        return self.out.failed

    def describe(self, *, total: int) -> list[str]:
        """Where the output is and which inputs failed (the first 20), as lines to print."""
        m = self.out.manifest
        rows = sum(p["rows"] for p in m["parts"])
        lines = [f"wrote {len(m['done'])} inputs ({rows} rows) in {len(m['parts'])} parts to {self.out.dir} "
                 f"(manifest: {self.out.dir / MANIFEST})"]
        failed = list(m["failed"].values())
        if failed:
            lines.append(f"{len(failed)} of {total} inputs failed (listed in the manifest; retried on the next run):")
            lines += [f"  {f['error']}" for f in failed[:20]]
        return lines


