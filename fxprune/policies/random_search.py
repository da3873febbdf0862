"""``random``: random search over per-group keep ratios, the equal-evaluation baseline of the
learned policies (policies.md §0.4: a learned search is worth its cost only if it beats random
plans scored as many times).

Each candidate draws a keep ratio per prunable group uniformly in ``[low, 1]``, scales all of
them by one factor (found by bisection) so the plan just meets the budget, then hands channel
multiples back to groups in random order while the budget still holds; inside a group it keeps
the most important channels (the context's criterion, L1/L2 ...). Candidates are scored in
batches through ``evaluate_many``; the best reward-split accuracy wins. A checkpoint follows
every batch (the generator, the count done, the best plan as a tensor), so a killed search resumes to the
same plan.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch

from ..options import FXPRUNE_DEFAULT, option
from ..search.config import SearchConfig, described
from ..search.runlog import RowKind
from .allocation import Allocation
from .base import PolicyContext, PolicyResult, register_policy

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RandomConfig(SearchConfig):
    """Options of ``random`` (all fxprune defaults: the method has no paper)."""

    evaluations: int = option(200, f"{FXPRUNE_DEFAULT}: candidates scored (set it to a learned policy's count "
                              "for an equal-evaluation comparison)", low=1)
    batch: int = option(16, f"{FXPRUNE_DEFAULT}: candidates per evaluate_many call (and per checkpoint)", low=1)
    low: float = option(0.15, f"{FXPRUNE_DEFAULT}: smallest per-group keep ratio drawn before scaling", low=0.0,
                        high=1.0, high_open=True)


def random_counts(alloc: Allocation, rng: np.random.Generator, low: float = 0.15) -> np.ndarray:
    """Kept channels per group for one random plan that meets ``alloc``'s budget: ratios uniform
    in ``[low, 1]``, one scale factor by bisection, then multiples handed back in random order."""
    budget = alloc.budget.value
    ratios = rng.uniform(low, 1.0, len(alloc.sizes))

    def ratio(c: np.ndarray) -> float:
        return alloc.keep_ratio(alloc.keep_vector(c))

    def counts(scale: float) -> np.ndarray:
        c = np.ceil(np.minimum(1.0, ratios * scale) * alloc.sizes).astype(np.int64)
        c = np.maximum(alloc.round_counts(c), alloc.floor)
        return np.where(alloc.prunable, np.minimum(c, alloc.sizes), alloc.sizes)

    lo, hi = 0.0, 1.0 / max(ratios.min(), 1e-9)
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ratio(counts(mid)) <= budget + 1e-12 else (lo, mid)
    c = counts(lo)
    for g in rng.permutation(len(c)):
        while alloc.prunable[g] and c[g] < alloc.sizes[g]:
            trial = c.copy()
            trial[g] = min(c[g] + alloc.multiples[g], alloc.sizes[g])
            if ratio(trial) > budget + 1e-12:
                break
            c = trial
    return c


@dataclasses.dataclass
class _State:
    drawn: int = 0  # candidates drawn (and scored, up to max_evals)
    best_acc: float = -1.0  # the best feasible Metrics.score (the accuracy unless reward_score='likelihood')
    best_eval: int = -1


@register_policy("random", "random_search", config=RandomConfig)
class RandomSearch:
    needs_data = True

    def run(self, ctx: PolicyContext) -> PolicyResult:
        ctx.require_search("random", "its candidates are scored on a reward split")
        cfg: RandomConfig = ctx.config
        rl, ev, alloc = ctx.run, ctx.evaluator, ctx.alloc
        rng = np.random.default_rng(ctx.seed)
        st, best = _State(), np.ones(ctx.graph.n_classes)
        ckpt = rl.load_checkpoint()
        if ckpt is not None:
            st, best = _State(**ckpt.state), ckpt.tensors["best_keep"].numpy().astype(np.float64)
            ckpt.restore_generator("rng", rng)
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.evaluations, initial=st.drawn, desc="random", unit="plan", disable=not ctx.progress)
        while st.drawn < cfg.evaluations and not rl.exhausted:
            n = min(cfg.batch, cfg.evaluations - st.drawn)
            if rl.max_evals is not None:
                n = min(n, rl.max_evals - rl.n_evals)
            plans = [alloc.keep_vector(random_counts(alloc, rng, cfg.low)) for _ in range(n)]
            for keep, m in zip(plans, ev.evaluate_many(plans)):
                row = rl.log({"kind": RowKind.CANDIDATE, "candidate": st.drawn, "reward": m.score, "acc": m.acc,
                              "loss": m.loss, "flops_ratio": m.flops_ratio, "params_ratio": m.params_ratio,
                              "feasible": m.feasible, "seconds": m.seconds, "bn_recalib": m.bn_recalib,
                              "mode": m.mode})
                st.drawn += 1
                if m.feasible and m.score > st.best_acc:
                    st.best_acc, st.best_eval, best = m.score, row["eval"], keep
                    rl.log({"kind": RowKind.COMMIT, "of_eval": row["eval"], "reward": m.score, "acc": m.acc,
                            "flops_ratio": m.flops_ratio})
            bar.update(n)
            bar.set_postfix(best=f"{st.best_acc:.3f}")
            rl.save_checkpoint(dataclasses.asdict(st), generators={"rng": rng},
                               tensors={"best_keep": torch.from_numpy(best.astype(np.float32))})
        bar.close()
        if st.best_eval >= 0:
            keep, source = best, "best scored candidate"
        else:  # nothing scored (max_evals=0 or nothing feasible): one more draw, unscored
            keep, source = alloc.keep_vector(random_counts(alloc, np.random.default_rng(ctx.seed), cfg.low)), \
                "an unscored draw"
        keep, repaired = alloc.repair(keep)
        info = {"evaluations": rl.n_evals, "best_reward": st.best_acc, "best_eval": st.best_eval, "chosen": source,
                "repaired": repaired, "config": described(cfg)}
        return PolicyResult(keep, None, list(rl.rows), info)
