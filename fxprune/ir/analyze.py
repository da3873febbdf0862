"""Runs the op rules over a shape-propagated GraphModule (like an ``fx.Interpreter`` over labels
instead of values) and leaves the result in an ``AnalysisContext``.

What no rule covers is never guessed at: every channel that enters or leaves such an op is pinned,
with the reason recorded.
"""
from __future__ import annotations

import logging
from typing import Any

import torch.fx as fx

from . import rules  # noqa: F401 - registers the built-in rules
from .context import AnalysisContext, Refuse, shape_of
from .registry import describe, lookup

log = logging.getLogger(__name__)


def _tensor_args(node: fx.Node) -> list[fx.Node]:
    found: list[fx.Node] = []

    def visit(a: Any) -> None:
        if isinstance(a, fx.Node) and "tensor_meta" in a.meta:
            found.append(a)

    fx.node.map_arg((node.args, node.kwargs), visit)
    return found


def _opaque_output(ctx: AnalysisContext, meta: Any, reason: str) -> Any:
    if not hasattr(meta, "shape"):  # TensorMetadata is itself a NamedTuple: test it first
        if isinstance(meta, (tuple, list)):
            return [_opaque_output(ctx, m, reason) for m in meta]
        return None
    out = {}
    for d, s in enumerate(meta.shape):
        if d >= 1 and int(s) > 1:
            out[d] = ctx.new_atoms(int(s), "opaque")
            ctx.pin(out[d], reason)
    return out


def _pin_all(ctx: AnalysisContext, lab: Any, reason: str) -> None:
    if isinstance(lab, dict):
        ctx.pin_labels(lab, reason)
    elif isinstance(lab, list):
        for item in lab:
            _pin_all(ctx, item, reason)


def _opaque(ctx: AnalysisContext, node: fx.Node, reason: str) -> Any:
    ctx.notes.append((node.name, reason))
    for arg in _tensor_args(node):
        _pin_all(ctx, ctx.get(arg), reason)
    return _opaque_output(ctx, node.meta.get("tensor_meta"), reason)


def _get_attr(ctx: AnalysisContext, node: fx.Node) -> dict:
    shp = shape_of(node)
    if shp is None:
        return {}
    out = {}
    for d, s in enumerate(shp):
        if s > 1:
            out[d] = ctx.label_param(node.target, d, ctx.new_atoms(s, "param"), "out")
    return out


def run_rules(gm: fx.GraphModule, leaves: dict[str, str] | None = None) -> AnalysisContext:
    """Analyse every node of ``gm`` (which must carry ``tensor_meta`` from shape propagation)."""
    leaves = leaves or {}
    ctx = AnalysisContext(gm)
    for node in gm.graph.nodes:
        ctx.node = node
        if node.op == "placeholder":
            shp = shape_of(node)
            lab = {}
            if shp is not None and len(shp) >= 2 and shp[1] > 1:
                lab[1] = ctx.new_atoms(shp[1], "input")
                ctx.pin(lab[1], f"model input '{node.name}'")
            ctx.labels[node.name] = lab if shp is not None else None
            continue
        if node.op == "get_attr":
            ctx.labels[node.name] = _get_attr(ctx, node)
            continue
        if node.op == "output":
            _pin_all(ctx, [ctx.get(a) for a in _tensor_args(node)], "reaches the model output")
            continue
        if node.op == "call_module" and node.target in leaves:
            ctx.labels[node.name] = _opaque(
                ctx, node, f"submodule '{node.target}' could not be traced: {leaves[node.target]}")
            continue
        rule = lookup(node, ctx.modules)
        if rule is None:
            if not _tensor_args(node):
                meta = node.meta.get("tensor_meta")
                ctx.labels[node.name] = {} if hasattr(meta, "shape") else None
                continue
            ctx.labels[node.name] = _opaque(ctx, node, f"no channel rule for {describe(node, ctx.modules)}")
            continue
        try:
            ctx.labels[node.name] = rule.analyze(ctx, node)
        except Refuse as why:
            ctx.labels[node.name] = _opaque(ctx, node, f"{describe(node, ctx.modules)} at '{node.name}': {why}")
    ctx.node = None
    return ctx
