"""CNNs and ResNets on normalised log-mel slices, as a scikit-learn-style estimator.

``DeepModel`` takes arrays (``X``: ``[n, n_mels, frames]`` slices from :mod:`genrekit.spectrogram`, ``y``
labels, optional ``groups`` = track ids) and never reads files. Slices wider than the model input are
randomly cropped while training (time-shift augmentation) and centre-cropped otherwise. Track-level
predictions average the slices' log-probabilities (:meth:`DeepModel.predict_track`).

Architectures (``arch``):

* ``tutorial`` -- the tutorials' small CNN on 128x128 inputs (slices resized to 128x128), flatten + dense.
* ``cnn`` -- 3 conv blocks (conv, ReLU, max-pool), no regularisation (reference "CNN1").
* ``cnn-bn`` -- the same with BatchNorm and dropout (reference "CNN2").
* ``resnet`` -- a small ResNet (4 stages of basic blocks) for 3 s slices.
* ``shortchunk`` -- short-chunk CNN (Won et al. 2020, scaled down for CPU): 6 conv-BN-ReLU-pool layers,
  global max pool over time, dense head; the strongest that trains in minutes on 2 CPU cores here.
* ``shortchunk-res`` -- the same body with residual blocks.

Files: one safetensors via :func:`genrekit.models.base.save_model_file`; metadata holds the architecture,
classes, the ``input`` description (how to compute the input from audio) and the training record.
Training writes a per-epoch checkpoint (weights + optimiser state) so a run can resume.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import ModelError
from genrekit.models.base import Estimator, load_model_file, save_model_file

ARCHS = ("tutorial", "cnn", "cnn-bn", "resnet", "shortchunk", "shortchunk-res")
CHECKPOINT_NAME = "checkpoint.safetensors"
MAX_WIDTH = 8  # channel multiplier a file may ask for (shipped models: 1)
MAX_INPUT_FRAMES = 1 + 30 * 48_000 // 64  # a 30 s slice at the densest log-mel models.inputs allows


# ------------------------------------------------------------------------------------------ networks
def build_net(arch: str, *, n_classes: int, n_mels: int = 128, width: int = 1):
    """The torch module for ``arch``; input ``[batch, n_mels, frames]``, output logits ``[batch, n_classes]``."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def conv_bn(cin, cout, bn=True):
        layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=not bn)]
        if bn:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
        return layers

    class Basic(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.skip = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout else nn.Identity()
            )

        def forward(self, x):
            return F.relu(self.b2(self.c2(F.relu(self.b1(self.c1(x))))) + self.skip(x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            w = width
            self.resize = None
            if arch == "tutorial":
                self.resize = (128, 128)
                self.body = nn.Sequential(
                    *conv_bn(1, 32, bn=False), nn.MaxPool2d(2), *conv_bn(32, 64, bn=False), nn.MaxPool2d(2),
                    *conv_bn(64, 128, bn=False), nn.MaxPool2d(2), nn.Flatten(),
                )
                self.head = nn.Sequential(nn.Linear(128 * 16 * 16, 128), nn.ReLU(inplace=True), nn.Dropout(0.3),
                                          nn.Linear(128, n_classes))
            elif arch in ("cnn", "cnn-bn"):
                bn = arch == "cnn-bn"
                drop = (lambda: [nn.Dropout(0.25)]) if bn else (lambda: [])
                self.body = nn.Sequential(
                    *conv_bn(1, 32 * w, bn), nn.MaxPool2d(2), *drop(),
                    *conv_bn(32 * w, 64 * w, bn), nn.MaxPool2d(2), *drop(),
                    *conv_bn(64 * w, 64 * w, bn), nn.MaxPool2d(2), *drop(),
                    nn.AdaptiveAvgPool2d((4, 4)), nn.Flatten(),
                )
                hidden = 128 if bn else 64
                self.head = nn.Sequential(
                    nn.Linear(64 * w * 16, hidden), nn.ReLU(inplace=True), *([nn.Dropout(0.5)] if bn else []),
                    nn.Linear(hidden, n_classes),
                )
            elif arch == "resnet":
                self.body = nn.Sequential(
                    *conv_bn(1, 32 * w), nn.MaxPool2d(2),
                    Basic(32 * w, 32 * w, 1), Basic(32 * w, 64 * w, 2), Basic(64 * w, 128 * w, 2),
                    Basic(128 * w, 256 * w, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                )
                self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(256 * w, n_classes))
            elif arch in ("shortchunk", "shortchunk-res"):
                ch = [16 * w, 32 * w, 32 * w, 64 * w, 64 * w, 128 * w]
                layers: list[nn.Module] = [nn.AvgPool2d((2, 2))]  # 128x130 -> 64x65: images hold ~1 px per 4 frames
                cin = 1
                for c in ch:
                    layers += [Basic(cin, c, 1)] if arch == "shortchunk-res" else conv_bn(cin, c)
                    layers.append(nn.MaxPool2d(2, ceil_mode=True))
                    cin = c
                self.body = nn.Sequential(*layers)
                self.pool_time = True
                self.head = nn.Sequential(
                    nn.Linear(cin, 128 * w), nn.BatchNorm1d(128 * w), nn.ReLU(inplace=True), nn.Dropout(0.5),
                    nn.Linear(128 * w, n_classes),
                )
            else:
                raise ModelError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")

        def features(self, x):
            x = x[:, None]
            if self.resize is not None:
                x = F.interpolate(x, size=self.resize, mode="bilinear", align_corners=False)
            x = self.body(x)
            if getattr(self, "pool_time", False):
                x = x.amax(dim=(2, 3))  # global max over what is left of frequency and time
            return x

        def forward(self, x):
            return self.head(self.features(x))

    torch.manual_seed(0)  # architecture init is reseeded by fit(); this keeps build_net deterministic
    return Net()


def _device(device: str):
    import torch

    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} requested but no CUDA GPU is available (use --device auto or cpu)")
    return torch.device(device)


def _update_bn(net, X: np.ndarray, *, width: int, device, batch: int = 128) -> None:
    """Recompute BatchNorm running statistics of ``net`` on ``X`` (centre crops), as SWA does."""
    import torch
    from torch import nn

    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    s = max(0, (X.shape[2] - width) // 2)
    net.train()
    with torch.no_grad():
        for i in range(0, X.shape[0], batch):
            net(torch.from_numpy(np.ascontiguousarray(X[i : i + batch, :, s : s + width])).to(device))
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    net.eval()


def _state_to_numpy(module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def _numpy_to_state(module, tensors: dict[str, np.ndarray], *, prefix: str = "", path: Any = "") -> None:
    import torch

    state = {k[len(prefix):]: torch.from_numpy(np.array(v)) for k, v in tensors.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{path}: weights do not match the architecture in its metadata ({exc})") from None


# -------------------------------------------------------------------------------------------- model
def check_deep_meta(meta: dict, *, source: Any = "model") -> None:
    """A deep model file's own metadata checks (torch and ONNX loaders alike)."""
    if meta.get("kind") != DeepModel.kind:
        raise ModelError(f"{source}: holds a {meta.get('kind')!r} model, not a deep (log-mel) model")
    for key in ("arch", "classes", "input"):
        if key not in meta:
            raise ModelError(f"{source}: deep model metadata lacks {key!r}")
    if meta["arch"] not in ARCHS:
        raise ModelError(f"{source}: unknown deep architecture {meta['arch']!r} (known: {', '.join(ARCHS)})")
    # the net and its input are allocated from these before the weights are checked: bound them
    width, frames = meta.get("width", 1), meta.get("input_frames")
    if not (isinstance(width, int) and not isinstance(width, bool) and 1 <= width <= MAX_WIDTH):
        raise ModelError(f"{source}: deep model metadata 'width' must be an integer in [1, {MAX_WIDTH}], got {width!r}")
    if frames is not None and not (isinstance(frames, int) and not isinstance(frames, bool)
                                   and 1 <= frames <= MAX_INPUT_FRAMES):
        raise ModelError(f"{source}: deep model metadata 'input_frames' must be an integer in [1, "
                         f"{MAX_INPUT_FRAMES}], got {frames!r}")


class DeepModel(Estimator):
    """A torch CNN/ResNet over log-mel slices with sklearn's fit / predict_proba.

    Parameters are stored as given (no work here). ``input`` is the input description written to the
    model file (see :func:`genrekit.spectrogram.input_description`); ``input_frames`` is the slice width
    the network sees. ``valid`` data (``X_valid``, ``y_valid``, ``groups_valid``) enables early stopping on
    track-level validation accuracy.
    """

    kind = "deep"

    def __init__(
        self, arch: str = "shortchunk", *, epochs: int = 30, batch_size: int = 64, lr: float = 2e-3,
        weight_decay: float = 1e-2, width: int = 1, augment: Any = "default", input: dict | None = None,
        input_frames: int | None = None, patience: int = 10, seed: int = 0, device: str = "auto",
        threads: int | None = 1, checkpoint_dir: str | os.PathLike | None = None, resume: bool = False,
        label_smoothing: float = 0.0, verbose: bool = True, max_minutes: float | None = None,
        init_from: str | os.PathLike | None = None, freeze_body: bool = False, ema: float | None = None,
    ):
        self.arch = arch
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.width = width
        self.augment = augment
        self.input = input
        self.input_frames = input_frames
        self.patience = patience
        self.seed = seed
        self.device = device
        self.threads = threads
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.label_smoothing = label_smoothing
        self.verbose = verbose
        self.max_minutes = max_minutes
        self.init_from = init_from
        self.freeze_body = freeze_body
        self.ema = ema

    # -------------------------------------------------------------------------------- helpers
    not_params = ("input", "checkpoint_dir", "resume", "verbose")  # the file stores the input on its own

    def param_value(self, name: str, value: Any) -> Any:
        from genrekit.augment import AugmentConfig

        if name == "augment":
            return AugmentConfig.parse(value).to_dict()
        if name == "init_from":
            return str(value) if value else None
        if name == "freeze_body":
            return bool(value)
        return super().param_value(name, value)

    def _input_desc(self, n_mels: int) -> dict:
        from genrekit.spectrogram import input_description

        return dict(self.input) if self.input else input_description(n_mels=n_mels)

    def slice_width(self) -> int:
        """Frames of the slice the network sees (wider slices are cropped to it, narrower ones padded)."""
        if self.input_frames:
            return int(self.input_frames)
        return int(self.input_["slice_frames"]) if hasattr(self, "input_") else 130

    @staticmethod
    def _check_X(X, where: str) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 3 or X.shape[0] == 0:
            raise ModelError(f"{where}: X must be non-empty log-mel slices [n, n_mels, frames], got shape {X.shape}")
        if not np.all(np.isfinite(X)):
            raise ModelError(f"{where}: X contains NaN or infinity")
        return X

    def _set_threads(self) -> None:
        import torch

        if self.threads:
            torch.set_num_threads(int(self.threads))

    def _log(self, msg: str) -> None:
        if self.verbose:
            print(msg, file=sys.stderr, flush=True)

    # ------------------------------------------------------------------------------------ fit
    def fit(self, X, y, *, groups=None, X_valid=None, y_valid=None, groups_valid=None) -> DeepModel:
        """Train on slices; early-stop on validation (track-level when ``groups_valid`` is given)."""
        import torch
        from torch.nn import functional as F

        from genrekit.augment import AugmentConfig, apply

        X = self._check_X(X, "fit")
        y = np.asarray(y).astype(str)
        if y.shape[0] != X.shape[0]:
            raise ModelError(f"fit: {X.shape[0]} slices but {y.shape[0]} labels")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ModelError("fit: need at least two classes to train a classifier")
        self._set_threads()
        aug = AugmentConfig.parse(self.augment)
        self.input_ = self._input_desc(X.shape[1])
        width = self.slice_width()
        if X.shape[2] < width:
            X = np.pad(X, ((0, 0), (0, 0), (0, width - X.shape[2])))
        dev = _device(self.device)
        torch.manual_seed(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        net = build_net(self.arch, n_classes=len(self.classes_), n_mels=X.shape[1], width=self.width)
        torch.manual_seed(self.seed)
        for m in net.modules():  # seed-dependent init
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        net.to(dev)
        self._init_from(net)
        ema_net = None
        if self.ema:  # exponential moving average of the weights: smoother than any single epoch
            import copy

            ema_net = copy.deepcopy(net)
            for p in ema_net.parameters():
                p.requires_grad_(False)
        opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=self.lr, weight_decay=self.weight_decay)
        yi = np.searchsorted(self.classes_, y)
        has_valid = X_valid is not None and y_valid is not None and len(y_valid)
        if has_valid:
            X_valid = self._check_X(X_valid, "fit (valid)")
            y_valid = np.asarray(y_valid).astype(str)
        history: list[dict[str, Any]] = []
        best_score, best_epoch, bad, start_epoch, prior_seconds = -1.0, 0, 0, 0, 0.0
        best_state = _state_to_numpy(net)
        ckpt = Path(self.checkpoint_dir) / CHECKPOINT_NAME if self.checkpoint_dir else None
        if ckpt is not None and self.resume and ckpt.is_file():
            tensors, meta = load_model_file(ckpt)
            c = meta.get("checkpoint", {})
            if c.get("arch") != self.arch or meta.get("classes") != list(self.classes_):
                raise ModelError(f"{ckpt}: checkpoint is for another model or label set; delete it or drop --resume")
            _numpy_to_state(net, tensors, prefix="model.", path=ckpt)
            if ema_net is not None:
                _numpy_to_state(ema_net, tensors, prefix="ema.", path=ckpt)
            best_state = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
            self._load_opt(opt, tensors, c.get("opt_keys", []))
            history, best_score, best_epoch, bad = c["history"], c["best_score"], c["best_epoch"], c["bad_epochs"]
            start_epoch = int(c["epoch"])
            prior_seconds = float(c.get("elapsed_seconds", 0.0))
            gen.manual_seed(self.seed + 1000 * start_epoch)
            rng = np.random.default_rng(self.seed + 1000 * start_epoch)
            self._log(f"resuming from {ckpt} after epoch {start_epoch}")
        t0 = time.time()
        n = X.shape[0]
        steps = max(1, math.ceil(n / self.batch_size))
        stopped = "epochs"
        for epoch in range(start_epoch, self.epochs):
            if bad >= self.patience and has_valid:
                stopped = "early"
                break
            if self.max_minutes and (time.time() - t0) / 60 > self.max_minutes:
                stopped = "time"
                break
            lr = self._lr_at(epoch)
            for g in opt.param_groups:
                g["lr"] = lr
            net.train()
            if self.freeze_body:
                net.body.eval()  # frozen body: keep its BatchNorm statistics too
            order = rng.permutation(n)
            tot, correct, seen, te = 0.0, 0, 0, time.time()
            for s in range(steps):
                idx = order[s * self.batch_size : (s + 1) * self.batch_size]
                if len(idx) < 2:
                    continue
                xb = torch.from_numpy(X[idx])
                tb = F.one_hot(torch.from_numpy(yi[idx]), len(self.classes_)).float()
                xb, tb = apply(xb, tb, aug, width=width, sr=int(self.input_.get("sr", 22050)), generator=gen)
                xb, tb = xb.to(dev), tb.to(dev)
                if self.label_smoothing:
                    tb = tb * (1 - self.label_smoothing) + self.label_smoothing / tb.shape[1]
                logits = net(xb)
                loss = -(tb * F.log_softmax(logits, 1)).sum(1).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if ema_net is not None:
                    with torch.no_grad():
                        for pe, p in zip(ema_net.parameters(), net.parameters(), strict=True):
                            pe.mul_(self.ema).add_(p.detach(), alpha=1.0 - self.ema)

                tot += float(loss.detach()) * len(idx)
                correct += int((logits.argmax(1) == tb.argmax(1)).sum())
                seen += len(idx)
            rec: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "train_loss": tot / max(seen, 1),
                                   "train_acc": correct / max(seen, 1), "seconds": round(time.time() - te, 1)}
            scored = net
            if ema_net is not None:  # averaged weights need their own BatchNorm statistics
                _update_bn(ema_net, X[rng.permutation(n)[:1024]], width=width, device=dev)
                scored = ema_net
            if has_valid:
                self.net_ = scored
                proba = self.predict_proba(X_valid)
                rec["valid_loss"] = float(-np.mean(np.log(np.clip(
                    proba[np.arange(len(y_valid)), np.searchsorted(self.classes_, y_valid)], 1e-12, 1))))
                rec["valid_acc"] = float(np.mean(self.classes_[proba.argmax(1)] == y_valid))
                score = rec["valid_acc"]
                if groups_valid is not None:
                    from genrekit.metrics import aggregate_tracks

                    tids, tp = aggregate_tracks(np.asarray(groups_valid).astype(str), proba)
                    lab = dict(zip(np.asarray(groups_valid).astype(str), y_valid, strict=True))
                    rec["valid_track_acc"] = float(np.mean(self.classes_[tp.argmax(1)] == np.array([lab[t] for t in tids])))
                    score = rec["valid_track_acc"] + 1e-3 * rec["valid_acc"]  # slice acc breaks ties
                if score > best_score:
                    best_score, best_epoch, bad = score, epoch + 1, 0
                    best_state = _state_to_numpy(scored)
                else:
                    bad += 1
            else:
                best_state, best_epoch = _state_to_numpy(scored), epoch + 1
            history.append(rec)
            self._log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()))
            if ckpt is not None:
                self._save_checkpoint(ckpt, net, opt, best_state, epoch + 1, history, best_score, best_epoch, bad,
                                      ema_net=ema_net, elapsed=prior_seconds + time.time() - t0)
        _numpy_to_state(net, best_state)
        net.eval()
        self.net_ = net
        self.history_ = history
        self.best_epoch_ = best_epoch
        self.stopped_ = stopped
        self.train_seconds_ = round(prior_seconds + time.time() - t0, 1)  # across resumes
        return self

    def _init_from(self, net) -> None:
        """Transfer learning: copy a trained model's body (and matching head layers) into ``net``.

        The last layer is new (the label set may differ); with ``freeze_body`` only the head trains.
        """
        import torch

        if not self.init_from:
            return
        tensors, meta = load_model_file(self.init_from)
        if meta.get("kind") != self.kind or meta.get("arch") != self.arch or int(meta.get("width", 1)) != int(self.width):
            raise ModelError(
                f"{self.init_from}: cannot fine-tune from a {meta.get('kind')}/{meta.get('arch')} model into "
                f"architecture {self.arch!r} (width {self.width})"
            )
        state = net.state_dict()
        last = [k for k in state if k.startswith("head.")][-2:]  # weight and bias of the final Linear
        copied = 0
        for k, v in state.items():
            if k in tensors and k not in last and tuple(tensors[k].shape) == tuple(v.shape):
                state[k] = torch.from_numpy(np.array(tensors[k]))
                copied += 1
        net.load_state_dict(state)
        self.transferred_ = copied
        if self.freeze_body:
            for p in net.body.parameters():
                p.requires_grad_(False)

    def _lr_at(self, epoch: int) -> float:
        """One warm-up epoch, then cosine decay to 2% of ``lr`` (stateless, so resuming is exact)."""
        if epoch == 0:
            return self.lr * 0.3
        t = (epoch - 1) / max(1, self.epochs - 1)
        return self.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))

    def _save_checkpoint(self, path, net, opt, best_state, epoch, history, best_score, best_epoch, bad, *,
                         ema_net=None, elapsed: float = 0.0) -> None:
        tensors = {f"model.{k}": v for k, v in _state_to_numpy(net).items()}
        if ema_net is not None:
            tensors.update({f"ema.{k}": v for k, v in _state_to_numpy(ema_net).items()})
        tensors.update({f"best.{k}": v for k, v in best_state.items()})
        opt_keys = []
        for i, p in enumerate(p for g in opt.param_groups for p in g["params"]):
            for k, v in opt.state.get(p, {}).items():
                tensors[f"opt.{i}.{k}"] = np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
                opt_keys.append(f"{i}.{k}")
        meta = {
            "kind": "deep-checkpoint", "classes": [str(c) for c in self.classes_], "input": self.input_,
            "checkpoint": {"arch": self.arch, "epoch": epoch, "history": history, "best_score": best_score,
                           "best_epoch": best_epoch, "bad_epochs": bad, "opt_keys": opt_keys,
                           "elapsed_seconds": round(elapsed, 1),
                           "params": self.get_params()},
        }
        save_model_file(path, tensors, meta)

    @staticmethod
    def _load_opt(opt, tensors, opt_keys) -> None:
        import torch

        params = [p for g in opt.param_groups for p in g["params"]]
        for key in opt_keys:
            i, name = key.split(".", 1)
            st = opt.state[params[int(i)]]
            st[name] = torch.from_numpy(np.array(tensors[f"opt.{key}"])).to(params[int(i)].device)

    # -------------------------------------------------------------------------------- predict
    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities per slice ``[n, n_classes]`` (centre crop to the model's input width)."""
        import torch

        self._check_fitted()
        X = self._check_X(X, "predict_proba")
        width = self.slice_width()
        if X.shape[2] < width:
            X = np.pad(X, ((0, 0), (0, 0), (0, width - X.shape[2])))
        s = (X.shape[2] - width) // 2
        X = X[:, :, s : s + width]
        self._set_threads()
        net = self.net_
        dev = next(net.parameters()).device
        was_training = net.training
        net.eval()
        out = []
        with torch.no_grad():
            for i in range(0, X.shape[0], 256):
                out.append(torch.softmax(net(torch.from_numpy(np.ascontiguousarray(X[i : i + 256])).to(dev)), 1).cpu().numpy())
        if was_training:
            net.train()
        return np.concatenate(out).astype(np.float64)

    def predict_track(self, logmel_matrix, *, method: str = "mean_log", overlap: float | None = None) -> np.ndarray:
        """Probabilities for one whole track ``[n_classes]`` from its ``[n_mels, frames]`` log-mel matrix.

        The matrix is cut into the model's slices (50% overlap unless told) and the slice predictions are
        combined by mean log-probability (``method="mean_log"``) or majority vote (``"vote"``).
        """
        from genrekit.metrics import aggregate_tracks
        from genrekit.spectrogram import slices

        self._check_fitted()
        inp = self.input_
        ov = 0.5 if overlap is None else overlap
        sl = slices(np.asarray(logmel_matrix, dtype=np.float32), seconds=float(inp.get("slice_seconds", 3.0)),
                    overlap=ov, sr=int(inp.get("sr", 22050)), hop_length=int(inp.get("hop_length", 512)))
        proba = self.predict_proba(sl)
        _, tp = aggregate_tracks(np.zeros(len(proba), dtype=str), proba, method=method)
        return tp[0]

    def predict_track_label(self, logmel_matrix, *, method: str = "mean_log") -> str:
        return str(self.classes_[int(np.argmax(self.predict_track(logmel_matrix, method=method)))])

    # --------------------------------------------------------------------------------- files
    def save(self, path: str | os.PathLike, *, extra_meta: dict | None = None) -> Path:
        """One safetensors file: weights + {kind, arch, classes, input, training record, extra_meta}."""
        self._check_fitted()
        meta = {
            "kind": self.kind, "arch": self.arch, "width": int(self.width),
            "classes": [str(c) for c in self.classes_], "input": self.input_,
            "input_frames": self.slice_width(), "params": self.get_params(),
            "training": {"history": getattr(self, "history_", []), "best_epoch": getattr(self, "best_epoch_", None),
                         "stopped": getattr(self, "stopped_", None),
                         "train_seconds": getattr(self, "train_seconds_", None)},
        }
        meta.update(extra_meta or {})
        return save_model_file(path, _state_to_numpy(self.net_), meta)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str = "cpu") -> DeepModel:
        tensors, meta = load_model_file(path)
        check_deep_meta(meta, source=path)
        params = dict(meta.get("params", {}))
        model = cls(meta["arch"], width=int(meta.get("width", 1)), input=meta["input"],
                    input_frames=int(meta.get("input_frames") or meta["input"].get("slice_frames", 130)),
                    device=device, threads=params.get("threads", 2), verbose=False)
        model.classes_ = np.array(meta["classes"])
        model.input_ = meta["input"]
        net = build_net(meta["arch"], n_classes=len(meta["classes"]), n_mels=int(meta["input"].get("n_mels", 128)),
                        width=int(meta.get("width", 1)))
        _numpy_to_state(net, tensors, path=path)
        net.to(_device(device))
        net.eval()
        model.net_ = net
        model.meta_ = meta
        model.history_ = meta.get("training", {}).get("history", [])
        return model
