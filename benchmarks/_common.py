"""Shared by the benchmark scripts (run as ``python benchmarks/NAME.py``; this folder is on sys.path)."""
from __future__ import annotations


def have_torch_pruning() -> bool:
    """torch-pruning is a benchmark-only install (``pip install torch-pruning``), never a dependency."""
    try:
        import torch_pruning  # noqa: F401
    except ImportError:
        return False
    return True


def cifar_resnet56(threads: int, n_reward: int = 1000):
    """The CIFAR-10 ResNet-56 set-up of the ResNet-56 benchmarks: ``(model, test, rest, reward)``,
    where ``rest, reward`` split TRAIN (balanced reward subset, seed 0). Exits when
    ``../shared/data`` is absent; sets torch's thread count."""
    import sys
    from pathlib import Path

    import torch

    from fxprune.data import load_npz_folder, reward_split
    from fxprune.models import load_cifar_resnet

    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not shared.is_dir():
        sys.exit(f"needs {shared} (CIFAR-10 and the pretrained ResNet-56)")
    torch.set_num_threads(threads)
    model = load_cifar_resnet(shared / "weights" / "resnet56-4bfd9763.th")
    test = load_npz_folder(shared / "cifar10", "test")
    rest, reward = reward_split(load_npz_folder(shared / "cifar10", "train"), n_reward, seed=0)
    return model, test, rest, reward
