"""`genrekit serve`: the web page and REST API (FastAPI); ``create_app()`` builds the app.

Design choices, and why:

* Uploads never touch the disk. Starlette's form parser spools files over 1 MB to temporary files, so
  ``POST /api/predict`` reads the raw request stream and parses multipart itself with
  python-multipart's streaming parser, keeping the file part in memory. The size limit is checked twice:
  on ``Content-Length`` before reading anything, and on the bytes actually received, so a lying or
  chunked client cannot make the server buffer more than the limit (``upload``).
* Uploads held in memory are bounded by a few slots, and a slot cannot be squatted: a body must arrive
  with no pause over 30 s and within a deadline sized by its length, and a request waiting for a slot
  takes the one of an upload that has stalled for 2 s (408 to it), so stalled clients cannot make a normal
  upload wait for their timeouts (``upload.UploadSlots``).
* The model loads once (lifespan) and inference runs in a bounded thread pool, off the event loop, so
  health checks and uploads stay responsive while songs are classified. Torch's intra-op threads are
  set so that ``workers`` concurrent inferences together use the machine's cores and no more.
* The default response is exactly the record ``genrekit predict --format json`` prints for one file, so
  clients can share code with the CLI; the page asks for ``spectrogram=true`` to get a PNG as well
  (``page``). A genrekit error is a 4xx with its message, never a 500.
* A small file can decode to hours (8 hours of silence is a 0.7 MB FLAC), so the upload limit does not
  bound the work. A decode-only pass (``audio.decoded_seconds`` of the bytes) counts the decoded audio and stops
  with 413 once it passes ``max_duration``, before any classification; then the upload is decoded again
  as a stream (``audio.stream`` of the bytes), block by block, straight into the classifier. Memory stays
  bounded by the block size whatever the file declares. Each request has a time budget, checked
  between blocks (a cooperative deadline: a thread cannot be killed safely), so work past it ends with
  503 and its worker thread is free for the next request (``inference``).
* ``genrekit serve`` answers only to the Host names it was given (the bound address and localhost by
  default, ``--allowed-hosts`` for more), against DNS rebinding (``hosts``).

Modules: ``app`` (routes, error answers), ``upload`` (body, limits, slots), ``inference`` (decoding and
classification in a worker), ``page`` (the spectrogram PNG), ``hosts`` (the Host check).
"""

from __future__ import annotations

from genrekit.serve.app import MAX_DURATION_SECONDS, STATIC_DIR, TIME_BUDGET_SECONDS, create_app
from genrekit.serve.hosts import default_allowed_hosts, host_allowed
from genrekit.serve.inference import within_budget
from genrekit.serve.page import (
    SPECTROGRAM_MAX_COLUMNS,
    SpectrogramAccumulator,
    spectrogram_levels,
    spectrogram_png,
)
from genrekit.serve.upload import (
    ENVELOPE_BYTES,
    MAX_FIELD_BYTES,
    MAX_PARTS,
    UPLOAD_IDLE_SECONDS,
    UPLOAD_SECONDS,
    ApiError,
    parse_bool,
    parse_top_k,
    safe_filename,
)

__all__ = [
    "ENVELOPE_BYTES", "MAX_DURATION_SECONDS", "MAX_FIELD_BYTES", "MAX_PARTS", "SPECTROGRAM_MAX_COLUMNS",
    "STATIC_DIR", "TIME_BUDGET_SECONDS", "UPLOAD_IDLE_SECONDS", "UPLOAD_SECONDS", "ApiError",
    "SpectrogramAccumulator", "create_app", "default_allowed_hosts", "host_allowed", "parse_bool",
    "parse_top_k", "safe_filename", "spectrogram_levels", "spectrogram_png", "within_budget",
]
