"""Latency measurement, interleaved comparison, latency checks and latency budgets.

Real ONNX Runtime timings are only checked for sanity (they are noisy); the logic is checked
deterministically with an injected fake clock and fake latency functions."""
import dataclasses
import types

import numpy as np
import pytest
import torch
import torchvision

import fxprune
from fxprune.budget import Budget, parse
from fxprune.export import compare_latency, measure_latency


class Clock:
    """A fake timer: time only moves when a fake session runs."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakeSession:
    def __init__(self, clock, costs_ms, log, name):
        self.clock, self.costs, self.log, self.name, self.k = clock, list(costs_ms), log, name, 0

    def run(self, outputs, feed):
        assert feed["x"].shape == (3, 2)
        self.clock.now += self.costs[self.k % len(self.costs)] / 1e3
        self.k += 1
        self.log.append(self.name)

    def get_inputs(self):
        return [types.SimpleNamespace(name="x", shape=["batch", 2], type="tensor(float)")]

    def get_session_options(self):
        return types.SimpleNamespace(intra_op_num_threads=1, graph_optimization_level="GraphOptimizationLevel.ORT_ENABLE_ALL")

    def get_providers(self):
        return ["FakeProvider"]


def test_measure_latency_statistics_with_fake_clock():
    clock, log = Clock(), []
    lat = measure_latency(FakeSession(clock, [1, 2, 3, 4, 100], log, "a"), batch=3, warmup=5, runs=10, timer=clock)
    samples = [1, 2, 3, 4, 100] * 2  # the warm-up consumed exactly one cycle of five
    assert lat.median_ms == pytest.approx(3.0)
    assert lat.mean_ms == pytest.approx(sum(samples) / 10)
    assert lat.p90_ms == pytest.approx(torch.tensor(samples, dtype=torch.float64).quantile(0.9).item())
    assert lat.min_ms == pytest.approx(1.0)
    assert (lat.runs, lat.warmup, lat.batch, lat.provider, lat.graph_optimization_level) == \
        (10, 5, 3, "FakeProvider", "ORT_ENABLE_ALL")
    assert len(log) == 15


def test_compare_is_interleaved_and_reports_the_ratio():
    clock, log = Clock(), []
    a, b = FakeSession(clock, [10], log, "a"), FakeSession(clock, [4], log, "b")
    cmp = compare_latency(a, b, batch=3, warmup=1, runs=4, timer=clock)
    assert cmp.speedup == pytest.approx(2.5)
    # warm-up, then rounds whose order rotates and reverses: neither model always runs first
    assert log == ["a", "b"] + ["a", "b", "b", "a", "b", "a", "a", "b"]


class SpinningSession(FakeSession):
    """A fake 2-thread session whose run is slowed by 100 ms when another session ran last and
    has not been left idle (its spinning pool threads would still hold a core)."""

    last = {"name": None, "idle": True}

    def run(self, outputs, feed):
        if self.last["name"] not in (None, self.name) and not self.last["idle"]:
            self.clock.now += 0.1
        self.last.update(name=self.name, idle=False)
        super().run(outputs, feed)

    def get_session_options(self):
        return types.SimpleNamespace(intra_op_num_threads=2, graph_optimization_level="ORT_ENABLE_ALL")


@pytest.mark.parametrize("block", [1, 3])
def test_multithreaded_compare_runs_blocks_after_a_pause(block):
    clock, log, pauses = Clock(), [], []
    SpinningSession.last.update(name=None, idle=True)

    def sleep(s):
        pauses.append(s)
        SpinningSession.last["idle"] = True

    a, b = SpinningSession(clock, [10], log, "a"), SpinningSession(clock, [4], log, "b")
    cmp = compare_latency(a, b, batch=3, warmup=0, runs=6, timer=clock, block=block, pause_s=0.02, sleep=sleep)
    # every timed run found the other session idle: the medians are the clean costs
    assert (cmp.a.median_ms, cmp.b.median_ms) == (pytest.approx(10.0), pytest.approx(4.0))
    assert cmp.a.runs == cmp.b.runs == 6
    rounds = 6 // block
    assert pauses == [0.02] * (2 * rounds)
    # each block: one untimed wake-up run, then `block` timed runs; the order alternates
    first = ["a"] * (block + 1) + ["b"] * (block + 1)
    assert log[:2 * (block + 1)] == first and len(log) == 2 * rounds * (block + 1)


def test_real_latency_is_sane(tmp_path):
    m = torchvision.models.resnet18(weights=None).eval()
    r = fxprune.prune(m, 0.5, example_inputs=(1, 3, 64, 64))
    p = fxprune.export_onnx(r, tmp_path / "r.onnx", checks=1).path
    lat = measure_latency(p, threads=1, batch=2, warmup=2, runs=8)
    assert 0 < lat.min_ms <= lat.median_ms <= lat.p90_ms
    assert lat.std_ms >= 0 and lat.batch == 2 and lat.threads == 1 and lat.provider == "CPUExecutionProvider"
    assert lat.input_shapes == [(2, 3, 64, 64)]
    assert lat.spinning is True  # ONNX Runtime's default, recorded with the result
    a = fxprune.compare_latency(p, p, threads=2, warmup=1, runs=4, block=2, spinning=False).a
    assert a.threads == 2 and a.spinning is False and a.runs == 4 and a.median_ms > 0


def test_check_latency_efficiency_and_errors(tmp_path):
    m = torchvision.models.resnet18(weights=None).eval()
    r = fxprune.prune(m, 0.5, example_inputs=(1, 3, 64, 64))
    chk = fxprune.check_latency(m, r, warmup=2, runs=10, workdir=tmp_path)
    assert chk.flops_before / chk.flops_after == pytest.approx(1 / r.report.flops_ratio, rel=1e-6)
    assert chk.efficiency == pytest.approx(chk.speedup / chk.flops_reduction)
    assert chk.speedup == pytest.approx(chk.before_ms / chk.after_ms)
    assert (tmp_path / "original.onnx").is_file() and (tmp_path / "pruned.onnx").is_file()
    with pytest.raises(fxprune.LatencyCheckError, match="below the required 1000"):
        fxprune.check_latency(m, r, warmup=1, runs=4, min_speedup=1000)
    with pytest.raises(fxprune.LatencyCheckError, match="above the allowed") as ei:
        fxprune.check_latency(m, r, warmup=1, runs=4, max_latency_ms=1e-6)
    assert ei.value.check.after_ms > 0


def test_measure_latency_bad_input(tmp_path):
    with pytest.raises(fxprune.FxpruneError, match="no ONNX file"):
        measure_latency(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(fxprune.FxpruneError, match="cannot load"):
        measure_latency(bad)
    with pytest.raises(fxprune.FxpruneError, match="runs"):
        measure_latency(bad, runs=0)
    with pytest.raises(fxprune.FxpruneError, match="path or an onnxruntime session"):
        measure_latency(42)
    for kw in ({"block": 0}, {"block": 2.5}, {"pause_s": -1.0}):
        with pytest.raises(fxprune.FxpruneError, match="block=.*pause_s="):
            compare_latency(bad, bad, threads=2, **kw)


# ---- latency budgets, with fake latency functions (deterministic) ------------------------------

def _fake_latency(offset_ms=0.5, ms_per_gflop=40.0, calls=None):
    """Latency as an affine function of the model's FLOPs, plus a channel-count step (ragged
    counts cost extra, as on real CPUs), from an independent analysis of the model passed in."""
    def fn(model):
        if calls is not None:
            calls.append(model)
        g = fxprune.analyze(model, (1, 3, 64, 64))
        ragged = sum(1 for grp in g.groups if grp.size % 16) * 0.01
        return offset_ms + ms_per_gflop * g.cost.full_flops / 1e9 + ragged
    return fn


@pytest.mark.parametrize("frac", [0.4, 0.6, 0.8])
def test_latency_fraction_budget_is_met_within_5_percent(frac):
    m = torchvision.models.resnet18(weights=None).eval()
    fake = _fake_latency()
    r = fxprune.prune(m, Budget(latency=frac), example_inputs=(1, 3, 64, 64), latency_fn=fake, progress=False)
    base = fake(m)
    got = fake(r.model)  # measure the returned model independently
    assert got == pytest.approx(r.report.latency_after_ms)
    assert got <= frac * base * 1.05
    assert got >= frac * base * 0.95 - 1e-9  # does not over-prune either
    assert r.report.budget == {"latency": frac} and r.plan.budget == {"latency": frac}
    # channel counts use the default hardware-friendly multiples
    from fxprune.policies.allocation import group_multiples
    sizes = np.array([g.size for g in r.graph.groups])
    mult = group_multiples(sizes)
    counts = r.plan.kept_counts(r.graph)
    assert all(counts[g.id] % mult[g.id] == 0 or counts[g.id] == g.size for g in r.graph.prunable_groups)


def test_latency_ms_budget_and_search_trace():
    m = torchvision.models.resnet18(weights=None).eval()
    calls = []
    fake = _fake_latency(calls=calls)
    target = 0.5 * fake(m)
    r = fxprune.prune(m, Budget(latency_ms=target), example_inputs=(1, 3, 64, 64), latency_fn=fake,
                      progress=False)
    assert r.report.latency_after_ms <= target * 1.05
    steps = r.report.latency_search
    assert steps[0]["flops_fraction"] == 1.0 and len(steps) >= 3
    assert len(calls) == len(steps) + 1  # one measurement per search step, plus the check above


def test_infeasible_latency_budget_gives_the_best_latency():
    m = torchvision.models.resnet18(weights=None).eval()
    fake = _fake_latency(offset_ms=5.0)  # a fixed 5 ms that pruning cannot remove
    with pytest.raises(fxprune.BudgetError, match="cannot be met") as ei:
        fxprune.prune(m, Budget(latency_ms=1.0), example_inputs=(1, 3, 64, 64), latency_fn=fake, progress=False)
    assert ei.value.best > 5.0


def test_latency_budget_already_met_prunes_nothing():
    m = torchvision.models.resnet18(weights=None).eval()
    r = fxprune.prune(m, Budget(latency_ms=1e6), example_inputs=(1, 3, 64, 64), latency_fn=_fake_latency(),
                      progress=False)
    assert r.report.flops_ratio == pytest.approx(1.0)


def test_latency_budget_with_real_onnxruntime():
    m = torchvision.models.resnet18(weights=None).eval()
    r = fxprune.prune(m, Budget(latency=0.7), example_inputs=(1, 3, 64, 64), progress=False)
    assert r.report.latency_after_ms <= 0.7 * r.report.latency_before_ms * 1.05
    assert r.report.latency_settings["provider"] == "CPUExecutionProvider"


@pytest.mark.parametrize("text,want", [("0.5", {"flops": 0.5}), ("params=0.3", {"params": 0.3}),
                                       ("latency=0.6", {"latency": 0.6}), ("latency_ms=12", {"latency_ms": 12.0})])
def test_parse_budget(text, want):
    assert parse(text).to_dict() == want


@pytest.mark.parametrize("text", ["abc", "speed=0.5", "latency=1.5", "latency_ms=-3", "latency_ms=nan", "flops="])
def test_parse_budget_errors(text):
    with pytest.raises(fxprune.BudgetError):
        parse(text)


def test_budget_fields_are_exclusive():
    with pytest.raises(fxprune.BudgetError, match="exactly one"):
        Budget(latency=0.5, flops=0.5)
    assert dataclasses.asdict(Budget(latency_ms=3))["latency_ms"] == 3.0


def test_check_latency_bad_input():
    m = torchvision.models.resnet18(weights=None).eval()
    with pytest.raises(fxprune.FxpruneError, match="original nn.Module and the pruned model"):
        fxprune.check_latency(m, "pruned.onnx")


def test_report_save_into_a_file_is_a_clear_error(tmp_path):
    m = torchvision.models.resnet18(weights=None).eval()
    r = fxprune.prune(m, 0.5, example_inputs=(1, 3, 32, 32))
    blocker = tmp_path / "report"
    blocker.write_text("x")
    with pytest.raises(fxprune.FxpruneError, match="is a file, not a folder"):
        r.report.save(blocker)
    paths = r.report.save(tmp_path / "ok", plots=False)
    assert set(paths) == {"markdown", "json"} and paths["json"].read_text().startswith("{")


# ---- the search itself, against fake prune/latency functions: noisy, non-monotone, bounded ----

def _search(lat, floor=0.0, refuse=(), target=0.5, steps=8):
    """prune_to_latency on stand-ins: prune_at(f) refuses below ``floor`` (as a policy whose
    pinned groups keep ``floor`` of the FLOPs does) and at the fractions in ``refuse``."""
    from types import SimpleNamespace

    from fxprune.export.latency_budget import prune_to_latency

    probes = []

    def prune_at(f):
        probes.append(f)
        if f < floor or any(abs(f - r) < 1e-3 for r in refuse):
            raise fxprune.BudgetError(f"budget {f} cannot be met", best=floor)
        return SimpleNamespace(model=SimpleNamespace(f=f), report=SimpleNamespace(), plan=SimpleNamespace(meta={}))

    res = prune_to_latency(SimpleNamespace(f=1.0), Budget(latency=target), prune_at, lambda m: lat(m.f),
                           max_steps=steps, progress=False)
    return res, probes


def test_latency_search_stays_in_the_feasible_range():
    res, probes = _search(lambda f: 1.0 + 9.0 * f, floor=0.0434)  # the floor of the reported crash
    assert res.model.f >= 0.0434 and res.report.latency_after_ms <= 5.0 * 1.05
    assert res.report.latency_after_ms >= 5.0 * 0.95


def test_latency_search_survives_refused_probes_inside_the_range():
    res, _ = _search(lambda f: 1.0 + 9.0 * f, floor=0.1, refuse=(0.46,))
    assert res.report.latency_after_ms <= 5.0 * 1.05


@pytest.mark.parametrize("seed", range(5))
def test_latency_search_with_noisy_latency(seed):
    rng = np.random.default_rng(seed)
    res, _ = _search(lambda f: 1.0 + 9.0 * f + rng.normal(0, 0.15), floor=0.05)
    # what was measured meets the target; the model is not pruned much further than needed
    assert res.report.latency_after_ms <= 0.5 * res.report.latency_before_ms * 1.05
    assert res.model.f >= 0.3


def test_latency_search_with_non_monotone_latency():
    bump = lambda f: 1.0 + 9.0 * f + (1.5 if 0.40 < f < 0.48 else 0.0)  # noqa: E731 - ragged channel counts
    res, _ = _search(bump, floor=0.05)
    assert bump(res.model.f) <= 5.0 * 1.05
    steps = res.report.latency_search
    assert all(s["flops_fraction"] >= 0.05 for s in steps)


def test_latency_search_that_cannot_meet_the_target_reports_the_best_it_reached():
    with pytest.raises(fxprune.BudgetError, match="cannot be met") as ei:
        _search(lambda f: 4.0 + f, floor=0.2, target=0.3)
    assert ei.value.best == pytest.approx(4.2)


def test_ort_latency_times_probes_against_the_reference_in_the_same_window(monkeypatch):
    """A machine that slows down 2x between the baseline and a probe must not make the probe look
    2x slower: each probe is scaled by the reference measured beside it."""
    from fxprune.export import latency as lat
    from fxprune.export.latency_budget import OrtLatency

    m = torchvision.models.resnet18(weights=None).eval()
    pruned = fxprune.prune(m, 0.5, example_inputs=(1, 3, 64, 64), progress=False).model

    def stats(ms):
        return lat.Latency(median_ms=ms, p90_ms=ms, mean_ms=ms, std_ms=0.0, min_ms=ms, runs=1, warmup=0, batch=1,
                           threads=1, provider="CPUExecutionProvider", graph_optimization_level="all",
                           input_shapes=[(1, 3, 64, 64)])

    seen = []
    monkeypatch.setattr(lat, "measure_latency", lambda path, **kw: seen.append(("alone", path)) or stats(10.0))
    monkeypatch.setattr(lat, "measure_interleaved",
                        lambda paths, **kw: seen.append(("pair", tuple(paths))) or [stats(20.0), stats(12.0)])
    fn = OrtLatency((1, 3, 64, 64), reference=m)
    try:
        assert fn(m) == 10.0
        assert fn(pruned) == pytest.approx(6.0)  # 12 ms beside a 20 ms reference, on the 10 ms scale
        assert seen[1][0] == "pair" and seen[1][1][0] == seen[0][1]  # the reference is exported once
    finally:
        fn.close()
    assert not seen[0][1].exists()
