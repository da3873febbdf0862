import os
import warnings
from pathlib import Path

import pytest
import torch

warnings.filterwarnings("ignore", category=FutureWarning)
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture
def shared_data():
    if not (SHARED / "data").is_dir():
        pytest.skip("../shared/data is not present (developer-only data)")
    return SHARED / "data"


def assert_dead_equivalent(check, tol=1e-4):
    """The pruned model equals the dead-channel model and is as small as the cost model says."""
    assert check.groups_pruned > 0, "nothing was pruned"
    assert check.rel_err < tol, f"pruned output differs: rel err {check.rel_err:.2e}"
    assert check.params_actual == pytest.approx(check.params_predicted, rel=0, abs=0.5)
    assert check.params_actual < check.params_full
    assert check.flops_actual == pytest.approx(check.flops_predicted, rel=1e-9)
    assert check.flops_actual < check.flops_full


def _recorded(gm):
    """``{node: (shape, dtype)}`` (nested for tuple outputs) as shape propagation recorded it."""
    def norm(tm):
        if hasattr(tm, "shape"):
            return (tuple(tm.shape), tm.dtype)
        if isinstance(tm, (tuple, list)):
            return [norm(t) for t in tm]
        if isinstance(tm, dict):
            return {k: norm(v) for k, v in tm.items()}
        return tm
    return {n.name: norm(n.meta.get("tensor_meta")) for n in gm.graph.nodes}


def real_and_fast_shapes(model, x):
    """Shapes from a real forward (torch.fx ShapeProp) and from MetaShapeProp on the same graph,
    plus the MetaShapeProp object (its ``fallbacks`` list the ops it had to run for real)."""
    from fxprune.ir.shapes import MetaShapeProp
    from fxprune.ir.trace import propagate_shapes, trace

    gm = trace(model).gm
    propagate_shapes(gm, (x,), fast=False)
    real = _recorded(gm)
    for n in gm.graph.nodes:
        n.meta.pop("tensor_meta", None)
    prop = MetaShapeProp(gm)
    with torch.no_grad():
        prop.propagate((x,))
    return real, _recorded(gm), prop
