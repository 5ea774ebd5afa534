"""genrekit.onnx: deep-model graphs built from numpy tensors (no torch) against the torch nets, their
cache, the torch-free load path, and `genrekit export` of musicnn heads and the shipped hybrid."""

import json
import subprocess
import sys

import numpy as np
import pytest

from genrekit import onnx as gonnx
from genrekit.errors import ModelError
from genrekit.models.deep import ARCHS
from genrekit.models.runtime import OnnxModel
from genrekit.onnx_export import export
from genrekit.predict import GenreClassifier, default_model_path
from helpers import tone

TOL = 1e-5  # max abs probability difference to the torch net


def _torch_net(arch: str, *, n_mels: int, seed: int, n_classes: int = 10):
    """An eval-mode net of ``arch`` with random weights and BatchNorm statistics far from the identity
    (a fresh BatchNorm folds to nothing, which would hide a wrong fold)."""
    import torch

    from genrekit.models.deep import build_net

    net = build_net(arch, n_classes=n_classes, n_mels=n_mels)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.3, generator=g)
                m.running_var.uniform_(0.3, 3.0, generator=g)
                m.weight.normal_(1, 0.4, generator=g)
                m.bias.normal_(0, 0.3, generator=g)
            elif isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                m.weight.mul_(3.0)  # logits of a few units: probabilities far from uniform
    return net.eval()


def _meta(arch: str, *, n_mels: int, frames: int, n_classes: int = 10) -> dict:
    return {"kind": "deep", "arch": arch, "classes": [f"g{i}" for i in range(n_classes)],
            "input": {"type": "logmel", "n_mels": n_mels, "slice_frames": frames}, "input_frames": frames}


def _session(data: bytes):
    import onnxruntime as ort

    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def _proba(session, x: np.ndarray) -> np.ndarray:
    from genrekit.metrics import softmax

    return softmax(session.run(["logits"], {"logmel": x})[0].astype(np.float64))


def _torch_proba(net, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return torch.softmax(net(torch.from_numpy(x)), 1).numpy().astype(np.float64)


def _tone_slices(n_mels: int, frames: int) -> np.ndarray:
    """Real log-mel slices (normalised levels) of synthesised tones, as the predict path makes them."""
    from genrekit import spectrogram

    out = []
    for f0 in (110.0, 440.0, 2500.0):
        lv = spectrogram.logmel(tone(4.0, freq=f0, seed=int(f0))[:, 0], n_mels=n_mels)
        out.append(lv[:, :frames] if lv.shape[1] >= frames else np.pad(lv, ((0, 0), (0, frames - lv.shape[1]))))
    return np.stack(out).astype(np.float32)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(("n_mels", "frames"), [(128, 130), (96, 87)])  # 96x87: pools whose sizes do not divide
def test_graph_matches_torch(arch, n_mels, frames):
    from genrekit.models.deep import _state_to_numpy

    assert arch in gonnx.GRAPH_ARCHS
    net = _torch_net(arch, n_mels=n_mels, seed=len(arch) + n_mels)
    data = gonnx.deep_graph(_state_to_numpy(net), _meta(arch, n_mels=n_mels, frames=frames))
    s = _session(data)
    rng = np.random.default_rng(0)
    for x in (rng.random((5, n_mels, frames), dtype=np.float32), _tone_slices(n_mels, frames)):
        ref = _torch_proba(net, x)
        assert ref.max() > 0.3  # not a uniform output, where any graph would agree
        np.testing.assert_allclose(_proba(s, x), ref, rtol=0, atol=TOL)
    x = rng.random((1, n_mels, frames), dtype=np.float32)  # dynamic batch, down to one slice
    np.testing.assert_allclose(_proba(s, x), _torch_proba(net, x), rtol=0, atol=TOL)


def test_shipped_deep_member_matches_torch():
    """The shipped fast model's CNN member: its graph against DeepModel on real log-mel slices."""
    import tempfile
    from pathlib import Path

    from genrekit.models.base import load_model_file
    from genrekit.models.deep import DeepModel

    tensors, meta = load_model_file(default_model_path("genrekit-gtzan-fast"))
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "deep.safetensors"
        f.write_bytes(tensors["member0"].tobytes())
        t, m = load_model_file(f)
        assert m["kind"] == "deep"
        deep = DeepModel.load(f)
    s = _session(gonnx.deep_graph(t, m))
    x = _tone_slices(128, deep.slice_width())
    x = np.concatenate([x, np.random.default_rng(1).random((4, 128, deep.slice_width()), dtype=np.float32)])
    np.testing.assert_allclose(_proba(s, x), deep.predict_proba(x), rtol=0, atol=TOL)


def test_weights_that_do_not_match_the_arch_are_refused():
    from genrekit.models.deep import _state_to_numpy

    t = _state_to_numpy(_torch_net("cnn", n_mels=128, seed=0))
    with pytest.raises(ModelError, match="do not match"):
        gonnx.deep_graph(t, _meta("cnn-bn", n_mels=128, frames=130))
    with pytest.raises(ModelError, match="do not match"):
        gonnx.deep_graph({**t, "extra.weight": np.zeros(3, np.float32)}, _meta("cnn", n_mels=128, frames=130))
    with pytest.raises(ModelError, match="no ONNX graph builder"):
        gonnx.deep_graph(t, _meta("vgg", n_mels=128, frames=130))


def test_graph_cache_is_keyed_on_weights_and_rebuilt_when_damaged(tmp_path, monkeypatch):
    from genrekit.models.deep import _state_to_numpy

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    t = _state_to_numpy(_torch_net("cnn-bn", n_mels=128, seed=3))
    meta = _meta("cnn-bn", n_mels=128, frames=130)
    path = gonnx.graph_cache_path(t, meta)
    assert path.parent == tmp_path / "genrekit" / "deep" and not path.exists()
    data = gonnx.deep_graph_bytes(t, meta)
    assert path.read_bytes() == data
    path.write_bytes(b"sentinel")  # a later call reads the cache, not the builder
    assert gonnx.deep_graph_bytes(t, meta) == b"sentinel"
    other = {k: v + 1 if k == "head.0.bias" else v for k, v in t.items()}
    assert gonnx.graph_cache_path(other, meta) != path  # other weights, other key
    assert gonnx.graph_cache_path(t, _meta("cnn-bn", n_mels=128, frames=129)) != path  # other input shape
    m = OnnxModel.from_graph(b"damaged", meta, rebuild=lambda: gonnx.deep_graph_bytes(t, meta, rebuild=True))
    assert path.read_bytes() == data  # the damaged file was replaced
    x = np.random.default_rng(2).random((3, 128, 130), dtype=np.float32)
    np.testing.assert_allclose(m.predict_proba(x), _proba(_session(data), x), atol=1e-7)
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        OnnxModel.from_graph(b"damaged", meta)


def test_onnx_load_is_torch_free(tmp_path):
    """GenreClassifier's default backend loads the fast shipped hybrid and classifies without torch."""
    code = (
        "import sys, numpy as np\n"
        "from genrekit.predict import GenreClassifier\n"
        "clf = GenreClassifier.load('genrekit-gtzan-fast')\n"
        "t = np.arange(22050 * 8) / 22050\n"
        "r = clf.predict((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr=22050)\n"
        "print(r.genre, 'torch' in sys.modules, type(clf.model.members_[0]).__name__)\n"
    )
    env = {"XDG_CACHE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    import os

    env.update({k: v for k, v in os.environ.items() if k in ("PYTHONPATH", "HOME")})
    for _ in range(2):  # the first run builds the graph (imports onnx), the second reads the cache
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        genre, has_torch, kind = out.stdout.split()
        assert has_torch == "False" and kind == "OnnxModel"
    assert len(list((tmp_path / "genrekit" / "deep").glob("shortchunk-*.onnx"))) == 1


def test_unbuilt_arch_falls_back_to_torch_export(tiny_model, monkeypatch):
    monkeypatch.setattr(gonnx, "GRAPH_ARCHS", ())
    a = GenreClassifier.load(tiny_model, backend="torch")
    b = GenreClassifier.load(tiny_model, backend="onnx")
    assert isinstance(b.model, OnnxModel)
    y = tone(6.0, freq=110.0)[:, 0]
    ra, rb = a.predict(y, sr=22050), b.predict(y, sr=22050)
    assert ra.genre == rb.genre and ra.scores["blues"] == pytest.approx(rb.scores["blues"], abs=1e-5)


# ------------------------------------------------------------------------------------------ export


@pytest.fixture(scope="module")
def musicnn_head(tmp_path_factory):
    """A logistic head on standardised musicnn penultimate vectors, as `train --input musicnn` writes one."""
    from genrekit.models.inputs import musicnn_input
    from genrekit.models.linear import LinearModel
    from genrekit.networks import musicnn as embeddings

    rng = np.random.default_rng(5)
    vec = np.concatenate([embeddings.embed(tone(6.0, freq=f, seed=i)[:, 0], sr=22050, backend="onnx").penultimate
                          for i, f in enumerate((110.0, 440.0, 1760.0))])
    mean, std = vec.mean(0), vec.std(0) + 0.1
    m = LinearModel()
    m.mean_, m.scale_ = rng.normal(0, 0.1, 200), rng.uniform(0.8, 1.2, 200)
    m.coef_, m.intercept_ = rng.normal(0, 0.4, (3, 200)), rng.normal(0, 0.5, 3)
    m.log_columns_ = []
    m.classes_ = np.array(["blues", "jazz", "rock"])
    m.input_ = musicnn_input(standardise={"audio": (mean, std)}, backend="onnx")
    m.meta_ = {"kind": "linear", "classes": list(m.classes_), "input": m.input_}
    path = tmp_path_factory.mktemp("head") / "head.safetensors"
    m.save(path)
    return path


def _same_predictions(a, b, ys, *, atol=1e-4):
    for y in ys:
        ra, rb = a.predict(y, sr=22050), b.predict(y, sr=22050)
        assert ra.genre == rb.genre
        assert max(abs(ra.scores[g] - rb.scores[g]) for g in ra.scores) <= atol
        assert ra.tags == rb.tags and len(ra.segments) == len(rb.segments)


def test_export_musicnn_head_is_one_graph_from_patches_to_probabilities(musicnn_head, tmp_path):
    import onnxruntime as ort

    from genrekit.cli import main
    from genrekit.models import load_model
    from genrekit.networks import musicnn as embeddings
    from genrekit.predict import musicnn_vectors

    out = tmp_path / "head.onnx"
    assert main(["export", "--model", str(musicnn_head), "--out", str(out)]) == 0
    s = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in s.get_inputs()] == ["patches"]
    assert json.loads(s.get_modelmeta().custom_metadata_map["genrekit_meta"])["classes"] == ["blues", "jazz", "rock"]
    head = load_model(musicnn_head)
    for f0 in (110.0, 880.0):
        y = tone(9.0, freq=f0, seed=3)[:, 0]
        e = embeddings.embed(y, sr=22050, backend="onnx")
        x = embeddings.patches(embeddings.musicnn_input(y, sr=22050))
        proba, patch_proba, taggram = s.run(["proba", "patch_proba", "taggram"], {"patches": x})
        vec = musicnn_vectors(head.input_, e.penultimate)
        np.testing.assert_allclose(proba[0], head.predict_proba(vec.mean(0, keepdims=True))[0], atol=1e-5)
        np.testing.assert_allclose(patch_proba, head.predict_proba(vec), atol=1e-5)
        np.testing.assert_allclose(taggram, e.taggram, atol=1e-6)
    a, b = GenreClassifier.load(musicnn_head), GenreClassifier.load(out)
    _same_predictions(a, b, [tone(7.0, freq=f, seed=1)[:, 0] for f in (220.0, 1500.0)])


def test_export_of_a_hybrid_with_a_musicnn_head(musicnn_head, tiny_model, tmp_path):
    """musicnn head + CNN: the CNN is the graph (no torch), the head rides along; same predictions."""
    from genrekit.models import load_model
    from genrekit.models.hybrid import HybridModel

    classes = ["blues", "metal"]
    head = load_model(musicnn_head)
    head.coef_, head.intercept_, head.classes_ = head.coef_[:2], head.intercept_[:2], np.array(classes)
    head.meta_ = {**head.meta_, "classes": classes}
    hp = tmp_path / "head2.safetensors"
    head.save(hp)
    path = tmp_path / "hyb.safetensors"
    HybridModel([load_model(hp), load_model(tiny_model)], weights=[0.4, 0.6]).fit().save(path)
    out = export(path, tmp_path / "hyb.onnx")
    a, b = GenreClassifier.load(path), GenreClassifier.load(out)
    assert isinstance(b.model.members_[1], OnnxModel)
    _same_predictions(a, b, [tone(7.0, freq=f, seed=2)[:, 0] for f in (110.0, 3000.0)])


def test_export_refuses_what_has_no_graph(tmp_path):
    from genrekit.models.base import load_model_file, save_model_file

    tensors, meta = load_model_file(default_model_path("genrekit-gtzan-fast"))
    f = tmp_path / "m1.safetensors"
    f.write_bytes(tensors["member1"].tobytes())  # the fast model's feature member: a table model
    with pytest.raises(ModelError, match="only deep"):
        export(f, tmp_path / "x.onnx")
    deep = tensors["member0"]
    save_model_file(tmp_path / "two.safetensors", {"member0": deep, "member1": deep},
                    {**meta, "weights": [0.5, 0.5], "member_kinds": ["deep", "deep"]})
    with pytest.raises(ModelError, match="at most one deep member"):
        export(tmp_path / "two.safetensors", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.shared
def test_export_default_reproduces_the_model_file(gtzan, tmp_path):
    """`genrekit export` without --model writes the shipped default; its predictions equal the model file's."""
    from genrekit.cli import main

    out = tmp_path / "default.onnx"
    assert main(["export", "--out", str(out)]) == 0
    a, b = GenreClassifier.load(), GenreClassifier.load(out)
    assert a.genres == b.genres and b.musicnn is not None
    for f in sorted((gtzan / "audio").glob("*/*.mp3"))[:2]:
        ra, rb = a.predict(f), b.predict(f)
        assert ra.genre == rb.genre and ra.tags == rb.tags
        assert max(abs(ra.scores[g] - rb.scores[g]) for g in ra.scores) <= 1e-4
