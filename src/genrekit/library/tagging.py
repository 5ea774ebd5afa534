"""Genre tags in the files themselves, written so that nothing can be lost.

Where the genre goes: ID3 ``TCON`` (mp3, and the ID3 chunk of WAV / AIFF where the file has one), the
Vorbis comment ``GENRE`` (flac, ogg, opus), MP4 ``©gen`` (m4a). Multi-value genres are separate values
where the format has them (ID3v2.4, Vorbis, MP4), ``/``-joined in ID3v2.3 (what mutagen and players do).

How a file is changed (:func:`write_genres`), and why each step:

1. its bytes are read once and hashed; they must be the bytes the prediction was made from
   (``expected_sha256``), or the file changed since and is skipped;
2. while genrekit holds the file's lock (:func:`genrekit.library.files.file_lock`: a second run
   leaves a busy file alone), the bytes are copied to this process's own temporary name beside it and
   mutagen edits the copy (the original is never opened for writing);
3. the copy is checked: the new genre reads back; every other tag, picture and FLAC metadata block is
   unchanged; the compressed audio packets (demuxed by FFmpeg) are byte-identical; an ID3v1 trailer
   keeps its bytes except the genre byte;
4. the change, with a patch that rebuilds the original bytes, is fsynced to the undo journal
   (:mod:`genrekit.library.undo`);
5. the copy gets the original's mode, owner, xattrs and times (unless ``touch``), is fsynced and
   renamed over the original (atomic), and the journal marks the change done.

A kill at any moment leaves the original or the complete new file, never a mix; a rerun (or undo)
removes the stale temporary copy. Read-only files, hard-linked files (a rename would split the links), unsupported
formats and files without a place for the tag are reported and left alone.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genrekit.audio.source import file_kind
from genrekit.errors import GenrekitError
from genrekit.library.files import (  # noqa: F401 - the errors are part of this module's API
    FileBusyError,
    FileChangedError,
    FileMeta,
    ReadOnlyError,
    TagError,
    check_writable,
    file_lock,
    finish_temp,
    read_fd,
    remove_leftovers,
    sweep_leftovers,
    temp_path_for,
)
from genrekit.library.tagformats import (  # noqa: F401
    UnsupportedTagFormatError,
    audio_frames_digest,
    expected_readback,
    get_values,
    id3v1,
    id3v1_genre_byte,
    open_tags,
    save_kwargs,
    set_values,
    snapshot,
)
from genrekit.library.undo import UndoJournal, make_patch_file, sha256_bytes
from genrekit.store import file_digest

POLICIES = ("only-empty", "overwrite", "append")
# GTZAN's labels as people write them in tags (ID3v1's list spells these the same way).
GENRE_NAMES = {
    "blues": "Blues", "classical": "Classical", "country": "Country", "disco": "Disco",
    "hiphop": "Hip-Hop", "jazz": "Jazz", "metal": "Metal", "pop": "Pop", "reggae": "Reggae", "rock": "Rock",
}


class VerificationError(TagError):
    """The rewritten copy differs from the original in more than the genre; the original is kept."""


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
    try:  # non-blocking, then fstat: a name swapped for a FIFO or a device since the finder is never read
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise TagError(f"{p}: no such file") from None
    except OSError as exc:
        raise TagError(f"{p}: cannot read ({exc.strerror or exc})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise TagError(f"{p}: not a regular file but {file_kind(mode)}; only regular files are read")
        data = read_fd(fd)
    except OSError as exc:
        raise TagError(f"{p}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    f, family = open_tags(data, p.name)
    if family == "id3-chunk" and f.tags is None:
        raise UnsupportedTagFormatError(f"{p}: this {type(f).__name__} file has no ID3 chunk; genrekit "
                                        "writes WAV/AIFF genres only into an existing one")
    return FileTags(str(p), family, get_values(f, family, "genre"), sha256_bytes(data),
                    {n: get_values(f, family, n) for n in fields})


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


def write_genres(path: str | os.PathLike, values: dict[str, list[str]], *, journal: UndoJournal,
                 expected_sha256: str | None = None, touch: bool = False,
                 before_replace: Callable[[], None] | None = None) -> WriteResult:
    """Rewrite one file's ``values`` (``{"genre": [...], "GENREKIT_TAGS": [...]}``) safely; see the
    module docstring for the steps. Raises a TagError (file untouched) when any check fails, a
    FileBusyError when another genrekit run is changing the file.

    ``before_replace`` is called after the change is journalled and just before the rename: the one
    moment a crash or another program's edit matters most (the tests use it to cause both)."""
    link = Path(path)
    p = Path(os.path.realpath(link))  # a symlink's target is what gets tagged; the link stays a link
    try:
        lock = file_lock(p, name=link)
        fd = lock.__enter__()
    except FileNotFoundError:
        raise TagError(f"{link}: no such file") from None
    except PermissionError as exc:
        raise ReadOnlyError(f"{link}: {exc.strerror}; left alone") from None
    try:
        return _write_locked(link, p, fd, values, journal=journal, expected_sha256=expected_sha256, touch=touch,
                             before_replace=before_replace)
    finally:
        lock.__exit__(None, None, None)


def _write_locked(link: Path, p: Path, fd: int, values: dict[str, list[str]], *, journal: UndoJournal,
                  expected_sha256: str | None, touch: bool, before_replace: Callable[[], None] | None) -> WriteResult:
    """:func:`write_genres` while this process holds the file's lock (``fd``)."""
    st = os.fstat(fd)
    check_writable(p, st, name=link)
    try:
        data = read_fd(fd)
    except PermissionError as exc:
        raise ReadOnlyError(f"{link}: {exc.strerror}; left alone") from None
    before = sha256_bytes(data)
    if expected_sha256 is not None and before != expected_sha256:
        raise FileChangedError(f"{link}: changed since it was classified; left alone (run again to redo it)")
    f0, family = open_tags(data, p.name)
    if family == "id3-chunk" and f0.tags is None:
        raise UnsupportedTagFormatError(f"{link}: this {type(f0).__name__} file has no ID3 chunk; genrekit "
                                        "writes WAV/AIFF genres only into an existing one")
    names = set(values)
    old = {n: get_values(f0, family, n) for n in names}
    snap0 = snapshot(f0, family, names)
    save_kw = save_kwargs(f0, family)
    del f0  # mutagen's view of the bytes: not needed past here
    audio0 = audio_frames_digest(data, name=str(link))

    from mutagen import MutagenError

    journal.record_folder(str(p.parent))  # before the copy: undo after a kill knows where to sweep
    tmp = temp_path_for(p)
    tmp.unlink(missing_ok=True)  # this process's own copy, left by an earlier failure
    try:
        try:
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
                fh.write(data)
        except OSError as exc:
            raise TagError(f"{link}: cannot write its temporary copy beside it ({exc.strerror or exc}); "
                           "original kept") from None
        f, _ = open_tags(tmp, p.name)
        for n, vals in values.items():
            set_values(f, family, n, list(vals))
        try:
            f.save(**save_kw)
        except MutagenError as exc:
            raise TagError(f"{link}: mutagen could not write the tag ({exc}); original kept") from None
        v1 = id3v1(data) if family == "id3" else None
        if v1 is not None:  # mutagen regenerates ID3v1 from v2: keep the old bytes, change only the genre
            with open(tmp, "r+b") as fh:
                fh.seek(-128, os.SEEK_END)
                if fh.read(3) == b"TAG":
                    fh.seek(-128, os.SEEK_END)
                    fh.write(v1[:127] + bytes([id3v1_genre_byte(list(values.get("genre", old.get("genre", []))))]))
        with open(tmp, "rb+") as fh:  # the copy is checked from the file, never held whole in memory
            os.fsync(fh.fileno())
        f1, _ = open_tags(tmp, p.name)
        got = {n: get_values(f1, family, n) for n in names}
        want = {n: expected_readback(family, list(v), save_kw) for n, v in values.items()}
        if got != want:
            raise VerificationError(f"{link}: the new tag reads back as {got}, not {want}; original kept")
        if snapshot(f1, family, names) != snap0:
            raise VerificationError(f"{link}: rewriting changed other tags or pictures; original kept")
        del f1
        if audio_frames_digest(tmp, name=str(link)) != audio0:
            raise VerificationError(f"{link}: rewriting changed the audio frames; original kept")
        patch = make_patch_file(data, tmp)
        after = file_digest(tmp)
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


def cleanup_temp(path: str | os.PathLike) -> bool:
    """Remove the stale temporary copies killed runs left beside ``path``; True when there were any.
    A file another genrekit run is changing right now keeps its copy (False)."""
    real = os.path.realpath(path)
    try:
        with file_lock(real):
            return bool(remove_leftovers(real))
    except (FileBusyError, FileChangedError, OSError):
        return False


# ============================================================================================ predictions


def prediction_cache(clf, *, enabled: bool = True, styles: bool = False):
    """The content-addressed cache of ``predict`` records for one model file (shared by tag, beets and
    playlists, so a dry run's predictions are reused by the ``--write`` run that follows it); records
    with ``styles`` are kept apart (a record cached without them cannot answer for them)."""
    from genrekit.store import Cache

    key = {"model_sha256": clf.identity.get("sha256"), "backend": clf.backend, "record": 1}
    if styles:
        key["styles"] = True
    return Cache("library-predict", key, enabled=enabled)


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def predict_files(paths: list[str], *, clf, jobs: int = 1, cache=None, progress: bool = True,
                  styles: bool = False) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(path, sha256, record)`` for each path (``genrekit predict``'s record, top 3), in completion
    order, classified by ``genrekit.run.predict`` on ``jobs`` local processes.

    The content digest is taken before classifying and the file is checked unchanged after, so a
    prediction always belongs to known bytes; records are cached by that digest (``cache``), and a
    cached file is not decoded again. ``styles``: the records carry them (``prediction_cache(styles=True)``)."""
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
    with predict_task(clf, engine, top_k=3, styles=styles) as task:
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
STYLES_FIELD = "GENREKIT_STYLES"  # the record's AudioSet styles (mn04), the same way: genrekit's own field


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
    current_styles: list[str] | None = None  # with --styles: GENREKIT_STYLES now, and what it becomes
    new_styles: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.new_tags is None and self.current_tags is None:
            del d["current_tags"], d["new_tags"]
        if self.new_styles is None and self.current_styles is None:
            del d["current_styles"], d["new_styles"]
        return d


@dataclass
class TagSettings:
    policy: str = "only-empty"
    min_confidence: float = 0.0
    top_k: int = 1
    labels: str = "display"
    touch: bool = False
    tags: int = 0  # write this many musicnn (MSD) tags into TAGS_FIELD; 0: none
    styles: bool = False  # write the record's styles (top 3 AudioSet genre classes) into STYLES_FIELD

    def journal_settings(self, *, model_sha256: str | None) -> dict[str, Any]:
        d = {"policy": self.policy, "min_confidence": self.min_confidence, "top_k": self.top_k,
             "labels": self.labels, "model_sha256": model_sha256}
        if self.tags:
            d["tags"] = self.tags
        if self.styles:
            d["styles"] = True
        return d


def analyse_files(todo: list[tuple[str, bool]], *, tags: bool, clf, jobs: int = 1, cache=None, tag_cache=None,
                  progress: bool = True, styles: bool = False) -> Iterator[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None,
                                                          str | None]]:
    """``(path, sha256, genre record, musicnn summary, error)`` for each ``(path, classify the genre?)``
    of ``todo``, in completion order: the genres first (:func:`predict_files`), then, with ``tags``, the
    musicnn summaries of the files whose genre did not fail (``musicnn.summaries``). A file whose bytes
    differ between the two is an error: the row's tags and genre must describe the same bytes. With
    ``styles`` the records carry styles (``todo``'s second item then says: classify this file)."""
    records: dict[str, tuple[str, dict[str, Any]]] = {}
    for path, digest, rec in predict_files([p for p, genre in todo if genre], clf=clf, jobs=jobs, cache=cache,
                                           progress=progress, styles=styles):
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
    brought up to date whatever the genre policy decides (nothing of the user's is replaced); so do,
    with ``settings.styles``, the record's styles into :data:`STYLES_FIELD`. Undo restores both."""
    if write and journal is None:
        raise GenrekitError("writing tags needs an undo journal")
    resumed = resumed or set()
    fields = ([TAGS_FIELD] if settings.tags else []) + ([STYLES_FIELD] if settings.styles else [])
    if settings.tags:
        from genrekit.library.musicnn import top_tags
    todo: list[tuple[str, bool]] = []
    current: dict[str, FileTags] = {}
    if write:  # the copies a killed run left: one listing per folder
        for folder in dict.fromkeys(os.path.dirname(os.path.realpath(p)) for p in files):
            sweep_leftovers(folder)
    for path in files:
        real = os.path.realpath(path)
        try:
            info = read_tags(path, fields=fields)
        except (TagError, OSError) as exc:
            yield TagRow(path, [], [], None, "error", str(exc))
            continue
        cur_tags = info.extra.get(TAGS_FIELD) if settings.tags else None
        cur_styles = info.extra.get(STYLES_FIELD) if settings.styles else None
        try:  # in a dry run too: it shows what --write would do
            check_writable(real)
        except (TagError, OSError) as exc:
            yield TagRow(path, info.genres, [], None, "error", str(exc), info.genres, cur_tags, None, cur_styles)
            continue
        current[path] = info
        genre = needs_prediction(info.genres, policy=settings.policy) or settings.styles  # styles need the record
        if real in resumed:
            yield TagRow(path, info.genres, [], None, "done earlier", "written by the interrupted run", info.genres,
                         cur_tags, cur_tags, cur_styles, cur_styles)
        elif not genre and not settings.tags:
            d = decide(info.genres, None, policy=settings.policy)
            yield TagRow(path, info.genres, [], None, "skipped", d.reason)
        else:
            todo.append((path, genre))
    for path, digest, rec, summary, err in analyse_files(todo, tags=bool(settings.tags), clf=clf, jobs=jobs,
                                                         cache=cache, tag_cache=tag_cache, progress=progress,
                                                         styles=settings.styles):
        info = current[path]
        cur_tags = info.extra.get(TAGS_FIELD) if settings.tags else None
        cur_styles = info.extra.get(STYLES_FIELD) if settings.styles else None
        if err:
            yield TagRow(path, info.genres, [], None, "error", err, info.genres, cur_tags, None, cur_styles)
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
        new_styles = cur_styles
        if settings.styles and rec is not None and rec.get("styles"):  # none heard (all silent): left as is
            new_styles = [str(name) for name, _ in rec["styles"]]
            if new_styles != cur_styles:
                values[STYLES_FIELD] = new_styles
        reason = d.reason
        if values and "genre" not in values:
            what = " and ".join(w for w, f in (("tags", TAGS_FIELD), ("styles", STYLES_FIELD)) if f in values)
            reason = f"{what} only; genre {'kept' if d.action == 'skip' else d.action}"
        action = "would write" if values else {"skip": "skipped"}.get(d.action, d.action)
        row = TagRow(path, info.genres, d.proposed, d.confidence, action, reason,
                     d.values if "genre" in values else info.genres, cur_tags, new_tags, cur_styles, new_styles)
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
