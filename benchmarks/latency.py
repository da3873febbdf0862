"""Latency benchmark: ONNX Runtime CPU latency of pruned models, side by side with torch-pruning.

    python benchmarks/latency.py [--models resnet50 ...] [--runs 30] [--repeats 5] [--out benchmarks/results/latency.md]

For each model (224x224, batch 1) and each ONNX Runtime thread count (1 and 2): the original, and
fxprune's `global` policy at 50% and 30% FLOPs kept with the defaults (`round_to="auto"`) and with
rounding turned off (`round_to=1`); and
torch-pruning (benchmark-only install, `pip install torch-pruning`) pruned to the same FLOPs where it
runs (MetaPruner, L2 magnitude, one uniform ratio found by bisection). All variants of a model are
measured interleaved (round-robin, order rotating; in blocks at 2 threads) so machine noise hits
them alike; speedup is the ratio of medians, efficiency = speedup / (FLOPs before / FLOPs after),
FLOPs counted by fxprune's cost model for every variant. Then the efficiency target's pairs
(ResNet-50, MobileNetV2 and EfficientNet-B0, original vs 50% with the defaults) compared on their
own ``--repeats`` times, a rounding study (which multiples ONNX Runtime CPU likes) and latency-budget
runs (ResNet-18 and ResNet-50 at 0.5, 0.6 and 0.7 of the original's latency). Run it on an
otherwise idle machine.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torchvision
from torchvision.models import get_model

import fxprune
from _common import have_torch_pruning
from fxprune.export import measure_interleaved

warnings.filterwarnings("ignore")
MODELS = ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "regnet_y_400mf",
          "densenet121", "shufflenet_v2_x1_0", "convnext_tiny", "vgg16_bn"]
X = (1, 3, 224, 224)
TARGETS = ("resnet50", "mobilenet_v2", "efficientnet_b0")  # efficiency >= 0.9 with the defaults


def flops(model):
    return fxprune.analyze(model, X).cost.full_flops


def tp_prune(model, target_ratio):
    """torch-pruning to ``target_ratio`` of the FLOPs: bisection on its uniform pruning ratio."""
    import torch_pruning as tp

    base = flops(model)
    example = torch.randn(X)

    def run(ratio):
        m = copy.deepcopy(model)
        last = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)][-1:]
        pruner = tp.pruner.MetaPruner(m, example, importance=tp.importance.MagnitudeImportance(p=2),
                                      pruning_ratio=ratio, ignored_layers=last)
        pruner.step()
        return m, flops(m) / base

    lo, hi, best = 0.0, 0.95, None
    for _ in range(12):
        mid = (lo + hi) / 2
        m, r = run(mid)
        if r <= target_ratio:
            hi, best = mid, (m, r)
        else:
            lo = mid
        if best is not None and abs(best[1] - target_ratio) < 0.01:
            break
    return best


def variants(name, have_tp):
    model = get_model(name, weights=None).eval()
    out = {"original": (model, 1.0)}
    for b in (0.5, 0.3):
        for rt in ("auto", 1):
            r = fxprune.prune(model, b, example_inputs=X, round_to=rt, progress=False)
            out[f"fxprune {b:.0%}" + (" unrounded" if rt == 1 else "")] = (r.model, r.report.flops_ratio)
        if have_tp:
            try:
                got = tp_prune(model, b)
                out[f"torch-pruning {b:.0%}"] = got if got else "no ratio reached the target"
            except Exception as exc:  # noqa: BLE001 - record the peer's failure
                out[f"torch-pruning {b:.0%}"] = f"failed: {type(exc).__name__}"
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="*", default=MODELS)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", nargs="*", type=int, default=[1, 2])
    ap.add_argument("--out", default="benchmarks/results/latency.md")
    ap.add_argument("--repeats", type=int, default=5, help="repeated comparisons of the target pairs (0: skip)")
    ap.add_argument("--skip-rounding", action="store_true")
    ap.add_argument("--skip-budget", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    have_tp = have_torch_pruning()
    t0 = time.time()
    lines = ["# fxprune latency benchmark", "",
             f"Command: `python {' '.join(sys.argv)}`  ",
             f"torch {torch.__version__}, torchvision {torchvision.__version__}, onnxruntime "
             f"{__import__('onnxruntime').__version__}; input 1x3x224x224, batch 1, CPUExecutionProvider, "
             f"ORT_ENABLE_ALL, ONNX Runtime's default thread spinning; {args.runs} interleaved runs per variant "
             "after warm-up (run by run at 1 thread; at 2, blocks of 10 runs after a 50 ms pause and one untimed "
             "run, see `measure_interleaved`); latency = median (ms). "
             "`fxprune 50%` = `fxprune.prune(model, 0.5)` with the defaults (channel multiples chosen per group, "
             "`round_to='auto'`); `unrounded` = `round_to=1`. Efficiency = speedup / (FLOPs before / FLOPs after).", "",
             "| model | variant | FLOPs ratio | threads | latency ms | speedup | efficiency |",
             "|---|---|---:|---:|---:|---:|---:|"]
    summary = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            vs = variants(name, have_tp)
            paths, ratios, failed = [], [], []
            for k, v in vs.items():
                if isinstance(v, str):
                    failed.append((k, v))
                    continue
                p = Path(tmp) / f"{name}_{len(paths)}.onnx"
                fxprune.export_onnx(v[0], p, X, checks=1)
                paths.append((k, p))
                ratios.append(v[1])
            for th in args.threads:
                lats = measure_interleaved([p for _, p in paths], threads=th, warmup=5, runs=args.runs)
                base = lats[0].median_ms
                for (k, _), fr, lat in zip(paths, ratios, lats):
                    sp = base / lat.median_ms
                    eff = sp * fr
                    summary[(name, k, th)] = (fr, lat.median_ms, sp, eff)
                    lines.append(f"| {name} | {k} | {fr:.3f} | {th} | {lat.median_ms:.2f} | {sp:.2f} | "
                                 f"{eff:.2f} |")
                    print(f"{name:20s} {k:22s} t{th} flops {fr:.3f} {lat.median_ms:8.2f} ms x{sp:.2f} eff {eff:.2f}",
                          flush=True)
            for k, why in failed:
                lines.append(f"| {name} | {k} | | | {why} | | |")
    lines += _targets(summary, args)
    if args.repeats:
        lines += _repeated(args)
    if not args.skip_rounding:
        lines += _rounding(args)
    if not args.skip_budget:
        lines += _budget()
    lines += ["", f"Total wall time {time.time() - t0:.0f} s."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-30:]))


def _targets(summary, args):
    out = ["", "## Targets", ""]
    for name in TARGETS:
        for th in args.threads:
            for var in ("fxprune 50%", "fxprune 50% unrounded"):
                if (name, var, th) in summary:
                    fr, ms, sp, eff = summary[(name, var, th)]
                    out.append(f"- {name} {var}, {th} thread(s): efficiency {eff:.2f} (target >= 0.9: "
                               f"{'met' if eff >= 0.9 else 'NOT met'})")
    for suffix in ("", " unrounded"):
        mono, slow = [], []
        for (name, var, th), (fr, ms, sp, eff) in summary.items():
            if var == "fxprune 30%" + suffix and (name, "fxprune 50%" + suffix, th) in summary:
                sp50 = summary[(name, "fxprune 50%" + suffix, th)][2]
                mono.append(sp >= sp50 > 1.0)
                if not sp >= sp50 > 1.0:
                    slow.append(f"{name} at {th} thread(s): 50% x{sp50:.2f}, 30% x{sp:.2f}")
        out.append(f"- speedup monotone in the budget (original < 50% < 30% kept in speed"
                   f"{suffix or ', defaults'}): {sum(mono)} of {len(mono)} model/thread pairs"
                   + (f"; not on {'; '.join(slow)}" if slow else ""))
    return out


def _repeated(args):
    """The efficiency target's pairs (original vs 50% FLOPs with the defaults), each compared on
    its own ``args.repeats`` times: one table run is a single sample of a noisy ratio."""
    runs = max(args.runs, 60)
    out = ["", "## Target pairs, measured again", "",
           f"Original vs `fxprune.prune(model, 0.5)` (defaults): each pair alone, `compare_latency` with {runs} runs, "
           f"{args.repeats} times; the efficiency of every repeat and their median (the target is judged on the "
           "median).", "", "| model | threads | efficiency per repeat | median | target >= 0.9 |",
           "|---|---:|---|---:|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in TARGETS:
            model = get_model(name, weights=None).eval()
            r = fxprune.prune(model, 0.5, example_inputs=X, progress=False)
            po = fxprune.export_onnx(model, Path(tmp) / "o.onnx", X, checks=1).path
            pp = fxprune.export_onnx(r, Path(tmp) / "p.onnx", X, checks=1).path
            for th in args.threads:
                effs = [fxprune.compare_latency(po, pp, threads=th, warmup=5, runs=runs).speedup
                        * r.report.flops_ratio for _ in range(args.repeats)]
                med = statistics.median(effs)
                out.append(f"| {name} | {th} | {', '.join(f'{e:.3f}' for e in effs)} | {med:.3f} | "
                           f"{'met' if med >= 0.9 else 'NOT met'} |")
                print(out[-1], flush=True)
    return out


def _rounding(args):
    out = ["", "## Rounding study (why `round_to='auto'`)", "",
           "50% FLOPs with the `global` policy, 1 thread, variants measured interleaved.", "",
           "| model | round_to | FLOPs ratio | latency ms | speedup | efficiency |", "|---|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("resnet50", "mobilenet_v2", "efficientnet_b0"):
            model = get_model(name, weights=None).eval()
            rows = [("original", model, 1.0)]
            for rt in (1, 4, 8, 16, 32, "auto"):
                r = fxprune.prune(model, 0.5, example_inputs=X, round_to=rt, progress=False)
                rows.append((str(rt), r.model, r.report.flops_ratio))
            paths = []
            for i, (_, m, _) in enumerate(rows):
                paths.append(fxprune.export_onnx(m, Path(tmp) / f"{name}_{i}.onnx", X, checks=1).path)
            lats = measure_interleaved(paths, threads=1, warmup=5, runs=args.runs)
            base = lats[0].median_ms
            for (rt, _, fr), lat in zip(rows, lats):
                sp = base / lat.median_ms
                out.append(f"| {name} | {rt} | {fr:.3f} | {lat.median_ms:.2f} | {sp:.2f} | {sp * fr:.2f} |")
                print(f"rounding {name} {rt} {lat.median_ms:.2f} ms x{sp:.2f}", flush=True)
    return out


def _budget():
    out = ["", "## Latency budget", ""]
    for name in ("resnet18", "resnet50"):
        model = get_model(name, weights=None).eval()
        for frac in (0.5, 0.6, 0.7):
            t = time.time()
            try:
                r = fxprune.prune(model, fxprune.Budget(latency=frac), example_inputs=X, progress=False)
            except fxprune.BudgetError as exc:
                out.append(f"- {name}, `Budget(latency={frac})`: BudgetError: {exc}")
                continue
            rep = r.report
            check = fxprune.check_latency(model, r, X, runs=30)
            got = rep.latency_after_ms / rep.latency_before_ms
            out.append(f"- {name}, `Budget(latency={frac})`, 1 thread: search result {rep.latency_after_ms:.2f} ms "
                       f"of {rep.latency_before_ms:.2f} ms = {got:.3f} (within 5% of the target: "
                       f"{'yes' if abs(got - frac) <= 0.05 * frac else 'NO'}); FLOPs ratio {rep.flops_ratio:.3f}; "
                       f"{len(rep.latency_search)} measurements, {time.time() - t:.0f} s. Re-measured interleaved "
                       f"with the original: {check.after_ms:.2f} / {check.before_ms:.2f} ms = "
                       f"{check.after_ms / check.before_ms:.3f}.")
            print(out[-1], flush=True)
    return out


if __name__ == "__main__":
    main()
