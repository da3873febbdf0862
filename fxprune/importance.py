"""Channel importance, the criteria policies rank channels by: scores aggregated over every
member of a group (all parameter dims its channels index: producers, consumers and norm affine
parameters)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .errors import FxpruneError
from .ir.context import FIXED, IN, NORM_B, NORM_W, OUT, tensor_at
from .ir.trace import eval_mode

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


def _norm_scores(graph, p: float, roles=_WEIGHT_ROLES, model=None) -> np.ndarray:
    fn = (lambda t: t.abs()) if p == 1 else (lambda t: t * t)
    model = graph.gm if model is None else model
    vals = {(n, d): _per_position(tensor_at(model, n), d, fn)
            for n, dims in graph.params.items() for d, pd in dims.items() if pd.role in roles}
    s = _accumulate(graph, vals)
    return np.sqrt(s) if p == 2 else s


def _taylor_batches(data: Any, limit: int | None) -> list[tuple[Any, Any]]:
    if data is None:
        raise FxpruneError("importance='taylor' needs data=: a DataLoader or iterable of (inputs, targets)")
    if isinstance(data, torch.Tensor):
        return [(data, None)]
    from .data import ArrayDataset, batches

    if limit is None:  # the first batch only
        data = [next(iter(data.loader(256) if isinstance(data, ArrayDataset) else data))]
    return batches(data, limit)


def _taylor(graph, data: Any, model=None, limit: int | None = None) -> np.ndarray:
    """First-order Taylor: ``|sum W * dL/dW|`` per channel position, the loss summed over the
    batches of ``data`` (the first batch when ``limit`` is None)."""
    gm = graph.gm if model is None else model
    names = [(n, d) for n, dims in graph.params.items() for d, pd in dims.items() if pd.role in _WEIGHT_ROLES]
    tensors = {n: tensor_at(gm, n) for n, _ in names}
    leaves = {n: t for n, t in tensors.items() if isinstance(t, torch.nn.Parameter) and t.requires_grad}
    dev = next(iter(leaves.values())).device if leaves else torch.device("cpu")
    g: dict[str, torch.Tensor] = {}
    with eval_mode(gm), torch.enable_grad():
        for x, y in _taylor_batches(data, limit):
            out = gm(x.to(dev))
            out = out[0] if isinstance(out, (tuple, list)) else out
            if y is not None and out.dim() == 2 and y.dtype in (torch.int64, torch.int32):
                loss = torch.nn.functional.cross_entropy(out, y.to(out.device), reduction="sum")
            else:
                loss = out.float().pow(2).mean()  # label-free: sensitivity of the output energy
            grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
            for n, gr in zip(leaves, grads):
                if gr is not None:
                    g[n] = g[n] + gr if n in g else gr
    vals = {}
    for n, d in names:
        if g.get(n) is None:
            continue
        prod = (tensors[n].detach() * g[n]).float()
        other = [k for k in range(prod.dim()) if k != d]
        v = prod.sum(dim=other) if other else prod
        vals[(n, d)] = v.abs().cpu().numpy().astype(np.float64)
    return _accumulate(graph, vals)


def class_importance(graph, criterion: str = "l2", data: Any = None, seed: int = 0, *,
                     model: torch.nn.Module | None = None, limit: int | None = None) -> np.ndarray:
    """Importance of every class (removable channel) of ``graph``; higher = more important.

    ``model``: score these weights instead of the analysed model's (a module with the same
    parameter names, e.g. a search's working copy). ``limit``: for ``taylor``, sum the loss over
    this many samples of ``data`` (default: its first batch)."""
    if criterion not in CRITERIA:
        raise FxpruneError(f"unknown importance '{criterion}'; choose one of {CRITERIA}")
    if criterion == "random":
        return np.random.default_rng(seed).random(graph.n_classes)
    if criterion in ("l1", "l2"):
        return _norm_scores(graph, 1 if criterion == "l1" else 2, model=model)
    if criterion == "taylor":
        if graph.regions:
            raise FxpruneError(f"importance='taylor' needs the gradient of the whole model, but "
                               f"{graph.model_name}.forward is not traceable; use l1, l2 or bn")
        return _taylor(graph, data, model, limit)
    bn = _norm_scores(graph, 1, roles=(NORM_W,), model=model)
    fallback = _norm_scores(graph, 2, model=model)
    has_bn = np.zeros(graph.n_classes, bool)
    for g in graph.groups:
        if any(m.role == NORM_W for m in g.members):
            has_bn[g.classes] = True
    return np.where(has_bn, bn, fallback)  # groups without a norm layer fall back to L2


def group_importance(graph, criterion: str = "l2", data: Any = None, seed: int = 0) -> dict[int, np.ndarray]:
    s = class_importance(graph, criterion, data, seed)
    return {g.id: s[g.classes] for g in graph.groups}
