"""Pack CIFAR-10 (a balanced train subset + the test set) as lossless WebP mosaics for the device."""
import io, sys
import numpy as np
from PIL import Image
src, dst, per_class = sys.argv[1], sys.argv[2], int(sys.argv[3])
tr = np.load(f"{src}/cifar10/train.npz"); te = np.load(f"{src}/cifar10/test.npz")
idx = np.sort(np.concatenate([np.flatnonzero(tr["y"] == c)[:per_class] for c in range(10)]))
def pack(x, y, name):
    n = len(x); rows = (n + 99) // 100
    pad = np.zeros((rows * 100, 32, 32, 3), np.uint8); pad[:n] = x
    mos = pad.reshape(rows, 100, 32, 32, 3).transpose(0, 2, 1, 3, 4).reshape(rows * 32, 3200, 3)
    # WebP's limit is 16383 px a side: split in chunks of 500 mosaic rows
    for k in range(0, rows, 500):
        buf = io.BytesIO(); Image.fromarray(mos[k * 32:(k + 500) * 32]).save(buf, format="WEBP", lossless=True, quality=100, method=6)
        open(f"{dst}/{name}-{k // 500}.webp", "wb").write(buf.getvalue())
    np.save(f"{dst}/{name}-y.npy", y); np.save(f"{dst}/{name}-n.npy", np.array([n]))
pack(tr["x"][idx], tr["y"][idx], "train"); pack(te["x"], te["y"], "test")
