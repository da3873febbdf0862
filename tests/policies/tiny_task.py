"""A tiny learnable task for search-policy tests: 8 classes marked by a bright quadrant in one
colour channel, and a 6-conv CNN trained on it in about a second (seeded)."""
import functools

import torch
from torch import nn

import fxprune
from fxprune.search import DataSplits

EXAMPLE = torch.zeros(1, 3, 16, 16)


def make(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 8, (n,), generator=g)
    x = torch.randn(n, 3, 16, 16, generator=g)
    for c in range(8):
        qy, qx = divmod(c % 4, 2)
        x[y == c, c // 4, qy * 8:(qy + 1) * 8, qx * 8:(qx + 1) * 8] += 1.0
    return x, y


def _block(i, o, s=1):
    return nn.Sequential(nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU())


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(_block(3, 8), _block(8, 16), _block(16, 32, 2), _block(32, 48), _block(48, 24),
                               _block(24, 32, 2))
        self.fc = nn.Linear(32, 8)

    def forward(self, x):
        return self.fc(self.f(x).mean((2, 3)))


@functools.lru_cache(maxsize=1)
def _trained_state():
    torch.manual_seed(0)
    xt, yt = make(2048, 0)
    m = TinyCNN()
    fxprune.finetune(m, [(xt[i:i + 128], yt[i:i + 128]) for i in range(0, 2048, 128)], epochs=6, lr=0.05,
                     inplace=True, progress=False)
    return {k: v.clone() for k, v in m.state_dict().items()}


def trained() -> TinyCNN:
    m = TinyCNN()
    m.load_state_dict(_trained_state())
    return m.eval()


def splits(n_train: int = 512) -> DataSplits:
    xt, yt = make(n_train, 2)
    xr, yr = make(512, 1)
    return DataSplits(train=[(xt[i:i + 128], yt[i:i + 128]) for i in range(0, n_train, 128)], reward=[(xr, yr)])
