"""How fast masked plan evaluation (`fxprune.Evaluator`) scores plans: CIFAR-10 ResNet-56 with
the pretrained weights from ../shared/data, a reward subset drawn from the TRAIN split.

    python benchmarks/evaluate_throughput.py [--n 1000] [--plans 10] [--batch 250] [--threads 2]

Both evaluation precisions are measured (fp32, and bf16 autocast), plans interleaved.

Also checks the model first: the test accuracy of the unpruned network on all 10,000 test images
(documented: 93.39%). Writes benchmarks/results/evaluate_throughput.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import fxprune
from _common import cifar_resnet56
from fxprune.finetune import accuracy
from fxprune.testing import random_plan


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--plans", type=int, default=10)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/evaluate_throughput.md")
    args = ap.parse_args(argv)
    model, test, _, reward = cifar_resnet56(args.threads, args.n)
    t = time.perf_counter()
    test_acc = accuracy(model, test.loader(args.batch))
    t_test = time.perf_counter() - t
    graph = fxprune.analyze(model, (1, 3, 32, 32))
    evs = {p: fxprune.Evaluator(graph, reward.loader(args.batch), n_samples=args.n, batch_size=args.batch,
                                precision=p) for p in ("fp32", "bf16")}
    full = {p: ev.evaluate({}) for p, ev in evs.items()}  # also warms up each
    rows: dict[str, list] = {p: [] for p in evs}
    for s in range(args.plans):
        plan = random_plan(graph, seed=s, drop=0.3)
        for p, ev in evs.items():
            rows[p].append(ev.evaluate(plan))
    gmac = graph.cost.full_flops * args.n / 1e9
    lines = ["# fxprune: masked plan evaluation throughput", "",
             f"Command: `python {' '.join(sys.argv)}`  ",
             f"torch {torch.__version__}, {args.threads} threads, CIFAR-10 ResNet-56 (pretrained, ../shared/data).", "",
             f"- Unpruned test accuracy, all 10,000 test images: **{test_acc:.2%}** (documented 93.39%); "
             f"{10000 / t_test:.0f} images/s.",
             f"- Reward subset: {args.n} images from the train split (balanced, seed 0), batch {args.batch}. "
             f"A masked plan runs the full network: {gmac:.0f} GMAC per plan.",
             f"- {args.plans} random plans (30% of each prunable group dropped, FLOPs ratio "
             f"{rows['fp32'][0].flops_ratio:.3f}), the two precisions interleaved:", "",
             "| precision | median s per plan | plans/s | images/s | GMAC/s | unpruned reward acc | "
             "reward acc range | max abs acc diff to fp32 |",
             "|---|---:|---:|---:|---:|---:|---|---:|"]
    for p, ms in rows.items():
        sec = float(np.median([m.seconds for m in ms]))
        diff = max(abs(m.acc - r.acc) for m, r in zip(ms, rows["fp32"]))
        lines.append(f"| {p} | {sec:.3f} | **{1 / sec:.2f}** | {args.n / sec:.0f} | {gmac / sec:.0f} | "
                     f"{full[p].acc:.2%} | {min(m.acc for m in ms):.2%}-{max(m.acc for m in ms):.2%} | {diff:.2%} |")
    lines.append("")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
