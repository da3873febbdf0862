"""The op-rule registry: one op, one small function.

A rule takes ``(ctx, node)`` and returns the labels of the node's output (a ``dict`` for a
tensor, a ``list`` for a tuple of tensors, ``None`` for a non-tensor). It raises ``Refuse`` with a
reason when it cannot handle a use of its op; the op's channels are then pinned with that reason.

A rewrite takes ``(node, sizes)`` during surgery and updates the node's constant arguments (view
shapes, split sizes, pad amounts ...) to the pruned channel counts. A resize takes
``(module, sizes, node)`` and updates module attributes (``in_channels``, ``num_features`` ...).

Keys are module classes (matched when a subclass keeps the class's ``forward``), callables for
``call_function`` nodes, and ``"method:NAME"`` strings for ``call_method`` nodes.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch
import torch.fx as fx


@dataclasses.dataclass
class OpRule:
    analyze: Callable
    rewrite: Callable | None = None
    resize: Callable | None = None
    name: str = ""


_RULES: dict[Any, OpRule] = {}


def register(*keys: Any, rewrite: Callable | None = None, resize: Callable | None = None):
    """Decorator: register ``fn`` as the analysis rule of every key."""

    def deco(fn: Callable) -> Callable:
        for key in keys:
            _RULES[key] = OpRule(fn, rewrite, resize, getattr(fn, "__name__", str(fn)))
        return fn

    return deco


def key_of(node: fx.Node, modules: dict[str, torch.nn.Module]) -> Any:
    if node.op == "call_module":
        return type(modules[node.target])
    if node.op == "call_method":
        return f"method:{node.target}"
    # a custom torch.autograd.Function is traced as one call (ir/trace.py); its class is the key
    return getattr(node.target, "autograd_function", node.target)


def lookup(node: fx.Node, modules: dict[str, torch.nn.Module]) -> OpRule | None:
    """The rule for a node, or None. Module subclasses match when they keep the base forward."""
    if node.op == "call_module":
        cls = type(modules[node.target])
        for base in cls.__mro__:
            rule = _RULES.get(base)
            if rule is not None:
                if base is cls or cls.forward is base.forward:
                    return rule
                return None
        return None
    key = key_of(node, modules)
    try:
        return _RULES.get(key)
    except TypeError:  # unhashable target
        return None


def describe(node: fx.Node, modules: dict[str, torch.nn.Module]) -> str:
    """A short human name for the op of a node (used in reports and errors)."""
    if node.op == "call_module":
        return f"module {type(modules[node.target]).__name__} ('{node.target}')"
    if node.op == "call_method":
        return f"method .{node.target}()"
    if node.op == "call_function":
        fn_cls = getattr(node.target, "autograd_function", None)
        if fn_cls is not None:
            return (f"custom autograd.Function {fn_cls.__qualname__} (its backward is its own; register a rule "
                    "for the class if it is channel-wise)")
        mod = getattr(node.target, "__module__", "") or ""
        return f"function {mod + '.' if mod else ''}{getattr(node.target, '__name__', node.target)}"
    return node.op


def registered_keys() -> list[Any]:
    return list(_RULES)
