"""Shared by the benchmark scripts (run as ``python benchmarks/NAME.py``; this folder is on sys.path)."""
from __future__ import annotations


def have_torch_pruning() -> bool:
    """torch-pruning is a benchmark-only install (``pip install torch-pruning``), never a dependency."""
    try:
        import torch_pruning  # noqa: F401
    except ImportError:
        return False
    return True


def shared_data():
    """``../shared/data`` beside the checkout, or the folder ``$FXPRUNE_SHARED_DATA`` names (the
    same layout: ``cifar10/{train,test}.npz``, ``weights/``); exits when it is absent."""
    import os
    import sys
    from pathlib import Path

    env = os.environ.get("FXPRUNE_SHARED_DATA")
    shared = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not shared.is_dir():
        sys.exit(f"needs {shared} (CIFAR-10 and the pretrained CIFAR ResNets)")
    return shared


def read_rows(path) -> list[dict]:
    """The rows of a benchmark's JSONL rows file (empty when there is none)."""
    import json
    from pathlib import Path

    path = Path(path)
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def table_path(rows, out=None):
    """The markdown a rows file renders to: ``out`` when given, else beside the rows file with its
    ``_rows`` suffix dropped (``x_rows.jsonl`` -> ``x.md``), so that a run into a scratch rows file
    never overwrites a committed table."""
    from pathlib import Path

    if out is not None:
        return Path(out)
    rows = Path(rows)
    return rows.with_name(rows.stem.removesuffix("_rows") + ".md")


def append_row(path, row: dict) -> None:
    """Append one finished row to a JSONL rows file (several processes may share it: one line per
    write, in append mode)."""
    import json
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def cifar_resnet56(threads: int, n_reward: int = 1000):
    """The CIFAR-10 ResNet-56 set-up of the ResNet-56 benchmarks: ``(model, test, rest, reward)``,
    where ``rest, reward`` split TRAIN (balanced reward subset, seed 0). Exits when
    ``../shared/data`` is absent; sets torch's thread count."""
    import torch

    from fxprune.data import load_npz_folder, reward_split
    from fxprune.models import load_cifar_resnet

    shared = shared_data()
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


def fair_finetune(model, rest, seed: int, test_loader, device=None, epochs: float | None = None,
                  images: int | None = None):
    """The fair protocol above for one model and one seed: its test accuracy after the fine-tune
    (the model is not modified). ``device``: train there, the images resident on it. ``epochs`` /
    ``images``: the same recipe over a longer run (the GPU's long fine-tune rows; ``images=0``: all
    of ``rest``)."""
    import numpy as np

    import fxprune
    from fxprune.finetune import accuracy

    n = FAIR["images"] if images is None else (images or len(rest))
    idx = np.sort(np.random.default_rng(12345).permutation(len(rest))[:n])
    data = rest.subset(idx).loader(FAIR["batch"], shuffle=True, augment=True, seed=seed, device=device)
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ft = fxprune.finetune(model, data, teacher=None, epochs=FAIR["epochs"] if epochs is None else epochs,
                              lr=FAIR["lr"], warmup_ratio=FAIR["warmup_ratio"], lr_min=FAIR["lr_min"],
                              momentum=FAIR["momentum"], weight_decay=FAIR["weight_decay"], device=device,
                              progress=False)
    return accuracy(ft.model, test_loader)


def mean_std(xs) -> str:
    import numpy as np

    xs = np.asarray(xs, float)
    return f"{xs.mean():.2%} ± {xs.std(ddof=1):.2%}" if xs.size > 1 else f"{xs.mean():.2%} (one run)"


def random_ratio_plan(graph, budget: float, rng, importance, round_to="auto"):
    """A plan at ``budget`` of the FLOPs with random per-group keep ratios and L1 selection inside
    each group (the ``random`` policy's draw, :func:`fxprune.policies.random_search.random_counts`):
    separates the allocation from the selection (policies.md §0.4 item 4)."""
    import numpy as np

    import fxprune
    from fxprune.policies.allocation import Allocation
    from fxprune.policies.random_search import random_counts

    alloc = Allocation(graph, fxprune.Budget(flops=budget), importance, round_to)
    keep = alloc.keep_vector(random_counts(alloc, rng))
    return fxprune.Plan.from_graph(graph, {g.id: np.flatnonzero(keep[g.classes] > 0.5) for g in graph.groups})
