"""Where `fxprune.analyze` spends its time, phase by phase, next to torch-pruning's graph build.

    python benchmarks/analyze_breakdown.py [--models resnet18 resnet50 ...]

Phases: symbolic trace (torch.fx), GraphModule construction, shape propagation (kernel-free), op
rules, groups + cost model (DepGraph). Each is the minimum over 5 repetitions, 224 px, 2 threads.
Writes benchmarks/results/analyze_breakdown.md.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings

import torch
from torchvision.models import get_model

from _common import have_torch_pruning
from fxprune.ir.analyze import run_rules
from fxprune.ir.depgraph import DepGraph
from fxprune.ir.trace import _GraphModule, _Tracer, propagate_shapes

warnings.filterwarnings("ignore")


def phases(model, x):
    t = [time.perf_counter()]
    tracer = _Tracer(set())
    graph = tracer.trace(model)
    t.append(time.perf_counter())
    gm = _GraphModule(tracer.root, graph, type(model).__name__)
    t.append(time.perf_counter())
    propagate_shapes(gm, (x,))
    t.append(time.perf_counter())
    ctx = run_rules(gm, {})
    t.append(time.perf_counter())
    DepGraph(gm, ctx, [tuple(x.shape)], {})
    t.append(time.perf_counter())
    return [b - a for a, b in zip(t, t[1:])]


def tp_build(model, x):
    import torch_pruning as tp

    t = time.perf_counter()
    tp.DependencyGraph().build_dependency(model, example_inputs=x)
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="*", default=["resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0",
                                                     "densenet121", "convnext_tiny", "vgg16_bn"])
    ap.add_argument("--out", default="benchmarks/results/analyze_breakdown.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    have_tp = have_torch_pruning()
    lines = ["# fxprune analyze: time per phase", "", f"Command: `python {' '.join(sys.argv)}`  ",
             "Milliseconds, minimum of 5 repetitions, input 1x3x224x224, 2 threads.", "",
             "| model | trace | GraphModule | shapes | op rules | groups + cost | total | torch-pruning build |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in args.models:
        model, x = get_model(name, weights=None).eval(), torch.randn(1, 3, 224, 224)
        best = [min(v) for v in zip(*(phases(model, x) for _ in range(5)))]
        tp_ms = min(tp_build(model, x) for _ in range(5)) * 1e3 if have_tp else float("nan")
        cells = " | ".join(f"{b * 1e3:.1f}" for b in best)
        lines.append(f"| {name} | {cells} | {sum(best) * 1e3:.1f} | {tp_ms:.1f} |")
        print(lines[-1], flush=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
