"""``global``: rank every channel of every prunable group by importance normalised within its
group (divided by the group's maximum), remove the lowest first until the budget holds; a group
never loses more than ``max_prune_ratio`` of its channels."""
from __future__ import annotations

import numpy as np

from .allocation import normalised_importance
from .base import PolicyContext, register_policy


@register_policy("global", "global_magnitude")
class GlobalRank:
    def run(self, ctx: PolicyContext) -> np.ndarray:
        if ctx.budget.metric == "channels":
            return ctx.channel_counts()
        ctx.check_feasible()
        g = ctx.graph
        norm = normalised_importance(ctx.importance, g.group_of_class, len(g.groups))
        floor = ctx.floor_counts()
        # a class is removable if it is prunable and ranked below its group's floor
        cap = ctx.sizes - floor
        grp = g.group_of_class
        removable = ctx.prunable[grp] & (ctx.rank >= ctx.sizes[grp] - cap[grp])
        cand = np.flatnonzero(removable)
        cand = cand[np.lexsort((-ctx.rank[cand], norm[cand]))]  # least important first
        cand_groups = grp[cand]

        def counts_at(i: int) -> np.ndarray:
            removed = np.bincount(cand_groups[:i], minlength=len(g.groups))
            return ctx.round_counts(ctx.sizes - removed)

        if ctx.ratio(counts_at(0)) <= ctx.budget.value:
            return counts_at(0)
        lo, hi = 0, len(cand)  # ratio(lo) > budget >= ratio(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if ctx.ratio(counts_at(mid)) <= ctx.budget.value:
                hi = mid
            else:
                lo = mid
        # the last removal may overshoot (one channel of a wide, early layer can be a few % of the
        # FLOPs; with rounding, a whole multiple): give channels back while the budget holds
        return ctx.fill(counts_at(hi), lambda c: np.argsort(-(c / np.maximum(ctx.sizes, 1)), kind="stable"))
