"""Byte-exact undo for in-place file edits: binary patches, an fsynced journal, and atomic replacement.

A tag edit changes a few hundred bytes of a file (or shifts the audio behind a grown tag). Instead of
keeping a full backup of every file, each change is recorded as a patch that turns the *new* bytes back
into the *old* ones (:func:`make_patch`: copies of stretches of the new file plus the few old bytes
that differ). A patch is only used after it has been checked to rebuild the original exactly,
otherwise the whole original is stored.

The journal is JSON lines, every line flushed and fsynced before the next step:

``header`` (settings) -> per file ``change`` (file, stat and sha256 before, sha256 after, old and new
values, the patch) -> the atomic replace -> ``done`` -> ... -> ``finished``.

So a run killed at any moment leaves each file either untouched or completely rewritten, and the journal
always knows how to get the original back: ``undo`` rebuilds every file whose current bytes are the
recorded *after* bytes, leaves files already original alone, and refuses files edited since.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genrekit import __version__
from genrekit.errors import GenrekitError

JOURNAL_FORMAT = "genrekit-tag-journal"
JOURNAL_VERSION = 1


class JournalError(GenrekitError):
    """An undo journal is missing, unreadable, or belongs to other settings."""


class FileChangedError(GenrekitError):
    """A file's bytes are not the ones a step expects (edited by something else meanwhile)."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ============================================================================================ patches


PROBE = 32  # bytes of the old file looked up in the new one to find where a stretch moved to
STEP = 8  # old bytes taken literally when no stretch matches
WINDOW = 4096  # look near where the last match ended first (tag edits shift data by little)
MAX_FAR = 64  # whole-file searches per patch (data moved far, e.g. a grown MP4 moov)


def _match_len(a: np.ndarray, b: np.ndarray, i: int, j: int, limit: int) -> int:
    """Length of the common run of ``a[i:]`` and ``b[j:]`` (at most ``limit``), compared in chunks."""
    n, chunk = 0, 4096
    limit = min(limit, a.size - i, b.size - j)
    while n < limit:
        m = min(chunk, limit - n)
        neq = np.flatnonzero(a[i + n: i + n + m] != b[j + n: j + n + m])
        if neq.size:
            return n + int(neq[0])
        n += m
        chunk = min(chunk * 4, 1 << 22)
    return n


def make_patch(old: bytes, new: bytes) -> dict[str, Any]:
    """A JSON-able patch that rebuilds ``old`` from ``new``; verified before it is returned.

    The patch is a list of operations: copy a stretch of the new bytes (``["c", offset, length]``) or
    insert stored old bytes (``["l", base64]``). Stretches are found rsync-style, by looking each
    ``PROBE`` bytes of the old file up in the new one, near the last match first: a tag that grew into
    its padding shifts the frames after it by a few bytes, an Ogg stream's renumbered pages differ by 8
    bytes each, an MP4's ``mdat`` moves behind a grown ``moov``; all of these come out as long copies
    and a few stored bytes. Should the result not rebuild ``old`` exactly, or not be smaller than
    ``old``, the patch stores the whole original instead."""
    a = np.frombuffer(old, dtype=np.uint8)
    b = np.frombuffer(new, dtype=np.uint8)
    m = min(a.size, b.size)
    neq = np.flatnonzero(a[:m] != b[:m])
    prefix = int(neq[0]) if neq.size else m
    tail_a, tail_b = a[prefix:][::-1], b[prefix:][::-1]
    mm = min(tail_a.size, tail_b.size)
    neq = np.flatnonzero(tail_a[:mm] != tail_b[:mm])
    suffix = int(neq[0]) if neq.size else mm
    end = len(old) - suffix
    ops: list[list[Any]] = [["c", 0, prefix]] if prefix else []
    lit = bytearray()
    stored = 0
    i, guess, far = prefix, prefix, 0
    budget = max(len(old) // 2, 1 << 16)
    while i < end and stored <= budget:
        j = -1
        if i + PROBE <= end:
            probe = old[i: i + PROBE]
            j = new.find(probe, max(0, guess - WINDOW), guess + WINDOW + PROBE)
            if j < 0 and not lit and far < MAX_FAR:
                far += 1
                j = new.find(probe)
        if j >= 0:
            n = _match_len(a, b, i, j, end - i)
            if lit:
                ops.append(["l", _b64(bytes(lit))])
                lit = bytearray()
            ops.append(["c", j, n])
            i, guess = i + n, j + n
        else:
            step = min(STEP, end - i)
            lit += old[i: i + step]
            stored += step
            i += step
    if lit:
        ops.append(["l", _b64(bytes(lit))])
    if suffix:
        ops.append(["c", len(new) - suffix, suffix])
    patch = {"ops": ops, "new_size": len(new), "old_sha256": sha256_bytes(old)}
    if i < end or stored >= len(old) or apply_patch(new, patch) != old:  # never trust a patch that does not rebuild
        patch = {"ops": [["l", _b64(old)]], "new_size": len(new), "old_sha256": patch["old_sha256"]}
    return patch


def apply_patch(new: bytes, patch: dict[str, Any]) -> bytes:
    """The old bytes a patch from :func:`make_patch` describes, given the new bytes."""
    if len(new) != patch["new_size"]:
        raise FileChangedError(f"patch expects {patch['new_size']} bytes, the file has {len(new)}")
    out = bytearray()
    for op in patch["ops"]:
        if op[0] == "c":
            off, n = int(op[1]), int(op[2])
            if off < 0 or off + n > len(new):
                raise FileChangedError("patch copies beyond the end of the file (journal damaged?)")
            out += new[off: off + n]
        elif op[0] == "l":
            out += base64.b64decode(op[1])
        else:
            raise FileChangedError(f"unknown patch operation {op[0]!r} (journal damaged?)")
    return bytes(out)


def patch_size(patch: dict[str, Any]) -> int:
    """Bytes of original data the patch stores (what undo costs on disk, before base64)."""
    return sum(len(base64.b64decode(op[1])) for op in patch["ops"] if op[0] == "l")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ============================================================================================ atomic replace


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename in ``path`` durable (no-op where directories cannot be opened, e.g. Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temp_path_for(path: str | os.PathLike) -> Path:
    """The one temporary name genrekit uses beside ``path``: fixed, so a rerun after a kill removes it."""
    p = Path(path)
    return p.with_name(f".{p.name}.genrekit-tmp")


def copy_xattrs(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Extended attributes (Finder tags, SELinux labels, ...) follow the file where the OS has them."""
    if not hasattr(os, "listxattr"):
        return
    try:
        names = os.listxattr(src)
    except OSError:
        return
    for name in names:
        with contextlib.suppress(OSError):
            os.setxattr(dst, name, os.getxattr(src, name))


@dataclass(frozen=True)
class FileMeta:
    """What must survive a rewrite: permissions, owner and times (ns)."""

    mode: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileMeta:
        return cls(st.st_mode & 0o7777, st.st_uid, st.st_gid, st.st_atime_ns, st.st_mtime_ns)


def replace_with(path: str | os.PathLike, data: bytes, *, meta: FileMeta, keep_times: bool = True) -> None:
    """Atomically replace ``path`` by ``data`` keeping ``meta``'s mode, owner and (with keep_times) times.

    Written to :func:`temp_path_for`, fsynced, renamed over ``path``, directory fsynced: readers and a
    run killed at any moment see the old file or the complete new one."""
    p = Path(path)
    tmp = temp_path_for(p)
    tmp.unlink(missing_ok=True)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        finish_temp(tmp, p, meta=meta, keep_times=keep_times)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def finish_temp(tmp: Path, path: Path, *, meta: FileMeta, keep_times: bool) -> None:
    """Give a written, fsynced temporary file ``meta`` and ``path``'s xattrs; rename it over ``path``."""
    st = os.stat(tmp)
    if hasattr(os, "chown") and (meta.uid, meta.gid) != (st.st_uid, st.st_gid):
        os.chown(tmp, meta.uid, meta.gid)  # PermissionError: the caller reports "owned by another user"
    os.chmod(tmp, meta.mode)
    copy_xattrs(path, tmp)
    if keep_times:
        os.utime(tmp, ns=(meta.atime_ns, meta.mtime_ns))
    os.replace(tmp, path)
    fsync_dir(path.parent)


# ============================================================================================ journal


def state_dir() -> Path:
    """``$XDG_STATE_HOME/genrekit`` (default ``~/.local/state/genrekit``): where journals live by default."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "genrekit"


@dataclass
class JournalState:
    """What a journal says so far: its settings, every change and which of them completed."""

    header: dict[str, Any]
    changes: list[dict[str, Any]]
    done: set[int]
    finished: bool


class UndoJournal:
    """Append-only, fsynced journal of file changes (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fh = None
        self._seq = 0

    # -- reading
    @staticmethod
    def read(path: str | os.PathLike) -> JournalState:
        """Parse a journal; a torn last line (a kill mid-write) is ignored, anything else is an error."""
        p = Path(path)
        try:
            lines = p.read_bytes().split(b"\n")
        except FileNotFoundError:
            raise JournalError(f"{p}: no such journal") from None
        except OSError as exc:
            raise JournalError(f"{p}: cannot read the journal ({exc})") from None
        items = []
        for i, raw in enumerate(lines):
            if not raw.strip():
                continue
            try:
                items.append(json.loads(raw))
            except json.JSONDecodeError:
                if i >= len(lines) - 2:  # only the last line may be torn
                    break
                raise JournalError(f"{p}: line {i + 1} is not JSON: the journal is damaged") from None
        if not items or items[0].get("type") != "header" or items[0].get("format") != JOURNAL_FORMAT:
            raise JournalError(f"{p}: not a genrekit tag journal")
        changes = [it for it in items if it.get("type") == "change"]
        done = {int(it["seq"]) for it in items if it.get("type") == "done"}
        finished = any(it.get("type") == "finished" for it in items)
        return JournalState(items[0], changes, done, finished)

    # -- writing
    def open(self, *, settings: dict[str, Any], resume: bool) -> JournalState | None:
        """Start the journal, or with ``resume`` continue an unfinished one with the same settings."""
        state = None
        if resume and self.path.is_file():
            state = self.read(self.path)
            if state.header.get("settings") != settings:
                raise JournalError(f"{self.path}: written with other settings; pass another --journal")
            if state.finished:
                raise JournalError(f"{self.path}: that run already finished; pass another --journal")
            self._seq = max([int(c["seq"]) for c in state.changes], default=0)
            self._fh = open(self.path, "ab")
            self._fh.write(b"\n")  # end a torn last line, if any, so the next record starts clean
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "xb")
            self._write({"type": "header", "format": JOURNAL_FORMAT, "version": JOURNAL_VERSION,
                         "genrekit": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                         "settings": settings})
            fsync_dir(self.path.parent)
        return state

    def _write(self, item: dict[str, Any]) -> None:
        assert self._fh is not None, "journal not open"
        self._fh.write(json.dumps(item, ensure_ascii=False).encode("utf-8", "backslashreplace") + b"\n")  # names.json_escaped
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def record_change(self, *, file: str, before: dict[str, Any], after_sha256: str, old: Any, new: Any,
                      patch: dict[str, Any]) -> int:
        """Record a change before it is made; returns its sequence number for :meth:`record_done`."""
        self._seq += 1
        self._write({"type": "change", "seq": self._seq, "file": file, "before": before,
                     "after_sha256": after_sha256, "old": old, "new": new, "patch": patch})
        return self._seq

    def record_done(self, seq: int) -> None:
        self._write({"type": "done", "seq": seq})

    def finish(self, summary: dict[str, Any]) -> None:
        self._write({"type": "finished", "summary": summary})
        self.close()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


# ============================================================================================ undo


@dataclass
class UndoResult:
    file: str
    status: str  # "restored", "already original", "changed since", "missing", "error"
    message: str = ""


def undo(path: str | os.PathLike) -> Iterator[UndoResult]:
    """Restore every file a journal changed to its original bytes, newest change first.

    Idempotent: a file already original is left alone, so an interrupted undo can simply be rerun. A
    file whose bytes are neither the recorded result nor the original was edited since, and is left
    alone with the reason (restoring it would lose that edit)."""
    state = UndoJournal.read(path)
    for ch in reversed(state.changes):
        file = ch["file"]
        try:
            data = Path(file).read_bytes()
        except FileNotFoundError:
            yield UndoResult(file, "missing", f"{file}: no longer exists")
            continue
        except OSError as exc:
            yield UndoResult(file, "error", f"{file}: {exc}")
            continue
        digest = sha256_bytes(data)
        before = ch["before"]
        if digest == before["sha256"]:
            yield UndoResult(file, "already original")
            continue
        if digest != ch["after_sha256"]:
            yield UndoResult(file, "changed since", f"{file}: edited after genrekit wrote it; left as it is")
            continue
        try:
            old = apply_patch(data, ch["patch"])
            if sha256_bytes(old) != before["sha256"]:
                raise FileChangedError(f"{file}: the patch does not rebuild the original (journal damaged?)")
            st = os.stat(file)
            meta = FileMeta(int(before.get("mode", st.st_mode & 0o7777)), st.st_uid, st.st_gid,
                            int(before.get("atime_ns", st.st_atime_ns)), int(before["mtime_ns"]))
            replace_with(file, old, meta=meta)
        except (OSError, GenrekitError) as exc:
            yield UndoResult(file, "error", f"{file}: {exc}")
            continue
        yield UndoResult(file, "restored")
