"""Adaptive batch norm: re-estimate the running statistics of every norm layer of a pruned (or
masked) network on a few training batches before it is scored.

Right after pruning, the running means and variances no longer match the network's activations,
so the score of a plan mostly measures that mismatch (ResNet-56 at 50% FLOPs: 10-40% accuracy).
Re-estimating them ("adaptive BN", EagleEye, ECCV 2020) makes the score before fine-tuning rank
plans the way the accuracy after fine-tuning does (``benchmarks/results/reward_fidelity.md``).

The statistics are the plain average over the batches (each layer's momentum is set to
``1/(k+1)`` for the k-th batch); all other layers stay in eval mode (no dropout). On a masked
network a dropped channel is all zeros, so its statistics are zero and its output stays zero:
masked + recalibration computes exactly what surgery + recalibration does.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch

_NORMS = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.modules.instancenorm._InstanceNorm)


def norm_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Norm layers that keep running statistics (batch norms, tracking instance norms)."""
    return [m for m in model.modules() if isinstance(m, _NORMS) and m.track_running_stats
            and m.running_mean is not None]


@contextlib.contextmanager
def kept_statistics(model: torch.nn.Module) -> Iterator[None]:
    """Restore every norm layer's running statistics (and counters) on exit."""
    saved = [(m, m.running_mean.clone(), m.running_var.clone(),
              None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norm_layers(model)]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, mean, var, n in saved:
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                if n is not None:
                    m.num_batches_tracked.copy_(n)


@torch.no_grad()
def recalibrate(model: torch.nn.Module, batches: Sequence[torch.Tensor], precision: str = "fp32") -> int:
    """Replace the running statistics of ``model``'s norm layers by their average over ``batches``
    (inputs only); returns the number of layers recalibrated. Flags are restored afterwards."""
    layers = norm_layers(model)
    if not layers or not batches:
        return 0
    state = [(m, m.momentum, m.training) for m in layers]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        for m in layers:
            m.reset_running_stats()
            m.training = True  # this layer only (a norm+activation layer may hold a dropout)
        for k, x in enumerate(batches):
            for m in layers:
                m.momentum = 1.0 / (k + 1)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                model(x.to(device))
    finally:
        for m, momentum, training in state:
            m.momentum = momentum
            m.training = training
    return len(layers)
