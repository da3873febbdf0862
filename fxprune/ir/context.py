"""The bookkeeping shared by all op rules while a graph is analysed.

Every channel slot that can exist in the model is an *atom* (an integer id). A tensor dimension
that carries channels holds a *label array*: for each position along that dimension, the atom it
belongs to, or ``-1`` for a position whose size can never change. Rules say how label arrays flow
through an op: they copy them, slice or permute them, and ``union`` atoms that must be removed
together. At the end, the connected components of the union relation are the removable channels
(*classes*), and classes with the same set of producers form a *group*.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torch.fx as fx

from ._np import unique

Labels = dict  # dim -> np.ndarray[int64] of atom ids (-1 = fixed position)

FIXED = -1

# Roles of a parameter dimension: how it relates to the channels it is indexed by.
OUT = "out"  # producer: these positions create the channel (conv/linear output, source params)
IN = "in"  # consumer: input channels of a conv/linear
NORM_W = "norm_w"  # affine scale of a normalisation layer
NORM_B = "norm_b"  # affine shift of a normalisation layer
STAT_MEAN = "stat_mean"  # running mean buffer
STAT_VAR = "stat_var"  # running variance buffer
ZEROED_FOR_DEAD = (OUT, NORM_W, NORM_B, STAT_MEAN)


class Keyed:
    """Labels of a dict of tensors (a model input such as ``{"image": x}``): labels by key."""

    def __init__(self, items: dict):
        self.items = items


class Refuse(Exception):
    """Raised by a rule that cannot handle this use of its op; the reason is reported."""


@dataclasses.dataclass
class ParamDim:
    """One labelled dimension of a parameter or buffer."""

    labels: np.ndarray
    role: str


@dataclasses.dataclass
class Source:
    """A contiguous block of atoms created at one place in the graph."""

    start: int
    size: int
    node: str
    kind: str  # "module", "param", "pad", "input", "opaque"


def canonical_names(root: torch.nn.Module, graph: fx.Graph) -> dict[str, str]:
    """``{alias: name}`` for tensors registered under several names (tied parameters): every
    alias maps to one name, the first (in module order) whose owner the graph uses."""
    by_id: dict[int, list[str]] = {}
    for name, t in [*root.named_parameters(remove_duplicate=False), *root.named_buffers(remove_duplicate=False)]:
        by_id.setdefault(id(t), []).append(name)
    groups = [names for names in by_id.values() if len(names) > 1]
    if not groups:
        return {}
    used = {n.target for n in graph.nodes if n.op in ("call_module", "get_attr")}

    def present(name: str) -> bool:
        if name in used:
            return True
        parts = name.split(".")
        return any(".".join(parts[:k]) in used for k in range(1, len(parts)))

    canon = {}
    for names in groups:
        pick = next((n for n in names if present(n)), names[0])
        canon.update({n: pick for n in names})
    return canon


class AnalysisContext:
    """Mutable state of one channel analysis; rules talk to it through small helpers."""

    def __init__(self, gm: fx.GraphModule):
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.canon = gm.canon if hasattr(gm, "canon") else canonical_names(gm, gm.graph)
        self.n_atoms = 0
        self.sources: list[Source] = []
        self._param_src: list[tuple[int, int, str, int]] = []  # (start, size, param, dim) of get_attr atoms
        self._ua: list[np.ndarray] = []
        self._ub: list[np.ndarray] = []
        self.pins: list[tuple[np.ndarray, str]] = []
        self.params: dict[str, dict[int, ParamDim]] = {}
        self.labels: dict[str, Any] = {}  # node name -> Labels | list | None
        self.flops_terms: list[tuple[float, list[np.ndarray]]] = []
        self.term_start: dict[str, int] = {}  # node name -> index of its first FLOPs term
        self.conv_modes: dict[str, str] = {}  # module name -> "fixed" | "per_channel"
        self.notes: list[tuple[str, str]] = []  # (node, reason) for every refusal
        self.node: fx.Node | None = None  # node being analysed

    # ---- atoms -------------------------------------------------------------------------------
    def new_atoms(self, n: int, kind: str, node: str | None = None) -> np.ndarray:
        node = node if node is not None else (self.node.name if self.node is not None else "?")
        start = self.n_atoms
        self.n_atoms += n
        self.sources.append(Source(start, n, node, kind))
        return np.arange(start, start + n, dtype=np.int64)

    def union(self, a: np.ndarray, b: np.ndarray, why: str = "") -> None:
        """Atoms a[i] and b[i] must be removed together; a fixed position pins its partner."""
        a = np.asarray(a, dtype=np.int64).ravel()
        b = np.asarray(b, dtype=np.int64).ravel()
        if a.shape != b.shape:
            raise Refuse(f"cannot couple {a.size} channels with {b.size} channels")
        fa, fb = a == FIXED, b == FIXED
        if fa.any() or fb.any():
            reason = why or f"coupled to a fixed-size dimension at node '{self._here()}'"
            self.pin(a[fb & ~fa], reason)
            self.pin(b[fa & ~fb], reason)
        ok = ~(fa | fb)
        if ok.any():
            self._ua.append(a[ok])
            self._ub.append(b[ok])

    def union_all(self, arrays: list[np.ndarray], why: str = "") -> None:
        """Couple every array position-wise with the first (one vectorised union when the sizes agree)."""
        if len(arrays) < 2:
            return
        first = np.asarray(arrays[0], dtype=np.int64).ravel()
        rest = [np.asarray(a, dtype=np.int64).ravel() for a in arrays[1:]]
        if all(r.shape == first.shape for r in rest):
            self.union(np.tile(first, len(rest)), np.concatenate(rest), why)
            return
        for other in rest:
            self.union(first, other, why)

    def pin(self, atoms: np.ndarray, reason: str) -> None:
        atoms = np.asarray(atoms, dtype=np.int64).ravel()
        atoms = atoms[atoms != FIXED]
        if atoms.size:
            self.pins.append((unique(atoms), reason))

    def all_pinned(self, atoms: np.ndarray) -> bool:
        """True when every atom is already pinned (used to keep fixed dims fixed)."""
        atoms = np.asarray(atoms, np.int64)
        atoms = atoms[atoms != FIXED]
        if not atoms.size:
            return True
        if not self.pins:
            return False
        return bool(np.isin(atoms, np.concatenate([p for p, _ in self.pins])).all())

    def pin_labels(self, labels: Labels | None, reason: str) -> None:
        for arr in (labels or {}).values():
            self.pin(arr, reason)

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._ua:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(self._ua), np.concatenate(self._ub)

    # ---- parameters --------------------------------------------------------------------------
    def name_of(self, name: str) -> str:
        """The canonical name of a parameter or buffer (tied tensors have one name)."""
        return self.canon.get(name, name)

    def param_atoms(self, name: str, dim: int, n: int) -> np.ndarray:
        """Fresh atoms for a dim of a tensor read by a ``get_attr`` node, remembered so that a
        later use can say what the dim is (:meth:`mark_role`)."""
        atoms = self.new_atoms(n, "param")
        self._param_src.append((int(atoms[0]), n, self.name_of(name), dim))
        return atoms

    def mark_role(self, atoms: np.ndarray, role: str) -> None:
        """Record that the ``get_attr`` tensor dims holding ``atoms`` are used in ``role``
        (a weight computed from a parameter: its input-channel dim is a consumer, ...)."""
        atoms = np.asarray(atoms, np.int64).ravel()
        atoms = atoms[atoms != FIXED]
        if not atoms.size or not self._param_src:
            return
        starts = np.array([s for s, *_ in self._param_src])
        idx = np.searchsorted(starts, atoms, side="right") - 1
        for i in np.unique(idx[idx >= 0]).tolist():
            start, n, name, dim = self._param_src[i]
            if ((atoms >= start) & (atoms < start + n)).any():
                pd = self.params.get(name, {}).get(dim)
                if pd is not None and pd.role == OUT:
                    pd.role = role

    def bind(self, arg: Any, dim: int, labels: np.ndarray, role: str, why: str = "") -> None:
        """Couple dim ``dim`` of a tensor argument (a parameter read by ``get_attr`` or computed
        from parameters) with ``labels``, and record its role. A dim without labels is fixed, so
        ``labels`` are pinned (``why``)."""
        if not isinstance(arg, fx.Node):
            return
        own = self.tensor_labels(arg).get(dim)
        labels = np.asarray(labels, np.int64)
        if own is None:
            self.union(np.full(labels.size, FIXED, np.int64), labels, why or None)
            return
        self.union(own, labels, why or None)
        self.mark_role(own, role)

    def pin_other_dims(self, arg: Any, bound: tuple[int, ...], reason: str) -> None:
        """Pin the labelled dims of a tensor argument other than ``bound`` (a kernel's dims)."""
        if isinstance(arg, fx.Node):
            for d, arr in self.tensor_labels(arg).items():
                if d not in bound:
                    self.pin(arr, reason)

    def label_param(self, name: str, dim: int, labels: np.ndarray, role: str) -> np.ndarray:
        """Attach labels to a parameter dim; a second use (shared weights) couples both uses."""
        labels = np.asarray(labels, dtype=np.int64)
        name = self.name_of(name)
        dims = self.params.setdefault(name, {})
        if dim in dims:
            self.union(dims[dim].labels, labels, f"parameter '{name}' is used twice")
            dims[dim].role = role if dims[dim].role == OUT else dims[dim].role
            return dims[dim].labels
        dims[dim] = ParamDim(labels, role)
        return labels

    def param_labels(self, name: str, dim: int) -> np.ndarray | None:
        pd = self.params.get(self.name_of(name), {}).get(dim)
        return None if pd is None else pd.labels

    def add_flops(self, coef: float, dims: list[np.ndarray]) -> None:
        """Record a FLOPs term: ``coef * prod(kept size of each labelled dim)``."""
        self.flops_terms.append((float(coef), [np.asarray(d, np.int64) for d in dims]))

    # ---- graph helpers -----------------------------------------------------------------------
    def _here(self) -> str:
        return self.node.name if self.node is not None else "?"

    def module(self, node: fx.Node) -> torch.nn.Module:
        return self.modules[node.target]

    def get(self, arg: Any) -> Any:
        """Labels of an argument (a node's labels; {} for a constant)."""
        if isinstance(arg, fx.Node):
            return self.labels.get(arg.name)
        return {}

    def tensor_labels(self, arg: Any) -> Labels:
        lab = self.get(arg)
        return lab if isinstance(lab, dict) else {}


def shape_of(arg: Any) -> tuple[int, ...] | None:
    """Shape of a node's tensor output as recorded by shape propagation (None if not a tensor)."""
    if not isinstance(arg, fx.Node):
        if isinstance(arg, torch.Tensor):
            return tuple(arg.shape)
        return None
    tm = arg.meta.get("tensor_meta")
    if tm is None or not hasattr(tm, "shape"):
        return None
    return tuple(tm.shape)  # a torch.Size of ints (shapes are static here)


def full_labels(labels: Labels, dim: int, size: int) -> np.ndarray:
    """The label array of a dim, materialising ``FIXED`` for an unlabelled one."""
    arr = labels.get(dim)
    return arr if arr is not None else np.full(size, FIXED, np.int64)


def is_fixed(arr: np.ndarray | None) -> bool:
    return arr is None or bool((arr == FIXED).all())


def shapes_of(node: fx.Node) -> list[tuple[int, ...] | None] | None:
    """Shapes of a node's outputs when it returns a tuple/list of tensors."""
    tm = node.meta.get("tensor_meta")
    if isinstance(tm, (tuple, list)) and not hasattr(tm, "shape"):
        return [tuple(int(s) for s in t.shape) if hasattr(t, "shape") else None for t in tm]
    return None


def tensor_at(module: torch.nn.Module, qualname: str) -> Any:
    """The parameter, buffer or plain attribute ``qualname`` (e.g. ``"layer1.0.bn1.weight"``) of ``module``."""
    owner, _, attr = qualname.rpartition(".")
    return getattr(module.get_submodule(owner) if owner else module, attr)
