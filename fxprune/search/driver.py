"""Runs a search policy: builds its evaluator, trainer and run folder, resumes or finishes it.

The run folder defaults to ``$FXPRUNE_CACHE/runs/<model>-<policy>-<key>`` (``FXPRUNE_CACHE``
defaults to ``~/.cache/fxprune``), where ``key`` hashes everything that defines the search: the
graph's signature, a checksum of the weights, the budget, policy, options, seed, importance,
rounding and the reward data. Calling ``prune`` again with the same arguments therefore finds the
folder, resumes an interrupted search from its last checkpoint, or returns a finished one's plan.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..finetune import FinetuneConfig
from ..policies.base import PolicyContext, PolicyResult
from ..policies.importance import class_importance
from .evaluate import Evaluator
from .runlog import SearchRun
from .splits import Trainer, as_splits

log = logging.getLogger(__name__)


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


def _data_checksum(ev: Evaluator) -> str:
    h = hashlib.sha1()
    for x in ev._x:
        h.update(f"{tuple(x.shape)}:{float(x.double().sum()):.9g}".encode())
    for y in ev._y or []:
        h.update(f"{int(y.long().sum())}".encode())
    return h.hexdigest()[:16]


def run_search(pol: Any, graph, budget, *, importance: str, data: Any, seed: int, round_to: int | None,
               max_prune_ratio: float, policy_config: dict | None, run_dir: str | Path | None, resume: bool,
               max_evals: int | None, n_reward: int, device: Any, progress: bool) -> tuple[PolicyResult, SearchRun]:
    splits = as_splits(data, n_reward, seed)
    cfg = dict(policy_config or {})
    ev = Evaluator(graph, splits.reward, n_samples=n_reward, batch_size=cfg.get("batch_size"), device=device,
                   budget=budget, precision=cfg.get("precision", "fp32"))
    key = {"graph": graph.signature(), "weights": _weights_checksum(graph.gm), "budget": budget.to_dict(),
           "policy": pol.name, "config": cfg, "seed": seed, "importance": importance, "round_to": round_to,
           "max_prune_ratio": max_prune_ratio, "reward_data": _data_checksum(ev), "max_evals": max_evals}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    folder = Path(run_dir) if run_dir is not None else cache_root() / "runs" / f"{graph.model_name}-{pol.name}-{digest}"
    run = SearchRun(folder, key, resume=resume, max_evals=max_evals)
    if run.result is not None:
        log.info("the search in %s has finished before; returning its result", folder)
        keep = np.ones(graph.n_classes)
        keep[np.asarray(run.result["dropped"], np.int64)] = 0.0
        model = None
        state = run.result_model_state()
        if state is not None:
            model = copy.deepcopy(graph.gm)
            model.load_state_dict(state)
        return PolicyResult(keep, model, list(run.rows), run.result.get("info", {})), run
    calib = splits.calibration or splits.train
    imp = class_importance(graph, importance, calib if importance == "taylor" else None, seed)
    trainer = Trainer(splits.train, FinetuneConfig(), device, progress) if splits.train is not None else None
    ctx = PolicyContext(graph, budget, imp, round_to, seed, max_prune_ratio, splits, criterion=importance,
                        evaluator=ev, trainer=trainer, run=run, config=cfg, max_evals=max_evals, progress=progress)
    res = pol.run(ctx)
    state = res.model.state_dict() if res.model is not None else None
    run.finish({"dropped": np.flatnonzero(res.keep < 0.5).tolist(), "info": res.info,
                "plans_per_second": ev.plans_per_second}, state)
    res.info.setdefault("plans_per_second", ev.plans_per_second)
    return res, run
