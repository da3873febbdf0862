"""FLOPs of ops that no channel rule describes, measured once with ``torch.utils.flop_counter``.

An op without a rule (or whose rule refused, or an untraceable submodule kept as a leaf) only
ever sees pinned channels, so its cost does not depend on the plan: it is a constant of the cost
model. It is measured by running the op once under :class:`torch.utils.flop_counter.FlopCounterMode`
on meta tensors of the shapes shape propagation recorded (no arithmetic is done); an op without
a meta kernel runs on small random tensors of those shapes instead. The counter reports FLOPs
(2 per multiply-accumulate); fxprune's cost model counts multiply-accumulates, so it is halved.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
import torch.fx as fx
from torch.utils.flop_counter import FlopCounterMode

from .shapes import VALUE, _materialize, _mutable, _to_meta

log = logging.getLogger(__name__)


def _value(arg: fx.Node) -> Any:
    if VALUE not in arg.meta:
        raise KeyError(arg.name)
    return arg.meta[VALUE]


def _run(node: fx.Node, modules: dict[str, torch.nn.Module], args: tuple, kwargs: dict, meta: bool) -> None:
    if node.op == "call_module":
        mod = modules[node.target]
        if meta:
            state = {k: torch.empty_like(v, device="meta") for k, v in [*mod.named_parameters(), *mod.named_buffers()]}
            torch.func.functional_call(mod, state, args, kwargs)
        else:
            saved = [(b, b.detach().clone()) for b in mod.buffers()]
            try:
                mod(*args, **kwargs)
            finally:
                for b, v in saved:
                    b.copy_(v)
    elif node.op == "call_function":
        node.target(*args, **kwargs)
    elif node.op == "call_method":
        getattr(args[0], node.target)(*args[1:], **kwargs)


def measured_macs(node: fx.Node, modules: dict[str, torch.nn.Module]) -> float:
    """Multiply-accumulates of ``node`` (0 for placeholders, attributes and the output)."""
    if node.op not in ("call_module", "call_function", "call_method"):
        return 0.0
    try:
        args = _mutable(fx.node.map_arg(node.args, _value))
        kwargs = _mutable(fx.node.map_arg(node.kwargs, _value))
    except KeyError as missing:
        log.warning("cannot measure the FLOPs of '%s': no recorded value for its input %s", node.name, missing)
        return 0.0
    with torch.no_grad():
        for meta in (True, False):
            try:
                a = _to_meta(args) if meta else _materialize(args, torch.device("cpu"))
                k = _to_meta(kwargs) if meta else _materialize(kwargs, torch.device("cpu"))
                with FlopCounterMode(display=False) as counter:
                    _run(node, modules, a, k, meta)
                return counter.get_total_flops() / 2.0
            except Exception as exc:  # noqa: BLE001 - no meta kernel: try real tensors
                if not meta:
                    log.warning("cannot measure the FLOPs of '%s': %s", node.name, exc)
    return 0.0


def model_macs(model: torch.nn.Module, inputs: tuple) -> float:
    """Multiply-accumulates of one forward of ``model`` on ``inputs``, counted by
    ``torch.utils.flop_counter`` (a real forward in eval mode; buffers restored afterwards)."""
    from .trace import eval_mode

    saved = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        with eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*inputs)
    finally:
        with torch.no_grad():
            for b, v in saved:
                b.copy_(v)
    return counter.get_total_flops() / 2.0
