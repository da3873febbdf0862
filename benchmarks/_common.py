"""Shared by the benchmark scripts (run as ``python benchmarks/NAME.py``; this folder is on sys.path)."""
from __future__ import annotations


def have_torch_pruning() -> bool:
    """torch-pruning is a benchmark-only install (``pip install torch-pruning``), never a dependency."""
    try:
        import torch_pruning  # noqa: F401
    except ImportError:
        return False
    return True
