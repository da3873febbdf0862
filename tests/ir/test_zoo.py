"""Every torchvision model (picked up automatically): analyze, prune at 50% FLOPs with `global`
and `uniform`; and the dead-channel oracle on every CNN without channel-mixing norm/attention."""
import contextlib
import re
import warnings

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import get_model, list_models

import fxprune
from fxprune.search import encode
from fxprune.testing import dead_channel_check
from tests.conftest import assert_dead_equivalent, assert_untouched, exclusive, real_and_fast_shapes, snapshot

warnings.filterwarnings("ignore")
# the largest models (>= 140M parameters): a test of one takes up to 11 GB, so two xdist workers
# never run two of them side by side (a file lock; xdist's loadgroup does not group under pytest 9)
GIANT = {"vit_h_14", "regnet_y_128gf", "vit_l_16", "vit_l_32", "regnet_y_32gf", "convnext_large"}


@pytest.fixture(autouse=True)
def _giants_one_at_a_time(request):
    name = getattr(getattr(request.node, "callspec", None), "params", {}).get("name")
    with exclusive("zoo-giant") if name in GIANT else contextlib.nullcontext():
        yield


ZOO = list_models(module=torchvision.models)

# the test's choice of a small input per family (the library itself has no per-model code)
def build(name):
    kw, size = {}, 64
    if name.startswith("vit"):
        patch = int(re.search(r"_(\d+)$", name).group(1))
        size = patch * 4
        kw = {"image_size": size}
    elif name.startswith("inception"):
        size = 96
    elif name.startswith("maxvit"):
        size = 224
    torch.manual_seed(0)
    return get_model(name, weights=None, **kw).eval(), torch.randn(1, 3, size, size)


# models where pinned groups make 50% FLOPs infeasible at this test's input: Swin's window
# attention (one traced call, no rule: its cost is constant) is more than half of its MACs at 64 px
INFEASIBLE = {n: "window attention" for n in ZOO if n.startswith("swin")}


def macs(model, x):
    """Multiply-accumulates of one forward, as torch.utils.flop_counter counts them (FLOPs / 2).
    With gradients enabled: without them nn.MultiheadAttention takes PyTorch's fused inference
    kernel, inside which the counter sees no matrix products."""
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 2


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_zoo_prune(name):
    model, x = build(name)
    with torch.no_grad():
        y = model(x)
    snap = snapshot(model)
    full = macs(model, x)
    for policy in ("global", "uniform"):
        if name in INFEASIBLE:
            with pytest.raises(fxprune.BudgetError):
                fxprune.prune(model, 0.5, example_inputs=x, policy=policy)
            continue
        r = fxprune.prune(model, 0.5, example_inputs=x, policy=policy)
        with torch.no_grad():
            y2 = r.model.eval()(x)
        assert y2.shape == y.shape
        assert not torch.isnan(y2).any()
        assert abs(r.report.flops_ratio - 0.5) <= 0.02 * 0.5, r.report.flops_ratio
        assert r.report.flops_ratio <= 0.5 + 1e-9
        # the cost model counts every op: its totals are what an independent counter measures
        assert r.report.flops_before == pytest.approx(full, rel=0.01)
        assert r.report.flops_after == pytest.approx(macs(r.model, x), rel=0.01)
        if policy == "global":  # the GAT encoder runs on every model of the zoo
            enc = encode(r.graph, seed=0)
            assert enc.group.shape == (len(r.graph.groups), 64) and torch.isfinite(enc.node).all()
        del r, y2  # one pruned model at a time (the largest models take GBs)
    assert_untouched(model, snap)


CNN_FAMILIES = ("resnet", "resnext", "wide_resnet", "vgg", "densenet", "mobilenet", "efficientnet",
                "regnet", "mnasnet", "shufflenet", "squeezenet", "googlenet", "inception", "alexnet")
CNNS = [n for n in ZOO if n.startswith(CNN_FAMILIES)]


def test_cnn_list_is_complete():
    assert len(CNNS) >= 60, CNNS


@pytest.mark.slow
@pytest.mark.parametrize("name", CNNS)
def test_zoo_dead_channel_equivalence(name):
    model, x = build(name)
    assert_dead_equivalent(dead_channel_check(model, x, seed=1))


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_zoo_fast_shapes_match_forward(name):
    """The kernel-free shape propagation records exactly the shapes of a real forward pass."""
    real, fast, prop = real_and_fast_shapes(*build(name))
    assert fast == real
    assert prop.fallbacks == [], f"ops run for real: {prop.fallbacks}"
