"""How fast `fxprune.Evaluator` scores plans: masked vs compact, fp32 vs bf16, with and without
BN recalibration; CIFAR-10 ResNet-56 (pretrained, ../shared/data), the 1,000-image reward subset
drawn from TRAIN, plans at 50% FLOPs.

    python benchmarks/evaluate_throughput.py [--n 1000] [--plans 8] [--batch 500] [--recalib 8] [--threads 2]

The configurations are interleaved plan by plan, so drifts in machine speed hit them alike. The
CPU's matrix-multiply peak is measured in the same run (bf16 and fp32, large square matmuls), and
each configuration's useful GMAC/s (the MACs of the network it runs per plan: the whole network
when masked, the pruned one when compact) is given as a fraction of the peak of its precision. Also checks the
model first: the test accuracy of the unpruned network on all 10,000 test images (documented:
93.39%). Writes benchmarks/results/evaluate_throughput.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import fxprune
from _common import cifar_resnet56, random_ratio_plan
from fxprune.data import reward_split
from fxprune.finetune import accuracy
from fxprune.importance import class_importance


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 8) -> float:
    """GMAC/s of an n x n x n matmul in ``dtype`` (best of ``reps`` after a warm-up)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return n ** 3 / best / 1e9


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--plans", type=int, default=8)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--recalib", type=int, default=8, help="calibration batches of 64 (the search default)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/evaluate_throughput.md")
    args = ap.parse_args(argv)
    model, test, rest, reward = cifar_resnet56(args.threads, args.n)
    t = time.perf_counter()
    test_acc = accuracy(model, test.loader(args.batch))
    t_test = time.perf_counter() - t
    graph = fxprune.analyze(model, (1, 3, 32, 32))
    _, calib = reward_split(rest, 64 * args.recalib, seed=1)
    configs = [(mode, prec, n) for mode in ("masked", "compact") for prec in ("fp32", "bf16") for n in (0, args.recalib)]
    evs = {c: fxprune.Evaluator(graph, reward, n_samples=args.n, batch_size=args.batch, mode=c[0], precision=c[1],
                                bn_recalib=c[2], calibration=calib.loader(64) if c[2] else None) for c in configs}
    imp = class_importance(graph, "l1")
    rng = np.random.default_rng(0)
    glob = fxprune.prune(model, 0.5, example_inputs=(1, 3, 32, 32), importance="l1", progress=False).plan
    plans = [glob] + [random_ratio_plan(graph, 0.5, rng, imp) for _ in range(args.plans - 1)]
    for ev in evs.values():
        ev.evaluate(plans[0])  # warm-up
    res = {c: [] for c in configs}
    for plan in plans:
        for c, ev in evs.items():
            res[c].append(ev.evaluate(plan))
    peak16, peak32 = matmul_peak(torch.bfloat16), matmul_peak(torch.float32)
    full_gmac = graph.cost.full_flops * args.n / 1e9
    lines = ["# fxprune: plan evaluation throughput", "",
             f"Command: `python {' '.join(sys.argv)}`  ",
             f"torch {torch.__version__}, {args.threads} threads, CIFAR-10 ResNet-56 (pretrained, ../shared/data).", "",
             f"- Unpruned test accuracy, all 10,000 test images: **{test_acc:.2%}** (documented 93.39%); "
             f"{10000 / t_test:.0f} images/s.",
             f"- Reward subset: {args.n} TRAIN images (balanced, seed 0), batch {args.batch}; {len(plans)} plans at 50% "
             f"FLOPs (the `global` plan and random per-group ratios), configurations interleaved plan by plan. "
             f"Recalibration: {args.recalib} batches of 64 TRAIN images outside the reward split.",
             f"- Matmul peak measured in this run (2048³): bf16 **{peak16:.1f} GMAC/s**, fp32 {peak32:.1f} GMAC/s. "
             f"A masked plan runs the whole network ({full_gmac:.0f} GMAC per plan on the reward subset); a compact "
             "plan runs the pruned one.", "",
             "| mode | precision | bn_recalib | median s per plan | plans/s | useful GMAC/s | of its precision's peak | "
             "reward acc range |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for c in configs:
        ms = res[c]
        sec = float(np.median([m.seconds for m in ms]))
        gmac = full_gmac if c[0] == "masked" else float(np.mean([m.flops for m in ms])) * args.n / 1e9
        gmac += graph.cost.full_flops * 64 * c[2] / 1e9 * (1 if c[0] == "masked" else 0.5)
        peak = peak16 if c[1] == "bf16" else peak32
        frac = f"{gmac / sec / peak:.2f}" if peak >= 1.0 else "n/a (peak < 1 GMAC/s)"
        lines.append(f"| {c[0]} | {c[1]} | {c[2]} | {sec:.3f} | **{1 / sec:.2f}** | {gmac / sec:.0f} | {frac} |"
                     f" {min(m.acc for m in ms):.2%}-{max(m.acc for m in ms):.2%} |")
    lines.append("")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
