"""musicnn embeddings in the experiment layer: domain standardisation from the training side only,
compare on embeddings, GTZAN roots that mix audio and images, hybrids with a musicnn head, and the CLI
chain train -> predict / evaluate / finetune on a user's own folders (synthesised audio)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audio_folders import write_label_folders
from genrekit.datasets import FeatureTable
from genrekit.errors import DatasetError, GenrekitError, ModelError
from genrekit.experiments import compare_models, run
from genrekit.experiments.data import EmbeddingSource, domain_stats, embedding_table, standardise_rows
from genrekit.experiments.factories import DeepFactory, HybridFactory, TabularFactory
from genrekit.experiments.results import FoldSpec
from genrekit.models import load_model
from helpers import tone, write_audio


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _table(n_per=12, *, seed=0, shift_image=5.0):
    """Two classes, audio and image rows (image rows offset by ``shift_image``), penultimate-sized."""
    rng = np.random.default_rng(seed)
    labels = np.array(["blues", "metal"] * n_per)
    X = rng.normal(size=(labels.size, 200))
    X[labels == "metal", :4] += 3.0
    domains = np.array(["audio", "image"] * (n_per // 2) + ["image", "audio"] * (n_per // 2))
    X[domains == "image"] += shift_image
    ids = np.array([f"{g}.{i:05d}" for i, g in enumerate(labels)])
    cols = [f"penultimate_mean_{i}" for i in range(200)]
    return FeatureTable(X, labels, ids, ids.copy(), cols, source="synthetic", extra={"domains": domains})


def test_domain_stats_come_from_the_training_side_only(tmp_path):
    """Valid and test rows shifted far away do not move the stored statistics: they are train's."""
    table = _table()
    test_rows = np.arange(16, 24)
    valid_rows = np.arange(12, 16)
    table.X[test_rows] += 100.0  # a shifted domain on the test side
    table.X[valid_rows] -= 50.0
    src = EmbeddingSource(table, standardise="domain")
    ids = src.track_ids
    fold = FoldSpec(0, tuple(ids[:12]), tuple(ids[valid_rows]), tuple(ids[test_rows]))
    res = run("random", TabularFactory("logreg"), src, folds=[fold], out=tmp_path / "r", progress=False)
    model = load_model(res.model_file)
    stats = model.input_["standardise"]
    want = domain_stats(table.X[:12], src.domains[:12])
    for d in ("audio", "image"):
        assert np.allclose(stats[d]["mean"], want[d][0]) and np.allclose(stats[d]["std"], want[d][1])
        rows = np.flatnonzero(src.domains[:12] == d)
        assert np.allclose(stats[d]["mean"], table.X[rows].mean(axis=0))
    # the test tracks were scored on rows standardised with train's statistics
    f = res.folds[0]
    X = standardise_rows(model.input_, table.X[test_rows], src.domains[test_rows])
    order = [list(f.track_ids).index(t) for t in ids[test_rows]]
    assert np.allclose(f.track_proba[order], model.predict_proba(X))
    assert res.metrics["musicnn"]["standardise"] == "domain"
    assert res.metrics["musicnn"]["domains"] == {"audio": 12, "image": 12}


def test_no_standardisation_stores_nothing_and_bad_modes_are_refused():
    src = EmbeddingSource(_table(), standardise="none")
    assert "standardise" not in src.input_for(np.arange(10))
    with pytest.raises(DatasetError, match="standardisation"):
        EmbeddingSource(_table(), standardise="zscore")
    with pytest.raises(DatasetError, match="2 audio-derived"):
        domain_stats(np.zeros((3, 200)), np.array(["image", "image", "audio"]))
    # a domain with too few training rows borrows audio's statistics, as predict does
    stats = domain_stats(np.random.default_rng(0).normal(size=(4, 200)), np.array(["audio"] * 3 + ["image"]))
    assert set(stats) == {"audio"}


def test_npz_domains_from_its_array_or_its_settings(tmp_path):
    t = _table(4)
    base = {"track_ids": t.track_ids, "labels": t.y, "penultimate": t.X}
    np.savez(tmp_path / "a.npz", **base, domains=t.extra["domains"])
    np.savez(tmp_path / "b.npz", **base, settings=np.asarray(json.dumps({"kind": "image"})))
    np.savez(tmp_path / "c.npz", **base, domains=np.array(["tape"] * len(t.y)))
    assert list(embedding_table(tmp_path / "a.npz").extra["domains"]) == list(t.extra["domains"])
    assert set(embedding_table(tmp_path / "b.npz").extra["domains"]) == {"image"}
    with pytest.raises(DatasetError, match="domains"):
        embedding_table(tmp_path / "c.npz")
    with pytest.raises(DatasetError, match="unknown musicnn layer"):
        embedding_table(tmp_path / "a.npz", layer="dense")


def test_compare_on_embeddings_gives_a_row_per_head(tmp_path):
    t = _table(12)
    np.savez(tmp_path / "emb.npz", track_ids=t.track_ids, labels=t.y, penultimate=t.X, domains=t.extra["domains"])
    heads = ["logreg", "svm", "mlp"]
    res = compare_models(heads, tmp_path / "emb.npz", "kfold", tmp_path / "cmp", k=3, input="musicnn",
                         standardise="domain", progress=False)
    assert [r["model"] for r in res["results"]] == heads
    assert all(r["n_folds"] == 3 and 0 <= r["accuracy"] <= 1 for r in res["results"])
    assert res["input"]["type"] == "musicnn" and res["input"]["standardise"] == "domain"
    assert "not artist-filtered" in res["protocol_description"]
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "musicnn penultimate embeddings" in md and "domain-standardised" in md
    assert (tmp_path / "cmp" / "comparison.png").stat().st_size > 0
    with pytest.raises(GenrekitError, match="musicnn input"):
        compare_models(["logreg"], tmp_path / "emb.npz", "kfold", input="musicnn", image_root=tmp_path)


def test_cli_chain_on_labelled_folders(tmp_path, capsys):
    """train (logreg, svm: few tracks per label) -> predict -> evaluate on new clips -> compare -> finetune."""
    from genrekit.cli import main
    from genrekit.predict import GenreClassifier

    data = write_label_folders(tmp_path / "data", ["low", "high"], per_label=5, seconds=3.5)
    clip = write_audio(tmp_path / "clip.wav", tone(4.0, freq=1900.0))
    for head in ("logreg", "svm"):
        out = tmp_path / head
        assert main(["train", "--model", head, "--input", "musicnn", "--standardise", "domain", "--data", str(data),
                     "--protocol", "random", "--out", str(out), "--no-progress"]) == 0
        clf = GenreClassifier.load(out / "model.safetensors")
        assert set(clf.input["standardise"]) == {"audio"}
        assert clf.predict(clip).genre == "high"
    held = tmp_path / "held"  # new clips (track ids are label/name: other names than the training files')
    for lab, f0 in (("low", 210.0), ("high", 1850.0)):
        write_audio(held / lab / f"new_{lab}.wav", tone(3.5, freq=f0, seed=7))
    assert main(["evaluate", "--model", str(tmp_path / "logreg" / "model.safetensors"), "--data", str(held),
                 "--protocol", "all", "--out", str(tmp_path / "ev")]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["n_tracks"] == 2
    assert main(["compare", "--input", "musicnn", "--data", str(data), "--protocol", "kfold", "--folds", "2",
                 "--models", "logreg,knn", "--out", str(tmp_path / "cmp"), "--jobs", "1", "--no-progress"]) == 0
    assert "musicnn penultimate embeddings" in capsys.readouterr().out
    assert main(["compare", "--layer", "taggram", "--data", str(data), "--models", "logreg",
                 "--out", str(tmp_path / "x")]) == 2  # --layer without --input musicnn
    assert main(["finetune", "--head", "svm", "--standardise", "domain", "--data", str(data), "--out",
                 str(tmp_path / "ft"), "--valid-size", "0.2", "--no-progress"]) == 1  # the broken file: exit 1
    assert GenreClassifier.load(tmp_path / "ft" / "model.safetensors").predict(clip).genre == "high"


def test_svm_needs_two_tracks_per_class():
    from genrekit.models.classic import SklearnModel

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(6, 5)), np.array(["a", "b", "c"] * 2)
    assert SklearnModel("svm", random_state=0).fit(X, y).predict_proba(X).shape == (6, 3)
    assert SklearnModel("knn").fit(X[:3], y[:3]).predict(X).shape == (6,)
    with pytest.raises(ModelError, match="at least 2"):
        SklearnModel("svm").fit(X[:4], y[:4])


def _kaggle_png(path, levels):
    from matplotlib import colormaps
    from PIL import Image

    table = (np.asarray(colormaps["magma"].colors) * 255).round().astype(np.uint8)
    rgb = np.full((288, 432, 3), 255, np.uint8)
    rgb[35:253, 54:390] = table[np.round(levels * 255).astype(int)]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)


def test_gtzan_root_takes_audio_first_and_images_elsewhere(tmp_path):
    root = tmp_path / "gtzan"
    rng = np.random.default_rng(0)
    lines = ["filename,length,rms_mean"]
    for g, f0 in (("blues", 220.0), ("metal", 1760.0)):
        for i in range(3):
            write_audio(root / "audio" / g / f"{g}.{i:05d}.wav", tone(3.5, freq=f0, seed=i))
            _kaggle_png(root / "images_original" / g / f"{g}{i:05d}.png", rng.random((218, 336)) * 0.3)
            lines.append(f"{g}.{i:05d}.wav,661794,0.1")
        _kaggle_png(root / "images_original" / g / f"{g}00003.png", rng.random((218, 336)) * 0.3)  # image only
        lines.append(f"{g}.00003.wav,661794,0.1")
    (root / "features_30_sec.csv").write_text("\n".join(lines) + "\n")
    t = embedding_table(root, progress=False)
    dom = dict(zip(t.track_ids, t.extra["domains"], strict=True))
    assert len(dom) == 8 and dom["blues.00000"] == "audio" and dom["blues.00003"] == dom["metal.00003"] == "image"
    assert sum(d == "image" for d in dom.values()) == 2
    assert set(embedding_table(root, source="audio", progress=False).extra["domains"]) == {"audio"}
    only = embedding_table(root, source="images", layer="taggram", progress=False)  # from the same cache
    assert len(only.y) == 8 and only.X.shape[1] == 50
    with pytest.raises(DatasetError, match="GTZAN root"):
        embedding_table(root / "audio", source="images")


def test_hybrid_with_a_musicnn_head_and_a_cnn(tmp_path):
    """A CNN and a musicnn logreg head fitted each on its own input, combined, saved, and predicting audio."""
    from genrekit.predict import GenreClassifier

    data = write_label_folders(tmp_path / "data", ["low", "high"], per_label=6, seconds=3.5, broken=False)
    deep = DeepFactory("cnn", epochs=1, threads=1, batch_size=8, augment="none", device="cpu")
    factory = HybridFactory([deep, TabularFactory("logreg", input="musicnn", standardise="domain")])
    assert factory.name == "cnn+musicnn:logreg"
    res = run("random", factory, data, out=tmp_path / "hyb", valid_size=0.34, progress=False)
    assert res.metrics["reads"] == "hybrid" and set(res.data["members"]) == {"logmel", "musicnn"}
    clf = GenreClassifier.load(tmp_path / "hyb" / "model.safetensors")
    assert [m.input.type for m in clf.members] == ["logmel", "musicnn"]
    assert clf.members[1].input.standardise is not None
    r = clf.predict(write_audio(tmp_path / "q.wav", tone(4.0, freq=1900.0)))
    assert abs(sum(r.scores.values()) - 1) < 1e-6
