"""Real tagged audio files for the library tests: every format genrekit tags, with other tags, cover art
and (optionally) a genre already set, encoded with PyAV's bundled FFmpeg and soundfile (no system tools)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from helpers import pyav_encode, tone

FORMATS = ("mp3", "mp3v23", "flac", "ogg", "opus", "m4a", "wav-id3")
EXT = {"mp3": ".mp3", "mp3v23": ".mp3", "flac": ".flac", "ogg": ".ogg", "opus": ".opus", "m4a": ".m4a",
       "wav-id3": ".wav", "wav": ".wav"}


def cover_png(seed: int = 0, size: int = 48) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), "RGB").save(buf, format="PNG")
    return buf.getvalue()


def encode(y: np.ndarray, sr: int, fmt: str) -> bytes:
    """Audio bytes of one format, untagged."""
    import soundfile as sf

    if fmt in ("mp3", "mp3v23"):
        return pyav_encode(y, sr, codec="mp3", container="mp3")
    if fmt == "m4a":
        return pyav_encode(y, sr, codec="aac", container="mp4")
    if fmt == "opus":
        return pyav_encode(_resample(y, sr, 48000), 48000, codec="libopus", container="ogg")
    buf = io.BytesIO()
    kind = {"flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"), "wav-id3": ("WAV", "PCM_16"),
            "wav": ("WAV", "PCM_16")}[fmt]
    sf.write(buf, y, sr, format=kind[0], subtype=kind[1])
    return buf.getvalue()


def _resample(y, sr, target):
    from genrekit import audio

    return audio.resample(np.asarray(y, dtype=np.float32), orig_sr=sr, target_sr=target)


def add_tags(path: Path, fmt: str, *, title: str, genre: list[str] | None = None, picture: bool = True,
             seed: int = 0) -> None:
    """Title, artist, album, track number, a comment, a cover picture and optionally a genre."""
    import base64

    from mutagen.flac import FLAC, Picture
    from mutagen.id3 import APIC, COMM, ID3, TALB, TCON, TIT2, TPE1, TRCK
    from mutagen.mp4 import MP4, MP4Cover
    from mutagen.oggopus import OggOpus
    from mutagen.oggvorbis import OggVorbis
    from mutagen.wave import WAVE

    art = cover_png(seed)
    if fmt in ("mp3", "mp3v23", "wav-id3"):
        if fmt == "wav-id3":
            w = WAVE(path)
            w.add_tags()
            tags = w.tags
        else:
            tags = ID3()
        tags.add(TIT2(encoding=3, text=title))
        tags.add(TPE1(encoding=3, text="Ünïcode Artist"))
        tags.add(TALB(encoding=3, text="Album ✓"))
        tags.add(TRCK(encoding=3, text="3/12"))
        tags.add(COMM(encoding=3, lang="eng", desc="", text="a comment"))
        if genre:
            tags.add(TCON(encoding=3, text=genre))
        if picture:
            tags.add(APIC(encoding=3, mime="image/png", type=3, desc="cover", data=art))
        if fmt == "wav-id3":
            w.save()
        else:
            tags.save(path, v2_version=3 if fmt == "mp3v23" else 4, v1=2 if fmt == "mp3v23" else 0)
        return
    if fmt == "m4a":
        m = MP4(path)
        m.add_tags() if m.tags is None else None
        m.tags["\xa9nam"] = [title]
        m.tags["\xa9ART"] = ["Ünïcode Artist"]
        m.tags["\xa9alb"] = ["Album ✓"]
        m.tags["trkn"] = [(3, 12)]
        if genre:
            m.tags["\xa9gen"] = genre
        if picture:
            m.tags["covr"] = [MP4Cover(art, imageformat=MP4Cover.FORMAT_PNG)]
        m.save()
        return
    cls = {"flac": FLAC, "ogg": OggVorbis, "opus": OggOpus}[fmt]
    f = cls(path)
    if f.tags is None:
        f.add_tags()
    f.tags["TITLE"] = title
    f.tags["ARTIST"] = "Ünïcode Artist"
    f.tags["ALBUM"] = "Album ✓"
    f.tags["TRACKNUMBER"] = "3"
    if genre:
        f.tags["GENRE"] = genre
    if picture:
        pic = Picture()
        pic.type, pic.mime, pic.desc, pic.data, pic.width, pic.height, pic.depth = 3, "image/png", "cover", art, 48, 48, 24
        if fmt == "flac":
            f.add_picture(pic)
        else:
            f.tags["METADATA_BLOCK_PICTURE"] = [base64.b64encode(pic.write()).decode("ascii")]
    f.save()


def make_file(path: Path, fmt: str, y: np.ndarray | None = None, sr: int = 22050, *, genre: list[str] | None = None,
              picture: bool = True, seed: int = 0, tagged: bool = True) -> Path:
    """One tagged file of format ``fmt`` (``wav`` is left without an ID3 chunk)."""
    if y is None:
        y = tone(3.0, sr=sr, freq=220.0 * (1 + seed % 5), seed=seed)[:, 0]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(y, sr, fmt))
    if tagged and fmt != "wav":
        add_tags(path, fmt, title=f"Track {seed} — ✓", genre=genre, picture=picture, seed=seed)
    return path


def decode_mono(path) -> tuple[np.ndarray, int]:
    """A real clip as mono float32 at full scale (+-1.0) and its rate, to re-encode into other formats.
    PyAV hands a 16/24-bit FLAC's integer samples: they are scaled, or the copies would be 90 dB too loud."""
    import av

    with av.open(str(path)) as c:
        frames = [f.to_ndarray() for f in c.decode(audio=0)]
        sr = c.streams.audio[0].sample_rate
    scale = float(np.iinfo(frames[0].dtype).max + 1) if np.issubdtype(frames[0].dtype, np.integer) else 1.0
    return (np.concatenate([f.mean(axis=0) for f in frames]) / scale).astype(np.float32), sr


def decoded_pcm(path) -> np.ndarray:
    """The PCM FFmpeg decodes: a check independent of the packet digest the writer itself uses."""
    import av

    with av.open(str(path)) as c:
        return np.concatenate([f.to_ndarray().ravel() for f in c.decode(audio=0)])


def other_tags(path) -> dict:
    """Every tag but the genre, with picture bytes, read freshly with mutagen."""
    import mutagen
    from mutagen.flac import FLAC

    f = mutagen.File(path)
    out = {}
    for k, v in (f.tags.items() if f.tags is not None else []):
        if k.upper() in ("TCON", "GENRE", "\xa9GEN"):
            continue
        out[k] = repr(v) if not hasattr(v, "data") else (v.mime, v.desc, v.type, bytes(v.data))
    if isinstance(f, FLAC):
        out["_pictures"] = [(p.mime, p.desc, bytes(p.data)) for p in f.pictures]
    return out
