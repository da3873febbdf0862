"""The dependency graph as a homogeneous attributed graph for the GAT encoder (policies.md §0.3).

Nodes:

- **op nodes**, one per traced operation with a tensor output (convolutions, linear layers,
  norms, adds, concats, pools, activations, reshapes ...), edges along the data flow in both
  directions;
- **group nodes**, one per channel group, with edges to every op whose parameters the group
  indexes (its producers and consumers).

Feature columns (numeric columns are standardised over the rows that use them; one-hots are not):

========================  ========================================================================
``kind:*``                one-hot op kind (conv, dwconv, linear, norm, add, mul, cat, pool, act,
                          reshape, other) or ``group``
``log2_in``, ``log2_out`` log2 of the op's input / output channel count
``kernel``, ``stride``    kernel area ``kh*kw`` and stride (convolutions and pools)
``depthwise``             1 for a conv with ``groups == in_channels``
``flops_share``           the op's share of the model's MACs
``params_share``          the op's share of the parameters
``position``              topological index / number of ops
``keep_in``, ``keep_out`` current keep ratio of the group feeding / produced by the op
``g_log2_size``           log2 of the group's channel count
``g_keep``                current keep ratio of the group
``g_producers``,          number of producer / consumer parameters of the group
``g_consumers``
``g_dep_flops``           FLOPs that depend on the group: cost(full) - cost(group at min_keep),
                          divided by cost(full)
``g_l1_mean/std/min/max`` statistics of the per-channel L1 norm of the producers, each divided by
                          the group's max
``g_bn_gamma``            mean ``|γ|`` of the group's norm layers (0 without one)
``g_residual``            1 when several modules produce the group's channels (a residual stream)
``g_pinned``              1 for a pinned group
========================  ========================================================================

Edge attributes: one-hot ``[forward, backward, group]``.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import nn
from torch.fx.passes.shape_prop import TensorMetadata

from ..ir.context import FIXED, NORM_W, OUT

KINDS = ("conv", "dwconv", "linear", "norm", "add", "mul", "cat", "pool", "act", "reshape", "other", "group")
OP_COLS = ("log2_in", "log2_out", "kernel", "stride", "depthwise", "flops_share", "params_share", "position",
           "keep_in", "keep_out")
GROUP_COLS = ("g_log2_size", "g_keep", "g_producers", "g_consumers", "g_dep_flops", "g_l1_mean", "g_l1_std",
              "g_l1_min", "g_l1_max", "g_bn_gamma", "g_residual", "g_pinned")
FEATURES = tuple(f"kind:{k}" for k in KINDS) + OP_COLS + GROUP_COLS
_UNSTANDARDISED = {"depthwise", "g_residual", "g_pinned"}

_NAMES = {
    "add": "add", "iadd": "add", "sub": "add", "mul": "mul", "imul": "mul", "cat": "cat", "concat": "cat",
    "flatten": "reshape", "view": "reshape", "reshape": "reshape", "permute": "reshape", "transpose": "reshape",
    "relu": "act", "relu_": "act", "sigmoid": "act", "hardswish": "act", "silu": "act", "gelu": "act",
    "hardsigmoid": "act", "relu6": "act", "adaptive_avg_pool2d": "pool", "max_pool2d": "pool",
    "avg_pool2d": "pool", "mean": "pool",
}


@dataclasses.dataclass
class GraphFeatures:
    x: torch.Tensor  # [N, len(FEATURES)] float32
    edge_index: torch.Tensor  # [2, E] int64
    edge_attr: torch.Tensor  # [E, 3] float32
    group_nodes: torch.Tensor  # [n_groups] int64: node index of each group (by group id)
    op_names: list[str]  # fx node name of each op node
    feature_names: tuple[str, ...] = FEATURES

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])

    def to_pyg(self):
        from torch_geometric.data import Data

        return Data(x=self.x, edge_index=self.edge_index, edge_attr=self.edge_attr)


def _shape(node) -> tuple[int, ...] | None:
    tm = node.meta.get("tensor_meta")
    return tuple(int(s) for s in tm.shape) if isinstance(tm, TensorMetadata) else None


def _kind(node, mod: nn.Module | None) -> str:
    if mod is not None:
        if isinstance(mod, nn.modules.conv._ConvNd):
            return "dwconv" if mod.groups > 1 and mod.groups == mod.in_channels else "conv"
        if isinstance(mod, nn.Linear):
            return "linear"
        if isinstance(mod, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)):
            return "norm"
        if isinstance(mod, (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
                            nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            return "pool"
        if isinstance(mod, (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid)):
            return "act"
        if isinstance(mod, nn.Flatten):
            return "reshape"
        return "other"
    name = getattr(node.target, "__name__", str(node.target)).strip("_")
    return _NAMES.get(name, "other")


def _channels(shape: tuple[int, ...] | None, mod: nn.Module | None, side: str) -> float:
    if isinstance(mod, nn.Linear):
        return float(mod.in_features if side == "in" else mod.out_features)
    if not shape:
        return 1.0
    return float(shape[1] if len(shape) >= 2 else shape[-1])


def _pair(v) -> tuple[int, int]:
    return (int(v[0]), int(v[-1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def graph_features(graph, keep_vec: np.ndarray | None = None, model: nn.Module | None = None) -> GraphFeatures:
    """Features of ``graph`` (a DepGraph) with the current plan ``keep_vec`` (0/1 per class;
    default: nothing pruned) and weight statistics of ``model`` (default: the analysed model)."""
    from ..importance import _norm_scores  # weight statistics per class

    gm = graph.gm
    model = gm if model is None else model
    keep_vec = np.ones(graph.n_classes) if keep_vec is None else np.asarray(keep_vec, np.float64)
    mods = dict(gm.named_modules())
    group_keep = np.zeros(len(graph.groups))
    np.add.at(group_keep, graph.group_of_class, keep_vec)
    group_keep /= np.maximum([g.size for g in graph.groups], 1)

    def keep_of(name: str | None) -> float:
        labs = graph.labels.get(name) if name else None
        if not isinstance(labs, dict) or not labs:
            return 1.0
        arr = labs.get(1, next(iter(labs.values())))
        arr = arr[arr != FIXED]
        return float(group_keep[graph.group_of_class[graph.comp[arr[0]]]]) if arr.size else 1.0

    ops, rows, index = [], [], {}
    for node in gm.graph.nodes:
        if node.op not in ("call_module", "call_function", "call_method") or _shape(node) is None:
            continue
        index[node.name] = len(ops)
        ops.append(node)
    total_params = float(sum(p.numel() for p in model.parameters())) or 1.0
    macs, params = [], []
    for node in ops:
        mod = mods.get(node.target) if node.op == "call_module" else None
        out = _shape(node)
        first = next((a for a in node.all_input_nodes if _shape(a) is not None), None)
        inp = _shape(first) if first is not None else None
        k, s, dw = 0.0, 0.0, 0.0
        numel = float(np.prod(out[1:])) if out and len(out) > 1 else 1.0
        mac = numel
        if isinstance(mod, nn.modules.conv._ConvNd):
            kh, kw = _pair(mod.kernel_size)
            k, s = float(kh * kw), float(_pair(mod.stride)[0])
            dw = float(mod.groups > 1 and mod.groups == mod.in_channels)
            mac = numel * mod.in_channels / mod.groups * kh * kw
        elif isinstance(mod, nn.Linear):
            mac = numel * mod.in_features
        elif isinstance(mod, (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)):
            kh, kw = _pair(mod.kernel_size)
            k, s = float(kh * kw), float(_pair(mod.stride if mod.stride is not None else mod.kernel_size)[0])
        macs.append(mac)
        params.append(float(sum(p.numel() for p in mod.parameters(recurse=False))) if mod is not None else 0.0)
        kind = _kind(node, mod)
        rows.append((kind, [math.log2(_channels(inp, mod, "in")), math.log2(_channels(out, mod, "out")), k, s, dw,
                            0.0, 0.0, len(rows) / max(len(ops), 1),
                            keep_of(first.name if first is not None else None), keep_of(node.name)]))
    tot = sum(macs) or 1.0
    for r, m, p in zip(rows, macs, params):
        r[1][5], r[1][6] = m / tot, p / total_params
    # group nodes
    l1 = _norm_scores(graph, 1, roles=(OUT,), model=model)
    gamma = _norm_scores(graph, 1, roles=(NORM_W,), model=model)
    cost, full = graph.cost, float(graph.cost.full_flops) or 1.0
    grows = []
    for g in graph.groups:
        v = l1[g.classes] * keep_vec[g.classes]
        mx = float(v.max()) if v.size and v.max() > 0 else 1.0
        at_min = np.ones(graph.n_classes)
        at_min[g.classes[g.min_keep:]] = 0.0
        out_mods = {m.param.rsplit(".", 1)[0] for m in g.members if m.role == OUT}
        grows.append([math.log2(g.size), float(group_keep[g.id]), float(len(g.producers)), float(len(g.consumers)),
                      (full - float(cost.flops(at_min))) / full, float(v.mean()) / mx, float(v.std()) / mx,
                      float(v.min()) / mx, 1.0, float(gamma[g.classes].mean()), float(len(out_mods) > 1),
                      float(g.pinned)])
    n_op, n_g = len(rows), len(grows)
    x = np.zeros((n_op + n_g, len(FEATURES)), np.float64)
    nk, no = len(KINDS), len(OP_COLS)
    for i, (kind, vals) in enumerate(rows):
        x[i, KINDS.index(kind)] = 1.0
        x[i, nk:nk + no] = vals
    for j, vals in enumerate(grows):
        x[n_op + j, KINDS.index("group")] = 1.0
        x[n_op + j, nk + no:] = vals
    for c, name in enumerate(FEATURES[nk:], start=nk):
        if name in _UNSTANDARDISED:
            continue
        sl = slice(0, n_op) if c < nk + no else slice(n_op, n_op + n_g)
        col = x[sl, c]
        sd = col.std()
        x[sl, c] = (col - col.mean()) / sd if sd > 1e-12 else 0.0
    # edges: data flow through the op nodes (skipping non-op nodes such as getitem) ...
    src, dst, typ = [], [], []

    def op_inputs(node) -> list[int]:
        out = []
        for a in node.all_input_nodes:
            if a.name in index:
                out.append(index[a.name])
            elif a.op in ("call_function", "call_method", "call_module"):
                out.extend(op_inputs(a))
        return out

    for node in ops:
        for a in set(op_inputs(node)):
            b = index[node.name]
            src += [a, b]
            dst += [b, a]
            typ += [0, 1]
    # ... and group <-> member ops
    by_module: dict[str, list[int]] = {}
    for node in ops:
        if node.op == "call_module":
            by_module.setdefault(node.target, []).append(index[node.name])
    for g in graph.groups:
        gi = n_op + g.id
        for mod_name in g.modules():
            for oi in by_module.get(mod_name, []):
                src += [gi, oi]
                dst += [oi, gi]
                typ += [2, 2]
    edge_index = torch.tensor([src, dst], dtype=torch.int64) if src else torch.zeros(2, 0, dtype=torch.int64)
    edge_attr = torch.nn.functional.one_hot(torch.tensor(typ, dtype=torch.int64), 3).float() if typ \
        else torch.zeros(0, 3)
    return GraphFeatures(torch.from_numpy(x).float(), edge_index, edge_attr,
                         torch.arange(n_op, n_op + n_g, dtype=torch.int64), [n.name for n in ops])
