"""Export an original and a pruned model, measure both interleaved in ONNX Runtime, and report
speedup and efficiency = speedup / (FLOPs before / FLOPs after); optionally assert bounds."""
from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ..errors import FxpruneError, LatencyCheckError
from .onnx_export import ExportResult, export_onnx
from .latency import Comparison, Timer, compare_latency

log = logging.getLogger(__name__)


@dataclasses.dataclass
class LatencyCheck:
    comparison: Comparison
    flops_before: float
    flops_after: float
    exports: tuple[ExportResult | None, ExportResult | None]

    @property
    def before_ms(self) -> float:
        return self.comparison.a.median_ms

    @property
    def after_ms(self) -> float:
        return self.comparison.b.median_ms

    @property
    def speedup(self) -> float:
        return self.comparison.speedup

    @property
    def flops_reduction(self) -> float:
        """FLOPs before / FLOPs after (2.0 = half the FLOPs)."""
        return self.flops_before / max(self.flops_after, 1e-12)

    @property
    def efficiency(self) -> float:
        """Speedup per unit of FLOPs reduction: 1.0 means latency fell exactly as much as FLOPs."""
        return self.speedup / self.flops_reduction

    def to_dict(self) -> dict[str, Any]:
        return {"latency_before_ms": self.before_ms, "latency_after_ms": self.after_ms,
                "speedup": self.speedup, "flops_before": self.flops_before, "flops_after": self.flops_after,
                "flops_reduction": self.flops_reduction, "efficiency": self.efficiency,
                "before": dataclasses.asdict(self.comparison.a), "after": dataclasses.asdict(self.comparison.b)}

    def __str__(self) -> str:
        return (f"latency {self.before_ms:.3f} ms -> {self.after_ms:.3f} ms: speedup {self.speedup:.2f}x for a "
                f"{self.flops_reduction:.2f}x FLOPs cut (efficiency {self.efficiency:.2f}); "
                f"{self.comparison.a.threads} thread(s), batch {self.comparison.a.batch}")


def _flops(model: torch.nn.Module, inputs: Any) -> float:
    from ..ir import analyze

    return float(analyze(model, inputs).cost.full_flops)


def check_latency(original: torch.nn.Module, pruned: Any, example_inputs: Any = None, *, threads: int = 1,
                  batch: int = 1, warmup: int = 10, runs: int = 50, min_speedup: float | None = None,
                  max_latency_ms: float | None = None, workdir: str | Path | None = None,
                  timer: Timer = time.perf_counter, progress: bool = False) -> LatencyCheck:
    """Export ``original`` and ``pruned`` (a module or a ``PruneResult``) to ONNX (parity-checked),
    measure them interleaved, and return speedup and efficiency. Raises :class:`LatencyCheckError`
    when the speedup is below ``min_speedup`` or the pruned latency above ``max_latency_ms``."""
    from ..result import PruneResult

    if isinstance(pruned, PruneResult):
        if example_inputs is None and pruned.plan.input_shapes:
            example_inputs = tuple(pruned.plan.input_shapes[0])
        pruned = pruned.model
    if not isinstance(original, torch.nn.Module) or not isinstance(pruned, torch.nn.Module):
        raise FxpruneError("check_latency() takes the original nn.Module and the pruned model (or PruneResult)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(workdir) if workdir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        ea = export_onnx(original, folder / "original.onnx", example_inputs, checks=1)
        eb = export_onnx(pruned, folder / "pruned.onnx", example_inputs, checks=1)
        cmp = compare_latency(ea.path, eb.path, threads=threads, batch=batch, warmup=warmup, runs=runs,
                              timer=timer, progress=progress)
    shape = ea.input_shapes[0]
    check = LatencyCheck(cmp, _flops(original, shape), _flops(pruned, shape), (ea, eb))
    log.info("%s", check)
    if min_speedup is not None and check.speedup < min_speedup:
        raise LatencyCheckError(f"speedup {check.speedup:.3f}x is below the required {min_speedup}x "
                                f"({check.before_ms:.3f} ms -> {check.after_ms:.3f} ms)", check)
    if max_latency_ms is not None and check.after_ms > max_latency_ms:
        raise LatencyCheckError(f"pruned latency {check.after_ms:.3f} ms is above the allowed "
                                f"{max_latency_ms} ms", check)
    return check
