"""The one opener: a path, bytes or a file object become a :class:`Source` that every decoder reads.

A path is checked before anything opens it: it must be a regular file (after following symbolic
links), readable, non-empty and have an audio extension. A FIFO would block the first read forever and a
link to ``/dev/zero`` would read until memory runs out, so they are refused from ``stat`` alone. Names
may be any POSIX bytes: messages show them escaped (:func:`genrekit.names.display_name`), libsndfile gets
the raw bytes.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from genrekit.errors import AudioFileNotFoundError, DecodeError, EmptyAudioError, UnsupportedFormatError
from genrekit.names import display_name, text_name

SOUNDFILE_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".au", ".snd", ".aif", ".aiff", ".aifc", ".caf", ".w64", ".rf64"}
)
AV_EXTENSIONS = frozenset(
    {".mp3", ".m4a", ".aac", ".mp4", ".m4b", ".opus", ".webm", ".mka", ".mkv", ".wma", ".3gp", ".amr", ".ac3", ".mp2", ".alac"}
)
AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS | AV_EXTENSIONS


@dataclass(frozen=True, eq=False)
class Source:
    """Audio to decode: a checked path (``path``) or bytes in memory (``data``), with the name that
    messages show (``name``, escaped for terminals) and the extension that picks the decoder."""

    name: str
    ext: str
    path: str | None = None
    data: bytes | None = None

    @property
    def in_memory(self) -> bool:
        return self.data is not None

    def read(self, offset: int, n: int) -> bytes:
        """``n`` bytes from ``offset`` (short at the end), without keeping the file open."""
        if self.data is not None:
            return self.data[offset : offset + n]
        with os.fdopen(open_regular(self.path, self.name), "rb") as f:
            f.seek(offset)
            return f.read(n)

    def soundfile(self):
        """An open ``soundfile.SoundFile`` (raises RuntimeError / LibsndfileError: not for libsndfile).
        A path is opened here and checked on its descriptor (:func:`open_regular`); libsndfile reads
        that descriptor natively and closes it."""
        import soundfile as sf

        if self.data is not None:
            return sf.SoundFile(SeekClampedBytes(self.data))
        fd = open_regular(self.path, self.name)
        try:  # libsndfile owns (and closes, even when it fails) a duplicate; this one is closed here
            return sf.SoundFile(os.dup(fd), closefd=True)
        except sf.LibsndfileError as exc:  # its message names the path, as when libsndfile opened it
            raise sf.LibsndfileError(exc.code, f"Error opening {os.fsencode(self.path)!r}: ") from None
        finally:
            os.close(fd)

    def container(self):
        """An open PyAV container (raises ``av.error.FFmpegError``); a path is opened and checked here
        (:func:`open_regular`) and FFmpeg reads that file, named by the path so probing is unchanged."""
        import av

        if self.data is not None:
            return av.open(io.BytesIO(self.data), metadata_errors="replace")
        f = os.fdopen(open_regular(self.path, self.name), "rb")
        f.raw.name = self.path
        try:
            return _OwnedContainer(av.open(f, metadata_errors="replace"), f)
        except BaseException:
            f.close()
            raise

    def looks_mpeg(self) -> bool:
        """Data that starts like MPEG audio (an ID3 tag, a frame sync, or an Xing/Info/VBRI header after
        the tag): FFmpeg decodes it (libsndfile's mpg123 prints warnings to the terminal)."""
        head = self.read(0, 2)
        return (self.read(0, 3) == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)
                or bool(mp3_declared_samples(mp3_head(self.read))))


class _OwnedContainer:
    """A PyAV container that closes the file it reads when it is closed."""

    def __init__(self, container, file) -> None:
        self._container, self._file = container, file

    def __getattr__(self, name: str):
        return getattr(self._container, name)

    def close(self) -> None:
        try:
            self._container.close()
        finally:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_regular(path: str, name: str | None = None) -> int:
    """A read-only descriptor of ``path``, checked to be a regular file on the descriptor itself.

    :func:`check_path` looked with ``stat``; a file swapped for a FIFO or a device between that look and
    the open would block the open or flood the reader, so every open goes through here: non-blocking
    (a FIFO without a writer opens at once), then ``fstat``, then back to blocking reads."""
    shown = name or display_name(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise AudioFileNotFoundError(f"{shown}: no such file (removed after it was found)") from None
    except OSError as exc:
        raise DecodeError(f"{shown}: cannot be opened ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise AudioFileNotFoundError(f"{shown}: not a regular file but {file_kind(st.st_mode)} (replaced after "
                                         "it was found); only regular files are read")
        if getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def mp3_declared_samples(head: bytes) -> int | None:
    """Samples (per channel, encoder delay/padding included) that an MP3's Xing/Info/VBRI header
    declares, or None when there is no such header (LAME and FFmpeg write one). ``head`` starts at the
    first byte after any ID3v2 tag."""
    for i in range(min(len(head) - 4, 4096)):
        if head[i] != 0xFF or head[i + 1] & 0xE0 != 0xE0:
            continue
        version, layer = (head[i + 1] >> 3) & 3, (head[i + 1] >> 1) & 3
        if version == 1 or layer != 1 or head[i + 2] >> 4 in (0, 15) or (head[i + 2] >> 2) & 3 == 3:
            continue  # not an MPEG audio layer III frame header
        mono = head[i + 3] >> 6 == 3
        side, per_frame = ((17 if mono else 32), 1152) if version == 3 else ((9 if mono else 17), 576)
        x = i + 4 + side
        if head[x : x + 4] in (b"Xing", b"Info") and int.from_bytes(head[x + 4 : x + 8], "big") & 1:
            return int.from_bytes(head[x + 8 : x + 12], "big") * per_frame
        v = i + 36
        if head[v : v + 4] == b"VBRI":
            return int.from_bytes(head[v + 14 : v + 18], "big") * per_frame
        return None
    return None


def mp3_head(read) -> bytes:
    """The first 8 KB after an ID3v2 tag, from ``read(offset, n)``."""
    first = read(0, 10)
    start = 0
    if first[:3] == b"ID3" and len(first) == 10:
        size = (first[6] & 0x7F) << 21 | (first[7] & 0x7F) << 14 | (first[8] & 0x7F) << 7 | (first[9] & 0x7F)
        start = 10 + size + (10 if first[5] & 0x10 else 0)
    return read(start, 8192)


class SeekClampedBytes(io.BytesIO):
    """libsndfile may seek before the start of a damaged buffer; BytesIO would raise inside soundfile's C
    callback, where the exception is printed with a traceback instead of raised. Clamp to the start: the
    decoder then fails cleanly on what it reads."""

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            return super().seek(offset, whence)
        except ValueError:
            return super().seek(0)


def open_source(source, *, filename: str | os.PathLike | None = None) -> Source:
    """A :class:`Source` for a path (str or PathLike), bytes-like data, or a readable binary file object.

    ``bytes`` are always audio data (an upload), never a path: a bytes path goes through
    ``os.fsdecode`` first (the finder returns paths in that form).

    Paths are checked without being opened (:func:`check_path`). Data and file objects (read whole, as
    mirdata's ``load_audio`` takes one) are named by ``filename`` (its extension helps pick the decoder),
    else by the object's ``name``, else ``<memory>``.
    """
    if isinstance(source, Source):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)  # io.BytesIO shares an immutable bytes buffer instead of copying it
    elif hasattr(source, "read"):
        if filename is None and isinstance(getattr(source, "name", None), (str, bytes)):
            filename = os.path.basename(source.name)
        data = source.read()
        if not isinstance(data, bytes):
            raise TypeError(f"{display_name(filename or '<memory>')}: file object must be opened in binary mode")
    else:
        p = check_path(source)
        return Source(display_name(p), Path(p).suffix.lower(), path=p)
    name = text_name(filename) if filename is not None else "<memory>"
    if not data:
        raise EmptyAudioError(f"{display_name(name)}: empty file (0 bytes)")
    return Source(display_name(name), Path(name).suffix.lower(), data=data)


_KINDS = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def file_kind(mode: int) -> str:
    """What a ``stat`` mode names, in words (``a FIFO (named pipe)``)."""
    return _KINDS.get(stat.S_IFMT(mode), "a special file")


def regular_file_problem(path: str | bytes | os.PathLike) -> tuple[type, str] | None:
    """Why ``path`` is not a regular file genrekit may open, as (error class, reason), or None when it is.
    Only ``stat`` is used (symbolic links followed): nothing is opened, so a FIFO or a device cannot block
    or flood the caller."""
    p = text_name(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            return AudioFileNotFoundError, "broken symbolic link (it leads to no file); fix or remove the link"
        return AudioFileNotFoundError, "no such file"
    except OSError as exc:  # ELOOP, EACCES on a folder above, ENAMETOOLONG, ...
        if os.path.islink(p):
            return AudioFileNotFoundError, f"broken or looping symbolic link ({exc.strerror}); fix or remove the link"
        return AudioFileNotFoundError, f"cannot be read ({exc.strerror or exc})"
    if not stat.S_ISREG(st.st_mode):
        via = ", through a symbolic link" if os.path.islink(p) else ""
        return AudioFileNotFoundError, f"not a regular file but {file_kind(st.st_mode)}{via}; only regular files are read"
    return None


def check_path(path: str | bytes | os.PathLike) -> str:
    """The path as text (lossless), once it is known to be a readable, non-empty regular file with an
    audio extension; else the specific :class:`AudioError`, raised before the file is opened."""
    p = text_name(path)
    name = display_name(p)
    problem = regular_file_problem(p)
    if problem is not None:
        cls, reason = problem
        raise cls(f"{name}: {reason}")
    if not os.access(p, os.R_OK):
        raise DecodeError(f"{name}: permission denied (file is not readable)")
    if os.stat(p).st_size == 0:
        raise EmptyAudioError(f"{name}: empty file (0 bytes)")
    ext = Path(p).suffix.lower()
    if ext not in AUDIO_EXTENSIONS:
        raise UnsupportedFormatError(
            f"{name}: unsupported container {display_name(ext) or '(no extension)'!r}; "
            f"supported: {', '.join(sorted(e[1:] for e in AUDIO_EXTENSIONS))}"
        )
    return p
