"""Tracing with torch.fx and shape propagation, without ever changing the user's model.

Tracing works on a *structural copy* of the model (:func:`structural_copy`): every module is
shallow-copied, buffers are cloned, parameters are shared. torch.fx can therefore attach its
tensor constants, and a ``forward`` can update its buffers in place while it is traced, without
touching the user's model; the parameters (the large part) are not copied. Tracing runs in eval
mode (the copy's flags are restored afterwards, so the traced graph keeps the user's flags).

What the tracer adds to torch.fx's:

- buffers read in ``forward`` become ``get_attr`` nodes, so an in-place update of a buffer
  (``self.calls.add_(1)``) is recorded in the graph and kept in the pruned model;
- a custom ``torch.autograd.Function`` becomes one ``call_function`` node (its own backward is
  kept; no rule knows its channels unless one is registered for the Function class);
- iterating over a tuple/list-valued node (the pieces of ``chunk``/``split``/``unbind``, a list
  input) works when example inputs are given: the count is read from shapes propagated on meta
  tensors while tracing (``y = list(x.chunk(2, 1)); torch.cat(y, 1)``);
- a submodule whose ``forward`` cannot be traced becomes a leaf (one ``call_module`` node): the
  rest of the model is still analysed, and the leaf's channels are pinned with the tracing error as
  the reason. If the top-level ``forward`` itself is untraceable, ``TraceFailure`` names the
  offending line of code (``ir/regions.py`` then analyses the largest traceable submodules).
"""
from __future__ import annotations

import contextlib
import copy
import dis
import inspect
import logging
import os
import sys
import traceback
import types
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.fx as fx
from torch.fx.passes.shape_prop import ShapeProp

from ..errors import AnalysisError, TraceFailure
from .context import canonical_names, tensor_at
from .shapes import VALUE, MetaShapeProp, _mutable, _to_meta

log = logging.getLogger(__name__)

try:  # generates the forward code on first call only: analysis never runs the traced module
    from torch.fx._lazy_graph_module import _LazyGraphModule as _GraphModule
except ImportError:  # pragma: no cover - older/newer torch without it
    _GraphModule = fx.GraphModule

DEFAULT_INPUT_SHAPE = (1, 3, 224, 224)
_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_HERE = os.path.dirname(os.path.dirname(__file__)) + os.sep


_PLAIN = (int, float, bool, str, type(None))


# ---- custom autograd Functions -------------------------------------------------------------------
_APPLY_WRAPPERS: dict[type, Callable] = {}


def autograd_function_call(cls: type) -> Callable:
    """The callable a traced graph uses for ``cls.apply`` (one per Function class, so generated
    code can name it); ``fn.autograd_function`` is the class, which is the registry key."""
    fn = _APPLY_WRAPPERS.get(cls)
    if fn is None:
        def fn(*args: Any, **kwargs: Any) -> Any:
            return cls.apply(*args, **kwargs)

        fn.__name__ = fn.__qualname__ = f"autograd_{cls.__name__}"
        fn.autograd_function = cls  # type: ignore[attr-defined]
        _APPLY_WRAPPERS[cls] = fn
    return fn


def _has_proxy(values: Any) -> bool:
    found = False

    def visit(v: Any) -> Any:
        nonlocal found
        found = found or isinstance(v, fx.Proxy)
        return v

    fx.node.map_aggregate(values, visit)
    return found


@contextlib.contextmanager
def _autograd_functions_as_leaves(tracer: "_Tracer") -> Iterator[None]:
    original = torch.autograd.Function.__dict__["apply"]

    def apply(cls, *args, **kwargs):
        if _has_proxy((args, kwargs)):
            return tracer.create_proxy("call_function", autograd_function_call(cls), args, kwargs)
        return original.__func__(cls, *args, **kwargs)

    torch.autograd.Function.apply = classmethod(apply)
    try:
        yield
    finally:
        torch.autograd.Function.apply = original


# ---- proxies -------------------------------------------------------------------------------------
def _unpack_count(frame) -> int | None:
    """``n`` when the instruction executing in ``frame`` is ``UNPACK_SEQUENCE n`` (``a, b = x``)."""
    insts = list(dis.get_instructions(frame.f_code))
    if sys.version_info >= (3, 11):
        from bisect import bisect_left

        idx = bisect_left(insts, frame.f_lasti, key=lambda i: i.offset)
    else:  # pragma: no cover - Python 3.10
        idx = frame.f_lasti // 2
    inst = insts[idx] if idx < len(insts) else None
    return inst.argval if inst is not None and inst.opname == "UNPACK_SEQUENCE" else None


class _Proxy(fx.Proxy):
    """A Proxy whose ``__torch_function__`` finds its tracer without a pytree walk when the
    arguments are flat (proxies and constants, or one level of list/tuple of them, as in
    ``F.relu(x)`` or ``torch.cat([a, b], 1)``); anything else takes torch.fx's own path. Iteration
    and ``len()`` of tuple/list values use the shapes the tracer propagates (see module docstring)."""

    def __iter__(self) -> Iterator[fx.Proxy]:
        frame = inspect.currentframe()
        n = _unpack_count(frame.f_back) if frame is not None and frame.f_back is not None else None
        if n is None:
            n = self.tracer.sequence_length(self.node)
        if n is None:
            return self.tracer.iter(self)  # torch.fx's error: "Proxy object cannot be iterated"
        return iter([self[i] for i in range(n)])

    def __bool__(self) -> bool:
        # control flow on a value computed from shapes (``if h % 2:``, ``max(pad, 0)``): take the
        # branch the example input takes, and record that the graph is specialised to it
        val = self.tracer.python_value(self.node)
        if val is None:
            return super().__bool__()  # torch.fx's error: no control flow on traced values
        self.tracer.specialised(self.node, bool(val))
        return bool(val)

    def __len__(self) -> int:
        n = self.tracer.sequence_length(self.node)
        if n is None:
            raise fx.proxy.TraceError(
                f"len() of '{self.node.name}' is unknown while tracing (only tuples and lists of "
                "tensors with example inputs have a static length)")
        return n

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


@contextlib.contextmanager
def _untraced_modules() -> Iterator[None]:
    """Module calls and attribute reads as outside tracing: while it traces, torch.fx patches
    ``nn.Module.__call__`` and ``__getattr__`` to record nodes, which shape propagation in the
    middle of a trace must not do."""
    from torch.fx import _symbolic_trace as st

    call, getattr_ = torch.nn.Module.__call__, torch.nn.Module.__getattr__
    torch.nn.Module.__call__, torch.nn.Module.__getattr__ = st._orig_module_call, st._orig_module_getattr
    try:
        yield
    finally:
        torch.nn.Module.__call__, torch.nn.Module.__getattr__ = call, getattr_


class _TraceView:
    """What :class:`MetaShapeProp` needs of a graph that is still being built."""

    def __init__(self, tracer: "_Tracer"):
        self.graph = tracer.graph
        self.root = tracer.root
        self._modules = tracer.module_names

    def named_modules(self):
        return self._modules.items()


class _Tracer(fx.Tracer):
    def __init__(self, leaves: set[str] = frozenset(), example_inputs: Sequence[Any] | None = None):
        super().__init__()
        self.leaves = leaves
        self.fail_path: str | None = None
        self.example_inputs = example_inputs
        self._prop: MetaShapeProp | None = None
        self._prop_failed = False
        self.module_names: dict[str, torch.nn.Module] = {}
        self._tensor_names: dict[int, str] = {}
        self.specialisations: list[str] = []

    def trace(self, root, concrete_args=None):
        if isinstance(root, torch.nn.Module):
            self.module_names = dict(root.named_modules())
            # parameters and buffers by identity: torch.fx's own lookup scans every parameter
            # for each access; buffers become get_attr nodes too (see the module docstring)
            names: dict[int, str] = {}
            for n, b in root.named_buffers():
                names.setdefault(id(b), n)
            for n, p in root.named_parameters():
                names[id(p)] = n
            self._tensor_names = names
        with _autograd_functions_as_leaves(self):
            return super().trace(root, concrete_args)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, fx.Proxy]) -> Any:
        if isinstance(attr_val, torch.Tensor):
            name = self._tensor_names.get(id(attr_val))
            if name is not None:
                if name not in parameter_proxy_cache:
                    parameter_proxy_cache[name] = self.create_proxy("get_attr", name, (), {})
                return parameter_proxy_cache[name]
        return attr_val

    # ---- static lengths of tuple/list values, from shapes propagated while tracing ----------
    def sequence_length(self, node: fx.Node) -> int | None:
        val = self._meta_value(node)
        if isinstance(val, (tuple, list)):
            return len(val)
        return None

    def python_value(self, node: fx.Node) -> bool | int | float | None:
        """The value of a node computed from shapes only (a Python number), else None."""
        val = self._meta_value(node)
        return val if isinstance(val, (bool, int, float)) else None

    def specialised(self, node: fx.Node, value: bool) -> None:
        frame = inspect.currentframe()
        where = "unknown location"
        while frame is not None:
            fn = frame.f_code.co_filename
            if not fn.startswith(_TORCH_DIR) and not fn.startswith(_HERE):
                where = f"{fn}:{frame.f_lineno} in {frame.f_code.co_name}"
                break
            frame = frame.f_back
        self.specialisations.append(f"{where}: took the {value} branch for the example input")
        log.info("control flow on shapes at %s is specialised to the example input (%s)", where, value)

    def _meta_value(self, node: fx.Node) -> Any:
        if self.example_inputs is None or self._prop_failed:
            return None
        if self._prop is None:
            self._prop = MetaShapeProp(_TraceView(self))
            self._prop.start(self.example_inputs)
        try:
            with torch.no_grad(), _untraced_modules():
                return self._prop.advance_to(node)
        except Exception as exc:  # noqa: BLE001 - no shapes: torch.fx's own behaviour applies
            log.debug("shapes while tracing failed at %s: %s", node.name, exc)
            self._prop_failed = True
            return None

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
    """A structural copy of the user's model and its traced graph. Analysis reads modules and
    parameters straight from ``root``; the GraphModule (a module tree plus generated code) is only
    built when something asks for ``.gm`` (surgery, importance, reports). It shares submodules
    with ``root``, and parameters with the user's model."""

    def __init__(self, root: torch.nn.Module, graph: fx.Graph, leaves: dict[str, str], name: str):
        self.root, self.graph, self.leaves, self.name = root, graph, leaves, name
        self._gm: fx.GraphModule | None = None
        self._modules: dict[str, torch.nn.Module] | None = None
        self._canon: dict[str, str] | None = None
        self.specialisations: list[str] = []  # control flow on shapes taken for the example input

    @property
    def gm(self) -> fx.GraphModule:
        if self._gm is None:
            self._gm = _GraphModule(self.root, self.graph, self.name)
        return self._gm

    def __getstate__(self) -> dict:
        # A GraphModule pickles as its generated code and is re-traced when loaded, which drops
        # every node's meta (shapes, constant values) that surgery needs; the graph itself keeps
        # them, so the GraphModule is left out and rebuilt from it on first use (worker processes).
        state = dict(self.__dict__)
        state["_gm"] = None
        return state

    def named_modules(self):
        # every name a module is registered under: the graph may call a shared module by any
        if self._modules is None:
            self._modules = dict(self.root.named_modules(remove_duplicate=False))
        return self._modules.items()

    def modules(self):
        # from the cached name table that analysis needs anyway: one walk of the module tree
        return list({id(m): m for _, m in self.named_modules()}.values())

    @property
    def canon(self) -> dict[str, str]:
        """``{alias: name}`` of tied tensors (see :func:`context.canonical_names`)."""
        if self._canon is None:
            self._canon = canonical_names(self.root, self.graph)
        return self._canon

    def named_parameters(self) -> Iterator[tuple[str, torch.nn.Parameter]]:
        """The parameters the graph uses, de-duplicated, by their canonical names."""
        canon = self.canon
        if self._gm is not None:
            for name, p in self._gm.named_parameters():
                yield canon.get(name, name), p
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
                    yield canon.get(name, name), p


def user_frame(exc: BaseException) -> str:
    """``file:line in function: code`` of the innermost frame outside torch and fxprune."""
    frames = traceback.extract_tb(exc.__traceback__)
    for fr in reversed(frames):
        if not fr.filename.startswith(_TORCH_DIR) and not fr.filename.startswith(_HERE):
            return f"{fr.filename}:{fr.lineno} in {fr.name}: {fr.line}"
    return "unknown location"


def one_line(exc: BaseException) -> str:
    while exc.__cause__ is not None:  # report the root cause, not torch's wrappers
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def structural_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model``'s module tree that shares its parameters: every module is shallow-
    copied (module sharing is preserved), buffers are cloned. Tracing and shape propagation work on
    it, so nothing they do (tensor constants, in-place buffer updates, flag changes) reaches the
    user's model. A module that refuses copying is used as is."""
    memo: dict[int, torch.nn.Module] = {}

    def visit(m: torch.nn.Module) -> torch.nn.Module:
        if id(m) in memo:
            return memo[id(m)]
        try:
            c = copy.copy(m)
        except Exception:  # noqa: BLE001 - an uncopyable module is traced in place
            log.debug("could not copy %s; tracing it in place", type(m).__name__)
            memo[id(m)] = m
            return m
        memo[id(m)] = c
        for k, v in list(c.__dict__.items()):
            if isinstance(v, types.MethodType) and v.__self__ is m:  # ``self.forward = self.forward_fast``
                c.__dict__[k] = types.MethodType(v.__func__, c)
            elif type(v) in (dict, list, set) and not k.startswith("_"):  # caches a forward may fill
                c.__dict__[k] = copy.copy(v)
        c.__dict__["_parameters"] = dict(m._parameters)
        c.__dict__["_buffers"] = {k: (None if b is None else b.detach().clone()) for k, b in m._buffers.items()}
        c.__dict__["_modules"] = {k: (None if s is None else visit(s)) for k, s in m._modules.items()}
        return c

    with torch.no_grad():
        return visit(model)


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


def bind_norm_flags(graph: fx.Graph, root: torch.nn.Module) -> None:
    """Make functional batch norms follow their layer's ``.train()``/``.eval()`` again.

    A norm layer with its own ``forward`` (timm's ``BatchNormAct2d``) calls ``F.batch_norm(x,
    self.running_mean, ..., training=self.training, ...)``; traced in eval mode, ``training`` is
    the constant ``False``, so the pruned model would never use batch statistics nor update its
    running statistics when it is fine-tuned. Where the running statistics are those of a
    ``BatchNorm`` layer that tracks them with a fixed momentum, the constant is replaced by a read
    of that layer's ``training`` flag (a ``get_attr`` node, evaluated at every call)."""
    bn = torch.nn.modules.batchnorm._BatchNorm
    modules = dict(root.named_modules())
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in (torch.nn.functional.batch_norm, torch.batch_norm):
            continue
        stats = node.args[1] if len(node.args) > 1 else node.kwargs.get("running_mean")
        if getattr(stats, "op", None) != "get_attr" or not stats.target.endswith(".running_mean"):
            continue
        owner = stats.target.rsplit(".", 1)[0]
        mod = modules.get(owner)
        if not isinstance(mod, bn) or not mod.track_running_stats or mod.momentum is None:
            continue
        in_kwargs = "training" in node.kwargs
        flag = node.kwargs["training"] if in_kwargs else (node.args[5] if len(node.args) > 5 else None)
        if flag is not False:
            continue
        with graph.inserting_before(node):
            get = graph.get_attr(f"{owner}.training")
        if in_kwargs:
            node.update_kwarg("training", get)
        else:
            node.update_arg(5, get)


def _defaults_beyond(model: torch.nn.Module, example_inputs: Sequence[Any] | None) -> dict[str, Any]:
    """Arguments of ``forward`` that the example inputs leave out, at their default values
    (``targets=None`` of a detector): traced as constants, so ``if targets is not None`` works."""
    if example_inputs is None:
        return {}
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return {}
    out = {}
    for p in params[len(example_inputs):]:
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is not p.empty:
            out[p.name] = p.default
    return out


def trace(model: torch.nn.Module, max_leaves: int = 64, example_inputs: Sequence[Any] | None = None,
          copy_model: bool = True, concrete: dict[str, Any] | None = None) -> Traced:
    """Symbolically trace ``model`` (a structural copy of it unless ``copy_model=False``) in eval
    mode; untraceable submodules become leaves. ``example_inputs`` (positional arguments of
    ``forward``) let iteration over tuple/list values be traced; arguments they leave out are
    traced at their defaults, or at the values in ``concrete``."""
    root = structural_copy(model) if copy_model else model
    leaves: dict[str, str] = {}
    concrete = {**_defaults_beyond(root, example_inputs), **(concrete or {})}
    with eval_mode(root):
        for _ in range(max_leaves + 1):
            tracer = _Tracer(set(leaves), example_inputs)
            try:
                graph = tracer.trace(root, concrete_args=concrete or None)
            except Exception as exc:  # noqa: BLE001 - any tracing error is reported
                path = tracer.fail_path
                if not path or path in leaves:
                    raise TraceFailure(
                        f"torch.fx cannot trace {type(model).__name__}.forward: {one_line(exc)} "
                        f"(at {user_frame(exc)})"
                    ) from exc
                leaves[path] = f"{one_line(exc)} (at {user_frame(exc)})"
                log.info("submodule '%s' is not traceable, kept as a leaf: %s", path, leaves[path])
                continue
            bind_norm_flags(graph, root)
            traced = Traced(tracer.root, graph, leaves, type(model).__name__)
            traced.specialisations = list(dict.fromkeys(tracer.specialisations))
            return traced
    raise TraceFailure(f"more than {max_leaves} submodules of {type(model).__name__} are untraceable")


def _device_dtype(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        return p.device, p.dtype
    for b in model.buffers():
        return b.device, torch.float32
    return torch.device("cpu"), torch.float32


def _is_shape(v: Any) -> bool:
    return (isinstance(v, (tuple, list, torch.Size)) and len(v) > 0
            and all(isinstance(s, int) and not isinstance(s, bool) for s in v))


def _is_tensor_tree(v: Any) -> bool:
    if isinstance(v, torch.Tensor):
        return True
    if isinstance(v, (list, tuple)) and v:
        return all(_is_tensor_tree(x) for x in v)
    if isinstance(v, dict) and v:
        return all(_is_tensor_tree(x) for x in v.values())
    return False


def make_inputs(model: torch.nn.Module, example_inputs: Any = None) -> tuple[Any, ...]:
    """Normalise ``example_inputs`` to the tuple of positional arguments of ``forward``.

    Accepted: None (a ``1x3x224x224`` image), a shape, a tensor, or a tuple of arguments where each
    is a tensor or a list/tuple/dict of tensors (e.g. ``([image],)`` for a torchvision detector,
    whose ``forward`` takes a list of images)."""
    device, dtype = _device_dtype(model)
    if example_inputs is None:
        return (torch.randn(DEFAULT_INPUT_SHAPE, device=device, dtype=dtype),)
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if _is_shape(example_inputs):
        if any(s <= 0 for s in example_inputs):
            raise AnalysisError(f"example input shape {tuple(example_inputs)} has a non-positive size")
        return (torch.randn(tuple(example_inputs), device=device, dtype=dtype),)
    if isinstance(example_inputs, (tuple, list)) and example_inputs:
        for i, arg in enumerate(example_inputs):
            if not _is_tensor_tree(arg):
                raise AnalysisError(
                    f"example_inputs[{i}] is a {type(arg).__name__}: each positional argument must be a "
                    "tensor or a non-empty list/tuple/dict of tensors (a list of images: ([img],))")
        return tuple(example_inputs)
    raise AnalysisError(
        "example_inputs must be a tensor, a tuple of tensors or a shape such as (1, 3, 224, 224); "
        f"got {type(example_inputs).__name__}"
    )


def check_arity(model: torch.nn.Module, inputs: Sequence[Any]) -> None:
    """``forward`` must take that many positional arguments (and need no more)."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if len(inputs) > len(positional):
        raise AnalysisError(f"{type(model).__name__}.forward takes {len(positional)} input(s) "
                            f"({', '.join(p.name for p in positional)}); example_inputs gives {len(inputs)}")
    if len(inputs) < len(required):
        raise AnalysisError(f"{type(model).__name__}.forward needs {len(required)} input(s) "
                            f"({', '.join(p.name for p in required)}); example_inputs gives {len(inputs)}")


def input_spec(inputs: Sequence[Any]) -> list:
    """JSON-able shapes of example inputs: a shape list per tensor, nested lists for lists."""
    def spec(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            return list(v.shape)
        if isinstance(v, dict):
            return {"dict": {str(k): spec(x) for k, x in v.items()}}
        return {"list": [spec(x) for x in v]}
    return [spec(v) for v in inputs]


def inputs_from_spec(spec: Sequence[Any]) -> tuple[Any, ...]:
    """Random example inputs of the shapes :func:`input_spec` recorded."""
    def build(s: Any) -> Any:
        if isinstance(s, dict) and "list" in s:
            return [build(x) for x in s["list"]]
        if isinstance(s, dict) and "dict" in s:
            return {k: build(x) for k, x in s["dict"].items()}
        return torch.randn(tuple(int(v) for v in s))
    return tuple(build(s) for s in spec)


class _CheckedShapeProp(ShapeProp):
    def call_function(self, target, args, kwargs):
        return super().call_function(target, _mutable(args), _mutable(kwargs))

    def run_node(self, n: fx.Node) -> Any:
        try:
            out = super().run_node(n)
            n.meta[VALUE] = _to_meta(out)
            return out
        except Exception as exc:  # noqa: BLE001 - re-raised with the node named
            raise AnalysisError(
                f"forward failed at node '{n.name}' ({n.op} {n.target}) with example input "
                f"shape(s) {self._shapes}: {one_line(exc)}"
            ) from exc


def _shapes(inputs: Sequence[Any]) -> list:
    return [tuple(t.shape) if isinstance(t, torch.Tensor) else input_spec([t])[0] for t in inputs]


def propagate_shapes(gm: fx.GraphModule | Traced, inputs: Sequence[Any], fast: bool = True) -> None:
    """Record ``tensor_meta`` on every node of ``gm``, in eval mode and without gradients.

    ``fast`` (default): kernel-free propagation on meta tensors (``shapes.MetaShapeProp``). If it
    fails for any reason, or with ``fast=False``, one real forward pass through torch.fx's
    ``ShapeProp`` does the job, and its error (if any) names the failing node.
    """
    with eval_mode(gm.root if isinstance(gm, Traced) else gm), torch.no_grad():
        if fast:
            try:
                MetaShapeProp(gm).propagate(inputs)
                return
            except Exception as exc:  # noqa: BLE001 - the real forward below reports errors
                log.debug("meta shape propagation failed (%s); running the real forward", one_line(exc))
                for n in gm.graph.nodes:
                    n.meta.pop("tensor_meta", None)
        module = gm.gm if isinstance(gm, Traced) else gm
        sp = _CheckedShapeProp(module)
        sp._shapes = _shapes(inputs)
        saved = [(b, b.detach().clone()) for b in module.buffers()]
        try:
            sp.propagate(*inputs)
        finally:  # in-place buffer updates of the forward are not kept
            for b, v in saved:
                b.copy_(v)
