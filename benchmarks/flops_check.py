"""fxprune's FLOPs count against torch.utils.flop_counter on every torchvision classifier, before
and after pruning to 50% FLOPs with the defaults.

    python benchmarks/flops_check.py [--size 64] [--models resnet50 ...]

fxprune counts multiply-accumulates from its cost model (ops without a channel rule measured once
with flop_counter); the independent count is flop_counter's FLOPs / 2 of one forward of the
original and of the pruned model (gradients enabled: without them nn.MultiheadAttention takes a
fused kernel in which the counter sees no matrix products). Writes benchmarks/results/flops_check.md.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import get_model, list_models

import fxprune

warnings.filterwarnings("ignore")


def macs(model, x) -> float:
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 2


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--out", default="benchmarks/results/flops_check.md")
    args = ap.parse_args(argv)
    names = args.models or list_models(module=torchvision.models)
    lines = ["# fxprune FLOPs against torch.utils.flop_counter", "", f"Command: `python {' '.join(sys.argv)}`  ",
             f"torch {torch.__version__}, torchvision {torchvision.__version__}; input 1x3x{args.size}x{args.size} "
             "(Swin and MaxViT 224, ViT 4 patches a side, Inception-v3 299); GMACs; pruned with "
             "`fxprune.prune(model, 0.5)` (defaults).", "",
             "| model | fxprune before | flop_counter before | diff | fxprune after | flop_counter after | diff | "
             "ratio (fxprune) | ratio (flop_counter) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    worst = 0.0
    for name in names:
        size, kw = args.size, {}
        if name.startswith(("swin", "maxvit")):
            size = 224  # window attention needs it (and is the case the count must get right)
        elif name.startswith("vit"):
            size = 4 * int(name.rsplit("_", 1)[1])
            kw = {"image_size": size}
        elif name.startswith("inception"):
            size = 299
        torch.manual_seed(0)
        model = get_model(name, weights=None, **kw).eval()
        x = torch.randn(1, 3, size, size)
        try:
            r = fxprune.prune(model, 0.5, example_inputs=x, progress=False)
        except fxprune.FxpruneError as exc:
            lines.append(f"| {name} | | | | | | | {type(exc).__name__}: {str(exc)[:80]} | |")
            continue
        fb, fa = r.report.flops_before, r.report.flops_after
        cb, ca = macs(model, x), macs(r.model, x)
        db, da = fb / cb - 1, fa / ca - 1
        worst = max(worst, abs(db), abs(da))
        lines.append(f"| {name} | {fb / 1e9:.3f} | {cb / 1e9:.3f} | {db:+.2%} | {fa / 1e9:.3f} | {ca / 1e9:.3f} | "
                     f"{da:+.2%} | {fb and fa / fb:.3f} | {ca / cb:.3f} |")
        print(lines[-1], flush=True)
    lines += ["", f"Largest difference between the two counts: **{worst:.2%}** over {len(names)} models."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(lines[-1])


if __name__ == "__main__":
    main()
