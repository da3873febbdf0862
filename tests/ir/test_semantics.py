"""Model semantics are preserved by analysis and surgery, or refused with a reason: tied
parameters stay tied, in-place buffer updates run in the pruned model but never on the user's
model, functional batch norms keep following .train()/.eval(), and the user's model is
bit-identical after every public call."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import fxprune
from fxprune.testing import dead_channel_check
from tests.conftest import assert_dead_equivalent, assert_untouched, snapshot
from tests.ir.test_rules import Head, cbr
from tests.ir.test_rules_functional import BNAct, WithAutogradFunction


class Tied(nn.Module):  # two convs share one weight Parameter
    def __init__(self):
        super().__init__()
        self.a = cbr(3, 12)
        self.p, self.q = nn.Conv2d(12, 12, 3, padding=1), nn.Conv2d(12, 12, 3, padding=1)
        self.q.weight = self.p.weight
        self.head = Head(12)

    def forward(self, x):
        x = self.a(x)
        return self.head(F.relu(self.q(F.relu(self.p(x)))) + x)


def test_tied_parameters_stay_tied():
    torch.manual_seed(0)
    m = Tied().eval()
    x = torch.randn(1, 3, 16, 16)
    graph = fxprune.analyze(m, x)
    names = {mem.param for g in graph.groups for mem in g.members}
    assert "q.weight" not in names and "p.weight" in names  # one name for the shared tensor
    r = fxprune.prune(m, 0.5, example_inputs=x, round_to=1)
    assert r.model.p.weight is r.model.q.weight
    assert r.model.p.weight.shape[0] < 12
    assert sum(p.numel() for p in r.model.parameters()) == pytest.approx(r.report.params_after)
    assert_dead_equivalent(dead_channel_check(m, torch.randn(2, 3, 16, 16)))


class Counter(nn.Module):  # a forward that updates a buffer in place
    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = cbr(3, 8), cbr(8, 8), Head(8)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        self.calls.add_(1)
        return self.head(self.b(self.a(x)))


def test_in_place_buffer_updates_are_kept_and_never_run_on_the_user_model():
    m = Counter().eval()
    x = torch.randn(1, 3, 16, 16)
    snap = snapshot(m)
    r = fxprune.prune(m, 0.5, example_inputs=x)
    fxprune.analyze(m, x)
    assert_untouched(m, snap)
    assert int(m.calls) == 0
    assert int(r.model.calls) == 0  # the pruned model starts from the user's value ...
    r.model(x)
    r.model(x)
    assert int(r.model.calls) == 2  # ... and still counts its calls
    assert int(m.calls) == 0


def test_functional_batch_norm_follows_train_and_eval():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.bn, self.head = nn.Conv2d(3, 8, 3, padding=1, bias=False), BNAct(8), Head(8)

        def forward(self, x):
            return self.head(self.bn(self.a(x)))

    m = Net().eval()
    x = torch.randn(4, 3, 16, 16)
    r = fxprune.prune(m, 0.6, example_inputs=x)
    pm = r.model
    pm.train()
    before = pm.bn.running_mean.clone()
    pm(x)
    assert not torch.equal(before, pm.bn.running_mean)  # batch statistics in training mode
    pm.eval()
    before = pm.bn.running_mean.clone()
    y1 = pm(x)
    assert torch.equal(before, pm.bn.running_mean) and torch.equal(y1, pm(x))


def _public_calls(model, x, tmp_path):
    r = fxprune.prune(model, 0.5, example_inputs=x, progress=False)
    yield "prune"
    fxprune.analyze(model, x)
    yield "analyze"
    fxprune.apply_plan(model, r.plan, x)
    yield "apply_plan"
    fxprune.save(r, tmp_path / "m.safetensors")
    fxprune.load(tmp_path / "m.safetensors", model)
    yield "load"
    fxprune.export_onnx(model, tmp_path / "m.onnx", x)
    yield "export_onnx"
    fxprune.testing.dead_channel_check(model, x)
    yield "dead_channel_check"


@pytest.mark.parametrize("cls", [Counter, Tied, WithAutogradFunction])
def test_user_model_is_bit_identical_after_every_public_call(cls, tmp_path):
    torch.manual_seed(0)
    m = cls()
    m.train()  # flags must come back as they were, whatever they are
    m.a[0].weight.requires_grad_(False)
    x = torch.randn(1, 3, 16, 16)
    snap = snapshot(m)
    for name in _public_calls(m, x, tmp_path):
        assert_untouched(m, snap), name
