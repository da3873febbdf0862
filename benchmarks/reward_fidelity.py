"""Reward fidelity: does the score a search sees right after pruning rank plans the way their
test accuracy after fine-tuning does? With and without adaptive BN (``bn_recalib``).

    python benchmarks/reward_fidelity.py [--plans 24] [--recalib 0,1,2,4,8,16] [--seed 0] [--threads 2]

Each finished plan is appended to ``benchmarks/results/reward_fidelity_rows.jsonl`` (with the
settings it was measured under); a later run with the same settings skips the plans it finds
there, so the benchmark can be stopped and continued (``--fresh`` starts over).

CIFAR-10 ResNet-56 (pretrained, ../shared/data), random plans at 50% FLOPs (random per-group keep
ratios, L1 selection inside each group, default channel rounding). For each plan: the reward-split
accuracy (1,000 balanced TRAIN images, the searches' default) with the original norm statistics
and after re-estimating them on N batches of 64 calibration images (TRAIN, disjoint from the
reward split), for each N; and the CIFAR-10 test accuracy after the same short plain fine-tune
(the fair protocol's recipe, one seed). Spearman's rho between each score and the post-fine-tune
accuracy. Writes benchmarks/results/reward_fidelity.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

import fxprune
from _common import FAIR, FAIR_TEXT, append_row, cifar_resnet56, fair_finetune, random_ratio_plan, read_rows
from fxprune.data import reward_split
from fxprune.importance import class_importance


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--plans", type=int, default=24)
    ap.add_argument("--recalib", default="0,1,2,4,8,16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/reward_fidelity.md")
    ap.add_argument("--rows", default="benchmarks/results/reward_fidelity_rows.jsonl")
    ap.add_argument("--fresh", action="store_true", help="ignore the rows of an earlier run")
    ap.add_argument("--device", default="cpu", help="scoring and fine-tunes there (images resident on it)")
    ap.add_argument("--smoke", action="store_true", help="a quick check of the script (numbers meaningless)")
    args = ap.parse_args(argv)
    if args.smoke:
        FAIR["images"] = 256
    settings = {"recalib": args.recalib, "seed": args.seed, "device": args.device.split(":")[0]}
    rows_path = Path(args.rows)
    if args.fresh and rows_path.exists():
        rows_path.unlink()
    done = {r["plan"]: r for r in read_rows(rows_path) if r.pop("settings") == settings}
    ns = [int(v) for v in args.recalib.split(",")]
    model, test, rest, reward = cifar_resnet56(args.threads)
    dev = None if args.device == "cpu" else torch.device(args.device)
    if args.smoke:
        test = test.subset(np.arange(500))
    test_loader = test.loader(500, device=dev)
    graph = fxprune.analyze(model, (1, 3, 32, 32))
    imp = class_importance(graph, "l1")
    # calibration images: TRAIN images outside the reward split (``rest`` excludes it)
    _, calib_set = reward_split(rest, 64 * max(max(ns), 1), seed=1)
    calib_loader = calib_set.loader(64)
    evs = {n: fxprune.Evaluator(graph, reward, n_samples=1000, batch_size=500, mode="compact", bn_recalib=n,
                                calibration=calib_loader if n else None, device=dev) for n in ns}
    rng = np.random.default_rng(args.seed)
    rows = []
    t0 = time.perf_counter()
    for i in range(args.plans):
        plan = random_ratio_plan(graph, 0.5, rng, imp)  # drawn in order, so plan i is the same every run
        if i in done:
            rows.append(done[i])
            continue
        scores = {n: ev.evaluate(plan).acc for n, ev in evs.items()}
        pruned = fxprune.apply_plan(model, plan, (1, 3, 32, 32)).model
        acc_ft = fair_finetune(pruned, rest, seed=0, test_loader=test_loader, device=dev)
        flops = graph.cost.flops(graph.keep_vector(plan.keep)) / graph.cost.full_flops
        rows.append({"plan": i, "flops": flops, "acc_ft": acc_ft, **{f"r{n}": s for n, s in scores.items()}})
        append_row(rows_path, {**rows[-1], "settings": settings})
        print(f"plan {i}: FLOPs {flops:.3f}, scores {scores}, after fine-tune {acc_ft:.4f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    write(args, ns, rows)


def write(args, ns, rows):
    ft = np.array([r["acc_ft"] for r in rows])
    lines = ["# Reward fidelity: scores right after pruning vs test accuracy after fine-tuning", "",
             f"Command: `python {' '.join(sys.argv)}`  ",
             f"torch {torch.__version__}, device `{args.device}` ({args.threads} CPU threads). CIFAR-10 ResNet-56 (pretrained), {len(rows)} random "
             "plans at 50% FLOPs (random per-group keep ratios in [0.15, 1] rescaled to the budget, L1 selection, "
             "default channel rounding). Score: accuracy on the 1,000-image reward split drawn from TRAIN (compact "
             "evaluation, fp32), with the original BN statistics (N = 0) or after re-estimating them on N "
             "calibration batches of 64 TRAIN images disjoint from the reward split. After fine-tune: " + FAIR_TEXT
             + " (one seed here). Plans measured across runs are kept in `" + args.rows + "`.", "",
             "| bn_recalib N | Spearman rho (score vs after fine-tune) | score range | evaluation cost |",
             "|---:|---:|---|---|"]
    for n in ns:
        s = np.array([r[f"r{n}"] for r in rows])
        rho = spearmanr(s, ft).statistic
        cost = "the reward forward only" if n == 0 else f"+ {n} forward(s) of 64 images"
        lines.append(f"| {n} | **{rho:.3f}** | {s.min():.2%} - {s.max():.2%} | {cost} |")
    rho = {n: spearmanr(np.array([r[f"r{n}"] for r in rows]), ft).statistic for n in ns}
    best = max((n for n in ns if n), key=lambda n: rho[n], default=None)
    if best is not None and 0 in rho:
        ok = rho[best] >= 0.7 and rho[best] > rho[0] + 0.1
        lines += ["", f"Target: rho with recalibration >= 0.7 and clearly above rho without: best N={best} gives "
                  f"{rho[best]:.3f} against {rho[0]:.3f} at N=0 ({'met' if ok else 'NOT met'}); the search default "
                  f"N=8 gives {rho.get(8, float('nan')):.3f}."]
    lines += ["", "| plan | FLOPs kept | after fine-tune | " + " | ".join(f"score N={n}" for n in ns) + " |",
              "|---:|---:|---:|" + "---:|" * len(ns)]
    for r in rows:
        lines.append(f"| {r['plan']} | {r['flops']:.3f} | {r['acc_ft']:.2%} | "
                     + " | ".join(f"{r[f'r{n}']:.2%}" for n in ns) + " |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:14]))


if __name__ == "__main__":
    main()
