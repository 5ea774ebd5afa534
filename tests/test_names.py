import json
import os

from genrekit.names import display_name, json_escaped, text_name


def test_text_name_is_lossless_for_any_posix_name():
    raw = b"/music/x\xff\x1b[2J\x07.ogg"
    name = text_name(raw)
    assert os.fsencode(name) == raw
    assert json.loads(json.dumps(name)) == name  # json writes \udcff and reads it back
    assert "\\udcff" in json.dumps(name)
    assert text_name("/music/Beyoncé.mp3") == "/music/Beyoncé.mp3"


def test_display_name_escapes_what_acts_on_a_terminal_and_nothing_else():
    assert display_name(b"x\xff\x1b[31mred\x07\n.ogg") == "x\\xff\\x1b[31mred\\x07\\x0a.ogg"
    assert display_name("a\u202eb.mp3") == "a\\u202eb.mp3"  # right-to-left override
    for plain in ("/music/Beyoncé - Halo.mp3", "日本語.flac", "a\u00a0b.wav", "back\\slash.wav"):
        assert display_name(plain) == plain
    shown = display_name(b"\x1b\x9b\xff")
    assert shown.isprintable() and "\x1b" not in shown
    assert display_name(shown) == shown  # escaping an escaped message changes nothing


def test_json_escaped_keeps_utf8_and_escapes_only_lone_surrogates():
    rec = {"file": text_name(b"x\xff.ogg"), "artist": "Beyoncé"}
    text = json_escaped(json.dumps(rec, ensure_ascii=False))
    assert "Beyoncé" in text and "\\udcff" in text
    text.encode("utf-8")  # writable as UTF-8
    assert json.loads(text) == rec
