"""The public API: budgets, bad input (clear errors, model untouched), save/load, plans."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision

import fxprune
from fxprune import Budget, Plan


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


X = torch.randn(1, 3, 64, 64)


def snapshot(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def unchanged(m, snap):
    sd = m.state_dict()
    return sd.keys() == snap.keys() and all(torch.equal(sd[k], snap[k]) for k in snap)


@pytest.mark.parametrize("budget", [0, -0.1, 1.5, float("nan"), float("inf"), "0.5", None, True, [0.5]])
def test_bad_budget(resnet18, budget):
    snap = snapshot(resnet18)
    with pytest.raises(fxprune.BudgetError, match="budget"):
        fxprune.prune(resnet18, budget, example_inputs=X)
    assert unchanged(resnet18, snap)


def test_budget_needs_exactly_one_metric():
    with pytest.raises(fxprune.BudgetError, match="exactly one"):
        Budget(flops=0.5, params=0.5)
    with pytest.raises(fxprune.BudgetError, match="exactly one"):
        Budget()


def test_not_a_module():
    with pytest.raises(fxprune.FxpruneError, match="torch.nn.Module"):
        fxprune.prune(lambda x: x, 0.5)
    with pytest.raises(fxprune.FxpruneError, match="torch.nn.Module"):
        fxprune.analyze("resnet18")


def test_wrong_input_shape(resnet18):
    snap = snapshot(resnet18)
    with pytest.raises(fxprune.AnalysisError, match=r"conv1.*\(1, 5, 64, 64\)"):
        fxprune.prune(resnet18, 0.5, example_inputs=torch.randn(1, 5, 64, 64))
    with pytest.raises(fxprune.AnalysisError, match="example_inputs"):
        fxprune.analyze(resnet18, example_inputs="big")
    assert unchanged(resnet18, snap)


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        if x.mean() > 0:  # data-dependent branch in the top-level forward
            x = x * 2
        return self.conv(x)


def test_untraceable_model_names_the_code():
    """The forward is not traceable and its only traceable part (one conv) has nothing to prune
    (its input is the model's, its output the model's): the error names the line."""
    m = Untraceable()
    snap = snapshot(m)
    with pytest.raises(fxprune.NothingToPrune, match=r"test_api.py:\d+ in forward: if x.mean\(\) > 0"):
        fxprune.prune(m, 0.5, example_inputs=torch.randn(1, 3, 8, 8))
    assert unchanged(m, snap)


def test_bad_options(resnet18):
    with pytest.raises(fxprune.FxpruneError, match="unknown policy 'nope'"):
        fxprune.prune(resnet18, 0.5, policy="nope")
    with pytest.raises(fxprune.FxpruneError, match="unknown importance"):
        fxprune.prune(resnet18, 0.5, importance="nope")
    with pytest.raises(fxprune.FxpruneError, match="round_to"):
        fxprune.prune(resnet18, 0.5, round_to=0)
    with pytest.raises(fxprune.FxpruneError, match="owns no channel group"):
        fxprune.prune(resnet18, 0.5, example_inputs=X, ignore=["nonexistent"])
    with pytest.raises(fxprune.FxpruneError, match="taylor.*data"):
        fxprune.prune(resnet18, 0.5, example_inputs=X, importance="taylor")


def test_infeasible_budget_gives_best(resnet18):
    snap = snapshot(resnet18)
    with pytest.raises(fxprune.BudgetError, match="best achievable") as exc:
        fxprune.prune(resnet18, 0.001, example_inputs=X)
    assert 0.001 < exc.value.best < 0.5
    r = fxprune.prune(resnet18, exc.value.best + 1e-6, example_inputs=X)  # the best is reachable
    assert r.report.flops_ratio <= exc.value.best + 1e-6
    assert unchanged(resnet18, snap)


@pytest.mark.parametrize("budget, metric", [(Budget(params=0.4), "params"), (0.3, "flops"), (Budget(flops=0.7), "flops")])
@pytest.mark.parametrize("policy", ["global", "uniform"])
def test_budgets_met(resnet18, budget, metric, policy):
    r = fxprune.prune(resnet18, budget, example_inputs=X, policy=policy)
    target = Budget.coerce(budget).value
    got = r.report.params_ratio if metric == "params" else r.report.flops_ratio
    assert target * 0.98 <= got <= target + 1e-9
    real = sum(p.numel() for p in r.model.parameters())
    assert real == pytest.approx(r.report.params_after, abs=0.5)


def test_channel_budget_keeps_fraction_per_group(resnet18):
    r = fxprune.prune(resnet18, Budget(channels=0.25), example_inputs=X, policy="global")
    for row in r.report.groups:
        expect = row.size if row.pinned else max(1, round(row.size * 0.25))
        assert row.kept == expect


@pytest.mark.parametrize("n", [8, 16])
def test_round_to(resnet18, n):
    r = fxprune.prune(resnet18, 0.5, example_inputs=X, round_to=n)
    for row in r.report.groups:
        if not row.pinned and row.size >= n:
            assert row.kept % n == 0 or row.kept == row.size
    assert r.report.flops_ratio <= 0.5 + 1e-9 and r.report.flops_ratio >= 0.45


@pytest.mark.parametrize("crit", ["l1", "l2", "bn", "random"])
def test_importance_criteria_change_selection(resnet18, crit):
    r = fxprune.prune(resnet18, 0.5, example_inputs=X, importance=crit, policy="uniform")
    assert r.plan.importance == crit and r.report.flops_ratio <= 0.5


def test_l2_keeps_largest_filters():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3)).eval()
    with torch.no_grad():
        m[0].weight.mul_(torch.arange(1, 9).float().view(8, 1, 1, 1))  # filter i has norm ~ i
        m[2].weight.fill_(0.01)
    r = fxprune.prune(m, fxprune.Budget(channels=0.5), example_inputs=torch.randn(1, 3, 8, 8))
    gid = next(iter(r.plan.keep))
    assert r.plan.keep[gid] == [4, 5, 6, 7]


def test_taylor_with_data(resnet18):
    data = [(torch.randn(4, 3, 64, 64), torch.randint(0, 10, (4,)))]
    snap = snapshot(resnet18)
    r = fxprune.prune(resnet18, 0.5, example_inputs=X, importance="taylor", data=data)
    assert r.report.flops_ratio <= 0.5
    assert unchanged(resnet18, snap)
    assert all(p.grad is None for p in resnet18.parameters())


def test_ignore_keeps_module(resnet18):
    r = fxprune.prune(resnet18, 0.5, example_inputs=X, ignore=[resnet18.layer4])
    assert r.model.get_submodule("layer4.0.conv1").out_channels == 512
    assert r.model.get_submodule("layer4.1.conv1").out_channels == 512


def test_save_load_roundtrip(tmp_path, resnet18):
    r = fxprune.prune(resnet18, 0.5, example_inputs=X)
    path = fxprune.save(r, tmp_path / "pruned.safetensors")
    torch.manual_seed(123)
    fresh = torchvision.models.resnet18(num_classes=10).eval()
    snap = snapshot(fresh)
    r2 = fxprune.load(path, fresh)
    assert unchanged(fresh, snap)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(r.model.eval()(x), r2.model.eval()(x))
    assert r2.plan.keep == r.plan.keep


def test_load_by_recorded_architecture(tmp_path):
    model = torchvision.models.resnet18(weights=None).eval()
    r = fxprune.prune(model, 0.5, example_inputs=X)
    with_arch = fxprune.save(r, tmp_path / "a.safetensors", arch="torchvision:resnet18")
    r2 = fxprune.load(with_arch)  # no model argument: rebuilt from the recorded architecture
    with torch.no_grad():
        assert torch.equal(r.model.eval()(X), r2.model.eval()(X))
    without = fxprune.save(r, tmp_path / "b.safetensors")
    with pytest.raises(fxprune.FxpruneError, match="does not record its architecture"):
        fxprune.load(without)


def test_save_load_with_ignore(tmp_path, resnet18):
    r = fxprune.prune(resnet18, 0.5, example_inputs=X, ignore=["layer4"])
    path = fxprune.save(r, tmp_path / "ignored.safetensors")
    r2 = fxprune.load(path, torchvision.models.resnet18(num_classes=10).eval())
    with torch.no_grad():
        assert torch.equal(r.model.eval()(X), r2.model.eval()(X))


def test_load_errors(tmp_path, resnet18):
    with pytest.raises(fxprune.FxpruneError, match="no saved fxprune model"):
        fxprune.load(tmp_path / "missing.safetensors", resnet18)
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(fxprune.FxpruneError, match="not a readable safetensors"):
        fxprune.load(bad, resnet18)
    r = fxprune.prune(resnet18, 0.5, example_inputs=X)
    path = fxprune.save(r, tmp_path / "ok.safetensors")
    other = torchvision.models.mobilenet_v2(num_classes=10).eval()
    snap = snapshot(other)
    with pytest.raises(fxprune.PlanError, match="another architecture"):
        fxprune.load(path, other)
    assert unchanged(other, snap)


def test_plan_json_roundtrip_and_validation(resnet18, tmp_path):
    r = fxprune.prune(resnet18, 0.5, example_inputs=X)
    p = tmp_path / "plan.json"
    r.plan.save(p)
    back = Plan.load(p)
    assert back == r.plan
    assert json.loads(p.read_text())["budget"] == {"flops": 0.5}
    graph = fxprune.analyze(resnet18, X)
    gid = next(iter(back.keep))
    for bad, msg in [({gid: []}, "at least 1"), ({gid: [0, 0]}, "duplicate"), ({gid: [10**6]}, "out of range"),
                     ({999: [0]}, "names group 999"), ({0: [0]}, "pinned")]:
        plan = Plan(keep=bad, signature=graph.signature())
        with pytest.raises(fxprune.PlanError, match=msg):
            fxprune.prune_channels(graph, plan)
    with pytest.raises(fxprune.PlanError, match="not valid JSON"):
        Plan.from_json("{nope")


def test_report_views(resnet18):
    r = fxprune.prune(resnet18, 0.5, example_inputs=X)
    text, md, js = str(r.report), r.report.to_markdown(), json.loads(r.report.to_json())
    assert "FLOPs" in text and "pinned groups" in text and "reaches the model output" in text
    assert "| layer1.0.conv1 |" in md
    assert math.isclose(js["flops_ratio"], r.report.flops_ratio)
    assert js["flops_after"] < js["flops_before"]


def test_depgraph_views(resnet18):
    g = fxprune.analyze(resnet18, X)
    nxg = g.to_networkx()
    groups = [n for n, d in nxg.nodes(data=True) if d["kind"] == "group"]
    assert len(groups) == len(g.groups)
    assert nxg.has_edge("conv1", "bn1")
    assert any(nxg.has_edge(f"group:{grp.id}", "layer1_0_conv1") for grp in g.groups)
    assert "model input 'x'" in g.summary()
    curve = [g.cost.group_cost(g.prunable_groups[0].id, k)["flops"] for k in (0, 16, 64)]
    assert curve[0] < curve[1] < curve[2] == pytest.approx(g.cost.full_flops)
    keep = np.ones(g.n_classes)
    assert g.cost.flops(np.stack([keep, keep * 0.5], 1))[0] == pytest.approx(g.cost.full_flops)


class _ConstantInForward(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.head = torch.nn.Conv2d(8, 4, 1)

    def forward(self, x):  # torch.ones(...) is a real tensor during tracing: fx makes it a constant
        return self.head(self.conv(x) * torch.ones(1, 8, 1, 1))


def test_tensor_constants_never_attach_to_the_user_model():
    model = _ConstantInForward()
    attrs = dict(vars(model))
    res = fxprune.prune(model, 0.5, example_inputs=(1, 3, 16, 16))
    assert vars(model).keys() == attrs.keys()
    assert all(vars(model)[k] is v for k, v in attrs.items())
    assert any(n.op == "get_attr" and "constant" in n.target for n in res.model.graph.nodes)
    x = torch.randn(2, 3, 16, 16)
    assert res.model(x).shape == (2, 4, 14, 14)
