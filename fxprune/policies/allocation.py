"""Plan arithmetic every policy shares: hardware-friendly channel multiples per group, floors,
and rounding of kept counts.

Channel multiples (``round_to``). ONNX Runtime's CPU convolutions run fastest when channel
counts are multiples of the SIMD width; ragged counts can make a pruned model *slower* than the
original (``benchmarks/results/latency.md``, rounding study: at 50% FLOPs on one thread,
MobileNetV2's speedup ÷ MACs reduction is 0.51 unrounded and 0.97 with multiples of 16). The
default, ``round_to="auto"``, keeps each group's count at a multiple chosen from the group's
size for the target: the target's width (16 for ``"ort-cpu"``), but never more than a quarter of
the group, so a narrow group keeps a useful choice of sizes (a 16-channel CIFAR group keeps 4, 8,
12 or 16 channels, never 0). ``round_to=N`` uses N for every group; ``round_to=1`` opts out.
"""
from __future__ import annotations

import numpy as np

from ..errors import FxpruneError

TARGET_WIDTHS = {"ort-cpu": 16}  # measured: benchmarks/results/latency.md (rounding study)
AUTO = "auto"


def check_round_to(round_to) -> None:
    if round_to is None or round_to == AUTO:
        return
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise FxpruneError(f"round_to={round_to!r} must be a positive integer, 'auto' or None (= 'auto')")


def group_multiples(sizes: np.ndarray, round_to=AUTO, target: str = "ort-cpu") -> np.ndarray:
    """The channel multiple of every group: ``round_to`` itself, or for ``"auto"`` (and None) the
    largest power of two that is at most the target width and at most a quarter of the group."""
    check_round_to(round_to)
    sizes = np.asarray(sizes, np.int64)
    if round_to is not None and round_to != AUTO:
        return np.full(sizes.shape, int(round_to), np.int64)
    width = TARGET_WIDTHS[target]
    quarter = np.maximum(sizes // 4, 1)
    pow2 = 2 ** np.floor(np.log2(quarter)).astype(np.int64)
    return np.minimum(pow2, width).astype(np.int64)


def describe_rounding(round_to) -> str:
    """What the report says about the rounding in use."""
    if round_to is None or round_to == AUTO:
        w = TARGET_WIDTHS["ort-cpu"]
        return (f"auto: multiples of {w} for groups of >= {4 * w} channels, else of the largest power of "
                "two <= a quarter of the group (ONNX Runtime CPU)")
    if round_to == 1:
        return "none (round_to=1)"
    return f"multiples of {round_to}"


def round_up(counts: np.ndarray, multiples: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Round every count up to its group's multiple, never above the group size."""
    counts = np.asarray(counts, np.int64)
    return np.minimum(-(-counts // multiples) * multiples, sizes)


def round_nearest(counts: np.ndarray, multiples: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Round every count to the nearest multiple (never 0, never above the group size)."""
    counts = np.asarray(counts, np.int64)
    near = np.maximum(np.round(counts / multiples).astype(np.int64), 1) * multiples
    return np.minimum(near, sizes)


def align_removals(n: np.ndarray, alive: np.ndarray, floor: np.ndarray, multiples: np.ndarray) -> np.ndarray:
    """Removal counts near ``n`` that leave every group at a multiple of its channel multiple
    (never below ``floor``), with the total as close to ``n.sum()`` as the multiples allow: each
    group's kept count is rounded down or up to a multiple, down first where the fractional part is
    largest (largest-remainder rounding), so small per-group requests are neither all dropped nor
    all inflated."""
    n, alive = np.asarray(n, np.int64), np.asarray(alive, np.int64)
    want = alive - n
    low = np.maximum((want // multiples) * multiples, floor)
    high = np.minimum(low + multiples, alive)
    low = np.minimum(low, alive)
    kept = high.copy()  # start rounded up (removing less), then round down where it helps most
    frac = np.where(high > low, (high - want) / np.maximum(high - low, 1), 0.0)
    budget = int(n.sum()) - int((alive - kept).sum())
    for g in np.argsort(-frac, kind="stable"):
        step = int(high[g] - low[g])
        if step <= 0 or n[g] <= 0:
            continue
        if budget - step >= -step / 2:  # rounding this group down brings the total closer
            kept[g] = low[g]
            budget -= step
    return alive - kept
