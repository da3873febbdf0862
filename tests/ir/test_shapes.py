"""Kernel-free shape propagation against real forward passes (fxprune/ir/shapes.py)."""
import itertools

import pytest
import torch
import torch.nn as nn

from fxprune.ir.trace import propagate_shapes, trace
from tests.conftest import real_and_fast_shapes as _both


# torch requires padding <= kernel // 2 for pooling
WINDOWS = [w for w in itertools.product((1, 2, 3), (1, 2, 3), (0, 1), (1, 2), (False, True)) if w[2] <= w[0] // 2]


@pytest.mark.parametrize("k,s,p,d,ceil", WINDOWS)
@pytest.mark.parametrize("size", (7, 8, 13))
def test_pool_and_conv_formulas(k, s, p, d, ceil, size):
    layers = [nn.MaxPool2d(k, s, p, dilation=d, ceil_mode=ceil), nn.Conv2d(3, 4, k, s, p, dilation=d)]
    if d == 1:
        layers.append(nn.AvgPool2d(k, s, p, ceil_mode=ceil))
    for layer in layers:
        real, fast, _ = _both(nn.Sequential(layer), torch.randn(1, 3, size, size + 1))
        assert fast == real, layer


@pytest.mark.parametrize("layer", [nn.Conv2d(3, 5, 3, padding="same"), nn.Conv2d(3, 5, 3, padding="valid"),
                                   nn.Conv1d(3, 5, 4, stride=3), nn.Conv3d(3, 2, 2, stride=2),
                                   nn.AdaptiveAvgPool2d((None, 2)), nn.AdaptiveMaxPool1d(3),
                                   nn.Flatten(1, 2), nn.MaxPool1d(3, 2, ceil_mode=True)])
def test_module_formulas(layer):
    x = torch.randn(2, 3, 9, 10, 11) if isinstance(layer, nn.Conv3d) else (
        torch.randn(2, 3, 9) if isinstance(layer, (nn.Conv1d, nn.AdaptiveMaxPool1d, nn.MaxPool1d))
        else torch.randn(2, 3, 9, 10))
    real, fast, _ = _both(nn.Sequential(layer), x)
    assert fast == real


class _DataDependent(nn.Module):
    def forward(self, x):
        s = x.abs().mean().item()  # .item() has no meta kernel: runs for real
        y = torch.cat([x, x * 2.0], 1) * s
        return y + torch.ones(1, 6, 1, 1)  # a real constant next to meta tensors


def test_fallback_runs_ops_without_meta_kernels():
    real, fast, prop = _both(_DataDependent(), torch.randn(2, 3, 5, 5))
    assert fast == real
    assert any("item" in name for name in prop.fallbacks), prop.fallbacks


def test_wrong_input_is_reported_by_the_real_forward():
    from fxprune.errors import AnalysisError

    gm = trace(nn.Sequential(nn.Conv2d(3, 4, 3))).gm
    with pytest.raises(AnalysisError, match="node"):
        propagate_shapes(gm, (torch.randn(1, 5, 8, 8),))
