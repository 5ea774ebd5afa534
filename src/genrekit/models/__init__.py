"""Models: estimators with fit / predict / predict_proba / save / load, stored as safe files.

``make_model(name)`` builds any model by name and ``load_model(path)`` reads any model file; both come
from :mod:`genrekit.models.registry`, the one table of model names and file kinds. Importing this
package imports neither torch nor scikit-learn.
"""

from genrekit.models.base import Estimator, load_model_file, save_model_file
from genrekit.models.registry import KINDS, load_model, make_model, model_class, model_names, register_kind

__all__ = [
    "KINDS",
    "Estimator",
    "load_model",
    "load_model_file",
    "make_model",
    "model_class",
    "model_names",
    "register_kind",
    "save_model_file",
]
