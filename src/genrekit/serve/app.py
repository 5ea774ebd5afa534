"""`create_app()`: the FastAPI app of ``genrekit serve``: routes, error answers, the model's lifespan.

The design (uploads in memory, streaming decode, limits, slots, Host check) is described in
``genrekit.serve`` and docs/serve.md; this module wires the parts together.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from genrekit import __version__
from genrekit.errors import AudioError, DurationLimitError, GenrekitError, SilentAudioError, TimeBudgetError
from genrekit.serve.hosts import AllowedHostsMiddleware
from genrekit.serve.inference import MemoryReleaser, classify, torch_threads, warm_up
from genrekit.serve.upload import ApiError, UploadSlots, parse_bool, parse_top_k, read_upload

STATIC_DIR = Path(str(resources.files("genrekit").joinpath("static")))
# Work limits per request (``genrekit serve --max-duration`` / ``--time-budget``): decoded audio at most
# 20 minutes (longer than nearly any song, and bounded work for the classifier), and 60 s from the upload
# having arrived to the answer, waiting for a worker included.
MAX_DURATION_SECONDS = 20 * 60.0
TIME_BUDGET_SECONDS = 60.0


def create_app(model=None, *, max_upload_mb: float = 50, workers: int = 2, backend: str = "onnx",
               max_duration: float | None = MAX_DURATION_SECONDS,
               time_budget: float | None = TIME_BUDGET_SECONDS,
               library=None, library_root: str | os.PathLike | None = None,
               allowed_hosts: Iterable[str] | None = None) -> FastAPI:
    """The genrekit web app: page at ``/``, REST API under ``/api``, OpenAPI docs at ``/docs``.

    ``model`` is a model file path, a loaded :class:`~genrekit.predict.GenreClassifier`, or None for the
    shipped model; it is loaded once when the app starts. ``workers`` bounds concurrent inferences.
    ``max_duration`` (seconds of decoded audio, 413 past it) and ``time_budget`` (seconds from the upload
    having arrived to the answer, 503 past it) bound each request's work; None means no limit.
    ``library`` (a :class:`genrekit.library.similar.SimilarityIndex` of the folder ``library_root``) turns
    on ``similar=K`` in ``/api/predict`` and the page's "similar in this library" panel.
    ``allowed_hosts`` (names, ``*.domain``, ``*``; see :func:`genrekit.serve.hosts.host_allowed`) makes
    every request whose ``Host`` is not one of them a 421, against DNS rebinding; None (the default here,
    which cannot know the address it will be bound to) checks nothing: ``genrekit serve`` passes the
    bound address and localhost (:func:`genrekit.serve.hosts.default_allowed_hosts`).
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

        threads = torch_threads(workers)
        if isinstance(model, GenreClassifier):
            clf = model
        else:
            clf = GenreClassifier.load(model, backend=backend, threads=threads)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="genrekit-infer")
        app.state.clf = clf
        app.state.pool = pool
        app.state.memory = MemoryReleaser()
        # One inference now, so lazy initialisation (torch kernels, decoder imports) is not paid by a user.
        await asyncio.get_running_loop().run_in_executor(pool, functools.partial(warm_up, clf))
        # Uploads waiting for a worker are held in memory: bound how many, so memory stays bounded too.
        # A waiting request takes the slot of an upload that stalls (408 to it): see UploadSlots.
        app.state.pending = UploadSlots(2 * workers + 2)
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

    if allowed_hosts is not None:
        app.add_middleware(AllowedHostsMiddleware, allowed_hosts=list(allowed_hosts))

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse({"error": exc.message, **exc.extra}, status_code=exc.status)

    @app.exception_handler(GenrekitError)
    async def _genrekit_error(request: Request, exc: GenrekitError):  # a refusal with its reason, never a 500
        return JSONResponse({"error": str(exc)}, status_code=422)

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
                    "415 not decodable audio, 422 bad parameters, no audible signal (every window below "
                    f"{_silence_db():g} dBFS) or audio that cannot be classified, 503 not done within the "
                    f"time budget ({_duration_text(time_budget)}); 400 malformed body, 408 upload too slow.",
        responses={413: {"description": "upload too large, or decoded audio longer than the duration limit"},
                   415: {"description": "not decodable audio"},
                   422: {"description": "bad parameters, no audible signal (silent file), or audio that "
                                         "cannot be classified"},
                   400: {"description": "malformed multipart body"},
                   408: {"description": "upload too slow (stalled, or under the minimum rate)"},
                   503: {"description": "not classified within the per-request time budget"}},
        openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "format": "binary"},
                "top_k": {"type": "integer", "minimum": 1},
                "segments": {"type": "boolean"}, "spectrogram": {"type": "boolean"},
                "styles": {"type": "boolean"},
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
        styles: bool | None = Query(None, description="the top 3 AudioSet styles (mn04) in `styles` "
                                    "(default true; false: faster, and the record as before)"),
    ) -> JSONResponse:
        state = request.app.state
        async with state.pending.hold() as slot:
            up = await read_upload(request, max_file_bytes=max_file_bytes, slot=slot)
            try:
                k = top_k if top_k is not None else parse_top_k(up.fields.get("top_k"))
                seg = segments if segments is not None else parse_bool(up.fields.get("segments"), name="segments")
                spec = spectrogram if spectrogram is not None else parse_bool(
                    up.fields.get("spectrogram"), name="spectrogram")
                sty = styles if styles is not None else parse_bool(up.fields.get("styles"), name="styles")
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
                job = functools.partial(state.memory.run, classify, state.clf, up.file_data, name,
                                        top_k=k or 3, segments=bool(seg), want_spectrogram=bool(spec),
                                        max_duration=max_duration, deadline=deadline, budget=time_budget,
                                        similar_k=similar or 0, library=lib, min_confidence=min_confidence,
                                        styles=sty is not False)
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
                except GenrekitError as exc:  # a refusal with a reason, not a server fault: never 500
                    raise ApiError(422, f"{name}: could not classify: {exc}",
                                   **_error_fields(name, str(exc), seg)) from None
            finally:
                up.file_data = None  # drop the upload now, not when the response has been sent
        try:
            return JSONResponse(rec)
        except ValueError:  # out-of-range audio (e.g. samples of 1e30) gives scores that are not numbers
            msg = f"{name}: could not classify: the scores are not finite (is the audio's amplitude out of range?)"
            raise ApiError(422, msg, **_error_fields(name, msg, seg)) from None

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
