"""Models: estimators with fit / predict / predict_proba / save / load, stored as safe files.

Built-in kinds are registered here by name so that :func:`load_model` can rebuild any saved model
without importing torch or sklearn until needed.
"""

from genrekit.models.base import REGISTRY, Estimator, load_model, load_model_file, register, save_model_file

__all__ = ["REGISTRY", "Estimator", "load_model", "load_model_file", "register", "save_model_file"]

# Built-in kinds (module:Class). Each class has classmethod load(path) and method save(path).
register("sklearn", "genrekit.models.classic:SklearnModel")  # RF, ExtraTrees, SVM, kNN, LR, HGB (+ scaler/selection)
register("mlp", "genrekit.models.mlp:MLPModel")  # torch MLP on feature vectors
register("cnn1d", "genrekit.models.mlp:CNN1DModel")  # 1-D CNN over the feature vector
register("ensemble", "genrekit.models.ensemble:EnsembleModel")  # soft voting / stacking over other models
register("deep", "genrekit.models.deep:DeepModel")  # CNN / ResNet on log-mel slices
register("hybrid", "genrekit.models.hybrid:HybridModel")  # product of experts over members with different inputs
register("linear", "genrekit.models.linear:LinearModel")  # numpy-only logistic regression (fast to load and serve)
