"""Property-based: random small CNNs built from the supported patterns must run and satisfy the
dead-channel oracle after pruning."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fxprune
from fxprune.testing import dead_channel_check
from tests.conftest import assert_dead_equivalent

BLOCKS = ["conv", "residual", "concat", "chunk", "shuffle", "grouped", "depthwise", "se",
          "layerscale", "shared", "down", "fanout", "split", "fconv", "tied", "nnshuffle", "c2f", "stack"]


def _cbr(i, o, g=1, s=1):
    return nn.Sequential(nn.Conv2d(i, o, 3, s, 1, groups=g, bias=False), nn.BatchNorm2d(o), nn.ReLU())


class RandomNet(nn.Module):
    def __init__(self, spec, widths):
        super().__init__()
        self.spec = list(spec)
        c = 8
        self.stem = _cbr(3, c)
        self.blocks = nn.ModuleList()
        self.scales = nn.ParameterList()
        for kind, w in zip(self.spec, widths):
            m = nn.Module()
            if kind == "conv":
                m.a = _cbr(c, w)
                c = w
            elif kind in ("residual", "shared"):
                m.a = _cbr(c, c)
            elif kind == "concat":
                m.a = _cbr(c, w)
                c = c + w
            elif kind in ("chunk", "shuffle"):
                m.a = _cbr(c // 2, c // 2)
            elif kind == "grouped":
                m.a = _cbr(c, 2 * c, g=c // 4)
                c = 2 * c
            elif kind == "depthwise":
                m.a = _cbr(c, c, g=c)
            elif kind == "se":
                m.a, m.b = nn.Conv2d(c, 4, 1), nn.Conv2d(4, c, 1)
            elif kind == "layerscale":
                m.a = _cbr(c, c)
                m.gamma = nn.Parameter(torch.rand(c, 1, 1) + 0.5)
            elif kind == "down":
                m.a = _cbr(c, w, s=2)
                c = w
            elif kind == "fanout":
                m.a, m.b = _cbr(c, w), _cbr(c, w)
                c = w
            elif kind == "split":  # uneven pieces into different branches
                m.sizes = [c // 4, c - c // 4]
                m.a, m.b = _cbr(c // 4, w), _cbr(c - c // 4, w)
                c = 2 * w
            elif kind == "fconv":  # a functional conv with a parameter weight and bias
                m.w = nn.Parameter(torch.randn(w, c, 3, 3) * (2.0 / (9 * c)) ** 0.5)
                m.b = nn.Parameter(torch.randn(w) * 0.1)
                c = w
            elif kind == "tied":  # two convs sharing one weight parameter
                m.a, m.b = nn.Conv2d(c, c, 3, 1, 1), nn.Conv2d(c, c, 3, 1, 1)
                m.b.weight = m.a.weight
            elif kind == "nnshuffle":
                m.a, m.s = _cbr(c, c, g=2), nn.ChannelShuffle(2)
            elif kind == "c2f":  # YOLOv8's C2f: chunk into a list, extend it in a loop, concatenate
                m.cv1, m.m = _cbr(c, 2 * (w // 2)), nn.ModuleList([_cbr(w // 2, w // 2), _cbr(w // 2, w // 2)])
                m.cv2 = _cbr(4 * (w // 2), w)
                c = w
            elif kind == "stack":  # selective-kernel-like: stack two paths, weight and sum them
                m.a, m.b, m.g = _cbr(c, c), _cbr(c, c), nn.Conv2d(c, 2 * c, 1)
            self.blocks.append(m)
        self.fc = nn.Linear(c, 7)

    def forward(self, x):
        x = self.stem(x)
        for kind, m in zip(self.spec, self.blocks):
            if kind in ("conv", "depthwise", "grouped", "down"):
                x = m.a(x)
            elif kind == "residual":
                x = x + m.a(x)
            elif kind == "shared":
                x = m.a(m.a(x)) + x
            elif kind == "concat":
                x = torch.cat([x, m.a(x)], 1)
            elif kind == "chunk":
                p, q = x.chunk(2, dim=1)
                x = torch.cat([p, m.a(q)], 1)
            elif kind == "shuffle":
                p, q = x.chunk(2, dim=1)
                x = torch.cat([p, m.a(q)], 1)
                n, c, h, w = x.shape
                x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
            elif kind == "se":
                x = x * torch.sigmoid(m.b(F.relu(m.a(F.adaptive_avg_pool2d(x, 1)))))
            elif kind == "layerscale":
                x = x + m.gamma * m.a(x)
            elif kind == "fanout":
                x = m.a(x) + m.b(x)
            elif kind == "split":
                p, q = torch.split(x, m.sizes, dim=1)
                x = torch.cat([m.a(p), m.b(q)], 1)
            elif kind == "fconv":
                x = F.relu(F.conv2d(x, m.w, m.b, padding=1))
            elif kind == "tied":
                x = F.relu(m.b(F.relu(m.a(x)))) + x
            elif kind == "nnshuffle":
                x = m.s(m.a(x))
            elif kind == "c2f":
                y = list(m.cv1(x).chunk(2, 1))
                y.extend(b(y[-1]) for b in m.m)
                x = m.cv2(torch.cat(y, 1))
            elif kind == "stack":
                paths = torch.stack([m.a(x), m.b(x)], 1)
                n, _, c, h, w = paths.shape
                g = torch.softmax(m.g(paths.sum(1).mean((2, 3), keepdim=True)).view(n, 2, c, 1, 1), dim=1)
                x = (paths * g).sum(1)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.lists(st.sampled_from(BLOCKS), min_size=2, max_size=7),
       widths=st.lists(st.sampled_from([8, 12, 16]), min_size=7, max_size=7),
       seed=st.integers(0, 2**16))
def test_random_architectures(spec, widths, seed):
    torch.manual_seed(seed)
    net = RandomNet(spec, widths).eval()
    check = dead_channel_check(net, torch.randn(2, 3, 16, 16), seed=seed)
    assert_dead_equivalent(check)


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.lists(st.sampled_from(BLOCKS), min_size=2, max_size=7),
       widths=st.lists(st.sampled_from([8, 12, 16]), min_size=7, max_size=7),
       seed=st.integers(0, 2**16))
def test_random_architectures_prune_to_half_the_flops(spec, widths, seed):
    """With the defaults: the plan meets the budget, the model runs, or the BudgetError says why."""
    torch.manual_seed(seed)
    net = RandomNet(spec, widths).eval()
    x = torch.randn(1, 3, 16, 16)
    try:
        r = fxprune.prune(net, 0.5, example_inputs=x, progress=False)
    except fxprune.BudgetError as err:
        assert err.best is not None and err.best > 0.5
        return
    except fxprune.NothingToPrune:
        return
    assert r.report.flops_ratio <= 0.5 + 1e-9
    with torch.no_grad():
        assert r.model(x).shape == (1, 7)
    assert sum(p.numel() for p in r.model.parameters()) == pytest.approx(r.report.params_after, abs=0.5)
