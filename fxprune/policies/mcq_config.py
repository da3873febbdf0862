"""Options of the ``mcq`` policy, with the provenance of every default (policies.md §1.4).

Tags: ``[S]`` a summary of the paper, ``[C]`` the public RL-Pruner code, ``[U]`` unknown there:
an **fxprune default** (our choice, labelled as such in configs and logs).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from ..finetune import FinetuneConfig
from ..options import FXPRUNE_DEFAULT, option
from ..search.config import SearchConfig

_REWARDS = {"accuracy": (0.0, 0.0), "flops": (0.25, 0.0), "params": (0.0, 0.25)}


def _post_training() -> FinetuneConfig:
    # RL-Pruner's post-training with knowledge distillation: lr 1e-3 -> 1e-6 (older config) [C],
    # temperature 2 and student weight 0.25 (its KD function's defaults) [C], one epoch per step [U]
    return FinetuneConfig(epochs=1.0, lr=1e-3, lr_min=1e-6, temperature=2.0, student_weight=0.25)


@dataclasses.dataclass
class MCQConfig(SearchConfig):
    """Hyper-parameters of ``mcq``; every field's ``source`` says where its default comes from."""

    step_ratio: float = option(0.05, f"{FXPRUNE_DEFAULT} (older RL-Pruner config: 0.01-0.08) [U]",
                               low=0.0, high=1.0, low_open=True, high_open=True)
    samples: int = option(10, "paper (talk summary) [S]", low=1)
    depth: int = option(1, f"{FXPRUNE_DEFAULT} (derivative code uses 1) [U]", low=1)
    rounds: int = option(3, f"{FXPRUNE_DEFAULT} (older config 15; 3 on CPU) [U]", low=1)
    step_length: float = option(0.1, "paper (summary) [S]", low=0.0, high=1.0, low_open=True)
    noise: float = option(0.04, "paper (summary) and scripts [S][C]", low=0.0)
    clip: float = option(0.2, "paper (summary) and scripts [S][C]", low=0.0, high=1.0, high_open=True)
    p_min: float = option(1e-5, "older RL-Pruner config [C]", low=0.0, high=1.0, low_open=True, high_open=True)
    gamma: float = option(0.9, "paper (summary) [S]", low=0.0, high=1.0)
    eps0: float = option(0.4, "paper (summary) [S]", low=0.0, high=1.0)
    eps_schedule: str = option("cosine", "paper (summary) [S]", choices=("constant", "linear", "cosine"))
    reward: str = option("auto", f"{FXPRUNE_DEFAULT}: 'auto' = the strategy of the budget's metric [U]",
                         choices=(*_REWARDS, "auto"))
    alpha: float | None = option(None, "the reward strategy's FLOPs weight, 0.25 or 0 (paper summary) [S]; set to "
                                 "override")
    beta: float | None = option(None, "the reward strategy's params weight, 0.25 or 0 (paper summary) [S]; set to "
                                "override")
    quota_weighting: str = option("channels", f"{FXPRUNE_DEFAULT} (the paper weights residual clusters by "
                                  "layers) [U]", choices=("channels", "producer_filters"))
    kd: bool = option(False, f"{FXPRUNE_DEFAULT}: off. RL-Pruner distils the working model after every step "
                      "(kd=True) [C]; under the same plain fine-tune after the search, mcq's plans did better "
                      "without it (+0.50 and +0.35 points on ResNet-56) and the search ran faster "
                      "(cifar10_resnet56_cpu.md) [U]")
    kd_period: int = option(1, f"{FXPRUNE_DEFAULT}: every step [U]", low=1)
    post_training: FinetuneConfig = option(source="RL-Pruner post-training with distillation [C]; one epoch per "
                                           f"step is an {FXPRUNE_DEFAULT} [U]", factory=_post_training)
    collapse_threshold: float = option(0.1, "RL-Pruner main loop [C]", low=0.0)
    init: str = option("global", f"{FXPRUNE_DEFAULT}: 'global' (p ∝ the channels the `global` policy removes at "
                       "this budget; 1 point ahead of 'size' on ResNet-56, cifar10_resnet56.md) [U]; 'size' (p ∝ "
                       "C_g) is RL-Pruner's [C]; 'gat' is not RL-Pruner", choices=("size", "gat", "global"))
    max_steps: int = option(200, f"{FXPRUNE_DEFAULT}: safety cap on pruning steps [U]", low=1)

    # flat names of earlier fxprune versions, onto the nested post-training options
    ALIASES: ClassVar[dict[str, str]] = {
        "kd_epochs": "post_training.epochs", "kd_max_steps": "post_training.max_steps",
        "kd_lr": "post_training.lr", "kd_lr_min": "post_training.lr_min",
        "temperature": "post_training.temperature", "student_weight": "post_training.student_weight",
    }

    def weights(self, budget_metric: str) -> tuple[float, float]:
        """(α, β) of the reward ``acc + α(1 - F/F0) + β(1 - P/P0)``."""
        strategy = self.reward
        if strategy == "auto":
            strategy = budget_metric if budget_metric in ("flops", "params") else "accuracy"
        a, b = _REWARDS[strategy]
        return (a if self.alpha is None else self.alpha), (b if self.beta is None else self.beta)
