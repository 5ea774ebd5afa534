"""The beets plugin (beetsplug/genrekit.py) against a real beets library made in the test with beets' own
CLI (`beet import`) and read back with beets' API: same genres as `genrekit tag`, policies, import hook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from library_media import EXT, make_file

pytest.importorskip("beets")

SRC = Path(__file__).resolve().parents[1] / "src"


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "BEETSDIR": str(home / "beets"), "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_STATE_HOME": str(home / "state"), "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}


def _configure(home: Path, *, model: Path | None, auto: bool = False, extra: str = "") -> None:
    (home / "beets").mkdir(parents=True, exist_ok=True)
    (home / "beets" / "config.yaml").write_text(
        f"directory: {home / 'library'}\nlibrary: {home / 'beets' / 'library.db'}\n"
        "plugins: [genrekit]\nimport:\n  copy: yes\n  write: yes\n  quiet: yes\n  autotag: no\n"
        "genrekit:\n"
        f"  auto: {'yes' if auto else 'no'}\n  cache: no\n"
        + (f"  model: {model}\n" if model else "") + extra, encoding="utf-8")


def beet(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "beets", *args], env=_env(home), capture_output=True, text=True,
                       timeout=600)
    if check and r.returncode != 0:
        raise AssertionError(f"beet {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def library_items(home: Path) -> dict[str, dict]:
    """title -> the item's fields, read with beets' own API (in a subprocess: beets' config is global)."""
    code = (
        "import json, os, sys\n"
        "from beets.library import Library\n"
        f"lib = Library({str(home / 'beets' / 'library.db')!r}, directory={str(home / 'library')!r})\n"
        "out = {}\n"
        "for it in lib.items():\n"
        "    g = list(it.get('genres') or []) if 'genres' in it._fields else ([it.genre] if it.genre else [])\n"
        "    out[it.title] = {'genres': g, 'path': os.fsdecode(it.path),\n"
        "                     'genrekit_genre': it.get('genrekit_genre'),\n"
        "                     'genrekit_confidence': it.get('genrekit_confidence'),\n"
        "                     'genrekit_tags': it.get('genrekit_tags')}\n"
        "print(json.dumps(out))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=_env(home), capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def genrekit_tag_values(home: Path, folder: Path, *, model: Path | None, args: tuple[str, ...] = ()) -> dict[str, list]:
    """file name -> the genre values `genrekit tag` (dry run) would write."""
    cmd = [sys.executable, "-m", "genrekit", "tag", str(folder), "--format", "json", "--no-progress", "--no-cache",
           *args] + (["--model", str(model)] if model else [])
    r = subprocess.run(cmd, env=_env(home), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return {Path(row["file"]).name: row["new"] for row in json.loads(r.stdout)}


def _tracks(folder: Path, n: int) -> dict[str, str]:
    """n tagged tracks of mixed formats; returns title -> file name."""
    titles = {}
    for i in range(n):
        fmt = ("mp3", "flac", "ogg", "m4a")[i % 4]
        p = make_file(folder / f"t{i:02d}{EXT[fmt]}", fmt, seed=i, picture=False)
        titles[f"Track {i} — ✓"] = p.name  # the title make_file gives it
    return titles


@pytest.mark.slow
def test_beet_genrekit_sets_genres_like_genrekit_tag(tmp_path, tiny_model):
    home = tmp_path
    src = tmp_path / "incoming"
    titles = _tracks(src, 20)
    _configure(home, model=tiny_model)
    beet(home, "import", "-q", str(src))
    items = library_items(home)
    assert len(items) == 20 and all(not it["genres"] for it in items.values())

    expected = genrekit_tag_values(home, src, model=tiny_model)
    out = beet(home, "genrekit")
    assert "20 write" in out.stdout, out.stdout + out.stderr
    items = library_items(home)
    for title, it in items.items():
        want = expected[titles[title]]
        assert it["genres"] == want and want, (title, it, want)
        assert it["genrekit_genre"] in ("blues", "metal") and 0.0 < float(it["genrekit_confidence"]) <= 1.0
        from genrekit.library.tagging import read_genres

        assert read_genres(it["path"]) == want  # beets wrote it into the library's copy (write: yes)

    # a query selects items; only-empty leaves tagged items alone; --overwrite --top-k 2 changes them
    out = beet(home, "genrekit", "title:Track 3")
    assert "1 skipped" in out.stdout
    expected2 = genrekit_tag_values(home, src, model=tiny_model, args=("--overwrite", "--top-k", "2"))
    beet(home, "genrekit", "--overwrite", "--top-k", "2")
    for title, it in library_items(home).items():
        assert it["genres"] == expected2[titles[title]] and len(it["genres"]) == 2
    assert beet(home, "genrekit", "--bogus", check=False).returncode != 0


def test_import_hook_classifies_new_items_when_enabled(tmp_path, tiny_model):
    home = tmp_path
    src = tmp_path / "incoming"
    _tracks(src, 3)
    make_file(src / "has_genre.flac", "flac", genre=["Jazz"], seed=9, picture=False)
    _configure(home, model=tiny_model, auto=True, extra="  tags: 3\n")
    beet(home, "import", "-q", str(src))
    items = library_items(home)
    assert len(items) == 4
    from genrekit.networks.musicnn import tag_names

    for it in items.values():  # musicnn tags for every item, the genre policy notwithstanding
        tags = it["genrekit_tags"].split(", ")
        assert len(tags) == 3 and set(tags) <= set(tag_names("MSD_musicnn")), it
    assert items["Track 9 — ✓"]["genres"] == ["Jazz"]  # only-empty: kept
    fresh = [it for t, it in items.items() if t != "Track 9 — ✓"]
    assert all(it["genres"] and it["genres"][0] in ("Blues", "Metal") for it in fresh)
    assert all(it["genrekit_genre"] for it in items.values() if it["genres"] != ["Jazz"])


def test_plugin_not_on_import_unless_enabled(tmp_path, tiny_model):
    home = tmp_path
    src = tmp_path / "incoming"
    _tracks(src, 2)
    _configure(home, model=tiny_model, auto=False)
    beet(home, "import", "-q", str(src))
    assert all(not it["genres"] for it in library_items(home).values())
    r = beet(home, "genrekit", "--min-confidence", "1.0")
    assert "2 skip" in r.stdout
    assert all(not it["genres"] for it in library_items(home).values())


def test_beet_genrekit_exits_non_zero_when_an_item_fails(tmp_path, tiny_model):
    """A library file that cannot be classified: the others are done, the failure is named, and the exit
    status says so (scripts and cron jobs must not read success)."""
    home = tmp_path
    _tracks(tmp_path / "incoming", 3)
    _configure(home, model=tiny_model)
    beet(home, "import", "-q", str(tmp_path / "incoming"))
    items = library_items(home)
    broken = items["Track 1 — ✓"]["path"]
    Path(broken).write_bytes(b"\0" * 4000)  # damaged on disk since the import
    r = beet(home, "genrekit", check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "1 error" in r.stdout and "1 items failed" in r.stderr and "Traceback" not in r.stderr
    assert os.path.basename(broken) in r.stderr  # the warning names the file
    after = library_items(home)
    assert not after["Track 1 — ✓"]["genres"]
    assert all(it["genres"] for t, it in after.items() if t != "Track 1 — ✓")


@pytest.mark.shared
@pytest.mark.slow
def test_real_library_of_20_gtzan_clips_with_the_shipped_model(tmp_path, gtzan):
    """The target: `beet genrekit` on 20 real tracks (2 per genre, re-encoded to mp3/flac/ogg/m4a) sets
    the genre on all, with the values `genrekit tag` proposes."""
    from library_media import add_tags, decode_mono, encode

    home = tmp_path
    src = tmp_path / "incoming"
    src.mkdir()
    clips = sorted((gtzan / "audio").glob("*/*.flac"))
    by_genre: dict[str, list[Path]] = {}
    for c in clips:
        by_genre.setdefault(c.parent.name, []).append(c)
    chosen = [p for g in sorted(by_genre) for p in by_genre[g][:2]]
    assert len(chosen) == 20
    titles = {}
    for i, clip in enumerate(chosen):
        y, sr = decode_mono(clip)
        fmt = ("mp3", "flac", "ogg", "m4a")[i % 4]
        p = src / f"{clip.stem}{EXT[fmt]}"
        p.write_bytes(encode(y, sr, fmt))
        add_tags(p, fmt, title=clip.stem, picture=False, seed=i)
        titles[clip.stem] = p.name
    _configure(home, model=None)
    beet(home, "import", "-q", str(src))
    expected = genrekit_tag_values(home, src, model=None)
    out = beet(home, "genrekit")
    items = library_items(home)
    assert len(items) == 20, out.stdout
    agree = sum(items[t]["genres"] == expected[titles[t]] for t in items)
    assert all(it["genres"] for it in items.values())
    assert agree == 20, {t: (items[t]["genres"], expected[titles[t]]) for t in items}
