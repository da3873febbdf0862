"""Correctness oracles, usable by anyone who adds an op rule.

Dead-channel equivalence: zero a consistent subset of channels in every prunable group (producer
weights and biases, norm affine parameters and running means), prune exactly those channels, and
the output must not change. It holds for any architecture without channel-mixing normalisation
or attention, and it is the strongest single check that the IR and the surgery agree.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import torch

from .ir import analyze
from .ir.context import ZEROED_FOR_DEAD, tensor_at
from .ir.flops import model_macs
from .passes import prune_channels, pruned_model
from .plan import Plan


def random_plan(graph, seed: int = 0, drop: float = 1 / 3) -> Plan:
    """Drop about ``drop`` of the channels of every prunable group (at least one, never all)."""
    rng = np.random.default_rng(seed)
    keep = {}
    for g in graph.prunable_groups:
        n_drop = min(max(1, int(round(g.size * drop))), g.size - g.min_keep)
        keep[g.id] = np.sort(rng.choice(g.size, g.size - n_drop, replace=False))
    return Plan.from_graph(graph, keep)


@torch.no_grad()
def zero_dead_channels(graph, plan: Plan) -> None:
    """Zero, in ``graph.gm``, every producer position of the channels ``plan`` drops."""
    alive = graph.atom_keep(graph.keep_vector(plan.keep))
    for name, dims in graph.params.items():
        t = tensor_at(graph.gm, name)
        for d, pd in dims.items():
            if pd.role in ZEROED_FOR_DEAD:
                dead = np.flatnonzero(~alive[pd.labels])
                if dead.size:
                    t.index_fill_(d, torch.as_tensor(dead, device=t.device), 0.0)


def _flat(y: Any) -> list[torch.Tensor]:
    if isinstance(y, torch.Tensor):
        return [y]
    if isinstance(y, dict):
        return [t for v in y.values() for t in _flat(v)]
    if isinstance(y, (tuple, list)):
        return [t for v in y for t in _flat(v)]
    return []


def _rel_err(ys: list[torch.Tensor], zs: list[torch.Tensor]) -> float:
    """max |y - z| / max |y| over matching outputs; infinite when their number or shapes differ."""
    if len(ys) != len(zs) or any(a.shape != b.shape for a, b in zip(ys, zs)):
        return float("inf")
    err = 0.0
    for a, b in zip(ys, zs):
        if a.numel() and a.is_floating_point():
            err = max(err, float((a - b).abs().max()) / max(float(a.abs().max()), 1e-12))
        elif a.numel() and not torch.equal(a, b):
            return float("inf")
    return err


@dataclasses.dataclass
class DeadCheck:
    rel_err: float  # max |y_dead - y_pruned| / max |y_dead|
    groups_pruned: int
    params_predicted: float
    params_actual: int
    flops_predicted: float
    flops_actual: float  # from a fresh analysis of the pruned model
    params_full: float
    flops_full: float


def dead_channel_check(model: torch.nn.Module, example_inputs: Any, seed: int = 0, drop: float = 1 / 3) -> DeadCheck:
    """Run the dead-channel oracle on a copy of ``model`` (which is left untouched)."""
    work = copy.deepcopy(model).eval()
    graph = analyze(work, example_inputs)
    plan = random_plan(graph, seed, drop)
    zero_dead_channels(graph, plan)
    x = graph.example_inputs
    # the analysed model with those channels zeroed (graph.gm shares its parameters)
    dead_model = graph.root_model if graph.regions else graph.gm
    with torch.no_grad():
        y_dead = _flat(dead_model(*x))
        pruned = pruned_model(graph, plan).eval()
        y_pruned = _flat(pruned(*x))
        err = _rel_err(y_dead, y_pruned)
        if graph.regions:  # every region on its recorded inputs, too (detections may be empty)
            stitched = prune_channels(graph, plan).eval()
            err = max(err, _rel_err(_flat(graph.gm(*graph.region_inputs)), _flat(stitched(*graph.region_inputs))))
    keep = graph.keep_vector(plan.keep)
    if graph.regions:  # each pruned region on the inputs it was analysed with, times its calls
        flops = sum(r.calls * model_macs(pruned.get_submodule(r.path), r.inputs) for r in graph.regions)
        params = sum(p.numel() for r in graph.regions for p in pruned.get_submodule(r.path).parameters())
    else:
        flops = analyze(pruned, x).cost.full_flops
        params = sum(p.numel() for p in pruned.parameters())
    return DeadCheck(err, len(plan.keep), float(graph.cost.params(keep)), params, float(graph.cost.flops(keep)),
                     flops, graph.cost.full_params, graph.cost.full_flops)
