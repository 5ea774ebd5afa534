"""musicnn (Pons & Serra 2019, ISC licence): tags and embeddings from networks pretrained on real music.

The light spec is imported here (no numpy: ``from genrekit.networks import musicnn; musicnn.MODELS``
stays cheap); everything else loads on first use of its name, from the module that owns it:

- :mod:`.spec`: names, constants, tag vocabulary, weights file, licence;
- :mod:`.frontend`: waveform to log-mel patches (numpy), patch subsets;
- :mod:`.graph`: the ONNX graph (float32, int8) and onnxruntime sessions;
- :mod:`.torch_ref`: the PyTorch reference port;
- :mod:`.model`: :func:`embed`, :func:`embed_file`, :func:`run_patches`, :func:`top_tags`, ``Embedding``;
- :mod:`.image`: Kaggle GTZAN images to musicnn's input, :func:`embed_image`;
- :mod:`.analysis`: one file's analysis (per-patch outputs and levels), its cache, the silence rule.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from genrekit.networks.musicnn.spec import (
    BLOCK_FRAMES,
    BLOCK_PATCHES,
    DEFAULT_BATCH,
    DEFAULT_MODEL,
    HOP_LENGTH,
    LAYERS,
    MODELS,
    N_FEATURES,
    N_FFT,
    N_MELS,
    N_PENULTIMATE,
    N_POOLED,
    N_TAGS,
    NAME,
    PATCH_FRAMES,
    PATCH_HOP,
    PATCH_SECONDS,
    SR,
    check_model,
    read_weights,
    tag_names,
    weights_path,
    weights_sha256,
)

_LAZY: dict[str, str] = {
    **dict.fromkeys(("musicnn_input", "iter_musicnn_input", "repeat_pad", "patch_starts", "patches",
                     "iter_patches", "block_selection", "check_per_block", "block_full", "select_patches"),
                    "frontend"),
    **dict.fromkeys(("build_onnx", "onnx_model", "onnx_cache_path", "load_onnx", "clear_sessions",
                     "backend_runner", "calibrate_int8", "OnnxMusicnn", "INT8_CALIBRATION"), "graph"),
    **dict.fromkeys(("load_musicnn", "Musicnn"), "torch_ref"),
    **dict.fromkeys(("Embedding", "run_patches", "embed", "embed_file", "top_tags", "ranked_tags"), "model"),
    **dict.fromkeys(("musicnn_input_from_image", "embed_image", "image_peak_power"), "image"),
    **dict.fromkeys(("MusicnnSettings", "MusicnnAnalysis", "musicnn_analysis", "patch_levels", "analysis_cache",
                     "load_analysis", "save_analysis", "audible"), "analysis"),
}

__all__ = ["BLOCK_FRAMES", "BLOCK_PATCHES", "DEFAULT_BATCH", "DEFAULT_MODEL", "HOP_LENGTH", "LAYERS", "MODELS",
           "NAME", "N_FEATURES", "N_FFT", "N_MELS", "N_PENULTIMATE", "N_POOLED", "N_TAGS", "PATCH_FRAMES", "PATCH_HOP",
           "PATCH_SECONDS", "SR", "check_model", "read_weights", "tag_names", "weights_path", "weights_sha256", *_LAZY]


def __getattr__(name: str) -> Any:
    where = "image" if name.startswith("IMAGE_") else _LAZY.get(name)  # the image mapping's constants
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{where}"), name)
