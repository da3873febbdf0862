import glob, sys
import numpy as np
from PIL import Image
src, dst = sys.argv[1], sys.argv[2]
import os; os.makedirs(f"{dst}/cifar10", exist_ok=True); os.makedirs(f"{dst}/weights", exist_ok=True)
for name in ("train", "test"):
    parts = sorted(glob.glob(f"{src}/{name}-*.webp"), key=lambda p: int(p.rsplit("-", 1)[1].split(".")[0]))
    mos = np.concatenate([np.asarray(Image.open(p).convert("RGB")) for p in parts])
    rows = mos.shape[0] // 32
    x = mos.reshape(rows, 32, 100, 32, 3).transpose(0, 2, 1, 3, 4).reshape(rows * 100, 32, 32, 3)
    n = int(np.load(f"{src}/{name}-n.npy")[0]); y = np.load(f"{src}/{name}-y.npy")
    np.savez(f"{dst}/cifar10/{name}.npz", x=np.ascontiguousarray(x[:n]), y=y)
    print(name, x[:n].shape)
