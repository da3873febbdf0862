"""Property-based: random small CNNs built from the supported patterns must run and satisfy the
dead-channel oracle after pruning."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fxprune.testing import dead_channel_check
from tests.conftest import assert_dead_equivalent

BLOCKS = ["conv", "residual", "concat", "chunk", "shuffle", "grouped", "depthwise", "se",
          "layerscale", "shared", "down", "fanout"]


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
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.lists(st.sampled_from(BLOCKS), min_size=2, max_size=7),
       widths=st.lists(st.sampled_from([8, 12, 16]), min_size=7, max_size=7),
       seed=st.integers(0, 2**16))
def test_random_architectures(spec, widths, seed):
    torch.manual_seed(seed)
    net = RandomNet(spec, widths).eval()
    check = dead_channel_check(net, torch.randn(2, 3, 16, 16), seed=seed)
    assert_dead_equivalent(check)
