"""Old import path of the tabular model names, kept while other modules still import it.

The model names live in :mod:`genrekit.models.registry` (and the feature-input helpers in
:mod:`genrekit.models.inputs`); this module only keeps ``make_model`` (tabular names only, as before)
and ``TABULAR_MODELS`` for its remaining importers: cli/train_cmd.py, train.py, compare.py.
"""

from __future__ import annotations

from genrekit.models.registry import make_model as make_any_model
from genrekit.models.registry import model_names

__all__ = ["TABULAR_MODELS", "make_model"]

# The names, in the order users see them (importers only join or test membership).
TABULAR_MODELS: tuple[str, ...] = model_names("tabular")


def make_model(name: str, *, random_state: int = 0, **params):
    """A tabular model by name: :func:`genrekit.models.registry.make_model` with ``family="tabular"``."""
    return make_any_model(name, family="tabular", random_state=random_state, **params)
