"""The math of ``sac`` (RLAL; policies.md §2.2), as small pure functions: the action bounds of
Eq. 12-13 (closed form, and the integer bisection that generalises them on the cost model), the
[0, 1] squashing of SAC's tanh-Gaussian, the critic target and actor loss (Eq. 7-9), Polyak
averaging, the alignment loss (Eq. 10-11) and the App. B schedule scaled to an epoch budget."""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch


def closed_form_bounds(f_des: float, f_prev: float, f_l: float, f_next: float,
                       f_next_min: float = 0.0) -> tuple[float, float]:
    """Eq. 12-13 with ``B = f_des - f_prev`` (the budget left for this and later layers):
    ``a_min = 1 - (B - f_next_min) / f_l`` (even with every later layer pruned as far as it may,
    to ``f_next_min``; the paper's ``0``, every later layer removed, this one must lose at least
    that) and ``a_max = 1 - (B - f_next) / f_l`` (with every later layer intact, losing more would
    undershoot the target). Exact when each layer's FLOPs are linear in its kept fraction."""
    b = f_des - f_prev
    return 1.0 - (b - f_next_min) / f_l, 1.0 - (b - f_next) / f_l


def clip_action(a: float, a_min: float, a_max: float, a_cap: float) -> float:
    """``clip(a, max(0, a_min), min(a_cap, a_max))``; when the interval is empty, its upper end
    (``a_cap`` bounds it: the group keeps its floor)."""
    lo, hi = max(0.0, a_min), min(a_cap, a_max)
    return hi if lo > hi else min(max(a, lo), hi)


def bisect_count(cost: Callable[[int], float], lo: int, hi: int, target: float) -> int | None:
    """The largest ``k`` in ``[lo, hi]`` with ``cost(k) <= target`` for a non-decreasing ``cost``
    (``None`` when even ``lo`` costs too much)."""
    if cost(lo) > target:
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cost(mid) <= target:
            lo = mid
        else:
            hi = mid - 1
    return lo


def to_unit(a_tanh: torch.Tensor, logp_tanh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``a = (tanh(u) + 1) / 2`` in [0, 1]; the log-density gains ``log 2`` per dimension (the
    Jacobian of the affine map is 1/2)."""
    return (a_tanh + 1.0) / 2.0, logp_tanh + a_tanh.shape[-1] * math.log(2.0)


def critic_target(r: torch.Tensor, done: torch.Tensor, q1_next: torch.Tensor, q2_next: torch.Tensor,
                  logp_next: torch.Tensor, gamma: float, alpha: float) -> torch.Tensor:
    """Eq. 8: ``y = r + γ (1 - d) [min_j Q'_j(s', a') - α log π(a'|s')]``."""
    return r + gamma * (1.0 - done) * (torch.min(q1_next, q2_next) - alpha * logp_next)


def actor_loss(q1: torch.Tensor, q2: torch.Tensor, logp: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. 9 as a loss: ``E[α log π(a|s) - min_j Q_j(s, a)]``."""
    return (alpha * logp - torch.min(q1, q2)).mean()


@torch.no_grad()
def polyak(target: torch.nn.Module, source: torch.nn.Module, tau: float) -> None:
    """``θ' ← (1 - τ) θ' + τ θ``."""
    for t, s in zip(target.parameters(), source.parameters()):
        t.mul_(1.0 - tau).add_(s, alpha=tau)


def align_loss(slices: list[tuple[torch.Tensor, int, torch.Tensor]], form: str = "per_layer") -> torch.Tensor:
    """Eq. 10: ``Σ_l ‖(1 - v_l) ⊙ W_l‖_2`` over ``(tensor, dim, removed positions)``: one L2 norm
    per tensor (``per_layer``, the paper's) or one per removed channel (``per_channel``, the
    group lasso)."""
    total = None
    for w, d, idx in slices:
        part = w.index_select(d, idx.to(w.device))
        if form == "per_layer":
            term = part.pow(2).sum().add(1e-12).sqrt()
        else:
            term = part.movedim(d, 0).reshape(idx.numel(), -1).pow(2).sum(1).add(1e-12).sqrt().sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return total


@dataclasses.dataclass(frozen=True)
class Schedule:
    """App. B's phases over ``epochs`` (1-based): weights only up to ``warm``; episodes from
    ``warm + 1`` to ``agent_end``; agent updates from ``fill + 1`` to ``agent_end``; then weights
    only (with the alignment loss) to the end."""

    epochs: int
    warm: int
    fill: int
    agent_end: int
    fade_end: int  # ``align_fade`` reaches zero after this epoch (never before ``agent_end``)

    @classmethod
    def scaled(cls, epochs: int, warm_frac: float, fill_frac: float, end_frac: float,
               fade_frac: float = 1.0) -> "Schedule":
        warm = int(round(warm_frac * epochs))
        end = max(warm + 1, int(round(end_frac * epochs)))
        fill = min(max(warm, int(round(fill_frac * epochs))), end - 1)
        end = min(end, epochs)
        return cls(epochs, warm, fill, end, min(epochs, max(end, int(round(fade_frac * epochs)))))

    def collects(self, e: int) -> bool:
        return self.warm < e <= self.agent_end

    def updates(self, e: int) -> bool:
        return self.fill < e <= self.agent_end


def pre_tanh_of_rate(rate: float, margin: float = 1e-3) -> float:
    """The pre-activation ``u`` whose squashed action ``(tanh(u) + 1) / 2`` is ``rate`` (kept inside
    ``[margin, 1 - margin]``): the actor's mean bias that starts every action at ``rate``."""
    r = min(max(float(rate), margin), 1.0 - margin)
    return math.atanh(2.0 * r - 1.0)


def kept_count(rate: float, size: int, floor: int, multiple: int, most: int | None = None) -> int:
    """Channels a group of ``size`` keeps at prune ``rate``: ``size - floor(rate * size)``, at most
    ``most`` (the lower action bound's count), never under ``floor``, and down to a ``multiple``
    (never over the budget) unless the group stays whole."""
    keep = size - int(math.floor(rate * size + 1e-9))
    if most is not None:
        keep = min(keep, most)
    keep = max(floor, keep)
    if multiple > 1 and keep < size:
        keep = max(floor, (keep // multiple) * multiple)
    return keep


def fade_factor(epoch: int, end: int) -> float:
    """``align_fade``'s factor after joint epoch ``epoch`` (1-based) of a fade that ends after epoch
    ``end``: ``(end - e) / (end - e + 1)``. Applied after every epoch from any ``e0`` on, the factors
    multiply to ``(end - e) / (end - e0 + 1)``, a linear fade that is exactly 0 after epoch ``end``."""
    if not 1 <= epoch <= end:
        raise ValueError(f"epoch {epoch} outside 1..{end}")
    return (end - epoch) / (end - epoch + 1)
