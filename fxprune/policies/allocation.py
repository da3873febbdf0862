"""Plan arithmetic every policy shares: hardware-friendly channel multiples per group, floors,
and rounding of kept counts.

Channel multiples (``round_to``). ONNX Runtime's CPU convolutions run fastest when channel
counts are multiples of the SIMD width; ragged counts can make a pruned model *slower* than the
original (``benchmarks/results/latency.md``, rounding study: at 50% FLOPs on one thread,
MobileNetV2's speedup ÷ MACs reduction is 0.51 unrounded and 0.97 with multiples of 16). The
default, ``round_to="auto"``, keeps each group's count at a multiple chosen from the group's
size for the target: the target's width (16 for ``"ort-cpu"``), but never more than a quarter of
the group, so a narrow group keeps a useful choice of sizes (a 16-channel CIFAR group keeps 4, 8,
12 or 16 channels, never 0). ``round_to=N`` uses N for every group; ``round_to=1`` opts out.
"""
from __future__ import annotations

import numpy as np

from ..errors import FxpruneError

TARGET_WIDTHS = {"ort-cpu": 16}  # measured: benchmarks/results/latency.md (rounding study)
AUTO = "auto"


def check_round_to(round_to) -> None:
    if round_to is None or round_to == AUTO:
        return
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise FxpruneError(f"round_to={round_to!r} must be a positive integer, 'auto' or None (= 'auto')")


def group_multiples(sizes: np.ndarray, round_to=AUTO, target: str = "ort-cpu") -> np.ndarray:
    """The channel multiple of every group: ``round_to`` itself, or for ``"auto"`` (and None) the
    largest power of two that is at most the target width and at most a quarter of the group."""
    check_round_to(round_to)
    sizes = np.asarray(sizes, np.int64)
    if round_to is not None and round_to != AUTO:
        return np.full(sizes.shape, int(round_to), np.int64)
    width = TARGET_WIDTHS[target]
    quarter = np.maximum(sizes // 4, 1)
    pow2 = 2 ** np.floor(np.log2(quarter)).astype(np.int64)
    return np.minimum(pow2, width).astype(np.int64)


def describe_rounding(round_to) -> str:
    """What the report says about the rounding in use."""
    if round_to is None or round_to == AUTO:
        w = TARGET_WIDTHS["ort-cpu"]
        return (f"auto: multiples of {w} for groups of >= {4 * w} channels, else of the largest power of "
                "two <= a quarter of the group (ONNX Runtime CPU)")
    if round_to == 1:
        return "none (round_to=1)"
    return f"multiples of {round_to}"


def round_up(counts: np.ndarray, multiples: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Round every count up to its group's multiple, never above the group size."""
    counts = np.asarray(counts, np.int64)
    return np.minimum(-(-counts // multiples) * multiples, sizes)


def round_nearest(counts: np.ndarray, multiples: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Round every count to the nearest multiple (never 0, never above the group size)."""
    counts = np.asarray(counts, np.int64)
    near = np.maximum(np.round(counts / multiples).astype(np.int64), 1) * multiples
    return np.minimum(near, sizes)


def align_removals(n: np.ndarray, alive: np.ndarray, floor: np.ndarray, multiples: np.ndarray) -> np.ndarray:
    """Removal counts near ``n`` that leave every group at a multiple of its channel multiple
    (never below ``floor``), with the total as close to ``n.sum()`` as the multiples allow: each
    group's kept count is rounded down or up to a multiple, down first where the fractional part is
    largest (largest-remainder rounding), so small per-group requests are neither all dropped nor
    all inflated."""
    n, alive = np.asarray(n, np.int64), np.asarray(alive, np.int64)
    want = alive - n
    low = np.maximum((want // multiples) * multiples, floor)
    high = np.minimum(low + multiples, alive)
    low = np.minimum(low, alive)
    kept = high.copy()  # start rounded up (removing less), then round down where it helps most
    frac = np.where(high > low, (high - want) / np.maximum(high - low, 1), 0.0)
    budget = int(n.sum()) - int((alive - kept).sum())
    for g in np.argsort(-frac, kind="stable"):
        step = int(high[g] - low[g])
        if step <= 0 or n[g] <= 0:
            continue
        if budget - step >= -step / 2:  # rounding this group down brings the total closer
            kept[g] = low[g]
            budget -= step
    return alive - kept


def normalised_importance(importance: np.ndarray, group_of_class: np.ndarray, n_groups: int) -> np.ndarray:
    """Importance divided by its group's maximum, so that scores compare across groups."""
    gmax = np.zeros(n_groups)
    np.maximum.at(gmax, group_of_class, importance)
    return importance / np.maximum(gmax[group_of_class], 1e-30)


class Allocation:
    """Plan arithmetic over a DepGraph for one budget: channel multiples, floors, kept counts to
    keep vectors, removing the least important live channels, and the repair every learned
    policy must apply to an over-budget plan (policies.md §0.2 rule 4)."""

    def __init__(self, graph, budget, importance: np.ndarray, round_to=AUTO, max_prune_ratio: float = 0.9):
        self.graph, self.budget, self.importance = graph, budget, importance
        self.max_prune_ratio = max_prune_ratio
        g = graph
        self.sizes = np.array([grp.size for grp in g.groups], np.int64)
        self.multiples = group_multiples(self.sizes, round_to)
        self.prunable = np.zeros(len(g.groups), bool)
        for grp in g.prunable_groups:
            self.prunable[grp.id] = True
        order = np.lexsort((-importance, g.group_of_class))  # rank inside the group, most important first
        rank = np.empty(g.n_classes, np.int64)
        starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        rank[order] = np.arange(g.n_classes) - np.repeat(starts, self.sizes)
        self.rank = rank
        self.classes = [grp.classes for grp in g.groups]
        self.full = self.metric(np.ones(g.n_classes))
        self.floor = self.floor_counts()

    # ---- costs --------------------------------------------------------------------------------------
    def metric(self, keep: np.ndarray) -> float | np.ndarray:
        c = self.graph.cost
        return c.params(keep) if self.budget.metric == "params" else c.flops(keep)

    def keep_ratio(self, keep: np.ndarray) -> float:
        """The budget's metric of a keep vector (channels: the prunable channels kept)."""
        if self.budget.metric == "channels":
            mask = self.prunable[self.graph.group_of_class]
            return float(keep[mask].sum() / max(mask.sum(), 1))
        return float(self.metric(keep)) / max(self.full, 1e-12)

    def meets(self, keep: np.ndarray) -> bool:
        return self.keep_ratio(keep) <= self.budget.value + 1e-12

    def keep_vector(self, counts: np.ndarray) -> np.ndarray:
        """Keep the ``counts[g]`` most important channels of every group."""
        return (self.rank < np.asarray(counts)[self.graph.group_of_class]).astype(np.float64)

    def ratio(self, counts: np.ndarray) -> float:
        return float(self.metric(self.keep_vector(counts))) / max(self.full, 1e-12)

    # ---- counts -------------------------------------------------------------------------------------
    def round_counts(self, counts: np.ndarray) -> np.ndarray:
        """Round up to each group's channel multiple (never above the group size)."""
        return round_up(counts, self.multiples, self.sizes)

    def floor_counts(self) -> np.ndarray:
        """The smallest count each group may keep (pinned groups keep everything)."""
        low = np.maximum(np.ceil(self.sizes * (1.0 - self.max_prune_ratio)).astype(np.int64), 1)
        low = np.maximum(low, [g.min_keep for g in self.graph.groups])
        low = round_up(low, self.multiples, self.sizes)
        return np.where(self.prunable, np.minimum(low, self.sizes), self.sizes)

    def alive(self, keep: np.ndarray) -> np.ndarray:
        """Kept channels per group."""
        return np.bincount(self.graph.group_of_class, weights=keep, minlength=len(self.sizes)).round().astype(np.int64)

    def room(self, keep: np.ndarray) -> np.ndarray:
        """Channels each group may still lose."""
        return np.maximum(self.alive(keep) - self.floor, 0)

    def remove(self, keep: np.ndarray, n: np.ndarray, importance: np.ndarray | None = None) -> np.ndarray:
        """Drop about ``n[g]`` of the least important live channels of every group (by
        ``importance``, default the context's), landing kept counts on the channel multiples."""
        imp = self.importance if importance is None else importance
        n = np.minimum(np.asarray(n, np.int64), self.room(keep))
        if (self.multiples > 1).any():
            n = align_removals(n, self.alive(keep), self.floor, self.multiples)
        out = keep.copy()
        for g in np.flatnonzero(n):
            cls = self.classes[g][keep[self.classes[g]] > 0.5]
            out[cls[np.argsort(imp[cls], kind="stable")[:int(n[g])]]] = 0.0
        return out

    def repair(self, keep: np.ndarray, importance: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        """Remove the lowest group-normalised-importance live channels until the budget holds;
        returns the plan and how many channels were removed (0: it already held)."""
        if self.meets(keep):
            return keep, 0
        imp = self.importance if importance is None else importance
        norm = normalised_importance(imp, self.graph.group_of_class, len(self.sizes))
        keep, removed = keep.copy(), 0
        while not self.meets(keep):
            room = self.room(keep)
            live = [c[keep[c] > 0.5] for c in self.classes]
            cands = [cl[np.argsort(norm[cl], kind="stable")[:r]] for cl, r in zip(live, room) if r > 0]
            if not cands:
                from ..errors import BudgetError

                raise BudgetError(f"the plan cannot be repaired to the budget {self.budget}: every group is at its "
                                  f"floor (ratio {self.keep_ratio(keep):.3f})", best=self.keep_ratio(keep))
            chunk = max(1, sum(c.size for c in cands) // 200)
            drop = np.concatenate(cands)
            drop = drop[np.argsort(norm[drop], kind="stable")[:chunk]]
            keep[drop] = 0.0
            removed += int(drop.size)
        alive = self.alive(keep)  # land on the channel multiples (rounding down keeps the budget)
        extra = np.where(alive < self.sizes, alive - np.maximum((alive // self.multiples) * self.multiples, self.floor), 0)
        for g in np.flatnonzero(extra > 0):
            cls = self.classes[g][keep[self.classes[g]] > 0.5]
            keep[cls[np.argsort(norm[cls], kind="stable")[:int(extra[g])]]] = 0.0
            removed += int(extra[g])
        return keep, removed
