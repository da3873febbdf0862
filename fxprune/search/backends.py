"""Where ``Evaluator.evaluate_many`` runs its plans: one process (``local``), a pool of local
worker processes (``processes``) or a Ray cluster (``ray``). Policies never know which.

Every backend returns the metrics in the order of the plans it was given (results are matched
to plans by their index, never by completion order), and every worker scores with the head's
current working weights, so a search returns the same plan and logs the same metrics whichever
backend and however many workers ran it.

What travels, and who trusts whom:

- head → workers, once: the evaluator itself (the traced model, its reward and calibration
  data, its options), pickled by the head (``Evaluator.for_workers``). Workers unpickle it, so a
  worker must trust the head that started it.
- head → workers, when they change: the working weights as safetensors bytes, with a checksum
  (a search that trains, such as mcq or sac, changes them between batches).
- workers → head: per plan, the metrics as a JSON string. The head parses JSON and nothing
  else: nothing a worker sends is unpickled by fxprune.

``processes`` and ``ray`` workers evaluate with one torch thread each (``torch.set_num_threads(1)``).
A worker that dies is replaced and its plans are scored again (plan evaluation is idempotent).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pickle
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import FxpruneError, OptionError

log = logging.getLogger(__name__)
BACKENDS = ("local", "processes", "ray")


def weights_blob(state: dict[str, torch.Tensor]) -> tuple[str, bytes]:
    """(checksum, safetensors bytes) of a state dict."""
    from safetensors.torch import save

    data = save({k: v.detach().cpu().contiguous() for k, v in state.items()})
    return hashlib.sha1(data).hexdigest()[:16], data


class _Worker:
    """One worker's evaluator: built from the head's pickled evaluator, re-weighted on demand."""

    def __init__(self, spec: bytes):
        torch.set_num_threads(1)
        self.ev = pickle.loads(spec)  # noqa: S301 - the head's own evaluator; workers trust the head
        self.version = None

    def score(self, version: str, blob: bytes, plans: list[list[float]]) -> list[str]:
        if version != self.version:
            from safetensors.torch import load

            self.ev.load_state_dict(load(blob))
            self.version = version
        return [json.dumps(self.ev.evaluate(np.asarray(p, np.float64)).to_dict()) for p in plans]


def _parse(text: str):
    from .evaluate import Metrics

    return Metrics(**json.loads(text))


@dataclasses.dataclass
class WorkerStats:
    """One worker's plans: in flight now, done, retried (scored again after the worker died), and
    the most it had in flight during the last batch."""

    in_flight: int = 0
    done: int = 0
    retried: int = 0
    peak_in_flight: int = 0


@dataclasses.dataclass
class BackendStats:
    """Plans in flight, done and retried, per worker (for the progress bar and ``workers.jsonl``).

    Workers are named ``local``, ``actor K`` (Ray) or ``pid N`` (worker processes). A process pool
    does not say which process took a chunk until it returns, so its plans in flight (and plans
    retried after a process died) are counted under ``pool``."""

    workers: dict[str, WorkerStats] = dataclasses.field(default_factory=dict)
    restarts: int = 0  # workers replaced
    on_change: Any = None  # called with the stats whenever a count changes (the progress bar)

    def _w(self, name: str) -> WorkerStats:
        return self.workers.setdefault(name, WorkerStats())

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    def new_batch(self) -> None:
        for w in self.workers.values():
            w.peak_in_flight = w.in_flight

    def submit(self, worker: str, n: int) -> None:
        w = self._w(worker)
        w.in_flight += n
        w.peak_in_flight = max(w.peak_in_flight, w.in_flight)
        self._changed()

    def finish(self, worker: str, n: int, done_by: str | None = None, retried: bool = False) -> None:
        """``n`` plans of ``worker`` left flight: done (by ``done_by``, default the same worker)
        or failed and queued again (``retried``)."""
        w = self._w(worker)
        w.in_flight -= n
        if retried:
            w.retried += n
        else:
            self._w(done_by or worker).done += n
        self._changed()

    @property
    def done(self) -> dict[str, int]:
        return {k: w.done for k, w in self.workers.items() if w.done}

    @property
    def retried(self) -> int:
        return sum(w.retried for w in self.workers.values())

    @property
    def in_flight(self) -> int:
        return sum(w.in_flight for w in self.workers.values())

    def to_dict(self) -> dict[str, Any]:
        return {"workers": {k: dataclasses.asdict(w) for k, w in sorted(self.workers.items())},
                "in_flight": self.in_flight, "done": sum(self.done.values()), "retried": self.retried,
                "workers_replaced": self.restarts}

    def short(self) -> str:
        """Per worker: in flight / done / retried (the progress bar's postfix)."""
        return " ".join(f"{k.replace(' ', '')}:{w.in_flight}/{w.done}/{w.retried}"
                        for k, w in sorted(self.workers.items()))

    def line(self) -> str:
        per = ", ".join(f"{k}: {w.in_flight} in flight, {w.done} done, {w.retried} retried"
                        for k, w in sorted(self.workers.items()))
        return f"{sum(self.done.values())} plans done ({per}); workers replaced {self.restarts}"


class LocalBackend:
    """In this process, one plan after the other (the default)."""

    name, workers = "local", 1

    def __init__(self):
        self.stats = BackendStats()

    def run(self, ev, plans: Sequence[np.ndarray]) -> list:
        out = [ev._evaluate_here(p) for p in plans]
        self.stats.submit("local", len(out))
        self.stats.finish("local", len(out))
        return out

    def close(self) -> None:
        pass


def _chunks(n: int, k: int) -> list[range]:
    """``n`` items in ``k`` contiguous chunks of about equal size (empty ones dropped)."""
    bounds = np.linspace(0, n, k + 1).round().astype(int)
    return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


class _Remote:
    """What the pool-based backends share: the head's spec, the weights version and blob."""

    def __init__(self, workers: int):
        self.workers = workers
        self.stats = BackendStats()
        self._spec: bytes | None = None

    def _sync(self, ev) -> tuple[str, bytes]:
        """The evaluator's spec (once) and the current weights (version, bytes)."""
        if self._spec is None:
            self._spec = ev.for_workers()
        return weights_blob(ev.state_dict())

    def _record(self, out: list, idx: range, texts: list[str], slot: str, worker: str) -> None:
        """Parse a chunk's metrics into their plans' places; they leave ``slot``'s flight, done by
        ``worker``."""
        for i, t in zip(idx, texts):
            out[i] = _parse(t)
        self.stats.finish(slot, len(idx), done_by=worker)


class ProcessBackend(_Remote):
    """A pool of local worker processes (spawned), for a multi-core machine without Ray."""

    name = "processes"

    def __init__(self, workers: int | None = None):
        super().__init__(workers or max(1, (os.cpu_count() or 2) - 1))
        self._pool = None

    def _start(self) -> None:
        import concurrent.futures
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self._pool = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_proc_init,
                                                            initargs=(self._spec,))

    def run(self, ev, plans: Sequence[np.ndarray]) -> list:
        import concurrent.futures

        version, blob = self._sync(ev)
        if self._pool is None:
            self._start()
        vecs = [np.asarray(p, np.float64).tolist() for p in plans]
        out: list[Any] = [None] * len(vecs)
        todo = _chunks(len(vecs), self.workers * 2)
        attempts = 0
        self.stats.new_batch()
        while todo:
            if getattr(self._pool, "_broken", False):  # a worker died between batches: a fresh pool
                self.stats.restarts += 1
                self._stop()
                self._start()
            try:
                futures = {self._pool.submit(_proc_score, version, blob, [vecs[i] for i in r]): r for r in todo}
            except concurrent.futures.process.BrokenProcessPool:
                futures = {}
            self.stats.submit("pool", sum(len(r) for r in todo))
            failed = [] if futures else list(todo)
            for fut in concurrent.futures.as_completed(futures):
                r = futures[fut]
                try:
                    texts, pid = fut.result()
                except concurrent.futures.process.BrokenProcessPool:
                    failed.append(r)
                    continue
                self._record(out, r, texts, "pool", f"pid {pid}")
            if failed:
                # a worker died: a fresh pool, and its plans again
                self.stats.finish("pool", sum(len(r) for r in failed), retried=True)
                attempts += 1
                if attempts > 3:
                    raise FxpruneError("plan evaluation: worker processes keep dying; see their stderr")
                log.warning("a worker process died; restarting the pool and retrying %d plans",
                            sum(len(r) for r in failed))
                self.stats.restarts += 1
                self._stop()
                self._start()
            todo = failed
        return out

    def _stop(self) -> None:
        """End the pool without waiting on it (a killed worker can leave its queues locked)."""
        procs = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)
        self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._stop()


_PROC: dict[str, Any] = {}


def _proc_init(spec: bytes) -> None:
    _PROC["worker"] = _Worker(spec)


def _proc_score(version: str, blob: bytes, plans: list[list[float]]) -> tuple[list[str], int]:
    return _PROC["worker"].score(version, blob, plans), os.getpid()


class RayBackend(_Remote):
    """One evaluator actor per worker slot on a Ray cluster (``pip install "fxprune[ray]"``):
    ``ray.init(address=...)`` when an address is given (or ``RAY_ADDRESS`` is set), a local
    cluster otherwise. The evaluator goes into the object store once, the weights whenever they
    change; actors restart when they die and their plans are retried; at most ``2 x workers``
    chunks are in flight. With ``gpus_per_worker`` (1 when the search runs on CUDA) each actor
    holds a GPU."""

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None, gpus_per_worker: float = 0.0):
        try:
            import ray
        except ImportError as exc:
            raise OptionError('backend="ray" needs Ray: pip install "fxprune[ray]"') from exc
        self.ray = ray
        if not ray.is_initialized():
            addr = address or os.environ.get("RAY_ADDRESS")
            if addr:
                ray.init(address=addr, log_to_driver=False)
            else:
                ray.init(num_cpus=workers or None, log_to_driver=False, include_dashboard=False)
            self._owns = True
        else:
            self._owns = False
        super().__init__(workers or max(1, int(ray.cluster_resources().get("CPU", 1))))
        self.gpus = gpus_per_worker
        self.actors: list[Any] = []
        self._spec_ref = self._blob_ref = None
        self._blob_version = None

    def _start(self) -> None:
        ray = self.ray
        cls = ray.remote(num_cpus=1, num_gpus=self.gpus, max_restarts=-1, max_task_retries=3)(_Worker)
        self._spec_ref = ray.put(self._spec)
        self.actors = [cls.remote(self._spec_ref) for _ in range(self.workers)]

    def run(self, ev, plans: Sequence[np.ndarray]) -> list:
        ray = self.ray
        version, blob = self._sync(ev)
        if not self.actors:
            self._start()
        if version != self._blob_version:
            self._blob_ref, self._blob_version = ray.put(blob), version
        vecs = [np.asarray(p, np.float64).tolist() for p in plans]
        out: list[Any] = [None] * len(vecs)
        queue = list(_chunks(len(vecs), self.workers * 2))
        pending: dict[Any, tuple[range, int]] = {}
        free = list(range(len(self.actors)))
        self.stats.new_batch()
        while queue or pending:
            while queue and free:
                r, a = queue.pop(0), free.pop(0)
                ref = self.actors[a].score.remote(version, self._blob_ref, [vecs[i] for i in r])
                pending[ref] = (r, a)
                self.stats.submit(f"actor {a}", len(r))
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            r, a = pending.pop(ref)
            free.append(a)
            try:
                texts = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
                log.warning("evaluator actor %d died; retrying its %d plans", a, len(r))
                self.stats.finish(f"actor {a}", len(r), retried=True)
                self.stats.restarts += 1
                queue.append(r)
                continue
            self._record(out, r, texts, f"actor {a}", f"actor {a}")
        return out

    def close(self) -> None:
        for a in self.actors:
            try:
                self.ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors = []
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()


def check_backend(name: Any, workers: Any) -> None:
    """OptionError for an unknown backend or a bad worker count (before any work is done)."""
    if name not in BACKENDS:
        raise OptionError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise OptionError(f"workers={workers!r} must be a positive integer")
    if workers not in (None, 1) and name == "local":
        raise OptionError(f'workers={workers} needs backend="processes" or backend="ray"')


def make_backend(name: str, workers: int | None = None, address: str | None = None, device: Any = None):
    """The backend called ``name`` (``local``, ``processes``, ``ray``)."""
    check_backend(name, workers)
    if name == "local":
        return LocalBackend()
    if name == "processes":
        return ProcessBackend(workers)
    gpus = 1.0 if device is not None and torch.device(device).type == "cuda" else 0.0
    return RayBackend(workers, address, gpus)
