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


# The fair comparison protocol of every policy table: after search, every pruned model gets the
# same plain fine-tune (cross-entropy only, no teacher), on the same 10,000 TRAIN images, with the
# same recipe, for several fine-tune seeds; accuracy at the final epoch on all 10,000 test images.
FAIR = {"images": 10_000, "epochs": 1.0, "batch": 128, "lr": 0.05, "warmup_ratio": 0.3, "lr_min": 1e-4,
        "momentum": 0.9, "weight_decay": 5e-4}
FAIR_TEXT = ("plain fine-tune: cross-entropy only (no teacher), {epochs:g} epoch on {images:,} TRAIN images (a fixed "
             "subset of the images the search did not score), batch {batch}, SGD momentum {momentum}, weight decay "
             "{weight_decay}, one-cycle schedule (linear warm-up over {warmup_ratio:.0%} of the steps to lr {lr}, "
             "cosine down to {lr_min}), flip+crop augmentation; test accuracy after the final step on all 10,000 "
             "test images, mean ± std over fine-tune seeds").format(**FAIR)


def fair_finetune(model, rest, seed: int, test_loader):
    """The fair protocol above for one model and one seed: its test accuracy after the fine-tune
    (the model is not modified)."""
    import numpy as np

    import fxprune
    from fxprune.finetune import accuracy

    idx = np.sort(np.random.default_rng(12345).permutation(len(rest))[:FAIR["images"]])
    data = rest.subset(idx).loader(FAIR["batch"], shuffle=True, augment=True, seed=seed)
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ft = fxprune.finetune(model, data, teacher=None, epochs=FAIR["epochs"], lr=FAIR["lr"],
                              warmup_ratio=FAIR["warmup_ratio"], lr_min=FAIR["lr_min"], momentum=FAIR["momentum"],
                              weight_decay=FAIR["weight_decay"], progress=False)
    return accuracy(ft.model, test_loader)


def mean_std(xs) -> str:
    import numpy as np

    xs = np.asarray(xs, float)
    return f"{xs.mean():.2%} ± {xs.std(ddof=1) if xs.size > 1 else 0.0:.2%}"


def random_ratio_plan(graph, budget: float, rng, importance, round_to="auto"):
    """A plan at ``budget`` of the FLOPs with random per-group keep ratios (uniform in [0.15, 1],
    rescaled by one factor found by bisection) and L1 selection inside each group: separates the
    allocation from the selection (policies.md §0.4 item 4)."""
    import numpy as np

    import fxprune
    from fxprune.policies.allocation import Allocation

    alloc = Allocation(graph, fxprune.Budget(flops=budget), importance, round_to)
    ratios = rng.uniform(0.15, 1.0, len(alloc.sizes))

    def counts(scale):
        c = np.ceil(np.minimum(1.0, ratios * scale) * alloc.sizes).astype(np.int64)
        c = np.maximum(alloc.round_counts(c), alloc.floor)
        return np.where(alloc.prunable, np.minimum(c, alloc.sizes), alloc.sizes)

    lo, hi = 0.0, 1.0 / ratios.min()
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if alloc.ratio(counts(mid)) <= budget else (lo, mid)
    c = counts(lo)
    for g in rng.permutation(len(c)):  # hand back channel multiples, in random order, while the budget holds
        while alloc.prunable[g] and c[g] < alloc.sizes[g]:
            trial = c.copy()
            trial[g] = min(c[g] + alloc.multiples[g], alloc.sizes[g])
            if alloc.ratio(trial) > budget:
                break
            c = trial
    keep = alloc.keep_vector(c)
    return fxprune.Plan.from_graph(graph, {g.id: np.flatnonzero(keep[g.classes] > 0.5) for g in graph.groups})
