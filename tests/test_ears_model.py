"""The second-ears model kinds (models.ears): typed input, zero-shot experts, a hybrid file, predict on audio."""

import json

import numpy as np
import pytest

from genrekit import GENRES
from genrekit.errors import ModelError
from genrekit.models import load
from genrekit.models.ears import PARTS, EarsInput, ZeroShotModel
from genrekit.models.hybrid import HybridModel
from genrekit.models.inputs import input_from_meta
from genrekit.models.linear import LinearModel
from genrekit.networks.mn04.spec import labels
from genrekit.predict import GenreClassifier, default_model_path
from helpers import write_audio


def _music(seconds: float, sr: int = 44100, f0: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    y = sum(0.1 * np.sin(2 * np.pi * f * t) for f in (f0, f0 * 1.26, f0 * 1.5))
    return (y * (0.6 + 0.4 * (np.sin(2 * np.pi * 2.0 * t) > 0))).astype(np.float32)


def _head(parts, seed=0) -> LinearModel:
    inp = EarsInput.create(parts)
    n = len(inp.columns)
    rng = np.random.default_rng(seed)
    m = LinearModel()
    m.mean_, m.scale_ = np.zeros(n), np.ones(n)
    m.coef_, m.intercept_ = 0.05 * rng.standard_normal((len(GENRES), n)), np.zeros(len(GENRES))
    m.classes_, m.log_columns_, m.input_ = np.asarray(GENRES), [], inp.to_meta()
    m.meta_ = {"kind": "linear", "classes": list(GENRES), "input": m.input_}
    return m


def _zero_shot() -> ZeroShotModel:
    inp = EarsInput.create(["mn04_sigmoid"])
    names = ["Blues", "Classical music", "Country", "Disco", "Hip hop music", "Jazz", "Heavy metal", "Pop music",
             "Reggae", "Rock music"]
    return ZeroShotModel(list(GENRES), [labels().index(n) for n in names], inp.to_meta(), names).fit()


@pytest.fixture(scope="module")
def ears_file(tmp_path_factory):
    model = HybridModel([_head(["musicnn_penultimate", "mn04_features"]), _zero_shot()], weights=[0.4, 0.6]).fit()
    return model.save(tmp_path_factory.mktemp("ears") / "ears.safetensors", extra_meta={"temperature": 0.9})


def test_ears_input_round_trips_and_refuses_bad_blocks():
    inp = EarsInput.create(["musicnn_taggram", "mn04_sigmoid"])
    assert input_from_meta(inp.to_meta()) == inp and len(inp.columns) == PARTS["musicnn_taggram"] + PARTS["mn04_sigmoid"]
    for bad in ({**inp.to_meta(), "parts": ["musicnn_taggram", "nope"]}, {**inp.to_meta(), "columns": ["a"]},
                {**inp.to_meta(), "parts": []}, {**inp.to_meta(), "patches_per_block": 11}):
        with pytest.raises(ModelError, match="bad.safetensors"):
            input_from_meta(bad, source="bad.safetensors")
    row = inp.rows(np.arange(250.0), (np.zeros(384), np.full(527, 0.5)))
    assert row.shape == (1, 50 + 527) and row[0, 0] == 200.0 and row[0, -1] == 0.5
    assert inp.rows(np.zeros((4, 250)), None) is None  # mn04 heard nothing: no row


def test_zero_shot_model_divides_its_columns_by_their_sum(tmp_path):
    zs = _zero_shot()
    X = np.full((2, 527), 0.01)
    X[0, labels().index("Jazz")] = 0.9
    p = zs.predict_proba(X)
    assert np.allclose(p.sum(axis=1), 1.0) and GENRES[int(p[0].argmax())] == "jazz"
    back = load(zs.save(tmp_path / "zs.safetensors"))
    assert np.array_equal(back.predict_proba(X), p)
    with pytest.raises(ModelError):
        ZeroShotModel(list(GENRES), [0] * 9, zs.input_).fit()  # one column per class


def test_ears_model_predicts_on_audio_with_and_without_styles(ears_file, tmp_path):
    clf = GenreClassifier.load(ears_file)
    assert clf.needs_ear and clf.temperature == 0.9
    song = write_audio(tmp_path / "song.wav", _music(40.0), sr=44100)
    r = clf.predict(song)
    assert set(r.scores) == set(GENRES) and sum(r.scores.values()) == pytest.approx(1.0)
    assert len(r.styles) == 3 and r.tags  # the musicnn member's taggram gives the tags
    plain = clf.predict(song, styles=False)  # mn04 still runs for the members, the record has no styles
    assert plain.styles is None and plain.scores == r.scores
    assert all(not s.silent for s in r.segments) and len(r.segments) > 2
    # the zero-shot member hears mn04: two different songs get different scores
    other = clf.predict(write_audio(tmp_path / "other.wav", _music(40.0, f0=880.0), sr=44100), styles=False)
    assert other.scores != plain.scores


def test_ears_model_needs_the_ear_and_audio(ears_file, tmp_path):
    from genrekit import audio

    clf = GenreClassifier.load(ears_file)
    song = write_audio(tmp_path / "song.wav", _music(12.0), sr=44100)
    with pytest.raises(ModelError, match="ear"):
        clf.predict_blocks(audio.stream(song, sr=clf.sr))
    ear = clf.ear(styles=False)
    r = clf.predict_blocks(audio.stream(song, sr=clf.sr, tap=ear.hear), file=str(song), ear=ear)
    assert r.scores == clf.predict(song, styles=False).scores
    with pytest.raises(ModelError, match="audio only"):
        clf.predict_precomputed(levels=np.zeros((128, 1300)), embedding=None)


def test_the_shipped_ears_model_loads_by_name():
    from genrekit.predict import SHIPPED_MODELS

    assert "genrekit-gtzan-ears" in SHIPPED_MODELS
    path = default_model_path("genrekit-gtzan-ears")
    m = load(path, backend="onnx")
    assert list(m.classes_) == list(GENRES) and len(m.members_) == 3
    assert [type(x).__name__ for x in m.members_] == ["LinearModel", "ZeroShotModel", "ZeroShotModel"]
    assert m.meta_["weights"] == [0.25, 0.375, 0.375] and 0.9 < m.meta_["temperature"] < 1.0
    assert len(m.meta_["trained_on"]["tracks"]) == 113
    json.dumps(m.meta_)  # plain JSON metadata


def _network_head(seed=1) -> LinearModel:
    from genrekit.models.inputs import musicnn_input

    inp = musicnn_input(patches_per_block=3, backend="onnx")
    rng = np.random.default_rng(seed)
    m = LinearModel()
    m.mean_, m.scale_ = np.zeros(200), np.ones(200)
    m.coef_, m.intercept_ = 0.5 * rng.standard_normal((len(GENRES), 200)), np.zeros(len(GENRES))
    m.classes_, m.log_columns_, m.input_ = np.asarray(GENRES), [], inp
    m.meta_ = {"kind": "linear", "classes": list(GENRES), "input": inp}
    return m


def _ears_head_on(run: dict) -> LinearModel:
    m = _head(["musicnn_penultimate", "mn04_features"])
    m.input_ = m.meta_["input"] = {**m.input_, **run}
    return m


def test_a_blend_with_audio_only_members_scores_an_image_only_track_without_them(tmp_path):
    from genrekit.networks.musicnn.model import Embedding

    net = _network_head()
    blend = HybridModel([net, _ears_head_on({"patches_per_block": 3}), _zero_shot()], weights=[0.5, 0.2, 0.3]).fit()
    both = GenreClassifier.load(blend.save(tmp_path / "blend.safetensors", extra_meta={"temperature": 0.8}))
    net.meta_["temperature"] = 0.8
    alone = GenreClassifier.load(net.save(tmp_path / "net.safetensors"))
    rng = np.random.default_rng(3)
    e = Embedding("MSD_musicnn", rng.random((10, 50)), rng.standard_normal((10, 200)), rng.random((10, 1506)),
                  np.arange(10) * 3.0, 30.0, False)
    got, want = both.predict_precomputed(embedding=e), alone.predict_precomputed(embedding=e)
    # the mn04 members are left out and the network member's weight renormalised to 1: its own scores
    assert got.scores == pytest.approx(want.scores, abs=1e-12) and got.genre == want.genre
    # with a temperature of its own for that case, the same ranking, calibrated by it
    own = GenreClassifier.load(blend.save(tmp_path / "blend2.safetensors", extra_meta={
        "temperature": 0.8, "temperature_without_mn04": 2.0}))
    net.meta_["temperature"] = 2.0
    soft = GenreClassifier.load(net.save(tmp_path / "net2.safetensors")).predict_precomputed(embedding=e)
    assert own.predict_precomputed(embedding=e).scores == pytest.approx(soft.scores, abs=1e-12)
    with pytest.raises(ModelError, match="temperature_without_mn04"):
        blend.save(tmp_path / "bad.safetensors", extra_meta={"temperature_without_mn04": 0.0})
        load(tmp_path / "bad.safetensors")
    with pytest.raises(ModelError, match="present member"):
        blend.combine([np.full((1, 10), 0.1)] * 3, [False, False, False])


def test_members_asking_for_the_same_musicnn_run_share_one_per_block(tmp_path, monkeypatch):
    from genrekit.networks import musicnn

    calls = []
    real = musicnn.embed

    def counting(*a, **kw):
        calls.append((kw.get("patches_per_block"), kw.get("backend")))
        return real(*a, **kw)

    monkeypatch.setattr(musicnn, "embed", counting)
    song = write_audio(tmp_path / "song.wav", _music(40.0), sr=44100)
    shared = HybridModel([_network_head(), _ears_head_on({"patches_per_block": 3}), _zero_shot()]).fit()
    GenreClassifier.load(shared.save(tmp_path / "shared.safetensors")).predict(song, styles=False)
    assert calls == [(3, "onnx")] * 2  # two blocks (30 s + 10 s), one run each for both members
    calls.clear()
    apart = HybridModel([_network_head(), _ears_head_on({"patches_per_block": None}), _zero_shot()]).fit()
    GenreClassifier.load(apart.save(tmp_path / "apart.safetensors")).predict(song, styles=False)
    assert sorted(calls, key=str) == sorted([(3, "onnx"), (None, "onnx")] * 2, key=str)  # the mn04-only expert runs none


def test_the_default_blends_todays_members_with_the_zero_shot_experts_on_one_musicnn_run():
    from genrekit.models.inputs import EarsInput, NetworkInput, input_from_meta
    from genrekit.predict import DEFAULT_MODEL, SHIPPED_MODELS

    assert DEFAULT_MODEL == "genrekit-gtzan-blend"
    assert {"genrekit-gtzan-musicnn", "genrekit-gtzan-fast", "genrekit-gtzan-ears"} <= set(SHIPPED_MODELS)
    m = load(default_model_path(), backend="onnx")
    kinds = [x.meta_["kind"] for x in m.members_]
    assert kinds == ["linear", "deep", "zero-shot", "zero-shot"]  # musicnn head, CNN, two zero-shot experts
    assert sum(m.weights_) == pytest.approx(1.0) and m.meta_["card"]["build"] == "python scripts/build_default.py"
    runs = {(i.patches_per_block, i.backend) for i in map(input_from_meta, m.input_["members"])
            if isinstance(i, (NetworkInput, EarsInput)) and (not isinstance(i, EarsInput)
                                                              or any(p.startswith("musicnn") for p in i.parts))}
    assert len(runs) == 1  # the head and the MSD zero-shot expert share one musicnn run per block


def test_precomputed_mn04_means_bring_the_audio_only_members_back(tmp_path):
    from genrekit.networks.musicnn.model import Embedding

    blend = HybridModel([_network_head(), _zero_shot()], weights=[0.5, 0.5]).fit()
    clf = GenreClassifier.load(blend.save(tmp_path / "blend.safetensors"))
    rng = np.random.default_rng(4)
    e = Embedding("MSD_musicnn", rng.random((10, 50)), rng.standard_normal((10, 200)), rng.random((10, 1506)),
                  np.arange(10) * 3.0, 30.0, False)
    sig = np.full(527, 0.01)
    sig[labels().index("Reggae")] = 0.9
    without = clf.predict_precomputed(embedding=e)
    reggae = clf.predict_precomputed(embedding=e, mn04=(np.zeros(384), sig))
    # the zero-shot expert hears the given mn04 part: reggae gains, by exactly its half of the product
    zs = _zero_shot().predict_proba(sig[None])[0]
    pn = np.array([without.scores[g] for g in GENRES])  # the network member alone (weight renormalised to 1)
    want = np.sqrt(pn * zs) / np.sqrt(pn * zs).sum()
    assert reggae.scores["reggae"] > without.scores["reggae"]
    assert np.allclose([reggae.scores[g] for g in GENRES], want, rtol=1e-6)


@pytest.mark.parametrize("bad", [42, (np.zeros(384),), (np.zeros(10), np.zeros(527)),
                                 (np.zeros(384), np.full(527, 1.5)), (np.full(384, np.nan), np.zeros(527))])
def test_a_malformed_mn04_part_is_one_clear_error_naming_the_track(tmp_path, bad):
    from genrekit.errors import GenrekitError
    from genrekit.networks.musicnn.model import Embedding

    clf = GenreClassifier.load(HybridModel([_network_head(), _zero_shot()]).fit().save(tmp_path / "b.safetensors"))
    rng = np.random.default_rng(5)
    e = Embedding("MSD_musicnn", rng.random((10, 50)), rng.standard_normal((10, 200)), rng.random((10, 1506)),
                  np.arange(10) * 3.0, 30.0, False)
    with pytest.raises(GenrekitError, match="track.png: mn04 must be"):
        clf.predict_precomputed(embedding=e, mn04=bad, file="track.png")
