"""Options of the ``sac`` policy (RLAL, Ganjdanesh et al., CVPR 2024; policies.md §2.4). Tags:
``[P]`` the paper, ``[U]`` not given there: an **fxprune default**. The schedule is the paper's
(App. B, 200 CIFAR-10 epochs: warm-up 10, buffer fill to 20, agent to 90, weights only to 200),
scaled to ``epochs``."""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from ..finetune import FinetuneConfig
from ..options import FXPRUNE_DEFAULT, option
from ..search.config import SearchConfig

U = f"{FXPRUNE_DEFAULT} [U]"


def _train() -> FinetuneConfig:
    # CIFAR-10 recipe of App. B: SGD, momentum 0.9, weight decay 1e-4, lr 0.1 [P]; the paper decays
    # x0.1 at epochs 100 and 150, fxprune's trainer anneals by cosine (policies.md's CPU setting) [U]
    return FinetuneConfig(epochs=1.0, lr=0.1, lr_min=0.0, momentum=0.9, weight_decay=1e-4, warmup_ratio=0.0,
                          student_weight=1.0)


@dataclasses.dataclass
class SACConfig(SearchConfig):
    """Hyper-parameters of ``sac``; every field's ``source`` says where its default comes from. The
    defaults are the paper's; ``{"preset": "tuned"}`` selects the fxprune options that did best on
    the CPU benchmark (see ``PRESETS``)."""

    epochs: int = option(30, "joint train-and-prune epochs; the paper trains 200 [P], 30 is an "
                         f"{FXPRUNE_DEFAULT} for CPU [U]", low=1)
    finetune_epochs: int = option(5, "epochs after surgery; the paper repeats the base schedule [P], 5 is an "
                                  f"{FXPRUNE_DEFAULT} [U]", low=0)
    warmup_frac: float = option(0.05, "App. B: epochs 1-10 of 200 train weights only [P]", low=0.0, high=1.0)
    fill_frac: float = option(0.10, "App. B: the buffer fills until epoch 20 of 200 [P]", low=0.0, high=1.0)
    agent_end_frac: float = option(0.45, "App. B: the agent acts until epoch 90 of 200 [P]", low=0.0, high=1.0)
    episodes_per_epoch: int = option(10, "P = 10 [P §4]", low=1)
    reward_score: str = option("accuracy", "the reward is the pruned sub-network's accuracy [P] (the other searches "
                               "default to the likelihood; 'likelihood' is an option here too)",
                               choices=("accuracy", "likelihood"))
    train: FinetuneConfig = option(source="App. B CIFAR-10 recipe (SGD 0.1, momentum 0.9, wd 1e-4) [P]; cosine "
                                   f"annealing instead of steps is an {FXPRUNE_DEFAULT} [U]", factory=_train)
    augment: bool = option(True, "App. B's CIFAR recipe: 4-pixel padded random crop and horizontal flip [P]; "
                           "applies when data= is an fxprune ArrayDataset (fxprune builds the loader; a DataLoader "
                           "of yours keeps its own augmentation)")
    train_batch: int = option(128, "App. B: batch 128 [P]; applies when data= is an fxprune ArrayDataset", low=1)
    hidden: int = option(300, "actor, critics and decoder: 2 hidden layers of 300 [P §4]", low=4)
    lr_actor: float = option(1e-4, "[P §4]", low=0.0, low_open=True)
    lr_critic: float = option(1e-3, "[P §4]", low=0.0, low_open=True)
    lr_env: float = option(1e-3, "decoder, GRU and epoch embeddings share one Adam [P §4]", low=0.0, low_open=True)
    emb_dim: int = option(128, "epoch embedding and GRU input size [P §4]", low=1)
    z_dim: int = option(128, f"GRU hidden size (= dim z): {U}", low=1)
    alpha: float = option(0.1, "fixed entropy coefficient [P §4]", low=0.0)
    beta_align: float = option(1e-4, "alignment weight [P §4]; policies.md: short CPU schedules may need 1e-3",
                               low=0.0)
    align_form: str = option("per_layer", "one L2 norm per layer as in the paper [P]; 'per_channel' is the group "
                             f"lasso ({U})", choices=("per_layer", "per_channel"))
    align_scope: str = option("all", f"{U}: producer filters, norm scale/shift and consumer input slices of the "
                              "removed channels; 'producers': only the pruned layer's filters (the paper's W_l)",
                              choices=("all", "producers"))
    align_target: str = option("snapshot", f"{U}: re-run the best actor snapshot deterministically on the current "
                               "weights; 'frozen_plan' reuses the best plan's channels", choices=("snapshot",
                                                                                               "frozen_plan"))
    align_fade: bool = option(False, f"{U}: besides the loss, after every epoch that aligns, scale the producers of "
                              "the channels the target removes by (E - e) / (E - e + 1), a linear fade that reaches "
                              "zero at the last joint epoch, so surgery cuts nothing the network still uses (the "
                              "paper: the loss only)")
    fade_end_frac: float = option(1.0, f"{U}: with align_fade, the fade reaches zero after epoch round(frac x "
                                  "epochs), at the earliest when the agent phase ends; the epochs after it train the "
                                  "pruned sub-network (the plan the fade ended on, frozen, its removed channels held "
                                  "at zero, no alignment loss) at the joint schedule's learning rate. 1.0: the fade "
                                  "ends with the last joint epoch", low=0.0, high=1.0, low_open=True)
    z_after_agent: str = option("last", f"{U}: after the agent phase the best snapshot (alignment target, final plan) "
                                "is re-run with the code of the agent's last epoch, since the embeddings of later "
                                "epochs never train; 'current': with each epoch's own code (untrained embeddings "
                                "move it every epoch, and the target's keep counts with it; what the benchmark rows "
                                "up to stop 30 ran)", choices=("last", "current"))
    env_code: bool = option(True, "z from the GRU over epoch embeddings [P]; False: z = 0 and no decoder, the "
                            "ablation of Tab. 3 [P]")
    action_init: str = option("paper", f"{U}: 'paper' leaves the actor as initialised (its first actions are near "
                              "a = 0.5, so with groups acted front to back the first ones spend the budget and the "
                              "upper bound of Eq. 13 zeroes the rest); 'uniform' starts its mean at the one prune "
                              "rate that, applied to every acted group, meets the budget (the paper gives no "
                              "initial action)", choices=("paper", "uniform"))
    scope: str = option("block_interior", "the paper's: block interiors only, residual streams whole [P]; 'all': "
                        "every prunable group", choices=("block_interior", "all"))
    gamma: float = option(0.99, U, low=0.0, high=1.0)
    tau: float = option(0.005, f"Polyak rate: {U}", low=0.0, high=1.0, low_open=True)
    batch: int = option(256, f"SAC batch: {U}", low=1)
    updates_per_epoch: int = option(0, f"0: P x L, one per transition collected that epoch ({U})", low=0)
    buffer_size: int = option(100_000, f"{U} (the paper: not given)", low=1)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # CIFAR-10 ResNet-20 from scratch, 30 joint + 5 fine-tune epochs at 50% FLOPs, training seeds 0-3 x three
        # fine-tune seeds (benchmarks/results/cifar10_sac_fair.md, row (a8e)): 76.25% +- 1.29, +1.21 points over
        # dense -> global and +0.98 over dense -> uniform, +0.61 over the same without the early fade end. [U]
        "tuned": {"scope": "all", "align_fade": True, "fade_end_frac": 0.8},
    }
