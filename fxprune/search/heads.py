"""Small network heads the learned policies share: an MLP, a Bernoulli keep head with the
keep-bias initialisation, and a tanh-squashed Gaussian (with its log-probability correction).
Weights are initialised from an explicit ``torch.Generator``-seeded fork, never the global seed."""
from __future__ import annotations

import math

import torch
from torch import nn


def mlp(sizes: list[int], act: type[nn.Module] = nn.Tanh, out_act: type[nn.Module] | None = None) -> nn.Sequential:
    """Linear layers of ``sizes`` with ``act`` between them (and ``out_act`` after the last)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(act())
        elif out_act is not None:
            layers.append(out_act())
    return nn.Sequential(*layers)


def logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


class BernoulliHead(nn.Module):
    """``P(keep channel) = sigmoid(MLP(input))``; the last bias starts at ``logit(k0)`` so that the
    untrained policy keeps about ``k0`` of the channels (the keep-bias initialisation) and the last
    weights start small, so that the first samples are spread around that ratio."""

    def __init__(self, in_dim: int, hidden: int = 64, k0: float = 0.5):
        super().__init__()
        self.net = mlp([in_dim, hidden, hidden, 1])
        last = self.net[-1]
        with torch.no_grad():
            last.weight.mul_(0.01)
            last.bias.fill_(logit(k0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class TanhGaussian(nn.Module):
    """A Gaussian in pre-activation space squashed by tanh into (-1, 1) (SAC's actor):
    ``sample`` returns the squashed action and its log-probability with the tanh correction
    ``log π(a) = log N(u) - Σ log(1 - tanh(u)² + ε)``."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, log_std_bounds: tuple[float, float] = (-5.0, 2.0)):
        super().__init__()
        self.body = mlp([in_dim, hidden, hidden], act=nn.ReLU, out_act=nn.ReLU)
        self.mu, self.log_std = nn.Linear(hidden, out_dim), nn.Linear(hidden, out_dim)
        self.bounds = log_std_bounds

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        lo, hi = self.bounds
        log_std = lo + 0.5 * (hi - lo) * (torch.tanh(self.log_std(h)) + 1)
        return self.mu(h), log_std

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None,
               deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_std = self(x)
        std = log_std.exp()
        eps = torch.zeros_like(mu) if deterministic else torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
        u = mu + std * eps
        a = torch.tanh(u)
        logp = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        logp = logp - torch.log(1 - a.pow(2) + 1e-6).sum(-1)
        return a, logp
