"""Runs the op rules over a shape-propagated GraphModule (like an ``fx.Interpreter`` over labels
instead of values) and leaves the result in an ``AnalysisContext``.

What no rule covers is never guessed at: every channel that enters or leaves such an op is pinned,
with the reason recorded.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import torch.fx as fx

from . import rules  # noqa: F401 - registers the built-in rules
from .context import AnalysisContext, Keyed, Refuse, shape_of
from .flops import measured_macs
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
    elif isinstance(lab, Keyed):
        for item in lab.items.values():
            _pin_all(ctx, item, reason)


def _opaque(ctx: AnalysisContext, node: fx.Node, reason: str) -> Any:
    """An op no rule describes: pin every channel in and out, and count its FLOPs as measured."""
    ctx.notes.append((node.name, reason))
    for arg in _tensor_args(node):
        _pin_all(ctx, ctx.get(arg), reason)
    macs = measured_macs(node, ctx.modules)
    if macs:
        ctx.add_flops(macs, [])
    return _opaque_output(ctx, node.meta.get("tensor_meta"), reason)


def _get_attr(ctx: AnalysisContext, node: fx.Node) -> dict:
    """A parameter or buffer read in ``forward``: its first two dims of size > 1 may carry
    channels (out/in of a weight, the channels of a scale or an embedding); further dims (a
    kernel's) are fixed. How each dim is used is said by the rules of the ops that read it."""
    shp = shape_of(node)
    if shp is None:
        return {}
    out = {}
    name = ctx.name_of(node.target)
    for d in [d for d, s in enumerate(shp) if s > 1][:2]:
        if d in ctx.params.get(name, {}):  # read twice (tied, or by two get_attr nodes)
            out[d] = ctx.params[name][d].labels
        else:
            out[d] = ctx.label_param(name, d, ctx.param_atoms(name, d, shp[d]), "out")
    return out


def _placeholder(ctx: AnalysisContext, node: fx.Node, meta: Any, reason: str) -> Any:
    """Labels of a model input (a tensor, or a list/tuple/dict of tensors): every channel pinned."""
    if hasattr(meta, "shape"):
        lab = {}
        shp = tuple(meta.shape)
        if len(shp) >= 2 and shp[1] > 1:
            lab[1] = ctx.new_atoms(shp[1], "input")
            ctx.pin(lab[1], reason)
        return lab
    if isinstance(meta, (tuple, list)):
        return [_placeholder(ctx, node, m, reason) for m in meta]
    if isinstance(meta, dict):
        return Keyed({k: _placeholder(ctx, node, m, reason) for k, m in meta.items()})
    return None


def run_rules(gm: fx.GraphModule, leaves: dict[str, str] | None = None, *,
              input_reasons: dict[str, str] | None = None,
              output_reasons: dict[str, str] | None = None) -> AnalysisContext:
    """Analyse every node of ``gm`` (which must carry ``tensor_meta`` from shape propagation).
    ``input_reasons`` / ``output_reasons``: why the channels of a placeholder / of a value the
    output returns are pinned, by node name (default: model input / output)."""
    leaves = leaves or {}
    input_reasons = input_reasons or {}
    output_reasons = output_reasons or {}
    ctx = AnalysisContext(gm)
    for node in gm.graph.nodes:
        ctx.node = node
        ctx.term_start[node.name] = len(ctx.flops_terms)
        if node.op == "placeholder":
            ctx.labels[node.name] = _placeholder(ctx, node, node.meta.get("tensor_meta"),
                                                 input_reasons.get(node.name, f"model input '{node.name}'"))
            continue
        if node.op == "get_attr":
            ctx.labels[node.name] = _get_attr(ctx, node)
            continue
        if node.op == "output":
            for a in _tensor_args(node):
                _pin_all(ctx, ctx.get(a), output_reasons.get(a.name, "reaches the model output"))
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
        n_terms = len(ctx.flops_terms)
        try:
            ctx.labels[node.name] = rule.analyze(ctx, node)
        except Refuse as why:
            del ctx.flops_terms[n_terms:]  # a refusing rule counts nothing; the op is measured
            ctx.labels[node.name] = _opaque(ctx, node, f"{describe(node, ctx.modules)} at '{node.name}': {why}")
        except Exception as exc:  # noqa: BLE001 - a bug in a rule: pin, report, never guess
            if os.environ.get("FXPRUNE_STRICT"):
                raise
            log.warning("rule '%s' failed on node '%s' (%s: %s); its channels are pinned",
                        rule.name, node.name, type(exc).__name__, exc)
            del ctx.flops_terms[n_terms:]
            ctx.labels[node.name] = _opaque(
                ctx, node, f"internal error in rule '{rule.name}' at '{node.name}': {type(exc).__name__}: {exc}")
    ctx.node = None
    return ctx
