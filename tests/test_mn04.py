"""EfficientAT mn04 (genrekit.networks.mn04) against outputs of the original code, and on synthesised audio.

The references (``../shared/models/efficientat_mn04/reference_outputs.npz``: the original's mel,
features and logits for two GTZAN excerpts and a chirp) never enter the repository; those tests skip
without ``../shared``. Tolerances are issue 23's: mel within 1e-3, features and logits within 1e-4.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genrekit.errors import AudioError, EmptyAudioError, FeatureError, ModelError, NonFiniteAudioError
from genrekit.networks.mn04 import frontend as F
from genrekit.networks.mn04 import graph as G
from genrekit.networks.mn04 import model as M
from genrekit.networks.mn04 import spec as S
from genrekit.store import file_digest
from helpers import tone

SHARED_ROOT = [p for p in (Path(__file__).resolve().parents[2] / "shared", Path.cwd() / ".." / "shared")]
REFERENCE = next((p / "models" / "efficientat_mn04" / "reference_outputs.npz" for p in SHARED_ROOT
                  if (p / "models" / "efficientat_mn04" / "reference_outputs.npz").is_file()), None)
REF_NAMES = ("blues.00000", "metal.00003", "chirp")
TOL_MEL, TOL_OUT = 1e-3, 1e-4


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    """The built graph goes to a test cache, never the user's ~/.cache/genrekit."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


@pytest.fixture(scope="module")
def ref():
    if REFERENCE is None:
        pytest.skip("../shared/models/efficientat_mn04/reference_outputs.npz not found")
    return np.load(REFERENCE)


def music_like(seconds: float, sr: int = 32000, seed: int = 0) -> np.ndarray:
    """Chords with a decaying beat and some noise: energy across the mel bands, deterministic."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = sum(0.15 * np.sin(2 * np.pi * f * t) for f in (110.0, 220.0 * 1.26, 330.0, 880.0 * 1.5))
    beat = np.exp(-((t * 2.0) % 1.0) * 12.0) * rng.standard_normal(t.size) * 0.3
    return (y + beat).astype(np.float32)


# ------------------------------------------------------------------------------------------ the original


@pytest.mark.shared
@pytest.mark.parametrize("name", REF_NAMES)
def test_mel_matches_the_original(ref, name):
    want = ref[f"{name}/mel"]
    for dtype in (np.float32, np.float64):
        got = F.logmel(ref[f"{name}/wave32k"], dtype=dtype)
        assert got.shape == want.shape == (128, 1000) and got.dtype == dtype
        assert np.abs(got - want).max() < TOL_MEL, (name, dtype)


@pytest.mark.shared
@pytest.mark.parametrize("name", REF_NAMES)
def test_onnx_float32_matches_the_original(ref, name):
    e = M.embed(ref[f"{name}/wave32k"], 32000)  # 10 s: one window, the whole input
    assert e.features.shape == (1, 384) and e.logits.shape == (1, 527) and list(e.starts) == [0]
    assert np.abs(e.features[0] - ref[f"{name}/features"]).max() < TOL_OUT
    assert np.abs(e.logits[0] - ref[f"{name}/logits"]).max() < TOL_OUT
    feats, logits = M.run(ref[f"{name}/mel"][None, None])  # the network alone, on the original's mel
    assert np.abs(feats[0] - ref[f"{name}/features"]).max() < TOL_OUT
    assert np.abs(logits[0] - ref[f"{name}/logits"]).max() < TOL_OUT


@pytest.mark.shared
def test_torch_reference_matches_the_original(ref):
    torch = pytest.importorskip("torch")
    from genrekit.networks.mn04.reference import build_model

    net = build_model()
    mel = np.stack([ref[f"{n}/mel"] for n in REF_NAMES])[:, None]
    with torch.no_grad():
        feats, logits = (t.numpy() for t in net(torch.from_numpy(mel)))
    for i, n in enumerate(REF_NAMES):
        assert np.abs(feats[i] - ref[f"{n}/features"]).max() < TOL_OUT
        assert np.abs(logits[i] - ref[f"{n}/logits"]).max() < TOL_OUT


@pytest.mark.shared
def test_a_gtzan_file_is_heard_as_music(gtzan):
    path = gtzan / "audio" / "blues" / "blues.00000.flac"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    e = M.embed_file(path)
    assert e.features.shape == (3, 384)  # 30 s: three 10 s windows side by side
    assert np.allclose(e.starts / 32000, [0.0, 10.0, 20.0], atol=0.02)
    top = M.tag_scores(e.logits, k=3)
    assert top[0][0] == "Music" and top[0][1] > 0.5
    assert "Blues" in [n for n, _ in M.tag_scores(e.logits, k=5, genres_only=True)]


# ------------------------------------------------------------------------------------------ fresh clone


def test_label_list_and_genre_classes():
    names = S.labels()
    assert len(names) == 527 and names[S.MUSIC_ROW] == "Music"
    genres = S.genre_labels()
    assert len(genres) == 48 and genres[0] == "Pop music" and genres[-1] == "Ska"
    assert {"Blues", "Heavy metal", "Reggae", "Jazz", "Disco", "Country"} <= set(genres)


def test_shipped_files_agree_with_the_spec():
    spec = S.read_spec()
    assert spec["weights_sha256"] == file_digest(S.weights_path())
    assert (spec["input"]["sr"], spec["input"]["n_fft"], spec["input"]["hop_length"], spec["input"]["win_length"],
            spec["input"]["n_mels"], spec["input"]["fmax"]) == (S.SR, S.N_FFT, S.HOP_LENGTH, S.WIN_LENGTH,
                                                              S.N_MELS, S.FMAX)
    text = S.license_path().read_text(encoding="utf-8")
    assert "MIT License" in text and "Florian Schmid" in text and "CC BY 4.0" in text
    from genrekit.store import tensors_sha256

    assert tensors_sha256(G.read_weights()) == spec["tensors_sha256"]


def test_block_table_is_mobilenetv3_at_width_04():
    assert [b.expanded for b in S.BLOCKS] == [8, 24, 32, 32, 48, 48, 96, 80, 72, 72, 192, 272, 272, 384, 384]
    assert [b.index for b in S.BLOCKS if b.se] == [4, 5, 6, 11, 12, 13, 14, 15]
    assert [b.index for b in S.BLOCKS if b.stride == 2] == [2, 4, 7, 13]
    assert [b.squeeze for b in S.BLOCKS if b.se] == [8, 16, 16, 48, 72, 72, 96, 96]


def test_frontend_frames_window_and_precisions():
    y = music_like(3.0)
    m32, m64 = F.logmel(y), F.logmel(y, dtype=np.float64)
    assert m32.shape == (128, F.frame_count(y.size)) == (128, 1 + (y.size - 1) // 320)
    assert np.abs(m32 - m64).max() < 1e-3
    w = F.window()
    assert w.shape == (1024,) and not w[:112].any() and not w[912:].any() and w[112 + 399] == w[112 + 400]
    banks = F.mel_banks()
    assert banks.shape == (128, 513) and not banks[:, 512].any() and (banks.sum(axis=1) > 0).all()  # every band catches a bin
    with pytest.raises(ValueError, match="float32 or float64"):
        F.logmel(y, dtype=np.float16)


def test_window_starts_spread_and_budget():
    W = S.WINDOW_SAMPLES
    assert list(M.window_starts(30 * 32000)) == [0, W, 2 * W]
    assert list(M.window_starts(W)) == [0] and list(M.window_starts(1024)) == [0]
    assert list(M.window_starts(14 * 32000)) == [2 * 32000]  # one window, centred
    long = M.window_starts(240 * 32000)  # 4 minutes, budget 6: 40 s parts, windows at their centres
    assert list(long / 32000) == [15.0, 55.0, 95.0, 135.0, 175.0, 215.0]
    assert M.window_starts(240 * 32000, max_windows=2).size == 2
    assert (M.window_starts(3600 * 32000, max_windows=50) + W <= 3600 * 32000).all()
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_windows"):
            M.window_starts(30 * 32000, max_windows=bad)


def test_embed_shapes_rates_and_determinism():
    y = music_like(25.0, sr=22050, seed=1)
    a = M.embed(y, 22050)
    n = M.window_starts(int(round(y.size * 32000 / 22050))).size
    assert a.features.shape == (n, 384) and a.logits.shape == (n, 527) and n == 3
    assert a.features.dtype == np.float32 and np.isfinite(a.features).all() and np.isfinite(a.logits).all()
    feats, logits = M.embed(y, 22050)  # unpacks as (features, logits)
    assert a.features.tobytes() == feats.tobytes() and a.logits.tobytes() == logits.tobytes()
    short = M.embed(music_like(0.5, seed=2), 32000)  # under 10 s: one window of its own length
    assert short.features.shape == (1, 384) and list(short.starts) == [0]
    tiny = M.embed(music_like(1.0, seed=3)[:1024], 32000)  # the shortest input the front end takes
    assert tiny.logits.shape == (1, 527) and np.isfinite(tiny.logits).all()


def test_onnx_agrees_with_the_torch_reference_on_synthesised_audio():
    torch = pytest.importorskip("torch")
    from genrekit.networks.mn04.reference import build_model

    mel = M.mel_windows(music_like(10.0, seed=4), np.zeros(1, np.int64))
    feats, logits = M.run(mel)
    with torch.no_grad():
        tf, tl = (t.numpy() for t in build_model()(torch.from_numpy(mel)))
    assert np.abs(feats - tf).max() < TOL_OUT and np.abs(logits - tl).max() < TOL_OUT


def test_tags_probabilities_and_genre_flag():
    e = M.embed(music_like(12.0, seed=5), 32000)
    top = M.tags(music_like(12.0, seed=5), 32000, k=7)
    assert top == M.tag_scores(e.logits, k=7) and len(top) == 7
    probs = [p for _, p in top]
    assert probs == sorted(probs, reverse=True) and all(0.0 < p < 1.0 for p in probs)
    genres = M.tag_scores(e.logits, k=60, genres_only=True)
    assert len(genres) == 48 and {n for n, _ in genres} == set(S.genre_labels())
    assert M.sigmoid(np.array([-1000.0, 0.0, 1000.0])).tolist() == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="logits"):
        M.tag_scores(np.zeros((2, 10)))
    with pytest.raises(ValueError, match="k must"):
        M.tag_scores(e.logits, k=0)


def test_bad_audio_is_refused_with_its_name():
    with pytest.raises(FeatureError, match="song.wav.*mono"):
        M.embed(np.zeros((2, 32000), np.float32), 32000, name="song.wav")
    y = music_like(2.0)
    y[100] = np.nan
    with pytest.raises(NonFiniteAudioError, match="song.wav"):
        M.embed(y, 32000, name="song.wav")
    with pytest.raises(EmptyAudioError, match="song.wav"):
        M.embed(np.zeros(0, np.float32), 32000, name="song.wav")
    with pytest.raises(EmptyAudioError, match="song.wav"):
        M.embed(np.zeros(500, np.float32), 32000, name="song.wav")
    with pytest.raises(ValueError, match="sample rate"):
        M.embed(y, 0)
    with pytest.raises(ValueError, match="precision"):
        M.embed(music_like(1.0), 32000, precision="float16")
    with pytest.raises(FeatureError, match="numbers"):
        M.embed(np.array(["a"] * 2048), 32000)


def test_bad_files_are_refused_with_their_name(tmp_path):
    from helpers import write_audio

    missing = tmp_path / "missing.wav"
    with pytest.raises(AudioError, match="missing.wav"):
        M.embed_file(missing)
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"this is not audio" * 100)
    with pytest.raises(AudioError, match="junk.mp3"):
        M.embed_file(junk)
    good = write_audio(tmp_path / "ok.wav", tone(3.0, sr=22050))
    assert M.embed_file(good).features.shape == (1, 384)


def test_damaged_or_foreign_weights_are_refused(tmp_path):
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(S.weights_path().read_bytes()[:1000])
    with pytest.raises(ModelError, match="cut.safetensors"):
        G.read_weights(str(bad))
    tensors = dict(G.read_weights())
    missing = {k: v for k, v in tensors.items() if k != "features.5.block.2.conc_se_layers.0.fc1.weight"}
    with pytest.raises(ModelError, match="lack.*fc1.weight"):
        G.build_proto(missing, source="x.safetensors")
    wrong = {**tensors, "classifier.5.bias": np.zeros(10, np.float32)}
    with pytest.raises(ModelError, match="classifier.5.bias.*527"):
        G.build_proto(wrong, source="x.safetensors")
    extra = {**tensors, "head.weight": np.zeros(3, np.float32)}
    with pytest.raises(ModelError, match="does not use.*head.weight"):
        G.build_proto(extra, source="x.safetensors")


def test_inference_imports_no_torch(tmp_path):
    code = ("import sys, numpy as np\n"
            "from genrekit.networks.mn04 import model as M, spec\n"
            "assert 'numpy' in sys.modules\n"
            "e = M.embed(np.sin(np.arange(64000) / 7.0).astype(np.float32), 32000)\n"
            "assert e.logits.shape == (1, 527)\n"
            "print('torch' in sys.modules, 'onnx' in sys.modules)\n")
    env = {**__import__("os").environ, "XDG_CACHE_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["False", "True"]  # onnx: the graph was built (first use, empty cache)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["False", "False"]  # second process: graph read from the cache


def test_a_damaged_cached_graph_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = G.cache_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an onnx graph")
    M.clear_sessions()
    try:
        e = M.embed(music_like(2.0, seed=6), 32000)
    finally:
        M.clear_sessions()
    assert e.logits.shape == (1, 527)
    assert path.read_bytes() == G.build_onnx()  # the cache holds the rebuilt graph


def test_spec_is_light():
    code = "import sys; import genrekit.networks.mn04.spec as s; s.labels(); print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert json.loads(S.path(S.SPEC_FILE).read_text())["format"] == S.FORMAT
