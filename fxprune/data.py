"""Data for search and recovery: CIFAR-style ``.npz`` folders, reward subsets, batch iteration.

In general users pass their own ``DataLoader`` (or any iterable of ``(inputs, targets)`` batches).
This module adds what fxprune's own benchmarks and tests need and what small users want: load a
folder holding ``train.npz`` / ``test.npz`` (arrays ``x``: uint8 N×H×W×C images, ``y``: int64
labels), hold out a *reward* subset of the training split for search (never the test split), and
iterate in batches with optional flip/crop augmentation. Nothing is unpickled
(``np.load(..., allow_pickle=False)``).
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .errors import FxpruneError

log = logging.getLogger(__name__)

NORMALIZATIONS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    None: ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


@dataclasses.dataclass
class ArrayDataset:
    """Images kept as uint8 N×H×W×C; batches come out as normalised float N×C×H×W tensors."""

    x: np.ndarray
    y: np.ndarray
    normalize: str | None = "imagenet"

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or self.x.dtype != np.uint8:
            raise FxpruneError(f"images must be uint8 N×H×W×C, got {self.x.dtype} {self.x.shape}")
        if self.y.shape != (self.x.shape[0],):
            raise FxpruneError(f"{self.x.shape[0]} images but labels of shape {self.y.shape}")
        if self.normalize not in NORMALIZATIONS:
            raise FxpruneError(f"unknown normalize={self.normalize!r}; choose one of {list(NORMALIZATIONS)}")
        mean, std = NORMALIZATIONS[self.normalize]
        c = self.x.shape[3]
        self._mean = torch.tensor(mean[:c] if c <= 3 else [0.0] * c).view(1, c, 1, 1)
        self._std = torch.tensor(std[:c] if c <= 3 else [1.0] * c).view(1, c, 1, 1)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def to_tensor(self, idx: np.ndarray | slice) -> torch.Tensor:
        imgs = torch.from_numpy(np.ascontiguousarray(self.x[idx])).permute(0, 3, 1, 2).float().div_(255.0)
        return (imgs - self._mean) / self._std

    def subset(self, idx: np.ndarray) -> ArrayDataset:
        return ArrayDataset(self.x[idx], self.y[idx], self.normalize)

    def loader(self, batch_size: int = 256, *, shuffle: bool = False, augment: bool = False,
               seed: int = 0, device: str | torch.device | None = None) -> ArrayLoader:
        """Batches of this dataset. ``device``: keep the images there (uploaded once, as uint8) and
        cut, augment and normalise every batch there; the batches equal the host ones."""
        return ArrayLoader(self, batch_size, shuffle, augment, seed, device)


class ArrayLoader:
    """Re-iterable batches of an :class:`ArrayDataset`; each pass reshuffles with its own seed.

    ``augment``: random horizontal flip and 4-pixel-padded random crop (the CIFAR recipe).
    ``device``: the images live on that device (a GPU: no host-to-device copy per batch); the
    random draws are the same, so the batches are the same as on the host."""

    def __init__(self, ds: ArrayDataset, batch_size: int, shuffle: bool, augment: bool, seed: int,
                 device: str | torch.device | None = None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise FxpruneError(f"batch_size={batch_size!r} must be a positive integer")
        self.ds, self.batch_size, self.shuffle, self.augment = ds, batch_size, shuffle, augment
        self.seed, self.epoch = seed, 0
        self.device = None if device is None else _check_device(device)
        self._resident: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def _on_device(self):
        """(uint8 N×C×H×W images, labels, mean, std) on ``self.device``, uploaded on first use."""
        if self._resident is None:
            d = self.device
            x = torch.from_numpy(np.ascontiguousarray(self.ds.x)).to(d).permute(0, 3, 1, 2)
            self._resident = (x, torch.from_numpy(self.ds.y.astype(np.int64)).to(d), self.ds._mean.to(d),
                              self.ds._std.to(d))
        return self._resident

    def __len__(self) -> int:
        return (len(self.ds) + self.batch_size - 1) // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass use the order of pass ``epoch`` (searches call this so that a
        resumed run sees the same batches as an uninterrupted one)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        self.epoch += 1
        order = rng.permutation(len(self.ds)) if self.shuffle else np.arange(len(self.ds))
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            if self.device is None:
                x, y = self.ds.to_tensor(idx), torch.from_numpy(self.ds.y[idx].astype(np.int64))
            else:
                xs, ys, mean, std = self._on_device()
                t = torch.from_numpy(idx).to(self.device)
                x, y = (xs[t].float().div_(255.0) - mean) / std, ys[t]
            if self.augment:
                x = _augment(x, rng)
            yield x, y


def _check_device(device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise FxpruneError(f"loader device={device!r} is not a torch device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FxpruneError(f"loader device={device!r}: CUDA is not available on this machine")
    return dev


def _augment(x: torch.Tensor, rng: np.random.Generator, pad: int = 4) -> torch.Tensor:
    """Random horizontal flip, then a random ``h×w`` crop of the zero-padded images, on the
    tensor's own device (the draws come from ``rng``, so host and device batches agree)."""
    n, c, h, w = x.shape
    dev = x.device
    flip = torch.from_numpy(rng.random(n) < 0.5).to(dev)
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.from_numpy(rng.integers(0, 2 * pad + 1, n)).to(dev)
    dx = torch.from_numpy(rng.integers(0, 2 * pad + 1, n)).to(dev)
    rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]  # n, 1, h, 1
    cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]  # n, 1, 1, w
    return padded[torch.arange(n, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
                  rows, cols]


def load_npz(path: str | Path, normalize: str | None = "imagenet") -> ArrayDataset:
    """One ``.npz`` file with arrays ``x`` (uint8 N×H×W×C) and ``y`` (labels)."""
    path = Path(path)
    if not path.is_file():
        raise FxpruneError(f"no data file at '{path}'")
    try:
        with np.load(path, allow_pickle=False) as f:
            if "x" not in f or "y" not in f:
                raise FxpruneError(f"'{path}' must hold arrays 'x' and 'y'; it has {sorted(f.files)}")
            return ArrayDataset(f["x"], f["y"].astype(np.int64), normalize)
    except (OSError, ValueError) as exc:
        raise FxpruneError(f"'{path}' is not a readable .npz file: {exc}") from exc


def load_npz_folder(folder: str | Path, split: str = "train", normalize: str | None = "imagenet") -> ArrayDataset:
    """``folder/{split}.npz`` — e.g. the CIFAR-10 layout ``train.npz`` / ``test.npz``."""
    return load_npz(Path(folder) / f"{split}.npz", normalize)


def reward_split(ds: ArrayDataset, n_reward: int, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """Split a *training* set into (rest, reward): ``n_reward`` images, balanced over labels when
    possible, chosen with ``seed``. Search scores plans on the reward part only."""
    if not 0 < n_reward < len(ds):
        raise FxpruneError(f"n_reward={n_reward} must be between 1 and {len(ds) - 1}")
    rng = np.random.default_rng(seed)
    classes = np.unique(ds.y)
    per = n_reward // len(classes)
    picked = [rng.permutation(np.flatnonzero(ds.y == c))[:per] for c in classes]
    idx = np.concatenate(picked) if per else np.zeros(0, np.int64)
    if idx.size < n_reward:  # top up at random from what is left
        rest = np.setdiff1d(np.arange(len(ds)), idx)
        idx = np.concatenate([idx, rng.choice(rest, n_reward - idx.size, replace=False)])
    idx = np.sort(idx)
    mask = np.ones(len(ds), bool)
    mask[idx] = False
    return ds.subset(np.flatnonzero(mask)), ds.subset(idx)


def batches(data, limit: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Materialise ``data`` (an ArrayDataset, a DataLoader or any iterable of ``(inputs, targets)``
    or of bare input tensors) as a list of batches, stopping after ``limit`` samples."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise FxpruneError(f"limit={limit!r} must be a positive integer or None")
    if isinstance(data, ArrayDataset):
        data = data.loader(256)
    out: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    seen = 0
    try:
        it = iter(data)
    except TypeError as exc:
        raise FxpruneError(f"data must be a DataLoader or an iterable of (inputs, targets); got "
                           f"{type(data).__name__}") from exc
    for batch in it:
        if isinstance(batch, torch.Tensor):
            x, y = batch, None
        elif isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
            x, y = batch[0], (batch[1] if len(batch) > 1 and isinstance(batch[1], torch.Tensor) else None)
        else:
            raise FxpruneError(f"a data batch must be a tensor or (inputs, targets); got {type(batch).__name__}")
        if limit is not None and seen + x.shape[0] > limit:
            x, y = x[:limit - seen], (None if y is None else y[:limit - seen])
        out.append((x, y))
        seen += x.shape[0]
        if limit is not None and seen >= limit:
            break
    if not out:
        raise FxpruneError("data yielded no batches")
    return out
