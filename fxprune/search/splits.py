"""Data splits a search uses, and the trainer that fine-tunes its working model.

A search scores plans on a *reward* split drawn from training data (never the test split) and
trains on the *train* split. ``prune(..., data=...)`` accepts:

- :class:`DataSplits` — used as given;
- an :class:`fxprune.data.ArrayDataset` (training data) — ``n_reward`` class-balanced samples are
  held out as the reward split (:func:`fxprune.data.reward_split`), the rest is shuffled for training;
- any DataLoader or iterable of ``(inputs, targets)`` — its first ``n_reward`` samples are the
  reward split and the whole loader trains (the two overlap: pass ``DataSplits`` to hold out).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch

from ..data import ArrayDataset, batches, reward_split
from ..errors import FxpruneError
from ..finetune import FinetuneConfig, finetune

log = logging.getLogger(__name__)


@dataclasses.dataclass
class DataSplits:
    train: Any  # re-iterable (inputs, targets) batches for fine-tuning, or None
    reward: Any  # what evaluate() scores plans on (a subset of the *training* data)
    calibration: Any = None  # for Taylor importance (default: train)


def as_splits(data: Any, n_reward: int = 1000, seed: int = 0, batch_size: int = 128) -> DataSplits:
    if data is None:
        raise FxpruneError("this policy searches with evaluations: pass data= (a DataLoader of training "
                           "(inputs, targets), an fxprune.data.ArrayDataset, or fxprune.search.DataSplits)")
    if isinstance(data, DataSplits):
        if data.reward is None:
            raise FxpruneError("DataSplits.reward is None: a search needs a reward split")
        return data
    if isinstance(data, ArrayDataset):
        if len(data) <= n_reward:
            return DataSplits(train=data.loader(batch_size, shuffle=True, seed=seed), reward=data)
        rest, reward = reward_split(data, n_reward, seed)
        return DataSplits(train=rest.loader(batch_size, shuffle=True, seed=seed), reward=reward)
    log.info("the reward split is the first %d samples of data, which training also sees; pass "
             "fxprune.search.DataSplits(train=..., reward=...) to hold it out", n_reward)
    return DataSplits(train=data, reward=batches(data, n_reward))


@dataclasses.dataclass
class Trainer:
    """Knowledge-distillation fine-tuning of a search's working model (``fxprune.finetune``)."""

    data: Any
    config: FinetuneConfig
    device: Any = None
    progress: bool = True

    def __call__(self, model: torch.nn.Module, teacher: torch.nn.Module | None, *, seed: int, epoch: int,
                 step_hook: Any = None) -> torch.nn.Module:
        """Train ``model`` in place; the data order depends only on (``seed``, ``epoch``) when the
        loader is seeded by torch or has ``set_epoch`` (fxprune's loaders do), so a resumed search
        trains exactly like an uninterrupted one."""
        if self.data is None:
            raise FxpruneError("fine-tuning between steps needs training data (DataSplits.train)")
        torch.manual_seed(seed)
        if hasattr(self.data, "set_epoch"):
            self.data.set_epoch(epoch)
        return finetune(model, self.data, teacher=teacher, config=self.config, device=self.device,
                        inplace=True, progress=self.progress, step_hook=step_hook).model
