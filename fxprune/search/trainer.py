"""The trainer of a search's working model (the one way a search changes weights).

Two uses:

- :meth:`Trainer.distill`: knowledge-distillation between pruning steps (``mcq``): each call has
  its own optimizer and schedule, as RL-Pruner's post-training does;
- :meth:`Trainer.start` / :meth:`Trainer.train_epoch`: training over many epochs (``sac``'s joint
  train-and-prune, from scratch or from pretrained weights): one optimizer and one learning-rate
  schedule that persist across epochs, an optional ``extra_loss(model)`` term (sac's alignment
  loss), and :meth:`state_dict` / :meth:`load_state_dict` so a checkpointed run resumes exactly.

The data order of an epoch depends only on (``seed``, ``epoch``) when the loader has
``set_epoch`` (fxprune's loaders do) and stochastic layers draw from a torch generator seeded
with them inside :func:`torch.random.fork_rng`, so the caller's global RNG is never touched.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any

import torch

from ..errors import FxpruneError
from ..finetune import FinetuneConfig, finetune, lr_schedule, make_optimizer, train_steps
from ..ir.trace import eval_mode


@contextlib.contextmanager
def seeded(seed: int):
    """Global torch RNG seeded for the block, restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@dataclasses.dataclass
class Trainer:
    data: Any  # re-iterable (inputs, targets) training batches
    config: FinetuneConfig
    device: Any = None
    progress: bool = True

    def __post_init__(self) -> None:
        self._model: torch.nn.Module | None = None
        self._opt: torch.optim.Optimizer | None = None
        self._lr = None
        self.step, self.total = 0, 0

    def _need_data(self) -> None:
        if self.data is None:
            raise FxpruneError("training needs training data (DataSplits.train)")

    def _set_epoch(self, epoch: int) -> None:
        if hasattr(self.data, "set_epoch"):
            self.data.set_epoch(epoch)

    # ---- one-off distillation (mcq) -------------------------------------------------------------
    def distill(self, model: torch.nn.Module, teacher: torch.nn.Module | None, *, seed: int, epoch: int,
                config: FinetuneConfig | None = None, step_hook: Any = None) -> torch.nn.Module:
        """Train ``model`` in place with a fresh optimizer and schedule (``config``, default this
        trainer's)."""
        self._need_data()
        self._set_epoch(epoch)
        with seeded(seed):
            return finetune(model, self.data, teacher=teacher, config=config or self.config, device=self.device,
                            inplace=True, progress=self.progress, step_hook=step_hook).model

    # ---- training over epochs with a persistent optimizer (sac) -------------------------------------
    def start(self, model: torch.nn.Module, epochs: float) -> None:
        """Attach ``model``: one optimizer and an lr schedule over ``epochs`` passes of the data."""
        self._need_data()
        try:
            per_epoch = len(self.data)
        except TypeError as exc:
            raise FxpruneError("training over epochs needs data with len()") from exc
        self._model = model
        self._opt = make_optimizer(model, self.config)
        self.total = max(1, int(math.ceil(epochs * per_epoch)))
        self._lr = lr_schedule(self.config, self.total)
        self.step = 0

    def train_epoch(self, *, epoch: int, seed: int = 0, teacher: torch.nn.Module | None = None,
                    extra_loss: Any = None, step_hook: Any = None, max_steps: int | None = None) -> dict[str, float]:
        """One pass over the data (at most ``max_steps`` steps) of the attached model."""
        if self._model is None:
            raise FxpruneError("call Trainer.start(model, epochs) before train_epoch")
        self._set_epoch(epoch)
        dev = torch.device(self.device) if self.device is not None else next(self._model.parameters()).device
        stop = self.total if max_steps is None else min(self.total, self.step + max_steps)
        with seeded(seed * 1_000_003 + epoch), eval_mode(teacher) if teacher is not None else contextlib.nullcontext():
            step, run, nb = train_steps(self._model, self.data, self._opt, self._lr, start=self.step, stop=stop,
                                        cfg=self.config, dev=dev, teacher=teacher, extra_loss=extra_loss,
                                        step_hook=step_hook)
        self._model.eval()
        out = {"steps": step - self.step, "loss": run / max(nb, 1), "lr": self._lr(max(step - 1, 0))}
        self.step = step
        return out

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state (momentum buffers ...) and the schedule's position."""
        return {"optimizer": self._opt.state_dict() if self._opt is not None else None, "step": self.step,
                "total": self.total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self._opt is None:
            raise FxpruneError("call Trainer.start(model, epochs) before load_state_dict")
        if state.get("optimizer") is not None:
            self._opt.load_state_dict(state["optimizer"])
        self.step, self.total = int(state["step"]), int(state["total"])
        self._lr = lr_schedule(self.config, self.total)
