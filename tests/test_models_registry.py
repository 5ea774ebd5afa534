"""genrekit.models.registry: every name builds, every file kind loads, and models/ has no import circle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import genrekit.models
from genrekit.errors import ModelError
from genrekit.models.registry import (
    ENSEMBLE_MEMBERS,
    KINDS,
    STACKING_MEMBERS,
    make_model,
    model_class,
    model_names,
)

MODELS_DIR = Path(genrekit.models.__file__).parent
MODULES = sorted(f"genrekit.models.{p.stem}" for p in MODELS_DIR.glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", model_names())
def test_every_name_builds_an_unfitted_estimator_of_a_registered_kind(name):
    model = make_model(name, random_state=3)
    assert model.kind in KINDS and isinstance(model, model_class(model.kind))
    assert not hasattr(model, "classes_")  # no work in __init__
    seed = model.seed if model.kind == "deep" else model.random_state
    assert seed == 3


def test_families_partition_the_names():
    tabular, deep = model_names("tabular"), model_names("deep")
    assert set(tabular).isdisjoint(deep) and model_names() == tabular + deep
    assert {"svm", "mlp-512-sgd", "ensemble", "stacking", "cnn1d"} <= set(tabular)
    assert {"cnn", "shortchunk", "resnet"} <= set(deep)
    with pytest.raises(ModelError, match="family"):
        model_names("image")


def test_family_restricts_make_model_and_unknown_names_list_the_choices():
    with pytest.raises(ModelError, match=r"unknown model 'cnn'; choose one of rf, .*svm-top20"):
        make_model("cnn", family="tabular")
    with pytest.raises(ModelError, match="unknown model 'svm'"):
        make_model("svm", family="deep")
    with pytest.raises(ModelError, match="shortchunk"):
        make_model("nope")
    assert make_model("cnn", family="deep").arch == "cnn"


def test_top_k_names_and_params():
    m = make_model("svm-top20", params={"C": 3.0})
    assert (m.name, m.top_k, m.params) == ("svm", 20, {"C": 3.0})
    assert make_model("rf-top30").top_k == 30
    with pytest.raises(ModelError):
        make_model("mlp-top5")  # selection applies to the classic models only
    deep = make_model("shortchunk", epochs=2, seed=7)
    assert (deep.epochs, deep.seed) == (2, 7)  # an explicit seed wins over random_state


def test_ensembles_get_their_default_members_and_build_members_through_the_factory():
    assert make_model("ensemble").members == ENSEMBLE_MEMBERS
    stack = make_model("stacking", members=["logreg", "knn"])
    assert stack.members == ("logreg", "knn") and stack.method == "stacking"
    assert make_model("stacking").members == STACKING_MEMBERS

    from genrekit.models.ensemble import EnsembleModel

    built = []

    def factory(name, *, random_state):
        built.append((name, random_state))
        return make_model(name, random_state=random_state)

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = np.array(["a", "b"] * 20)
    X[y == "b"] += 2.0
    ens = EnsembleModel(members=("logreg", "knn"), random_state=5, factory=factory).fit(X, y)
    assert built == [("logreg", 5), ("knn", 5)]
    assert (ens.predict(X) == y).mean() > 0.9
    with pytest.raises(ModelError, match="unknown model 'cnn'"):  # the default factory: tabular names only
        EnsembleModel(members=("cnn",)).fit(X, y)


def test_every_kind_names_a_loadable_class():
    for kind in KINDS:
        cls = model_class(kind)
        assert cls.kind == kind and callable(cls.load)
    with pytest.raises(ModelError, match="unknown model kind 'nope'"):
        model_class("nope")


def test_unknown_kind_in_a_file_is_refused(tmp_path):
    from genrekit.models import load_model, save_model_file

    meta = {"kind": "alien", "classes": ["a", "b"], "input": {"type": "features", "columns": ["x"]}}
    path = save_model_file(tmp_path / "m.safetensors", {"w": np.zeros(1)}, meta)
    with pytest.raises(ModelError, match="unknown model kind 'alien'"):
        load_model(path)


@pytest.mark.parametrize("first", MODULES)
def test_models_modules_import_in_any_order(first):
    """A fresh interpreter imports ``first`` before every other module of genrekit.models: an import circle
    fails for some first module. Importing them pulls in neither torch nor scikit-learn."""
    rest = [m for m in MODULES if m != first]
    code = (
        "import importlib, sys\n"
        f"for m in {[first, *rest]!r}: importlib.import_module(m)\n"
        "heavy = sorted(k for k in ('torch', 'sklearn') if k in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_metrics_is_the_bottom_floor():
    code = (
        "import sys, genrekit.metrics\n"
        "mods = sorted(m for m in sys.modules if m.startswith('genrekit.'))\n"
        "assert mods == ['genrekit.errors', 'genrekit.metrics'], mods\n"
        "assert 'sklearn' not in sys.modules and 'torch' not in sys.modules\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def _private_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [
        f"{path.name}:{node.lineno} {node.module}.{a.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("genrekit")
        for a in node.names
        if a.name.startswith("_") and not a.name.endswith("__")
    ]


def test_no_private_name_crosses_modules_in_models_predict_onnx_metrics_reports():
    src = MODELS_DIR.parent
    files = [*MODELS_DIR.glob("*.py"), *(src / f for f in ("predict.py", "onnx.py", "metrics.py", "reports.py"))]
    assert [hit for f in files for hit in _private_imports(f)] == []


def _genrekit_imports(path: Path) -> set[str]:
    """Every genrekit module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("genrekit"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from genrekit.models import x`
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("genrekit"))
    return found


def test_models_import_graph_has_no_cycle_even_through_deferred_imports():
    """Deferred (function-level) imports hide circles from an import test: walk them all."""
    names = {*MODULES, "genrekit.models"}
    path_of = {m: MODELS_DIR / f"{m.rsplit('.', 1)[1]}.py" for m in MODULES} | {
        "genrekit.models": MODELS_DIR / "__init__.py"}
    graph = {m: sorted((_genrekit_imports(path_of[m]) & names) - {m}) for m in names}

    def cycle_from(node, stack):
        if node in stack:
            return [*stack[stack.index(node):], node]
        for nxt in graph[node]:
            found = cycle_from(nxt, [*stack, node])
            if found:
                return found
        return None

    cycles = [c for m in sorted(names) if (c := cycle_from(m, []))]
    assert cycles == []


def test_one_loader_with_a_backend(tiny_model, tmp_path):
    """models.load is the one loader: the backend decides how deep nets run, a hybrid's members included."""
    from genrekit.models import load
    from genrekit.models.deep import DeepModel
    from genrekit.models.hybrid import HybridModel
    from genrekit.models.runtime import OnnxModel

    torch_model, onnx_model = load(tiny_model), load(tiny_model, backend="onnx")
    assert isinstance(torch_model, DeepModel) and isinstance(onnx_model, OnnxModel)
    X = np.random.default_rng(0).random((2, torch_model.input_["n_mels"], torch_model.slice_width()))
    np.testing.assert_allclose(onnx_model.predict_proba(X), torch_model.predict_proba(X), atol=1e-4)
    path = HybridModel([torch_model, load(tiny_model)], weights=[0.5, 0.5]).fit().save(tmp_path / "h.safetensors")
    assert all(isinstance(m, OnnxModel) for m in load(path, backend="onnx").members_)
    assert all(isinstance(m, DeepModel) for m in load(path).members_)
    with pytest.raises(ModelError, match="unknown backend 'tf'"):
        load(tiny_model, backend="tf")
    with pytest.raises(ModelError, match="missing.safetensors: model file not found"):
        load(tmp_path / "missing.safetensors", backend="onnx")
