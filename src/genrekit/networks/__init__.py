"""Pretrained networks, one sub-package each (spec, numpy front end, ONNX graph, ``embed`` / ``tags``)."""
