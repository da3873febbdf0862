"""Zoo benchmark: analyze/prune time, groups and FLOPs/params at 50% FLOPs for every torchvision
model, side by side with torch-pruning's dependency-graph build where it runs; and, with
``--section``, the timm CNN set, the non-classification torchvision models (detectors,
segmentation, video, optical flow) and the random-architecture oracle (``zoo_sections.py``).

    python benchmarks/zoo.py [--size 224] [--models resnet50 ...] [--out benchmarks/results/zoo.md]
    python benchmarks/zoo.py --section timm     # -> benchmarks/results/zoo_timm.md
    python benchmarks/zoo.py --section other    # -> benchmarks/results/zoo_other.md (+ random architectures)

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
from pathlib import Path

import torch
import torchvision
from torchvision.models import get_model, list_models

import fxprune
from _common import have_torch_pruning
from zoo_sections import TP_RATIO

TP_RATIO_TEXT = f"ratio {TP_RATIO}"

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


def _timm_section(args, have_tp):
    from zoo_sections import fmt_g, timm_rows

    rows = timm_rows(args.models, have_tp, print)
    ok = sum(r["ok"] for r in rows)
    tp_ok = sum(1 for r in rows if r.get("tp") == "ok")
    lines = ["# fxprune zoo benchmark: timm CNNs", "", f"Command: `python {' '.join(sys.argv)}`  ",
             f"torch {torch.__version__}, timm {__import__('timm').__version__}, {torch.get_num_threads()} threads. "
             "Each model built with `pretrained=False` at the input size in `fxprune.zoo.TIMM_CNNS`, pruned with "
             "`fxprune.prune(model, 0.5)` (defaults: global policy, L2, round_to='auto'), exported with "
             "`fxprune.export_onnx` (onnx.checker + ONNX Runtime parity on 2 inputs). Torch-Pruning: "
             f"`MetaPruner` with magnitude importance at {TP_RATIO_TEXT} per layer, last layer ignored; 'ok' when "
             "the pruned model runs with the original output shape. GFLOPs are fxprune's MACs.", "",
             "| model | input | analyze s | prune s | prunable | pinned | main pinned reasons | GFLOPs before | after | "
             "ratio | Mparams before | after | ONNX | Torch-Pruning | TP FLOPs ratio |",
             "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['size']} | | | | | {r['error']} | | | | | | failed | | |")
            continue
        lines.append(f"| {r['model']} | {r['size']} | {r['analyze_s']:.3f} | {r['prune_s']:.3f} | {r['prunable']} | "
                     f"{r['pinned']} | {r['why']} | {fmt_g(r['fb'])} | {fmt_g(r['fa'])} | {r['ratio']:.3f} | "
                     f"{r['pb'] / 1e6:.2f} | {r['pa'] / 1e6:.2f} | {r['onnx']} | {r.get('tp', 'not run')} | "
                     f"{r.get('tp_ratio', float('nan')):.3f} |")
    lines += ["", f"Pruned to 50% FLOPs (within 1%) and exported with ONNX Runtime parity: **{ok} of {len(rows)}** "
              f"({100 * ok / max(len(rows), 1):.0f}%). Torch-Pruning ran on {tp_ok} of {len(rows)}."]
    Path(args.out or "benchmarks/results/zoo_timm.md").write_text("\n".join(lines) + "\n")
    print(lines[-1])


def _other_section(args):
    from zoo_sections import fmt_g, other_rows, random_rows

    rows = other_rows(args.models, print)
    exact, n, fails = random_rows(args.random, print)
    det = [r for r in rows if "rcnn" in r["model"] or r["model"].startswith(("retina", "fcos", "ssd"))]
    lines = ["# fxprune zoo benchmark: detection, segmentation, video and optical flow", "",
             f"Command: `python {' '.join(sys.argv)}`  ",
             f"torch {torch.__version__}, torchvision {torchvision.__version__}, {torch.get_num_threads()} threads. "
             "Detectors: one 320x320 image (`example_inputs=([img],)`), at most 10 detections per image; "
             "segmentation 224x224; video 8x112x112 (MViT, S3D 16x224x224); flow two 224x224 frames. "
             "Budget: 50% of the FLOPs (Swin3D and RAFT 60%: their attention / correlation cost is outside any "
             "channel group). A model whose forward is not traceable is pruned inside its traceable parts "
             "(column 'pruned inside'); FLOPs and the budget count those parts, and 'whole model' gives "
             "torch.utils.flop_counter's MACs of the whole forward (data-dependent for detectors: their heads run "
             "on as many proposals as the scores give).", "",
             "| model | budget | prune s | pruned inside | prunable | pinned | main pinned reasons | GFLOPs before | "
             "after | ratio | whole model GMACs before | after | Mparams before | after |",
             "|---|---:|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['budget']} | | failed | | | {r['error']} | | | | | | | |")
            continue
        lines.append(f"| {r['model']} | {r['budget']} | {r['prune_s']:.2f} | {r['regions']} | {r['prunable']} | "
                     f"{r['pinned']} | {r['why']} | {fmt_g(r['fb'])} | {fmt_g(r['fa'])} | {r['ratio']:.3f} | "
                     f"{fmt_g(r['wb'])} | {fmt_g(r['wa'])} | {r['pb'] / 1e6:.2f} | {r['pa'] / 1e6:.2f} |")
    lines += ["", f"Detectors pruned as whole models: **{sum(r['ok'] for r in det)} of {len(det)}**; all models: "
              f"{sum(r['ok'] for r in rows)} of {len(rows)}.", "",
              f"Random architectures (the grammar of `tests/ir/test_random_arch.py`, {n} seeded draws): "
              f"**{exact} of {n} dead-channel exact**, {fails} failed."]
    Path(args.out or "benchmarks/results/zoo_other.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-3:]))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--runs", type=int, default=5, help="interleaved analyze / peer-build runs per model")
    ap.add_argument("--section", choices=["torchvision", "timm", "other"], default="torchvision")
    ap.add_argument("--random", type=int, default=200, help="random architectures (section 'other')")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    have_tp = have_torch_pruning()
    if args.section == "timm":
        return _timm_section(args, have_tp)
    if args.section == "other":
        return _other_section(args)
    args.out = args.out or "benchmarks/results/zoo.md"
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
