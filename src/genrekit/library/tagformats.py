"""What genrekit reads and writes in each tag format, and the checks that prove a rewrite changed nothing else.

Where the genre goes: ID3 ``TCON`` (mp3, and the ID3 chunk of WAV / AIFF where the file has one), the
Vorbis comment ``GENRE`` (flac, ogg, opus), MP4 ``\u00a9gen`` (m4a). A :func:`snapshot` holds everything but the
fields being written; :func:`audio_frames_digest` the compressed audio packets. Both ``tag`` (before
the rename) and ``undo`` (before restoring) compare them.
"""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any

from genrekit.library.files import TagError


class UnsupportedTagFormatError(TagError):
    """The file is not one of the formats genrekit writes tags into."""


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


def open_tags(source: str | os.PathLike | bytes, name: str):
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


def tag_field(family: str, name: str) -> str:
    """The tag key of ``name`` ("genre" or a custom field such as GENREKIT_TAGS) in a tag family."""
    if name == "genre":
        return {"id3": "TCON", "id3-chunk": "TCON", "vorbis": "GENRE", "mp4": "\xa9gen"}[family]
    if family.startswith("id3"):
        return f"TXXX:{name}"
    if family == "mp4":
        return f"----:com.apple.iTunes:{name}"
    return name.upper()


def get_values(f, family: str, name: str) -> list[str]:
    tags = f.tags
    if tags is None:
        return []
    key = tag_field(family, name)
    if family.startswith("id3"):
        frames = tags.getall(key)
        if name == "genre":
            return [g for fr in frames for g in fr.genres]  # "(17)" -> "Rock", as players show it
        return [str(t) for fr in frames for t in fr.text]
    if family == "mp4":
        vals = tags.get(key, [])
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in vals]
    return [str(v) for v in tags.get(key, [])]


def set_values(f, family: str, name: str, values: list[str]) -> None:
    from mutagen.id3 import TCON, TXXX
    from mutagen.mp4 import MP4FreeForm

    if f.tags is None:
        f.add_tags()
    key = tag_field(family, name)
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


def snapshot(f, family: str, skip: set[str]) -> dict[str, Any]:
    """Everything but the fields being written: other tags, pictures, metadata blocks, stream info."""
    from mutagen.flac import FLAC, Padding, VCFLACDict

    info = f.info
    snap: dict[str, Any] = {"_info": [type(f).__name__, round(float(getattr(info, "length", 0.0)), 6),
                                      getattr(info, "sample_rate", None), getattr(info, "channels", None)]}
    keys = {tag_field(family, n) for n in skip}
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
        snap["_blocks"] = [[b.code, hashlib.sha256(b.write()).hexdigest()] for b in f.metadata_blocks
                           if not isinstance(b, (VCFLACDict, Padding))]
    return snap


def audio_frames_digest(data: bytes | str | os.PathLike, *, name: str = "") -> str:
    """sha256 over the compressed audio packets as FFmpeg demuxes them (tags and container excluded).

    Equal digests before and after a tag edit mean the audio frames are byte-identical, whatever the
    container moved around them (an MP4 ``mdat`` shifted by a grown ``moov``, renumbered Ogg pages).
    ``data`` is the file's bytes or its path (read as FFmpeg demuxes it: a long file is never held whole)."""
    import av

    h = hashlib.sha256()
    count = 0
    try:
        source = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else os.fspath(data)
        with av.open(source, "r") as c:
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


def id3v1(data: bytes) -> bytes | None:
    return data[-128:] if len(data) >= 128 and data[-128:-125] == b"TAG" else None


def id3v1_genre_byte(values: list[str]) -> int:
    from mutagen.id3 import TCON

    if values:
        low = [g.lower() for g in TCON.GENRES]
        if values[0].lower() in low:
            return low.index(values[0].lower())
    return 255


def save_kwargs(f, family: str) -> dict[str, Any]:
    if not family.startswith("id3"):
        return {}
    version = getattr(f.tags, "version", (2, 4, 0)) if f.tags is not None else (2, 4, 0)
    return {"v2_version": 3 if version[1] == 3 else 4, "v1": 1}


def expected_readback(family: str, values: list[str], save_kw: dict[str, Any]) -> list[str]:
    """ID3v2.3 has no multi-value frames: mutagen joins the values with '/' and reads one back."""
    if family.startswith("id3") and save_kw.get("v2_version") == 3 and len(values) > 1:
        return ["/".join(values)]
    return values
