"""Reward fidelity among *good* plans: how well do the search scores rank plans whose accuracies
after the fair fine-tune lie close together (the plans a search has to choose between at its end)?

    python benchmarks/reward_fidelity_narrow.py [--probes 0,25@0.02,50@0.005,50@0.01] [--threads 2]

The plans are those of the CPU ResNet-56 table (``benchmarks/results/cifar10_resnet56_cpu_rows.jsonl``):
every row with per-group keep ratios and a fine-tune of the plan on the original weights (global,
random search, mcq; ppo's rows chose channels with their own masks and are left out), rebuilt
from their ratios with L1 selection inside each group (how those policies select channels). Each
plan is scored by the searches' evaluator (1,000-image reward split, 8 batches of BN
recalibration, compact) without a probe and with each ``K@LR`` training probe (K steps, peak lr
LR: the ``reward_train_steps`` / ``reward_train_lr`` options); Spearman's rho of each score with the
row's mean accuracy after the fair fine-tune (3 seeds). Writes
benchmarks/results/reward_fidelity_narrow.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import cifar_resnet56, read_rows
from scipy.stats import spearmanr

import fxprune
from fxprune.data import reward_split
from fxprune.importance import class_importance
from fxprune.policies.allocation import Allocation


def plans_of_table(graph, rows_path: Path):
    """(name, mean fine-tuned accuracy, keep vector) of every table row that fixes a plan by its
    per-group ratios on the original weights."""
    imp = class_importance(graph, "l1")
    alloc = Allocation(graph, fxprune.Budget(flops=0.5), imp, 1)
    rows = read_rows(rows_path)
    on_original = {r["name"].removesuffix(": its plan, original weights"): r for r in rows
                   if r["name"].endswith(": its plan, original weights")}
    out = []
    for r in rows:
        if "kept" not in r or r["policy"].startswith("ppo") or "long_epochs" in r:
            continue
        ft = on_original.get(r["name"], r)["ft"]  # a distilled search's plan: its fine-tune on the original weights
        counts = np.array([round(r["kept"].get(str(g.id), 1.0) * g.size) for g in graph.groups])
        out.append((r["name"], float(np.mean(ft)), alloc.keep_vector(counts)))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--probes", default="0,25@0.02,50@0.005,50@0.01",
                    help="comma list: 0 (no probe) or STEPS@PEAK_LR")
    ap.add_argument("--rows", default="benchmarks/results/cifar10_resnet56_cpu_rows.jsonl")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/reward_fidelity_narrow.md")
    args = ap.parse_args(argv)
    model, _, rest, reward = cifar_resnet56(args.threads)
    graph = fxprune.analyze(model, (1, 3, 32, 32))
    plans = plans_of_table(graph, Path(args.rows))
    if len(plans) < 3:
        sys.exit(f"fewer than 3 plans in {args.rows}")
    _, calib_set = reward_split(rest, 64 * 8, seed=1)
    calib = calib_set.loader(64)
    train = rest.loader(64, shuffle=True, seed=2)
    settings = []
    for p in args.probes.split(","):
        k, _, lr = p.partition("@")
        settings.append((int(k), float(lr) if lr else 0.02))
    scores = {s: [] for s in settings}
    secs = {s: 0.0 for s in settings}
    for k, lr in settings:
        ev = fxprune.Evaluator(graph, reward, n_samples=1000, batch_size=500, mode="compact", bn_recalib=8,
                               calibration=calib, score="likelihood", train_steps=k,
                               train_data=train if k else None, train_lr=lr)
        for name, _, keep in plans:
            m = ev.evaluate(keep)
            scores[(k, lr)].append((m.score, m.acc))
            secs[(k, lr)] += m.seconds
        print(f"probe {k}@{lr:g}: done ({secs[(k, lr)]:.0f} s)", flush=True)
    ft = np.array([p[1] for p in plans])
    label = {s: ("no probe" if s[0] == 0 else f"{s[0]} steps, peak lr {s[1]:g}") for s in settings}
    lines = ["# Reward fidelity among good plans (ResNet-56, 50% FLOPs)", "",
             f"Command: `python {' '.join(sys.argv)}`  ",
             f"torch {torch.__version__}, CPU ({args.threads} threads). {len(plans)} plans of `{args.rows}` (global, "
             "random search, mcq; rebuilt from their per-group ratios with L1 selection), scored by the searches' "
             "evaluator: 1,000-image reward split (TRAIN), 8 batches of BN recalibration, compact, then the probe "
             "(`reward_train_steps=K`, `reward_train_lr`: K SGD steps of 64 TRAIN images outside the reward "
             "split, 30% warm-up to the peak lr, cosine towards 0). Reference: the row's mean test accuracy after "
             "the fair fine-tune (3 seeds).", "",
             "| score | Spearman rho, likelihood | Spearman rho, accuracy | s per plan |", "|---|---:|---:|---:|"]
    for s in settings:
        lik = spearmanr([a for a, _ in scores[s]], ft).statistic
        acc = spearmanr([b for _, b in scores[s]], ft).statistic
        lines.append(f"| {label[s]} | **{lik:.3f}** | {acc:.3f} | {secs[s] / len(plans):.1f} |")
    lines += ["", "| plan | after the fair fine-tune | " + " | ".join(f"likelihood, {label[s]}" for s in settings) + " |",
              "|---|---:|" + "---:|" * len(settings)]
    for i, (name, acc_ft, _) in enumerate(plans):
        lines.append(f"| {name} | {acc_ft:.2%} | " + " | ".join(f"{scores[s][i][0]:.4f}" for s in settings) + " |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
