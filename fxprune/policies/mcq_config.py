"""Configuration of the ``mcq`` policy, with the provenance of every default (policies.md §1.4).

Tags: ``[S]`` a summary of the paper, ``[C]`` the public RL-Pruner code, ``[U]`` unknown there:
an **fxprune default** (our choice, labelled as such in configs and logs).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import FxpruneError
from ..search.evaluate import PRECISIONS

FXPRUNE_DEFAULT = "fxprune default"

SOURCES: dict[str, str] = {
    "step_ratio": f"{FXPRUNE_DEFAULT} (older RL-Pruner config: 0.01-0.08) [U]",
    "samples": "paper (talk summary) [S]",
    "depth": f"{FXPRUNE_DEFAULT} (derivative code uses 1) [U]",
    "rounds": f"{FXPRUNE_DEFAULT} (older config 15; 3 on CPU) [U]",
    "step_length": "paper (summary) [S]",
    "noise": "paper (summary) and scripts [S][C]",
    "clip": "paper (summary) and scripts [S][C]",
    "p_min": "older RL-Pruner config [C]",
    "gamma": "paper (summary) [S]",
    "eps0": "paper (summary) [S]",
    "eps_schedule": "paper (summary) [S]",
    "reward": f"{FXPRUNE_DEFAULT}: 'auto' = the strategy of the budget's metric [U]",
    "alpha": "the reward strategy's FLOPs weight, 0.25 or 0 (paper summary) [S]; set to override",
    "beta": "the reward strategy's params weight, 0.25 or 0 (paper summary) [S]; set to override",
    "quota_weighting": f"{FXPRUNE_DEFAULT} (the paper weights residual clusters by layers) [U]",
    "kd": "RL-Pruner post-training [C]",
    "kd_period": f"{FXPRUNE_DEFAULT}: every step [U]",
    "kd_epochs": f"{FXPRUNE_DEFAULT}: 1 epoch per step [U]",
    "kd_max_steps": f"{FXPRUNE_DEFAULT}: no cap [U]",
    "kd_lr": "older RL-Pruner config (fine-tune lr) [C]",
    "kd_lr_min": "older RL-Pruner config [C]",
    "temperature": "KD function default [C]",
    "student_weight": "KD function default [C]",
    "collapse_threshold": "RL-Pruner main loop [C]",
    "taylor_samples": f"{FXPRUNE_DEFAULT}: 1024 training images [U]",
    "init": (f"{FXPRUNE_DEFAULT}: 'size' (p ∝ C_g, as in the code); 'gat' and 'global' (p ∝ the channels "
             "the `global` policy removes at this budget) are not RL-Pruner [C]/[U]"),
    "max_steps": f"{FXPRUNE_DEFAULT}: safety cap on pruning steps [U]",
    "batch_size": f"{FXPRUNE_DEFAULT}: evaluation/KD batch size [U]",
    "precision": (f"{FXPRUNE_DEFAULT}: 'fp32' plan evaluation; 'bf16' was 3.5x faster on our AVX-512 BF16 CPU "
                  "(evaluate_throughput.md) [U]"),
}

_REWARDS = {"accuracy": (0.0, 0.0), "flops": (0.25, 0.0), "params": (0.0, 0.25)}


@dataclasses.dataclass
class MCQConfig:
    """Hyper-parameters of ``mcq``; see :data:`SOURCES` for where each default comes from."""

    step_ratio: float = 0.05  # ρ: quota per step M = floor(N0·ρ)
    samples: int = 10  # NS: candidates per search level (and replay buffer size)
    depth: int = 1  # D: lookahead depth
    rounds: int = 3  # R: RL rounds per pruning step
    step_length: float = 0.1  # λ
    noise: float = 0.04  # σ
    clip: float = 0.2  # δ: trust region
    p_min: float = 1e-5
    gamma: float = 0.9  # lookahead discount
    eps0: float = 0.4
    eps_schedule: str = "cosine"  # constant | linear | cosine (over the first 10% of steps)
    reward: str = "auto"  # accuracy | flops | params | auto
    alpha: float | None = None  # overrides the strategy's FLOPs weight
    beta: float | None = None  # overrides the strategy's params weight
    quota_weighting: str = "channels"  # channels | producer_filters (initial p only)
    kd: bool = True
    kd_period: int = 1
    kd_epochs: float = 1.0
    kd_max_steps: int | None = None
    kd_lr: float = 1e-3
    kd_lr_min: float = 1e-6
    temperature: float = 2.0
    student_weight: float = 0.25
    collapse_threshold: float = 0.1
    taylor_samples: int = 1024
    init: str = "size"  # size | gat | global
    max_steps: int = 200
    batch_size: int = 256
    precision: str = "fp32"  # of plan evaluation: fp32 | bf16 (fxprune.search.Evaluator)

    def __post_init__(self) -> None:
        checks = [
            (0 < self.step_ratio < 1, "step_ratio must be in (0, 1)"),
            (self.samples >= 1 and self.depth >= 1 and self.rounds >= 1, "samples, depth and rounds must be >= 1"),
            (0 < self.step_length <= 1, "step_length must be in (0, 1]"),
            (self.noise >= 0 and 0 <= self.clip < 1, "noise must be >= 0 and clip in [0, 1)"),
            (0 < self.p_min < 1, "p_min must be in (0, 1)"),
            (0 <= self.eps0 <= 1, "eps0 must be in [0, 1]"),
            (self.eps_schedule in ("constant", "linear", "cosine"), "eps_schedule: constant, linear or cosine"),
            (self.reward in (*_REWARDS, "auto"), f"reward: one of {[*_REWARDS, 'auto']}"),
            (self.quota_weighting in ("channels", "producer_filters"), "quota_weighting: channels or producer_filters"),
            (self.init in ("size", "gat", "global"), "init: size, gat or global"),
            (self.kd_period >= 1 and self.kd_epochs > 0, "kd_period must be >= 1 and kd_epochs > 0"),
            (self.max_steps >= 1 and self.batch_size >= 1, "max_steps and batch_size must be >= 1"),
            (self.precision in PRECISIONS, f"precision: one of {', '.join(PRECISIONS)}"),
        ]
        for ok, why in checks:
            if not ok:
                raise FxpruneError(f"invalid mcq config: {why}")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> MCQConfig:
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise FxpruneError(f"unknown mcq option(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def weights(self, budget_metric: str) -> tuple[float, float]:
        """(α, β) of the reward ``acc + α(1 - F/F0) + β(1 - P/P0)``."""
        strategy = self.reward
        if strategy == "auto":
            strategy = budget_metric if budget_metric in ("flops", "params") else "accuracy"
        a, b = _REWARDS[strategy]
        return (a if self.alpha is None else self.alpha), (b if self.beta is None else self.beta)

    def described(self) -> dict[str, dict[str, Any]]:
        """Every option with its value and source, for logs and the run folder."""
        return {k: {"value": v, "source": SOURCES.get(k, "")} for k, v in dataclasses.asdict(self).items()}
