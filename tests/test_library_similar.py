"""genrekit.library.similar and `genrekit similar`: exact and HNSW search, the incremental index (new,
changed, removed files; a damaged index is refused), and real musicnn neighbours on synthesised audio."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from genrekit.cli import main
from genrekit.library import similar
from library_media import make_file


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    """Clustered vectors like embeddings: 20 centres, spread around each."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, similar.DIM))
    return (centres[rng.integers(0, 20, n)] + 0.5 * rng.standard_normal((n, similar.DIM))).astype(np.float32)


def _brute(vectors: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    v = similar.normalise(vectors)
    s = v @ similar.normalise(q[None])[0]
    return list(np.argsort(-s, kind="stable")[:k])


def test_exact_search_is_the_brute_force_answer():
    v = _vectors(500)
    idx = similar.SimilarityIndex([f"/t/{i}" for i in range(500)], v, backend="exact").build()
    for qi in (0, 17, 499):
        got = idx.search(v[qi], k=10, exclude=[qi])
        want = [i for i in _brute(v, v[qi], 11) if i != qi][:10]
        assert [n.file for n in got] == [f"/t/{i}" for i in want]
        assert all(a.similarity >= b.similarity for a, b in zip(got, got[1:], strict=False))
    assert len(idx.search(v[0], k=1000)) == 500
    with pytest.raises(similar.GenrekitError):
        idx.search(v[0], k=0)


def test_usearch_hnsw_finds_nearly_the_exact_neighbours(tmp_path):
    pytest.importorskip("usearch")
    v = _vectors(3000, seed=1)
    paths = [f"/t/{i}" for i in range(3000)]
    exact = similar.SimilarityIndex(paths, v, backend="exact").build()
    ann = similar.SimilarityIndex(paths, v, backend="usearch").build(ann_path=tmp_path / "u.index")
    assert ann.backend == "usearch" and (tmp_path / "u.index").is_file()
    rng = np.random.default_rng(2)
    recall = []
    for qi in rng.choice(3000, 50, replace=False):
        a = {n.file for n in ann.search(v[qi], k=10, exclude=[qi])}
        e = {n.file for n in exact.search(v[qi], k=10, exclude=[qi])}
        recall.append(len(a & e) / 10)
    assert np.mean(recall) >= 0.95
    again = similar.SimilarityIndex(paths, v, backend="usearch").build(ann_path=tmp_path / "u.index")  # loaded
    assert [n.file for n in again.search(v[5], k=5)] == [n.file for n in ann.search(v[5], k=5)]
    assert similar.choose_backend(10) == "exact" and similar.choose_backend(10**6) in ("usearch", "exact")


class FakeEmbedder:
    """Embeddings from file bytes (a stand-in for musicnn that records which files it was asked for)."""

    def __init__(self):
        self.calls: list[str] = []

    def __call__(self, paths):
        for p in paths:
            self.calls.append(p)
            data = open(p, "rb").read()
            seed = int(hashlib.sha256(data).hexdigest()[:8], 16)
            yield p, hashlib.sha256(data).hexdigest(), {"embedding": list(np.random.default_rng(seed).standard_normal(similar.DIM))}, None


def test_index_updates_only_new_changed_and_removed_files(tmp_path):
    lib = tmp_path / "lib"
    files = [make_file(lib / f"a{i}.flac", "flac", seed=i, picture=False) for i in range(6)]
    emb = FakeEmbedder()
    idx, rep = similar.update_index(lib, index_dir=tmp_path / "ix", summarise=emb, progress=False)
    assert (rep.total, rep.added, rep.kept, rep.changed, rep.removed) == (6, 6, 0, 0, 0) and len(emb.calls) == 6
    emb.calls.clear()
    idx, rep = similar.update_index(lib, index_dir=tmp_path / "ix", summarise=emb, progress=False)
    assert (rep.total, rep.kept) == (6, 6) and emb.calls == []  # nothing changed: nothing analysed

    make_file(files[2], "flac", seed=99, picture=False)  # changed content
    os.utime(files[2], ns=(1, 10**18))
    files[4].unlink()  # removed
    new = make_file(lib / "sub" / "new.ogg", "ogg", seed=7, picture=False)  # added
    idx, rep = similar.update_index(lib, index_dir=tmp_path / "ix", summarise=emb, progress=False)
    assert (rep.total, rep.added, rep.changed, rep.removed, rep.kept) == (6, 1, 1, 1, 4)
    assert sorted(emb.calls) == sorted([os.path.realpath(files[2]), os.path.realpath(new)])
    assert os.path.realpath(files[4]) not in idx.paths
    loaded = similar.load_index(tmp_path / "ix")
    assert loaded.paths == idx.paths and np.array_equal(loaded.vectors, idx.vectors)
    # the nearest of a track is found from its stored vector: itself excluded
    got = similar.similar(files[0], loaded, k=3)
    assert len(got) == 3 and os.path.realpath(files[0]) not in [n.file for n in got]

    # a damaged index (vectors not those of the manifest, e.g. a killed update) is refused, then rebuilt
    np.save(tmp_path / "ix" / "vectors.npy", np.zeros((6, similar.DIM), np.float32))
    with pytest.raises(similar.SimilarIndexError, match="does not match"):
        similar.load_index(tmp_path / "ix")
    emb.calls.clear()
    idx, rep = similar.update_index(lib, index_dir=tmp_path / "ix", summarise=emb, progress=False)
    assert rep.total == 6 and len(emb.calls) == 6
    similar.load_index(tmp_path / "ix")
    with pytest.raises(similar.SimilarIndexError, match="no similarity index"):
        similar.load_index(tmp_path / "nothing")


def two_kinds(lib):
    """A small library of two kinds of sound: 4 low tones and 4 noisy click tracks."""
    from helpers import tone

    sr = 22050
    rng = np.random.default_rng(0)
    for i in range(4):
        make_file(lib / f"tone{i}.flac", "flac", tone(4.0, sr=sr, freq=220.0 * (1 + 0.05 * i), seed=i)[:, 0],
                  picture=False, seed=i)
        clicks = np.zeros(int(4 * sr), np.float32)
        clicks[:: int(sr / (4 + i))] = 0.9
        clicks += 0.3 * rng.standard_normal(clicks.size).astype(np.float32)
        make_file(lib / f"noise{i}.flac", "flac", clicks, picture=False, seed=10 + i)
    return lib


def test_cli_similar_with_real_musicnn_embeddings(tmp_path, capsys):
    """Each track's nearest neighbours are its own kind."""
    from helpers import tone

    lib = two_kinds(tmp_path / "lib")
    sr = 22050
    ix = tmp_path / "ix"
    assert main(["similar", "--library", str(lib), "--index", str(ix), "--no-progress"]) == 0
    assert "8 tracks (8 new" in capsys.readouterr().err
    assert main(["similar", str(lib / "tone0.flac"), str(lib / "noise1.flac"), "--library", str(lib),
                 "--index", str(ix), "-k", "3", "--format", "json", "--no-progress"]) == 0
    out = capsys.readouterr()
    assert "0 new" in out.err
    res = json.loads(out.out)
    assert [n["file"].startswith("tone") for n in res[0]["similar"]] == [True] * 3
    assert [n["file"].startswith("noise") for n in res[1]["similar"]] == [True] * 3
    assert all(n["file"] != "tone0.flac" for n in res[0]["similar"])
    # a song from outside the library
    outside = make_file(tmp_path / "other.ogg", "ogg", tone(4.0, sr=sr, freq=230.0, seed=5)[:, 0], picture=False)
    assert main(["similar", str(outside), "--library", str(lib), "--index", str(ix), "--no-update", "-k", "2",
                 "--format", "json"]) == 0
    assert all(n["file"].startswith("tone") for n in json.loads(capsys.readouterr().out)[0]["similar"])
    assert main(["similar", "--library", str(tmp_path / "nope")]) == 2


def test_server_lists_similar_library_tracks_for_an_upload(tmp_path, tiny_model):
    """`genrekit serve --library`: /api/predict?similar=K answers the library's nearest tracks, the upload
    itself (a library file) left out; without a library the parameter is refused."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from genrekit.serve import create_app

    lib = two_kinds(tmp_path / "lib")
    index, _ = similar.update_index(lib, index_dir=tmp_path / "ix", progress=False)
    with TestClient(create_app(tiny_model, library=index, library_root=lib)) as c:
        assert c.get("/api/health").json()["library"] == {"tracks": 8}
        data = (lib / "tone1.flac").read_bytes()
        r = c.post("/api/predict?similar=3", files={"file": ("tone1.flac", data)})
        assert r.status_code == 200, r.text
        near = r.json()["similar"]
        assert [n["file"].startswith("tone") for n in near] == [True] * 3 and "tone1.flac" not in [n["file"] for n in near]
        assert all(0 < n["similarity"] <= 1 for n in near)
        assert "similar" not in c.post("/api/predict", files={"file": ("t.flac", data)}).json()
    with TestClient(create_app(tiny_model)) as c:
        assert c.get("/api/health").json()["library"] is None
        r = c.post("/api/predict?similar=3", files={"file": ("t.flac", data)})
        assert r.status_code == 422 and "--library" in r.json()["error"]


@pytest.mark.shared
@pytest.mark.slow
def test_nearest_clips_share_the_genre_far_more_often_than_chance(gtzan):
    """The issue's target on the 124 shared clips: precision@10 per genre well above chance
    (benchmarks/similar.py prints the table; measured 0.69 overall against 0.095 chance)."""
    idx, rep = similar.update_index(gtzan / "audio", progress=False)
    assert rep.total == 124 and not rep.failed
    genres = [os.path.basename(os.path.dirname(f)) for f in idx.paths]
    per: dict[str, list[float]] = {}
    for i, g in enumerate(genres):
        found = idx.search(idx.vectors[i], k=10, exclude=[i])
        per.setdefault(g, []).append(sum(genres[idx.paths.index(n.file)] == g for n in found) / 10)
    n = len(genres)
    for g, ps in per.items():
        chance = (genres.count(g) - 1) / (n - 1)
        assert np.mean(ps) > 3 * chance, (g, np.mean(ps), chance)
    overall = np.mean([p for ps in per.values() for p in ps])
    assert overall > 5 * np.mean([(genres.count(g) - 1) / (n - 1) for g in genres])


def test_index_skips_special_files_with_why_and_keeps_any_name(tmp_path):
    import shutil

    lib = tmp_path / "lib"
    good = make_file(lib / "a.flac", "flac", seed=1, picture=False)
    shutil.copy(good, os.fsencode(lib) + b"/x\xff.flac")
    os.mkfifo(lib / "p.flac")
    (lib / "z.mp3").symlink_to("/dev/zero")
    emb = FakeEmbedder()
    idx, rep = similar.update_index(lib, index_dir=tmp_path / "ix", summarise=emb, progress=False)
    assert rep.total == 2 and len(emb.calls) == 2  # the FIFO and the device were never handed on
    why = {os.path.basename(p): msg for p, msg in rep.failed}
    assert "FIFO" in why["p.flac"] and "character device" in why["z.mp3"]
    again = similar.load_index(tmp_path / "ix", backend="exact")  # the manifest reads back the odd name
    assert os.path.realpath(os.fsdecode(os.fsencode(lib) + b"/x\xff.flac")) in again.paths
