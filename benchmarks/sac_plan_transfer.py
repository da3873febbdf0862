"""Is it sac's plan or sac's training? A diagnostic for ``cifar10_sac.py``.

    python benchmarks/sac_plan_transfer.py --seeds 3 --plans all-fade-0,all-fade-1,all-fade-2,all-fade-3
        [--finetune-epochs 5] [--threads 2] [--rows benchmarks/results/cifar10_sac_plan_transfer_rows.jsonl]

Takes the dense model that ``cifar10_sac.py --variants dense --seeds S`` trained (saved in its run
directory) and prunes it three ways at the same FLOPs: ``global`` and ``uniform`` as in the main
table, and with the per-group channel counts of a finished sac run's final plan (L1 selection
inside each group, since channel identities do not carry across separately trained networks).
Each pruned model gets the main table's fine-tune (same recipe, same data order, same seed; one
fine-tune per row). This compares sac's allocation with global's and uniform's on the same dense
weights; the gap between a sac run's own result and its plan here is what the joint training added.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

import fxprune
from _common import append_row, mean_std, read_rows, table_path
from cifar10_sac import RECIPE, RUNS, data, derived_args, run_dir, train_loader
from fxprune.finetune import accuracy
from fxprune.importance import class_importance
from fxprune.models import cifar_resnet
from fxprune.policies.allocation import Allocation

EX = (1, 3, 32, 32)


def sac_counts(graph, plan_dir: Path) -> np.ndarray:
    """Kept channels per group of the final plan of the sac run in ``plan_dir``."""
    dropped = np.asarray(json.loads((plan_dir / "result.json").read_text())["dropped"], np.int64)
    gone = np.bincount(graph.group_of_class[dropped], minlength=len(graph.groups))
    return np.array([g.size for g in graph.groups], np.int64) - gone


def plan_from_counts(graph, counts: np.ndarray, budget: float) -> fxprune.Plan:
    """Keep ``counts[g]`` channels of every group ``g``, the largest by L1 norm."""
    alloc = Allocation(graph, fxprune.Budget(flops=budget), class_importance(graph, "l1"))
    keep = alloc.keep_vector(counts)
    return fxprune.Plan.from_graph(graph, {g.id: np.flatnonzero(keep[g.classes] > 0.5) for g in graph.groups})


def finetune_row(args, seed: int, res, name: str, base: dict, extra: dict, rest, test_loader) -> None:
    dev = None if args.device == "cpu" else torch.device(args.device)
    loader = train_loader(rest, seed, dev)  # a fresh loader: every row sees the same batches
    acc0 = accuracy(res.model.to(dev or "cpu"), test_loader)
    torch.manual_seed(seed)
    ft = fxprune.finetune(res.model, loader, epochs=args.finetune_epochs, device=dev, progress=False, **RECIPE).model
    row = {**base, "row": name, "acc": accuracy(ft, test_loader), "acc_pruned": acc0,
           "flops": res.report.flops_ratio, "params": res.report.params_ratio, **extra}
    append_row(args.rows, row)
    print(row, flush=True)


def run(args, seed: int) -> None:
    torch.set_num_threads(args.threads)
    depth = int(args.arch[len("resnet"):])
    path = run_dir(args, "dense", seed) / "dense.safetensors"
    if not path.exists():
        sys.exit(f"{path} is missing: run cifar10_sac.py --variants dense --seeds {seed} first")
    dense = cifar_resnet(depth).eval()
    dense.load_state_dict(load_file(str(path)))
    base = {"arch": args.arch, "seed": seed, "finetune_epochs": args.finetune_epochs, "budget": args.budget}
    rest, _, _, test_loader = data(args, seed, None if args.device == "cpu" else torch.device(args.device))
    for policy in ("global", "uniform"):
        res = fxprune.prune(dense, args.budget, example_inputs=EX, policy=policy, importance="l1", progress=False)
        kept = [len(res.plan.keep.get(g.id, range(g.size))) for g in res.graph.groups]
        finetune_row(args, seed, res, policy, base, {"kept": kept}, rest, test_loader)
    graph = res.graph  # the analysis of the dense model
    for name in args.plans.split(","):
        counts = sac_counts(graph, RUNS / f"{args.arch}-{name}")
        res = fxprune.apply_plan(dense, plan_from_counts(graph, counts, args.budget), example_inputs=EX)
        finetune_row(args, seed, res, f"sac plan of {name}", base, {"kept": counts.tolist()}, rest, test_loader)


def render(args) -> None:
    rows = read_rows(Path(args.rows))
    lines = ["# Is it sac's plan or sac's training? (resnet20, CIFAR-10)", "",
             f"Command: `python {' '.join(sys.argv)}` (rows from `{args.rows}`); see the docstring of "
             "`benchmarks/sac_plan_transfer.py`. The dense model of `cifar10_sac.py` (E = 30 epochs) pruned to 50% "
             "FLOPs by global, by uniform, and with the per-group counts of a sac run's final plan (L1 selection "
             "inside each group), then the main table's F-epoch fine-tune. Rows made by `python "
             "benchmarks/sac_plan_transfer.py --seeds S --plans all-fade-0,all-fade-1,all-fade-2,all-fade-3 --threads 1 "
             "--rows R` per dense seed S, after `cifar10_sac.py --variants dense --seeds S` (and the four all-fade runs).",
             "",
             "| dense seed | pruned by | test accuracy after fine-tune | right after pruning | FLOPs kept | "
             "params kept | kept channels per group |", "|---:|---|---:|---:|---:|---:|---|"]
    for r in sorted(rows, key=lambda r: (r["seed"], r["row"])):
        lines.append(f"| {r['seed']} | {r['row']} | {r['acc']:.2%} | {r['acc_pruned']:.2%} | {r['flops']:.3f} | "
                     f"{r['params']:.3f} | {' '.join(map(str, r['kept']))} |")
    lines.append("")
    for seed in sorted({r["seed"] for r in rows}):
        mine = [r for r in rows if r["seed"] == seed]
        sac = [r["acc"] for r in mine if r["row"].startswith("sac plan")]
        ref = {r["row"]: r["acc"] for r in mine if not r["row"].startswith("sac plan")}
        if sac:
            lines.append(f"- dense seed {seed}: sac's plans {mean_std(sac)} over {len(sac)} plans; "
                         + ", ".join(f"{100 * (np.mean(sac) - a):+.2f} points vs {k}" for k, a in sorted(ref.items())))
    out = Path(args.out)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None):
    ap = argparse.ArgumentParser()
    derived_args(ap, "benchmarks/results/cifar10_sac_plan_transfer_rows.jsonl")
    ap.add_argument("--seeds", default="3", help="dense models to prune (their cifar10_sac.py dense runs)")
    ap.add_argument("--plans", default="all-fade-0", help="sac run directories (variant-seed) whose plans to copy")
    args = ap.parse_args(argv)
    args.smoke = False
    args.out = str(table_path(args.rows, args.out))
    if not args.render:
        for seed in [int(s) for s in args.seeds.split(",")]:
            run(args, seed)
    render(args)


if __name__ == "__main__":
    main()
