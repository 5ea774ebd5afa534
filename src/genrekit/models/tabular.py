"""Old import path of the tabular model zoo, kept while other modules still import it.

The model names live in :mod:`genrekit.models.registry` and the feature-input helpers in
:mod:`genrekit.models.inputs`; this module only re-exports them (and restricts ``make_model`` to
tabular names, as before). Remaining importers: cli/train_cmd.py, train.py, compare.py.
"""

from __future__ import annotations

from genrekit.models.inputs import check_X, features_input, log_columns, log_transform
from genrekit.models.registry import ENSEMBLE_MEMBERS, STACKING_MEMBERS, model_names
from genrekit.models.registry import make_model as _make_any

__all__ = [
    "ENSEMBLE_MEMBERS",
    "STACKING_MEMBERS",
    "TABULAR_MODELS",
    "check_X",
    "features_input",
    "log_columns",
    "log_transform",
    "make_model",
]

# Only the names (and their order) are used by importers; build models with make_model.
TABULAR_MODELS: tuple[str, ...] = model_names("tabular")


def make_model(name: str, *, random_state: int = 0, **params):
    """A tabular model by name: :func:`genrekit.models.registry.make_model` with ``family="tabular"``."""
    return _make_any(name, family="tabular", random_state=random_state, **params)
