"""Tracing with torch.fx and shape propagation, without ever changing the user's model.

A submodule whose ``forward`` cannot be traced becomes a leaf (one ``call_module`` node): the rest
of the model is still analysed, and the leaf's channels are pinned with the tracing error as the
reason. If the top-level ``forward`` itself is untraceable, ``TraceFailure`` names the offending
line of code.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import os
import traceback
from typing import Any, Iterator, Sequence

import torch
import torch.fx as fx
from torch.fx.passes.shape_prop import ShapeProp

from ..errors import AnalysisError, TraceFailure
from .context import tensor_at
from .shapes import MetaShapeProp

log = logging.getLogger(__name__)

try:  # generates the forward code on first call only: analysis never runs the traced module
    from torch.fx._lazy_graph_module import _LazyGraphModule as _GraphModule
except ImportError:  # pragma: no cover - older/newer torch without it
    _GraphModule = fx.GraphModule

DEFAULT_INPUT_SHAPE = (1, 3, 224, 224)
_TORCH_DIR = os.path.dirname(torch.__file__)
_HERE = os.path.dirname(os.path.dirname(__file__))


_PLAIN = (int, float, bool, str, type(None))


class _Proxy(fx.Proxy):
    """A Proxy whose ``__torch_function__`` finds its tracer without a pytree walk when the
    arguments are flat (proxies and constants, or one level of list/tuple of them, as in
    ``F.relu(x)`` or ``torch.cat([a, b], 1)``); anything else takes torch.fx's own path."""

    @classmethod
    def __torch_function__(cls, orig_method, types, args=None, kwargs=None):
        args = args if args else ()
        kwargs = kwargs if kwargs else {}
        tracer = None
        for a in (*args, *kwargs.values()):
            t = type(a)
            items = a if t is list or t is tuple else (a,)
            for b in items:
                tb = type(b)
                if tb is _Proxy:
                    if tracer is not None and b.tracer is not tracer:
                        tracer = None
                        break
                    tracer = b.tracer
                elif tb not in _PLAIN and not isinstance(b, (torch.dtype, torch.device, torch.Size)):
                    tracer = None  # nested or unusual arguments: the general path below
                    break
            else:
                continue
            break
        else:
            if (tracer is not None and not isinstance(orig_method, torch._C.ScriptMethod)
                    and not isinstance(orig_method, torch._ops.HigherOrderOperator)):
                if torch.overrides.is_tensor_method_or_property(orig_method):
                    return tracer.create_proxy("call_method", orig_method.__name__, args, kwargs)
                return tracer.create_proxy("call_function", orig_method, args, kwargs,
                                           name=tracer.graph._target_to_str(orig_method.__name__))
        return super().__torch_function__(orig_method, types, args, kwargs)


class _Tracer(fx.Tracer):
    def __init__(self, leaves: set[str]):
        super().__init__()
        self.leaves = leaves
        self.fail_path: str | None = None

    def create_arg(self, a: Any) -> Any:
        # Fast path for the argument types met on almost every node; the result is what the base
        # class returns for them (a Proxy's node, a constant as is, containers element-wise).
        t = type(a)
        if t is _Proxy or t is fx.Proxy:
            return a.node
        if t in _PLAIN:
            return a
        if t is tuple or t is list:
            return t([self.create_arg(x) for x in a])
        return super().create_arg(a)

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _Proxy(node, self)

    def is_leaf_module(self, m: torch.nn.Module, qualname: str) -> bool:
        return qualname in self.leaves or super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        # The base class also tracks module scopes and stacks for node metadata
        # (``nn_module_stack``) that fxprune never reads; skipping that bookkeeping is a good
        # part of tracing time on models with many small modules.
        path = self.path_of_module(m)
        try:
            if self.is_leaf_module(m, path):
                return self.create_proxy("call_module", path, args, kwargs)
            return forward(*args, **kwargs)
        except Exception:
            if self.fail_path is None:
                self.fail_path = path
            raise

    def create_node(self, kind, target, args, kwargs, name=None, type_expr=None):
        # Documented override point: no scope/stack-trace metadata (see call_module). The node
        # is created without arguments, which are attached afterwards: Graph.create_node would
        # otherwise walk every argument with pytree to warn about raw SymInts, which tracing
        # with static shapes never produces (a fifth of DenseNet's tracing time).
        node = self.graph.create_node(kind, target, None, None, name, type_expr)
        if args:
            node.args = args
        if kwargs:
            node.kwargs = kwargs
        return node


def _module_params(mod: torch.nn.Module, prefix: str) -> Iterator[tuple[str, torch.nn.Parameter]]:
    for k, p in mod._parameters.items():
        if p is not None:
            yield f"{prefix}.{k}", p
    for k, child in mod._modules.items():
        if child is not None:
            yield from _module_params(child, f"{prefix}.{k}")


class Traced:
    """The user's model and its traced graph. Analysis reads modules and parameters straight
    from ``root``; the GraphModule (a module tree plus generated code) is only built when
    something asks for ``.gm`` (surgery, importance, reports). It shares submodules with ``root``."""

    def __init__(self, root: torch.nn.Module, graph: fx.Graph, leaves: dict[str, str], name: str):
        self.root, self.graph, self.leaves, self.name = root, graph, leaves, name
        self._gm: fx.GraphModule | None = None
        self._modules: dict[str, torch.nn.Module] | None = None

    @property
    def gm(self) -> fx.GraphModule:
        if self._gm is None:
            self._gm = _GraphModule(self.root, self.graph, self.name)
        return self._gm

    def named_modules(self):
        # every name a module is registered under: the graph may call a shared module by any
        if self._modules is None:
            self._modules = dict(self.root.named_modules(remove_duplicate=False))
        return self._modules.items()

    def modules(self):
        # from the cached name table that analysis needs anyway: one walk of the module tree
        return list({id(m): m for _, m in self.named_modules()}.values())

    def named_parameters(self) -> Iterator[tuple[str, torch.nn.Parameter]]:
        """The parameters the graph uses, named and de-duplicated as the GraphModule would."""
        if self._gm is not None:
            yield from self._gm.named_parameters()
            return
        seen: set[int] = set()
        modules = dict(self.named_modules())
        for node in self.graph.nodes:
            if node.op == "call_module":
                items = _module_params(modules[node.target], node.target)
            elif node.op == "get_attr":
                p = tensor_at(self.root, node.target)
                items = [(node.target, p)] if isinstance(p, torch.nn.Parameter) else []
            else:
                continue
            for name, p in items:
                if id(p) not in seen:
                    seen.add(id(p))
                    yield name, p


def _user_frame(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    for fr in reversed(frames):
        if not fr.filename.startswith(_TORCH_DIR) and not fr.filename.startswith(_HERE):
            return f"{fr.filename}:{fr.lineno} in {fr.name}: {fr.line}"
    return "unknown location"


def _one_line(exc: BaseException) -> str:
    while exc.__cause__ is not None:  # report the root cause, not torch's wrappers
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _shallow_root(model: torch.nn.Module) -> torch.nn.Module:
    """A shallow copy of the top-level module (same submodules, parameters and buffers) for the
    tracer to work on: torch.fx stores tensors created inside ``forward`` (e.g. MaxViT's relative
    position index) as ``_tensor_constantN`` attributes on the traced root, which must not be the
    user's model."""
    try:
        return copy.copy(model)
    except Exception:  # noqa: BLE001 - a module that refuses copying is traced as is
        log.debug("could not copy %s; tracing it in place", type(model).__name__)
        return model


def trace(model: torch.nn.Module, max_leaves: int = 64) -> Traced:
    """Symbolically trace ``model``; untraceable submodules become leaves."""
    leaves: dict[str, str] = {}
    for _ in range(max_leaves + 1):
        tracer = _Tracer(set(leaves))
        try:
            graph = tracer.trace(_shallow_root(model))
        except Exception as exc:  # noqa: BLE001 - any tracing error is reported
            path = tracer.fail_path
            if not path or path in leaves:
                raise TraceFailure(
                    f"torch.fx cannot trace {type(model).__name__}.forward: {_one_line(exc)} "
                    f"(at {_user_frame(exc)})"
                ) from exc
            leaves[path] = f"{_one_line(exc)} (at {_user_frame(exc)})"
            log.info("submodule '%s' is not traceable, kept as a leaf: %s", path, leaves[path])
            continue
        return Traced(tracer.root, graph, leaves, type(model).__name__)
    raise TraceFailure(f"more than {max_leaves} submodules of {type(model).__name__} are untraceable")


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Temporarily put every submodule in eval mode; restore each module's flag afterwards."""
    changed = [m for m in model.modules() if m.training]
    try:
        for m in changed:
            m.training = False
        yield
    finally:
        for m in changed:
            m.training = True


def _device_dtype(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        return p.device, p.dtype
    for b in model.buffers():
        return b.device, torch.float32
    return torch.device("cpu"), torch.float32


def make_inputs(model: torch.nn.Module, example_inputs: Any = None) -> tuple[torch.Tensor, ...]:
    """Normalise ``example_inputs`` (None, a tensor, a tuple of tensors, or a shape) to a tuple."""
    device, dtype = _device_dtype(model)
    if example_inputs is None:
        return (torch.randn(DEFAULT_INPUT_SHAPE, device=device, dtype=dtype),)
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (tuple, list, torch.Size)):
        if len(example_inputs) and all(isinstance(s, int) and not isinstance(s, bool) for s in example_inputs):
            if any(s <= 0 for s in example_inputs):
                raise AnalysisError(f"example input shape {tuple(example_inputs)} has a non-positive size")
            return (torch.randn(tuple(example_inputs), device=device, dtype=dtype),)
        if all(isinstance(t, torch.Tensor) for t in example_inputs) and len(example_inputs):
            return tuple(example_inputs)
    raise AnalysisError(
        "example_inputs must be a tensor, a tuple of tensors or a shape such as (1, 3, 224, 224); "
        f"got {type(example_inputs).__name__}"
    )


class _CheckedShapeProp(ShapeProp):
    def run_node(self, n: fx.Node) -> Any:
        try:
            return super().run_node(n)
        except Exception as exc:  # noqa: BLE001 - re-raised with the node named
            raise AnalysisError(
                f"forward failed at node '{n.name}' ({n.op} {n.target}) with example input "
                f"shape(s) {self._shapes}: {_one_line(exc)}"
            ) from exc


def propagate_shapes(gm: fx.GraphModule | Traced, inputs: Sequence[torch.Tensor], fast: bool = True) -> None:
    """Record ``tensor_meta`` on every node of ``gm``, in eval mode and without gradients.

    ``fast`` (default): kernel-free propagation on meta tensors (``shapes.MetaShapeProp``). If it
    fails for any reason, or with ``fast=False``, one real forward pass through torch.fx's
    ``ShapeProp`` does the job, and its error (if any) names the failing node.
    """
    with eval_mode(gm), torch.no_grad():
        if fast:
            try:
                MetaShapeProp(gm).propagate(inputs)
                return
            except Exception as exc:  # noqa: BLE001 - the real forward below reports errors
                log.debug("meta shape propagation failed (%s); running the real forward", _one_line(exc))
                for n in gm.graph.nodes:
                    n.meta.pop("tensor_meta", None)
        sp = _CheckedShapeProp(gm.gm if isinstance(gm, Traced) else gm)
        sp._shapes = [tuple(t.shape) for t in inputs]
        sp.propagate(*inputs)
