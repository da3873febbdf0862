"""One small model per op rule, each checked with the dead-channel oracle; then negative cases:
what must be pinned is pinned, with the expected reason."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import fxprune
from fxprune.testing import dead_channel_check
from tests.conftest import assert_dead_equivalent


def cbr(i, o, k=3, s=1, g=1):
    return nn.Sequential(nn.Conv2d(i, o, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(o), nn.ReLU())


class Head(nn.Module):
    def __init__(self, c, n=5):
        super().__init__()
        self.fc = nn.Linear(c, n)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class ConvFlattenLinear(nn.Module):  # channel x spatial expansion into a linear layer
    def __init__(self):
        super().__init__()
        self.a, self.b, self.fc = cbr(3, 12), cbr(12, 16, s=2), nn.Linear(16 * 8 * 8, 6)

    def forward(self, x):
        return self.fc(self.b(self.a(x)).view(x.shape[0], -1))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.b1, self.b2, self.head = cbr(3, 16), cbr(16, 16), cbr(16, 16), Head(16)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.b1(x)
        x = torch.add(x, self.b2(x))
        return self.head(F.relu(x))


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c, self.head = cbr(3, 8), cbr(8, 12), cbr(20, 10), Head(10)

    def forward(self, x):
        a = self.a(x)
        return self.head(self.c(torch.cat([a, self.b(a)], dim=1)))


class Split(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c, self.head = cbr(3, 16), cbr(8, 8), cbr(16, 8), Head(8)

    def forward(self, x):
        x = self.a(x)
        p, q = x.chunk(2, dim=1)
        u, v = torch.split(x, [6, 10], dim=1)
        y = self.c(torch.cat([p, self.b(q)], 1))
        return self.head(y + torch.cat([u, v], 1)[:, 4:12])


class Slice(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = cbr(3, 16), cbr(10, 8), Head(8)

    def forward(self, x):
        return self.head(self.b(self.a(x)[:, 2:12]))


class Grouped(nn.Module):  # fixed-width conv-groups, depthwise, depthwise with multiplier
    def __init__(self):
        super().__init__()
        self.a, self.g = cbr(3, 16), cbr(16, 24, g=4)
        self.dw, self.dwm = cbr(24, 24, g=24), cbr(24, 48, g=24)
        self.head = Head(48)

    def forward(self, x):
        return self.head(self.dwm(self.dw(self.g(self.a(x)))))


class Transposed(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = cbr(3, 8, s=2)
        self.up = nn.ConvTranspose2d(8, 12, 2, stride=2)
        self.dwup = nn.ConvTranspose2d(12, 12, 2, stride=2, groups=12)
        self.head = Head(12)

    def forward(self, x):
        return self.head(F.relu(self.dwup(F.relu(self.up(self.a(x))))))


class Norms(nn.Module):  # per-channel norms only: dead-channel equivalent
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.inorm = nn.InstanceNorm2d(8, affine=True)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.gn = nn.GroupNorm(8, 8)
        self.head = Head(8)

    def forward(self, x):
        return self.head(F.relu(self.gn(self.b(F.relu(self.inorm(self.a(x)))))))


class SEGate(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.fc1, self.fc2, self.head = cbr(3, 16), nn.Conv2d(16, 4, 1), nn.Conv2d(4, 16, 1), Head(16)

    def forward(self, x):
        x = self.a(x)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        return self.head(x * s)


class LayerScale(nn.Module):  # a parameter used directly in forward (get_attr)
    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = cbr(3, 12), cbr(12, 12), Head(12)
        self.gamma = nn.Parameter(torch.rand(12, 1, 1) + 0.5)
        self.w = nn.Parameter(torch.randn(12, 12, 1, 1) * 0.2)

    def forward(self, x):
        x = self.a(x)
        x = x + self.gamma * self.b(x)
        return self.head(F.relu(F.conv2d(x, self.w)))


class Shuffle(nn.Module):  # view-transpose-view and nn.ChannelShuffle
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c, self.head = cbr(3, 16), cbr(8, 8), cbr(16, 16), Head(16)
        self.shuffle = nn.ChannelShuffle(2)

    def forward(self, x):
        x = self.a(x)
        p, q = x.chunk(2, dim=1)
        x = torch.cat([p, self.b(q)], 1)
        n, c, h, w = x.size()
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)
        return self.head(self.shuffle(self.c(x)))


class Shared(nn.Module):  # one module called twice
    def __init__(self):
        super().__init__()
        self.a, self.shared, self.head = cbr(3, 12), cbr(12, 12), Head(12)

    def forward(self, x):
        return self.head(self.shared(self.shared(self.a(x))))


class PadShortcut(nn.Module):  # CIFAR ResNet option-A shortcut: zero channels padded on both sides
    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = cbr(3, 8), cbr(8, 16, s=2), Head(16)

    def forward(self, x):
        x = self.a(x)
        return self.head(F.relu(self.b(x) + F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 4, 4), "constant", 0)))


class MatmulSum(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = cbr(3, 8), cbr(3, 8)
        self.p, self.q = nn.Linear(256, 10, bias=False), nn.Linear(256, 10, bias=False)

    def forward(self, x):
        a = self.a(x).flatten(2)  # n, 8, 16
        b = self.b(x).flatten(2)
        m = self.p(a).transpose(1, 2) @ self.q(b)  # n, 10, 8 @ n, 8, 10 -> contracts channels
        return m.sum(1)


class Upsample(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = cbr(3, 8, s=2), cbr(8, 8), Head(8)

    def forward(self, x):
        y = F.interpolate(self.a(x), scale_factor=2.0, mode="nearest")
        return self.head(self.b(F.max_pool2d(y, 2)))


PATTERNS = [ConvFlattenLinear, Residual, Concat, Split, Slice, Grouped, Transposed, Norms, SEGate,
            LayerScale, Shuffle, Shared, PadShortcut, MatmulSum, Upsample]


@pytest.mark.parametrize("cls", PATTERNS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("seed", [0, 1])
def test_pattern_dead_channel_equivalence(cls, seed):
    torch.manual_seed(seed)
    check = dead_channel_check(cls(), torch.randn(2, 3, 16, 16), seed=seed)
    assert_dead_equivalent(check)


class ChannelsLast(nn.Module):  # ConvNeXt-style block: LayerNorm over channels (channel-mixing)
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.ln = nn.LayerNorm(8)
        self.fc1, self.fc2 = nn.Linear(8, 32), nn.Linear(32, 8)
        self.head = Head(8)

    def forward(self, x):
        x = self.a(x)
        y = self.fc2(F.gelu(self.fc1(self.ln(x.permute(0, 2, 3, 1))))).permute(0, 3, 1, 2)
        return self.head(x + y)


def test_channel_mixing_norm_structural():
    """LayerNorm over channels changes with their count, so no equivalence; but the hidden
    dims are prunable and the pruned model runs with the predicted size."""
    m = ChannelsLast().eval()
    r = fxprune.prune(m, 0.5, example_inputs=torch.randn(1, 3, 16, 16))
    assert r.model(torch.randn(1, 3, 16, 16)).shape == (1, 5)
    assert r.model.fc1.out_features < 32
    assert r.model.ln.normalized_shape[0] == r.model.a.out_channels
    assert sum(p.numel() for p in r.model.parameters()) == pytest.approx(r.report.params_after, abs=0.5)


def _group_of(graph, module_name):
    return [g for g in graph.groups if any(m.param.startswith(module_name + ".") and m.role == "out" for m in g.members)]


class UnknownOp(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = cbr(3, 8), cbr(8, 8), Head(8)

    def forward(self, x):
        return self.head(self.b(torch.fliplr(self.a(x))))


class MeanOverChannels(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = cbr(3, 8), cbr(3, 8)

    def forward(self, x):
        return self.a(x).mean(1) + self.b(x).sum(1)


class StridedChannels(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = cbr(3, 8), cbr(4, 8), Head(8)

    def forward(self, x):
        return self.head(self.b(self.a(x)[:, ::2]))


class Opaque(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: untraceable
            return x * 2
        return x


class WithOpaque(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.opaque, self.b, self.head = cbr(3, 8), Opaque(), cbr(8, 8), Head(8)

    def forward(self, x):
        return self.head(self.b(self.opaque(self.a(x))))


@pytest.mark.parametrize("cls, module, reason", [
    (UnknownOp, "a.0", "no channel rule for function torch.fliplr"),
    (MeanOverChannels, "a.0", "averages over channels"),
    (MeanOverChannels, "b.0", None),  # a sum over channels is safe to prune
    (StridedChannels, "a.0", "strided slice of channels"),
    (WithOpaque, "a.0", "submodule 'opaque' could not be traced"),
    (ConvFlattenLinear, "fc", "reaches the model output"),
    (ConvFlattenLinear, "a.0", None),  # prunable
])
def test_pinned_with_reason(cls, module, reason):
    graph = fxprune.analyze(cls().eval(), torch.randn(1, 3, 16, 16))
    groups = _group_of(graph, module)
    assert groups, f"no group produced by {module}"
    if reason is None:
        assert not any(g.pinned for g in groups)
    else:
        assert all(g.pinned for g in groups)
        assert any(reason in r for g in groups for r in g.reasons), [g.reasons for g in groups]


def test_untraceable_submodule_rest_still_pruned():
    m = WithOpaque().eval()
    r = fxprune.prune(m, 0.8, example_inputs=torch.randn(1, 3, 16, 16))
    assert "opaque" in r.report.leaves
    assert r.model.get_submodule("b.0").out_channels < 8  # the rest of the model is pruned
    assert r.model.get_submodule("a.0").out_channels == 8  # feeds the leaf: pinned


def test_nothing_prunable_is_reported():
    m = nn.Sequential(nn.Conv2d(3, 4, 3)).eval()
    graph = fxprune.analyze(m, torch.randn(1, 3, 8, 8))
    assert not graph.prunable_groups
    assert "NOTHING IS PRUNABLE" in graph.summary()
    with pytest.raises(fxprune.NothingToPrune, match="reaches the model output"):
        fxprune.prune(m, 0.5, example_inputs=torch.randn(1, 3, 8, 8))
