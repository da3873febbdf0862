"""The surgery pass: physically remove the channels a plan drops."""
from __future__ import annotations

import copy
import logging
import operator
from typing import Any

import numpy as np
import torch
import torch.fx as fx

from ..errors import SurgeryError
from ..ir.context import shape_of, shapes_of, tensor_at
from ..ir.shapes import VALUE
from ..ir.registry import lookup
from ..plan import Plan

log = logging.getLogger(__name__)


class Sizes:
    """Old and new sizes of every dim of every node, for the rules' rewrite/resize hooks.
    Nodes are looked up by name, so nodes of a copied graph work too."""

    def __init__(self, graph, atom_keep: np.ndarray):
        self.graph = graph
        self.atom_keep = atom_keep
        self._orig = {n.name: n for n in graph.gm.graph.nodes}

    def labels(self, node: Any) -> Any:
        return self.graph.labels.get(node.name) if isinstance(node, fx.Node) else None

    def old_shape(self, node: fx.Node) -> tuple[int, ...]:
        return shape_of(self._orig[node.name])

    def old_shapes(self, node: fx.Node) -> list:
        return shapes_of(self._orig[node.name])

    def kept_positions(self, labels: np.ndarray) -> np.ndarray:
        return self.atom_keep[labels]

    def kept(self, node: fx.Node, dim: int, item: int | None = None) -> np.ndarray | None:
        lab = self.labels(node)
        if item is not None:
            lab = lab[item] if isinstance(lab, list) else None
        if not isinstance(lab, dict) or dim not in lab:
            return None
        return self.atom_keep[lab[dim]]

    def new(self, node: fx.Node, dim: int) -> int:
        kept = self.kept(node, dim)
        return int(kept.sum()) if kept is not None else self.old_shape(node)[dim]

    def new_item(self, node: fx.Node, item: int, dim: int) -> int:
        kept = self.kept(node, dim, item)
        return int(kept.sum()) if kept is not None else self.old_shapes(node)[item][dim]

    def new_shape(self, node: fx.Node) -> tuple[int, ...]:
        return tuple(self.new(node, d) for d in range(len(self.old_shape(node))))


def _holders(gm: fx.GraphModule) -> dict[int, list[tuple[torch.nn.Module, str]]]:
    """Every (module, attribute) that holds each parameter or buffer: tied tensors have several."""
    out: dict[int, list[tuple[torch.nn.Module, str]]] = {}
    for mod in {id(m): m for m in gm.modules()}.values():
        for table in (mod._parameters, mod._buffers):
            for attr, t in table.items():
                if t is not None:
                    out.setdefault(id(t), []).append((mod, attr))
    return out


def _replace_tensor(gm: fx.GraphModule, name: str, new: torch.Tensor, holders: dict) -> None:
    """Put ``new`` in place of tensor ``name`` everywhere it is held, so tied tensors stay tied."""
    owner, _, attr = name.rpartition(".")
    mod = gm.get_submodule(owner) if owner else gm
    old = getattr(mod, attr)
    if isinstance(old, torch.nn.Parameter):
        new = torch.nn.Parameter(new, requires_grad=old.requires_grad)
    places = holders.get(id(old)) or [(mod, attr)]
    for m, a in places:
        if a in m._parameters:
            m._parameters[a] = new
        elif a in m._buffers:
            m._buffers[a] = new
        else:
            setattr(m, a, new)


def _slice_tensors(gm: fx.GraphModule, graph, sizes: Sizes) -> None:
    holders = _holders(gm)
    for name, dims in graph.params.items():
        new = tensor_at(gm, name).detach()
        changed = False
        for d, pd in dims.items():
            kept = sizes.kept_positions(pd.labels)
            if kept.all():
                continue
            idx = torch.as_tensor(np.flatnonzero(kept), device=new.device)
            new = new.index_select(d, idx)
            changed = True
        if changed:
            _replace_tensor(gm, name, new.contiguous().clone(), holders)


def is_impure(node: fx.Node) -> bool:
    """torch.fx's notion of side effects, plus in-place updates whose result is not used
    (``out.mul_(gain)``, ``self.calls.add_(1)``, ``x[:, 0] = y``): dead-code elimination must keep them."""
    if node.is_impure():
        return True
    if node.op == "call_method":
        return isinstance(node.target, str) and node.target.endswith("_") and not node.target.endswith("__")
    if node.op == "call_function":
        name = getattr(node.target, "__name__", "")
        return (node.target is operator.setitem or node.kwargs.get("inplace") is True
                or (name.endswith("_") and not name.endswith("__")))
    return False


def prune_channels(graph, plan: Plan, weights: torch.nn.Module | None = None) -> fx.GraphModule:
    """Apply ``plan`` to ``graph.gm`` and return a new, smaller GraphModule.

    ``weights``: take the parameters and buffers from this model instead (a trained working copy
    of ``graph.gm``: the same module tree, e.g. a search's distilled weights).

    Preserves: the computation on every kept channel (exactly, up to float rounding, when the
    removed channels are dead), the module hierarchy and names, parameter ``requires_grad`` flags
    and module training flags. Updates: parameter and buffer shapes, module attributes
    (``in_channels``, ``groups``, ``num_features``, ``normalized_shape`` ...), constant arguments that
    carry channel counts (view/reshape/expand sizes, split sizes, slice bounds, pad amounts).
    Removes dead nodes (in-place updates are kept) and lints the graph. ``graph.gm`` and
    ``weights`` are not modified. A rule that cannot rewrite a node raises :class:`SurgeryError`.
    """
    plan.validate(graph)
    return surgery(graph, graph.keep_vector(plan.keep), weights)


def _working_copy(graph, weights: torch.nn.Module | None) -> fx.GraphModule:
    if weights is None:
        return copy.deepcopy(graph.gm)
    if isinstance(weights, fx.GraphModule) and [n.name for n in weights.graph.nodes] == \
            [n.name for n in graph.gm.graph.nodes]:
        return copy.deepcopy(weights)
    gm = copy.deepcopy(graph.gm)
    try:
        gm.load_state_dict(weights.state_dict())
    except RuntimeError as exc:
        raise SurgeryError(f"weights= does not fit the analysed model {graph.model_name}: {exc}") from exc
    return gm


def surgery(graph, keep_vec: np.ndarray, weights: torch.nn.Module | None = None) -> fx.GraphModule:
    """:func:`prune_channels` for a 0/1 keep vector over classes (no plan validation)."""
    sizes = Sizes(graph, graph.atom_keep(keep_vec))
    gm = _working_copy(graph, weights)
    _slice_tensors(gm, graph, sizes)
    modules = dict(gm.named_modules())
    opaque = {name for name, _ in graph.notes}
    for node in gm.graph.nodes:
        if node.op not in ("call_module", "call_function", "call_method") or node.name in opaque:
            continue
        rule = lookup(node, modules)
        if rule is None:
            continue
        try:
            if rule.resize is not None and node.op == "call_module":
                rule.resize(modules[node.target], sizes, node)
            if rule.rewrite is not None:
                rule.rewrite(node, sizes)
        except Exception as exc:  # noqa: BLE001 - named, with the rule that failed
            raise SurgeryError(f"rule '{rule.name}' cannot rewrite {node.format_node()} for this plan: "
                               f"{type(exc).__name__}: {exc}") from exc
    for node in gm.graph.nodes:
        node.meta.pop("tensor_meta", None)
        node.meta.pop(VALUE, None)
    gm.graph.eliminate_dead_code(is_impure_node=is_impure)
    gm.graph.lint()
    return fx.GraphModule(gm, gm.graph, graph.model_name)  # a plain, compiled GraphModule


def pruned_model(graph, plan: Plan, weights: torch.nn.Module | None = None) -> torch.nn.Module:
    """The pruned model a user gets: :func:`prune_channels`'s GraphModule, or, for a model whose
    ``forward`` is untraceable, a copy of the model with its pruned regions put back
    (:func:`fxprune.ir.regions.assemble`)."""
    gm = prune_channels(graph, plan, weights)
    if not graph.regions:
        return gm
    from ..ir.regions import assemble

    return assemble(graph, gm)
