"""Neural networks on the feature vector: the tutorials' MLPs and a 1-D CNN, in torch.

The four MLP architectures GTZAN tutorials compare are offered by name (``arch``):

=================  ==========================  =========
arch               hidden layers               optimiser
=================  ==========================  =========
``256``            256-128-64                  Adam
``512``            512-256-128-64              Adam
``512-sgd``        512-256-128-64              SGD (momentum 0.9)
``1024-rmsprop``   1024-512-256-128-64         RMSprop
=================  ==========================  =========

Every model standardises its inputs itself (statistics of the training rows, stored in the file), uses
dropout, and stops early on a validation set: the one given to ``fit`` (fault-filtered's own), or else a
stratified share of the training rows. The best epoch's weights are kept; the per-epoch history
(loss, accuracy, val_loss, val_acc) is kept for training-curve plots.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from genrekit.errors import ModelError
from genrekit.models.base import Estimator
from genrekit.models.inputs import features_input
from genrekit.models.rows import check_X, log_columns, log_transform

ARCHS: dict[str, tuple[tuple[int, ...], str]] = {
    "256": ((256, 128, 64), "adam"),
    "512": ((512, 256, 128, 64), "adam"),
    "512-sgd": ((512, 256, 128, 64), "sgd"),
    "1024-rmsprop": ((1024, 512, 256, 128, 64), "rmsprop"),
}

_LR = {"adam": 1e-3, "sgd": 1e-2, "rmsprop": 5e-4}
MAX_LAYERS, MAX_WIDTH = 8, 8192  # what a model file may ask for (the widest named arch: 5 layers, 1,024 wide)


def _torch():
    import torch

    return torch


def _build_mlp(n_in: int, n_out: int, hidden: Sequence[int], dropout: float):
    nn = _torch().nn
    layers: list[Any] = []
    prev = n_in
    for h in hidden:
        layers += [nn.Linear(prev, h), nn.ReLU(), nn.Dropout(dropout)]
        prev = h
    layers.append(nn.Linear(prev, n_out))
    return nn.Sequential(*layers)


def _build_cnn1d(n_in: int, n_out: int, channels: Sequence[int], dropout: float):
    """Convolutions along the feature axis: neighbouring columns (mean/var pairs, adjacent MFCCs) relate."""
    nn = _torch().nn
    layers: list[Any] = []
    prev = 1
    length = n_in
    for i, c in enumerate(channels):
        layers += [nn.Conv1d(prev, c, kernel_size=3, padding=1), nn.BatchNorm1d(c), nn.ReLU()]
        if i < len(channels) - 1 and length >= 4:
            layers.append(nn.MaxPool1d(2))
            length //= 2
        prev = c
    layers += [
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(prev * length, 128),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(128, n_out),
    ]
    return nn.Sequential(nn.Unflatten(1, (1, n_in)), *layers)


class _TorchTabular(Estimator):
    """Shared fit loop, early stopping, standardisation and safe files for torch feature models."""

    kind = ""

    def __init__(
        self,
        *,
        dropout: float = 0.3,
        lr: float | None = None,
        weight_decay: float = 1e-4,
        batch_size: int = 64,
        max_epochs: int = 300,
        patience: int = 30,
        valid_fraction: float = 0.15,
        log_var: bool = True,
        random_state: int = 0,
        n_threads: int = 1,
    ):
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.valid_fraction = valid_fraction
        self.log_var = log_var
        self.random_state = random_state
        self.n_threads = n_threads

    # subclasses: _config() -> dict describing the network; _build(config, n_in, n_out); _optimizer name
    def _config(self) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def _build(config: dict[str, Any], n_in: int, n_out: int):
        raise NotImplementedError

    def _make_optimizer(self, params, name: str):
        torch = _torch()
        lr = self.lr or _LR[name]
        if name == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=self.weight_decay)
        if name == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=self.weight_decay)
        if name == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr, weight_decay=self.weight_decay)
        raise ModelError(f"unknown optimiser {name!r}: use adam, sgd or rmsprop")

    def fit(
        self,
        X,
        y,
        *,
        X_valid=None,
        y_valid=None,
        feature_names: Sequence[str] | None = None,
        segment_seconds: float | None = None,
        progress: bool = False,
    ):
        """Train with early stopping on (X_valid, y_valid), or on a stratified share of (X, y)."""
        torch = _torch()
        X = check_X(X)
        y = np.asarray(y).astype(str)
        if y.shape[0] != X.shape[0]:
            raise ModelError(f"X has {X.shape[0]} rows but y has {y.shape[0]} labels")
        classes = np.unique(y)
        if classes.size < 2:
            raise ModelError(f"need at least 2 classes to fit, got {classes.tolist()}")
        config = self._config()
        self.classes_ = classes
        self.n_features_in_ = X.shape[1]
        self.input_ = features_input(feature_names, X.shape[1], segment_seconds)
        self.log_columns_ = log_columns(feature_names) if self.log_var else []
        Xt = log_transform(X, self.log_columns_)
        yi = np.searchsorted(classes, y)
        if X_valid is not None and len(X_valid):
            Xv = log_transform(check_X(X_valid, X.shape[1], what="X_valid"), self.log_columns_)
            yv_lab = np.asarray(y_valid).astype(str)
            known = np.isin(yv_lab, classes)
            Xv, yv = Xv[known], np.searchsorted(classes, yv_lab[known])
        elif self.valid_fraction > 0:
            from sklearn.model_selection import train_test_split

            _, counts = np.unique(yi, return_counts=True)
            strat = yi if counts.min() >= 2 else None
            tr, va = train_test_split(
                np.arange(len(yi)), test_size=self.valid_fraction, stratify=strat, random_state=self.random_state
            )
            Xt, Xv, yv, yi = Xt[tr], Xt[va], yi[va], yi[tr]
        else:
            Xv, yv = Xt[:0], yi[:0]
        self.mean_ = Xt.mean(axis=0)
        self.scale_ = Xt.std(axis=0)
        self.scale_[self.scale_ < 1e-12] = 1.0

        previous_threads = torch.get_num_threads()
        torch.set_num_threads(max(1, min(self.n_threads, 2)))
        try:
            torch.manual_seed(self.random_state)
            gen = torch.Generator().manual_seed(self.random_state)
            net = self._build(config, X.shape[1], len(classes))
            opt = self._make_optimizer(net.parameters(), config["optimizer"])
            loss_fn = torch.nn.CrossEntropyLoss()
            xt = torch.as_tensor((Xt - self.mean_) / self.scale_, dtype=torch.float32)
            yt = torch.as_tensor(yi, dtype=torch.long)
            xv = torch.as_tensor((Xv - self.mean_) / self.scale_, dtype=torch.float32)
            yvt = torch.as_tensor(yv, dtype=torch.long)
            history: list[dict[str, Any]] = []
            best = (np.inf, 0, None)
            epochs = range(1, self.max_epochs + 1)
            if progress:
                from tqdm.auto import tqdm

                epochs = tqdm(epochs, desc=f"{self.kind} epochs", leave=False)
            for epoch in epochs:
                net.train()
                perm = torch.randperm(len(yt), generator=gen)
                total, correct = 0.0, 0
                for start in range(0, len(perm), self.batch_size):
                    idx = perm[start : start + self.batch_size]
                    if len(idx) < 2:  # BatchNorm cannot train on a batch of one
                        continue
                    opt.zero_grad()
                    out = net(xt[idx])
                    loss = loss_fn(out, yt[idx])
                    loss.backward()
                    opt.step()
                    total += loss.item() * len(idx)
                    correct += int((out.argmax(1) == yt[idx]).sum())
                row = {"epoch": epoch, "loss": total / len(yt), "acc": correct / len(yt)}
                if len(yvt):
                    net.eval()
                    with torch.no_grad():
                        out = net(xv)
                        row["val_loss"] = float(loss_fn(out, yvt))
                        row["val_acc"] = float((out.argmax(1) == yvt).float().mean())
                    score = row["val_loss"]
                else:
                    score = row["loss"]
                history.append(row)
                if score < best[0] - 1e-4:
                    best = (score, epoch, {k: v.detach().clone() for k, v in net.state_dict().items()})
                elif epoch - best[1] >= self.patience:
                    break
            if best[2] is None:
                raise ModelError(f"{self.kind}: training diverged (loss {history[-1]['loss']}); lower the learning rate")
            net.load_state_dict(best[2])
            net.eval()
        finally:
            torch.set_num_threads(previous_threads)
        self.net_ = net
        self.config_ = config
        self.history_ = history
        self.best_epoch_ = best[1]
        return self

    def predict_proba(self, X) -> np.ndarray:
        torch = _torch()
        self._check_fitted()
        X = log_transform(check_X(X, self.n_features_in_), self.log_columns_)
        x = torch.as_tensor((X - self.mean_) / self.scale_, dtype=torch.float32)
        with torch.no_grad():
            return torch.softmax(self.net_(x), dim=1).double().numpy()

    # ------------------------------------------------------------------------------- persistence
    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_fitted()
        tensors = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}
        tensors["mean"] = np.asarray(self.mean_, dtype=np.float64)
        tensors["scale"] = np.asarray(self.scale_, dtype=np.float64)
        meta = {
            "kind": self.kind,
            "classes": [str(c) for c in self.classes_],
            "input": self.input_,
            "params": self.get_params(),
            "config": self.config_,
            "log_columns": list(self.log_columns_),
            "best_epoch": self.best_epoch_,
            "history": self.history_,
        }
        return tensors, meta

    @classmethod
    def _from_params(cls, params: dict[str, Any], config: dict[str, Any]):
        """The unfitted estimator a saved model's parameters describe."""
        names = cls.param_names()  # a file's params are data: unknown names are dropped, not passed
        return cls(**{k: v for k, v in params.items() if k in names})

    @staticmethod
    def check_config(config: Any, *, source: str = "model") -> None:
        """Bound the layer sizes a file asks for: the net is allocated before its weights are checked."""
        sizes = (config or {}).get("hidden", (config or {}).get("channels")) if isinstance(config, dict) else None
        if not isinstance(sizes, list) or len(sizes) > MAX_LAYERS or not all(
                isinstance(h, int) and not isinstance(h, bool) and 1 <= h <= MAX_WIDTH for h in sizes):
            raise ModelError(f"{source}: model metadata 'config' must list at most {MAX_LAYERS} layer sizes in "
                             f"[1, {MAX_WIDTH}], got {str(sizes)[:80]}")

    @classmethod
    def from_state(cls, tensors: dict[str, np.ndarray], meta: dict[str, Any], *, source: str = "model"):
        torch = _torch()
        try:
            config = meta["config"]
            cls.check_config(config, source=source)
            classes = np.asarray(meta["classes"])
            columns = meta["input"]["columns"]
            model = cls._from_params(dict(meta.get("params") or {}), config)
            net = cls._build(config, len(columns), len(classes))
            state = {k[4:]: torch.from_numpy(np.array(v)) for k, v in tensors.items() if k.startswith("net.")}
            net.load_state_dict(state, strict=True)
            mean, scale = tensors["mean"], tensors["scale"]
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ModelError(f"{source}: {cls.kind} weights do not match their metadata ({exc})") from None
        if mean.shape != (len(columns),) or scale.shape != (len(columns),):
            raise ModelError(f"{source}: standardisation statistics do not match the {len(columns)} input columns")
        net.eval()
        model.net_ = net
        model.classes_ = classes
        model.input_ = meta["input"]
        model.n_features_in_ = len(columns)
        model.log_columns_ = [int(i) for i in meta.get("log_columns", [])]
        model.mean_, model.scale_ = mean, scale
        model.config_ = config
        model.history_ = meta.get("history", [])
        model.best_epoch_ = meta.get("best_epoch")
        return model



class MLPModel(_TorchTabular):
    """Multi-layer perceptron; ``arch`` picks one of :data:`ARCHS` (``hidden``/``optimizer`` override)."""

    kind = "mlp"

    def __init__(self, arch: str = "256", *, hidden: Sequence[int] | None = None, optimizer: str | None = None, **kw):
        super().__init__(**kw)
        self.arch = arch
        self.hidden = hidden
        self.optimizer = optimizer

    def _config(self) -> dict[str, Any]:
        if self.arch not in ARCHS and self.hidden is None:
            raise ModelError(f"unknown MLP architecture {self.arch!r}; choose one of {', '.join(ARCHS)}")
        hidden, opt = ARCHS.get(self.arch, ((), "adam"))
        return {
            "hidden": [int(h) for h in (self.hidden or hidden)],
            "optimizer": self.optimizer or opt,
            "dropout": float(self.dropout),
        }

    @staticmethod
    def _build(config: dict[str, Any], n_in: int, n_out: int):
        return _build_mlp(n_in, n_out, config["hidden"], config["dropout"])


class CNN1DModel(_TorchTabular):
    """1-D CNN over the (standardised) feature vector, as in the feature-CNN tutorials."""

    kind = "cnn1d"

    def __init__(self, *, channels: Sequence[int] = (32, 64, 128), optimizer: str = "adam", **kw):
        super().__init__(**kw)
        self.channels = channels
        self.optimizer = optimizer

    def _config(self) -> dict[str, Any]:
        return {"channels": [int(c) for c in self.channels], "optimizer": self.optimizer, "dropout": float(self.dropout)}

    @staticmethod
    def _build(config: dict[str, Any], n_in: int, n_out: int):
        return _build_cnn1d(n_in, n_out, config["channels"], config["dropout"])
