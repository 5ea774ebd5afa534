"""mn04 in PyTorch: the reference the ONNX graph is tested against, and the starting point for fine-tuning.

Module names follow the original (``features.<i>.block.<j>``, ``conc_se_layers.0.fc1``, ``classifier.2``),
so the shipped state dict loads strictly. Never used for inference by genrekit (that is
:mod:`genrekit.networks.mn04.model`, on onnxruntime); torch is imported only when a model is built.
"""

from __future__ import annotations

from typing import Any

from genrekit.networks.mn04.spec import BLOCKS, BN_EPS, LAST_INDEX, N_CLASSES, N_FEATURES, N_HIDDEN


def build_model(*, pretrained: bool = True, dropout: float = 0.2) -> Any:
    """A ``torch.nn.Module`` mapping ``(batch, 1, 128, frames)`` mel to ``(features (batch, 384),
    logits (batch, 527))``, in eval mode, with the shipped weights unless ``pretrained=False``."""
    import torch
    from torch import nn

    def conv_bn(c_in: int, c_out: int, k: int, *, stride: int = 1, groups: int = 1, act: Any = None) -> nn.Sequential:
        layers = [nn.Conv2d(c_in, c_out, k, stride=stride, padding=(k - 1) // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=0.01)]
        if act is not None:
            layers.append(act())
        return nn.Sequential(*layers)

    class SqueezeExcitation(nn.Module):
        def __init__(self, c: int, squeeze: int) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(c, squeeze), nn.Linear(squeeze, c)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = x.mean(dim=(2, 3))
            s = torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))
            return x * s[:, :, None, None]

    class ConcurrentSE(nn.Module):
        """The original's container (one channel SE; the max over one output is that output)."""

        def __init__(self, c: int, squeeze: int) -> None:
            super().__init__()
            self.conc_se_layers = nn.ModuleList([SqueezeExcitation(c, squeeze)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conc_se_layers[0](x)

    class InvertedResidual(nn.Module):
        def __init__(self, b: Any) -> None:
            super().__init__()
            act = nn.Hardswish if b.hardswish else nn.ReLU
            layers: list[nn.Module] = []
            if b.expands:
                layers.append(conv_bn(b.in_ch, b.expanded, 1, act=act))
            layers.append(conv_bn(b.expanded, b.expanded, b.kernel, stride=b.stride, groups=b.expanded, act=act))
            if b.se:
                layers.append(ConcurrentSE(b.expanded, b.squeeze))
            layers.append(conv_bn(b.expanded, b.out_ch, 1))
            self.block = nn.Sequential(*layers)
            self.residual = b.residual

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.block(x)
            return y + x if self.residual else y

    class MN04(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                conv_bn(1, BLOCKS[0].in_ch, 3, stride=2, act=nn.Hardswish),
                *(InvertedResidual(b) for b in BLOCKS),
                conv_bn(BLOCKS[-1].out_ch, N_FEATURES, 1, act=nn.Hardswish),
            )
            assert len(self.features) == LAST_INDEX + 1
            self.classifier = nn.Sequential(
                nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(N_FEATURES, N_HIDDEN), nn.Hardswish(),
                nn.Dropout(dropout), nn.Linear(N_HIDDEN, N_CLASSES))

        def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = self.features(mel)
            return x.mean(dim=(2, 3)), self.classifier(x)

    model = MN04()
    if pretrained:
        from genrekit.networks.mn04.graph import read_weights

        model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in read_weights().items()}, strict=True)
    return model.eval()
