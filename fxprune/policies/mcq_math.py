"""The pruning-distribution arithmetic of ``mcq`` (policies.md §1.2), as small pure functions."""
from __future__ import annotations

import math

import numpy as np


def project(x: np.ndarray, p_min: float) -> np.ndarray:
    """Π(x): floor every entry at ``p_min`` and renormalise onto the simplex so that the floor
    still holds afterwards (floored entries are pinned at ``p_min``, the rest share ``1 - k·p_min``).
    (Cluster averaging is a no-op in fxprune: a residual cluster is one group.)"""
    x = np.maximum(np.asarray(x, np.float64), p_min)
    free = np.ones(x.shape[0], bool)
    y = x / x.sum()
    for _ in range(x.shape[0]):
        budget = 1.0 - p_min * (~free).sum()
        y = np.where(free, x * budget / max(x[free].sum(), 1e-300), p_min)
        low = free & (y < p_min)
        if not low.any():
            break
        free &= ~low
    return y


def sample(p: np.ndarray, sigma: float, rng: np.random.Generator, p_min: float) -> np.ndarray:
    """p̃ = Π(p + σ·u·ε) with u ~ U(0,1) and ε ~ N(0, I)."""
    u = rng.random()
    eps = rng.standard_normal(p.shape[0])
    return project(p + sigma * u * eps, p_min)


def trust_region_step(p: np.ndarray, target: np.ndarray, step: float, clip: float, p_min: float) -> np.ndarray:
    """p' = Π(p + λ(p* - p)), then p'' = Π(clip(p'/p, 1-δ, 1+δ)·p) (with p := 1e-6 where p == 0)."""
    p1 = project(p + step * (target - p), p_min)
    base = np.where(p == 0, 1e-6, p)
    return project(np.clip(p1 / base, 1 - clip, 1 + clip) * base, p_min)


def counts(pt: np.ndarray, quota: int, room: np.ndarray) -> np.ndarray:
    """Integer removal counts ``n_g = round(p̃_g·M')``, with ``M'`` near ``quota`` chosen so that
    ``Σ n_g`` is as close to ``quota`` as possible; then clipped at ``room`` (channels a group may
    still lose), the excess handed to the groups with room left, largest p̃ first."""
    g = pt.shape[0]
    best, best_key = None, None
    for m in range(max(0, quota - g), quota + g + 1):
        n = np.round(pt * m).astype(np.int64)
        key = (abs(int(n.sum()) - quota), abs(m - quota))
        if best_key is None or key < best_key:
            best, best_key = n, key
    n = np.minimum(best, room)
    excess = min(quota, int(room.sum())) - int(n.sum())
    order = np.argsort(-pt, kind="stable")
    while excess > 0:
        moved = False
        for i in order:
            if excess == 0:
                break
            if n[i] < room[i]:
                n[i] += 1
                excess -= 1
                moved = True
        if not moved:
            break
    return n


def epsilon(schedule: str, eps0: float, t: int, total: int) -> float:
    """ε_t for step ``t`` (1-based) of ``total``: constant, or linear/cosine decay to 0 over the
    first ``t0 = 0.1·total`` steps."""
    if schedule == "constant":
        return eps0
    t0 = 0.1 * total
    if t > t0 or t0 <= 0:
        return 0.0
    if schedule == "linear":
        return max(0.0, (1 - t / t0) * eps0)
    return eps0 * 0.5 * (1 + math.cos(math.pi * t / t0))
