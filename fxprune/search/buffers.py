"""Experience buffers of the learned policies, with ``state_dict`` so a checkpoint holds them.

- :class:`RolloutBuffer` (on-policy, ``ppo``): one row per decision step of a batch of episodes:
  the sampled binary mask (and ppo's sampled group shifts under ``group_noise``), its
  log-probability and the value under the policy that sampled it, the reward and whether the step
  ended its episode; :meth:`advantages` computes GAE.
- :class:`ReplayBuffer` (off-policy, ``sac``): transitions ``(s, a, r, s', done)`` with an
  ``epoch`` column, since a joint train-and-prune reward changes with the weights every epoch.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


def gae(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation over consecutive episodes (``dones`` marks each one's
    last step, after which the value is 0): ``δ_t = r_t + γ V_{t+1} (1 - done_t) - V_t``,
    ``A_t = δ_t + γ λ (1 - done_t) A_{t+1}``; returns are ``A + V``. With one step per episode,
    ``A = r - V``."""
    n = len(rewards)
    adv = np.zeros(n)
    last = 0.0
    for t in range(n - 1, -1, -1):
        nonterminal = 0.0 if dones[t] else 1.0
        next_v = values[t + 1] if t + 1 < n else 0.0
        delta = rewards[t] + gamma * next_v * nonterminal - values[t]
        last = delta + gamma * lam * nonterminal * last
        adv[t] = last
    return adv, adv + values


class RolloutBuffer:
    def __init__(self):
        self.masks: list[torch.Tensor] = []
        self.logps: list[float] = []
        self.values: list[float] = []
        self.rewards: list[float] = []
        self.dones: list[bool] = []
        self.steps: list[int] = []  # the chunk index t of each row
        self.plans: list[np.ndarray] = []  # the partial plan (keep vector) the step was decided in
        self.shifts: list[torch.Tensor | None] = []  # ppo's sampled group shifts (group_noise), else None

    def add(self, mask: torch.Tensor, logp: float, value: float, step: int, plan: np.ndarray,
            shift: torch.Tensor | None = None) -> None:
        self.masks.append(mask.detach().to(torch.uint8))
        self.shifts.append(None if shift is None else shift.detach().float().clone())
        self.logps.append(float(logp))
        self.values.append(float(value))
        self.steps.append(int(step))
        self.plans.append(plan.astype(np.float32))
        self.rewards.append(0.0)
        self.dones.append(False)

    def end_episode(self, reward: float) -> None:
        """The episode's reward goes to its last step (intermediate rewards are 0)."""
        self.rewards[-1] = float(reward)
        self.dones[-1] = True

    def __len__(self) -> int:
        return len(self.masks)

    def advantages(self, gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
        """(advantages, returns) by GAE over the episodes in the buffer (:func:`gae`)."""
        return gae(np.array(self.rewards), np.array(self.values), np.array(self.dones), gamma, lam)

    def clear(self) -> None:
        self.__init__()

    def state_dict(self) -> dict[str, Any]:
        return {"masks": [m.tolist() for m in self.masks], "logps": self.logps, "values": self.values,
                "rewards": self.rewards, "dones": self.dones, "steps": self.steps,
                "plans": [p.tolist() for p in self.plans],
                "shifts": [None if x is None else x.tolist() for x in self.shifts]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.masks = [torch.tensor(m, dtype=torch.uint8) for m in state["masks"]]
        self.logps, self.values = list(state["logps"]), list(state["values"])
        self.rewards, self.dones, self.steps = list(state["rewards"]), list(state["dones"]), list(state["steps"])
        self.plans = [np.asarray(p, np.float32) for p in state["plans"]]
        shifts = state.get("shifts") or [None] * len(self.masks)
        self.shifts = [None if x is None else torch.tensor(x, dtype=torch.float32) for x in shifts]


class ReplayBuffer:
    """A fixed-capacity FIFO of transitions, sampled with a caller's generator."""

    def __init__(self, capacity: int, state_dim: int, action_dim: int):
        self.capacity = int(capacity)
        self.s = np.zeros((capacity, state_dim), np.float32)
        self.a = np.zeros((capacity, action_dim), np.float32)
        self.r = np.zeros(capacity, np.float32)
        self.s2 = np.zeros((capacity, state_dim), np.float32)
        self.done = np.zeros(capacity, np.float32)
        self.epoch = np.zeros(capacity, np.int64)
        self.n, self.pos = 0, 0

    def add(self, s, a, r: float, s2, done: bool, epoch: int) -> None:
        i = self.pos
        self.s[i], self.a[i], self.r[i], self.s2[i], self.done[i], self.epoch[i] = s, a, r, s2, float(done), epoch
        self.pos = (self.pos + 1) % self.capacity
        self.n = min(self.n + 1, self.capacity)

    def __len__(self) -> int:
        return self.n

    def sample(self, batch: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        idx = rng.integers(0, self.n, size=batch)
        return {"s": torch.from_numpy(self.s[idx]), "a": torch.from_numpy(self.a[idx]), "r": torch.from_numpy(self.r[idx]),
                "s2": torch.from_numpy(self.s2[idx]), "done": torch.from_numpy(self.done[idx]),
                "epoch": torch.from_numpy(self.epoch[idx])}

    def state_dict(self) -> dict[str, Any]:
        """Tensors (for safetensors) and counters."""
        n = self.n
        return {"tensors": {"s": torch.from_numpy(self.s[:n].copy()), "a": torch.from_numpy(self.a[:n].copy()),
                            "r": torch.from_numpy(self.r[:n].copy()), "s2": torch.from_numpy(self.s2[:n].copy()),
                            "done": torch.from_numpy(self.done[:n].copy()),
                            "epoch": torch.from_numpy(self.epoch[:n].copy())},
                "n": n, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        n = int(state["n"])
        for k in ("s", "a", "r", "s2", "done", "epoch"):
            getattr(self, k)[:n] = tensors[k].numpy()
        self.n, self.pos = n, int(state["pos"])
