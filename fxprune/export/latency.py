"""Latency in ONNX Runtime (CPU), built for a noisy shared machine.

Every measurement warms up first, times single ``session.run`` calls and reports robust statistics
(median, p90) next to mean/std, plus the ONNX Runtime settings used. Two models are compared with
interleaved runs (A B B A … at one thread; short alternating blocks at more, see
:func:`measure_interleaved`), so drift in machine load hits both equally, and the comparison
reports the ratio of medians.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import FxpruneError

log = logging.getLogger(__name__)

Timer = Callable[[], float]  # seconds, monotonic (time.perf_counter by default)


@dataclasses.dataclass
class Latency:
    median_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    runs: int
    warmup: int
    batch: int
    threads: int
    provider: str
    graph_optimization_level: str
    input_shapes: list[tuple[int, ...]]
    model: str = ""
    spinning: bool | None = None  # ONNX Runtime's session.intra_op.allow_spinning (None: not known)

    def __str__(self) -> str:
        return (f"{self.model or 'model'}: median {self.median_ms:.3f} ms, p90 {self.p90_ms:.3f} ms, "
                f"mean {self.mean_ms:.3f} ± {self.std_ms:.3f} ms ({self.runs} runs, batch {self.batch}, "
                f"{self.threads} thread(s), {self.provider}, {self.graph_optimization_level})")


@dataclasses.dataclass
class Comparison:
    a: Latency
    b: Latency

    @property
    def speedup(self) -> float:
        """How many times faster B is than A (ratio of median latencies)."""
        return self.a.median_ms / max(self.b.median_ms, 1e-12)

    def __str__(self) -> str:
        return f"{self.a}\n{self.b}\nB is {self.speedup:.3f}x as fast as A (ratio of medians, interleaved runs)"


def _stats(samples: Sequence[float], **kw: Any) -> Latency:
    ms = np.asarray(samples, np.float64) * 1e3
    return Latency(float(np.median(ms)), float(np.percentile(ms, 90)), float(ms.mean()), float(ms.std()),
                   float(ms.min()), len(ms), **kw)


class _Runner:
    """One ONNX Runtime session with fixed random inputs of the requested batch size."""

    def __init__(self, source: Any, threads: int, batch: int, input_shapes: Sequence[Sequence[int]] | None,
                 optimization: str, seed: int, spinning: bool = True):
        from .onnx_export import session

        if isinstance(source, (str, Path)):
            if not Path(source).is_file():
                raise FxpruneError(f"no ONNX file at '{source}'")
            try:
                self.sess = session(source, threads, optimization, spinning)
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
                raise FxpruneError(f"ONNX Runtime cannot load '{source}': {exc}") from exc
            self.name = Path(source).name
        elif hasattr(source, "run") and hasattr(source, "get_inputs"):
            self.sess, self.name = source, "session"
        else:
            raise FxpruneError(f"measure_latency() takes an ONNX file path or an onnxruntime session, "
                               f"got {type(source).__name__}")
        rng = np.random.default_rng(seed)
        self.feed = {}
        ins = self.sess.get_inputs()
        if input_shapes is not None and len(input_shapes) != len(ins):
            raise FxpruneError(f"{len(input_shapes)} input shapes given, the model has {len(ins)} inputs")
        self.shapes = []
        for k, i in enumerate(ins):
            if input_shapes is not None:
                shape = tuple(int(s) for s in input_shapes[k])
            else:
                shape = tuple(batch if d == 0 and not isinstance(s, int) else s for d, s in enumerate(i.shape))
                if d_bad := [s for s in shape if not isinstance(s, int)]:
                    raise FxpruneError(f"input '{i.name}' has dynamic dims {d_bad} besides the batch; "
                                       "pass input_shapes=")
                if shape and shape[0] != batch and isinstance(i.shape[0], int):
                    log.warning("input '%s' has a fixed batch of %d; measuring at that batch", i.name, shape[0])
            dtype = np.float32 if "float" in i.type else np.int64
            self.feed[i.name] = (rng.standard_normal(shape).astype(dtype) if dtype == np.float32
                                 else np.zeros(shape, dtype))
            self.shapes.append(shape)
        opts = self.sess.get_session_options()
        self.threads = opts.intra_op_num_threads
        self.level = str(opts.graph_optimization_level).rsplit(".", 1)[-1]
        get = getattr(opts, "get_session_config_entry", None)  # None: not an onnxruntime session
        try:
            self.spinning: bool | None = None if get is None else get("session.intra_op.allow_spinning") != "0"
        except RuntimeError:  # the entry was never set: ONNX Runtime's default, spinning
            self.spinning = True
        self.provider = self.sess.get_providers()[0]

    def time_once(self, timer: Timer) -> float:
        t = timer()
        self.sess.run(None, self.feed)
        return timer() - t

    def stats(self, samples, warmup: int, batch: int) -> Latency:
        return _stats(samples, warmup=warmup, batch=self.shapes[0][0] if self.shapes and self.shapes[0] else batch,
                      threads=self.threads, provider=self.provider, graph_optimization_level=self.level,
                      input_shapes=self.shapes, model=self.name, spinning=self.spinning)


def _check_counts(threads: int, batch: int, warmup: int, runs: int) -> None:
    for name, v, lo in (("threads", threads, 1), ("batch", batch, 1), ("warmup", warmup, 0), ("runs", runs, 2)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise FxpruneError(f"{name}={v!r} must be an integer >= {lo}")


def measure_latency(onnx_path_or_session: Any, *, threads: int = 1, batch: int = 1, warmup: int = 10,
                    runs: int = 50, input_shapes: Sequence[Sequence[int]] | None = None,
                    optimization: str = "all", timer: Timer = time.perf_counter, seed: int = 0,
                    progress: bool = False, spinning: bool = True) -> Latency:
    """Median/p90/mean/std latency of one ``session.run`` in ONNX Runtime (CPU provider).

    A path gets a fresh session with ``threads`` intra-op threads, graph optimization
    ``optimization`` (all/extended/basic/none) and ONNX Runtime's default thread spinning
    (``spinning=False`` turns it off); a session is used as it is. Inputs are random, with the
    dynamic batch dim set to ``batch``. ``timer`` is injectable (tests, other clocks).
    """
    _check_counts(threads, batch, warmup, runs)
    r = _Runner(onnx_path_or_session, threads, batch, input_shapes, optimization, seed, spinning)
    for _ in range(warmup):
        r.time_once(timer)
    from tqdm.auto import tqdm

    samples = [r.time_once(timer) for _ in tqdm(range(runs), desc=f"latency {r.name}", disable=not progress,
                                                leave=False)]
    return r.stats(samples, warmup, batch)


def measure_interleaved(sources: Sequence[Any], *, threads: int = 1, batch: int = 1, warmup: int = 10,
                        runs: int = 50, input_shapes: Sequence[Sequence[int]] | None = None,
                        optimization: str = "all", timer: Timer = time.perf_counter, seed: int = 0,
                        progress: bool = False, spinning: bool = True, block: int = 10, pause_s: float = 0.05,
                        sleep: Callable[[float], None] = time.sleep) -> list[Latency]:
    """Measure several models in rounds whose order rotates and reverses from round to round, so
    load changes on the machine affect all of them alike.

    At one intra-op thread every round runs each model once. With more threads, a session's idle
    pool threads keep spinning for a while after its run and would steal a core from the next
    model's run; so every round gives each model a block: ``pause_s`` of sleep (the other
    session's threads go idle), one untimed run (its own threads wake up), then ``block`` timed
    runs (``benchmarks/ort_threading.py`` measures the difference on this machine).
    """
    _check_counts(threads, batch, warmup, runs)
    if isinstance(block, bool) or not isinstance(block, int) or block < 1 or pause_s < 0:
        raise FxpruneError(f"block={block!r} must be an integer >= 1 and pause_s={pause_s!r} >= 0")
    runners = [_Runner(s, threads, batch, input_shapes, optimization, seed, spinning) for s in sources]
    for _ in range(warmup):
        for r in runners:
            r.time_once(timer)
    samples: list[list[float]] = [[] for _ in runners]
    from tqdm.auto import tqdm

    n = len(runners)
    pooled = any(r.threads != 1 for r in runners)  # 0 = ONNX Runtime's default: one thread per core
    per_round = block if pooled else 1
    rounds = -(-runs // per_round)
    for k in tqdm(range(rounds), desc="latency (interleaved)", disable=not progress, leave=False):
        order = [(i + k // 2) % n for i in range(n)]
        for i in (order if k % 2 == 0 else order[::-1]):
            if pooled:
                sleep(pause_s)
                runners[i].time_once(timer)
            samples[i] += [runners[i].time_once(timer) for _ in range(min(per_round, runs - k * per_round))]
    return [r.stats(s, warmup, batch) for r, s in zip(runners, samples)]


def compare_latency(a: Any, b: Any, *, threads: int = 1, batch: int = 1, warmup: int = 10, runs: int = 50,
                    input_shapes: Sequence[Sequence[int]] | None = None, optimization: str = "all",
                    timer: Timer = time.perf_counter, seed: int = 0, progress: bool = False,
                    spinning: bool = True, block: int = 10, pause_s: float = 0.05,
                    sleep: Callable[[float], None] = time.sleep) -> Comparison:
    """Measure A and B interleaved (A B, then B A, ... so neither always runs first; in blocks at
    more than one thread, see :func:`measure_interleaved`); ``Comparison.speedup`` is
    median(A) / median(B)."""
    la, lb = measure_interleaved([a, b], threads=threads, batch=batch, warmup=warmup, runs=runs,
                                 input_shapes=input_shapes, optimization=optimization, timer=timer, seed=seed,
                                 progress=progress, spinning=spinning, block=block, pause_s=pause_s, sleep=sleep)
    return Comparison(la, lb)
