"""Data splits a search uses: all drawn from the *training* data, never the test split.

- ``reward``: what plans are scored on;
- ``calibration``: batches on which norm statistics are re-estimated before scoring
  (``bn_recalib``), disjoint from ``reward``;
- ``train``: what a search trains its working model on (distillation, joint training).

``prune(..., data=...)`` accepts:

- :class:`DataSplits`: used as given (a missing calibration slice is taken from ``train``);
- an :class:`fxprune.data.ArrayDataset` (training data): ``n_reward`` class-balanced samples are
  held out as the reward split (:func:`fxprune.data.reward_split`), the calibration slice is taken
  from the rest, which is shuffled for training;
- any DataLoader or iterable of ``(inputs, targets)``: its first ``n_reward`` samples are the
  reward split, the next ``n_calib`` the calibration slice, and the whole loader trains (training
  then sees the reward samples too: pass ``DataSplits`` to hold them out).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from ..data import ArrayDataset, batches, reward_split
from ..errors import FxpruneError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class DataSplits:
    train: Any  # re-iterable (inputs, targets) batches for training, or None
    reward: Any  # what evaluate() scores plans on (a subset of the *training* data)
    calibration: Any = None  # norm-statistics recalibration and Taylor importance (default: from train)


def _rebatch(pairs: list, size: int) -> list:
    import torch

    xs = torch.cat([x for x, _ in pairs])
    ys = [y for _, y in pairs]
    y = torch.cat(ys) if all(v is not None for v in ys) else None
    return [(xs[i:i + size], None if y is None else y[i:i + size]) for i in range(0, xs.shape[0], size)]


def as_splits(data: Any, n_reward: int = 1000, seed: int = 0, batch_size: int = 128,
              n_calib: int = 0, calib_batch: int = 64) -> DataSplits:
    """:class:`DataSplits` from what the user passed (see the module docstring). ``n_calib``:
    samples of the calibration slice (in batches of ``calib_batch``)."""
    if data is None:
        raise FxpruneError("this policy searches with evaluations: pass data= (a DataLoader of training "
                           "(inputs, targets), an fxprune.data.ArrayDataset, or fxprune.search.DataSplits)")
    if isinstance(data, DataSplits):
        if data.reward is None:
            raise FxpruneError("DataSplits.reward is None: a search needs a reward split")
        calib = data.calibration
        if calib is None and n_calib and data.train is not None:
            calib = _rebatch(batches(data.train, n_calib), calib_batch)
        return DataSplits(data.train, data.reward, calib)
    if isinstance(data, ArrayDataset):
        if len(data) <= n_reward:
            raise FxpruneError(f"the training data has {len(data)} samples: at most n_reward={n_reward} cannot "
                               "leave any to train on; lower n_reward or pass DataSplits")
        rest, reward = reward_split(data, n_reward, seed)
        calib = None
        if n_calib:
            idx = np.random.default_rng((seed, 1)).permutation(len(rest))[:n_calib]
            calib = rest.subset(np.sort(idx)).loader(calib_batch)
        return DataSplits(train=rest.loader(batch_size, shuffle=True, seed=seed), reward=reward, calibration=calib)
    log.info("the reward split is the first %d samples of data, which training also sees; pass "
             "fxprune.search.DataSplits(train=..., reward=...) to hold it out", n_reward)
    head = batches(data, n_reward + n_calib)
    flat = _rebatch(head, 1 << 30)[0]
    n = flat[0].shape[0]
    if n <= n_reward and n_calib:
        raise FxpruneError(f"data holds only {n} samples: none left after the {n_reward} reward samples for the "
                           f"calibration slice (bn_recalib); pass more data, a smaller n_reward, or bn_recalib=0")
    reward = [(flat[0][:n_reward], None if flat[1] is None else flat[1][:n_reward])]
    calib = None
    if n_calib:
        calib = _rebatch([(flat[0][n_reward:], None if flat[1] is None else flat[1][n_reward:])], calib_batch)
    return DataSplits(train=data, reward=reward, calibration=calib)
