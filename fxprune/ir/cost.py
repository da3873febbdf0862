"""The cost model: FLOPs and parameter counts of any plan, computed from the DepGraph alone.

Every cost term is ``coef * prod(kept size of d)`` over a few labelled dims ``d`` (a conv: its
weight's two channel dims times kernel and output area; a parameter: its labelled dims times the
fixed ones). The kept size of a dim is ``fixed positions + A[d] @ keep`` where ``keep`` is a 0/1
vector over removable channels (classes), so a whole batch of plans is scored with one sparse
matrix product. FLOPs are multiply-accumulates of convolutions, linear layers and matrix
products (the convention of fvcore/thop); elementwise ops and normalisation are not counted.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .context import FIXED


class CostModel:
    def __init__(self, comp: np.ndarray, n_classes: int, group_of_class: np.ndarray,
                 group_sizes: np.ndarray, flops_terms: list, param_terms: list):
        dims: list[np.ndarray] = []
        index: dict[int, int] = {}

        def dim_id(arr: np.ndarray) -> int:
            key = id(arr)
            if key not in index:
                index[key] = len(dims)
                dims.append(arr)
            return index[key]

        def build(terms):
            coefs, ids = [], []
            for coef, arrays in terms:
                coefs.append(coef)
                ids.append([dim_id(a) for a in arrays])
            return np.asarray(coefs, np.float64), ids

        self._fc, f_ids = build(flops_terms)
        self._pc, p_ids = build(param_terms)
        if dims:
            labs = np.concatenate(dims)
            which = np.repeat(np.arange(len(dims)), [a.size for a in dims])
            fixed = labs == FIXED
            const = np.bincount(which[fixed], minlength=len(dims)).astype(np.float64)
            cols = comp[labs[~fixed]]
            indptr = np.concatenate([[0], np.cumsum(np.bincount(which[~fixed], minlength=len(dims)))])
        else:
            const, cols, indptr = np.zeros(0), np.zeros(0, np.int64), np.zeros(1, np.int64)
        # Built straight from (data, indices, indptr): rows arrive in order, so no COO sort. A
        # class may repeat within a row (e.g. a dim labelled twice by a shuffle); a CSR product
        # sums such duplicates, which is the count wanted.
        self.A = sp.csr_matrix((np.ones(cols.size), cols, indptr), shape=(len(dims), n_classes))
        self.const = const
        width = max([len(x) for x in f_ids + p_ids] + [1])
        one = len(dims)  # index of an extra row fixed at 1.0

        def pad(ids):
            out = np.full((len(ids), width), one, np.int64)
            for i, x in enumerate(ids):
                out[i, :len(x)] = x
            return out

        self._fi, self._pi = pad(f_ids), pad(p_ids)
        self.n_classes = n_classes
        self.group_of_class = group_of_class
        self.group_sizes = group_sizes
        full = np.ones(n_classes)
        self.full_flops = float(self.flops(full))
        self.full_params = float(self.params(full))

    def _sizes(self, keep: np.ndarray) -> np.ndarray:
        keep = np.asarray(keep, np.float64)
        s = self.A @ keep
        s = s + (self.const if keep.ndim == 1 else self.const[:, None])
        one = np.ones((1,) + s.shape[1:])
        return np.concatenate([s, one], axis=0)

    def _total(self, keep, coefs, ids) -> np.ndarray:
        s = self._sizes(keep)
        vals = s[ids]  # (terms, width[, batch])
        prod = vals.prod(axis=1)
        return (coefs if prod.ndim == 1 else coefs[:, None]) * prod

    def flops(self, keep: np.ndarray) -> float | np.ndarray:
        """FLOPs (MACs) for a keep vector over classes, or a (classes, batch) matrix of them."""
        return self._total(keep, self._fc, self._fi).sum(axis=0)

    def params(self, keep: np.ndarray) -> float | np.ndarray:
        return self._total(keep, self._pc, self._pi).sum(axis=0)

    def keep_from_counts(self, counts: np.ndarray) -> np.ndarray:
        """Fractional keep vector that spreads each group's kept count evenly over its channels
        (exact for the usual case where every channel of a group appears equally often)."""
        frac = np.asarray(counts, np.float64) / np.maximum(self.group_sizes, 1)
        return frac[self.group_of_class]

    def from_counts(self, counts: np.ndarray) -> dict[str, float]:
        keep = self.keep_from_counts(counts)
        return {"flops": float(self.flops(keep)), "params": float(self.params(keep))}

    def group_cost(self, gid: int, kept: int) -> dict[str, float]:
        """Whole-model FLOPs and params when only group ``gid`` is cut to ``kept`` channels."""
        counts = self.group_sizes.astype(np.float64).copy()
        counts[gid] = kept
        return self.from_counts(counts)
