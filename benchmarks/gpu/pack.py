"""Pack CIFAR-10 (the first PER_CLASS TRAIN images of each class, and the test set) as lossless
WebP mosaics, small enough to travel to a GPU machine with the checkout.

    python benchmarks/gpu/pack.py ../shared/data .gpu/data 2500
"""
import io
import sys

import numpy as np
from PIL import Image

WEBP_ROWS = 500  # mosaic rows of 100 images per file (WebP's limit is 16383 px a side)


def pack(x: np.ndarray, y: np.ndarray, dst: str, name: str) -> None:
    n, rows = len(x), (len(x) + 99) // 100
    pad = np.zeros((rows * 100, 32, 32, 3), np.uint8)
    pad[:n] = x
    mosaic = pad.reshape(rows, 100, 32, 32, 3).transpose(0, 2, 1, 3, 4).reshape(rows * 32, 3200, 3)
    for k in range(0, rows, WEBP_ROWS):
        buf = io.BytesIO()
        Image.fromarray(mosaic[k * 32:(k + WEBP_ROWS) * 32]).save(buf, format="WEBP", lossless=True, quality=100,
                                                                   method=6)
        with open(f"{dst}/{name}-{k // WEBP_ROWS}.webp", "wb") as f:
            f.write(buf.getvalue())
    np.save(f"{dst}/{name}-y.npy", y)
    np.save(f"{dst}/{name}-n.npy", np.array([n]))


def main(src: str, dst: str, per_class: int) -> None:
    train, test = np.load(f"{src}/cifar10/train.npz"), np.load(f"{src}/cifar10/test.npz")
    idx = np.sort(np.concatenate([np.flatnonzero(train["y"] == c)[:per_class] for c in range(10)]))
    pack(train["x"][idx], train["y"][idx], dst, "train")
    pack(test["x"], test["y"], dst, "test")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
