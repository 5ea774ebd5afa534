"""Uploads: the request body read into memory under size and time limits, and the slots uploads hold.

Why it is careful: the body comes from strangers. It is parsed in memory (never spooled to disk), its
size is checked on ``Content-Length`` and again on the bytes received, and its arrival is timed. Each
upload holds one of a few slots (memory stays bounded); a client that stalls or trickles must not keep
its slot from the clients behind it, so a waiting request takes the slot of the stalest upload (408 to
that one), and every body has a deadline sized by its length.
"""

from __future__ import annotations

import asyncio
import re
from contextlib import asynccontextmanager
from pathlib import PurePosixPath
from typing import Any

ENVELOPE_BYTES = 64 * 1024  # multipart boundaries, part headers and small form fields on top of the file
MAX_FIELD_BYTES = 1024
MAX_PARTS = 16
# RFC 2046 caps a multipart boundary at 70 characters; python-multipart refuses over 256 with an
# exception of its own, so anything longer is a malformed request (400), checked before parsing.
MAX_BOUNDARY_BYTES = 70
# Time limits of a body (408 past them): no byte for UPLOAD_IDLE_SECONDS; or the whole body not in
# UPLOAD_GRACE_SECONDS + its length at MIN_UPLOAD_RATE (128 kbit/s), and never more than UPLOAD_SECONDS.
UPLOAD_IDLE_SECONDS = 30.0
UPLOAD_SECONDS = 300.0
UPLOAD_GRACE_SECONDS = 10.0
MIN_UPLOAD_RATE = 16 * 1024
# While a request waits for a slot, an upload that has sent nothing for SLOT_STALL_SECONDS (or arrives
# slower than MIN_UPLOAD_RATE after that long) gives up its slot to it, with 408.
SLOT_STALL_SECONDS = 2.0
_POLL_SECONDS = 0.25
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ApiError(Exception):
    """An error answered as JSON ``{"error": message, ...}`` with an HTTP status."""

    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


# ------------------------------------------------------------------------------------ small helpers
def safe_filename(name: str | None, *, default: str = "upload") -> str:
    """The base name of a client-supplied file name, safe to echo and never used as a path.

    ``../../etc/passwd.wav`` -> ``passwd.wav``; ``C:\\music\\a.mp3`` -> ``a.mp3``; control characters
    are dropped and the result is at most 255 characters.
    """
    if not name:
        return default
    base = PurePosixPath(str(name).replace("\\", "/")).name
    base = re.sub(r"[\x00-\x1f\x7f]", "", base).strip()
    if base in ("", ".", ".."):
        return default
    if len(base) > 255:
        stem, dot, ext = base.rpartition(".")
        base = (stem[: 255 - len(ext) - 1] + "." + ext) if dot and len(ext) <= 16 else base[:255]
    return base


def parse_bool(value: str | None, *, name: str) -> bool | None:
    """Form-field booleans the way FastAPI parses query booleans; anything else is a 422."""
    if value is None:
        return None
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ApiError(422, f"{name} must be true or false, got {value!r}")


def parse_top_k(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        k = int(value.strip())
    except ValueError:
        raise ApiError(422, f"top_k must be an integer >= 1, got {value!r}") from None
    if k < 1:
        raise ApiError(422, f"top_k must be >= 1, got {k}")
    return k


def mb(n: int) -> str:
    return f"{n / (1024 * 1024):.3g} MB"


# ------------------------------------------------------------------------------------ upload parsing
class Upload:
    """Collects a multipart/form-data body in memory: the ``file`` part and a few small text fields."""

    def __init__(self, boundary: bytes, *, max_file_bytes: int):
        from python_multipart.multipart import MultipartParser

        if not 1 <= len(boundary) <= MAX_BOUNDARY_BYTES:
            raise ApiError(400, f"malformed multipart body (boundary of {len(boundary)} bytes; "
                                f"at most {MAX_BOUNDARY_BYTES})")
        self.max_file_bytes = max_file_bytes
        self.file_name: str | None = None
        self.file_data: bytes | None = None
        self.fields: dict[str, str] = {}
        self._parts = 0
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""
        self._name: str | None = None
        self._is_file = False
        self._buf = bytearray()
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin, "on_part_data": self._part_data, "on_part_end": self._part_end,
            "on_header_field": self._header_field, "on_header_value": self._header_value,
            "on_header_end": self._header_end, "on_headers_finished": self._headers_finished,
        })

    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise ApiError(422, f"too many form fields (at most {MAX_PARTS})")
        self._headers, self._name, self._is_file, self._buf = {}, None, False, bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, opts = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = opts.get(b"name", b"").decode("utf-8", "replace")
        self._is_file = self._name == "file"
        if not self._is_file and b"filename" in opts:
            raise ApiError(422, f"unexpected file in form field {self._name!r}: send the audio in the field 'file'")
        if self._is_file:
            if self.file_data is not None:
                raise ApiError(422, "send exactly one file in the form field 'file'")
            self.file_name = safe_filename(opts.get(b"filename", b"").decode("utf-8", "replace"))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._buf += data[start:end]
        if self._is_file:
            if len(self._buf) > self.max_file_bytes:
                raise ApiError(413, f"file is larger than the upload limit of {mb(self.max_file_bytes)}")
        elif len(self._buf) > MAX_FIELD_BYTES:
            raise ApiError(422, f"form field {self._name!r} is too long (at most {MAX_FIELD_BYTES} bytes)")

    def _part_end(self) -> None:
        if self._is_file:
            self.file_data = bytes(self._buf)  # immutable: the decoder's BytesIO then shares it, no copy
        elif self._name:
            self.fields[self._name] = self._buf.decode("utf-8", "replace")
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> None:
        from python_multipart.exceptions import MultipartParseError

        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise ApiError(400, f"malformed multipart body ({exc})") from None

    def finish(self) -> None:
        self._parser.finalize()


# ------------------------------------------------------------------------------------ upload slots
class Slot:
    """One upload's hold on a slot: how its body is arriving, and whether a waiting request took it."""

    def __init__(self, now: float):
        self.start = now
        self.last = now  # time of the last byte received
        self.received = 0
        self.reading = True  # False once the body has arrived: then the slot is never taken away
        self.evicted = asyncio.Event()

    def stall(self, now: float) -> float | None:
        """How badly this upload stalls (higher is worse), or None when it may keep its slot."""
        if not self.reading or self.evicted.is_set():
            return None
        idle = now - self.last
        if idle >= SLOT_STALL_SECONDS:
            return idle
        elapsed = now - self.start
        if elapsed >= SLOT_STALL_SECONDS and self.received < MIN_UPLOAD_RATE * elapsed:
            return SLOT_STALL_SECONDS * (1 - self.received / (MIN_UPLOAD_RATE * elapsed))
        return None


class UploadSlots:
    """At most ``n`` uploads held in memory at once; a request waiting for one takes the slot of an
    upload that stalls (no byte for ``SLOT_STALL_SECONDS``, or slower than ``MIN_UPLOAD_RATE``), so a
    few stalled clients cannot make everyone else wait for their idle timeout."""

    def __init__(self, n: int):
        self._sem = asyncio.Semaphore(n)
        self._held: list[Slot] = []
        self._waiting = 0

    @property
    def held(self) -> int:
        return len(self._held)

    @asynccontextmanager
    async def hold(self):
        await self._acquire()
        slot = Slot(asyncio.get_running_loop().time())
        self._held.append(slot)
        try:
            yield slot
        finally:
            self._held.remove(slot)
            self._sem.release()

    async def _acquire(self) -> None:
        task = asyncio.ensure_future(self._sem.acquire())
        self._waiting += 1
        try:
            while True:
                if not task.done():
                    self._evict_one()
                done, _ = await asyncio.wait({task}, timeout=_POLL_SECONDS)
                if done:
                    return
        except BaseException:
            if task.done() and not task.cancelled() and task.exception() is None:
                self._sem.release()  # acquired just as this request was cancelled: give it back
            else:
                task.cancel()
            raise
        finally:
            self._waiting -= 1

    def _evict_one(self) -> None:
        """Take the slot of the worst-stalling upload, unless enough are already being freed."""
        now = asyncio.get_running_loop().time()
        freeing = sum(1 for s in self._held if s.evicted.is_set())
        if freeing >= self._waiting:
            return
        scored = [(score, s) for s in self._held if (score := s.stall(now)) is not None]
        if scored:
            max(scored, key=lambda p: p[0])[1].evicted.set()


# ------------------------------------------------------------------------------------ reading the body
async def _next_chunk(chunks) -> bytes | None:
    try:
        return await chunks.__anext__()
    except StopAsyncIteration:
        return None


async def read_upload(request, *, max_file_bytes: int, slot: Slot | None = None) -> Upload:
    """Stream the request body into an :class:`Upload`, enforcing the size limit as bytes arrive and the
    time limits (idle, the body's deadline, and ``slot`` being taken by a waiting request) as they do not."""
    from python_multipart.multipart import parse_options_header
    from starlette.requests import ClientDisconnect

    ctype, opts = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not opts.get(b"boundary"):
        raise ApiError(415, "send the audio as multipart/form-data in the form field 'file' "
                            "(e.g. curl -F file=@song.mp3 http://HOST/api/predict)")
    max_body = max_file_bytes + ENVELOPE_BYTES
    declared = request.headers.get("content-length")
    expected = max_body
    if declared is not None:
        try:
            expected = int(declared)
        except ValueError:
            raise ApiError(400, f"invalid Content-Length {declared!r}") from None
        if expected > max_body:
            raise ApiError(413, f"upload of {mb(expected)} is larger than the limit of {mb(max_file_bytes)} "
                                "(split or compress the file, or start the server with a larger --max-upload-mb)")
    up = Upload(opts[b"boundary"], max_file_bytes=max_file_bytes)
    loop = asyncio.get_running_loop()
    body_seconds = min(UPLOAD_SECONDS, UPLOAD_GRACE_SECONDS + max(expected, 0) / MIN_UPLOAD_RATE)
    deadline = loop.time() + body_seconds
    slow = (f"upload too slow: this body must arrive within {body_seconds:.0f} s (at least "
            f"{MIN_UPLOAD_RATE // 1024} KB/s), with no pause over {UPLOAD_IDLE_SECONDS:g} s")
    evicted = asyncio.ensure_future((slot.evicted if slot is not None else asyncio.Event()).wait())
    chunks = request.stream().__aiter__()
    received = 0
    try:
        while True:
            wait = max(0.001, min(UPLOAD_IDLE_SECONDS, deadline - loop.time()))
            nxt = asyncio.ensure_future(_next_chunk(chunks))
            done, _ = await asyncio.wait({nxt, evicted}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            if nxt not in done:
                nxt.cancel()
                if evicted in done:
                    raise ApiError(408, f"upload too slow: it stalled while other uploads waited for its slot "
                                        f"(no byte for {SLOT_STALL_SECONDS:g} s, or under "
                                        f"{MIN_UPLOAD_RATE // 1024} KB/s)")
                raise ApiError(408, slow)
            try:
                chunk = nxt.result()
            except ClientDisconnect:  # the client went away: nothing to answer, nothing to log
                raise ApiError(400, "client disconnected before the upload finished") from None
            if chunk is None:
                break
            received += len(chunk)
            if slot is not None:
                slot.received, slot.last = received, loop.time()
            if received > max_body:
                raise ApiError(413, f"upload is larger than the limit of {mb(max_file_bytes)}")
            up.feed(chunk)
    finally:
        evicted.cancel()
    up.finish()
    if slot is not None:
        slot.reading = False
    return up
