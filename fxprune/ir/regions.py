"""Models whose top-level ``forward`` cannot be traced: analyse their largest traceable submodules.

A detector's ``forward`` takes a list of images and ends in data-dependent post-processing; RAFT's
loops until convergence. Neither is a graph. But the parts that hold the weights (backbone, FPN,
heads) are. :func:`analyze_regions`

1. runs the model once on the example inputs (a structural copy, eval mode, no gradients) and
   records the arguments of every submodule's first call and how often it is called;
2. walks the module tree from the top and traces each called submodule with parameters on its
   recorded arguments; one that traces is a *region*, one that does not is searched below;
3. stitches the regions' graphs into one GraphModule over the model's own module tree (targets
   keep their full names), so analysis, cost model and surgery run unchanged. A region's inputs
   and outputs are pinned: code that could not be traced produces and reads them. A region called
   ``k`` times (a head applied per feature level, an update block per iteration) counts ``k`` times
   in the cost model;
4. after surgery, :func:`assemble` puts each pruned region back, as a small GraphModule, into a
   copy of the model, whose untraced code runs as before.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import logging
from typing import Any

import torch
import torch.fx as fx

from ..errors import AnalysisError, TraceFailure
from .trace import Traced, _is_tensor_tree, eval_mode, structural_copy, trace

log = logging.getLogger(__name__)

_PLAIN = (type(None), bool, int, float, str)


@dataclasses.dataclass
class Region:
    path: str  # the submodule's qualified name
    tag: str  # prefix of its node names in the stitched graph
    calls: int  # how often the untraced code calls it per forward
    placeholders: list[str]  # its forward's argument names, in order
    output_index: int  # position of its output in the stitched graph's output tuple
    inputs: tuple = ()  # the arguments of its first call (real activations)


@dataclasses.dataclass
class _Call:
    args: tuple
    kwargs: dict
    count: int = 1


def record_calls(root: torch.nn.Module, inputs: tuple) -> tuple[dict[str, _Call], float]:
    """Arguments of the first call of every submodule during one forward of ``root``, and the
    forward's multiply-accumulates (``torch.utils.flop_counter``)."""
    from torch.utils.flop_counter import FlopCounterMode

    calls: dict[str, _Call] = {}
    names = {id(m): n for n, m in root.named_modules()}
    hooks = []

    def hook(mod, args, kwargs):
        name = names.get(id(mod))
        if name is None:
            return
        if name in calls:
            calls[name].count += 1
        else:
            calls[name] = _Call(tuple(args), dict(kwargs))

    for m in {id(m): m for m in root.modules()}.values():
        hooks.append(m.register_forward_pre_hook(hook, with_kwargs=True))
    saved = [(b, b.detach().clone()) for b in root.buffers()]
    try:
        with eval_mode(root), torch.no_grad(), FlopCounterMode(display=False) as counter:
            root(*inputs)
    except Exception as exc:  # noqa: BLE001 - the model itself fails on the example input
        raise AnalysisError(f"{type(root).__name__} fails on the example inputs: {type(exc).__name__}: {exc}") from exc
    finally:
        for h in hooks:
            h.remove()
        with torch.no_grad():
            for b, v in saved:
                b.copy_(v)
    return calls, counter.get_total_flops() / 2.0


def _positional(mod: torch.nn.Module, call: _Call) -> tuple[list[str], tuple, dict] | None:
    """(argument names, tensor arguments in order, constant arguments) of a recorded call, or None
    when an argument is neither tensors nor a plain constant."""
    try:
        bound = inspect.signature(mod.forward).bind(*call.args, **call.kwargs)
    except (TypeError, ValueError):
        return None
    names, values, consts = [], [], {}
    for name, val in bound.arguments.items():
        kind = bound.signature.parameters[name].kind
        if kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            return None
        if _is_tensor_tree(val):
            if consts:  # a tensor after a constant: placeholders must come first
                return None
            names.append(name)
            values.append(val)
        elif isinstance(val, _PLAIN):
            consts[name] = val
        else:
            return None
    return names, tuple(values), consts


def _has_params(mod: torch.nn.Module) -> bool:
    return next(mod.parameters(), None) is not None


def find_regions(root: torch.nn.Module, calls: dict[str, _Call]) -> list[tuple[str, Traced, tuple, dict, list[str]]]:
    """The largest traceable, called submodules with parameters (see the module docstring)."""
    found = []

    def visit(path: str, mod: torch.nn.Module) -> None:
        if not _has_params(mod):
            return
        call = calls.get(path)
        if call is not None:
            pos = _positional(mod, call)
            if pos is not None:
                names, values, consts = pos
                try:
                    traced = trace(mod, example_inputs=values, copy_model=False, concrete=consts)
                    found.append((path, traced, values, call, names))
                    return
                except TraceFailure as exc:
                    log.info("'%s' is not traceable as a whole: %s", path, exc)
        for name, child in mod.named_children():
            visit(f"{path}.{name}" if path else name, child)

    for name, child in root.named_children():
        visit(name, child)
    return found


def stitch(root: torch.nn.Module, found: list, name: str) -> tuple[Traced, tuple, list[Region], dict, dict]:
    """One GraphModule over ``root`` that runs every region (see the module docstring)."""
    g = fx.Graph()
    regions: list[Region] = []
    outputs, inputs, leaves = [], [], {}
    in_reasons, out_reasons = {}, {}
    for k, (path, traced, values, call, arg_names) in enumerate(found):
        tag = f"r{k}"
        env: dict[fx.Node, fx.Node] = {}
        placeholders = []
        for node in traced.graph.nodes:
            if node.op == "placeholder":
                new = g.placeholder(f"{tag}_{node.name}", default_value=node.args[0] if node.args else inspect.Signature.empty)
                new.meta["orig_name"] = node.name
                placeholders.append(node.name)
                in_reasons[new.name] = f"input of '{path}', computed by code that could not be traced"
            elif node.op == "output":
                outputs.append(fx.node.map_arg(node.args[0], env.__getitem__))
                continue
            else:
                new = g.node_copy(node, env.__getitem__)
                if node.op in ("call_module", "get_attr"):
                    new.target = f"{path}.{node.target}"
            new.meta["region"] = path
            env[node] = new
        inputs.extend(values)
        for leaf, why in traced.leaves.items():
            leaves[f"{path}.{leaf}"] = why
        regions.append(Region(path, tag, call.count, placeholders, k, tuple(values)))
    out = g.output(tuple(outputs))
    for k, region in enumerate(regions):
        def visit(n: fx.Node, path=region.path) -> None:
            out_reasons[n.name] = f"output of '{path}', read by code that could not be traced"
        fx.node.map_arg(out.args[0][k], visit)
    return Traced(root, g, leaves, name), tuple(inputs), regions, in_reasons, out_reasons


def trace_regions(model: torch.nn.Module, inputs: tuple, failure: TraceFailure):
    """Structural copy, regions and stitched graph of a model whose ``forward`` is untraceable."""
    root = structural_copy(model)
    calls, macs = record_calls(root, inputs)
    found = find_regions(root, calls)
    if not found:
        raise TraceFailure(f"{failure} -- and no submodule with parameters could be traced on its own") from failure
    traced, stitched_inputs, regions, in_reasons, out_reasons = stitch(root, found, type(model).__name__)
    log.info("%s.forward is not traceable; pruning inside %s", type(model).__name__, [r.path for r in regions])
    return traced, stitched_inputs, regions, in_reasons, out_reasons, macs


def assemble(graph, pruned: fx.GraphModule) -> torch.nn.Module:
    """The whole model with every region replaced by its pruned graph (see the module docstring).
    ``pruned`` is the surgery's result on ``graph.gm`` (the stitched graph)."""
    model = copy.deepcopy(graph.root_model)
    out_node = next(n for n in pruned.graph.nodes if n.op == "output")
    for region in graph.regions:
        sub = fx.Graph()
        env: dict[fx.Node, fx.Node] = {}
        prefix = region.path + "."
        for node in pruned.graph.nodes:
            if node.meta.get("region") != region.path:
                continue
            if node.op == "placeholder":
                default = node.args[0] if node.args else inspect.Signature.empty
                new = sub.placeholder(node.meta.get("orig_name", node.name), default_value=default)
            else:
                new = sub.node_copy(node, env.__getitem__)
                if node.op in ("call_module", "get_attr"):
                    new.target = node.target[len(prefix):]
            env[node] = new
        sub.output(fx.node.map_arg(out_node.args[0][region.output_index], env.__getitem__))
        original = graph.root_model.get_submodule(region.path)
        region_gm = fx.GraphModule(pruned.get_submodule(region.path), sub, type(original).__name__)
        region_gm.train(original.training)
        _copy_plain_attributes(original, region_gm)
        model.set_submodule(region.path, region_gm)
    return model


def _copy_plain_attributes(src: torch.nn.Module, dst: torch.nn.Module) -> None:
    """Data attributes the untraced code may read from the region (RAFT reads
    ``update_block.hidden_state_size``): numbers, strings, flags and tuples of them."""
    def plain(v: Any) -> bool:
        return isinstance(v, _PLAIN) or (isinstance(v, (tuple, list)) and all(plain(x) for x in v))

    for k, v in vars(src).items():
        if not k.startswith("_") and k not in vars(dst) and plain(v):
            setattr(dst, k, copy.copy(v))
