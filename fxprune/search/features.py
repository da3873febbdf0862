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

The structure (op nodes, edges, shapes, FLOPs shares, the columns that do not depend on a plan)
is computed once per graph; :meth:`GraphFeatures.with_plan` recomputes only the columns a plan or
the working weights change (``keep_in``, ``keep_out``, ``g_keep``, the L1 statistics and
``g_bn_gamma``). :func:`channel_features` gives one row per removable channel (the per-channel
inputs of a policy that decides channel by channel, ``ppo``).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

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
    static: Any = dataclasses.field(default=None, repr=False)  # _Static: what with_plan reuses

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])

    def to_pyg(self):
        from torch_geometric.data import Data

        return Data(x=self.x, edge_index=self.edge_index, edge_attr=self.edge_attr)

    def with_plan(self, keep_vec: np.ndarray | None = None, model: nn.Module | None = None) -> "GraphFeatures":
        """The same graph with the dynamic columns recomputed for a plan and weights."""
        return self.static.features(keep_vec, model)


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


def _standardise(x: np.ndarray, cols: range | list[int], rows: slice) -> None:
    for c in cols:
        if FEATURES[c] in _UNSTANDARDISED:
            continue
        col = x[rows, c]
        sd = col.std()
        x[rows, c] = (col - col.mean()) / sd if sd > 1e-12 else 0.0


class _Static:
    """Everything of the features that no plan changes, computed once per DepGraph."""

    def __init__(self, graph):
        self.graph = graph
        gm = graph.gm
        mods = dict(gm.named_modules())
        ops, index = [], {}
        for node in gm.graph.nodes:
            if node.op not in ("call_module", "call_function", "call_method") or _shape(node) is None:
                continue
            index[node.name] = len(ops)
            ops.append(node)
        self.op_names = [n.name for n in ops]
        total_params = float(sum(p.numel() for p in gm.parameters())) or 1.0
        nk, no = len(KINDS), len(OP_COLS)
        rows, macs, self.in_gid, self.out_gid = [], [], [], []
        for node in ops:
            mod = mods.get(node.target) if node.op == "call_module" else None
            out = _shape(node)
            first = next((a for a in node.all_input_nodes if _shape(a) is not None), None)
            inp = _shape(first) if first is not None else None
            k, st, dw = 0.0, 0.0, 0.0
            numel = float(np.prod(out[1:])) if out and len(out) > 1 else 1.0
            mac = numel
            if isinstance(mod, nn.modules.conv._ConvNd):
                kh, kw = _pair(mod.kernel_size)
                k, st = float(kh * kw), float(_pair(mod.stride)[0])
                dw = float(mod.groups > 1 and mod.groups == mod.in_channels)
                mac = numel * mod.in_channels / mod.groups * kh * kw
            elif isinstance(mod, nn.Linear):
                mac = numel * mod.in_features
            elif isinstance(mod, (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)):
                kh, kw = _pair(mod.kernel_size)
                k, st = float(kh * kw), float(_pair(mod.stride if mod.stride is not None else mod.kernel_size)[0])
            macs.append(mac)
            params = float(sum(p.numel() for p in mod.parameters(recurse=False))) if mod is not None else 0.0
            rows.append((_kind(node, mod), [math.log2(_channels(inp, mod, "in")), math.log2(_channels(out, mod, "out")),
                                            k, st, dw, 0.0, params / total_params, len(rows) / max(len(ops), 1)]))
            self.in_gid.append(self._gid(first.name if first is not None else None))
            self.out_gid.append(self._gid(node.name))
        tot = sum(macs) or 1.0
        n_op, n_g = len(rows), len(graph.groups)
        x = np.zeros((n_op + n_g, len(FEATURES)), np.float64)
        for i, (kind, vals) in enumerate(rows):
            x[i, KINDS.index(kind)] = 1.0
            x[i, nk:nk + 8] = vals
            x[i, nk + 5] = macs[i] / tot
        cost, full = graph.cost, float(graph.cost.full_flops) or 1.0
        for g in graph.groups:
            at_min = np.ones(graph.n_classes)
            at_min[g.classes[g.min_keep:]] = 0.0
            out_mods = {m.param.rsplit(".", 1)[0] for m in g.members if m.role == OUT}
            j = n_op + g.id
            x[j, KINDS.index("group")] = 1.0
            base = nk + no
            x[j, base + GROUP_COLS.index("g_log2_size")] = math.log2(g.size)
            x[j, base + GROUP_COLS.index("g_producers")] = float(len(g.producers))
            x[j, base + GROUP_COLS.index("g_consumers")] = float(len(g.consumers))
            x[j, base + GROUP_COLS.index("g_dep_flops")] = (full - float(cost.flops(at_min))) / full
            x[j, base + GROUP_COLS.index("g_residual")] = float(len(out_mods) > 1)
            x[j, base + GROUP_COLS.index("g_pinned")] = float(g.pinned)
        self.n_op, self.n_g = n_op, n_g
        self.x = x
        self.in_gid, self.out_gid = np.array(self.in_gid), np.array(self.out_gid)
        self.edge_index, self.edge_attr = self._edges(graph, ops, index, n_op)

    def _gid(self, name: str | None) -> int:
        labs = self.graph.labels.get(name) if name else None
        if not isinstance(labs, dict) or not labs:
            return -1
        arr = labs.get(1, next(iter(labs.values())))
        arr = arr[arr != FIXED]
        return int(self.graph.group_of_class[self.graph.comp[arr[0]]]) if arr.size else -1

    @staticmethod
    def _edges(graph, ops, index, n_op):
        src, dst, typ = [], [], []

        def op_inputs(node) -> list[int]:  # data flow through the op nodes, skipping getitem & co
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
        by_module: dict[str, list[int]] = {}
        for node in ops:
            if node.op == "call_module":
                by_module.setdefault(node.target, []).append(index[node.name])
        for g in graph.groups:  # group <-> member ops
            gi = n_op + g.id
            for mod_name in g.modules():
                for oi in by_module.get(mod_name, []):
                    src += [gi, oi]
                    dst += [oi, gi]
                    typ += [2, 2]
        edge_index = torch.tensor([src, dst], dtype=torch.int64) if src else torch.zeros(2, 0, dtype=torch.int64)
        edge_attr = (torch.nn.functional.one_hot(torch.tensor(typ, dtype=torch.int64), 3).float() if typ
                     else torch.zeros(0, 3))
        return edge_index, edge_attr

    def features(self, keep_vec: np.ndarray | None, model: nn.Module | None) -> GraphFeatures:
        from ..importance import _norm_scores  # weight statistics per class

        graph = self.graph
        keep = np.ones(graph.n_classes) if keep_vec is None else np.asarray(keep_vec, np.float64)
        model = graph.gm if model is None else model
        gkeep = np.zeros(len(graph.groups))
        np.add.at(gkeep, graph.group_of_class, keep)
        gkeep /= np.maximum([g.size for g in graph.groups], 1)
        x = self.x.copy()
        nk, no = len(KINDS), len(OP_COLS)
        ki, ko = nk + OP_COLS.index("keep_in"), nk + OP_COLS.index("keep_out")
        x[:self.n_op, ki] = np.where(self.in_gid >= 0, gkeep[np.maximum(self.in_gid, 0)], 1.0)
        x[:self.n_op, ko] = np.where(self.out_gid >= 0, gkeep[np.maximum(self.out_gid, 0)], 1.0)
        l1 = _norm_scores(graph, 1, roles=(OUT,), model=model)
        gamma = _norm_scores(graph, 1, roles=(NORM_W,), model=model)
        base = nk + no
        for g in graph.groups:
            v = l1[g.classes] * keep[g.classes]
            mx = float(v.max()) if v.size and v.max() > 0 else 1.0
            j = self.n_op + g.id
            x[j, base + GROUP_COLS.index("g_keep")] = float(gkeep[g.id])
            x[j, base + GROUP_COLS.index("g_l1_mean")] = float(v.mean()) / mx
            x[j, base + GROUP_COLS.index("g_l1_std")] = float(v.std()) / mx
            x[j, base + GROUP_COLS.index("g_l1_min")] = float(v.min()) / mx
            x[j, base + GROUP_COLS.index("g_l1_max")] = 1.0
            x[j, base + GROUP_COLS.index("g_bn_gamma")] = float(gamma[g.classes].mean())
        _standardise(x, range(nk, nk + no), slice(0, self.n_op))
        _standardise(x, range(nk + no, len(FEATURES)), slice(self.n_op, self.n_op + self.n_g))
        return GraphFeatures(torch.from_numpy(x).float(), self.edge_index, self.edge_attr,
                             torch.arange(self.n_op, self.n_op + self.n_g, dtype=torch.int64), self.op_names,
                             static=self)


def graph_features(graph, keep_vec: np.ndarray | None = None, model: nn.Module | None = None) -> GraphFeatures:
    """Features of ``graph`` (a DepGraph) with the current plan ``keep_vec`` (0/1 per class;
    default: nothing pruned) and weight statistics of ``model`` (default: the analysed model). The
    plan-independent part is computed once per graph and cached on it."""
    static = getattr(graph, "_feature_static", None)
    if static is None:
        static = _Static(graph)
        graph._feature_static = static
    return static.features(keep_vec, model)


CHANNEL_FEATURES = ("l1", "bn_gamma", "rank", "activation")


@torch.no_grad()
def channel_features(graph, model: nn.Module | None = None, data: Any = None, n_samples: int = 256) -> np.ndarray:
    """One row per removable channel (class), ``CHANNEL_FEATURES`` columns: the group-aggregated L1
    norm of its filters divided by the group's largest, ``|γ|`` of its norm layers (0 without one),
    its rank inside the group by L1 (0 = most important, divided by the group size), and its mean
    absolute activation over ``n_samples`` samples of ``data`` divided by the group's largest (0
    without data)."""
    from ..importance import _norm_scores

    model = graph.gm if model is None else model
    l1 = _norm_scores(graph, 1, roles=(OUT,), model=model)
    gamma = _norm_scores(graph, 1, roles=(NORM_W,), model=model)
    gmax = np.zeros(len(graph.groups))
    np.maximum.at(gmax, graph.group_of_class, l1)
    out = np.zeros((graph.n_classes, len(CHANNEL_FEATURES)))
    out[:, 0] = l1 / np.maximum(gmax[graph.group_of_class], 1e-30)
    out[:, 1] = gamma
    sizes = np.array([g.size for g in graph.groups])
    order = np.lexsort((-l1, graph.group_of_class))
    rank = np.empty(graph.n_classes, np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank[order] = np.arange(graph.n_classes) - np.repeat(starts, sizes)
    out[:, 2] = rank / np.maximum(sizes[graph.group_of_class], 1)
    if data is not None:
        out[:, 3] = _activations(graph, model, data, n_samples)
    return out


def _activations(graph, model: nn.Module, data: Any, n_samples: int) -> np.ndarray:
    """Mean |activation| per class over the nodes whose channel dim carries it (a forward of
    ``model`` over ``n_samples`` samples, recorded node by node)."""
    from torch.fx import Interpreter

    from ..data import batches
    from ..ir.trace import eval_mode

    acc = np.zeros(graph.n_classes)
    cnt = np.zeros(graph.n_classes)

    class Recorder(Interpreter):
        def run_node(self, n):
            val = super().run_node(n)
            lab = graph.labels.get(n.name)
            if isinstance(val, torch.Tensor) and isinstance(lab, dict) and 1 in lab and val.dim() >= 2:
                arr = lab[1]
                ok = arr != FIXED
                v = val.detach().abs().float().transpose(0, 1).reshape(val.shape[1], -1).mean(1).cpu().numpy()
                cls = graph.comp[arr[ok]]
                np.add.at(acc, cls, v[ok])
                np.add.at(cnt, cls, 1.0)
            return val

    with eval_mode(model):
        for x, _ in batches(data, n_samples):
            Recorder(model).run(x.to(next(model.parameters()).device))
    act = acc / np.maximum(cnt, 1.0)
    gmax = np.zeros(len(graph.groups))
    np.maximum.at(gmax, graph.group_of_class, act)
    return act / np.maximum(gmax[graph.group_of_class], 1e-30)


def with_channel_nodes(feats: GraphFeatures, chan: np.ndarray | torch.Tensor,
                       group_of_class: np.ndarray) -> tuple[GraphFeatures, torch.Tensor]:
    """The channel-granularity graph (policies.md §3.5's option): one extra node per channel
    (class), joined both ways to its group's node with the group-membership edge type. Node
    features: the graph's columns (zeros for channel nodes) followed by the channel features
    (zeros for the other nodes). Returns the graph and the node index of every channel."""
    chan = torch.as_tensor(chan, dtype=torch.float32)
    n, c = feats.num_nodes, chan.shape[0]
    x = torch.zeros(n + c, feats.x.shape[1] + chan.shape[1])
    x[:n, :feats.x.shape[1]] = feats.x
    x[n:, feats.x.shape[1]:] = chan
    nodes = torch.arange(n, n + c)
    groups = feats.group_nodes[torch.as_tensor(group_of_class, dtype=torch.int64)]
    edge_index = torch.cat([feats.edge_index, torch.stack([groups, nodes]), torch.stack([nodes, groups])], 1)
    member = torch.nn.functional.one_hot(torch.full((2 * c,), 2, dtype=torch.int64), 3).float()
    edge_attr = torch.cat([feats.edge_attr, member])
    out = GraphFeatures(x, edge_index, edge_attr, feats.group_nodes, feats.op_names, feats.feature_names, feats.static)
    return out, nodes
