"""Zoo benchmark: analyze/prune time, groups and FLOPs/params at 50% FLOPs for every torchvision
model, side by side with torch-pruning's dependency-graph build where it runs.

    python benchmarks/zoo.py [--size 224] [--models resnet50 ...] [--out benchmarks/results/zoo.md]

torch-pruning is a benchmark-only install (``pip install torch-pruning``), never a dependency.
Timings are wall-clock medians of ``--runs`` (5) runs after one warm-up each, fxprune's analyze and
the peer's build alternating (prune: one run, except ResNet-50), on whatever machine runs this
script; run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import warnings

import torch
import torchvision
from torchvision.models import get_model, list_models

import fxprune
from _common import have_torch_pruning

warnings.filterwarnings("ignore")


def _median(fn, n=3):
    ts = []
    for _ in range(n):
        gc.collect()  # every timed call starts from a collected heap: no one pays for another's garbage
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), out


def _build(name, size):
    kw = {"image_size": size} if name.startswith("vit") and size % int(name.rsplit("_", 1)[1]) == 0 else {}
    if name.startswith("vit") and not kw:
        size = 224
    return get_model(name, weights=None, **kw).eval(), torch.randn(1, 3, size, size)


def _tp_build(model, x):
    import torch_pruning as tp

    return tp.DependencyGraph().build_dependency(model, example_inputs=x)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--out", default="benchmarks/results/zoo.md")
    ap.add_argument("--runs", type=int, default=5, help="interleaved analyze / peer-build runs per model")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    have_tp = have_torch_pruning()
    rows = []
    for name in args.models or list_models(module=torchvision.models):
        model, x = _build(name, 299 if name.startswith("inception") else args.size)
        fxprune.analyze(model, x)  # warm-up, like the peer's first build below
        tp_t, tp_ok = float("nan"), "not installed"
        if have_tp:
            try:
                _tp_build(model, x)
                tp_ok = "ok"
            except Exception as exc:  # noqa: BLE001 - record the peer's failure
                tp_ok = f"failed: {type(exc).__name__}"
        # analyze and the peer's build alternate, so drifts in machine speed hit both alike
        t_an, t_tp = [], []
        for _ in range(args.runs):
            t, graph = _median(lambda: fxprune.analyze(model, x), n=1)
            t_an.append(t)
            if tp_ok == "ok":
                t_tp.append(_median(lambda: _tp_build(model, x), n=1)[0])
        t_an = statistics.median(t_an)
        tp_t = statistics.median(t_tp) if t_tp else tp_t
        t_pr, res = _median(lambda: fxprune.prune(model, 0.5, example_inputs=x, progress=False),
                            n=3 if name == "resnet50" else 1)
        r = res.report
        rows.append((name, t_an, t_pr, len(graph.prunable_groups), len(graph.pinned_groups),
                     r.flops_before / 1e9, r.flops_after / 1e9, r.params_before / 1e6, r.params_after / 1e6,
                     tp_t, tp_ok))
        del model, graph, res
        gc.collect()
        print(f"{name:22s} analyze {t_an:.3f}s prune {t_pr:.3f}s tp {tp_t:.3f}s {tp_ok}", flush=True)
    lines = ["# fxprune zoo benchmark", "",
             f"Command: `python {' '.join(sys.argv)}`  ",
             f"torch {torch.__version__}, torchvision {torchvision.__version__}, {torch.get_num_threads()} threads, "
             f"input 1x3x{args.size}x{args.size} (inception 299). Times: median of {args.runs} runs, analyze and the "
             "peer's graph build interleaved, each model's first (warm-up) build not counted (prune: 1 run, ResNet-50: 3). "
             "`prune` = analyze + importance + global policy + surgery at 50% FLOPs. "
             "FLOPs are multiply-accumulates counted by fxprune's cost model (conv, linear, matmul).", "",
             "| model | analyze s | prune s | prunable | pinned | GFLOPs before | after | Mparams before | after | torch-pruning graph s | torch-pruning | speed-up |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    faster = 0
    for (name, ta, tpr, npr, npi, fb, fa, pb, pa, tt, tok) in rows:
        sp = tt / ta if tok == "ok" else float("nan")
        faster += sp >= 3
        lines.append(f"| {name} | {ta:.3f} | {tpr:.3f} | {npr} | {npi} | {fb:.3f} | {fa:.3f} | {pb:.2f} | {pa:.2f} | "
                     f"{tt:.3f} | {tok} | {sp:.1f}x |")
    ok = sum(1 for r in rows if r[-1] == "ok")
    lines += ["", f"Graph build at least 3x faster than torch-pruning's on {faster} of {ok} models where it ran "
              f"({len(rows) - ok} where it did not)."]
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(lines[-1])


if __name__ == "__main__":
    main()
