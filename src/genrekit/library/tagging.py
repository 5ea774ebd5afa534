"""Genre tags in the files themselves, written so that nothing can be lost.

Where the genre goes: ID3 ``TCON`` (mp3, and the ID3 chunk of WAV / AIFF where the file has one), the
Vorbis comment ``GENRE`` (flac, ogg, opus), MP4 ``©gen`` (m4a). Multi-value genres are separate values
where the format has them (ID3v2.4, Vorbis, MP4), ``/``-joined in ID3v2.3 (what mutagen and players do).

How a file is changed (:func:`write_genres`), and why each step:

1. its bytes are read once and hashed; they must be the bytes the prediction was made from
   (``expected_sha256``), or the file changed since and is skipped;
2. the bytes are copied to one fixed temporary name beside it and mutagen edits the copy (the original
   is never opened for writing);
3. the copy is checked: the new genre reads back; every other tag, picture and FLAC metadata block is
   unchanged; the compressed audio packets (demuxed by FFmpeg) are byte-identical; an ID3v1 trailer
   keeps its bytes except the genre byte;
4. the change, with a patch that rebuilds the original bytes, is fsynced to the undo journal
   (:mod:`genrekit.library.undo`);
5. the copy gets the original's mode, owner, xattrs and times (unless ``touch``), is fsynced and
   renamed over the original (atomic), and the journal marks the change done.

A kill at any moment leaves the original or the complete new file, never a mix; a rerun removes the
stale temporary copy. Read-only files, hard-linked files (a rename would split the links), unsupported
formats and files without a place for the tag are reported and left alone.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genrekit.errors import GenrekitError
from genrekit.library.undo import (
    FileChangedError,
    FileMeta,
    UndoJournal,
    finish_temp,
    fsync_dir,
    make_patch,
    sha256_bytes,
    temp_path_for,
)

POLICIES = ("only-empty", "overwrite", "append")
# GTZAN's labels as people write them in tags (ID3v1's list spells these the same way).
GENRE_NAMES = {
    "blues": "Blues", "classical": "Classical", "country": "Country", "disco": "Disco",
    "hiphop": "Hip-Hop", "jazz": "Jazz", "metal": "Metal", "pop": "Pop", "reggae": "Reggae", "rock": "Rock",
}


class TagError(GenrekitError):
    """A file's tags cannot be read or written safely; the message says why and the file is left alone."""


class UnsupportedTagFormatError(TagError):
    """The file is not one of the formats genrekit writes tags into."""


class ReadOnlyError(TagError):
    """The file (or its folder) is not writable, or belongs to someone else."""


class VerificationError(TagError):
    """The rewritten copy differs from the original in more than the genre; the original is kept."""


# ============================================================================================ formats


def _mutagen_classes() -> dict[type, str]:
    from mutagen.aiff import AIFF
    from mutagen.flac import FLAC
    from mutagen.mp3 import MP3
    from mutagen.mp4 import MP4
    from mutagen.oggopus import OggOpus
    from mutagen.oggvorbis import OggVorbis
    from mutagen.wave import WAVE

    return {MP3: "id3", WAVE: "id3-chunk", AIFF: "id3-chunk", FLAC: "vorbis", OggVorbis: "vorbis",
            OggOpus: "vorbis", MP4: "mp4"}


def _open(source: str | os.PathLike | bytes, name: str):
    """The mutagen object of a supported file (from a path or from bytes), and its tag family."""
    import mutagen

    if isinstance(source, (bytes, bytearray)):
        fileobj = io.BytesIO(source)
        fileobj.name = name  # mutagen scores the extension too
        target: Any = fileobj
    else:
        target = os.fspath(source)
    try:
        f = mutagen.File(target)
    except mutagen.MutagenError as exc:
        raise TagError(f"{name}: cannot read its tags ({exc})") from None
    if f is None:
        raise UnsupportedTagFormatError(f"{name}: not a format genrekit writes tags into "
                                        "(mp3, flac, ogg, opus, m4a, and wav/aiff with an ID3 chunk)")
    for cls, family in _mutagen_classes().items():
        if type(f) is cls:
            return f, family
    raise UnsupportedTagFormatError(f"{name}: {type(f).__name__} files are not supported for tagging "
                                    "(mp3, flac, ogg, opus, m4a, and wav/aiff with an ID3 chunk)")


def _field(family: str, name: str) -> str:
    """The tag key of ``name`` ("genre" or a custom field such as GENREKIT_TAGS) in a tag family."""
    if name == "genre":
        return {"id3": "TCON", "id3-chunk": "TCON", "vorbis": "GENRE", "mp4": "\xa9gen"}[family]
    if family.startswith("id3"):
        return f"TXXX:{name}"
    if family == "mp4":
        return f"----:com.apple.iTunes:{name}"
    return name.upper()


def _get(f, family: str, name: str) -> list[str]:
    tags = f.tags
    if tags is None:
        return []
    key = _field(family, name)
    if family.startswith("id3"):
        frames = tags.getall(key)
        if name == "genre":
            return [g for fr in frames for g in fr.genres]  # "(17)" -> "Rock", as players show it
        return [str(t) for fr in frames for t in fr.text]
    if family == "mp4":
        vals = tags.get(key, [])
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in vals]
    return [str(v) for v in tags.get(key, [])]


def _set(f, family: str, name: str, values: list[str]) -> None:
    from mutagen.id3 import TCON, TXXX
    from mutagen.mp4 import MP4FreeForm

    if f.tags is None:
        f.add_tags()
    key = _field(family, name)
    if family.startswith("id3"):
        f.tags.delall(key)
        if values:
            f.tags.add(TCON(encoding=3, text=values) if name == "genre"
                       else TXXX(encoding=3, desc=name, text=values))
    elif family == "mp4":
        if values:
            f.tags[key] = values if name == "genre" else [MP4FreeForm(v.encode("utf-8")) for v in values]
        else:
            f.tags.pop(key, None)
    elif values:
        f.tags[key] = values
    else:
        f.tags.pop(key, None)


def _plain(v: Any) -> Any:
    """A comparable, JSON-able form of a tag value (bytes by digest: pictures can be megabytes)."""
    if isinstance(v, (bytes, bytearray)):
        return "sha256:" + hashlib.sha256(v).hexdigest()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def _snapshot(f, family: str, skip: set[str]) -> dict[str, Any]:
    """Everything but the fields being written: other tags, pictures, metadata blocks, stream info."""
    from mutagen.flac import FLAC, Padding, VCFLACDict

    info = f.info
    snap: dict[str, Any] = {"_info": [type(f).__name__, round(float(getattr(info, "length", 0.0)), 6),
                                      getattr(info, "sample_rate", None), getattr(info, "channels", None)]}
    keys = {_field(family, n) for n in skip}
    tags = f.tags
    if tags is not None:
        if family.startswith("id3"):
            for frame in tags.values():
                if frame.HashKey in keys or frame.FrameID in keys:
                    continue
                snap[frame.HashKey] = _plain([(k, v) for k, v in sorted(vars(frame).items()) if k != "encoding"])
        elif family == "mp4":
            for k, v in tags.items():
                if k not in keys:
                    snap[k] = _plain(list(v) if isinstance(v, list) else v)
        else:
            low = {k.lower() for k in keys}
            snap["_comments"] = sorted([k.lower(), v] for k, v in tags if k.lower() not in low)
    if isinstance(f, FLAC):
        snap["_blocks"] = [[b.code, sha256_bytes(b.write())] for b in f.metadata_blocks
                           if not isinstance(b, (VCFLACDict, Padding))]
    return snap


def audio_frames_digest(data: bytes, *, name: str = "") -> str:
    """sha256 over the compressed audio packets as FFmpeg demuxes them (tags and container excluded).

    Equal digests before and after a tag edit mean the audio frames are byte-identical, whatever the
    container moved around them (an MP4 ``mdat`` shifted by a grown ``moov``, renumbered Ogg pages)."""
    import av

    h = hashlib.sha256()
    count = 0
    try:
        with av.open(io.BytesIO(data), "r") as c:
            streams = [s for s in c.streams if s.type == "audio"]
            if not streams:
                raise TagError(f"{name}: no audio stream")
            for pkt in c.demux(streams[0]):
                if pkt.size:
                    b = bytes(pkt)
                    h.update(len(b).to_bytes(4, "big"))
                    h.update(b)
                    count += 1
    except av.FFmpegError as exc:
        raise TagError(f"{name}: the audio cannot be demuxed ({exc})") from None
    if not count:
        raise TagError(f"{name}: no audio packets")
    h.update(count.to_bytes(8, "big"))
    return h.hexdigest()


def _id3v1(data: bytes) -> bytes | None:
    return data[-128:] if len(data) >= 128 and data[-128:-125] == b"TAG" else None


def _id3v1_genre_byte(values: list[str]) -> int:
    from mutagen.id3 import TCON

    if values:
        low = [g.lower() for g in TCON.GENRES]
        if values[0].lower() in low:
            return low.index(values[0].lower())
    return 255


def _save_kwargs(f, family: str) -> dict[str, Any]:
    if not family.startswith("id3"):
        return {}
    version = getattr(f.tags, "version", (2, 4, 0)) if f.tags is not None else (2, 4, 0)
    return {"v2_version": 3 if version[1] == 3 else 4, "v1": 1}


# ============================================================================================ reading


@dataclass
class FileTags:
    """What a file holds now: its tag family, genre values and content digest."""

    path: str
    family: str
    genres: list[str]
    sha256: str
    extra: dict[str, list[str]] = field(default_factory=dict)


def read_tags(path: str | os.PathLike, *, fields: Iterable[str] = ()) -> FileTags:
    """The genre values (and ``fields``) of a supported file; raises a TagError saying why not."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise TagError(f"{p}: no such file") from None
    except OSError as exc:
        raise TagError(f"{p}: cannot read ({exc.strerror or exc})") from None
    f, family = _open(data, p.name)
    if family == "id3-chunk" and f.tags is None:
        raise UnsupportedTagFormatError(f"{p}: this {type(f).__name__} file has no ID3 chunk; genrekit "
                                        "writes WAV/AIFF genres only into an existing one")
    return FileTags(str(p), family, _get(f, family, "genre"), sha256_bytes(data),
                    {n: _get(f, family, n) for n in fields})


def read_genres(path: str | os.PathLike) -> list[str]:
    """The genre values a file's own tag holds (empty when none)."""
    return read_tags(path).genres


# ============================================================================================ policies


def genre_name(label: str, *, labels: str = "display") -> str:
    """How a model label is written into a tag: GTZAN's as in ID3 (``hiphop`` -> ``Hip-Hop``) with
    ``labels="display"``, the model's own spelling with ``labels="model"``; other labels as they are."""
    if labels == "model":
        return label
    return GENRE_NAMES.get(label, label)


@dataclass
class Decision:
    """What to do with one file and why."""

    action: str  # "write", "skip", "unchanged", "error"
    values: list[str]  # the genre values after the change (the current ones when nothing changes)
    proposed: list[str]
    confidence: float | None
    reason: str = ""


def needs_prediction(current: list[str], *, policy: str) -> bool:
    """A file that keeps its genre whatever the model says is not worth classifying."""
    return not (policy == "only-empty" and _nonblank(current))


def _nonblank(values: list[str]) -> list[str]:
    return [v for v in values if v and v.strip()]


def decide(current: list[str], record: dict[str, Any] | None, *, policy: str = "only-empty",
           min_confidence: float = 0.0, top_k: int = 1, labels: str = "display") -> Decision:
    """The genre values a file gets under a policy, from its ``predict`` record.

    ``only-empty`` writes files without a genre; ``overwrite`` replaces what is there; ``append`` adds the
    new genres after the present ones (case-insensitively new ones only). ``top_k`` genres are proposed,
    each with a score of at least ``min_confidence``; a file whose best score is below it is left alone."""
    if policy not in POLICIES:
        raise GenrekitError(f"unknown policy {policy!r}: use one of {', '.join(POLICIES)}")
    if top_k < 1:
        raise GenrekitError("top_k must be >= 1")
    present = _nonblank(current)
    if record is None:
        if not needs_prediction(current, policy=policy):
            return Decision("skip", current, [], None, "has a genre (--overwrite or --append to change it)")
        raise GenrekitError("decide() needs the file's prediction record")
    if record.get("error"):
        return Decision("error", current, [], None, str(record["error"]))
    ranked = sorted((record.get("scores") or {}).items(), key=lambda gs: -gs[1])
    if not ranked:
        return Decision("error", current, [], None, "the prediction has no scores")
    confidence = float(ranked[0][1])
    proposed = [genre_name(g, labels=labels) for g, s in ranked[:top_k] if s >= min_confidence]
    if confidence < min_confidence:
        return Decision("skip", current, [genre_name(ranked[0][0], labels=labels)], confidence,
                        f"confidence {confidence:.2f} below --min-confidence {min_confidence:.2f}")
    if policy == "only-empty" and present:
        return Decision("skip", current, proposed, confidence, "has a genre (--overwrite or --append to change it)")
    if policy == "append":
        have = {v.strip().lower() for v in present}
        values = present + [g for g in proposed if g.lower() not in have]
    else:
        values = proposed
    if values == current:
        return Decision("unchanged", current, proposed, confidence, "already tagged so")
    return Decision("write", values, proposed, confidence)


# ============================================================================================ writing


@dataclass
class WriteResult:
    file: str
    old: dict[str, list[str]]
    new: dict[str, list[str]]
    before_sha256: str
    after_sha256: str
    audio_sha256: str
    patch_bytes: int
    seq: int


def check_writable(path: str | os.PathLike, st: os.stat_result | None = None) -> None:
    """Raise ReadOnlyError unless genrekit may replace ``path`` (honouring read-only mode bits even as root)."""
    p = Path(path)
    st = st or os.stat(p)
    if not (st.st_mode & 0o222) or not os.access(p, os.W_OK):
        raise ReadOnlyError(f"{p}: read-only file; left alone (make it writable to tag it)")
    if not os.access(p.parent, os.W_OK | os.X_OK):
        raise ReadOnlyError(f"{p}: its folder is not writable, so it cannot be replaced safely; left alone")
    if st.st_nlink > 1:
        raise ReadOnlyError(f"{p}: has {st.st_nlink} hard links; replacing it would split them; left alone")
    if hasattr(os, "geteuid") and os.geteuid() != 0 and st.st_uid != os.geteuid():
        raise ReadOnlyError(f"{p}: belongs to another user; left alone")


def write_genres(path: str | os.PathLike, values: dict[str, list[str]], *, journal: UndoJournal,
                 expected_sha256: str | None = None, touch: bool = False,
                 before_replace: Callable[[], None] | None = None) -> WriteResult:
    """Rewrite one file's ``values`` (``{"genre": [...], "GENREKIT_TAGS": [...]}``) safely; see the
    module docstring for the steps. Raises a TagError (file untouched) when any check fails.

    ``before_replace`` is called after the change is journalled and just before the rename: the one
    moment a crash or another program's edit matters most (the tests use it to cause both)."""
    link = Path(path)
    p = Path(os.path.realpath(link))  # a symlink's target is what gets tagged; the link stays a link
    try:
        st = os.stat(p)
        check_writable(p, st)
        data = p.read_bytes()
    except FileNotFoundError:
        raise TagError(f"{link}: no such file") from None
    except PermissionError as exc:
        raise ReadOnlyError(f"{link}: {exc.strerror}; left alone") from None
    before = sha256_bytes(data)
    if expected_sha256 is not None and before != expected_sha256:
        raise FileChangedError(f"{link}: changed since it was classified; left alone (run again to redo it)")
    f0, family = _open(data, p.name)
    if family == "id3-chunk" and f0.tags is None:
        raise UnsupportedTagFormatError(f"{link}: this {type(f0).__name__} file has no ID3 chunk; genrekit "
                                        "writes WAV/AIFF genres only into an existing one")
    names = set(values)
    old = {n: _get(f0, family, n) for n in names}
    snap0 = _snapshot(f0, family, names)
    audio0 = audio_frames_digest(data, name=str(link))
    save_kw = _save_kwargs(f0, family)

    from mutagen import MutagenError

    tmp = temp_path_for(p)
    tmp.unlink(missing_ok=True)  # a stale copy of a killed run
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        f, _ = _open(tmp, p.name)
        for n, vals in values.items():
            _set(f, family, n, list(vals))
        try:
            f.save(**save_kw)
        except MutagenError as exc:
            raise TagError(f"{link}: mutagen could not write the tag ({exc}); original kept") from None
        v1 = _id3v1(data) if family == "id3" else None
        if v1 is not None:  # mutagen regenerates ID3v1 from v2: keep the old bytes, change only the genre
            with open(tmp, "r+b") as fh:
                fh.seek(-128, os.SEEK_END)
                if fh.read(3) == b"TAG":
                    fh.seek(-128, os.SEEK_END)
                    fh.write(v1[:127] + bytes([_id3v1_genre_byte(list(values.get("genre", old.get("genre", []))))]))
        with open(tmp, "rb+") as fh:
            new_data = fh.read()
            os.fsync(fh.fileno())
        f1, _ = _open(new_data, p.name)
        got = {n: _get(f1, family, n) for n in names}
        want = {n: _expected_readback(family, list(v), save_kw) for n, v in values.items()}
        if got != want:
            raise VerificationError(f"{link}: the new tag reads back as {got}, not {want}; original kept")
        if _snapshot(f1, family, names) != snap0:
            raise VerificationError(f"{link}: rewriting changed other tags or pictures; original kept")
        if audio_frames_digest(new_data, name=str(link)) != audio0:
            raise VerificationError(f"{link}: rewriting changed the audio frames; original kept")
        patch = make_patch(data, new_data)
        after = sha256_bytes(new_data)
        seq = journal.record_change(
            file=str(p), before={"sha256": before, "size": len(data), "mode": st.st_mode & 0o7777,
                                 "atime_ns": st.st_atime_ns, "mtime_ns": st.st_mtime_ns},
            after_sha256=after, old=old, new={n: list(v) for n, v in values.items()}, patch=patch)
        if before_replace is not None:
            before_replace()
        now = os.stat(p)
        if (now.st_size, now.st_mtime_ns, now.st_ino) != (st.st_size, st.st_mtime_ns, st.st_ino):
            raise FileChangedError(f"{link}: changed while genrekit was writing it; left alone")
        try:
            finish_temp(tmp, p, meta=FileMeta.of(st), keep_times=not touch)
        except PermissionError as exc:
            raise ReadOnlyError(f"{link}: cannot keep its owner or mode ({exc.strerror}); left alone") from None
        journal.record_done(seq)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    from genrekit.library.undo import patch_size

    return WriteResult(str(link), old, {n: list(v) for n, v in values.items()}, before, after, audio0,
                       patch_size(patch), seq)


def _expected_readback(family: str, values: list[str], save_kw: dict[str, Any]) -> list[str]:
    """ID3v2.3 has no multi-value frames: mutagen joins the values with '/' and reads one back."""
    if family.startswith("id3") and save_kw.get("v2_version") == 3 and len(values) > 1:
        return ["/".join(values)]
    return values


def cleanup_temp(path: str | os.PathLike) -> bool:
    """Remove a stale temporary copy a killed run left beside ``path``; True when there was one."""
    tmp = temp_path_for(os.path.realpath(path))
    if tmp.exists():
        tmp.unlink()
        fsync_dir(tmp.parent)
        return True
    return False


# ============================================================================================ predictions


def prediction_cache(clf, *, enabled: bool = True):
    """The content-addressed cache of ``predict`` records for one model file (shared by tag, beets and
    playlists, so a dry run's predictions are reused by the ``--write`` run that follows it)."""
    from genrekit.store import Cache

    return Cache("library-predict", {"model_sha256": clf.identity.get("sha256"), "backend": clf.backend,
                                     "record": 1}, enabled=enabled)


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def predict_files(paths: list[str], *, clf, jobs: int = 1, cache=None,
                  progress: bool = True) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(path, sha256, record)`` for each path (``genrekit predict``'s record, top 3), in completion
    order, classified by ``genrekit.run.predict`` on ``jobs`` local processes.

    The content digest is taken before classifying and the file is checked unchanged after, so a
    prediction always belongs to known bytes; records are cached by that digest (``cache``), and a
    cached file is not decoded again."""
    from genrekit.predict import error_record
    from genrekit.run.cached import cached_map
    from genrekit.run.engines import LocalEngine
    from genrekit.run.items import error_text
    from genrekit.run.predict import predict_task
    from genrekit.store import file_digest

    def save(digest: str, rec: dict[str, Any]) -> None:
        if cache is not None and not rec.get("error"):
            cache.put(digest, rec)

    engine = LocalEngine(jobs=jobs, progress=progress)
    with predict_task(clf, engine, top_k=3) as task:
        for r in cached_map(task, paths, cache, engine=engine, desc="predict", key=file_digest, save=save,
                            unchanged="changed while being classified"):
            if r.error is not None:
                rec = error_record(r.input, error_text(r.input, r.error))
            else:
                rec = {**r.value, "file": r.input} if r.cached else r.value
            yield r.input, r.key or "", rec


def remember_prediction(cache, sha256: str, record: dict[str, Any]) -> None:
    """After a verified tag write the audio is the same, so the prediction holds for the new bytes too."""
    if cache is not None and sha256 and not record.get("error"):
        cache.put(sha256, record)


# ============================================================================================ a whole run


TAGS_FIELD = "GENREKIT_TAGS"  # TXXX:GENREKIT_TAGS in ID3, ----:com.apple.iTunes:GENREKIT_TAGS in MP4


@dataclass
class TagRow:
    """One line of ``genrekit tag``'s report."""

    file: str
    current: list[str]
    proposed: list[str]
    confidence: float | None
    action: str  # would write | written | skipped | unchanged | error | done earlier
    reason: str = ""
    new: list[str] = field(default_factory=list)
    current_tags: list[str] | None = None  # with --tags: GENREKIT_TAGS now, and what it becomes
    new_tags: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.new_tags is None and self.current_tags is None:
            del d["current_tags"], d["new_tags"]
        return d


@dataclass
class TagSettings:
    policy: str = "only-empty"
    min_confidence: float = 0.0
    top_k: int = 1
    labels: str = "display"
    touch: bool = False
    tags: int = 0  # write this many musicnn (MSD) tags into TAGS_FIELD; 0: none

    def journal_settings(self, *, model_sha256: str | None) -> dict[str, Any]:
        d = {"policy": self.policy, "min_confidence": self.min_confidence, "top_k": self.top_k,
             "labels": self.labels, "model_sha256": model_sha256}
        if self.tags:
            d["tags"] = self.tags
        return d


def analyse_files(todo: list[tuple[str, bool]], *, tags: bool, clf, jobs: int = 1, cache=None, tag_cache=None,
                  progress: bool = True) -> Iterator[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None,
                                                          str | None]]:
    """``(path, sha256, genre record, musicnn summary, error)`` for each ``(path, classify the genre?)``
    of ``todo``, in completion order: the genres first (:func:`predict_files`), then, with ``tags``, the
    musicnn summaries of the files whose genre did not fail (``musicnn.summaries``). A file whose bytes
    differ between the two is an error: the row's tags and genre must describe the same bytes."""
    records: dict[str, tuple[str, dict[str, Any]]] = {}
    for path, digest, rec in predict_files([p for p, genre in todo if genre], clf=clf, jobs=jobs, cache=cache,
                                           progress=progress):
        if rec.get("error"):
            yield path, digest, rec, None, str(rec["error"])
        elif not tags:
            yield path, digest, rec, None, None
        else:
            records[path] = (digest, rec)
    if not tags:
        return
    from genrekit.library.musicnn import DEFAULT_MODEL, summaries

    rest = [p for p, genre in todo if not genre or p in records]
    for path, d2, summary, err in summaries(rest, model=DEFAULT_MODEL, jobs=jobs, cache=tag_cache, progress=progress):
        digest, rec = records.get(path, ("", None))
        if err:
            yield path, d2, rec, None, err
        elif digest and d2 != digest:
            yield path, d2, rec, None, f"{path}: changed while being analysed"
        else:
            yield path, d2, rec, summary, None


def tag_files(files: list[str], *, settings: TagSettings, clf, write: bool = False, journal: UndoJournal | None = None,
              resumed: set[str] | None = None, jobs: int = 1, cache=None, tag_cache=None,
              progress: bool = True) -> Iterator[TagRow]:
    """Classify and (with ``write``) tag ``files``; one :class:`TagRow` per file, in completion order.

    ``resumed`` holds the files an interrupted run with the same journal already finished: they are
    reported, not redone. Nothing is written without ``write`` and a ``journal``. With
    ``settings.tags`` the top musicnn tags go into :data:`TAGS_FIELD`, genrekit's own field, which is
    brought up to date whatever the genre policy decides (nothing of the user's is replaced)."""
    if write and journal is None:
        raise GenrekitError("writing tags needs an undo journal")
    resumed = resumed or set()
    fields = [TAGS_FIELD] if settings.tags else []
    if settings.tags:
        from genrekit.library.musicnn import top_tags
    todo: list[tuple[str, bool]] = []
    current: dict[str, FileTags] = {}
    for path in files:
        real = os.path.realpath(path)
        try:
            if write:
                cleanup_temp(real)
            info = read_tags(path, fields=fields)
        except (TagError, OSError) as exc:
            yield TagRow(path, [], [], None, "error", str(exc))
            continue
        cur_tags = info.extra.get(TAGS_FIELD) if settings.tags else None
        try:  # in a dry run too: it shows what --write would do
            check_writable(real)
        except (TagError, OSError) as exc:
            yield TagRow(path, info.genres, [], None, "error", str(exc), info.genres, cur_tags)
            continue
        current[path] = info
        genre = needs_prediction(info.genres, policy=settings.policy)
        if real in resumed:
            yield TagRow(path, info.genres, [], None, "done earlier", "written by the interrupted run", info.genres,
                         cur_tags, cur_tags)
        elif not genre and not settings.tags:
            d = decide(info.genres, None, policy=settings.policy)
            yield TagRow(path, info.genres, [], None, "skipped", d.reason)
        else:
            todo.append((path, genre))
    for path, digest, rec, summary, err in analyse_files(todo, tags=bool(settings.tags), clf=clf, jobs=jobs,
                                                         cache=cache, tag_cache=tag_cache, progress=progress):
        info = current[path]
        cur_tags = info.extra.get(TAGS_FIELD) if settings.tags else None
        if err:
            yield TagRow(path, info.genres, [], None, "error", err, info.genres, cur_tags)
            continue
        if rec is not None:
            d = decide(info.genres, rec, policy=settings.policy, min_confidence=settings.min_confidence,
                       top_k=settings.top_k, labels=settings.labels)
        else:
            d = decide(info.genres, None, policy=settings.policy)
        values: dict[str, list[str]] = {}
        if d.action == "write":
            values["genre"] = d.values
        new_tags = cur_tags
        if summary is not None:
            new_tags = [t for t, _ in top_tags(summary, settings.tags)]
            if new_tags != cur_tags:
                values[TAGS_FIELD] = new_tags
        reason = d.reason
        if values and "genre" not in values:
            reason = f"tags only; genre {'kept' if d.action == 'skip' else d.action}"
        action = "would write" if values else {"skip": "skipped"}.get(d.action, d.action)
        row = TagRow(path, info.genres, d.proposed, d.confidence, action, reason,
                     d.values if "genre" in values else info.genres, cur_tags, new_tags)
        if values and write:
            assert journal is not None
            try:
                res_w = write_genres(path, values, journal=journal, expected_sha256=digest, touch=settings.touch)
            except (TagError, FileChangedError, OSError) as exc:
                row.action, row.reason = "error", str(exc)
            else:
                row.action = "written"
                if rec is not None:
                    remember_prediction(cache, res_w.after_sha256, rec)
                if summary is not None and tag_cache is not None:
                    tag_cache.put(res_w.after_sha256, summary)
        yield row
