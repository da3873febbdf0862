"""CIFAR-10 ResNet-56 (pretrained, ../shared/data) pruned to 50% FLOPs by `uniform`, `global` and
`mcq`, then the same short KD fine-tune for each.

    python benchmarks/cifar10_resnet56.py [--ft-epochs 0.5] [--threads 2] [--precision bf16] [--seed 0]

Reports per policy: test accuracy right after pruning and after the fine-tune (all 10,000 test
images; the search only ever sees a 1,000-image reward split drawn from TRAIN), FLOPs and params
ratios, ONNX Runtime latency (1 thread, batch 1, interleaved with the unpruned model), search wall
time and evaluate() plans/s. For mcq it also scores its plan on the *original* weights (the
allocation alone, without the distillation it does between steps). Writes
benchmarks/results/cifar10_resnet56.md.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

import fxprune
from _common import cifar_resnet56
from fxprune.finetune import accuracy
from fxprune.search import DataSplits

MCQ_CPU = {"samples": 10, "rounds": 2, "depth": 1, "step_ratio": 0.05, "kd_max_steps": 40, "batch_size": 500}


def _mcq_config(args) -> dict:
    cfg = {**MCQ_CPU, "precision": args.precision}
    if args.alpha is not None:
        cfg["alpha"] = args.alpha
    if args.init != "size":
        cfg["init"] = args.init
    return cfg


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("--ft-epochs", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--importance", default="l1")
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16"], help="mcq's plan evaluation")
    ap.add_argument("--seed", type=int, default=0, help="mcq's seed")
    ap.add_argument("--alpha", type=float, default=None, help="mcq's FLOPs reward weight (default: its strategy's)")
    ap.add_argument("--init", default="size", choices=["size", "gat", "global"], help="mcq's initial distribution")
    ap.add_argument("--out", default="benchmarks/results/cifar10_resnet56.md")
    args = ap.parse_args(argv)
    model, test, rest, reward = cifar_resnet56(args.threads)
    test_loader = test.loader(500)
    base_acc = accuracy(model, test_loader)
    print(f"unpruned test accuracy {base_acc:.4f}", flush=True)
    ex = torch.randn(1, 3, 32, 32)
    tmp = Path(tempfile.mkdtemp())
    fxprune.export_onnx(model, tmp / "orig.onnx", ex)
    rows = []
    for policy in ("uniform", "global", "mcq"):
        kw = {}
        if policy == "mcq":
            kw = {"data": DataSplits(train=rest.loader(128, shuffle=True, augment=True, seed=0), reward=reward),
                  "policy_config": _mcq_config(args), "resume": False, "seed": args.seed}
        t = time.perf_counter()
        res = fxprune.prune(model, args.budget, example_inputs=ex, policy=policy, importance=args.importance, **kw)
        search_s = time.perf_counter() - t
        acc_pruned = accuracy(res.model, test_loader)
        row = {"policy": policy, "flops": res.report.flops_ratio, "params": res.report.params_ratio,
               "search_s": search_s, "acc_pruned": acc_pruned}
        if policy == "mcq":
            row["plans_per_s"] = res.search["info"].get("plans_per_second")
            row["evals"] = res.search["evaluations"]
            row["steps"] = len(res.search["info"]["steps"])
            row["acc_plan_orig_weights"] = accuracy(fxprune.apply_plan(model, res.plan, ex).model, test_loader)
        print(policy, row, flush=True)
        ft = fxprune.finetune(res.model, rest.loader(128, shuffle=True, augment=True, seed=1), teacher=model,
                              epochs=args.ft_epochs, lr=0.01)
        row["acc_ft"] = accuracy(ft.model, test_loader)
        if policy == "mcq":  # the allocation alone: mcq's plan on the original weights, same fine-tune
            alone = fxprune.apply_plan(model, res.plan, ex).model
            ft2 = fxprune.finetune(alone, rest.loader(128, shuffle=True, augment=True, seed=1), teacher=model,
                                   epochs=args.ft_epochs, lr=0.01)
            row["acc_ft_plan_orig"] = accuracy(ft2.model, test_loader)
        fxprune.export_onnx(res.model, tmp / f"{policy}.onnx", ex)
        cmp = fxprune.compare_latency(tmp / "orig.onnx", tmp / f"{policy}.onnx", threads=1, runs=300, warmup=30)
        row["lat_orig"], row["lat"], row["speedup"] = cmp.a.median_ms, cmp.b.median_ms, cmp.speedup
        print(policy, row, flush=True)
        rows.append(row)
    write(args, base_acc, rows)


def write(args, base_acc, rows):
    cfg = ", ".join(f"{k}={v}" for k, v in {**_mcq_config(args), "seed": args.seed}.items())
    lines = ["# CIFAR-10 ResNet-56: uniform vs global vs mcq at 50% FLOPs", "",
             f"Command: `python {' '.join(sys.argv)}`  ",
             f"torch {torch.__version__}, {args.threads} threads (2-core CPU machine); importance `{args.importance}` "
             "for every policy; the search scores plans on 1,000 balanced TRAIN images (seed 0); accuracies are on "
             "all 10,000 test images.", "",
             f"Unpruned test accuracy: **{base_acc:.2%}** (documented 93.39%).", "",
             f"mcq options (CPU-sized; everything else at its default, see `fxprune/policies/mcq_config.py`): {cfg}. "
             "mcq distils the pruned working model from the unpruned one after every step (RL-Pruner's "
             "step-wise KD, 40 steps of 128 images), so its 'right after pruning' model has had that training; "
             "the 'mcq plan, original weights' column isolates its channel allocation.", "",
             f"Equal fine-tune for every policy: `fxprune.finetune` with KD from the unpruned model, {args.ft_epochs} "
             "epoch(s) of the 34,000 remaining training images (train.npz holds 35,000), batch 128, lr 0.01, flip+crop augmentation.", "",
             "| policy | FLOPs kept | params kept | test acc right after pruning | mcq plan, original weights | "
             "test acc after fine-tune | mcq plan, original weights, after fine-tune | "
             "ORT latency ms (unpruned → pruned, speedup) | search s | evaluations | plans/s |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['policy']} | {r['flops']:.3f} | {r['params']:.3f} | {r['acc_pruned']:.2%} | "
            f"{r['acc_plan_orig_weights']:.2%} |" if "acc_plan_orig_weights" in r else
            f"| {r['policy']} | {r['flops']:.3f} | {r['params']:.3f} | {r['acc_pruned']:.2%} | - |")
        lines[-1] += (f" {r['acc_ft']:.2%} | "
                      + (f"{r['acc_ft_plan_orig']:.2%}" if "acc_ft_plan_orig" in r else "-")
                      + f" | {r['lat_orig']:.3f} → {r['lat']:.3f} ({r['speedup']:.2f}x) | "
                      f"{r['search_s']:.1f} | {r.get('evals', '-')} | "
                      + (f"{r['plans_per_s']:.2f}" if r.get("plans_per_s") else "-") + " |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
