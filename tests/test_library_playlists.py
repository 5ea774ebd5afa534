"""genrekit.library.playlists and `genrekit playlists`: grouping, relative UTF-8 M3U8, pruning only our own
playlists, and the same playlists from fresh predictions, a saved predict JSON and a Parquet output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genrekit.cli import main
from genrekit.library import playlists
from library_media import make_file


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def _rec(file, genre, scores, duration=30.0):
    return {"file": str(file), "genre": genre, "scores": scores, "duration_s": duration, "error": None}


def _entries(m3u: Path) -> list[Path]:
    """The tracks a playlist names, resolved the way a player does: relative to the playlist's folder."""
    lines = m3u.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#EXTM3U"
    return [(m3u.parent / ln).resolve() for ln in lines if ln and not ln.startswith("#")]


def test_group_by_genre_min_confidence_top_k_and_errors():
    recs = [_rec("a", "rock", {"rock": 0.7, "metal": 0.3}), _rec("b", "hiphop", {"hiphop": 0.4, "pop": 0.35}),
            {"file": "c", "genre": None, "scores": None, "error": "c: corrupt"}]
    groups, left = playlists.group_by_genre(recs)
    assert {g: [e.file for e in es] for g, es in groups.items()} == {"Rock": ["a"], "Hip-Hop": ["b"]}
    assert [r["file"] for r in left] == ["c"]
    groups, left = playlists.group_by_genre(recs, min_confidence=0.5)
    assert list(groups) == ["Rock"] and sorted(r["file"] for r in left) == ["b", "c"]
    groups, _ = playlists.group_by_genre(recs, top_k=2, min_confidence=0.3, labels="model")
    assert sorted(groups) == ["hiphop", "metal", "pop", "rock"]


def test_write_playlists_relative_utf8_and_pruning(tmp_path):
    music = tmp_path / "Music" / "Björk & co"
    a = make_file(music / "ünï côdé.flac", "flac", seed=1)
    b = make_file(music / "sub" / "b.ogg", "ogg", seed=2)
    out = tmp_path / "lists"
    out.mkdir()
    (out / "Mine.m3u8").write_text("#EXTM3U\n../Music/x.mp3\n", encoding="utf-8")  # the user's own
    groups, _ = playlists.group_by_genre([_rec(a, "rock", {"rock": 0.9}), _rec(b, "rnb", {"rnb": 0.8}),
                                          _rec(b, "old", {"old": 0.8})])
    groups["R&B/Soul"] = groups.pop("rnb")
    written = playlists.write_playlists(groups, out)
    assert sorted(p.name for p in written.values()) == ["R&B-Soul.m3u8", "Rock.m3u8", "old.m3u8"]
    rock = (out / "Rock.m3u8").read_text(encoding="utf-8")
    assert "../Music/Björk & co/ünï côdé.flac" in rock and "\\" not in rock
    assert "#EXTINF:30,Ünïcode Artist - Track 1 — ✓" in rock  # title from the file's tags
    assert _entries(out / "Rock.m3u8") == [a.resolve()]
    assert _entries(out / "R&B-Soul.m3u8") == [b.resolve()]

    del groups["old"]  # a rerun where that genre has no tracks: its playlist goes, the user's stays
    playlists.write_playlists(groups, out)
    assert sorted(p.name for p in out.iterdir()) == ["Mine.m3u8", "R&B-Soul.m3u8", "Rock.m3u8"]
    # music and playlists can move (or be copied to a player) together
    import shutil

    for d in ("Music", "lists"):
        shutil.copytree(tmp_path / d, tmp_path / "player" / d)
    assert all(e.is_file() and "player" in e.parts for e in _entries(tmp_path / "player" / "lists" / "Rock.m3u8"))
    with pytest.raises(playlists.PlaylistError, match="not a folder"):
        playlists.write_playlists(groups, a)


def test_saved_predictions_bad_inputs(tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text('{"not": "records"}', encoding="utf-8")
    with pytest.raises(playlists.PlaylistError, match="predict records"):
        playlists.load_predictions(bad)
    bad.write_text("not json", encoding="utf-8")
    with pytest.raises(playlists.PlaylistError, match="not a readable"):
        playlists.load_predictions(bad)


def test_cli_fresh_json_and_parquet_give_the_same_playlists(tmp_path, tiny_model, monkeypatch, capsys):
    pytest.importorskip("pyarrow")
    lib = tmp_path / "lib"
    for i in range(6):
        make_file(lib / f"t{i}.{('flac', 'ogg', 'mp3')[i % 3]}", ("flac", "ogg", "mp3")[i % 3], seed=i)
    (lib / "broken.flac").write_bytes(b"fLaC" + b"\0" * 100)
    monkeypatch.chdir(tmp_path)
    m = ["--model", str(tiny_model)]
    assert main(["playlists", "lib", "--out", "fresh", "--no-progress", *m]) == 1  # broken.flac failed
    assert main(["predict", "lib", "--format", "json", "-o", "preds.json", "--no-progress", *m]) == 1
    assert main(["playlists", "preds.json", "--out", "from_json"]) == 1
    assert main(["predict", "lib", "-o", "pq/", "--no-progress", *m]) == 1
    assert main(["playlists", "pq", "--out", "from_parquet"]) == 0  # failed inputs are not rows in Parquet
    capsys.readouterr()
    fresh = {p.name: p.read_text(encoding="utf-8") for p in (tmp_path / "fresh").iterdir()}
    assert fresh and sum(len(_entries(tmp_path / "fresh" / n)) for n in fresh) == 6
    for other in ("from_json", "from_parquet"):
        assert {p.name: p.read_text(encoding="utf-8") for p in (tmp_path / other).iterdir()} == fresh
    for name in fresh:
        assert all(e.is_file() for e in _entries(tmp_path / "fresh" / name))

    # saved predictions whose files moved: reported, not written
    moved = tmp_path / "preds_moved.json"
    recs = json.loads((tmp_path / "preds.json").read_text())
    moved.write_text(json.dumps([{**r, "file": "gone/" + Path(r["file"]).name} for r in recs]))
    assert main(["playlists", str(moved), "--out", "none"]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["playlists", "lib", "--out", "x", "--top-k", "0"]) == 2
