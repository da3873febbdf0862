"""The math of ``ppo`` (policies.md §3.2), as small pure functions: Bernoulli log-probabilities
and entropies, the clipped PPO objective, the self-competition reward of the constrained MDP and
its Lagrangian alternative, and the environment's projection of a sampled mask onto a valid plan
(the min-keep override and the channel multiples), optionally ranked by the logits and filled up to
the budget."""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F


def bernoulli_logprob(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``Σ_j log Bernoulli(m_j; σ(l_j))`` over the last dim."""
    m = mask.to(logits.dtype)
    return (m * F.logsigmoid(logits) + (1 - m) * F.logsigmoid(-logits)).sum(-1)


def bernoulli_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Sum of the Bernoulli entropies over the last dim."""
    p = torch.sigmoid(logits)
    return -(p * F.logsigmoid(logits) + (1 - p) * F.logsigmoid(-logits)).sum(-1)


def clipped_surrogate(logp_new: torch.Tensor, logp_old: torch.Tensor, adv: torch.Tensor, clip: float) -> torch.Tensor:
    """PPO's policy loss ``-E[min(ρ A, clip(ρ, 1-ε, 1+ε) A)]`` with ``ρ = exp(logp_new - logp_old)``."""
    ratio = torch.exp(logp_new - logp_old)
    return -torch.min(ratio * adv, torch.clamp(ratio, 1 - clip, 1 + clip) * adv).mean()


def normalise(adv: np.ndarray) -> np.ndarray:
    """Per-batch advantage normalisation (mandatory with sign rewards)."""
    return (adv - adv.mean()) / (adv.std() + 1e-8)


@dataclasses.dataclass
class Competition:
    """The moving references of the self-competition reward."""

    a_ref: float  # EMA (or best) of the feasible accuracies so far
    c_ema: float = 1.0  # EMA of the infeasible costs so far


def self_competition(c: float, b: float, acc: float | None, ref: Competition, mu: float,
                     baseline: str = "ema") -> tuple[float, Competition]:
    """The episode reward and the updated references.

    Phase 1 (``c > b``, the constraint is not met): ``-1 + 0.5·sign(c_ema - c)``, in {-1.5, -1, -0.5}:
    less negative when cheaper than usual. Phase 2 (feasible): ``1 + sign(acc - a_ref)``, in {0, 1, 2}.
    Every feasible reward is >= every infeasible one, so the constraint dominates."""
    if c > b:
        r = -1.0 + 0.5 * float(np.sign(ref.c_ema - c))
        return r, Competition(ref.a_ref, mu * ref.c_ema + (1 - mu) * c)
    r = 1.0 + float(np.sign(acc - ref.a_ref))
    a_ref = max(ref.a_ref, acc) if baseline == "best" else mu * ref.a_ref + (1 - mu) * acc
    return r, Competition(a_ref, ref.c_ema)


def lagrangian(c: float, b: float, acc: float | None, lam: float, lr: float) -> tuple[float, float]:
    """``r = acc - λ·max(0, c - b)`` (an infeasible plan is not evaluated: its accuracy counts as 0)
    and the dual ascent step ``λ ← max(0, λ + lr·(c - b))``."""
    r = (acc or 0.0) - lam * max(0.0, c - b)
    return r, max(0.0, lam + lr * (c - b))


def executed_mask(sampled: np.ndarray, logits: np.ndarray, classes: list[np.ndarray], floor: np.ndarray,
                  multiples: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The plan the environment executes for a sampled keep mask over the classes of the
    prunable groups: in every group at least ``floor`` channels (the highest-logit ones are
    switched back on: the min-keep override) and a kept count on the group's channel multiple
    (rounded to the nearest one, adding the highest-logit dropped or removing the lowest-logit
    kept channels). The sampled mask itself is what the policy's log-probability is of."""
    keep = sampled.astype(np.float64).copy()
    for g, cls in enumerate(classes):
        if not cls.size:
            continue
        on, off = cls[sampled[cls] > 0.5], cls[sampled[cls] <= 0.5]
        k = on.size
        target = max(k, int(floor[g]))
        m = int(multiples[g])
        if m > 1 and target < sizes[g]:
            target = min(max(int(round(target / m)) * m, int(floor[g])), int(sizes[g]))
        if target < k:  # keep the ``target`` highest-logit channels among those sampled on
            keep[on[np.argsort(-logits[on], kind="stable")[target:]]] = 0.0
        elif target > k:  # and switch on the highest-logit others
            keep[off[np.argsort(-logits[off], kind="stable")[:target - k]]] = 1.0
    return keep


def ranked_mask(sampled: np.ndarray, logits: np.ndarray, classes: list[np.ndarray]) -> np.ndarray:
    """In every group, as many channels as the sample switched on, but the highest-logit ones: the
    sample then decides only each group's kept count, the logits decide which channels."""
    keep = sampled.astype(np.float64).copy()  # entries outside ``classes`` stay as they are
    for cls in classes:
        k = int((sampled[cls] > 0.5).sum())
        keep[cls] = 0.0
        keep[cls[np.argsort(-logits[cls], kind="stable")[:k]]] = 1.0
    return keep


def fill_to_budget(keep: np.ndarray, logits: np.ndarray, classes: list[np.ndarray], multiples: np.ndarray,
                   sizes: np.ndarray, cost: Callable[[np.ndarray], float], budget: float) -> np.ndarray:
    """Give dropped channels back while ``cost`` stays within ``budget``: every group's dropped
    channels, highest logit first, in blocks of the group's channel multiple (the last block ends
    at the group's size), are tried in the order of their mean logit; a block that fits is switched
    on, and a group whose next block does not fit stops there (its later blocks cost as much). A
    plan over the budget is returned as it is. (``Allocation.fill`` does the like for kept counts
    in importance order; this works on any keep vector, in the policy's order.)"""
    if cost(keep) > budget:
        return keep
    blocks = []  # (mean logit, group, channels)
    for g, cls in enumerate(classes):
        off = cls[keep[cls] < 0.5]
        off = off[np.argsort(-logits[off], kind="stable")]
        m = max(int(multiples[g]), 1)
        blocks += [(float(logits[off[s:s + m]].mean()), g, off[s:s + m]) for s in range(0, off.size, m)]
    out, full = keep.copy(), set()
    for _, g, block in sorted(blocks, key=lambda b: -b[0]):  # stable: a group's blocks stay in order
        if g in full:
            continue
        out[block] = 1.0
        if cost(out) > budget:
            out[block] = 0.0
            full.add(g)
    return out


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|a ∩ b| / |a ∪ b| of two 0/1 vectors (1.0 when both are empty)."""
    a, b = a > 0.5, b > 0.5
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def rank_prior(rank: np.ndarray, group_of: np.ndarray, counts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Per channel, ``(k_g - 1/2 - r_c) / C_g``: positive exactly for the ``k_g`` most important
    channels of its group ``g`` (``r_c``: the channel's importance rank in its group, 0 = most
    important; ``C_g``: the group's size), in units of the group's width, so that a slope ``s``
    times it is a logit whose sign is the reference plan with ``counts`` channels per group."""
    k, c = counts[group_of].astype(np.float64), np.maximum(sizes[group_of], 1).astype(np.float64)
    return (k - 0.5 - rank) / c


def centre_prior(prior: np.ndarray, group_of: np.ndarray, counts: np.ndarray, slope: float,
                 iters: int = 60) -> np.ndarray:
    """``prior`` (``rank_prior``) plus one shift ``d_g`` per group, in group widths within [-1, 1],
    such that the expected number of channels a Bernoulli sample keeps under the logits
    ``slope * (prior + d_g)`` is the reference count ``k_g``: ``sum_c sigmoid(slope (p_c + d_g)) = k_g``
    (bisection; the sum rises with ``d_g``). ``rank_prior`` alone puts the *boundary* at ``k_g``, and
    with a flat slope the samples of a group that keeps most of its channels fall short of ``k_g``."""
    prior = np.asarray(prior, np.float64)
    out = prior.copy()
    for g in np.unique(group_of):
        idx = np.flatnonzero(group_of == g)
        k = float(counts[g])
        lo, hi = -1.0, 1.0
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            if (1.0 / (1.0 + np.exp(-slope * (prior[idx] + mid)))).sum() < k:
                lo = mid
            else:
                hi = mid
        out[idx] = prior[idx] + 0.5 * (lo + hi)
    return out


def slope_factor(episodes: int, start: float, final: float, span: int) -> float:
    """The factor on the rank prior's learned slope after ``episodes`` episodes: geometric from 1
    (slope ``start``) to ``final / start`` at ``span`` episodes, constant after; 1 when ``final`` is 0
    (no schedule). A steep slope samples plans close to the reference plan's boundary, some of them
    over the budget; a flat one explores channels further from it and undershoots the count."""
    if final <= 0:
        return 1.0
    return float((final / start) ** min(max(episodes, 0) / span, 1.0))
