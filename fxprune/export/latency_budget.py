"""Latency budgets: a measured search over FLOPs targets.

Mechanism (chosen over a NetAdapt-style per-layer latency table, which would need one measurement
per layer and channel count and ignores ONNX Runtime's graph fusions): prune to a FLOPs fraction
``f`` with the chosen policy, export, measure the pruned model in ONNX Runtime on this machine,
and search ``f`` by safeguarded regula falsi (latency is close to affine in FLOPs, but noisy and
only roughly monotone). The result is the largest FLOPs fraction found whose measured latency is
within the target, so as little as possible is removed. The tolerance is 5%: a result is accepted
when its latency is <= 1.05 x target; the search aims at the target itself to leave room for noise.

Channel counts are rounded as for every budget (``round_to="auto"``: hardware-friendly multiples
per group, :mod:`fxprune.policies.allocation`), so that the measured latency falls with FLOPs.
"""
from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from ..budget import Budget
from ..errors import BudgetError

log = logging.getLogger(__name__)

TOLERANCE = 0.05

LatencyFn = Callable[[torch.nn.Module], float]  # model -> latency in ms


@dataclasses.dataclass
class LatencyStep:
    flops_fraction: float
    latency_ms: float


class OrtLatency:
    """Default latency measurement: export to ONNX (parity-checked) and time in ONNX Runtime.

    With ``reference=`` (the original model), every later model is timed *interleaved* with the
    reference (:func:`~fxprune.export.latency.measure_interleaved`) and its latency is reported on
    the scale of the reference's first measurement: ``ms(model) / ms(reference, same window) x
    ms(reference, first)``. Machine speed drifts by 10-20% over a search on a shared CPU; a probe
    timed alone against a baseline timed a minute earlier can land on the wrong side of the target,
    while the ratio of two models timed side by side is stable (``benchmarks/results/latency.md``).
    """

    def __init__(self, example_inputs: Any = None, threads: int = 1, warmup: int = 5, runs: int = 30,
                 reference: torch.nn.Module | None = None):
        self.example_inputs, self.threads, self.warmup, self.runs = example_inputs, threads, warmup, runs
        self.reference = reference
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._ref_path: Path | None = None
        self._ref_ms: float | None = None

    def _export(self, model: torch.nn.Module, path: Path) -> Path:
        from .onnx_export import export_onnx

        return export_onnx(model, path, self.example_inputs, checks=1).path

    def __call__(self, model: torch.nn.Module) -> float:
        from .latency import measure_interleaved, measure_latency

        kw = dict(threads=self.threads, warmup=self.warmup, runs=self.runs)
        if self.reference is None:
            with tempfile.TemporaryDirectory() as tmp:
                return measure_latency(self._export(model, Path(tmp) / "m.onnx"), **kw).median_ms
        if self._ref_path is None:
            self._tmp = tempfile.TemporaryDirectory()
            self._ref_path = self._export(self.reference, Path(self._tmp.name) / "reference.onnx")
        if model is self.reference:
            ms = measure_latency(self._ref_path, **kw).median_ms
            self._ref_ms = self._ref_ms if self._ref_ms is not None else ms
            return ms
        with tempfile.TemporaryDirectory() as tmp:
            ref, cur = measure_interleaved([self._ref_path, self._export(model, Path(tmp) / "m.onnx")], **kw)
        if self._ref_ms is None:
            self._ref_ms = ref.median_ms
        return cur.median_ms * self._ref_ms / ref.median_ms

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp, self._ref_path = None, None


def _feasible_floor(prune_at: Callable[[float], Any]) -> float:
    """The smallest FLOPs fraction the policy can reach (pinned groups and per-group floors keep
    the rest), found from the ``BudgetError`` of an impossible request."""
    f = 1e-3
    for _ in range(6):
        try:
            prune_at(f)
            return f
        except BudgetError as exc:
            if exc.best is None or not exc.best < 1.0:
                raise
            f = min(1.0, max(float(exc.best) * (1 + 1e-6), f * 1.001) + 1e-9)
    return f


def prune_to_latency(model: torch.nn.Module, budget: Budget, prune_at: Callable[[float], Any],
                     latency_fn: LatencyFn, *, max_steps: int = 8, progress: bool = True) -> Any:
    """Search FLOPs fractions until ``prune_at(f)`` (a PruneResult) meets the latency ``budget``.

    ``latency_fn(module) -> ms`` measures a model; tests inject a fake one (a deterministic timer).
    The search never leaves the feasible range: it starts at the smallest fraction the policy can
    reach and a probe the policy refuses moves that floor up instead of failing. Measurements may be
    noisy and not monotone in FLOPs: the result is the largest fraction whose *measured* latency
    met the target (within 5%), and the search stops early once the bracket is narrow or two steps
    in a row do not improve it. Raises :class:`BudgetError` with ``best`` = the lowest latency
    reached (ms) when even the most pruned feasible model is too slow.
    """
    from tqdm.auto import tqdm

    base_ms = float(latency_fn(model))
    target = budget.value if budget.metric == "latency_ms" else budget.value * base_ms
    steps: list[LatencyStep] = [LatencyStep(1.0, base_ms)]
    cache: dict[float, tuple[Any, float]] = {}

    def run(f: float) -> tuple[Any, float] | None:
        key = round(f, 6)  # the policy gets f itself: rounding could fall below its floor
        if key not in cache:
            try:
                res = prune_at(f)
            except BudgetError as exc:  # below what the policy can reach: not a failure of the search
                log.info("latency search: FLOPs %.4f is not reachable (%s)", f, exc)
                return None
            cache[key] = (res, float(latency_fn(res.model)))
            steps.append(LatencyStep(f, cache[key][1]))
            log.info("latency search: FLOPs %.4f -> %.3f ms (target %.3f ms)", f, cache[key][1], target)
        return cache[key]

    def finish(res: Any, ms: float) -> Any:
        res.report.latency_before_ms, res.report.latency_after_ms = base_ms, ms
        res.report.latency_search = [dataclasses.asdict(s) for s in steps]
        res.plan.meta.update({"latency_ms": ms, "latency_before_ms": base_ms, "latency_target_ms": target})
        return res

    if base_ms <= target:
        log.info("the unpruned model (%.3f ms) already meets the latency target %.3f ms", base_ms, target)
        res, _ = run(1.0)
        return finish(res, base_ms)
    f_lo = _feasible_floor(prune_at)
    bar = tqdm(total=max_steps + 1, desc="latency search", disable=not progress, leave=False)
    first = run(f_lo)
    bar.update()
    if first is None:
        bar.close()
        raise BudgetError(f"latency budget {budget}: the policy cannot prune to its own smallest FLOPs fraction "
                          f"{f_lo:.4f}", best=None)
    res_lo, ms_lo = first
    if ms_lo > target * (1 + TOLERANCE):
        bar.close()
        lowest = min(ms for _, ms in cache.values())
        raise BudgetError(f"latency budget {budget} ({target:.3f} ms) cannot be met: the most pruned feasible "
                          f"model (FLOPs {f_lo:.3f} of the original) runs in {ms_lo:.3f} ms "
                          f"(unpruned {base_ms:.3f} ms)", best=lowest)
    best = (f_lo, res_lo, ms_lo)
    lo, l_lo, hi, l_hi = f_lo, ms_lo, 1.0, base_ms
    stale = 0
    for _ in range(max_steps):
        if best[2] >= target * (1 - TOLERANCE) or hi - lo < 2e-3 or stale >= 2:
            break
        # regula falsi, kept inside the middle 80% of the bracket; a measurement that contradicts
        # the bracket (noise, non-monotone latency) just narrows it
        slope = l_hi - l_lo
        guess = lo + (hi - lo) * (target - l_lo) / slope if slope > 1e-9 else (lo + hi) / 2
        f = min(max(guess, lo + 0.1 * (hi - lo)), hi - 0.1 * (hi - lo))
        out = run(f)
        bar.update()
        if out is None:  # unreachable after all: the floor moves up
            lo = f
            stale += 1
            continue
        res, ms = out
        if ms <= target * (1 + TOLERANCE) and f > best[0]:
            best, stale = (f, res, ms), 0
        else:
            stale += 1
        if ms <= target:
            lo, l_lo = f, ms
        else:
            hi, l_hi = f, ms
    bar.close()
    f, res, ms = best
    log.info("latency budget met: FLOPs %.4f, %.3f ms (target %.3f ms, unpruned %.3f ms)", f, ms, target, base_ms)
    return finish(res, ms)
