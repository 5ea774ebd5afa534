"""Similar songs: nearest tracks of a library by musicnn embedding (cosine), from an index built once.

The index of a library is a folder (by default under ``$XDG_STATE_HOME/genrekit/similar/``, one per
library path) holding ``vectors.npy`` (one L2-normalised mean penultimate musicnn embedding per track,
float32) and ``manifest.json`` (each track's path, size, mtime and content digest, the model and its
weights' digest, the vectors' digest). :func:`update_index` rescans the library and computes embeddings
only for new and changed files (and not even those when their content was analysed before: summaries
are cached by content, so a moved or renamed file costs nothing); removed files drop out. Both files are
written atomically, manifest last, and the manifest names the digest of its vectors, so a killed update
leaves the previous index usable.

Search is exact (one matrix product) up to :data:`EXACT_LIMIT` tracks, where it is both fastest and
exact; larger libraries use an HNSW graph from ``usearch`` (``pip install "genrekit[similar]"``), built
from the vectors and saved beside them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import GenrekitError
from genrekit.names import json_escaped
from genrekit.store import atomic_write_bytes, atomic_write_text, claim_folder

INDEX_FORMAT = "genrekit-similar-index"
INDEX_VERSION = 2  # 2: vectors are means over the audible patches only (networks.musicnn.analysis)
EXACT_LIMIT = 50_000  # exact search of 50k x 200 float32 is ~40 MB and a few ms a query
DIM = 200


class SimilarIndexError(GenrekitError):
    """A similarity index is missing, damaged, or was built with another model."""


def default_index_dir(library: str | os.PathLike) -> Path:
    """Where the index of ``library`` lives unless ``--index`` says otherwise (outside the library)."""
    from genrekit.library.undo import state_dir

    root = os.path.realpath(library)
    key = hashlib.sha256(root.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return state_dir() / "similar" / f"{Path(root).name or 'root'}-{key}"


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)


@dataclass
class Neighbour:
    file: str
    similarity: float

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "similarity": round(self.similarity, 6)}


class SimilarityIndex:
    """Normalised embeddings of a library's tracks and a search over them (exact or HNSW)."""

    def __init__(self, paths: list[str], vectors: np.ndarray, *, meta: dict[str, Any] | None = None,
                 digests: list[str] | None = None, stats: dict[str, list[int]] | None = None,
                 backend: str = "auto"):
        if vectors.ndim != 2 or vectors.shape[0] != len(paths):
            raise SimilarIndexError(f"{len(paths)} paths but vectors of shape {vectors.shape}")
        self.paths = list(paths)
        self.vectors = normalise(vectors) if len(paths) else np.zeros((0, vectors.shape[1] if vectors.ndim == 2 else DIM), np.float32)
        self.digests = list(digests) if digests is not None else [""] * len(paths)
        self.stats = dict(stats or {})  # path -> [size, mtime_ns] when its embedding was computed
        self.meta = dict(meta or {})
        self.backend = choose_backend(len(paths), backend)
        self._ann = None

    # -- building
    def build(self, *, ann_path: str | os.PathLike | None = None) -> SimilarityIndex:
        """Prepare the search: nothing for exact search; the HNSW graph (loaded from ``ann_path`` when it
        matches these vectors, else built) for ``usearch``."""
        if self.backend == "usearch":
            self._ann = _build_usearch(self.vectors, path=ann_path, vectors_sha256=vectors_digest(self.vectors))
        return self

    # -- search
    def search(self, query: np.ndarray, *, k: int = 10, exclude: Iterable[int] = ()) -> list[Neighbour]:
        """The ``k`` tracks most similar to ``query`` (an embedding), best first, skipping ``exclude`` rows."""
        if k < 1:
            raise GenrekitError("k must be >= 1")
        if not self.paths:
            return []
        q = normalise(np.asarray(query, dtype=np.float32).reshape(1, -1))[0]
        if q.shape[0] != self.vectors.shape[1]:
            raise SimilarIndexError(f"query has {q.shape[0]} dimensions, the index {self.vectors.shape[1]}")
        skip = set(int(i) for i in exclude)
        want = min(len(self.paths), k + len(skip))
        if self.backend == "usearch" and self._ann is not None:
            found = self._ann.search(q, want)
            rows = [(int(key), 1.0 - float(dist)) for key, dist in zip(found.keys, found.distances, strict=True)]
        else:
            sims = self.vectors @ q
            top = np.argpartition(-sims, want - 1)[:want] if want < sims.size else np.arange(sims.size)
            top = top[np.argsort(-sims[top], kind="stable")]
            rows = [(int(i), float(sims[i])) for i in top]
        out = [Neighbour(self.paths[i], s) for i, s in rows if i not in skip]
        return out[:k]

    def row_of(self, path: str | os.PathLike) -> int | None:
        real = os.path.realpath(path)
        try:
            return self.paths.index(real)
        except ValueError:
            return None


def choose_backend(n: int, backend: str = "auto") -> str:
    """``exact`` for small libraries (or without usearch), ``usearch`` (HNSW) for large ones."""
    if backend not in ("auto", "exact", "usearch"):
        raise GenrekitError(f"unknown search backend {backend!r}: use auto, exact or usearch")
    if backend == "auto":
        if n <= EXACT_LIMIT:
            return "exact"
        try:
            import usearch.index  # noqa: F401
        except ImportError:
            return "exact"
        return "usearch"
    if backend == "usearch":
        try:
            import usearch.index  # noqa: F401
        except ImportError:
            raise GenrekitError('the usearch backend needs usearch: pip install "genrekit[similar]"') from None
    return backend


def vectors_digest(vectors: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(vectors, dtype=np.float32).tobytes()).hexdigest()


def _build_usearch(vectors: np.ndarray, *, path: str | os.PathLike | None, vectors_sha256: str):
    from usearch.index import Index

    ann = Index(ndim=int(vectors.shape[1]), metric="cos", dtype="f32", connectivity=16, expansion_add=128,
                expansion_search=64)
    stamp = Path(f"{path}.json") if path else None
    if path and Path(path).is_file() and stamp is not None and stamp.is_file():
        try:
            if json.loads(stamp.read_text()).get("vectors_sha256") == vectors_sha256:
                ann.load(str(path))
                return ann
        except (OSError, ValueError, RuntimeError):
            pass  # rebuilt below
    ann.add(np.arange(vectors.shape[0], dtype=np.uint64), np.ascontiguousarray(vectors, dtype=np.float32))
    if path:
        tmp = Path(f"{path}.tmp")
        ann.save(str(tmp))
        os.replace(tmp, path)
        atomic_write_text(stamp, json.dumps({"vectors_sha256": vectors_sha256}))
    return ann


# ============================================================================================ the library index


@dataclass
class UpdateReport:
    total: int
    kept: int
    added: int
    changed: int
    removed: int
    failed: list[tuple[str, str]]
    seconds: float


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns]


def _index_folder(d: Path) -> bool:
    """An index folder genrekit wrote before folders were marked: its manifest is an index's."""
    try:
        return json.loads((d / "manifest.json").read_text(encoding="utf-8")).get("format") == INDEX_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def load_index(index_dir: str | os.PathLike, *, backend: str = "auto") -> SimilarityIndex:
    """The saved index in ``index_dir`` (raises SimilarIndexError when missing or inconsistent)."""
    d = Path(index_dir)
    try:
        manifest = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SimilarIndexError(f"{d}: no similarity index here yet (build it with genrekit similar --update)") from None
    except (OSError, ValueError) as exc:
        raise SimilarIndexError(f"{d}/manifest.json: unreadable ({exc})") from None
    if manifest.get("format") != INDEX_FORMAT or manifest.get("version") != INDEX_VERSION:
        raise SimilarIndexError(f"{d}: not a genrekit similarity index of version {INDEX_VERSION}")
    tracks = manifest["tracks"]
    if tracks:
        try:
            vectors = np.load(d / "vectors.npy", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise SimilarIndexError(f"{d}/vectors.npy: unreadable ({exc})") from None
        if vectors_digest(vectors) != manifest.get("vectors_sha256"):
            raise SimilarIndexError(f"{d}: vectors.npy does not match the manifest (interrupted update?); "
                                    "run genrekit similar --update again")
    else:
        vectors = np.zeros((0, DIM), np.float32)
    meta = {k: v for k, v in manifest.items() if k != "tracks"}
    idx = SimilarityIndex([t["path"] for t in tracks], vectors, meta=meta, digests=[t["sha256"] for t in tracks],
                          stats={t["path"]: t["stat"] for t in tracks}, backend=backend)
    return idx.build(ann_path=d / "usearch.index")


def update_index(library: str | os.PathLike, *, index_dir: str | os.PathLike | None = None, jobs: int = 1,
                 cache=None, progress: bool = True, backend: str = "auto",
                 summarise: Callable | None = None) -> tuple[SimilarityIndex, UpdateReport]:
    """Bring the index of ``library`` up to date (new, changed and removed files) and return it.

    ``summarise`` (for tests and other embedders) maps a list of paths to ``(path, sha256, summary,
    error)`` tuples like :func:`genrekit.library.musicnn.summaries`."""
    from genrekit import audio
    from genrekit.library import musicnn

    t0 = time.perf_counter()
    d = Path(index_dir) if index_dir is not None else default_index_dir(library)
    d = claim_folder(d, ours=_index_folder)  # before any work: never a user's folder of other files
    model = musicnn.DEFAULT_MODEL
    weights = musicnn.weights_sha256(model) if summarise is None else "custom"
    old: dict[str, dict[str, Any]] = {}
    old_vec: np.ndarray | None = None
    try:
        prev = load_index(d, backend="exact")
        if prev.meta.get("model") == model and prev.meta.get("weights_sha256") == weights:
            old_vec = prev.vectors
            for i, p in enumerate(prev.paths):
                old[p] = {"row": i, "stat": prev.stats[p], "sha256": prev.digests[i]}
    except SimilarIndexError:
        pass
    found, skipped = audio.find_audio([library])  # regular files only: FIFOs and devices are skipped, with why
    for where, exc in skipped:
        if not os.path.lexists(where):
            raise exc
    files = [os.path.realpath(f) for f in found]
    files = list(dict.fromkeys(files))
    keep: dict[str, tuple[np.ndarray, str, list[int]]] = {}
    todo: list[str] = []
    stats: dict[str, list[int]] = {}
    for f in files:
        try:
            st = os.stat(f)
        except OSError:
            continue
        stats[f] = _stat_key(st)
        o = old.get(f)
        if o is not None and o["stat"] == stats[f] and old_vec is not None:
            keep[f] = (old_vec[o["row"]], o["sha256"], stats[f])
        else:
            todo.append(f)
    changed = sum(1 for f in todo if f in old)
    failed: list[tuple[str, str]] = [(where, str(exc)) for where, exc in skipped]
    if todo:
        run = summarise or (lambda paths: musicnn.summaries(paths, model=model, jobs=jobs, cache=cache,
                                                            progress=progress))
        for path, digest, summary, err in run(todo):
            if err or summary is None:
                failed.append((path, err or "no embedding"))
                continue
            keep[path] = (np.asarray(summary["embedding"], dtype=np.float32), digest, stats[path])
    paths = [f for f in files if f in keep]
    vectors = normalise(np.stack([keep[f][0] for f in paths])) if paths else np.zeros((0, DIM), np.float32)
    tracks = [{"path": f, "sha256": keep[f][1], "stat": keep[f][2]} for f in paths]
    d.mkdir(parents=True, exist_ok=True)
    dirty = (len(todo) > 0 or set(old) != set(paths) or not (d / "manifest.json").is_file())
    if dirty:
        import io

        buf = io.BytesIO()
        np.save(buf, vectors, allow_pickle=False)
        atomic_write_bytes(d / "vectors.npy", buf.getvalue())
        manifest = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "library": os.path.realpath(library),
                    "model": model, "weights_sha256": weights, "dim": int(vectors.shape[1]),
                    "vectors_sha256": vectors_digest(vectors), "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "tracks": tracks}
        atomic_write_text(d / "manifest.json", json_escaped(json.dumps(manifest, ensure_ascii=False)))
    idx = SimilarityIndex(paths, vectors, meta={"model": model, "weights_sha256": weights},
                          digests=[t["sha256"] for t in tracks], stats={t["path"]: t["stat"] for t in tracks},
                          backend=backend)
    idx.build(ann_path=d / "usearch.index")
    report = UpdateReport(total=len(paths), kept=sum(1 for f in paths if f not in todo),
                          added=sum(1 for f in todo if f not in old and f in keep), changed=changed,
                          removed=len(set(old) - set(files)), failed=failed, seconds=time.perf_counter() - t0)
    return idx, report


def query_vector(song: str | os.PathLike, index: SimilarityIndex, *, cache=None) -> tuple[np.ndarray, int | None, str]:
    """The embedding of ``song`` (from the index when it is an unchanged library track), its row in the
    index (None for a song from elsewhere) and its content digest."""
    from genrekit.library import musicnn

    row = index.row_of(song)
    if row is not None:
        st = os.stat(os.path.realpath(song))
        if index.stats.get(index.paths[row]) == _stat_key(st):
            return index.vectors[row], row, index.digests[row]
    digest, summary, err = musicnn.summary_file(musicnn.SummaryJob(str(song), musicnn.DEFAULT_MODEL, cache))
    if err or summary is None:
        raise GenrekitError(err or f"{song}: no embedding")
    return np.asarray(summary["embedding"], dtype=np.float32), row, digest


def similar(song: str | os.PathLike, index: SimilarityIndex, *, k: int = 10, cache=None) -> list[Neighbour]:
    """The ``k`` tracks of ``index`` nearest to ``song``, leaving out the song itself and byte-identical
    copies of it (the same file twice in a library is not a recommendation)."""
    q, row, digest = query_vector(song, index, cache=cache)
    exclude = {row} if row is not None else set()
    if digest:
        exclude |= {i for i, dg in enumerate(index.digests) if dg == digest}
    return index.search(q, k=k, exclude=exclude)
