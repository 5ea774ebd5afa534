"""The layering of docs/architecture.md, checked on the source: every ``genrekit`` import (deferred ones
inside functions too) goes to the importing module's own layer or below, and no module imports another
module's private (``_``-prefixed) name, nor reads one as ``module._name``; and no import circle between modules
(deferred imports count: a circle that only a deferred import hides is still one concept split in two)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# bottom up; a module may import from its own layer or any below it
LAYERS: dict[str, int] = {
    "genrekit": 0, "genrekit.errors": 0, "genrekit.names": 0, "genrekit.dsp": 0, "genrekit.metrics": 0, "genrekit.store": 0,
    "genrekit.audio": 1, "genrekit.features": 1, "genrekit.spectrogram": 1, "genrekit.networks": 1,
    "genrekit.augment": 1,
    "genrekit.networks.mn04.image": 1,  # Kaggle images to mn04 input: signal, beside musicnn's image mapping
    "genrekit.datasets": 2, "genrekit.splits": 2,
    "genrekit.models": 3,
    "genrekit.experiments": 4, "genrekit.reports": 4, "genrekit.predict": 4, "genrekit.run": 4,
    "genrekit.onnx": 3, "genrekit.onnx_export": 4, "genrekit.parquet_out": 4, "genrekit.eda": 4, "genrekit.styles_ear": 4,
    "genrekit.cli": 5, "genrekit.serve": 5, "genrekit.library": 5,
    "genrekit.__main__": 5, "beetsplug": 5,
}
NAMES = {0: "base", 1: "signal", 2: "data", 3: "models", 4: "work", 5: "faces"}


def layer_of(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in LAYERS:
            return LAYERS[key]
    raise KeyError(module)


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def source_files() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def imports(path: Path):
    """(imported module, [names], line) for every genrekit import in the file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in ("genrekit", "beetsplug"):
                yield node.module, [a.name for a in node.names], node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in ("genrekit", "beetsplug"):
                    yield a.name, [], node.lineno


def test_every_module_has_a_layer():
    missing = [module_name(p) for p in source_files() if not _has_layer(module_name(p))]
    assert not missing, f"add these modules to LAYERS (and docs/architecture.md): {missing}"


def _has_layer(module: str) -> bool:
    try:
        layer_of(module)
    except KeyError:
        return False
    return True


@pytest.mark.parametrize("path", source_files(), ids=lambda p: module_name(p))
def test_imports_go_down_the_layers(path):
    me = module_name(path)
    # the package root defines constants (layer 0 for its importers) and is also the public facade
    # (``genrekit.GenreClassifier``, loaded lazily), so its own imports may reach every layer
    mine = max(LAYERS.values()) if me == "genrekit" else layer_of(me)
    bad = []
    for target, names, line in imports(path):
        full = [f"{target}.{n}" for n in names] if names else [target]
        for t in full:
            # ``from genrekit import audio`` names a module; ``from genrekit import GENRES`` a constant
            t_layer = layer_of(t) if _has_layer(t) and t != "genrekit" else layer_of(target)
            if t_layer > mine:
                bad.append(f"line {line}: {t} ({NAMES[t_layer]}) from {me} ({NAMES[mine]})")
    assert not bad, "imports reach up a layer:\n" + "\n".join(bad)


@pytest.mark.parametrize("path", source_files(), ids=lambda p: module_name(p))
def test_no_private_names_cross_modules(path):
    me = module_name(path)
    bad = [f"line {line}: {target}.{n}" for target, names, line in imports(path)
           for n in names if n.startswith("_") and not n.startswith("__") and target != me]
    assert not bad, f"{me} imports private names:\n" + "\n".join(bad)


def _module_aliases(tree) -> dict[str, str]:
    """Local names bound to genrekit modules: ``from genrekit import audio`` -> {"audio": "genrekit.audio"}."""
    modules = {module_name(p) for p in source_files()}
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update({a.asname or a.name.split(".")[0]: a.name for a in node.names if a.name.split(".")[0] == "genrekit"})
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names
                        if f"{node.module}.{a.name}" in modules})
    return out


def private_reads(path: Path) -> list[str]:
    """``module._name`` reads of another genrekit module's private names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    aliases = _module_aliases(tree)
    return [f"line {n.lineno}: {n.value.id}.{n.attr}" for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__")
            and isinstance(n.value, ast.Name) and n.value.id in aliases]


@pytest.mark.parametrize("path", source_files(), ids=lambda p: module_name(p))
def test_no_private_attributes_of_other_modules(path):
    bad = private_reads(path)
    assert not bad, f"{module_name(path)} reads private names of other modules:\n" + "\n".join(bad)


def module_graph(paths) -> dict[str, set[str]]:
    """module -> the genrekit modules it imports (at any depth). The package root is left out as an importer:
    it is the lazy public facade over every layer, while everyone imports its constants."""
    known = {module_name(p) for p in paths}

    def owner(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for p in paths:
        me = module_name(p)
        targets = set()
        for target, names, _ in imports(p):
            for t in [f"{target}.{n}" for n in names if f"{target}.{n}" in known] or [target]:
                targets.add(owner(t))
        graph[me] = set() if me == "genrekit" else targets - {None, me}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, found = {}, {}, [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    found = circles(module_graph(source_files()))
    assert not found, "modules that import each other (directly or round a loop):\n" + "\n".join(map(str, found))


def test_the_checkers_catch_a_circle_and_a_private_read(tmp_path):
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []
    f = tmp_path / "x.py"
    f.write_text("from genrekit import audio\nimport genrekit.store as st\n\ndef f():\n    return audio._x, st._y, audio.load\n")
    assert private_reads(f) == ["line 5: audio._x", "line 5: st._y"]


def test_a_layer_violation_is_caught(tmp_path):
    """The checker itself: a made-up signal module importing the work layer is reported."""
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from genrekit.predict import GenreClassifier\n")
    found = [(t, n) for t, n, _ in imports(f)]
    assert found == [("genrekit.predict", ["GenreClassifier"])]
    assert layer_of("genrekit.predict") > layer_of("genrekit.audio")
