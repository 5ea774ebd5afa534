"""File names as text: one form for terminals, one lossless form for JSON and CSV.

A POSIX file name is any bytes but ``/`` and NUL: it need not be UTF-8 (``x\\xff.ogg``) and may hold
control or escape characters. Python turns the undecodable bytes into lone surrogates
(``os.fsdecode``, the ``surrogateescape`` error handler), so every name has one exact ``str`` form:

* :func:`text_name` is that form. It is lossless: ``os.fsencode(text_name(p))`` gives the original
  bytes back. ``json.dumps`` (``ensure_ascii=True``, the default) writes a lone surrogate as the escape
  ``\\udcff``, which ``json.loads`` reads back to the same string; a CSV or text file opened with
  ``errors="surrogateescape"`` writes the original bytes (``store.atomic_write_text`` does: a CSV or
  playlist line then names the very file). JSON written with ``ensure_ascii=False`` goes through
  :func:`json_escaped`, which gives the same ``\udcff`` escapes. A name that is valid UTF-8 is unchanged.
* :func:`display_name` is for terminals and error messages: control, format and other non-printable
  characters become ``\\xNN`` / ``\\uNNNN`` escapes and each undecodable byte becomes ``\\xNN``, so a name
  can never move the cursor, recolour or clear a terminal. Printable names are unchanged.
"""

from __future__ import annotations

import os
import unicodedata

__all__ = ["display_name", "json_escaped", "text_name"]


def text_name(path: str | bytes | os.PathLike) -> str:
    """The lossless text form of a path (undecodable bytes as lone surrogates, see the module notes)."""
    return os.fsdecode(os.fspath(path))


def display_name(path: str | bytes | os.PathLike) -> str:
    """The path escaped for a terminal: what a person can read, with nothing that acts on the terminal."""
    name = text_name(path)
    if name.isprintable():
        return name
    return "".join(_escaped(c) for c in name)


def json_escaped(text: str) -> str:
    """JSON text made by ``json.dumps(..., ensure_ascii=False)`` with each lone surrogate (a name's byte
    that was not UTF-8) written as the JSON escape ``\\udcXX``, which ``json.loads`` reads back exactly;
    the result encodes to UTF-8. Other text is unchanged. (Surrogates only occur inside JSON strings,
    where the escape is valid.)"""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _escaped(c: str) -> str:
    o = ord(c)
    if 0xDC80 <= o <= 0xDCFF:  # a byte that was not UTF-8: show the byte itself
        return f"\\x{o - 0xDC00:02x}"
    if c.isprintable() or unicodedata.category(c) == "Zs":  # no-break and other spaces are harmless
        return c
    if o < 0x100:
        return f"\\x{o:02x}"
    return f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"
