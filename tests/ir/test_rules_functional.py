"""Functional ops with parameter arguments (read by ``get_attr`` or computed from parameters at run
time), list-of-tensor ops, and one regression test per wrong result found on real models."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import fxprune
from fxprune.testing import dead_channel_check, random_plan
from tests.conftest import assert_dead_equivalent
from tests.ir.test_rules import Head, cbr


class BNAct(nn.BatchNorm2d):  # timm's BatchNormAct2d: a BatchNorm2d subclass with its own forward
    def __init__(self, c):
        super().__init__(c)
        self.act = nn.ReLU()

    def forward(self, x):
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.1, self.eps)
        return self.act(x)


def _randomise_bn(m):
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 1.5)
    return m


class FunctionalBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.bn_a = nn.Conv2d(3, 12, 3, padding=1, bias=False), BNAct(12)
        self.b, self.bn_b = nn.Conv2d(12, 16, 3, padding=1, bias=False), BNAct(16)
        self.head = Head(16)

    def forward(self, x):
        return self.head(self.bn_b(self.b(self.bn_a(self.a(x)))))


class FunctionalNorms(nn.Module):  # per-channel group norm and instance norm: dead-exact
    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), Head(8)
        self.g_w, self.g_b = nn.Parameter(torch.rand(8) + 0.5), nn.Parameter(torch.randn(8))
        self.i_w, self.i_b = nn.Parameter(torch.rand(8) + 0.5), nn.Parameter(torch.randn(8))

    def forward(self, x):
        x = F.relu(F.group_norm(self.a(x), 8, self.g_w, self.g_b))
        return self.head(F.relu(F.instance_norm(self.b(x), weight=self.i_w, bias=self.i_b)))


class FunctionalConvLinear(nn.Module):
    """F.conv2d with 3x3 parameter weights (the kernel dims must stay whole), a depthwise F.conv2d
    with a fixed buffer filter (a blur pool), and F.linear with parameter weights."""

    def __init__(self):
        super().__init__()
        self.w1, self.b1 = nn.Parameter(torch.randn(12, 3, 3, 3) * 0.3), nn.Parameter(torch.randn(12))
        self.w2 = nn.Parameter(torch.randn(16, 12, 3, 3) * 0.2)
        self.register_buffer("blur", torch.tensor([1.0, 2.0, 1.0]).outer(torch.tensor([1.0, 2.0, 1.0])).div(16)
                             .expand(16, 1, 3, 3).contiguous())
        self.fc_w, self.fc_b = nn.Parameter(torch.randn(10, 16) * 0.2), nn.Parameter(torch.randn(10))
        self.fc2_w = nn.Parameter(torch.randn(5, 10) * 0.2)

    def forward(self, x):
        x = F.relu(F.conv2d(x, self.w1, self.b1, padding=1))
        x = F.relu(F.conv2d(x, self.w2, padding=1))
        x = F.conv2d(F.pad(x, [1, 1, 1, 1], mode="reflect"), self.blur, stride=2, groups=16)
        x = F.relu(F.linear(x.mean((2, 3)), self.fc_w, self.fc_b))
        return F.linear(x, self.fc2_w)


class ReparamConv(nn.Module):  # the weight is a sum of branches computed at run time (RepVGG-style)
    def __init__(self):
        super().__init__()
        self.a = cbr(3, 12)
        self.w3, self.w1 = nn.Parameter(torch.randn(16, 12, 3, 3) * 0.2), nn.Parameter(torch.randn(16, 12, 1, 1))
        self.bias = nn.Parameter(torch.randn(16))
        self.head = Head(16)

    def forward(self, x):
        w = self.w3 + F.pad(self.w1, [1, 1, 1, 1])
        return self.head(F.relu(F.conv2d(self.a(x), w, self.bias, padding=1)))


class StackSelect(nn.Module):  # selective kernel: stack paths, softmax over them, weighted sum
    def __init__(self):
        super().__init__()
        self.a, self.p1, self.p2 = cbr(3, 12), cbr(12, 12), cbr(12, 12, k=5)
        self.fc, self.sel = nn.Conv2d(12, 6, 1), nn.Conv2d(6, 24, 1)
        self.head = Head(12)

    def forward(self, x):
        x = self.a(x)
        paths = torch.stack([self.p1(x), self.p2(x)], dim=1)  # n, 2, c, h, w
        attn = self.sel(F.relu(self.fc(paths.sum(1).mean((2, 3), keepdim=True))))
        b, c, h, w = attn.shape
        attn = torch.softmax(attn.view(b, 2, c // 2, h, w), dim=1)
        return self.head(torch.sum(paths * attn, dim=1))


class Unbind(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c, self.head = cbr(3, 8), cbr(3, 8), cbr(8, 8), Head(8)

    def forward(self, x):
        p, q = torch.stack([self.a(x), self.b(x)], 0).unbind(0)
        return self.head(self.c(p * q))


class TensorSplitRepeat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = cbr(3, 12), cbr(5, 8), cbr(14, 8)
        self.head = Head(16)

    def forward(self, x):
        x = self.a(x)
        p, q = torch.tensor_split(x, (5,), dim=1)
        return self.head(torch.cat([self.b(p), self.c(q.repeat_interleave(2, dim=1))], 1))


class ExpandAsGate(nn.Module):  # a gate expanded with expand_as; a scale shaped with reshape_as
    def __init__(self):
        super().__init__()
        self.a, self.fc, self.head = cbr(3, 12), nn.Conv2d(12, 12, 1), Head(12)
        self.scale = nn.Parameter(torch.rand(12) + 0.5)

    def forward(self, x):
        x = self.a(x)
        x = x * torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True))).expand_as(x)
        return self.head(x * self.scale.reshape_as(x[0, :, :1, :1]))


class ChannelConv(nn.Module):  # ECA: a 1-D conv slides over the channels, so they must stay
    def __init__(self):
        super().__init__()
        self.a, self.fc, self.head = cbr(3, 12), nn.Conv1d(1, 1, 3, padding=1, bias=False), Head(12)

    def forward(self, x):
        x = self.a(x)
        y = self.fc(x.mean((2, 3)).view(x.shape[0], 1, -1)).view(x.shape[0], -1)
        return self.head(x) + y.sum(1, keepdim=True)


def test_a_conv_over_channel_positions_pins_them():
    graph = fxprune.analyze(ChannelConv().eval(), torch.randn(1, 3, 16, 16))
    groups = [g for g in graph.groups if any(m.param == "a.0.weight" and m.dim == 0 for m in g.members)]
    assert groups and groups[0].pinned and "convolves over dim 2" in " ".join(groups[0].reasons)


PATTERNS = [FunctionalBN, FunctionalNorms, FunctionalConvLinear, ReparamConv, StackSelect, Unbind,
            TensorSplitRepeat]


@pytest.mark.parametrize("cls", PATTERNS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("seed", [0, 1])
def test_functional_pattern_dead_channel_equivalence(cls, seed):
    torch.manual_seed(seed)
    check = dead_channel_check(_randomise_bn(cls()), torch.randn(2, 3, 16, 16), seed=seed)
    assert_dead_equivalent(check)


def test_expand_as_gate_prunes_and_stays_exact():
    torch.manual_seed(0)
    m = ExpandAsGate().eval()
    graph = fxprune.analyze(m, torch.randn(1, 3, 16, 16))
    assert graph.prunable_groups, graph.summary()
    assert_dead_equivalent(dead_channel_check(m, torch.randn(2, 3, 16, 16)))


def test_functional_conv_kernel_dims_are_never_groups():
    """Regression: a 3x3 parameter weight read by get_attr got prunable groups on its kernel dims
    (FLOPs off, not dead-exact); now only its channel dims belong to groups."""
    graph = fxprune.analyze(FunctionalConvLinear().eval(), torch.randn(1, 3, 16, 16))
    for g in graph.prunable_groups:
        for m in g.members:
            assert m.dim in (0, 1), (m.param, m.dim)
    assert graph.cost.full_flops == pytest.approx(
        16 * 16 * 12 * 27 + 16 * 16 * 16 * 12 * 9 + 8 * 8 * 16 * 9 + 16 * 10 + 10 * 5)


class WSConv(nn.Conv2d):  # timm's ScaledStdConv2d: weight standardised at run time
    def __init__(self, i, o, k):
        super().__init__(i, o, k, padding=k // 2)
        self.gain = nn.Parameter(torch.rand(o, 1, 1, 1) + 0.5)
        self.scale = (i * k * k) ** -0.5

    def forward(self, x):
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None,
                         weight=(self.gain * self.scale).view(-1), training=True, momentum=0.0, eps=1e-5)
        return F.conv2d(x, w.reshape_as(self.weight), self.bias, self.stride, self.padding)


class WSNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c, self.head = WSConv(3, 16, 3), WSConv(16, 24, 3), WSConv(24, 16, 1), Head(16)

    def forward(self, x):
        return self.head(F.relu(self.c(F.relu(self.b(F.relu(self.a(x)))))))


def test_weight_standardised_conv_is_pruned_by_slicing_its_parameters():
    """The weight is computed from ``weight`` and ``gain``: both are sliced, the computation kept.
    Standardisation mixes a filter's input channels, so there is no dead-channel equivalence, but
    the sizes, FLOPs and the computation of the pruned model are what the cost model says."""
    torch.manual_seed(0)
    m = WSNet().eval()
    x = torch.randn(1, 3, 16, 16)
    r = fxprune.prune(m, 0.5, example_inputs=x, round_to=1)
    assert r.report.flops_ratio <= 0.5 and r.report.flops_ratio > 0.45
    b = r.model.b
    assert b.weight.shape[0] < 24 and b.gain.shape[0] == b.weight.shape[0] and b.bias.shape[0] == b.weight.shape[0]
    assert r.model.c.weight.shape[1] == b.weight.shape[0]
    assert r.model(x).shape == (1, 5)
    again = fxprune.analyze(r.model, x)
    assert again.cost.full_flops == pytest.approx(r.report.flops_after)
    assert sum(p.numel() for p in r.model.parameters()) == pytest.approx(r.report.params_after)


class Res2Split(nn.Module):  # Res2Net: a split whose pieces feed different convs, one piece is pooled
    def __init__(self):
        super().__init__()
        self.a = cbr(3, 16)
        self.convs = nn.ModuleList(cbr(4, 4) for _ in range(3))
        self.pool = nn.AvgPool2d(3, 1, 1)
        self.c, self.head = cbr(16, 8), Head(8)

    def forward(self, x):
        spx = torch.split(self.a(x), 4, 1)
        out = [conv(sp) for conv, sp in zip(self.convs, spx)] + [self.pool(spx[-1])]
        return self.head(self.c(torch.cat(out, 1)))


def test_split_pieces_are_groups_that_are_never_emptied():
    """Regression (Res2Net, Res2NeXt): the pieces of a split were one group, so a piece could lose
    all its channels (a zero-channel tensor, or a consumer of the wrong width). Each piece is now
    a group of its own, and even the most aggressive plan keeps one channel in each."""
    torch.manual_seed(0)
    m = Res2Split().eval()
    x = torch.randn(1, 3, 16, 16)
    graph = fxprune.analyze(m, x)
    pieces = [g for g in graph.groups if any(s.endswith("(split)") for s in g.sources)]
    assert len(pieces) == 4 and all(g.size == 4 for g in pieces)
    r = fxprune.prune(m, 0.15, example_inputs=x, round_to=1, max_prune_ratio=0.99)
    assert r.model(x).shape == (1, 5)
    convs = [m for n, m in r.model.named_modules() if n.startswith("convs.") and isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 and all(c.in_channels >= 1 for c in convs)
    assert_dead_equivalent(dead_channel_check(m, torch.randn(2, 3, 16, 16), drop=0.9))


class ShuffleAfterChunk(nn.Module):  # ShuffleNetV2 unit: chunk, branch, cat, shuffle, twice
    def __init__(self):
        super().__init__()
        self.a = cbr(3, 16)
        self.b1, self.b2 = cbr(8, 8), cbr(8, 8)
        self.head = Head(16)

    @staticmethod
    def shuffle(x):
        n, c, h, w = x.shape
        return x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)

    def forward(self, x):
        x = self.a(x)
        for b in (self.b1, self.b2):
            p, q = x.chunk(2, dim=1)
            x = self.shuffle(torch.cat([p, b(q)], 1))
        return self.head(x)


@pytest.mark.parametrize("seed", range(4))
def test_shuffle_after_chunk(seed):
    torch.manual_seed(seed)
    assert_dead_equivalent(dead_channel_check(ShuffleAfterChunk(), torch.randn(2, 3, 16, 16), seed=seed))


class MyScale(torch.autograd.Function):  # forward doubles, backward deliberately triples
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        return g * 3


class WithAutogradFunction(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c, self.head = cbr(3, 8), cbr(8, 8), cbr(8, 8), Head(8)

    def forward(self, x):
        return self.head(self.c(MyScale.apply(self.b(self.a(x)))))


def test_custom_autograd_function_is_a_leaf_with_its_backward():
    torch.manual_seed(0)
    m = WithAutogradFunction().eval()
    x = torch.randn(1, 3, 16, 16)
    graph = fxprune.analyze(m, x)
    reasons = [r for g in graph.pinned_groups for r in g.reasons]
    assert any("MyScale" in r for r in reasons), reasons
    r = fxprune.prune(m, 1.0, example_inputs=x)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    m(xa).sum().backward()
    r.model(xb).sum().backward()
    assert torch.allclose(xa.grad, xb.grad, atol=1e-6)  # the custom backward is kept
    assert graph.prunable_groups  # the convs around it are still prunable


def test_a_rule_can_declare_an_autograd_function_channelwise():
    from fxprune.ir import register
    from fxprune.ir.registry import _RULES
    from fxprune.ir.rules.elementwise import unary

    register(MyScale)(unary)
    try:
        graph = fxprune.analyze(WithAutogradFunction().eval(), torch.randn(1, 3, 16, 16))
        assert not any("MyScale" in r for g in graph.groups for r in g.reasons)
        assert_dead_equivalent(dead_channel_check(WithAutogradFunction(), torch.randn(2, 3, 16, 16)))
    finally:
        del _RULES[MyScale]


def test_random_plan_never_touches_kernel_dims_of_computed_weights():
    torch.manual_seed(0)
    graph = fxprune.analyze(ReparamConv().eval(), torch.randn(1, 3, 16, 16))
    plan = random_plan(graph, 0, drop=0.5)
    pruned = fxprune.prune_channels(graph, plan)
    assert pruned.w3.shape[2:] == (3, 3) and pruned.w1.shape[2:] == (1, 1)
    assert pruned.w3.shape[:2] == pruned.w1.shape[:2]
