"""Pretrained networks: one sub-package per network, each with the same small interface, and the
registry that names them.

A network ``<family>`` lives in ``genrekit/networks/<family>/``:

- ``spec``: names, constants, tag vocabulary, weights file, licence. Light: no numpy, no torch, so the
  CLI and the model loaders read it cheaply. It defines ``NAME``, ``MODELS``, ``DEFAULT_MODEL``, ``SR``
  (the rate the front end takes), ``LAYERS`` (embedding layer -> length), ``LICENSE``, ``check_model``,
  ``tag_names``, ``weights_path``, ``weights_sha256``; optionally ``ALIASES`` (another name -> a model,
  e.g. mn04's ``"audioset"``) and ``BACKENDS`` (the subset of :data:`BACKENDS` it runs on);
- ``frontend``: waveform to network input (numpy); ``graph``: the ONNX graph, written with the one
  writer (:mod:`genrekit.networks.writer`) the deep models use too, and its onnxruntime sessions;
  ``torch_ref``: the PyTorch reference (checks, training); ``model``: ``embed`` / ``embed_file`` /
  ``top_tags``; ``image`` (where the network has one): Kaggle images to its input; ``analysis``: one
  per-file analysis, one cache and the silence rule every consumer shares (what is common to every
  network's analysis is :mod:`genrekit.networks.analysis`). Its ``settings(model, backend)`` gives the
  object ``genrekit.run.networks`` drives (``analyse``, ``cache``, ``load``, ``save``, ``cache_settings``);
  :func:`settings` finds it by model name.

Adding a network = adding its sub-package and one line in :data:`FAMILIES`. Importing this module
imports no spec; :func:`spec` imports one on demand.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType
from typing import Any

from genrekit.errors import ModelError

# network family -> its light spec module
FAMILIES: dict[str, str] = {
    "musicnn": "genrekit.networks.musicnn.spec",
    "mn04": "genrekit.networks.mn04.spec",
}
# how a network runs: "torch" (the reference port), "onnx" (onnxruntime, no torch, the default in every
# command), "onnx-int8" (onnxruntime with quantised layers where the network calibrates them)
BACKENDS: tuple[str, ...] = ("torch", "onnx", "onnx-int8")


def spec(family: str) -> ModuleType:
    """The light spec module of network ``family`` (``"musicnn"``)."""
    if family not in FAMILIES:
        raise ModelError(f"unknown network family {family!r}; choose one of {', '.join(FAMILIES)}")
    return import_module(FAMILIES[family])


def models(family: str | None = None) -> tuple[str, ...]:
    """Every pretrained model name (of ``family``, or of all families), in registry order."""
    fams = FAMILIES if family is None else [family]
    return tuple(m for f in fams for m in spec(f).MODELS)


def aliases(family: str | None = None) -> dict[str, str]:
    """Other names of pretrained models (of ``family``, or of all): ``{"audioset": "mn04"}``."""
    fams = FAMILIES if family is None else [family]
    return {a: m for f in fams for a, m in getattr(spec(f), "ALIASES", {}).items()}


def model_choices() -> tuple[str, ...]:
    """Every name a ``--model`` of ``tags`` / ``embed`` accepts: the models, then their aliases."""
    return (*models(), *aliases())


def family_of(model: str) -> str:
    """The family that ships ``model`` (``"MSD_musicnn"`` -> ``"musicnn"``, ``"audioset"`` -> ``"mn04"``)."""
    for f in FAMILIES:
        s = spec(f)
        if model in s.MODELS or model in getattr(s, "ALIASES", {}):
            return f
    raise ModelError(f"unknown pretrained network {model!r}; choose one of {', '.join(model_choices())}")


def check_network(model: str, family: str | None = None) -> str:
    """The model ``model`` names (an alias gives its model), when it is a pretrained network (of
    ``family``); :class:`~genrekit.errors.ModelError` listing the choices otherwise."""
    return spec(family if family is not None else family_of(model)).check_model(model)


def settings(model: str, backend: str = "onnx") -> Any:
    """The analysis settings of pretrained network ``model`` (an alias names its model), from its
    family's ``analysis.settings``: what ``genrekit.run.networks`` drives (imports numpy)."""
    return import_module(f"genrekit.networks.{family_of(model)}.analysis").settings(model, backend)


def check_backend(backend: str, *, family: str = "musicnn", error: type[Exception] = ValueError) -> str:
    """``backend`` when ``family`` runs on it (its spec's ``BACKENDS``, else all of :data:`BACKENDS`);
    ``error`` naming the choices otherwise."""
    if backend not in BACKENDS:
        raise error(f"unknown {family} backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    own = getattr(spec(family), "BACKENDS", BACKENDS)
    if backend not in own:
        raise error(f"{family} does not run on backend {backend!r}; choose one of {', '.join(own)}")
    return backend
