"""musicnn in PyTorch: the reference port (and what training through the network would use).

musicnn's ``build_musicnn`` (front end '7774timbraltemporal', 64-filter mid-end, 200-unit back end),
inference only, float32 on CPU: timbral filters (7x38, 7x67) and temporal filters (128/64/32 x 1) with
batch norm and max-pooling over frequency, a dense mid-end of three 1-D convolutions with residual
connections, max + mean pooling over time, dense 200 (the *penultimate* layer) and dense 50 with a
sigmoid (the *taggram*). It reproduces the original TensorFlow graph (``tests/test_embeddings.py``);
the ONNX graph (:mod:`~genrekit.networks.musicnn.graph`) is checked against it. Importing this module
does not import torch: :func:`load_musicnn` (and the :class:`Musicnn` class) load it when first needed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

from genrekit.errors import ModelError
from genrekit.networks.musicnn.spec import (
    BN_EPS,
    DEFAULT_MODEL,
    N_MELS,
    N_PENULTIMATE,
    N_POOLED,
    N_TAGS,
    check_model,
    read_weights,
    tag_names,
    weights_path,
)

if TYPE_CHECKING:
    import torch


def _define_musicnn() -> type:
    """Build the torch module class on first use, so importing this module does not import torch."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class ConvBlock(nn.Module):
        """conv -> ReLU -> batch norm, the order of musicnn's blocks (norm *after* the activation)."""

        def __init__(self, conv: nn.Module, channels: int, two_d: bool):
            super().__init__()
            self.conv = conv
            self.bn = (nn.BatchNorm2d if two_d else nn.BatchNorm1d)(channels, eps=BN_EPS)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(F.relu(self.conv(x)))

        def freq_max(self, x: torch.Tensor) -> torch.Tensor:
            """``forward(x).amax(dim=3)`` (the front end's max-pool over frequency), bit for bit, without
            ReLU and batch norm passes over the large ``(b, c, time, freq)`` map: both are monotone per
            channel (increasing where the norm's scale ``gamma`` is >= 0, decreasing where it is < 0), so
            the maximum is ReLU + norm of the conv's maximum, or of its minimum where ``gamma < 0``."""
            lo, hi = torch.aminmax(self.conv(x), dim=3)
            pick = torch.where((self.bn.weight < 0)[None, :, None], lo, hi)
            bn = self.bn
            return F.batch_norm(F.relu(pick), bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)

    class Musicnn(nn.Module):
        """musicnn's ``build_musicnn`` (front end '7774timbraltemporal', 64-filter mid-end, 200-unit
        back end), inference only. ``forward`` takes ``(batch, 187, 96)`` log-mel patches and returns
        ``(taggram, penultimate, mean_pool, max_pool)``: ``(b, 50)`` sigmoid tag scores, ``(b, 200)``
        batch-normed dense layer, and ``(b, 753)`` mean / max over time of the front- and mid-end maps."""

        def __init__(self) -> None:
            super().__init__()
            self.input_bn = nn.BatchNorm2d(1, eps=BN_EPS)
            self.timbral74 = ConvBlock(nn.Conv2d(1, 204, (7, int(0.4 * N_MELS))), 204, True)
            self.timbral77 = ConvBlock(nn.Conv2d(1, 204, (7, int(0.7 * N_MELS))), 204, True)
            self.temporal128 = ConvBlock(nn.Conv2d(1, 51, (128, 1)), 51, True)
            self.temporal64 = ConvBlock(nn.Conv2d(1, 51, (64, 1)), 51, True)
            self.temporal32 = ConvBlock(nn.Conv2d(1, 51, (32, 1)), 51, True)
            self.mid1 = ConvBlock(nn.Conv1d(561, 64, 7), 64, False)
            self.mid2 = ConvBlock(nn.Conv1d(64, 64, 7), 64, False)
            self.mid3 = ConvBlock(nn.Conv1d(64, 64, 7), 64, False)
            self.pool_bn = nn.BatchNorm1d(N_POOLED, eps=BN_EPS)
            self.dense = nn.Linear(N_POOLED, N_PENULTIMATE)
            self.dense_bn = nn.BatchNorm1d(N_PENULTIMATE, eps=BN_EPS)
            self.out = nn.Linear(N_PENULTIMATE, N_TAGS)

        @staticmethod
        def _same(x: torch.Tensor, k: int) -> torch.Tensor:
            """TF 'same' padding along time for an even kernel: (k-1)//2 before, the rest after."""
            return F.pad(x, (0, 0, (k - 1) // 2, k - 1 - (k - 1) // 2))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
            h = self.input_bn(x[:, None])  # (b, 1, time, mel)
            p7 = F.pad(h, (0, 0, 3, 3))  # timbral: 'same' along time only, 'valid' along mel
            front = [
                self.timbral74.freq_max(p7),
                self.timbral77.freq_max(p7),
                self.temporal128.freq_max(self._same(h, 128)),
                self.temporal64.freq_max(self._same(h, 64)),
                self.temporal32.freq_max(self._same(h, 32)),
            ]
            f = torch.cat(front, dim=1)  # (b, 561, time), TF's concat order
            m1 = self.mid1(F.pad(f, (3, 3)))
            m2 = self.mid2(F.pad(m1, (3, 3))) + m1
            m3 = self.mid3(F.pad(m2, (3, 3))) + m2
            feats = torch.cat([f, m1, m2, m3], dim=1)  # (b, 753, time)
            max_pool = feats.amax(dim=2)
            mean_pool = feats.mean(dim=2)
            # TF flattens concat([max, mean], axis=2) of shape (b, 753, 2): interleaved max0, mean0, ...
            flat = self.pool_bn(torch.stack([max_pool, mean_pool], dim=2).reshape(x.shape[0], N_POOLED))
            penultimate = self.dense_bn(F.relu(self.dense(flat)))
            taggram = torch.sigmoid(self.out(penultimate))
            return taggram, penultimate, mean_pool, max_pool

    Musicnn.__module__, Musicnn.__qualname__ = __name__, "Musicnn"
    return Musicnn


def _musicnn_class() -> type:
    cls = globals().get("Musicnn")
    if cls is None:
        cls = globals()["Musicnn"] = _define_musicnn()
    return cls


def __getattr__(name: str) -> Any:
    if name == "Musicnn":
        return _musicnn_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_LOCK = threading.Lock()


@cache
def _load_cached(model: str, dtype_name: str) -> Any:
    import torch

    path = weights_path(model)
    tensors, meta = read_weights(path, model=model)
    if tuple(meta["tags"]) != tag_names(model):
        raise ModelError(f"{path}: tag names differ from {model}.tags.json")
    dtype = getattr(torch, dtype_name)
    net = _musicnn_class()()
    state = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in tensors.items()}
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != expected:
        raise ModelError(f"{path}: tensors do not match the musicnn architecture "
                         f"(missing {sorted(set(expected) - set(got))}, unexpected {sorted(set(got) - set(expected))}, "
                         f"or shapes differ)")
    net.load_state_dict(state, strict=False)
    net = net.to(dtype).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def load_musicnn(model: str = DEFAULT_MODEL, *, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """The pretrained network, in eval mode (batch norm on its moving statistics), loaded once per
    process and dtype. float32 (default) is what the references are checked in; float64 is for checks."""
    import torch

    check_model(model)
    dtype = torch.float32 if dtype is None else dtype
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"musicnn runs in float32 or float64, not {dtype}")
    with _LOCK:
        return _load_cached(model, str(dtype).removeprefix("torch."))



def runner(model: str = DEFAULT_MODEL) -> Callable[[np.ndarray], tuple[np.ndarray, ...]]:
    """One forward pass of the torch port over a batch of patches: ``(taggram, penultimate, pooled)``."""
    import torch

    net = load_musicnn(model)

    def run(x: np.ndarray) -> tuple[np.ndarray, ...]:
        with torch.inference_mode():
            tg, pen, mean_pool, max_pool = net(torch.from_numpy(x))
        return tg.numpy(), pen.numpy(), torch.cat([max_pool, mean_pool], dim=1).numpy()

    return run
