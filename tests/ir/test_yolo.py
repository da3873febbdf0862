"""YOLO-style blocks, written here as YOLOv8/YOLO11 write them (no ultralytics dependency): C2f and
C3k2 (a list built from ``chunk`` and extended in a loop, then concatenated), SPPF, an FPN neck
and a decoupled detect head with DFL box decoding; pruned and checked with the oracles."""
import pytest
import torch
import torch.nn as nn

import fxprune
from fxprune.testing import dead_channel_check
from tests.conftest import assert_dead_equivalent, assert_untouched, snapshot


class Conv(nn.Module):
    def __init__(self, c1, c2, k=1, s=1, g=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c1, c2, shortcut=True, k=(3, 3), e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1, self.cv2 = Conv(c1, c_, k[0]), Conv(c_, c2, k[1])
        self.add = shortcut and c1 == c2

    def forward(self, x):
        return x + self.cv2(self.cv1(x)) if self.add else self.cv2(self.cv1(x))


class C2f(nn.Module):
    def __init__(self, c1, c2, n=1, shortcut=False, e=0.5):
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, self.c, shortcut, e=1.0) for _ in range(n))

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class C3k(nn.Module):  # C3 with a custom kernel: two parallel 1x1 convs, bottlenecks on one
    def __init__(self, c1, c2, n=1, shortcut=True, e=0.5, k=3):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1, self.cv2, self.cv3 = Conv(c1, c_, 1), Conv(c1, c_, 1), Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, k=(k, k), e=1.0) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class C3k2(C2f):  # YOLO11: C2f whose inner blocks are C3k
    def __init__(self, c1, c2, n=1, c3k=True, e=0.5, shortcut=True):
        super().__init__(c1, c2, n, shortcut, e)
        self.m = nn.ModuleList(C3k(self.c, self.c, 2, shortcut) if c3k else Bottleneck(self.c, self.c, shortcut)
                               for _ in range(n))


class SPPF(nn.Module):
    def __init__(self, c1, c2, k=5):
        super().__init__()
        c_ = c1 // 2
        self.cv1, self.cv2 = Conv(c1, c_, 1), Conv(c_ * 4, c2, 1)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x):
        y = [self.cv1(x)]
        y.extend(self.m(y[-1]) for _ in range(3))
        return self.cv2(torch.cat(y, 1))


class DFL(nn.Module):  # distribution focal loss decoding: a fixed 1x1 conv over reg_max bins
    def __init__(self, c1=16):
        super().__init__()
        self.conv = nn.Conv2d(c1, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(c1, dtype=torch.float).view(1, c1, 1, 1)
        self.c1 = c1

    def forward(self, x):
        b, _, a = x.shape
        return self.conv(x.view(b, 4, self.c1, a).transpose(2, 1).softmax(1)).view(b, 4, a)


class Detect(nn.Module):  # YOLOv8 decoupled head over three levels, inference output
    def __init__(self, nc=5, ch=(16, 32, 64), reg_max=8):
        super().__init__()
        self.nc, self.reg_max, self.no = nc, reg_max, nc + 4 * reg_max
        c2, c3 = max(16, ch[0] // 4, 4 * reg_max), max(ch[0], nc)
        self.cv2 = nn.ModuleList(nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1)) for x in ch)
        self.cv3 = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1)) for x in ch)
        self.dfl = DFL(reg_max)

    def forward(self, x):
        x = [torch.cat((self.cv2[i](xi), self.cv3[i](xi)), 1) for i, xi in enumerate(x)]
        b = x[0].shape[0]
        x_cat = torch.cat([xi.view(b, self.no, -1) for xi in x], 2)
        box, cls = x_cat.split((self.reg_max * 4, self.nc), 1)
        return torch.cat((self.dfl(box), cls.sigmoid()), 1)


class TinyYOLO(nn.Module):
    def __init__(self, block=C2f):
        super().__init__()
        self.b0, self.b1 = Conv(3, 16, 3, 2), block(16, 16, 1)
        self.b2, self.b3 = Conv(16, 32, 3, 2), block(32, 32, 2)
        self.b4, self.b5 = Conv(32, 64, 3, 2), SPPF(64, 64)
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.n1, self.n2 = block(64 + 32, 32, 1), block(32 + 16, 16, 1)
        self.d1, self.n3 = Conv(16, 16, 3, 2), block(16 + 32, 32, 1)
        self.d2, self.n4 = Conv(32, 32, 3, 2), block(32 + 64, 64, 1)
        self.detect = Detect(ch=(16, 32, 64))

    def forward(self, x):
        p3 = self.b1(self.b0(x))
        p4 = self.b3(self.b2(p3))
        p5 = self.b5(self.b4(p4))
        h4 = self.n1(torch.cat([self.up(p5), p4], 1))
        h3 = self.n2(torch.cat([self.up(h4), p3], 1))
        o4 = self.n3(torch.cat([self.d1(h3), h4], 1))
        o5 = self.n4(torch.cat([self.d2(o4), p5], 1))
        return self.detect([h3, o4, o5])


def _randomised(m):
    torch.manual_seed(0)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.3, 0.3)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
    return m.eval()


BLOCKS = {"C2f": lambda: C2f(16, 32, 2, True), "C3k2": lambda: C3k2(16, 32, 2), "SPPF": lambda: SPPF(16, 32),
          "C3k": lambda: C3k(16, 32, 2)}


@pytest.mark.parametrize("name", BLOCKS)
def test_block_dead_channel_equivalence(name):
    assert_dead_equivalent(dead_channel_check(_randomised(BLOCKS[name]()), torch.randn(2, 16, 16, 16)))


@pytest.mark.parametrize("block", [C2f, C3k2], ids=["yolov8", "yolo11"])
def test_tiny_yolo_prunes_with_every_oracle(block):
    model = _randomised(TinyYOLO(block))
    x = torch.randn(1, 3, 64, 64)
    snap = snapshot(model)
    with torch.no_grad():
        y = model(x)
    r = fxprune.prune(model, 0.5, example_inputs=x, progress=False)
    assert_untouched(model, snap)
    assert abs(r.report.flops_ratio - 0.5) <= 0.01 and r.report.flops_ratio <= 0.5
    with torch.no_grad():
        assert r.model(x).shape == y.shape
    # the detect head's outputs (box bins, classes) reach the model output and keep their channels
    assert r.model.detect.cv2.get_submodule("0.2").out_channels == 32
    assert r.model.detect.cv3.get_submodule("0.2").out_channels == 5
    assert_dead_equivalent(dead_channel_check(model, torch.randn(2, 3, 64, 64)))
