"""Runs a search policy: parses its options, builds its evaluator, trainer and run folder, and
resumes or finishes it.

The run folder defaults to ``$FXPRUNE_CACHE/runs/<model>-<policy>-<key>`` (``FXPRUNE_CACHE``
defaults to ``~/.cache/fxprune``), where ``key`` hashes everything that defines the search: the
graph's signature, a checksum of the weights, the budget, policy, options, seed, importance,
rounding and the reward data. Calling ``prune`` again with the same arguments therefore finds the
folder, resumes an interrupted search from its last checkpoint, or returns a finished one's plan.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import OptionError
from ..finetune import FinetuneConfig
from ..search import Evaluator, SearchRun, Trainer
from ..search.config import SearchConfig, config_from_dict, to_dict
from ..search.backends import make_backend
from ..search.evaluate import require_whole_graph
from ..search.splits import as_splits
from .base import PolicyResult, make_context

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SearchOptions:
    """What a search needs beyond the budget (the search arguments of ``fxprune.prune``)."""

    data: Any = None
    policy_config: dict | None = None
    run_dir: str | Path | None = None
    resume: bool = True
    max_evals: int | None = None
    n_reward: int = 1000
    device: Any = None
    progress: bool = True
    backend: str = "local"  # where plan evaluations run (fxprune.search.backends)
    workers: int | None = None


def cache_root() -> Path:
    return Path(os.environ.get("FXPRUNE_CACHE", Path.home() / ".cache" / "fxprune"))


def _weights_checksum(model: torch.nn.Module) -> str:
    h = hashlib.sha1()
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point() and t.numel():
                t = t.detach().double()
                h.update(f"{name}:{float(t.abs().sum()):.9g}:{float(t.flatten()[0]):.9g}".encode())
    return h.hexdigest()[:16]


def _log_backend(run: SearchRun, backend: Any) -> None:
    """One line per remote batch in ``workers.jsonl`` of the run folder (not in ``evals.jsonl``,
    which is the same whichever backend ran the search): per worker, plans in flight at the
    batch's peak, done and retried (totals so far), and the workers replaced."""
    with open(run.folder / "workers.jsonl", "a") as f:
        f.write(json.dumps({"backend": backend.name, **backend.stats.to_dict()}) + "\n")
    log.info("plan evaluation on %s: %s", backend.name, backend.stats.line())


def _worker_bar(backend: Any, progress: bool):
    """A progress bar of plans done on the workers; its postfix shows, per worker, plans in
    flight / done / retried (``actor0:2/14/0``), updated as chunks go out and come back."""
    from tqdm.auto import tqdm

    bar = tqdm(desc=f"plans ({backend.name})", unit="plan", disable=not progress, leave=False)
    last = [0.0]

    def on_change(st) -> None:
        bar.set_postfix_str(st.short(), refresh=False)
        bar.update(sum(st.done.values()) - bar.n)
        if time.monotonic() - last[0] > 0.5:
            bar.refresh()
            last[0] = time.monotonic()

    backend.stats.on_change = on_change
    return bar


def parse_config(pol: Any, policy_config: Any) -> SearchConfig:
    """The policy's typed options from the user's dict (OptionError naming the key otherwise)."""
    cls = getattr(pol, "config_class", None) or SearchConfig
    try:
        return config_from_dict(cls, policy_config)
    except OptionError as exc:
        raise OptionError(f"policy '{pol.name}': {exc}") from None


def _probe_data(splits: Any, cfg: SearchConfig) -> Any:
    """The training probe's data: the search's TRAIN split (disjoint from the reward split)."""
    if not cfg.reward_train_steps:
        return None
    if splits.train is None:
        raise OptionError("reward_train_steps needs training data: DataSplits.train is None")
    return splits.train


def run_search(pol: Any, graph, budget, opts: SearchOptions, *, importance: str, seed: int, round_to: Any,
               max_prune_ratio: float) -> tuple[PolicyResult, SearchRun, Evaluator]:
    cfg = parse_config(pol, opts.policy_config)
    require_whole_graph(graph)
    splits = as_splits(opts.data, opts.n_reward, seed, n_calib=cfg.bn_recalib * cfg.bn_batch, calib_batch=cfg.bn_batch)
    ev = Evaluator(graph, splits.reward, n_samples=opts.n_reward, batch_size=cfg.batch_size, device=opts.device,
                   budget=budget, precision=cfg.precision, mode=cfg.eval_mode, bn_recalib=cfg.bn_recalib,
                   calibration=splits.calibration, score=cfg.reward_score, train_steps=cfg.reward_train_steps,
                   train_data=_probe_data(splits, cfg), train_lr=cfg.reward_train_lr,
                   train_batch=cfg.reward_train_batch)
    key = {"graph": graph.signature(), "weights": _weights_checksum(graph.gm), "budget": budget.to_dict(),
           "policy": pol.name, "config": to_dict(cfg), "seed": seed, "importance": importance, "round_to": round_to,
           "max_prune_ratio": max_prune_ratio, "reward_data": ev.fingerprint(), "max_evals": opts.max_evals}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    folder = Path(opts.run_dir) if opts.run_dir is not None else \
        cache_root() / "runs" / f"{graph.model_name}-{pol.name}-{digest}"
    run = SearchRun(folder, key, resume=opts.resume, max_evals=opts.max_evals)
    if run.result is not None:
        log.info("the search in %s has finished before; returning its result", folder)
        keep = np.ones(graph.n_classes)
        keep[np.asarray(run.result["dropped"], np.int64)] = 0.0
        model = None
        state = run.result_model_state()
        if state is not None:
            model = copy.deepcopy(graph.gm)
            model.load_state_dict(state)
        return PolicyResult(keep, model, list(run.rows), run.result.get("info", {})), run, ev
    trainer = Trainer(splits.train, FinetuneConfig(), opts.device, opts.progress) if splits.train is not None else None
    ctx = make_context(graph, budget, importance=importance, round_to=round_to, seed=seed,
                       max_prune_ratio=max_prune_ratio, data=splits, config=cfg, evaluator=ev, trainer=trainer,
                       run=run, max_evals=opts.max_evals, progress=opts.progress)
    ev.backend = make_backend(opts.backend, opts.workers, device=opts.device)
    bar = None
    if opts.backend != "local":
        ev.on_batch = lambda b: _log_backend(run, b)
        bar = _worker_bar(ev.backend, opts.progress)
    try:
        res = pol.run(ctx)
    finally:
        ev.backend.close()
        if bar is not None:
            bar.close()
    res.info["backend"] = {"name": opts.backend, "workers": ev.backend.workers,
                           "retried": ev.backend.stats.retried, "workers_replaced": ev.backend.stats.restarts}
    state = res.model.state_dict() if res.model is not None else None
    res.info.setdefault("plans_per_second", ev.plans_per_second)
    res.info.setdefault("bn_recalib", cfg.bn_recalib)
    res.info.setdefault("eval_mode", ev.mode)
    res.info.setdefault("reward_score", ev.score)
    res.info.setdefault("reward_train_steps", ev.train_steps)
    run.finish({"dropped": np.flatnonzero(res.keep < 0.5).tolist(), "info": res.info,
                "plans_per_second": ev.plans_per_second}, state)
    return res, run, ev
