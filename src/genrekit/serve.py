"""`create_app()`: the genrekit web page and REST API (FastAPI), served by ``genrekit serve``.

Design choices, and why:

* Uploads never touch the disk. Starlette's form parser spools files over 1 MB to temporary files, so
  ``POST /api/predict`` reads the raw request stream and parses multipart itself with
  python-multipart's streaming parser, keeping the file part in memory. The size limit is checked twice:
  on ``Content-Length`` before reading anything, and on the bytes actually received, so a lying or
  chunked client cannot make the server buffer more than the limit.
* The model loads once (lifespan) and inference runs in a bounded thread pool, off the event loop, so
  health checks and uploads stay responsive while songs are classified. Torch's intra-op threads are
  set so that ``workers`` concurrent inferences together use the machine's cores and no more.
* The default response is exactly the record ``genrekit predict --format json`` prints for one file, so
  clients can share code with the CLI; the page asks for ``spectrogram=true`` to get a PNG as well.
* A small file can decode to hours (8 hours of silence is a 0.7 MB FLAC), so the upload limit does not
  bound the work. A decode-only pass (``audio.decoded_seconds`` of the bytes) counts the decoded audio and stops
  with 413 once it passes ``max_duration``, before any classification; then the upload is decoded again
  as a stream (``audio.stream`` of the bytes), block by block, straight into the classifier. Memory stays
  bounded by the block size whatever the file declares. Each request has a time budget, checked
  between blocks (a cooperative deadline: a thread cannot be killed safely), so work past it ends with
  503 and its worker thread is free for the next request.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import math
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from genrekit import __version__, audio, dsp
from genrekit.errors import (
    AudioError,
    DecodeError,
    DurationLimitError,
    GenrekitError,
    SilentAudioError,
    TimeBudgetError,
)

STATIC_DIR = Path(str(resources.files("genrekit").joinpath("static")))
ENVELOPE_BYTES = 64 * 1024  # multipart boundaries, part headers and small form fields on top of the file
MAX_FIELD_BYTES = 1024
MAX_PARTS = 16
SPECTROGRAM_MAX_COLUMNS = 1200
# An upload holds one of the few upload slots while it arrives: a client that stalls (no bytes for
# UPLOAD_IDLE_SECONDS) or trickles (whole body not in UPLOAD_SECONDS) is cut off with 408, so a handful of
# slow or malicious clients cannot block every other upload.
UPLOAD_IDLE_SECONDS = 30.0
UPLOAD_SECONDS = 300.0
# Work limits per request (``genrekit serve --max-duration`` / ``--time-budget``): decoded audio at most
# 20 minutes (longer than nearly any song, and bounded work for the classifier), and 60 s from the upload
# having arrived to the answer, waiting for a worker included.
MAX_DURATION_SECONDS = 20 * 60.0
TIME_BUDGET_SECONDS = 60.0
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


class SpectrogramAccumulator:
    """A track's mel power spectrogram built block by block while the track streams, in bounded memory.

    Frames equal one whole-track STFT (each block keeps half a window of context from the one before,
    so there are no seams). Frames are average-pooled in time: the pool doubles whenever the track no
    longer fits in ``max_columns`` columns, so at most ``2 * max_columns`` columns are ever held, and the
    result has between ``max_columns / 2`` and ``max_columns`` columns (one per frame for short clips).
    """

    def __init__(self, *, sr: int, max_columns: int = SPECTROGRAM_MAX_COLUMNS):
        self.sr = sr
        self.max_columns = max_columns
        self.hop = dsp.HOP_LENGTH
        self.ctx = math.ceil(dsp.N_FFT / 2 / self.hop) * self.hop  # samples of context a frame needs
        self.n_samples = 0
        self.pool = 1
        self._buf = np.zeros(0, np.float32)  # samples from global index _start on
        self._start = 0
        self._next = 0  # next frame to compute
        self._sums = np.zeros((dsp.N_MELS, 0))
        self._counts = np.zeros(0, np.int64)

    def _frames(self, last: bool) -> None:
        from genrekit import spectrogram as spec

        end = self.n_samples
        n_frames = 1 + end // self.hop if last else (end - self.ctx) // self.hop + 1 if end >= self.ctx else 0
        if n_frames <= self._next:
            return
        g0 = max(0, self._next * self.hop - self.ctx)
        power = spec.melspectrogram(self._buf[g0 - self._start :], sr=self.sr, hop_length=self.hop, n_mels=dsp.N_MELS)
        first = self._next - g0 // self.hop
        self._add(power[:, first : first + n_frames - self._next])
        self._next = n_frames
        keep = max(0, self._next * self.hop - self.ctx)
        self._buf, self._start = self._buf[keep - self._start :], keep

    def _add(self, power: np.ndarray) -> None:
        cols = (self._next + np.arange(power.shape[1])) // self.pool
        if cols.size and cols[-1] >= self._counts.size:
            grow = cols[-1] + 1 - self._counts.size
            self._sums = np.concatenate([self._sums, np.zeros((self._sums.shape[0], grow))], axis=1)
            self._counts = np.concatenate([self._counts, np.zeros(grow, np.int64)])
        starts = np.flatnonzero(np.diff(cols, prepend=-1))
        self._sums[:, cols[starts]] += np.add.reduceat(power.astype(np.float64), starts, axis=1)
        self._counts[cols[starts]] += np.diff(np.append(starts, cols.size))
        while self._counts.size > self.max_columns:  # no longer fits: pool pairs of columns
            if self._counts.size % 2:
                self._sums = np.concatenate([self._sums, np.zeros((self._sums.shape[0], 1))], axis=1)
                self._counts = np.append(self._counts, 0)
            self._sums = self._sums[:, 0::2] + self._sums[:, 1::2]
            self._counts = self._counts[0::2] + self._counts[1::2]
            self.pool *= 2

    def add(self, block: np.ndarray) -> None:
        """Take the next block of samples (any length)."""
        self._buf = np.concatenate([self._buf, np.asarray(block, dtype=np.float32)])
        self.n_samples += int(np.asarray(block).size)
        self._frames(last=False)

    def tap(self, blocks):
        """Pass ``blocks`` through, adding each one on the way."""
        for b in blocks:
            self.add(b)
            yield b

    def levels(self) -> tuple[np.ndarray, int]:
        """Normalised log-mel levels ``[n_mels, columns]`` of everything added, and the frames per column."""
        from genrekit import spectrogram as spec

        if self.n_samples == 0:
            raise ValueError("no samples were added")
        self._frames(last=True)
        return spec.power_to_levels((self._sums / self._counts).astype(np.float32)), self.pool


def spectrogram_levels(y: np.ndarray, *, sr: int, max_columns: int = SPECTROGRAM_MAX_COLUMNS) -> tuple[np.ndarray, int]:
    """Log-mel levels ``[n_mels, columns]`` of a whole track for display, and the frames per column.

    Computed block by block (30 s, :class:`SpectrogramAccumulator`) and average-pooled in time to at
    most ``max_columns`` columns, so a long track costs bounded memory; with no pooling it equals one
    whole-track STFT. Levels are normalised over the whole track, like the models' input.
    """
    acc = SpectrogramAccumulator(sr=sr, max_columns=max_columns)
    block = int(30.0 * sr)
    for i in range(0, max(1, y.size), block):
        acc.add(y[i : i + block])
    return acc.levels()


def spectrogram_png(y: np.ndarray | SpectrogramAccumulator, *, sr: int,
                    max_columns: int = SPECTROGRAM_MAX_COLUMNS) -> dict[str, Any]:
    """The track's log-mel spectrogram as a PNG data URL (magma colours, low frequencies at the bottom);
    ``y`` is the samples or an accumulator that has seen them."""
    from matplotlib import colormaps
    from PIL import Image


    if isinstance(y, SpectrogramAccumulator):
        levels, pool = y.levels()
        n_samples = y.n_samples
    else:
        levels, pool = spectrogram_levels(y, sr=sr, max_columns=max_columns)
        n_samples = y.size
    lut = (np.asarray(colormaps["magma"](np.linspace(0, 1, 256)))[:, :3] * 255).astype(np.uint8)
    rgb = lut[np.clip((levels[::-1] * 255).round(), 0, 255).astype(np.uint8)]
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG")
    return {
        "image": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"),
        "width": int(rgb.shape[1]), "height": int(rgb.shape[0]), "n_mels": dsp.N_MELS,
        "fmax_hz": sr / 2, "duration_s": round(n_samples / sr, 3),
        "seconds_per_column": round(pool * dsp.HOP_LENGTH / sr, 6),
    }


# ------------------------------------------------------------------------------------ upload parsing
class _Upload:
    """Collects a multipart/form-data body in memory: the ``file`` part and a few small text fields."""

    def __init__(self, boundary: bytes, *, max_file_bytes: int):
        from python_multipart.multipart import MultipartParser

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
                raise ApiError(413, f"file is larger than the upload limit of {_mb(self.max_file_bytes)}")
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


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.3g} MB"


async def _read_upload(request: Request, *, max_file_bytes: int) -> _Upload:
    """Stream the request body into an :class:`_Upload`, enforcing the size limit as bytes arrive."""
    from python_multipart.multipart import parse_options_header

    ctype, opts = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not opts.get(b"boundary"):
        raise ApiError(415, "send the audio as multipart/form-data in the form field 'file' "
                            "(e.g. curl -F file=@song.mp3 http://HOST/api/predict)")
    max_body = max_file_bytes + ENVELOPE_BYTES
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise ApiError(400, f"invalid Content-Length {declared!r}") from None
        if n > max_body:
            raise ApiError(413, f"upload of {_mb(n)} is larger than the limit of {_mb(max_file_bytes)} "
                                "(split or compress the file, or start the server with a larger --max-upload-mb)")
    from starlette.requests import ClientDisconnect

    up = _Upload(opts[b"boundary"], max_file_bytes=max_file_bytes)
    received = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + UPLOAD_SECONDS
    chunks = request.stream().__aiter__()
    while True:
        wait = min(UPLOAD_IDLE_SECONDS, deadline - loop.time())
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), timeout=max(wait, 0.001))
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise ApiError(408, f"upload too slow: the whole file must arrive within {UPLOAD_SECONDS:g} s, "
                                f"with no pause over {UPLOAD_IDLE_SECONDS:g} s") from None
        except ClientDisconnect:  # the client went away: nothing to answer, nothing to log
            raise ApiError(400, "client disconnected before the upload finished") from None
        received += len(chunk)
        if received > max_body:
            raise ApiError(413, f"upload is larger than the limit of {_mb(max_file_bytes)}")
        up.feed(chunk)
    up.finish()
    return up


# ------------------------------------------------------------------------------------ inference
@contextmanager
def _decoder_errors(name: str):
    """A decoder's own exception on odd data (not a genrekit error) becomes a DecodeError."""
    try:
        yield
    except GenrekitError:
        raise
    except (ValueError, RuntimeError, OSError, EOFError) as exc:
        raise DecodeError(f"{name}: not audio or corrupt ({type(exc).__name__}: {exc})") from None


def _decoded(blocks, name: str):
    """The decoder's blocks, its errors on odd data turned into DecodeErrors."""
    it = iter(blocks)
    try:
        while True:
            with _decoder_errors(name):
                b = next(it, None)
            if b is None:
                return
            yield b
    finally:
        getattr(it, "close", lambda: None)()


def _check_budget(deadline: float | None, budget: float | None, name: str, seconds_done: float) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise TimeBudgetError(
            f"{name}: not classified within this server's time budget of {budget:g} s "
            f"(stopped after {seconds_done:.0f} s of audio); try a shorter file or a less busy server")


def within_budget(blocks, *, deadline: float | None, budget: float | None, name: str, sr: int):
    """Pass ``blocks`` through until ``deadline`` (``time.monotonic()``): checked before each block is
    decoded, so work past the budget stops at the next block boundary with :class:`TimeBudgetError`,
    and the decoder is closed."""
    it = iter(blocks)
    seen = 0
    try:
        while True:
            _check_budget(deadline, budget, name, seen / sr)
            b = next(it, None)
            if b is None:
                return
            seen += b.size
            yield b
    finally:
        getattr(it, "close", lambda: None)()


def _classify(clf, data: bytes, name: str, *, top_k: int, segments: bool, want_spectrogram: bool,
              max_duration: float | None = None, deadline: float | None = None,
              budget: float | None = None, similar_k: int = 0, library=None,
              min_confidence: float | None = None) -> dict:
    """Decode an upload from memory as a stream and classify it block by block (runs in a worker thread)."""
    from genrekit.predict import BLOCK_SECONDS

    _check_budget(deadline, budget, name, 0.0)  # it may have waited for a worker past its budget
    if max_duration is not None:
        # Decode only (no resampling, no model), first: a file that decodes to hours is refused after a
        # fraction of a second of work, before it holds a worker for the classification of 20 minutes.
        with _decoder_errors(name):
            audio.decoded_seconds(data, filename=name, max_duration=max_duration)
    decoded = _decoded(audio.stream(data, filename=name, sr=clf.sr, block_seconds=BLOCK_SECONDS,
                                    max_duration=max_duration), name)
    timed = within_budget(decoded, deadline=deadline, budget=budget, name=name, sr=clf.sr)
    acc = SpectrogramAccumulator(sr=clf.sr) if want_spectrogram else None
    blocks = acc.tap(timed) if acc is not None else timed
    try:
        pred = clf.predict_blocks(blocks, top_k=top_k, file=name)
    finally:  # on any error too: close the decoder now, not when the garbage collector gets to it
        blocks.close()
        timed.close()
    rec = pred.to_dict(segments=segments, min_confidence=min_confidence)
    if acc is not None:
        rec["spectrogram"] = spectrogram_png(acc, sr=clf.sr)
    if similar_k and library is not None:
        rec["similar"] = _similar_in_library(library, data, name, k=similar_k, max_duration=max_duration,
                                             deadline=deadline, budget=budget)
    return rec


def _similar_in_library(library: dict, data: bytes, name: str, *, k: int, max_duration: float | None = None,
                        deadline: float | None = None, budget: float | None = None) -> list[dict]:
    """The library's tracks nearest to an upload (musicnn embedding of the upload, decoded at musicnn's
    16 kHz like the index; the upload itself, when it is a library file, is left out by its digest).

    Decoded as a stream under the same duration limit and time budget as the classification."""
    import hashlib

    from genrekit.networks import musicnn

    decoded = _decoded(audio.stream(data, filename=name, sr=musicnn.SR, max_duration=max_duration), name)
    timed = within_budget(decoded, deadline=deadline, budget=budget, name=name, sr=musicnn.SR)
    try:
        y16 = np.concatenate(list(timed))
    finally:
        timed.close()
    _check_budget(deadline, budget, name, y16.size / musicnn.SR)
    q = musicnn.embed(y16, sr=musicnn.SR).penultimate_mean
    index = library["index"]
    digest = hashlib.sha256(bytes(data)).hexdigest()
    same = [i for i, d in enumerate(index.digests) if d == digest]
    root = library["root"]
    return [{"file": os.path.relpath(n.file, root), "similarity": round(n.similarity, 6)}
            for n in index.search(q, k=k, exclude=same)]


def _warm_up(clf) -> None:
    import soundfile as sf

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    sf.write(buf, (0.1 * rng.standard_normal(int(3.5 * clf.sr))).astype(np.float32), clf.sr, format="WAV")
    _classify(clf, bytearray(buf.getvalue()), "warm-up.wav", top_k=1, segments=False, want_spectrogram=False)


class _MemoryReleaser:
    """Hands freed heap memory back to the OS after inferences (glibc ``malloc_trim``; no-op elsewhere).

    Each request allocates tens of MB of short-lived arrays (decoded audio, STFT) in its worker thread's
    malloc arena; glibc keeps such freed memory mapped, so without trimming the server's RSS settles
    ~150 MB above its idle size after a burst of uploads. Trimming costs page faults on the next
    request, so it runs when the pool goes idle and otherwise at most once every ``interval`` seconds.
    """

    def __init__(self, interval: float = 1.0):
        import threading

        self.interval = interval
        self._lock = threading.Lock()
        self._active = 0
        self._last = 0.0
        try:
            import ctypes

            self._trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            self._trim = None

    def run(self, fn, *args, **kwargs):
        import time

        with self._lock:
            self._active += 1
        try:
            return fn(*args, **kwargs)
        finally:
            with self._lock:
                self._active -= 1
                now = time.monotonic()
                due = self._trim is not None and (self._active == 0 or now - self._last >= self.interval)
                if due:
                    self._last = now
            if due:
                self._trim(0)


def _torch_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


# ------------------------------------------------------------------------------------ the app
def create_app(model=None, *, max_upload_mb: float = 50, workers: int = 2, backend: str = "onnx",
               max_duration: float | None = MAX_DURATION_SECONDS,
               time_budget: float | None = TIME_BUDGET_SECONDS,
               library=None, library_root: str | os.PathLike | None = None) -> FastAPI:
    """The genrekit web app: page at ``/``, REST API under ``/api``, OpenAPI docs at ``/docs``.

    ``model`` is a model file path, a loaded :class:`~genrekit.predict.GenreClassifier`, or None for the
    shipped model; it is loaded once when the app starts. ``workers`` bounds concurrent inferences.
    ``max_duration`` (seconds of decoded audio, 413 past it) and ``time_budget`` (seconds from the upload
    having arrived to the answer, 503 past it) bound each request's work; None means no limit.
    ``library`` (a :class:`genrekit.library.similar.SimilarityIndex` of the folder ``library_root``) turns
    on ``similar=K`` in ``/api/predict`` and the page's "similar in this library" panel.
    """
    lib = None if library is None else {"index": library, "root": os.path.realpath(library_root or "/")}
    if workers < 1:
        raise ValueError("workers must be >= 1")
    if not max_upload_mb > 0:
        raise ValueError("max_upload_mb must be > 0")
    if max_duration is not None and not max_duration > 0:
        raise ValueError("max_duration must be > 0 seconds (or None)")
    if time_budget is not None and not time_budget > 0:
        raise ValueError("time_budget must be > 0 seconds (or None)")
    max_file_bytes = int(max_upload_mb * 1024 * 1024)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from genrekit.predict import GenreClassifier

        threads = _torch_threads(workers)
        if isinstance(model, GenreClassifier):
            clf = model
        else:
            clf = GenreClassifier.load(model, backend=backend, threads=threads)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="genrekit-infer")
        app.state.clf = clf
        app.state.pool = pool
        app.state.memory = _MemoryReleaser()
        # One inference now, so lazy initialisation (torch kernels, decoder imports) is not paid by a user.
        await asyncio.get_running_loop().run_in_executor(pool, functools.partial(_warm_up, clf))
        # Uploads waiting for a worker are held in memory: bound how many, so memory stays bounded too.
        app.state.pending = asyncio.Semaphore(2 * workers + 2)
        try:
            yield
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    try:  # Swagger UI's files served by the app itself: /docs works with no internet (no CDN)
        from fastapi_offline import FastAPIOffline as make_app
    except ImportError:  # pragma: no cover - the [web] extra installs it
        make_app = FastAPI
    app = make_app(
        title="genrekit", version=__version__, lifespan=lifespan,
        description="Music genre classification. `POST /api/predict` with an audio file returns the same "
                    "record as `genrekit predict --format json`.",
    )

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse({"error": exc.message, **exc.extra}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        errs = exc.errors()
        msg = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}"
                        for e in errs)
        return JSONResponse({"error": f"invalid parameters: {msg}", "detail": jsonable_encoder(errs)},
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception):
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={
            # media-src blob:: the page plays the user's own file from memory (URL.createObjectURL)
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                       "script-src 'self'; connect-src 'self'; media-src 'self' blob:",
        })

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/health", summary="Liveness and the loaded model")
    async def health(request: Request) -> dict:
        clf = request.app.state.clf
        return {"status": "ok", "version": __version__, "model": clf.identity, "workers": workers,
                "max_upload_mb": max_upload_mb,
                "max_duration_min": None if max_duration is None else round(max_duration / 60, 4),
                "time_budget_s": time_budget,
                "library": None if lib is None else {"tracks": len(lib["index"].paths)}}

    @app.get("/api/genres", summary="The genres the loaded model can answer, in its order")
    async def genres(request: Request) -> dict:
        return {"genres": list(request.app.state.clf.genres)}

    @app.post(
        "/api/predict", summary="Classify one uploaded audio file",
        description="Multipart form with the audio in field `file` (any format genrekit reads: wav, flac, "
                    "ogg, mp3, m4a, ...). `top_k`, `segments` and `spectrogram` may be query parameters or "
                    "form fields. Returns the record of `genrekit predict --format json`; with "
                    "`spectrogram=true` also a base64 PNG of the log-mel spectrogram. Silent windows of the "
                    "timeline have `genre: null, silent: true`. Errors: 413 over the size limit "
                    f"({max_upload_mb:g} MB) or decoded audio longer than {_duration_text(max_duration)}, "
                    "415 not decodable audio, 422 bad parameters or no audible signal (every window below "
                    f"{_silence_db():g} dBFS), 503 not done within the time budget "
                    f"({_duration_text(time_budget)}).",
        responses={413: {"description": "upload too large, or decoded audio longer than the duration limit"},
                   415: {"description": "not decodable audio"},
                   422: {"description": "bad parameters, or no audible signal (silent file)"},
                   503: {"description": "not classified within the per-request time budget"}},
        openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "format": "binary"},
                "top_k": {"type": "integer", "minimum": 1},
                "segments": {"type": "boolean"}, "spectrogram": {"type": "boolean"},
            }}}}}},
    )
    async def predict(
        request: Request,
        top_k: int | None = Query(None, ge=1, description="genres in `top` (default 3)"),
        segments: bool | None = Query(None, description="include the per-window timeline"),
        spectrogram: bool | None = Query(None, description="include the log-mel spectrogram as a PNG"),
        similar: int | None = Query(None, ge=1, le=100, description="with the server's --library: the K most "
                                    "similar library tracks (musicnn embeddings, cosine) in `similar`"),
        min_confidence: float | None = Query(None, ge=0.0, le=1.0, description="mark the record `uncertain` "
                                             "when its top (calibrated) score is below this"),
    ) -> JSONResponse:
        state = request.app.state
        async with state.pending:
            up = await _read_upload(request, max_file_bytes=max_file_bytes)
            try:
                k = top_k if top_k is not None else parse_top_k(up.fields.get("top_k"))
                seg = segments if segments is not None else parse_bool(up.fields.get("segments"), name="segments")
                spec = spectrogram if spectrogram is not None else parse_bool(
                    up.fields.get("spectrogram"), name="spectrogram")
                if up.file_data is None:
                    raise ApiError(422, "no file: send the audio in the multipart form field 'file'")
                name = up.file_name or "upload"
                if not up.file_data:
                    raise ApiError(415, f"{name}: empty file (0 bytes)",
                                   **_error_fields(name, f"{name}: empty file (0 bytes)", seg))
                loop = asyncio.get_running_loop()
                if similar and lib is None:
                    raise ApiError(422, "similar needs a library: start the server with --library PATH")
                # the budget runs from here: waiting for a worker counts, so every answer comes in time
                deadline = None if time_budget is None else time.monotonic() + time_budget
                job = functools.partial(state.memory.run, _classify, state.clf, up.file_data, name,
                                        top_k=k or 3, segments=bool(seg), want_spectrogram=bool(spec),
                                        max_duration=max_duration, deadline=deadline, budget=time_budget,
                                        similar_k=similar or 0, library=lib, min_confidence=min_confidence)
                try:
                    rec = await loop.run_in_executor(state.pool, job)
                except DurationLimitError as exc:
                    raise ApiError(413, str(exc), **_error_fields(name, str(exc), seg)) from None
                except SilentAudioError as exc:
                    raise ApiError(422, str(exc), **_error_fields(name, str(exc), seg)) from None
                except TimeBudgetError as exc:
                    raise ApiError(503, str(exc), **_error_fields(name, str(exc), seg)) from None
                except AudioError as exc:
                    raise ApiError(415, str(exc), **_error_fields(name, str(exc), seg)) from None
                except GenrekitError as exc:
                    raise ApiError(500, f"{name}: could not classify: {exc}",
                                   **_error_fields(name, str(exc), seg)) from None
            finally:
                up.file_data = None  # drop the upload now, not when the response has been sent
        return JSONResponse(rec)

    return app


def _duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "no limit"
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _silence_db() -> float:
    from genrekit.predict import SILENCE_DB

    return SILENCE_DB


def _error_fields(name: str, message: str, segments: bool | None) -> dict[str, Any]:
    """The CLI's error record for this file, minus ``error`` (the handler adds the message)."""
    from genrekit.predict import error_record

    rec = error_record(name, message, segments=bool(segments))
    rec.pop("error")
    return rec
