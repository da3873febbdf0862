"""CIFAR ResNet-20/32/44/56 (He et al. 2016, §4.2): depth 6n+2, three stages of 16/32/64
channels, 3×3 convs with BatchNorm, global average pooling and a linear classifier.

The shortcut is parameter-free ("option A"): where a block halves the resolution and doubles the
width, the input is subsampled by 2 and zero channels are added evenly before and after it. This
matches the layout of the widely used pretrained checkpoints (a ``state_dict`` under the key
``"state_dict"``, keys prefixed ``module.``), which :func:`load_cifar_resnet` reads with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import FxpruneError
from .weights import load_weights, read_state_dict


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pad = (cout - cin) // 2 if (stride != 1 or cin != cout) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.pad is None:
            short = x
        else:
            short = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(out + short)


class CifarResNet(nn.Module):
    def __init__(self, depth: int = 56, num_classes: int = 10):
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise FxpruneError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110 ...); got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(_Block(cin, cout, stride if i == 0 else 1))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.linear(x)


def cifar_resnet(depth: int = 56, num_classes: int = 10) -> CifarResNet:
    return CifarResNet(depth, num_classes)


def load_cifar_resnet(path: str | Path, depth: int | None = None) -> CifarResNet:
    """Build the network and load a checkpoint (``{"state_dict": ...}`` or a bare state dict,
    ``module.`` prefixes stripped). ``depth`` defaults to the one the checkpoint implies."""
    state = read_state_dict(path)
    if depth is None:
        convs = sum(1 for k in state if k.endswith("conv1.weight") and k.startswith("layer"))
        depth = 6 * (convs // 3) + 2
    model = CifarResNet(depth)
    try:
        load_weights(model, path, state)
    except FxpruneError as exc:
        raise FxpruneError(f"{exc} (a CIFAR ResNet-{depth})") from None
    return model.eval()
