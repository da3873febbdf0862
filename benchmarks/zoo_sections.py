"""The timm and non-classification sections of the zoo benchmark (``python benchmarks/zoo.py
--section timm|other|random``): per model, prune time, groups pinned and why, FLOPs/params before
and after, ONNX export with ONNX Runtime parity, and Torch-Pruning side by side where it runs."""
from __future__ import annotations

import collections
import re
import tempfile
import time
import traceback
from pathlib import Path

import torch

import fxprune

TP_RATIO = 0.3  # Torch-Pruning: channel ratio per layer, about half the FLOPs on these models


def _reason_key(why: str) -> str:
    why = re.sub(r"'[^']*'", "'…'", why)
    return why.split(" (at ")[0][:90]


def top_reasons(graph, k: int = 2) -> str:
    cnt = collections.Counter(_reason_key(g.reasons[0]) for g in graph.pinned_groups if g.reasons)
    skip = ("model input", "reaches the model output", "input of '…'", "output of '…'")
    items = [(r, n) for r, n in cnt.most_common() if not r.startswith(skip)]
    return "; ".join(f"{n}× {r}" for r, n in items[:k]) or "-"


def tp_prune(model: torch.nn.Module, x, out_shape, timeout: float = 60.0) -> tuple[str, float]:
    """Torch-Pruning's magnitude pruner at TP_RATIO per layer (classifier/heads ignored), in a
    child process with a time and memory limit (it exhausts memory on some models):
    ('ok', FLOPs ratio) when the pruned model runs with the same output shape."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_tp_child, args=(model, x, out_shape, q))
    p.start()
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join()
        return f"failed: no result in {timeout:.0f} s", float("nan")
    if p.exitcode != 0 or q.empty():
        return f"failed: exit code {p.exitcode} (memory limit?)", float("nan")
    return q.get()


def _tp_child(model, x, out_shape, q) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
    torch.set_num_threads(1)
    q.put(_tp_prune(model, x, out_shape))


def _tp_prune(model: torch.nn.Module, x, out_shape) -> tuple[str, float]:
    import copy

    import torch_pruning as tp

    m = copy.deepcopy(model)
    try:
        base, _ = tp.utils.count_ops_and_params(m, x)
        last = [mod for mod in m.modules() if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d))][-1:]
        pruner = tp.pruner.MetaPruner(m, x, importance=tp.importance.MagnitudeImportance(p=2),
                                      pruning_ratio=TP_RATIO, ignored_layers=last)
        pruner.step()
        with torch.no_grad():
            y = m(x)
        if tuple(y.shape) != tuple(out_shape):
            return "wrong output shape", float("nan")
        after, _ = tp.utils.count_ops_and_params(m, x)
        return "ok", after / base
    except Exception as exc:  # noqa: BLE001 - record the peer's failure
        return f"failed: {type(exc).__name__}", float("nan")


def timm_rows(names, have_tp: bool, log) -> list[dict]:
    import timm

    from fxprune.zoo import TIMM_CNNS

    rows = []
    for name in names or TIMM_CNNS:
        size = TIMM_CNNS.get(name, 64)
        row = {"model": name, "size": size}
        try:
            torch.manual_seed(0)
            model = timm.create_model(name, pretrained=False).eval()
            x = torch.randn(1, 3, size, size)
            with torch.no_grad():
                y = model(x)
            t = time.perf_counter()
            graph = fxprune.analyze(model, x)
            row["analyze_s"] = time.perf_counter() - t
            t = time.perf_counter()
            r = fxprune.prune(model, 0.5, example_inputs=x, progress=False)
            row["prune_s"] = time.perf_counter() - t
            row.update(prunable=len(graph.prunable_groups), pinned=len(graph.pinned_groups),
                       why=top_reasons(graph), fb=r.report.flops_before, fa=r.report.flops_after,
                       pb=r.report.params_before, pa=r.report.params_after, ratio=r.report.flops_ratio)
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    res = fxprune.export_onnx(r, Path(tmp) / "m.onnx", example_inputs=x, checks=2)
                    row["onnx"] = f"ok ({res.exporter}, rel {res.max_rel_err:.0e})"
                except Exception as exc:  # noqa: BLE001 - recorded, counted against the target
                    row["onnx"] = f"failed: {type(exc).__name__}"
            if have_tp:
                row["tp"], row["tp_ratio"] = tp_prune(model, x, y.shape)
            row["ok"] = abs(row["ratio"] - 0.5) <= 0.01 and row["onnx"].startswith("ok")
        except Exception as exc:  # noqa: BLE001 - a failure is a row of the table
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
            row["ok"] = False
            log(traceback.format_exc(limit=3))
        log(f"{name:28s} {row.get('prune_s', float('nan')):.2f}s ok={row['ok']} {row.get('onnx', row.get('error'))}")
        rows.append(row)
    return rows


def _other_models():
    """(name, builder, example inputs, budget) for detectors, segmentation, video and flow models."""
    from torchvision.models import get_model, list_models
    import torchvision

    out = []
    for n in list_models(module=torchvision.models.detection):
        kw = {"detections_per_img": 10} if n.startswith(("ssd", "retina", "fcos")) else {"box_detections_per_img": 10}
        if not n.startswith("ssd"):
            kw.update(min_size=320, max_size=320)
        out.append((n, lambda n=n, kw=kw: get_model(n, weights=None, weights_backbone=None, **kw),
                    ([torch.randn(3, 320, 320)],), 0.5))
    for n in list_models(module=torchvision.models.segmentation):
        out.append((n, lambda n=n: get_model(n, weights=None, weights_backbone=None), (torch.randn(1, 3, 224, 224),), 0.5))
    for n in list_models(module=torchvision.models.video):
        shape = (1, 3, 16, 224, 224) if n.startswith(("mvit", "s3d")) else (1, 3, 8, 112, 112)
        budget = 0.6 if n.startswith("swin3d") else 0.5
        out.append((n, lambda n=n: get_model(n, weights=None), (torch.randn(*shape),), budget))
    for n in list_models(module=torchvision.models.optical_flow):
        out.append((n, lambda n=n: get_model(n, weights=None),
                    (torch.randn(1, 3, 224, 224), torch.randn(1, 3, 224, 224)), 0.6))
    return out


def other_rows(names, log) -> list[dict]:
    rows = []
    for name, build, x, budget in _other_models():
        if names and name not in names:
            continue
        row = {"model": name, "budget": budget}
        try:
            torch.manual_seed(0)
            model = build().eval()
            t = time.perf_counter()
            r = fxprune.prune(model, budget, example_inputs=x, progress=False)
            row["prune_s"] = time.perf_counter() - t
            g = r.graph
            row.update(prunable=len(g.prunable_groups), pinned=len(g.pinned_groups), why=top_reasons(g),
                       fb=r.report.flops_before, fa=r.report.flops_after, pb=r.report.params_before,
                       pa=r.report.params_after, ratio=r.report.flops_ratio,
                       regions=", ".join(r.report.regions) if r.report.regions else "(whole model)",
                       wb=r.report.whole_flops_before, wa=r.report.whole_flops_after)
            with torch.no_grad():
                r.model(*x)
            row["ok"] = r.report.flops_ratio <= budget + 1e-9
        except Exception as exc:  # noqa: BLE001 - a failure is a row of the table
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:140]}"
            row["ok"] = False
        log(f"{name:34s} {row.get('prune_s', float('nan')):.2f}s ok={row['ok']} {row.get('regions', row.get('error'))}")
        rows.append(row)
    return rows


def random_rows(n: int, log) -> tuple[int, int, int]:
    """Dead-channel oracle over ``n`` random architectures of the test grammar: (exact, total, failures)."""
    import random
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fxprune.testing import dead_channel_check
    from tests.ir.test_random_arch import BLOCKS, RandomNet

    exact = fails = 0
    rng = random.Random(0)
    for i in range(n):
        spec = [rng.choice(BLOCKS) for _ in range(rng.randint(2, 7))]
        widths = [rng.choice([8, 12, 16]) for _ in range(7)]
        torch.manual_seed(i)
        try:
            c = dead_channel_check(RandomNet(spec, widths).eval(), torch.randn(2, 3, 16, 16), seed=i)
            ok = c.groups_pruned == 0 or (c.rel_err < 1e-4 and abs(c.flops_actual - c.flops_predicted) < 1e-6 * c.flops_full
                                         and abs(c.params_actual - c.params_predicted) < 0.5)
            exact += ok
            if not ok:
                log(f"not exact: {spec} {widths} rel {c.rel_err:.2e}")
        except Exception as exc:  # noqa: BLE001 - counted
            fails += 1
            log(f"failed: {spec} {widths}: {type(exc).__name__}: {exc}")
    return exact, n, fails


def fmt_g(v: float | None) -> str:
    return "-" if v is None else f"{v / 1e9:.3f}"
