"""Changing a user's file in place without ever losing it: one writer per file, unique temporary copies,
atomic replacement that keeps mode, owner, xattrs and times.

``tag --write`` and ``tag --undo`` both go through here. A file is changed only while genrekit holds an
exclusive ``flock`` on it (:func:`file_lock`), so two runs at once (two journals, or a run and an undo)
never write the same file: the second is told the file is busy and leaves it alone. Each process writes
its temporary copy under its own name (``.NAME.PID.genrekit-tmp``); a copy that a killed run left behind
is removed by the next run or undo that holds the file's lock (:func:`sweep_leftovers`,
:func:`remove_leftovers`), since nobody else can be writing it then.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from genrekit.errors import GenrekitError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks; the stat checks still guard
    fcntl = None  # type: ignore[assignment]

TEMP_SUFFIX = ".genrekit-tmp"
_LEFTOVER = re.compile(r"^\.(?P<name>.+?)(?:\.(?P<pid>\d+))?" + re.escape(TEMP_SUFFIX) + "$", re.DOTALL)


class TagError(GenrekitError):
    """A file's tags cannot be read or written safely; the message says why and the file is left alone."""


class ReadOnlyError(TagError):
    """The file (or its folder) is not writable, or belongs to someone else."""


class FileBusyError(TagError):
    """Another genrekit process is changing the file right now."""


class FileChangedError(GenrekitError):
    """A file's bytes are not the ones a step expects (edited by something else meanwhile)."""


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename in ``path`` durable (no-op where directories cannot be opened, e.g. Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def lock_now(fd: int, busy: GenrekitError) -> None:
    """Take an exclusive advisory lock on ``fd`` or raise ``busy`` at once: a batch never waits on
    another run, it reports the file and goes on (no-op where there are no advisory locks)."""
    if fcntl is None:  # pragma: no cover
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise busy from None


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd`` (``os.write`` may write less) and fsync it."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)


# ============================================================================================ temp copies


def temp_path_for(path: str | os.PathLike) -> Path:
    """This process's temporary name beside ``path``: unique per process, so two runs never share one."""
    p = Path(path)
    return p.with_name(f".{p.name}.{os.getpid()}{TEMP_SUFFIX}")


def leftovers(path: str | os.PathLike) -> list[Path]:
    """Temporary copies of ``path`` that genrekit processes left beside it (this one's included)."""
    p = Path(path)
    try:
        names = os.listdir(p.parent)
    except OSError:
        return []
    return [p.parent / n for n in names if (m := _LEFTOVER.match(n)) and m.group("name") == p.name]


def remove_leftovers(path: str | os.PathLike) -> int:
    """Remove the temporary copies a killed run left beside ``path``; how many there were.

    Call it only while holding :func:`file_lock` on ``path``: then no other genrekit process is writing
    a copy of it."""
    n = 0
    for tmp in leftovers(path):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            n += 1
    if n:
        fsync_dir(Path(path).parent)
    return n


def sweep_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Remove every temporary copy that killed genrekit runs left in ``folder`` (one listing for the
    folder, however many files it holds); returns what was removed.

    A copy is removed only while its file's lock can be taken (its writer, if any, is gone), or, when
    its file no longer exists, once the process that named it is gone."""
    folder = Path(folder)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    groups: dict[str, list[tuple[Path, int | None]]] = {}
    for n in names:
        if m := _LEFTOVER.match(n):
            groups.setdefault(m.group("name"), []).append((folder / n, int(m["pid"]) if m["pid"] else None))
    removed: list[Path] = []
    for name, temps in groups.items():
        try:
            with file_lock(folder / name):
                dead = [t for t, _ in temps]
        except (FileBusyError, FileChangedError):
            continue  # a live genrekit process is writing it: its copy is in use
        except OSError:  # the file is gone (or unreadable): only copies of processes that ended
            dead = [t for t, pid in temps if pid is None or not _alive(pid)]
        for t in dead:
            with contextlib.suppress(FileNotFoundError):
                t.unlink()
                removed.append(t)
    if removed:
        fsync_dir(folder)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process has no copy in flight while it sweeps
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, belongs to someone else
    return True


# ============================================================================================ locks


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, *, name: str | os.PathLike | None = None) -> Iterator[int]:
    """Hold an exclusive advisory lock on ``path`` (the file itself, opened read-only); yields its fd.

    Raises :class:`FileBusyError` at once when another genrekit process holds it (never waits: a batch
    goes on with the next file), and :class:`FileChangedError` when the name was replaced meanwhile (the
    lock would guard a file that is no longer there). ``name`` is how messages call the file."""
    shown = name if name is not None else path
    # non-blocking: a FIFO put at the name (or named by a crafted journal) opens at once and is refused
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
                 | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            from genrekit.audio.source import file_kind

            raise FileChangedError(f"{shown}: not a regular file but {file_kind(mode)}; left alone")
        if getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
        lock_now(fd, FileBusyError(f"{shown}: another genrekit run is changing this file now; left alone"))
        now = os.stat(path, follow_symlinks=False)
        st = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise FileChangedError(f"{shown}: replaced while genrekit was opening it; left alone")
        yield fd
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


@contextlib.contextmanager
def lock_file(path: str | os.PathLike, *, busy: str) -> Iterator[None]:
    """Hold an exclusive lock on the lock file ``path`` (made if missing; it stays, empty and harmless)
    for the block; raises :class:`FileBusyError` with the message ``busy`` when another process holds it."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        lock_now(fd, FileBusyError(busy))
        yield
    finally:
        os.close(fd)


def read_fd(fd: int) -> bytes:
    """The whole file behind ``fd`` (from its start)."""
    size = os.fstat(fd).st_size
    chunks, off = [], 0
    while True:
        b = os.pread(fd, max(size - off, 1 << 16), off)
        if not b:
            break
        chunks.append(b)
        off += len(b)
    return b"".join(chunks) if len(chunks) != 1 else chunks[0]


# ============================================================================================ replacing


def check_writable(path: str | os.PathLike, st: os.stat_result | None = None, *, name=None,
                   to: str = "tag it") -> None:
    """Raise ReadOnlyError unless genrekit may replace ``path`` (honouring read-only mode bits even as root)."""
    p = Path(path)
    shown = name if name is not None else p
    st = st or os.stat(p)
    if not (st.st_mode & 0o222) or not os.access(p, os.W_OK):
        raise ReadOnlyError(f"{shown}: read-only file; left alone (make it writable to {to})")
    if not os.access(p.parent, os.W_OK | os.X_OK):
        raise ReadOnlyError(f"{shown}: its folder is not writable, so it cannot be replaced safely; left alone")
    if st.st_nlink > 1:
        raise ReadOnlyError(f"{shown}: has {st.st_nlink} hard links; replacing it would split them; left alone")
    if hasattr(os, "geteuid") and os.geteuid() != 0 and st.st_uid != os.geteuid():
        raise ReadOnlyError(f"{shown}: belongs to another user; left alone")


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
