"""EfficientAT ``mn04_as`` (MIT): a MobileNetV3 AudioSet tagger, 527 classes, 384-value embedding.

``spec`` (light: names, constants, labels), ``frontend`` (numpy mel), ``graph`` (the ONNX graph built
from the shipped weights), ``model`` (``embed`` / ``tags`` on onnxruntime), ``reference`` (PyTorch, for
tests and training only). Nothing heavy is imported here.
"""
