import contextlib
import os
import tempfile
import warnings
from pathlib import Path

import pytest
import torch

warnings.filterwarnings("ignore", category=FutureWarning)
os.environ["FXPRUNE_STRICT"] = "1"  # a failing op rule raises in tests (users get it pinned and reported)
# one thread per xdist worker (the README's command runs one worker per core), else two
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, os.cpu_count() or 1)))

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture
def shared_data():
    if not (SHARED / "data").is_dir():
        pytest.skip("../shared/data is not present (developer-only data)")
    return SHARED / "data"


@contextlib.contextmanager
def exclusive(tag: str):
    """One block with this ``tag`` at a time across processes (xdist workers): an flock in the
    temp folder. For tests that need most of the machine's memory."""
    import fcntl

    with open(Path(tempfile.gettempdir()) / f"fxprune-tests-{tag}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


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


def snapshot(model):
    """Everything of a model that fxprune must never change: weights and buffers (values, dtypes,
    devices, object identity), parameter flags, module flags and the module tree."""
    return {
        "state": {k: (v.detach().clone(), v.dtype, v.device) for k, v in model.state_dict(keep_vars=True).items()},
        "ids": {k: id(v) for k, v in model.state_dict(keep_vars=True).items()},
        "grad": {k: p.requires_grad for k, p in model.named_parameters()},
        "training": {n: m.training for n, m in model.named_modules()},
        "modules": [(n, type(m).__name__) for n, m in model.named_modules()],
        "attrs": {n: sorted(k for k in vars(m) if not k.startswith("_")) for n, m in model.named_modules()},
        # containers a forward may fill (timm's attention-bias caches): their contents, by identity
        "containers": {(n, k): [id(x) for x in (v.values() if isinstance(v, dict) else v)]
                       for n, m in model.named_modules() for k, v in vars(m).items()
                       if type(v) in (dict, list, set) and not k.startswith("_")},
    }


def assert_untouched(model, snap):
    """The model is bit-identical to its snapshot."""
    now = snapshot(model)
    assert now["modules"] == snap["modules"], "the module tree changed"
    assert now["ids"] == snap["ids"], "a parameter or buffer object was replaced"
    for k, (v, dtype, device) in snap["state"].items():
        w, dt, dev = now["state"][k]
        assert dt == dtype and dev == device, f"{k}: dtype/device changed"
        assert torch.equal(v, w), f"{k} changed"
    assert now["grad"] == snap["grad"], "requires_grad flags changed"
    assert now["training"] == snap["training"], "training flags changed"
    assert now["attrs"] == snap["attrs"], "module attributes were added or removed"
    assert now["containers"] == snap["containers"], "a dict/list attribute of a module was changed"
