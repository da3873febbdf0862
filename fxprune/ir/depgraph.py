"""DepGraph: the IR. Groups of channels that must be removed together, their members, why a
group is pinned, and a cost model that scores any plan without touching weights."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch.fx as fx
from scipy.sparse.csgraph import connected_components

from ._np import code_counts, unique, unique_inverse, unique_rows_inverse
from .context import FIXED, IN, NORM_B, NORM_W, OUT, AnalysisContext
from .cost import CostModel
from .trace import Traced


@dataclasses.dataclass
class Member:
    """One parameter dimension indexed by a group's channels."""

    param: str  # qualified name of the parameter or buffer
    dim: int
    role: str  # "out" (producer), "in" (consumer), "norm_w", "norm_b", "stat_mean", "stat_var"
    positions: int  # positions of this dim that belong to the group


@dataclasses.dataclass
class Group:
    id: int
    size: int
    classes: np.ndarray  # class id of each of the group's channels, in channel order
    pinned: bool
    reasons: list[str]
    members: list[Member]
    sources: list[str]  # graph nodes that create the channels ("node (kind)")
    min_keep: int = 1

    @property
    def producers(self) -> list[Member]:
        return [m for m in self.members if m.role in (OUT, NORM_W, NORM_B)]

    @property
    def consumers(self) -> list[Member]:
        return [m for m in self.members if m.role == IN]

    def modules(self) -> list[str]:
        seen: dict[str, None] = {}
        for m in self.members:
            seen.setdefault(m.param.rsplit(".", 1)[0] if "." in m.param else m.param, None)
        return list(seen)


def _source_set_ids(pc: np.ndarray, ps: np.ndarray, counts: np.ndarray,
                    starts: np.ndarray) -> np.ndarray:
    """An id per class with several sources, equal for classes with the same set of sources.

    ``(pc, ps)`` are the sorted unique (class, source) pairs; each multi-source class's sorted
    source list becomes one row of a padded matrix and equal rows get equal ids."""
    multi = np.flatnonzero(counts > 1)
    if not multi.size:
        return np.zeros(0, np.int64)
    width = int(counts[multi].max())
    if multi.size * width > 20_000_000:  # pathological fan-in: hash the tuples instead
        ids: dict[tuple, int] = {}
        return np.array([ids.setdefault(tuple(ps[starts[c]:starts[c] + counts[c]].tolist()), len(ids))
                         for c in multi], np.int64)
    sel = counts[pc] > 1
    rows = np.searchsorted(multi, pc[sel])
    cols = np.flatnonzero(sel) - starts[pc[sel]]
    mat = np.full((multi.size, width), -1, np.int64)
    mat[rows, cols] = ps[sel]
    return unique_rows_inverse(mat)


class DepGraph:
    """Built by :func:`fxprune.analyze`; see the module docstring."""

    def __init__(self, gm: fx.GraphModule | Traced, ctx: AnalysisContext, input_shapes: list[tuple[int, ...]],
                 leaves: dict[str, str]):
        self._source = gm
        self.input_shapes = input_shapes
        self.leaves = leaves
        self.labels = ctx.labels
        self.params = ctx.params
        self.conv_modes = ctx.conv_modes
        self.notes = ctx.notes
        self.model_name = gm.name if isinstance(gm, Traced) else type(gm).__name__
        # set by analyze() for a model whose forward is untraceable (ir/regions.py)
        self.regions: list = []
        self.root_model = None  # the model (structural copy) the regions belong to
        self.untraced: str | None = None  # why its forward is not a graph
        self.whole_flops: float | None = None  # the whole model's MACs (flop_counter), example inputs
        self.specialisations: list[str] = []  # control flow on shapes taken for the example input
        n = ctx.n_atoms
        a, b = ctx.edges()
        adj = sp.coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n, n))
        n_classes, comp = connected_components(adj, directed=False)
        self.comp = comp.astype(np.int64)
        self.n_classes = int(n_classes)
        self._build_groups(ctx)
        self.cost = CostModel(self.comp, self.n_classes, self.group_of_class,
                              np.array([g.size for g in self.groups], np.int64),
                              ctx.flops_terms, self._param_terms())

    # ---- construction ------------------------------------------------------------------------
    def _build_groups(self, ctx: AnalysisContext) -> None:
        comp, nc, n = self.comp, self.n_classes, self.comp.size
        cmin = np.full(nc, n, np.int64)
        np.minimum.at(cmin, comp, np.arange(n))
        nsrc = max(len(ctx.sources), 1)
        src_of = np.repeat(np.arange(len(ctx.sources)), [s.size for s in ctx.sources])
        pairs = unique(comp * nsrc + src_of)
        pc, ps = pairs // nsrc, pairs % nsrc
        counts = np.bincount(pc, minlength=nc)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        key = np.where(counts == 1, ps[np.minimum(starts, max(len(ps) - 1, 0))], -1)
        key[counts > 1] = nsrc + _source_set_ids(pc, ps, counts, starts)
        keys, inv = unique_inverse(key)
        first = np.full(len(keys), n, np.int64)
        np.minimum.at(first, inv, cmin)
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        self.group_of_class = rank[inv].astype(np.int64)
        by_group = np.argsort(self.group_of_class * n + cmin, kind="stable")
        sizes = np.bincount(self.group_of_class, minlength=len(keys))
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        self.index_in_group = np.empty(nc, np.int64)
        self.index_in_group[by_group] = np.arange(nc) - np.repeat(bounds[:-1], sizes)
        pinned_class = np.zeros(nc, bool)
        reasons: list[dict[str, None]] = [dict() for _ in range(len(keys))]
        for atoms, why in ctx.pins:
            cls = comp[atoms]
            pinned_class[cls] = True
            for g in unique(self.group_of_class[cls]).tolist():
                if len(reasons[g]) < 8:
                    reasons[g].setdefault(why, None)
        pinned = np.bincount(self.group_of_class[pinned_class], minlength=len(keys)) > 0
        self.groups = [Group(g, int(sizes[g]), by_group[bounds[g]:bounds[g + 1]], bool(pinned[g]),
                             list(reasons[g]), [], []) for g in range(len(keys))]
        ng = len(self.groups)
        if ctx.sources:  # sources tile the atoms in order, so src_of[i] is atom i's source
            hits, _ = code_counts(src_of * ng + self.group_of_class[comp[:src_of.size]], nsrc * ng)
            for k in hits.tolist():
                s = ctx.sources[k // ng]
                self.groups[k % ng].sources.append(f"{s.node} ({s.kind})")
        # Members: how many positions of each parameter dim fall in each group. Dims of one
        # layer usually share a label array (conv out, bias, norm affine and stats), so the
        # counting runs once per distinct array.
        entries = [(name, d, pd) for name, dims in ctx.params.items() for d, pd in dims.items()]
        slot: dict[int, int] = {}
        arrays: list[np.ndarray] = []
        for _, _, pd in entries:
            if slot.setdefault(id(pd.labels), len(arrays)) == len(arrays):
                arrays.append(pd.labels)
        if arrays:
            labs = np.concatenate(arrays)
            which = np.repeat(np.arange(len(arrays)), [a.size for a in arrays])
            live = labs != FIXED
            keys, cnt = code_counts(which[live] * ng + self.group_of_class[comp[labs[live]]],
                                    len(arrays) * ng)
            per_array: list[list[tuple[int, int]]] = [[] for _ in arrays]
            for k, c in zip(keys.tolist(), cnt.tolist()):
                per_array[k // ng].append((k % ng, c))
            for name, d, pd in entries:
                for g, c in per_array[slot[id(pd.labels)]]:
                    self.groups[g].members.append(Member(name, d, pd.role, c))

    def _param_terms(self) -> list:
        terms = []
        for name, p in self._source.named_parameters():
            dims = self.params.get(name, {})
            coef, arrays = 1.0, []
            for d, s in enumerate(p.shape):
                if d in dims:
                    arrays.append(dims[d].labels)
                else:
                    coef *= s
            terms.append((coef, arrays))
        return terms

    @property
    def gm(self) -> fx.GraphModule:
        """The traced model as a GraphModule (built on first use; shares submodules with the model)."""
        return self._source.gm if isinstance(self._source, Traced) else self._source

    # ---- queries -----------------------------------------------------------------------------
    @property
    def prunable_groups(self) -> list[Group]:
        return [g for g in self.groups if not g.pinned and g.size > g.min_keep]

    @property
    def pinned_groups(self) -> list[Group]:
        return [g for g in self.groups if g.pinned]

    def keep_vector(self, keep: dict[int, Any] | None) -> np.ndarray:
        """0/1 vector over classes for ``{group id: kept indices}`` (missing groups kept whole)."""
        vec = np.ones(self.n_classes)
        for gid, idx in (keep or {}).items():
            g = self.groups[int(gid)]
            mask = np.zeros(g.size)
            mask[np.asarray(idx, np.int64)] = 1.0
            vec[g.classes] = mask
        return vec

    def atom_keep(self, keep_vec: np.ndarray) -> np.ndarray:
        """Keep flag of every atom, plus a trailing True that ``FIXED`` (-1) indexes."""
        return np.append(keep_vec[self.comp] > 0.5, True)

    def signature(self) -> str:
        """Fingerprint of the graph's groups; a plan made for another architecture won't match.
        Pinned flags are left out, so user choices such as ``ignore=`` do not change it."""
        rows = [[g.size, sorted({m.param for m in g.members})] for g in self.groups]
        return hashlib.sha1(json.dumps(rows).encode()).hexdigest()[:16]

    def summary(self, max_rows: int | None = 60) -> str:
        from .summary import summary

        return summary(self, max_rows)

    def to_networkx(self):
        from .summary import to_networkx

        return to_networkx(self)

    def __repr__(self) -> str:
        return (f"DepGraph({self.model_name}: {len(self.groups)} groups, "
                f"{len(self.prunable_groups)} prunable, {len(self.pinned_groups)} pinned)")
