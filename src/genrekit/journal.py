"""Resumable, never-half-written outputs.

While a batch runs, each finished record is appended (and flushed) to ``<out>.partial.jsonl``; the final
file is written to a temporary name and renamed into place at the end. A run killed at any moment leaves
either no output file or a complete one, and a rerun with the same settings picks up the journal and only
does what is left. A torn last journal line (killed mid-write) is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from genrekit.engine import atomic_write_text


class Journal:
    """Append-only record journal beside an output file; see the module docstring."""

    def __init__(self, out: str | os.PathLike, *, settings: dict[str, Any]):
        self.out = Path(out)
        self.path = self.out.with_name(self.out.name + ".partial.jsonl")
        self.key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self._fh = None

    def load(self) -> dict[str, Any]:
        """Records finished by an earlier run with the same settings (others are discarded)."""
        if not self.path.is_file():
            return {}
        done: dict[str, Any] = {}
        with open(self.path, encoding="utf-8") as f:
            header = f.readline()
            try:
                if json.loads(header).get("settings") != self.key:
                    return {}
            except (json.JSONDecodeError, AttributeError):
                return {}
            for line in f:
                try:
                    item = json.loads(line)
                    done[item["key"]] = item["record"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    break  # torn tail of a killed run
        return done

    def append(self, key: str, record: Any) -> None:
        if self._fh is None:
            existing = self.load()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "w", encoding="utf-8")  # rewrite: drops a torn tail
            self._fh.write(json.dumps({"settings": self.key}) + "\n")
            for k, r in existing.items():
                self._fh.write(json.dumps({"key": k, "record": r}) + "\n")
        self._fh.write(json.dumps({"key": key, "record": record}) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def finish(self, text: str) -> Path:
        """Write the final output atomically and drop the journal."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        atomic_write_text(self.out, text)
        self.path.unlink(missing_ok=True)
        return self.out
