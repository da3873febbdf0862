"""Channel importance, aggregated over every member of a group (all parameter dims its channels
index: producers, consumers and norm affine parameters)."""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch

from ..errors import FxpruneError
from ..ir.context import FIXED, IN, NORM_B, NORM_W, OUT, tensor_at
from ..ir.trace import eval_mode

CRITERIA = ("l1", "l2", "bn", "taylor", "random")
_WEIGHT_ROLES = (OUT, IN, NORM_W, NORM_B)


def _per_position(t: torch.Tensor, dim: int, fn) -> np.ndarray:
    t = t.detach().float()
    other = [d for d in range(t.dim()) if d != dim]
    v = fn(t)
    return (v.sum(dim=other) if other else v).cpu().numpy().astype(np.float64)


def _accumulate(graph, values: dict[tuple[str, int], np.ndarray]) -> np.ndarray:
    scores = np.zeros(graph.n_classes)
    for (name, d), vals in values.items():
        lab = graph.params[name][d].labels
        ok = lab != FIXED
        np.add.at(scores, graph.comp[lab[ok]], vals[ok])
    return scores


def _norm_scores(graph, p: float, roles=_WEIGHT_ROLES) -> np.ndarray:
    fn = (lambda t: t.abs()) if p == 1 else (lambda t: t * t)
    vals = {(n, d): _per_position(tensor_at(graph.gm, n), d, fn)
            for n, dims in graph.params.items() for d, pd in dims.items() if pd.role in roles}
    s = _accumulate(graph, vals)
    return np.sqrt(s) if p == 2 else s


def _first_batch(data: Any) -> tuple[Any, Any]:
    if data is None:
        raise FxpruneError("importance='taylor' needs data=: a DataLoader or iterable of (inputs, targets)")
    if isinstance(data, torch.Tensor):
        return data, None
    batch = next(iter(data)) if isinstance(data, Iterable) else data
    if isinstance(batch, (tuple, list)):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    return batch, None


def _taylor(graph, data: Any) -> np.ndarray:
    x, y = _first_batch(data)
    gm = graph.gm
    names = [(n, d) for n, dims in graph.params.items() for d, pd in dims.items() if pd.role in _WEIGHT_ROLES]
    tensors = {n: tensor_at(gm, n) for n, _ in names}
    leaves = {n: t for n, t in tensors.items() if isinstance(t, torch.nn.Parameter) and t.requires_grad}
    with eval_mode(gm), torch.enable_grad():
        out = gm(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        if y is not None and out.dim() == 2 and y.dtype in (torch.int64, torch.int32):
            loss = torch.nn.functional.cross_entropy(out, y.to(out.device))
        else:
            loss = out.float().pow(2).mean()  # label-free: sensitivity of the output energy
        grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    g = {n: gr for n, gr in zip(leaves, grads)}
    vals = {}
    for n, d in names:
        if g.get(n) is None:
            continue
        prod = (tensors[n].detach() * g[n]).float()
        other = [k for k in range(prod.dim()) if k != d]
        v = prod.sum(dim=other) if other else prod
        vals[(n, d)] = v.abs().cpu().numpy().astype(np.float64)
    return _accumulate(graph, vals)


def class_importance(graph, criterion: str = "l2", data: Any = None, seed: int = 0) -> np.ndarray:
    """Importance of every class (removable channel) of ``graph``; higher = more important."""
    if criterion not in CRITERIA:
        raise FxpruneError(f"unknown importance '{criterion}'; choose one of {CRITERIA}")
    if criterion == "random":
        return np.random.default_rng(seed).random(graph.n_classes)
    if criterion in ("l1", "l2"):
        return _norm_scores(graph, 1 if criterion == "l1" else 2)
    if criterion == "taylor":
        return _taylor(graph, data)
    bn = _norm_scores(graph, 1, roles=(NORM_W,))
    fallback = _norm_scores(graph, 2)
    has_bn = np.zeros(graph.n_classes, bool)
    for g in graph.groups:
        if any(m.role == NORM_W for m in g.members):
            has_bn[g.classes] = True
    return np.where(has_bn, bn, fallback)  # groups without a norm layer fall back to L2


def group_importance(graph, criterion: str = "l2", data: Any = None, seed: int = 0) -> dict[int, np.ndarray]:
    s = class_importance(graph, criterion, data, seed)
    return {g.id: s[g.classes] for g in graph.groups}
