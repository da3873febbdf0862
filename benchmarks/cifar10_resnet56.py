"""CIFAR-10 ResNet-56 (pretrained, ../shared/data) pruned to 50% FLOPs by the baselines and the
search policies, every row then given the *same plain fine-tune* (the fair protocol).

    python benchmarks/cifar10_resnet56.py [--policies uniform,global,mcq] [--mcq global:8,size:8,global:0]
                                          [--seeds 0,1,2] [--threads 2] [--round-to 1]

``--mcq INIT:N,...``: mcq runs, each with its initial distribution and ``bn_recalib`` N (0: scores with
the original BN statistics). Every row reports the test accuracy right after pruning, after the fair
fine-tune (mean ± std over the fine-tune seeds; all 10,000 test images, final step), FLOPs and params
kept, ONNX Runtime latency (1 thread, batch 1, interleaved with the unpruned model), search wall
time and evaluations. A search that trains (mcq's step-wise distillation) keeps that only in its
weights: its plan on the *original* weights gets the same fine-tune in a row of its own, which
isolates the allocation. Searches score plans on 1,000 balanced TRAIN images; no search or
selection sees the test split. Writes benchmarks/results/cifar10_resnet56.md.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import fxprune
from _common import FAIR_TEXT, cifar_resnet56, fair_finetune, mean_std
from fxprune.finetune import accuracy
from fxprune.search import DataSplits

MCQ_CPU = {"samples": 10, "rounds": 2, "depth": 1, "step_ratio": 0.05, "kd_max_steps": 40, "batch_size": 500,
           "precision": "bf16"}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("--policies", default="uniform,global,mcq")
    ap.add_argument("--mcq", default="global:8,size:8,global:0,size:0", help="INIT:BN_RECALIB runs of mcq")
    ap.add_argument("--seeds", default="0,1,2", help="fine-tune seeds of the fair protocol")
    ap.add_argument("--search-seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--importance", default="l1")
    ap.add_argument("--round-to", default="1", help="channel rounding for every policy (1: none, or 'auto')")
    ap.add_argument("--out", default="benchmarks/results/cifar10_resnet56.md")
    args = ap.parse_args(argv)
    round_to = args.round_to if args.round_to == "auto" else int(args.round_to)
    seeds = [int(s) for s in args.seeds.split(",")]
    model, test, rest, reward = cifar_resnet56(args.threads)
    test_loader = test.loader(500)
    base_acc = accuracy(model, test_loader)
    print(f"unpruned test accuracy {base_acc:.4f}", flush=True)
    ex = torch.randn(1, 3, 32, 32)
    tmp = Path(tempfile.mkdtemp())
    fxprune.export_onnx(model, tmp / "orig.onnx", ex)
    runs = []
    for policy in args.policies.split(","):
        if policy == "mcq":
            runs += [("mcq", *v.split(":")) for v in args.mcq.split(",")]
        else:
            runs.append((policy, None, None))
    rows = []
    for policy, init, n in runs:
        kw = {}
        name = policy
        if policy == "mcq":
            cfg = {**MCQ_CPU, "init": init, "bn_recalib": int(n)}
            kw = {"data": DataSplits(train=rest.loader(128, shuffle=True, augment=True, seed=0), reward=reward),
                  "policy_config": cfg, "resume": False, "seed": args.search_seed}
            name = f"mcq (init {init}, bn_recalib {n})"
        t = time.perf_counter()
        res = fxprune.prune(model, args.budget, example_inputs=ex, policy=policy, importance=args.importance,
                            round_to=round_to, progress=False, **kw)
        row = {"name": name, "flops": res.report.flops_ratio, "params": res.report.params_ratio,
               "search_s": time.perf_counter() - t, "acc_pruned": accuracy(res.model, test_loader)}
        if res.search:
            row["evals"] = res.search["evaluations"]
            row["plans_per_s"] = res.search["info"].get("plans_per_second")
        row["ft"] = [fair_finetune(res.model, rest, s, test_loader) for s in seeds]
        fxprune.export_onnx(res.model, tmp / "m.onnx", ex)
        cmp = fxprune.compare_latency(tmp / "orig.onnx", tmp / "m.onnx", threads=1, runs=300, warmup=30)
        row["lat_orig"], row["lat"], row["speedup"] = cmp.a.median_ms, cmp.b.median_ms, cmp.speedup
        print(row, flush=True)
        rows.append(row)
        if res.search and res.search["info"].get("trained"):  # the allocation alone, on the original weights
            alone = fxprune.apply_plan(model, res.plan, ex).model
            r2 = {"name": f"{name}: its plan, original weights", "flops": row["flops"], "params": row["params"],
                  "acc_pruned": accuracy(alone, test_loader),
                  "ft": [fair_finetune(alone, rest, s, test_loader) for s in seeds]}
            print(r2, flush=True)
            rows.append(r2)
        write(args, base_acc, rows, seeds)


def write(args, base_acc, rows, seeds):
    lines = ["# CIFAR-10 ResNet-56: policies at 50% FLOPs under the fair fine-tune protocol", "",
             f"Command: `python {' '.join(sys.argv)}`  ",
             f"torch {torch.__version__}, {args.threads} threads (2-core CPU machine); importance `{args.importance}` "
             f"and channel rounding `round_to={args.round_to}` for every policy; searches score plans on 1,000 "
             "balanced TRAIN images (seed 0); accuracies are on all 10,000 test images.", "",
             f"Unpruned test accuracy: **{base_acc:.2%}** (documented 93.39%).", "",
             "mcq options (CPU-sized; the rest at their defaults, `fxprune/policies/mcq_config.py`): "
             + ", ".join(f"{k}={v}" for k, v in MCQ_CPU.items()) + f", seed {args.search_seed}; compact evaluation "
             "(the default). mcq distils its working model between steps (RL-Pruner), so its own weights have had "
             "that training; the '… its plan, original weights' rows isolate its channel allocation.", "",
             f"Fair protocol, the same for every row ({len(seeds)} fine-tune seeds {seeds}): {FAIR_TEXT}.", "",
             "| row | FLOPs kept | params kept | test acc right after pruning | after the fair fine-tune | "
             "ORT latency ms (unpruned → pruned) | search s | evaluations | plans/s |",
             "|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        lat = f"{r['lat_orig']:.3f} → {r['lat']:.3f} ({r['speedup']:.2f}x)" if "lat" in r else "-"
        search = f"{r['search_s']:.1f}" if "search_s" in r else "-"
        pps = f"{r['plans_per_s']:.2f}" if r.get("plans_per_s") else "-"
        lines.append(f"| {r['name']} | {r['flops']:.3f} | {r['params']:.3f} | {r['acc_pruned']:.2%} | "
                     f"**{mean_std(r['ft'])}** | {lat} | {search} | {r.get('evals', '-')} | {pps} |")
    lines += ["", "Per seed: " + "; ".join(f"{r['name']}: " + ", ".join(f"{a:.2%}" for a in r["ft"]) for r in rows)]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
