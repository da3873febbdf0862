"""Restore the ``.npz`` files ``pack.py`` packed (bit-identical images), in the layout of
``../shared/data``: ``DST/cifar10/{train,test}.npz`` (and an empty ``DST/weights``).

    python benchmarks/gpu/unpack.py .gpu/data /tmp/shared
"""
import glob
import os
import sys

import numpy as np
from PIL import Image


def unpack(src: str, dst: str, name: str) -> None:
    parts = sorted(glob.glob(f"{src}/{name}-*.webp"), key=lambda p: int(p.rsplit("-", 1)[1].split(".")[0]))
    mosaic = np.concatenate([np.asarray(Image.open(p).convert("RGB")) for p in parts])
    rows = mosaic.shape[0] // 32
    x = mosaic.reshape(rows, 32, 100, 32, 3).transpose(0, 2, 1, 3, 4).reshape(rows * 100, 32, 32, 3)
    n = int(np.load(f"{src}/{name}-n.npy")[0])
    np.savez(f"{dst}/cifar10/{name}.npz", x=np.ascontiguousarray(x[:n]), y=np.load(f"{src}/{name}-y.npy"))
    print(name, x[:n].shape)


if __name__ == "__main__":
    src, dst = sys.argv[1], sys.argv[2]
    os.makedirs(f"{dst}/cifar10", exist_ok=True)
    os.makedirs(f"{dst}/weights", exist_ok=True)
    for split in ("train", "test"):
        unpack(src, dst, split)
