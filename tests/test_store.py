"""genrekit.store: atomic writes and the content-addressed cache."""

from __future__ import annotations

import pytest

from genrekit import store

# ---------------------------------------------------------------------------------------------- atomic files


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "sub" / "out.csv"
    store.atomic_write_text(p, "a,b\n1,2\n")
    assert p.read_text() == "a,b\n1,2\n"
    store.atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"new"


def test_atomic_writer_leaves_old_file_on_error(tmp_path):
    p = tmp_path / "out.csv"
    p.write_text("old")
    with pytest.raises(RuntimeError), store.atomic_writer(p) as f:
        f.write("half of the new ")
        raise RuntimeError("interrupted")
    assert p.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["out.csv"]  # no temporary file left
    with pytest.raises(ValueError):
        with store.atomic_writer(p, "r"):
            pass


def test_atomic_path_for_writers_that_want_a_file_name(tmp_path):
    p = tmp_path / "fig.png"
    with store.atomic_path(p, suffix=".png") as tmp:
        assert tmp.name.startswith(".fig.png.") and tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_bytes(b"png bytes")
        assert not p.exists()  # nothing at the target until the block ends
    assert p.read_bytes() == b"png bytes" and sorted(x.name for x in tmp_path.iterdir()) == ["fig.png"]
    with pytest.raises(OSError), store.atomic_path(p) as tmp:
        tmp.write_bytes(b"half")
        raise OSError("disk full")
    assert p.read_bytes() == b"png bytes" and sorted(x.name for x in tmp_path.iterdir()) == ["fig.png"]


# ---------------------------------------------------------------------------------------------- cache


def test_cache_arrays_and_the_flat_cache_key(tmp_path):
    import numpy as np

    f = tmp_path / "clip.wav"
    f.write_bytes(b"audio bytes")
    c = store.Cache("logmel", {"n_mels": 128}, root=tmp_path / "c")
    k = c.key(f)
    assert c.get_array(k) is None
    c.put_array(k, np.arange(6, dtype=np.float32).reshape(2, 3))
    got = c.get_array(k)
    assert got.dtype == np.float32 and got.tolist() == [[0, 1, 2], [3, 4, 5]]
    next(c.dir.rglob("*.npy")).write_bytes(b"torn")
    assert c.get_array(k) is None and not list(c.dir.rglob("*.npy"))  # a damaged entry is a miss, removed
    key = store.cache_key(f, {"n_mels": 128})
    assert key == f"{store.settings_digest({'n_mels': 128})}-{store.file_digest(f)}" == f"{c.dir.name}-{k}"
    assert store.cache_key(f, {"n_mels": 64}) != key


def test_cache_roundtrip_keys_and_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert store.cache_root() == tmp_path / "xdg" / "genrekit"
    a = tmp_path / "a.bin"
    b = tmp_path / "b.bin"
    a.write_bytes(b"same content")
    b.write_bytes(b"same content")
    c = store.Cache("features", {"segment": None, "v": 1})
    ka, kb = c.key(a), c.key(b)
    assert ka == kb == store.file_digest(a)  # content, not name
    assert c.get(ka) is None and ka not in c
    c.put(ka, [{"values": [1.5, float("nan")]}])
    got = c.get(kb)
    assert got[0]["values"][0] == 1.5 and got[0]["values"][1] != got[0]["values"][1]
    assert c.dir.is_relative_to(tmp_path / "xdg" / "genrekit" / "features")
    assert (c.dir / "settings.json").is_file()
    other = store.Cache("features", {"segment": 3.0, "v": 1})
    assert other.get(ka) is None  # other settings, other entry
    # the content digest is memoised per (path, size, mtime): a changed file gets a new key
    a.write_bytes(b"different content!")
    assert c.key(a) != ka


def test_cache_disabled_and_corrupt_entries(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc")
    off = store.Cache("t", {}, root=tmp_path / "c", enabled=False)
    k = off.key(f)
    off.put(k, 1)
    assert off.get(k) is None and not (tmp_path / "c").exists()
    on = store.Cache("t", {}, root=tmp_path / "c")
    on.put(k, {"x": 1})
    entry = next(p for p in on.dir.rglob("*.json") if p.name != "settings.json")
    entry.write_text('{"value": ')  # e.g. a disk that filled up under another tool
    assert on.get(k) is None and not entry.exists()
    with pytest.raises(ValueError):
        store.Cache("../evil", {})


def test_atomic_writes_get_ordinary_permissions(tmp_path, monkeypatch):
    """A new file gets 0666 less the umask (not mkstemp's 0600); a replaced file keeps its mode."""
    import stat

    monkeypatch.setattr(store, "_UMASK", 0o027)  # the umask store read at import
    store.atomic_write_text(tmp_path / "new.txt", "a")
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o640
    (tmp_path / "new.txt").chmod(0o604)
    store.atomic_write_bytes(tmp_path / "new.txt", b"b")
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o604
    assert (tmp_path / "new.txt").read_bytes() == b"b"
