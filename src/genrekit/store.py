"""Storage that survives a kill: the one atomic file write, the one content-addressed cache and the
digests that key it (files, settings, tensors).

Every writer in genrekit (tables, journals, Parquet parts, caches, model files, metrics, figures, ONNX
exports) goes through :func:`atomic_writer` / :func:`atomic_path`, so a run killed at any moment (even by
SIGKILL or a power cut: the data is fsynced before the rename) leaves either the old file or the
complete new one, never half of one. Outputs that may land beside a user's files (playlists, ``--out``
tables, exports) pass a ``replace=`` policy (:func:`check_replace`): they never replace a file that
genrekit did not write; a cached item is never recomputed. Nothing here imports numpy,
torch or librosa at module level, so importing it is cheap (worker start-up, the CLI).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from genrekit.errors import GenrekitError

__all__ = [
    "Cache", "ForeignFileError", "atomic_path", "atomic_write_bytes", "atomic_write_text", "atomic_writer",
    "cache_key", "cache_root", "cached_bytes", "check_replace", "claim_folder", "file_digest", "genrekit_wrote",
    "ours_only", "remember_output", "remove_output", "settings_digest", "state_root", "tensors_sha256", "written_like",
]


# ============================================================================================ atomic files

_UMASK = os.umask(0o022)  # read once (os.umask can only be read by setting it), then put back
os.umask(_UMASK)


class ForeignFileError(GenrekitError):
    """An output would replace a file that genrekit did not write; the file is left as it is."""


def check_replace(path: str | os.PathLike, replace: bool | Callable[[Path], bool] = True) -> None:
    """Raise :class:`ForeignFileError` unless ``path`` may be replaced under the ``replace`` policy.

    ``True`` replaces anything (caches, run folders genrekit owns); ``False`` only creates new files; a
    callable replaces only an existing file it recognises as genrekit's own (a playlist's marker line, a
    journal's header, a table's header), or one that :func:`genrekit_wrote` and nobody changed since:
    outputs that may land beside a user's files never destroy one."""
    p = Path(path)
    if replace is True or not os.path.lexists(p):
        return
    if replace is not False and not os.path.islink(p) and p.is_file() and (replace(p) or genrekit_wrote(p)):
        return
    raise ForeignFileError(f"{p}: exists and was not written by genrekit; left as it is "
                           "(move it away or choose another name)")


def ours_only(path: Path) -> bool:
    """The :func:`check_replace` policy of outputs with no header to recognise (``.npz``, a
    side file): nothing is recognised by content, so only a file :func:`genrekit_wrote` (and nobody
    changed since) may be replaced."""
    return False


def remove_output(path: str | os.PathLike, replace: bool | Callable[[Path], bool] = ours_only) -> bool:
    """Remove a stale output (an error list, a finished journal) only when ``replace`` allows replacing
    it: a file of the same name that genrekit did not write stays. True when something was removed."""
    p = Path(path)
    if not os.path.lexists(p):
        return False
    try:
        check_replace(p, replace)
    except ForeignFileError:
        return False
    with contextlib.suppress(FileNotFoundError):
        p.unlink()
    return True


FOLDER_MARK = ".genrekit-output"


def claim_folder(path: str | os.PathLike, *, ours: Callable[[Path], bool] | None = None) -> Path:
    """Make ``path`` an output folder (a run folder, a report folder) whose files genrekit may replace:
    a new or empty folder is claimed (a hidden ``.genrekit-output`` mark), one claimed before or that
    ``ours(folder)`` recognises (folders written before the mark existed) is taken as it is; any other
    folder holding files, or a file at that name, raises :class:`ForeignFileError` before any work: the
    files inside are written with no policy of their own, so a user's folder is never written into."""
    p = Path(path)
    if os.path.lexists(p) and not p.is_dir():
        raise ForeignFileError(f"{p}: exists and is not a folder; left as it is (choose another --out)")
    if p.is_dir() and not (p / FOLDER_MARK).is_file():
        if any(True for _ in p.iterdir()) and not (ours is not None and ours(p)):
            raise ForeignFileError(f"{p}: a folder that genrekit did not write, and not empty; left as it is "
                                   "(choose a new or empty folder for --out)")
    p.mkdir(parents=True, exist_ok=True)
    if not (p / FOLDER_MARK).exists():
        with contextlib.suppress(OSError):
            with open(p / FOLDER_MARK, "x", encoding="utf-8") as f:
                f.write("written by genrekit: it may replace the files in this folder that it wrote\n")
    return p


def _output_record(path: str | os.PathLike) -> tuple[str, Path]:
    real = os.path.realpath(path)
    return real, state_root() / "outputs" / hashlib.sha256(os.fsencode(real)).hexdigest()[:32]


def remember_output(path: str | os.PathLike) -> None:
    """Note that genrekit wrote ``path`` with its present bytes, so a later run may replace it (a table
    without a header, a re-run with other inputs). Best effort: an unwritable state folder costs only that."""
    try:
        real, rec = _output_record(path)
        atomic_write_text(rec, json.dumps({"path": real, "sha256": file_digest(path)}))
    except OSError:
        pass


def genrekit_wrote(path: str | os.PathLike) -> bool:
    """True when :func:`remember_output` noted ``path`` with exactly the bytes it holds now."""
    try:
        real, rec = _output_record(path)
        note = json.loads(rec.read_text(encoding="utf-8"))
        return isinstance(note, dict) and note.get("path") == real and note.get("sha256") == file_digest(path)
    except (OSError, ValueError):
        return False


def _signature(head: bytes) -> bytes:
    """How a table or JSON output starts: its first line (a CSV header), or for JSON the opening lines up
    to the first key (``[`` ``{`` ``"file"``), values left out."""
    lines = head.split(b"\n")
    if not lines or lines[0].strip() not in (b"[", b"{"):
        return lines[0].rstrip(b"\r") if lines else b""
    out = []
    for line in lines[:8]:
        if b":" in line:
            out.append(line.split(b":", 1)[0])
            break
        out.append(line.rstrip(b"\r"))
    return b"\n".join(out)


def written_like(content: str | bytes) -> Callable[[Path], bool]:
    """A :func:`check_replace` policy for tables and JSON: replace an existing file only when it starts
    as ``content`` does (the same CSV header; a JSON array of records with the same first key), as the
    file an earlier genrekit run wrote there does; anything else at that name is someone else's."""
    new = _signature(content[:65536].encode("utf-8", "surrogateescape") if isinstance(content, str)
                     else bytes(content[:65536]))

    def ours(path: Path) -> bool:
        try:
            with open(path, "rb") as f:
                return bool(new) and _signature(f.read(65536)) == new
        except OSError:
            return False

    return ours


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "w", *, replace: bool | Callable[[Path], bool] = True,
                  **open_kwargs: Any) -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.

    Readers (and a later run after a crash or SIGKILL) see either the old file or the complete new
    one. On an exception the temporary file is removed and ``path`` is untouched. The new file keeps
    the permissions of the one it replaces, or gets those a plain ``open`` would give (0666 less the umask).
    ``replace`` is :func:`check_replace`'s policy."""
    if "w" not in mode and "x" not in mode:
        raise ValueError("atomic_writer only writes: use mode 'w' or 'wb'")
    with atomic_path(path, replace=replace) as tmp, open(tmp, mode.replace("x", "w"), **open_kwargs) as f:
        yield f


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = ".tmp",
                replace: bool | Callable[[Path], bool] = True) -> Iterator[Path]:
    """A temporary path beside ``path`` for writers that want a file name (pyarrow, matplotlib, ONNX):
    when the block ends without an exception the file is fsynced and renamed over ``path``.

    ``suffix`` ends the temporary name (``".png"`` for writers that infer the format from it); names
    start with a dot, so folder listings and dataset readers skip a leftover. On an exception the
    temporary file is removed and ``path`` is untouched. Unless ``replace`` is True (see
    :func:`check_replace`) the policy is checked before the work and again at the rename, and a new
    file is linked into place, so a file someone else created meanwhile is never replaced either."""
    p = Path(path)
    check_replace(p, replace)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=suffix, dir=p.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # whoever wrote it has closed it: make its bytes durable
            os.fsync(f.fileno())
        try:  # mkstemp made it 0600: a model or table written for others to read should stay readable
            mode = stat.S_IMODE(p.stat().st_mode)
        except OSError:
            mode = 0o666 & ~_UMASK
        os.chmod(tmp, mode)
        if replace is True:
            os.replace(tmp, p)
        else:
            check_replace(p, replace)
            try:
                if os.path.lexists(p):
                    os.replace(tmp, p)
                else:  # link, not rename: fails if a file of the same name appeared since the check
                    try:
                        os.link(tmp, p)
                    except FileExistsError:
                        raise
                    except OSError:  # a file system without hard links (exFAT, some network shares)
                        check_replace(p, replace)
                        os.replace(tmp, p)
                    else:
                        tmp.unlink()
            except FileExistsError:
                raise ForeignFileError(f"{p}: appeared while genrekit was writing it; left as it is") from None
            remember_output(p)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8",
                      replace: bool | Callable[[Path], bool] = True) -> None:
    """Write ``text`` to ``path`` atomically (newlines as given: no platform translation). A file name
    that is not UTF-8 (held as lone surrogates, see :mod:`genrekit.names`) is written as its own bytes."""
    with atomic_writer(path, "w", encoding=encoding, errors="surrogateescape", newline="", replace=replace) as f:
        f.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *,
                       replace: bool | Callable[[Path], bool] = True) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_writer(path, "wb", replace=replace) as f:
        f.write(data)


# ============================================================================================ cache


def state_root() -> Path:
    """``$XDG_STATE_HOME/genrekit`` (default ``~/.local/state/genrekit``): what genrekit keeps between runs
    that is not a cache (undo journals, the notes of which outputs it wrote)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "genrekit"


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/genrekit`` (default ``~/.cache/genrekit``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "genrekit"


def cached_bytes(path: str | os.PathLike, build: Callable[[], bytes], *, enabled: bool = True,
                 rebuild: bool = False) -> bytes:
    """The bytes cached at ``path`` (a built ONNX graph), or ``build()``'s, written there atomically.

    An empty file counts as missing; an unwritable cache (read-only, full) only costs the build again
    next time, never an error. ``enabled=False`` neither reads nor writes; ``rebuild`` ignores the file."""
    path = Path(path)
    if enabled and not rebuild and path.is_file():
        data = path.read_bytes()
        if data:
            return data
    data = build()
    if enabled:
        try:
            atomic_write_bytes(path, data)
        except OSError:
            pass  # the bytes in memory still serve this process
    return data


def tensors_sha256(tensors: Mapping[str, Any]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes (in name order): the integrity check of
    model and weight files."""
    import numpy as np  # here, not at the top: store stays cheap to import

    h = hashlib.sha256()
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        h.update(name.encode())
        h.update(str(arr.dtype).encode())
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes: the cache key, so renamed or copied files still hit the cache. Only a
    regular file is read (checked before opening: a FIFO would block, a link to /dev/zero never end)."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(errno.EINVAL, "not a regular file (a FIFO, device or socket); only regular files are read",
                      path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def settings_digest(settings: Mapping[str, Any]) -> str:
    """16 hex digits naming a settings mapping (key order does not matter): the cache's folder name."""
    blob = json.dumps(dict(settings), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_key(path: str | os.PathLike, settings: Mapping[str, Any]) -> str:
    """``<settings digest>-<content digest>``: what a result computed from ``path``'s bytes under
    ``settings`` is filed under, for caches that want one flat name per entry. :class:`Cache` files
    its entries under the same two digests (a folder per settings digest)."""
    return f"{settings_digest(settings)}-{file_digest(path)}"


class Cache:
    """Results keyed by file content and the settings that produced them: JSON values
    (:meth:`get` / :meth:`put`) or numpy arrays (:meth:`get_array` / :meth:`put_array`).

    Entries live in ``<root>/<namespace>/<settings digest>/<aa>/<content digest>.json`` (``.npy``) and are
    written atomically, so a killed run leaves only complete entries. Hashing is skipped for a file
    whose path, size, mtime and inode match a digest recorded earlier (the second run over 1000 clips
    then reads no audio at all). ``enabled=False`` makes every lookup a miss and stores nothing.
    """

    def __init__(self, namespace: str, settings: Mapping[str, Any], *, root: str | os.PathLike | None = None,
                 enabled: bool = True):
        if not namespace or "/" in namespace or namespace.startswith("."):
            raise ValueError(f"bad cache namespace {namespace!r}")
        self.namespace = namespace
        self.settings = dict(settings)
        self.enabled = enabled
        self.root = Path(root) if root is not None else cache_root()
        self.dir = self.root / namespace / settings_digest(self.settings)
        self._settings_written = False

    # -- keys
    def key(self, path: str | os.PathLike) -> str:
        """Content digest of ``path`` (memoised by path, size, mtime and inode)."""
        p = Path(path)
        st = p.stat()
        ident = f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"  # any POSIX name (genrekit.names)
        memo_id = hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()
        memo = self.root / "digests" / memo_id[:2] / memo_id
        if self.enabled:
            try:
                digest = memo.read_text().strip()
                if len(digest) == 64:
                    return digest
            except OSError:
                pass
        digest = file_digest(p)
        if self.enabled:
            with contextlib.suppress(OSError):
                atomic_write_text(memo, digest)
        return digest

    def _entry(self, key: str, ext: str = ".json") -> Path:
        return self.dir / key[:2] / f"{key}{ext}"

    def _write_settings(self) -> None:
        if not self._settings_written:
            atomic_write_text(self.dir / "settings.json", json.dumps(self.settings, sort_keys=True, indent=1, default=str))
            self._settings_written = True

    # -- values
    def get(self, key: str) -> Any | None:
        """The stored value, or None on a miss (an unreadable entry counts as a miss and is removed)."""
        if not self.enabled:
            return None
        e = self._entry(key)
        try:
            with open(e, encoding="utf-8") as f:
                return json.load(f)["value"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            with contextlib.suppress(OSError):
                e.unlink()
            return None

    def put(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value (NaN allowed) for ``key``."""
        if not self.enabled:
            return
        self._write_settings()
        atomic_write_text(self._entry(key), json.dumps({"value": value}, allow_nan=True))

    def get_array(self, key: str):
        """The stored numpy array, or None on a miss (an unreadable entry counts as a miss and is removed)."""
        if not self.enabled:
            return None
        import numpy as np

        e = self._entry(key, ".npy")
        try:
            return np.load(e, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                e.unlink()
            return None

    def put_array(self, key: str, array) -> None:
        """Store a numpy array (``.npy``, no pickle) for ``key``."""
        if not self.enabled:
            return
        import numpy as np

        self._write_settings()
        with atomic_writer(self._entry(key, ".npy"), "wb") as f:
            np.save(f, array, allow_pickle=False)

    def __contains__(self, key: str) -> bool:
        return self.enabled and self._entry(key).is_file()
