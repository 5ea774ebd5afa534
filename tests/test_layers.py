"""The layering of docs/architecture.md, checked on the source: every ``genrekit`` import (deferred ones
inside functions too) goes to the importing module's own layer or below, and no module imports another
module's private (``_``-prefixed) name."""

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
    "genrekit.datasets": 2, "genrekit.splits": 2,
    "genrekit.models": 3,
    "genrekit.experiments": 4, "genrekit.reports": 4, "genrekit.predict": 4, "genrekit.run": 4,
    "genrekit.onnx": 3, "genrekit.parquet_out": 4, "genrekit.eda": 4, "genrekit.styles_ear": 4,
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


def test_a_layer_violation_is_caught(tmp_path):
    """The checker itself: a made-up signal module importing the work layer is reported."""
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from genrekit.predict import GenreClassifier\n")
    found = [(t, n) for t, n, _ in imports(f)]
    assert found == [("genrekit.predict", ["GenreClassifier"])]
    assert layer_of("genrekit.predict") > layer_of("genrekit.audio")
