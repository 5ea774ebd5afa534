"""Byte-exact undo for in-place file edits: binary patches, an fsynced journal, and atomic replacement.

A tag edit changes a few hundred bytes of a file (or shifts the audio behind a grown tag). Instead of
keeping a full backup of every file, each change is recorded as a patch that turns the *new* bytes back
into the *old* ones (:mod:`genrekit.library.patches`: copies of stretches of the new file plus the few old bytes
that differ). A patch is only used after it has been checked to rebuild the original exactly,
otherwise the whole original is stored.

The journal is JSON lines, every line flushed and fsynced before the next step:

``header`` (settings) -> ``folder`` (once per folder, before genrekit's first temporary copy there, so
undo can remove a copy that a run killed before its first ``change`` left) -> per file ``change`` (file, stat and sha256 before, sha256 after, old and new
values, the patch) -> the atomic replace -> ``done`` -> ... -> ``finished``.

So a run killed at any moment leaves each file either untouched or completely rewritten, and the journal
always knows how to get the original back: ``undo`` rebuilds every file whose current bytes are the
recorded *after* bytes, leaves files already original alone, and refuses files edited since.

One writer at a time: the journal is locked while a run (or an undo) has it open, records are appended
whole or not at all (a full disk cuts a failed record back off), and a line that is still torn (a kill
mid-line) is skipped and reported, never a reason to refuse the rest. Undo does not trust the journal:
it only restores a writable regular file holding exactly the recorded bytes, into the same audio with
other tags, keeping the file's present permission bits (see :func:`undo`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genrekit import __version__
from genrekit.errors import GenrekitError
from genrekit.library.files import (  # noqa: F401 - FileChangedError, FileMeta, fsync_dir: part of this API
    FileBusyError,
    FileChangedError,
    FileMeta,
    ReadOnlyError,
    check_writable,
    file_lock,
    finish_temp,
    fsync_dir,
    lock_now,
    read_fd,
    sweep_leftovers,
    temp_path_for,
    write_all,
)
from genrekit.library.patches import (  # noqa: F401 - part of this module's API
    MAX_FAR,
    PROBE,
    STEP,
    WINDOW,
    apply_patch,
    make_patch,
    make_patch_file,
    patch_size,
    patched_sha256,
    sha256_bytes,
)

JOURNAL_FORMAT = "genrekit-tag-journal"
JOURNAL_VERSION = 1


class JournalError(GenrekitError):
    """An undo journal is missing, unreadable, or belongs to other settings."""


# ============================================================================================ journal


def state_dir() -> Path:
    """``$XDG_STATE_HOME/genrekit`` (default ``~/.local/state/genrekit``): where journals live by default."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "genrekit"


class JournalBusyError(JournalError):
    """Another genrekit process is writing (or undoing) the journal right now."""


@dataclass
class JournalState:
    """What a journal says so far: its settings, every change and which of them completed; ``skipped``
    holds the numbers of lines that are not complete records (a run killed mid-line)."""

    header: dict[str, Any]
    changes: list[dict[str, Any]]
    done: set[int]
    finished: bool
    skipped: list[int] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)


def _open_journal(p: Path) -> int:
    """A read-only descriptor of the journal ``p``, refused unless it is a regular file: opened
    non-blocking and checked with ``fstat``, so a FIFO or ``/dev/zero`` given as a journal cannot hang
    undo or make it read forever."""
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise JournalError(f"{p}: no such journal") from None
    except OSError as exc:
        raise JournalError(f"{p}: cannot read the journal ({exc.strerror or exc})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise JournalError(f"{p}: a folder, not a journal")
        from genrekit.audio.source import file_kind

        raise JournalError(f"{p}: not a regular file but {file_kind(mode)}, not a journal")
    if getattr(os, "O_NONBLOCK", 0):
        os.set_blocking(fd, True)
    return fd


def _intact_change(it: dict[str, Any]) -> bool:
    """A change record with every field undo relies on, of the right type."""
    before, patch = it.get("before"), it.get("patch")
    return (isinstance(it.get("seq"), int) and isinstance(it.get("file"), str)
            and isinstance(before, dict) and isinstance(before.get("sha256"), str)
            and isinstance(it.get("after_sha256"), str) and isinstance(patch, dict)
            and isinstance(patch.get("ops"), list) and isinstance(patch.get("new_size"), int))


def _lock_fd(fd: int, path: Path, doing: str) -> None:
    """Take the journal's exclusive lock on ``fd`` or raise JournalBusyError (never waits)."""
    lock_now(fd, JournalBusyError(f"{path}: another genrekit run is writing this journal now; {doing}"))


class UndoJournal:
    """Append-only, fsynced journal of file changes (see the module docstring), one writer at a time.

    The writer holds an exclusive ``flock`` on the journal for as long as it is open, so a second run
    (or an undo) that would resume the same journal is refused with a clear message instead of
    interleaving lines. Each record is appended with one ``write`` on an ``O_APPEND`` descriptor and
    fsynced; a write that fails (a full disk) is cut back off, so the journal keeps only whole records."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd: int | None = None
        self._seq = 0
        self._folders: set[str] = set()

    # -- reading
    @staticmethod
    def read(path: str | os.PathLike) -> JournalState:
        """Parse a journal. Lines that are not complete records (torn by a kill, or cut by a full disk)
        are skipped and listed in ``skipped``: every intact change stays undoable."""
        p = Path(path)
        fd = _open_journal(p)
        try:
            lines = read_fd(fd).split(b"\n")
        except OSError as exc:
            raise JournalError(f"{p}: cannot read the journal ({exc.strerror or exc})") from None
        finally:
            os.close(fd)
        items, skipped = [], []
        for i, raw in enumerate(lines):
            if not raw.strip():
                continue
            try:
                it = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                it = None
            if not isinstance(it, dict) or (it.get("type") == "change" and not _intact_change(it)):
                skipped.append(i + 1)
                continue
            items.append(it)
        if not items or items[0].get("type") != "header" or items[0].get("format") != JOURNAL_FORMAT:
            raise JournalError(f"{p}: not a genrekit tag journal")
        changes = [it for it in items if it.get("type") == "change"]
        done = {it["seq"] for it in items if it.get("type") == "done" and isinstance(it.get("seq"), int)}
        finished = any(it.get("type") == "finished" for it in items)
        folders = [it["folder"] for it in items if it.get("type") == "folder" and isinstance(it.get("folder"), str)]
        return JournalState(items[0], changes, done, finished, skipped, folders)

    @staticmethod
    def is_journal(path: str | os.PathLike) -> bool:
        """True when ``path`` starts with a genrekit journal header (what may be replaced or resumed)."""
        try:
            fd = _open_journal(Path(path))
        except JournalError:
            return False
        try:
            with os.fdopen(fd, "rb") as f:
                head = json.loads(f.readline(1 << 20))
        except (OSError, ValueError):
            return False
        return isinstance(head, dict) and head.get("type") == "header" and head.get("format") == JOURNAL_FORMAT

    # -- writing
    def open(self, *, settings: dict[str, Any], resume: bool) -> JournalState | None:
        """Start the journal, or with ``resume`` continue an unfinished one with the same settings.

        A new journal appears with its header in one step (linked into place), so it never replaces
        a file and a reader never sees it empty. Raises JournalBusyError when another run holds it."""
        created = False
        if os.path.lexists(self.path) and not self.is_journal(self.path):
            raise JournalError(f"{self.path}: exists and is not a genrekit tag journal; left as it is "
                               "(pass another --journal)")
        if not (resume and os.path.lexists(self.path)):
            created = self._create(settings)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
                         | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot open the journal ({exc.strerror or exc})") from None
        state = None
        try:
            _lock_fd(fd, self.path, "wait for it to finish, or pass another --journal")
            if not created:
                state = self.read(self.path)  # under the lock: nobody appends meanwhile
                if state.header.get("settings") != settings:
                    raise JournalError(f"{self.path}: written with other settings; pass another --journal")
                if state.finished:
                    raise JournalError(f"{self.path}: that run already finished; pass another --journal")
                self._seq = max([int(c["seq"]) for c in state.changes], default=0)
                self._folders = set(state.folders)
                size = os.fstat(fd).st_size
                if size:
                    with open(self.path, "rb") as f:
                        f.seek(size - 1)
                        torn = f.read(1) != b"\n"
                    if torn:  # end a torn last line, so the next record starts clean
                        self._fd = fd
                        self._append(b"\n")
        except BaseException:
            self._fd = None
            os.close(fd)
            raise
        self._fd = fd
        return state

    def _create(self, settings: dict[str, Any]) -> bool:
        """Put a journal holding only its header at ``self.path``; False when the name exists already."""
        line = json.dumps({"type": "header", "format": JOURNAL_FORMAT, "version": JOURNAL_VERSION,
                           "genrekit": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                           "settings": settings}, ensure_ascii=False).encode("utf-8") + b"\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot create the journal ({exc.strerror or exc})") from None
        try:
            try:
                write_all(fd, line)
            finally:
                os.close(fd)
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return False
            except OSError:  # a file system without hard links: create exclusively instead
                try:
                    with open(self.path, "xb") as f:
                        f.write(line)
                        f.flush()
                        os.fsync(f.fileno())
                except FileExistsError:
                    return False
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot create the journal ({exc.strerror or exc})") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        fsync_dir(self.path.parent)
        return True

    def _append(self, data: bytes) -> None:
        """Append ``data`` and fsync it; on failure cut the journal back to its last whole record."""
        assert self._fd is not None, "journal not open"
        fd = self._fd
        size = os.fstat(fd).st_size
        try:
            write_all(fd, data)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
                os.fsync(fd)
            raise JournalError(f"{self.path}: cannot write the undo journal ({exc.strerror or exc}); stopped "
                               "here, and every change the journal records can still be undone") from None

    def _write(self, item: dict[str, Any]) -> None:
        self._append(json.dumps(item, ensure_ascii=False).encode("utf-8", "backslashreplace") + b"\n")  # names.json_escaped

    def record_change(self, *, file: str, before: dict[str, Any], after_sha256: str, old: Any, new: Any,
                      patch: dict[str, Any]) -> int:
        """Record a change before it is made; returns its sequence number for :meth:`record_done`."""
        seq = self._seq + 1
        self._write({"type": "change", "seq": seq, "file": file, "before": before,
                     "after_sha256": after_sha256, "old": old, "new": new, "patch": patch})
        self._seq = seq
        return seq

    def record_folder(self, folder: str) -> None:
        """Record, once per folder, that this run is about to put temporary copies in ``folder``: a run
        killed before its first change there still leaves undo (and the next run) a folder to sweep."""
        if folder not in self._folders:
            self._write({"type": "folder", "folder": folder})
            self._folders.add(folder)

    def record_done(self, seq: int) -> None:
        self._write({"type": "done", "seq": seq})

    def finish(self, summary: dict[str, Any]) -> None:
        try:
            self._write({"type": "finished", "summary": summary})
        finally:
            self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None


# ============================================================================================ undo


@dataclass
class UndoResult:
    file: str
    status: str  # "restored", "already original", "changed since", "read-only", "missing", "error", "skipped line"
    message: str = ""


def undo(path: str | os.PathLike) -> Iterator[UndoResult]:
    """Restore every file a journal changed to its original bytes, newest change first.

    Idempotent: a file already original is left alone, so an interrupted undo can simply be rerun. The
    journal is not trusted: a file is restored only when it holds exactly the bytes the change recorded
    (else it was edited since and is left alone), is still a writable regular file of the user's (a file
    made read-only since is respected), and the restored bytes are the same kind of audio file with the
    same audio frames (only tags differ: what ``tag`` changes). The file keeps its present permission
    bits, never setuid, setgid or sticky ones. Damaged lines are reported and skipped; every intact
    change is restored. Temporary copies that killed runs left beside the files are removed."""
    p = Path(path)
    jfd = _open_journal(p)
    try:
        _lock_fd(jfd, p, "undo it when that run has finished")
        state = UndoJournal.read(p)
        for n in state.skipped:
            yield UndoResult(str(p), "skipped line", f"{p}: line {n} is not a complete record (a run killed while "
                             "writing it?); skipped, every intact change is restored")
        folders = [os.path.dirname(ch["file"]) for ch in state.changes] + state.folders
        for folder in dict.fromkeys(f for f in folders if os.path.isabs(f)):
            sweep_leftovers(folder)
        for ch in reversed(state.changes):
            yield _undo_one(ch)
    finally:
        os.close(jfd)


def _undo_one(ch: dict[str, Any]) -> UndoResult:
    file = ch["file"]
    if not os.path.isabs(file):
        return UndoResult(file, "error", f"{file}: not an absolute path (journal damaged?); left alone")
    if os.path.islink(file):
        return UndoResult(file, "changed since", f"{file}: a symbolic link now, not the file genrekit wrote; "
                          "left as it is")
    try:
        with file_lock(file) as fd:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return UndoResult(file, "changed since", f"{file}: not a regular file now; left as it is")
            digest = _fd_sha256(fd)
            before = ch["before"]
            if digest == before["sha256"]:
                return UndoResult(file, "already original")
            if digest != ch["after_sha256"]:
                return UndoResult(file, "changed since", f"{file}: edited after genrekit wrote it; left as it is")
            check_writable(file, st, to="undo")
            meta = FileMeta(st.st_mode & 0o777, st.st_uid, st.st_gid, int(before.get("atime_ns", st.st_atime_ns)),
                            int(before.get("mtime_ns", st.st_mtime_ns)))
            _restore(file, fd, st, ch["patch"], before["sha256"], meta)
    except FileNotFoundError:
        return UndoResult(file, "missing", f"{file}: no longer exists")
    except ReadOnlyError as exc:
        return UndoResult(file, "read-only", str(exc))
    except FileBusyError as exc:
        return UndoResult(file, "error", str(exc))
    except _Changed as exc:
        return UndoResult(file, "changed since", str(exc))
    except (OSError, GenrekitError) as exc:
        return UndoResult(file, "error", f"{file}: {exc}" if not str(exc).startswith(file) else str(exc))
    except (ValueError, TypeError, OverflowError, KeyError, IndexError) as exc:
        return UndoResult(file, "error", f"{file}: the journal's record is damaged ({exc}); left alone")
    return UndoResult(file, "restored")


class _Changed(FileChangedError):
    """The file changed while undo was rebuilding it."""


def _fd_sha256(fd: int) -> str:
    h = hashlib.sha256()
    off = 0
    while b := os.pread(fd, 1 << 22, off):
        h.update(b)
        off += len(b)
    return h.hexdigest()


def _restore(file: str, fd: int, st: os.stat_result, patch: dict[str, Any], old_sha256: str, meta: FileMeta) -> None:
    """Rebuild the original from the file (``fd``, locked) and the patch straight into this process's
    temporary copy, check it, and rename it into place: the file is never held in memory whole."""
    if st.st_size != int(patch["new_size"]):
        raise FileChangedError(f"{file}: the patch expects {patch['new_size']} bytes, the file has {st.st_size}")
    path = Path(file)
    tmp = temp_path_for(path)
    tmp.unlink(missing_ok=True)
    try:
        h = hashlib.sha256()
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            for op in patch["ops"]:
                if op[0] == "c":
                    off, n = int(op[1]), int(op[2])
                    if off < 0 or n < 0 or off + n > st.st_size:
                        raise FileChangedError("patch copies beyond the end of the file (journal damaged?)")
                    while n > 0:
                        b = os.pread(fd, min(n, 1 << 22), off)
                        if not b:
                            raise _Changed(f"{file}: shorter than when undo began; left as it is")
                        out.write(b)
                        h.update(b)
                        off, n = off + len(b), n - len(b)
                elif op[0] == "l":
                    b = base64.b64decode(op[1])
                    out.write(b)
                    h.update(b)
                else:
                    raise FileChangedError(f"unknown patch operation {op[0]!r} (journal damaged?)")
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != old_sha256:
            raise FileChangedError(f"{file}: the patch does not rebuild the original (journal damaged?)")
        _check_only_tags_differ(file, tmp, path)
        now = os.stat(path, follow_symlinks=False)
        if (now.st_ino, now.st_size, now.st_mtime_ns) != (st.st_ino, st.st_size, st.st_mtime_ns):
            raise _Changed(f"{file}: changed while genrekit was undoing; left as it is")
        finish_temp(tmp, path, meta=meta, keep_times=True)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _check_only_tags_differ(file: str, old: bytes | Path, new: bytes | Path) -> None:
    """Raise unless ``old`` and ``new`` (bytes or files) are the same supported audio format with
    identical audio frames: a journal can only make undo change what ``tag`` changed, whoever wrote it."""
    from genrekit.library.tagformats import audio_frames_digest, open_tags

    name = os.path.basename(file)
    try:
        f_new, fam_new = open_tags(new, name)
        f_old, fam_old = open_tags(old, name)
        same = type(f_new) is type(f_old) and fam_new == fam_old
        del f_new, f_old
        same = same and audio_frames_digest(old, name=file) == audio_frames_digest(new, name=file)
    except GenrekitError as exc:
        raise FileChangedError(f"{file}: undo would write bytes that are not this audio file with other tags "
                               f"({exc}); not written by genrekit's tag? left alone") from None
    if not same:
        raise FileChangedError(f"{file}: undo would change more than the tags (other audio or format); "
                               "not written by genrekit's tag? left alone")
