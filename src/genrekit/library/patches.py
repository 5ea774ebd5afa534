"""Binary patches that turn a file's new bytes back into its old ones: what the undo journal stores
instead of a full backup of every file it changes (see :mod:`genrekit.library.undo`).

A tag edit changes a few hundred bytes of a file (or shifts the audio behind a grown tag), so a patch is
copies of stretches of the new file plus the few old bytes that differ. A patch is only used after it
has been checked to rebuild the original exactly; otherwise the whole original is stored.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import numpy as np

from genrekit.library.files import FileChangedError


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
    prefix = _match_len(a, b, 0, 0, m)  # in chunks: no whole-file temporaries (a 1-hour FLAC is 400 MB)
    suffix = _match_len_back(a, b, m - prefix)
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
    if i < end or stored >= len(old) or patched_sha256(new, patch) != patch["old_sha256"]:  # never trust a patch
        # that does not rebuild
        patch = {"ops": [["l", _b64(old)]], "new_size": len(new), "old_sha256": patch["old_sha256"]}
    return patch


def make_patch_file(old: bytes, new_path: str | os.PathLike) -> dict[str, Any]:
    """:func:`make_patch` for new bytes in a file, reading into memory only the stretch that differs.

    The common head and tail (a whole FLAC or MP3 but its tag, when the tag fits its padding) are
    compared in chunks straight from the file and become two copy operations; the stretch between
    them is patched in memory. So tagging a 1-hour FLAC holds one copy of the file, not three."""
    a = np.frombuffer(old, dtype=np.uint8)
    chunk = 1 << 22
    with open(new_path, "rb") as f:
        fd = f.fileno()
        n_new = os.fstat(fd).st_size
        m = min(len(old), n_new)
        prefix = 0
        while prefix < m:
            b = np.frombuffer(os.pread(fd, min(chunk, m - prefix), prefix), dtype=np.uint8)
            if not b.size:
                break
            k = _match_len(a, b, prefix, 0, b.size)
            prefix += k
            if k < b.size:
                break
        suffix, limit = 0, m - prefix
        while suffix < limit:
            c = min(chunk, limit - suffix)
            b = np.frombuffer(os.pread(fd, c, n_new - suffix - c), dtype=np.uint8)
            k = _match_len_back(a[: a.size - suffix], b, min(c, b.size))
            suffix += k
            if k < c:
                break
        mid = _pread_all(fd, n_new - suffix - prefix, prefix)
    inner = make_patch(memoryview(old)[prefix: len(old) - suffix], mid)  # type: ignore[arg-type]
    ops: list[list[Any]] = [["c", 0, prefix]] if prefix else []
    ops += [["c", int(op[1]) + prefix, int(op[2])] if op[0] == "c" else op for op in inner["ops"] if op != ["l", ""]]
    if suffix:
        ops.append(["c", n_new - suffix, suffix])
    patch = {"ops": ops, "new_size": n_new, "old_sha256": sha256_bytes(old)}
    if _patched_sha256_file(new_path, patch) != patch["old_sha256"]:  # never trust a patch that does not rebuild
        patch = {"ops": [["l", _b64(old)]], "new_size": n_new, "old_sha256": patch["old_sha256"]}
    return patch


def _pread_all(fd: int, n: int, offset: int) -> bytes:
    parts, got = [], 0
    while got < n:
        b = os.pread(fd, n - got, offset + got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def _patched_sha256_file(path: str | os.PathLike, patch: dict[str, Any]) -> str:
    """sha256 of what the patch rebuilds from the file at ``path``, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        fd = f.fileno()
        for op in patch["ops"]:
            if op[0] == "c":
                off, n = int(op[1]), int(op[2])
                while n > 0:
                    b = os.pread(fd, min(n, 1 << 22), off)
                    if not b:
                        return ""
                    h.update(b)
                    off, n = off + len(b), n - len(b)
            else:
                h.update(base64.b64decode(op[1]))
    return h.hexdigest()


def _match_len_back(a: np.ndarray, b: np.ndarray, limit: int) -> int:
    """Length of the common run at the ends of ``a`` and ``b`` (at most ``limit``), compared in chunks."""
    n, chunk = 0, 4096
    while n < limit:
        m = min(chunk, limit - n)
        neq = np.flatnonzero(a[a.size - n - m: a.size - n] != b[b.size - n - m: b.size - n])
        if neq.size:
            return n + (m - 1 - int(neq[-1]))
        n += m
        chunk = min(chunk * 4, 1 << 22)
    return n


def patched_sha256(new: bytes, patch: dict[str, Any]) -> str:
    """sha256 of the bytes :func:`apply_patch` would build, without building them (one more copy of a
    large file is what the check must not cost)."""
    h = hashlib.sha256()
    mv = memoryview(new)
    for op in patch["ops"]:
        if op[0] == "c":
            h.update(mv[int(op[1]): int(op[1]) + int(op[2])])
        else:
            h.update(base64.b64decode(op[1]))
    return h.hexdigest()


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
