"""Kernel-free shape propagation: record ``tensor_meta`` on every node without running the model.

Values are tensors on the ``meta`` device, so no arithmetic is done and the cost of analysis does
not grow with the model's FLOPs or the input resolution. Common modules get their output shape
from a small formula (one module type, one function, below); other modules run with meta copies
of their parameters (``torch.func.functional_call``); functions and methods run on meta tensors
directly. A node whose op has no meta implementation (``.item()``, data-dependent ops, custom
kernels) runs for real on random tensors of the recorded shapes, exactly as the classic
``ShapeProp`` would. ``propagate_shapes`` in ``trace.py`` falls back to the classic, fully real
``ShapeProp`` if anything here fails, so the fast path can only change speed, never results
(``tests/ir/test_zoo.py`` checks that both agree on every torchvision model).
"""
from __future__ import annotations

import logging
import math
import operator
from typing import Any, Callable, Sequence

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import TensorMetadata

from ..errors import AnalysisError

log = logging.getLogger(__name__)

META = torch.device("meta")
_SAME_SHAPE = (
    nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh,
    nn.LeakyReLU, nn.ELU, nn.PReLU, nn.Mish, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
    nn.Dropout3d, nn.AlphaDropout, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm,
    nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LocalResponseNorm,
    nn.Softmax, nn.LogSoftmax,
)
_SHAPE_FNS: dict[type, Callable[..., torch.Size | None]] = {}


def shape_rule(*types: type) -> Callable:
    """Register ``fn(module, input_shape) -> output shape`` (or None: cannot tell, run it)."""
    def deco(fn: Callable) -> Callable:
        for t in types:
            _SHAPE_FNS[t] = fn
        return fn
    return deco


def _tuple(v: Any, n: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def _window(size: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    span = size + 2 * p - d * (k - 1) - 1
    if ceil:
        out = -(-span // s) + 1
        if (out - 1) * s >= size + p:  # the last window must start inside the input or left padding
            out -= 1
        return out
    return span // s + 1


@shape_rule(*_SAME_SHAPE)
def _same(m: nn.Module, shape: torch.Size) -> torch.Size:
    return shape


@shape_rule(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def _conv(m: nn.Module, shape: torch.Size) -> torch.Size | None:
    n = len(m.kernel_size)
    if len(shape) != n + 2 or shape[1] != m.in_channels:
        return None  # let the real op raise its own error (or handle unbatched input)
    if isinstance(m.padding, str):
        if m.padding == "same":
            return torch.Size((shape[0], m.out_channels, *shape[2:]))
        pad = (0,) * n
    else:
        pad = m.padding
    sp = [_window(shape[2 + i], m.kernel_size[i], m.stride[i], pad[i], m.dilation[i], False) for i in range(n)]
    return None if min(sp) <= 0 else torch.Size((shape[0], m.out_channels, *sp))


@shape_rule(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
def _pool(m: nn.Module, shape: torch.Size) -> torch.Size | None:
    n = {"1d": 1, "2d": 2, "3d": 3}[type(m).__name__[-2:]]
    if len(shape) != n + 2 or getattr(m, "return_indices", False):
        return None
    k, s, p = _tuple(m.kernel_size, n), _tuple(m.stride or m.kernel_size, n), _tuple(m.padding, n)
    d = _tuple(getattr(m, "dilation", 1), n)
    sp = [_window(shape[2 + i], k[i], s[i], p[i], d[i], m.ceil_mode) for i in range(n)]
    return None if min(sp) <= 0 else torch.Size((*shape[:2], *sp))


@shape_rule(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
            nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
def _adaptive(m: nn.Module, shape: torch.Size) -> torch.Size | None:
    n = int(type(m).__name__[-2])
    if len(shape) != n + 2 or getattr(m, "return_indices", False):
        return None
    out = _tuple(m.output_size, n)
    return torch.Size((*shape[:2], *(shape[2 + i] if o is None else o for i, o in enumerate(out))))


@shape_rule(nn.Linear)
def _linear(m: nn.Linear, shape: torch.Size) -> torch.Size | None:
    if not shape or shape[-1] != m.in_features:
        return None
    return torch.Size((*shape[:-1], m.out_features))


@shape_rule(nn.Flatten)
def _flatten(m: nn.Flatten, shape: torch.Size) -> torch.Size | None:
    if not shape:
        return None
    a, b = m.start_dim % len(shape), m.end_dim % len(shape)
    return torch.Size((*shape[:a], math.prod(shape[a:b + 1]), *shape[b + 1:]))


_FN_SHAPES: dict[Any, Callable[..., torch.Tensor | None]] = {}


def fn_shape_rule(*targets: Any) -> Callable:
    """Register ``fn(*args, **kwargs) -> meta tensor`` (or None: cannot tell, run the op) for
    functions (the callable) or tensor methods (``"method:NAME"``)."""
    def deco(fn: Callable) -> Callable:
        for t in targets:
            _FN_SHAPES[t] = fn
        return fn
    return deco


def _empty(shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device=META)


@fn_shape_rule(operator.add, operator.sub, operator.mul, torch.add, torch.sub, torch.mul,
               "method:add", "method:sub", "method:mul")
def _binary(a: Any, b: Any, *rest: Any, **kw: Any) -> torch.Tensor | None:
    if rest or kw or not (isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor)):
        return None
    sa = a.shape if isinstance(a, torch.Tensor) else ()
    sb = b.shape if isinstance(b, torch.Tensor) else ()
    if not all(isinstance(v, (torch.Tensor, int, float, bool)) for v in (a, b)):
        return None
    return _empty(torch.broadcast_shapes(sa, sb), torch.result_type(a, b))


@fn_shape_rule(torch.cat, torch.concat)
def _cat(tensors: Any, dim: int = 0) -> torch.Tensor | None:
    if not isinstance(tensors, (list, tuple)) or not tensors or not all(
            isinstance(t, torch.Tensor) and t.dim() == tensors[0].dim() and t.dtype == tensors[0].dtype
            for t in tensors) or tensors[0].dim() == 0:
        return None
    d = dim % tensors[0].dim()
    rest = [t.shape[:d] + t.shape[d + 1:] for t in tensors]
    if any(r != rest[0] for r in rest):
        return None  # let the real op raise its own error
    shape = list(tensors[0].shape)
    shape[d] = sum(t.shape[d] for t in tensors)
    return _empty(shape, tensors[0].dtype)


@fn_shape_rule(F.layer_norm, F.relu, F.gelu, F.silu, F.hardswish, F.hardsigmoid, torch.sigmoid,
               torch.relu, "method:sigmoid", "method:relu")
def _unary(x: Any, *args: Any, **kwargs: Any) -> torch.Tensor | None:
    return _empty(x.shape, x.dtype) if isinstance(x, torch.Tensor) else None


def _to_meta(v: Any) -> Any:
    return fx.node.map_aggregate(v, lambda t: t.to(META) if isinstance(t, torch.Tensor) and not t.is_meta else t)


def _materialize(v: Any, device: torch.device) -> Any:
    def real(t: Any) -> Any:
        if not isinstance(t, torch.Tensor) or not t.is_meta:
            return t
        if t.dtype.is_floating_point or t.dtype.is_complex:
            return torch.randn(t.shape, dtype=t.dtype, device=device)
        return torch.zeros(t.shape, dtype=t.dtype, device=device)
    return fx.node.map_aggregate(v, real)


def _record(node: fx.Node, result: Any) -> None:
    found = False

    def meta(obj: Any) -> Any:
        nonlocal found
        if isinstance(obj, torch.Tensor):
            found = True
            return TensorMetadata(obj.shape, obj.dtype, obj.requires_grad, (), None, False, {})
        return obj

    tm = fx.node.map_aggregate(result, meta)
    if found:
        node.meta["tensor_meta"] = tm
    node.meta["type"] = type(result)
    node.meta[VALUE] = _to_meta(result)


VALUE = "fxprune_value"  # node.meta key: the node's value with tensors on the meta device


class MetaShapeProp:
    """Run ``gm`` on meta tensors, writing ``tensor_meta`` (shape and dtype) into every node."""

    def __init__(self, gm: fx.GraphModule):  # or a trace.Traced (a model plus its graph)
        self.gm = gm
        self.root = gm if isinstance(gm, nn.Module) else gm.root
        self.modules = dict(gm.named_modules())
        self._meta_state: dict[str, dict[str, torch.Tensor]] = {}
        self.fallbacks: list[str] = []

    def _state(self, target: str, mod: nn.Module) -> dict[str, torch.Tensor]:
        st = self._meta_state.get(target)
        if st is None:
            st = {k: torch.empty_like(v, device=META) for k, v in
                  [*mod.named_parameters(), *mod.named_buffers()]}
            self._meta_state[target] = st
        return st

    def _run_real(self, node: fx.Node, args: tuple, kwargs: dict, device: torch.device) -> Any:
        self.fallbacks.append(node.name)
        args, kwargs = _materialize(args, device), _materialize(kwargs, device)
        if node.op == "call_module":
            mod = self.modules[node.target]
            saved = [(b, b.detach().clone()) for b in mod.buffers()]
            try:
                out = mod(*args, **kwargs)
            finally:  # a module that updates its buffers must not keep the update
                with torch.no_grad():
                    for b, v in saved:
                        b.copy_(v)
        elif node.op == "call_function":
            out = node.target(*args, **kwargs)
        else:
            out = getattr(args[0], node.target)(*args[1:], **kwargs)
        return _to_meta(out)

    def _call(self, node: fx.Node, args: tuple, kwargs: dict) -> Any:
        if node.op == "call_module":
            mod = self.modules[node.target]
            fn = _SHAPE_FNS.get(type(mod))
            if fn is not None and len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor):
                shape = fn(mod, args[0].shape)
                if shape is not None:
                    return torch.empty(shape, dtype=args[0].dtype, device=META)
            return torch.func.functional_call(mod, self._state(node.target, mod), args, kwargs)
        fn = _FN_SHAPES.get(node.target if node.op == "call_function" else f"method:{node.target}")
        if fn is not None:
            out = fn(*args, **kwargs)
            if out is not None:
                return out
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        return getattr(args[0], node.target)(*args[1:], **kwargs)

    def start(self, inputs: Sequence[Any]) -> None:
        """Begin an incremental propagation (:meth:`advance_to`) over ``inputs``."""
        self.env: dict[fx.Node, Any] = {}
        self._device = _first_device(inputs)
        self._inputs = iter(inputs)
        self._done: set[fx.Node] = set()

    def advance_to(self, target: fx.Node) -> Any:
        """Propagate every node up to ``target`` (in graph order) and return its meta value. The
        graph may grow between calls (the tracer calls this while it builds the graph)."""
        if target in self.env:
            return self.env[target]
        for node in self.gm.graph.nodes:
            if node in self._done:
                continue
            self._step(node)
            if node is target:
                break
        return self.env.get(target)

    def _step(self, node: fx.Node) -> Any:
        env = self.env
        load = lambda a: _mutable(fx.node.map_arg(a, env.__getitem__))  # noqa: E731
        self._done.add(node)
        if node.op == "placeholder":
            try:
                val = _to_meta(next(self._inputs))
            except StopIteration:
                val = node.args[0] if node.args else None  # default argument
        elif node.op == "get_attr":
            obj = self.root
            for part in node.target.split("."):
                obj = getattr(obj, part)
            val = torch.empty_like(obj, device=META) if isinstance(obj, torch.Tensor) else obj
        elif node.op == "output":
            val = load(node.args[0])
        else:
            args, kwargs = load(node.args), load(node.kwargs)
            try:
                val = self._call(node, args, kwargs)
            except Exception:  # noqa: BLE001 - no meta kernel, mixed devices, data-dependent op
                val = self._run_real(node, args, kwargs, self._device)
        env[node] = val
        _record(node, val)
        return val

    def propagate(self, inputs: Sequence[Any]) -> Any:
        self.start(inputs)
        for node in self.gm.graph.nodes:
            val = self._step(node)
            if node.op == "output":
                return val
        raise AnalysisError("the traced graph has no output node")


def _mutable(v: Any) -> Any:
    """Plain lists and dicts in place of torch.fx's immutable ones: a wrapped function may mutate
    its arguments (torchvision's ``_get_window_and_shift_size`` does), as it can when the
    GraphModule's generated code calls it."""
    if isinstance(v, (list, tuple)):
        items = [_mutable(x) for x in v]
        return items if isinstance(v, list) else type(v)(items) if type(v) is tuple else v
    if isinstance(v, dict):
        return {k: _mutable(x) for k, x in v.items()}
    return v


def _first_device(inputs: Sequence[Any]) -> torch.device:
    found: list[torch.device] = []
    fx.node.map_aggregate(list(inputs), lambda t: found.append(t.device) if isinstance(t, torch.Tensor) else None)
    return found[0] if found else torch.device("cpu")
