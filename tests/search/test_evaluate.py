"""Masked evaluation == surgery: the metrics evaluate() reports for a plan equal those of the
surgically pruned model on the same data, for random plans on several architectures."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import get_model

import fxprune
from fxprune.models import cifar_resnet
from fxprune.passes import prune_channels
from fxprune.search.evaluate import Evaluator
from fxprune.testing import random_plan


def _randomize_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=g) * 0.2
            m.running_mean = torch.randn(m.num_features, generator=g) * 0.1
            m.running_var = torch.rand(m.num_features, generator=g) + 0.5
    return model.eval()


MODELS = {
    "cifar_resnet20": (lambda: cifar_resnet(20), 32, 10),
    "resnet18": (lambda: get_model("resnet18", weights=None, num_classes=10), 64, 10),
    "mobilenet_v2": (lambda: get_model("mobilenet_v2", weights=None, num_classes=10), 64, 10),
    "densenet121": (lambda: get_model("densenet121", weights=None, num_classes=10), 64, 10),
}


def _data(size, n=24, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return [(x[i:i + 8], y[i:i + 8]) for i in range(0, n, 8)]


def _surgery_metrics(graph, plan, data):
    pruned = prune_channels(graph, plan).eval()
    correct, loss, n = 0.0, 0.0, 0
    with torch.no_grad():
        for x, y in data:
            out = pruned(x)
            correct += float((out.argmax(1) == y).sum())
            loss += float(F.cross_entropy(out, y, reduction="sum"))
            n += y.shape[0]
    return correct / n, loss / n, pruned


@pytest.mark.parametrize("name", list(MODELS))
def test_masked_equals_surgery(name):
    build, size, _ = MODELS[name]
    model = _randomize_bn(build())
    graph = fxprune.analyze(model, (1, 3, size, size))
    data = _data(size)
    ev = Evaluator(graph, data, n_samples=None)
    for seed in range(3):
        plan = random_plan(graph, seed=seed, drop=0.3 + 0.2 * seed)
        m = ev.evaluate(plan)
        acc, loss, pruned = _surgery_metrics(graph, plan, data)
        assert m.acc == pytest.approx(acc, abs=1e-12)
        assert m.loss == pytest.approx(loss, rel=1e-4, abs=1e-5)
        assert m.params == pytest.approx(sum(p.numel() for p in pruned.parameters()), abs=0.5)
        assert m.flops_ratio < 1.0
    # the full plan restores the original model exactly
    full = ev.evaluate({})
    acc0, loss0, _ = _surgery_metrics(graph, fxprune.Plan.from_graph(graph, {}), data)
    assert (full.acc, full.flops_ratio) == (pytest.approx(acc0), 1.0)
    assert full.loss == pytest.approx(loss0, rel=1e-5)


def test_user_model_untouched_and_distill_metric():
    model = _randomize_bn(cifar_resnet(20))
    before = copy.deepcopy(model.state_dict())
    graph = fxprune.analyze(model, (1, 3, 32, 32))
    data = [x for x, _ in _data(32)]  # no labels -> label-free distillation score
    ev = Evaluator(graph, data, n_samples=None, budget=fxprune.Budget(flops=0.6))
    assert ev.metric == "distill"
    full = ev.evaluate({})
    assert full.acc == 1.0 and full.loss == pytest.approx(0.0, abs=1e-6) and full.feasible is False
    pruned = ev.evaluate(random_plan(graph, seed=1, drop=0.6))
    assert pruned.loss > 1e-4 and pruned.acc <= 1.0
    assert pruned.feasible == (pruned.flops_ratio <= 0.6)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert ev.calls == 2 and ev.plans_per_second > 0


def test_keep_vector_and_plan_agree():
    graph = fxprune.analyze(_randomize_bn(cifar_resnet(20)), (1, 3, 32, 32))
    ev = Evaluator(graph, _data(32), n_samples=16)
    assert ev.n_samples == 16
    plan = random_plan(graph, seed=4)
    a, b = ev.evaluate(plan), ev.evaluate(graph.keep_vector(plan.keep))
    assert (a.acc, a.loss, a.flops) == (b.acc, b.loss, b.flops)


def test_bad_metric_and_unlabelled_accuracy():
    graph = fxprune.analyze(cifar_resnet(20).eval(), (1, 3, 32, 32))
    with pytest.raises(fxprune.FxpruneError, match="metric"):
        Evaluator(graph, _data(32), metric="top5")
    with pytest.raises(fxprune.FxpruneError, match="labelled"):
        Evaluator(graph, [torch.randn(4, 3, 32, 32)], metric="accuracy")
    with pytest.raises(fxprune.FxpruneError, match="iterable"):
        Evaluator(graph, 3)
    with pytest.raises(fxprune.FxpruneError, match="DepGraph"):
        Evaluator(cifar_resnet(20), _data(32))
    with pytest.raises(fxprune.FxpruneError, match="n_samples"):
        Evaluator(graph, _data(32), n_samples=0)
    with pytest.raises(fxprune.FxpruneError, match="batch_size"):
        Evaluator(graph, _data(32), batch_size=0)


def test_bf16_precision_close_to_fp32():
    graph = fxprune.analyze(_randomize_bn(cifar_resnet(20)), (1, 3, 32, 32))
    data = _data(32)
    ev32 = Evaluator(graph, data, n_samples=None)
    ev16 = Evaluator(graph, data, n_samples=None, precision="bf16")
    for seed in range(3):
        plan = random_plan(graph, seed=seed, drop=0.4)
        a, b = ev32.evaluate(plan), ev16.evaluate(plan)
        assert b.loss != a.loss  # the forward really ran in bfloat16 ...
        assert b.loss == pytest.approx(a.loss, rel=0.05)  # ... and stays close to fp32
        assert abs(b.acc - a.acc) <= 0.15
        assert (b.flops, b.params) == (a.flops, a.params)
    with pytest.raises(fxprune.FxpruneError, match="precision 'fp16'"):
        Evaluator(graph, data, precision="fp16")
