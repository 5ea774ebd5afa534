"""Models: estimators with fit / predict / predict_proba / save / load, stored as safe files.

``make_model(name)`` builds any model by name and ``load(path, backend="torch" | "onnx")`` reads any
model file (``load_model(path)``: the torch backend); both come from :mod:`genrekit.models.registry`,
the one table of model names and file kinds. The typed inputs models read are in
:mod:`genrekit.models.inputs`. Importing this
package imports neither torch nor scikit-learn.
"""

from genrekit.models.base import Estimator, load_model_file, save_model_file
from genrekit.models.registry import (
    BACKENDS,
    KINDS,
    load,
    load_model,
    make_model,
    model_class,
    model_names,
    register_kind,
)

__all__ = [
    "BACKENDS",
    "KINDS",
    "Estimator",
    "load",
    "load_model",
    "load_model_file",
    "make_model",
    "model_class",
    "model_names",
    "register_kind",
    "save_model_file",
]
