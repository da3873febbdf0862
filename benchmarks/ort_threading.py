"""How ONNX Runtime's thread spinning and the order of timed runs change a 2-thread comparison:
the evidence behind fxprune's latency protocol (sessions keep spinning on; at more than one
thread, `measure_interleaved` alternates models in blocks after a pause).

    python benchmarks/ort_threading.py [--models resnet50 mobilenet_v2] [--runs 60] [--repeats 3]

For each model: the original and fxprune's 50% FLOPs, round_to=16 plan, exported to ONNX and timed
at 2 intra-op threads in four protocols, each `--repeats` times:
  - spin off, run by run: sessions without spinning, A B B A ... one run at a time (the old protocol);
  - spin on, run by run: ONNX Runtime's default spinning, one run at a time;
  - spin on, blocks, pause 0.05 s / 0.2 s: `fxprune.compare_latency` as it is now (pause, one
    untimed run, 10 timed runs per block), with two pause lengths.
Reports median latencies (ms) and efficiency = speedup x FLOPs ratio, median over the repeats.
Writes benchmarks/results/ort_threading.md. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torchvision.models import get_model

import fxprune
from fxprune.export.onnx_export import session

warnings.filterwarnings("ignore")
X = (1, 3, 224, 224)


def run_by_run(pa, pb, spinning, runs):
    """A B, B A, ... one run at a time (no pause), after 10 warm-up pairs."""
    sa, sb = session(pa, 2, spinning=spinning), session(pb, 2, spinning=spinning)
    feed = {sa.get_inputs()[0].name: np.random.default_rng(0).standard_normal(X).astype(np.float32)}

    def once(s):
        t = time.perf_counter()
        s.run(None, feed)
        return time.perf_counter() - t

    for _ in range(10):
        once(sa), once(sb)
    ta, tb = [], []
    for k in range(runs):
        for s, acc in ([(sa, ta), (sb, tb)] if k % 2 == 0 else [(sb, tb), (sa, ta)]):
            acc.append(once(s))
    return 1e3 * float(np.median(ta)), 1e3 * float(np.median(tb))


def blocks(pa, pb, pause, runs):
    cmp = fxprune.compare_latency(pa, pb, threads=2, warmup=10, runs=runs, pause_s=pause)
    return cmp.a.median_ms, cmp.b.median_ms


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="*", default=["resnet50", "mobilenet_v2"])
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/ort_threading.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    protocols = {"spin off, run by run": lambda a, b: run_by_run(a, b, False, args.runs),
                 "spin on, run by run": lambda a, b: run_by_run(a, b, True, args.runs),
                 "spin on, blocks, pause 0.05 s": lambda a, b: blocks(a, b, 0.05, args.runs),
                 "spin on, blocks, pause 0.2 s": lambda a, b: blocks(a, b, 0.2, args.runs)}
    lines = ["# ONNX Runtime at 2 threads: spinning and the order of timed runs", "",
             f"Command: `python {' '.join(sys.argv)}`  ",
             f"torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}; input 1x3x224x224, "
             f"2 intra-op threads, {args.runs} timed runs per model per repeat, {args.repeats} repeats "
             f"(protocols interleaved within each repeat); medians over the repeats. Pruned = 50% FLOPs, "
             "the default channel rounding.", "",
             "| model | protocol | original ms | pruned ms | efficiency | efficiency per repeat |",
             "|---|---|---:|---:|---:|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model = get_model(name, weights=None).eval()
            r = fxprune.prune(model, 0.5, example_inputs=X, progress=False)
            pa = fxprune.export_onnx(model, Path(tmp) / "a.onnx", X, checks=1).path
            pb = fxprune.export_onnx(r, Path(tmp) / "b.onnx", X, checks=1).path
            got: dict[str, list[tuple[float, float]]] = {k: [] for k in protocols}
            for _ in range(args.repeats):
                for k, fn in protocols.items():
                    got[k].append(fn(pa, pb))
            for k, vals in got.items():
                effs = [a / b * r.report.flops_ratio for a, b in vals]
                lines.append(f"| {name} | {k} | {statistics.median(a for a, _ in vals):.2f} | "
                             f"{statistics.median(b for _, b in vals):.2f} | {statistics.median(effs):.3f} | "
                             f"{', '.join(f'{e:.3f}' for e in effs)} |")
                print(lines[-1], flush=True)
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
