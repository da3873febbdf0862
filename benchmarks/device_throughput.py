"""Plan evaluation on one accelerator (the GPU rows of ``scale_out.md``): plans/s of
``fxprune.Evaluator`` for CIFAR-10 ResNet-56 (pretrained, the searches' reward set: 1,000 TRAIN
images) and for a torchvision ResNet-50 on a reward set of random 224x224 images scored with the
label-free ``distill`` metric (agreement with the unpruned network's outputs).

    python benchmarks/device_throughput.py [--device cuda] [--plans 16] [--out benchmarks/results/device_throughput.md]

Configurations: the searches' default (compact, fp32, ``bn_recalib`` 8 batches of 64), and the
same without recalibration, masked, and bf16. Plans: 50% FLOPs, random per-group ratios with L1
selection (the first is the ``global`` plan); each configuration scores every plan through
``evaluate_many`` (one batch, as a search submits it) after one warm-up batch; the time is the
wall time of that batch (the device synchronised), so per-plan overheads (building the compact
network, recalibration) are included.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

import fxprune
from _common import cifar_resnet56, random_ratio_plan
from fxprune.data import reward_split
from fxprune.importance import class_importance

CONFIGS = [("compact", "fp32", 8), ("compact", "fp32", 0), ("masked", "fp32", 8), ("compact", "bf16", 8)]


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def measure(graph, reward, calib, dev, plans, n, batch) -> list[dict]:
    out = []
    for mode, prec, rec in CONFIGS:
        ev = fxprune.Evaluator(graph, reward, n_samples=n, batch_size=batch, mode=mode, precision=prec,
                               bn_recalib=rec, calibration=calib if rec else None, device=dev)
        ev.evaluate_many(plans[:2])  # warm-up (kernels, allocator)
        sync(dev)
        t = time.perf_counter()
        ms = ev.evaluate_many(plans)
        sync(dev)
        wall = time.perf_counter() - t
        out.append({"mode": mode, "precision": prec, "bn_recalib": rec, "plans": len(plans), "wall_s": wall,
                    "plans_per_s": len(plans) / wall, "metric": ev.metric,
                    "score": f"{min(m.acc for m in ms):.3f}-{max(m.acc for m in ms):.3f}",
                    "gmac": float(np.mean([m.flops for m in ms])) * n / 1e9})
        print(out[-1], flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--plans", type=int, default=16)
    ap.add_argument("--n", type=int, default=1000, help="reward images")
    ap.add_argument("--r50-batch", type=int, default=250)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--out", default="benchmarks/results/device_throughput.md")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    side, n_cal = 224, 64
    if args.smoke:
        args.plans, args.n, args.r50_batch, side, n_cal = 3, 128, 32, 64, 8
    rng = np.random.default_rng(0)
    # ResNet-56, the searches' reward set
    model, _, rest, reward = cifar_resnet56(args.threads, args.n)
    _, calib_set = reward_split(rest, 64 * 8, seed=1)
    g56 = fxprune.analyze(model, (1, 3, 32, 32))
    imp = class_importance(g56, "l1")
    glob = fxprune.prune(model, 0.5, example_inputs=(1, 3, 32, 32), importance="l1", progress=False).plan
    plans = [glob] + [random_ratio_plan(g56, 0.5, rng, imp) for _ in range(args.plans - 1)]
    r56 = measure(g56, reward, calib_set.loader(64), dev, plans, args.n, 500)
    # ResNet-50 on random images, label-free
    torch.manual_seed(0)
    m50 = torchvision.models.resnet50(weights=None).eval()
    g50 = fxprune.analyze(m50, (1, 3, side, side))
    imp50 = class_importance(g50, "l1")
    gen = torch.Generator().manual_seed(1)
    images = [torch.randn(args.r50_batch, 3, side, side, generator=gen) for _ in range(max(1, args.n // args.r50_batch))]
    calib50 = [torch.randn(n_cal, 3, side, side, generator=gen) for _ in range(8)]
    plans50 = [random_ratio_plan(g50, 0.5, rng, imp50) for _ in range(args.plans)]
    r50 = measure(g50, images, calib50, dev, plans50, sum(x.shape[0] for x in images), args.r50_batch)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    lines = ["# Plan evaluation on one accelerator", "",
             f"Command: `python {' '.join(sys.argv)}`  ",
             f"torch {torch.__version__}, device {name}; {args.plans} plans at 50% FLOPs (random per-group ratios, "
             "L1 selection; for ResNet-56 the first is the `global` plan), scored in one `evaluate_many` batch after "
             "a warm-up batch; wall time with the device synchronised. Recalibration: 8 batches of 64 images.", ""]
    for title, rows, n in ((f"CIFAR-10 ResNet-56 (pretrained), {args.n} TRAIN images, accuracy", r56, args.n),
                           (f"torchvision ResNet-50 (random init), {sum(x.shape[0] for x in images)} random {side}x{side} "
                            "images, `distill` metric", r50, sum(x.shape[0] for x in images))):
        lines += [f"## {title}", "", "| mode | precision | bn_recalib | plans/s | s per plan | pruned GMAC per plan "
                  "| scores |", "|---|---|---:|---:|---:|---:|---|"]
        for r in rows:
            lines.append(f"| {r['mode']} | {r['precision']} | {r['bn_recalib']} | **{r['plans_per_s']:.1f}** | "
                         f"{r['wall_s'] / r['plans']:.3f} | {r['gmac']:.0f} | {r['score']} |")
        lines.append("")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
