"""Recovery fine-tuning with knowledge distillation from the unpruned model (RL-Pruner's
post-training, policies.md §1.2).

Loss (student logits ``z_S``, teacher logits ``z_T``, temperature ``τ``, student weight ``w``):
``L = (1 - w) · τ² · KL(softmax(z_T/τ) ‖ softmax(z_S/τ)) + w · CE(z_S, y)``; without a teacher it is
plain cross-entropy, without labels the KD term alone. SGD (momentum 0.9, weight decay 5e-4), a
linear warm-up over ``warmup_ratio`` of the steps, then cosine annealing to ``lr_min``. With
``eval_data`` the best-scoring weights are kept. Runs on any device; the budget is epochs or steps.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
from typing import Any

import torch
import torch.nn.functional as F

from .errors import FxpruneError, TrainingDiverged
from .options import option
from .ir.trace import eval_mode

log = logging.getLogger(__name__)


@dataclasses.dataclass
class FinetuneConfig:
    epochs: float = option(1.0, "passes over the data (fractions allowed)", low=0.0)
    max_steps: int | None = option(None, "hard cap on optimiser steps (wins over epochs)", low=1)
    lr: float = option(0.01, "peak learning rate", low=0.0, low_open=True)
    lr_min: float = option(1e-6, "RL-Pruner's min lr (its old config)", low=0.0)
    momentum: float = option(0.9, "SGD momentum", low=0.0)
    weight_decay: float = option(5e-4, "SGD weight decay", low=0.0)
    warmup_ratio: float = option(0.05, "fxprune default: linear warm-up share of the steps", low=0.0, high=1.0,
                                 high_open=True)
    temperature: float = option(2.0, "RL-Pruner's KD function default", low=0.0, low_open=True)
    student_weight: float = option(0.25, "weight of the hard-label CE term; the rest goes to KD", low=0.0, high=1.0)

    def __post_init__(self) -> None:
        def finite(v) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        for name in ("epochs", "lr", "lr_min", "momentum", "weight_decay", "warmup_ratio", "temperature",
                     "student_weight"):
            if not finite(getattr(self, name)):
                raise FxpruneError(f"finetune: {name}={getattr(self, name)!r} must be a finite number")
        if self.max_steps is not None and (isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int)
                                           or self.max_steps < 1):
            raise FxpruneError(f"finetune: max_steps={self.max_steps!r} must be a positive integer or None")
        if self.epochs <= 0 and not self.max_steps:
            raise FxpruneError(f"finetune needs epochs > 0 or max_steps; got epochs={self.epochs}")
        if self.lr <= 0 or self.temperature <= 0 or not 0.0 <= self.student_weight <= 1.0:
            raise FxpruneError("finetune: lr and temperature must be > 0 and student_weight in [0, 1]")
        if self.lr_min < 0 or self.momentum < 0 or self.weight_decay < 0 or not 0.0 <= self.warmup_ratio < 1.0:
            raise FxpruneError("finetune: lr_min, momentum and weight_decay must be >= 0, warmup_ratio in [0, 1)")


@dataclasses.dataclass
class FinetuneResult:
    model: torch.nn.Module
    steps: int
    losses: list[float]  # mean loss per epoch (or per partial epoch)
    eval_acc: list[float]  # accuracy on eval_data after each epoch (empty without eval_data)
    best_acc: float | None


def kd_loss(student: torch.Tensor, teacher: torch.Tensor | None, y: torch.Tensor | None,
            temperature: float, student_weight: float) -> torch.Tensor:
    if teacher is None and y is None:
        raise FxpruneError("fine-tuning needs labels or a teacher model")
    if teacher is None:
        return F.cross_entropy(student, y)
    t = temperature
    kd = F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), log_target=True,
                  reduction="batchmean") * t * t
    if y is None:
        return kd
    return (1 - student_weight) * kd + student_weight * F.cross_entropy(student, y)


def _logits(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _device_of(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    raise FxpruneError(f"{type(model).__name__} has no parameters to train or place on a device")


@torch.no_grad()
def accuracy(model: torch.nn.Module, data: Any, device: torch.device | None = None) -> float:
    """Top-1 accuracy of ``model`` on labelled ``(inputs, targets)`` batches; every module's
    training flag is restored afterwards."""
    correct = n = 0
    dev = device or _device_of(model)
    with eval_mode(model):
        for batch in data:
            if not (isinstance(batch, (tuple, list)) and len(batch) > 1 and isinstance(batch[1], torch.Tensor)):
                raise FxpruneError("accuracy needs labelled (inputs, targets) batches")
            x, y = batch[0], batch[1]
            out = _logits(model(x.to(dev)))
            correct += int((out.argmax(1) == y.to(dev)).sum())
            n += int(y.shape[0])
    return correct / max(n, 1)


def lr_schedule(cfg: FinetuneConfig, total: int):
    """``step -> lr``: a linear warm-up over ``warmup_ratio`` of ``total`` steps, then cosine
    annealing to ``lr_min``."""
    warm = int(cfg.warmup_ratio * total)

    def lr_at(step: int) -> float:
        if step < warm:
            return cfg.lr * (step + 1) / warm
        frac = (step - warm) / max(total - warm, 1)
        return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * frac))

    return lr_at


def make_optimizer(model: torch.nn.Module, cfg: FinetuneConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


def train_steps(student: torch.nn.Module, data: Any, opt: torch.optim.Optimizer, lr_at, *, start: int, stop: int,
                cfg: FinetuneConfig, dev: torch.device, teacher: torch.nn.Module | None = None,
                extra_loss: Any = None, step_hook: Any = None, bar: Any = None) -> tuple[int, float, int]:
    """One pass over ``data`` (or until step ``stop``): the KD loss (plain cross-entropy without a
    teacher), plus ``extra_loss(student)`` when given; ``step_hook(student)`` after each step.
    Returns (next step, summed loss, batches)."""
    student.train()
    step, run, nb = start, 0.0, 0
    for batch in data:
        if step >= stop:
            break
        if not (isinstance(batch, (tuple, list)) and len(batch) >= 1 and isinstance(batch[0], torch.Tensor)):
            raise FxpruneError(f"a training batch must be (inputs, targets), got {type(batch).__name__}")
        x = batch[0].to(dev)
        y = batch[1].to(dev) if len(batch) > 1 and isinstance(batch[1], torch.Tensor) else None
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        with torch.no_grad():
            zt = _logits(teacher(x)).float() if teacher is not None else None
        zs = _logits(student(x)).float()
        if y is not None and (y.dim() != 1 or y.dtype.is_floating_point or int(y.min()) < 0 or int(y.max()) >= zs.shape[1]):
            raise FxpruneError(f"training labels must be class indices in [0, {zs.shape[1] - 1}]; got {y.dtype} "
                               f"values {int(y.min())}..{int(y.max())}" if y.numel() else "empty training labels")
        loss = kd_loss(zs, zt, y, cfg.temperature, cfg.student_weight)
        if extra_loss is not None:
            loss = loss + extra_loss(student)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"the training loss became {float(loss.detach())} at step {step} (lr {lr_at(step):g}); "
                               "lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step_hook is not None:
            step_hook(student)
        run, nb, step = run + float(loss.detach()), nb + 1, step + 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{run / nb:.3f}")
    return step, run, nb


def finetune(model: torch.nn.Module, data: Any, *, teacher: torch.nn.Module | None = None,
             config: FinetuneConfig | None = None, eval_data: Any = None, device: Any = None,
             inplace: bool = False, progress: bool = True, step_hook: Any = None,
             **overrides: Any) -> FinetuneResult:
    """Fine-tune ``model`` (a copy unless ``inplace``) on ``data``, a DataLoader or re-iterable of
    ``(inputs, targets)``; ``teacher`` adds the distillation term. Keyword overrides set
    :class:`FinetuneConfig` fields, e.g. ``finetune(m, loader, teacher=t, epochs=2, lr=0.005)``.
    ``step_hook(student)`` runs after every optimiser step (searches use it to keep pruned
    channels at zero while a masked model trains)."""
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(FinetuneConfig)})
    if unknown:
        raise FxpruneError(f"unknown finetune option(s) {unknown}; known: "
                           f"{sorted(f.name for f in dataclasses.fields(FinetuneConfig))}")
    cfg = dataclasses.replace(config or FinetuneConfig(), **overrides)
    if not isinstance(model, torch.nn.Module):
        raise FxpruneError(f"finetune() takes a torch.nn.Module, got {type(model).__name__}")
    dev = torch.device(device) if device is not None else _device_of(model)
    student = (model if inplace else copy.deepcopy(model)).to(dev)
    if teacher is not None and _device_of(teacher) != dev:
        teacher = copy.deepcopy(teacher).to(dev)  # never move the caller's teacher
    try:
        per_epoch = len(data)
    except TypeError:
        per_epoch = None
    if per_epoch == 0:
        raise FxpruneError("data yielded no batches")
    total = cfg.max_steps or (max(1, int(math.ceil(cfg.epochs * per_epoch))) if per_epoch else None)
    if total is None:
        raise FxpruneError("data has no len(); pass max_steps= to bound the fine-tune")
    opt = make_optimizer(student, cfg)
    lr_at = lr_schedule(cfg, total)
    best_acc, best_state, losses, accs, step = None, None, [], [], 0
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="fine-tune", unit="step", disable=not progress, leave=False)
    # the teacher runs in eval mode; its training flags are restored afterwards
    with eval_mode(teacher) if teacher is not None else contextlib.nullcontext():
        while step < total:
            step, run, nb = train_steps(student, data, opt, lr_at, start=step, stop=total, cfg=cfg, dev=dev,
                                        teacher=teacher, step_hook=step_hook, bar=bar)
            if nb == 0:
                raise FxpruneError("data yielded no batches")
            losses.append(run / nb)
            if eval_data is not None:
                acc = accuracy(student, eval_data, dev)
                accs.append(acc)
                if best_acc is None or acc > best_acc:
                    best_acc, best_state = acc, copy.deepcopy(student.state_dict())
    bar.close()
    if best_state is not None:
        student.load_state_dict(best_state)
    student.eval()
    log.info("fine-tuned %d steps; loss %s; eval acc %s", step, losses[-1:], accs[-1:])
    return FinetuneResult(student, step, losses, accs, best_acc)
