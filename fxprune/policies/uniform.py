"""``uniform``: one keep ratio for every prunable group, solved by bisection on the cost model."""
from __future__ import annotations

import numpy as np

from .base import PolicyContext, register_policy


@register_policy("uniform")
class Uniform:
    def run(self, ctx: PolicyContext) -> np.ndarray:
        if ctx.budget.metric == "channels":
            return ctx.channel_counts()
        ctx.check_feasible()
        floor = ctx.floor_counts()

        def counts_at(r: float) -> np.ndarray:
            c = ctx.round_counts(np.ceil(ctx.sizes * r).astype(np.int64))
            return np.where(ctx.prunable, np.maximum(c, floor), ctx.sizes)

        lo, hi = 0.0, 1.0
        if ctx.ratio(counts_at(1.0)) <= ctx.budget.value:
            return counts_at(1.0)
        for _ in range(40):
            mid = (lo + hi) / 2
            if ctx.ratio(counts_at(mid)) <= ctx.budget.value:
                lo = mid
            else:
                hi = mid
        counts = counts_at(lo)
        # hand back single channels, least-kept groups first, to land on the budget
        return ctx.fill(counts, lambda c: np.argsort(c / np.maximum(ctx.sizes, 1), kind="stable"))
