"""The public API: thin orchestration of analyze -> importance -> policy -> plan -> surgery."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from .budget import Budget
from .errors import FxpruneError, NothingToPrune, OptionError, PlanError
from .ir import DepGraph, analyze
from .ir.trace import inputs_from_spec
from .passes import pruned_model
from .plan import Plan
from .policies import CRITERIA, PolicyResult, get_policy, make_context
from .policies.driver import SearchOptions, parse_config, run_search
from .policies.allocation import AUTO, check_round_to
from .search.backends import check_backend
from .report import build_report
from .result import PruneResult

log = logging.getLogger(__name__)

_FORMAT = "fxprune-1"


def _ignore_names(model: torch.nn.Module, ignore: Iterable[Any]) -> list[str]:
    names = {id(m): n for n, m in model.named_modules()}
    out = []
    for item in ignore or ():
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, torch.nn.Module) and id(item) in names:
            out.append(names[id(item)])
        else:
            raise FxpruneError(f"ignore= takes module names or submodules of the model; got {item!r}")
    return out


def _apply_ignore(graph: DepGraph, names: list[str]) -> None:
    for name in names:
        hit = False
        for g in graph.groups:
            if any(m == name or m.startswith(name + ".") for m in g.modules()):
                hit = True
                if not g.pinned:
                    g.pinned = True
                    g.reasons.insert(0, f"ignored by the user ('{name}')")
        if not hit:
            raise FxpruneError(f"ignore= names '{name}', which owns no channel group of the model")


def _check_model(model: Any) -> None:
    if not isinstance(model, torch.nn.Module):
        raise FxpruneError(f"expected a torch.nn.Module, got {type(model).__name__}")
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_meta:
            raise FxpruneError(f"the model's '{name}' is on the meta device (no values): materialise or load "
                               "the weights first (e.g. model.to_empty(device='cpu') and load_state_dict)")


def _check_options(importance: str, round_to: Any, n_reward: Any, max_prune_ratio: Any, seed: Any) -> None:
    if importance not in CRITERIA:
        raise OptionError(f"unknown importance {importance!r}; choose one of {CRITERIA}")
    check_round_to(round_to)
    if isinstance(n_reward, bool) or not isinstance(n_reward, int) or n_reward < 1:
        raise OptionError(f"n_reward={n_reward!r} must be a positive integer (reward samples)")
    if isinstance(max_prune_ratio, bool) or not isinstance(max_prune_ratio, (int, float)) \
            or not 0.0 < float(max_prune_ratio) < 1.0:
        raise OptionError(f"max_prune_ratio={max_prune_ratio!r} must be a number in (0, 1)")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise OptionError(f"seed={seed!r} must be a non-negative integer")


def prune(model: torch.nn.Module, budget: Any, *, example_inputs: Any = None, policy: Any = "global",
          importance: str = "l2", round_to: int | str | None = "auto", ignore: Iterable[Any] = (),
          data: Any = None, seed: int = 0, max_prune_ratio: float = 0.9, latency_fn: Any = None,
          latency_threads: int = 1, progress: bool = True, policy_config: dict | None = None,
          run_dir: str | Path | None = None, resume: bool = True, max_evals: int | None = None,
          n_reward: int = 1000, device: Any = None, backend: str = "local", workers: int | None = None) -> PruneResult:
    """Prune ``model`` to ``budget`` and return a new, smaller model with its plan and report.

    ``budget``: a float (fraction of FLOPs to keep) or a :class:`Budget`. ``policy``: a registered
    name ("global", "uniform", "mcq", ...). ``importance``: one of ``l1, l2, bn, taylor, random``
    (``taylor`` needs ``data``). ``round_to``: channel multiples; ``"auto"`` (default) picks them per
    group for ONNX Runtime on CPU (:mod:`fxprune.policies.allocation`), ``N`` keeps every count a
    multiple of N, ``1`` turns rounding off. ``ignore``: submodules (names or objects) whose
    channels must stay. ``model`` is never modified.

    Latency budgets (``Budget(latency=...)``, ``Budget(latency_ms=...)``) run a measured search
    (:mod:`fxprune.export.latency_budget`) in ONNX Runtime with ``latency_threads`` threads;
    ``latency_fn(module) -> ms`` replaces the measurement (another runtime, a fake timer in tests).

    Search policies (``policy="mcq"``) score candidate plans on a reward split of ``data`` (a
    DataLoader of training ``(inputs, targets)``, an :class:`fxprune.data.ArrayDataset`, or
    :class:`fxprune.search.DataSplits`; see :mod:`fxprune.search.splits`): ``n_reward`` samples on
    ``device``. ``policy_config``: the policy's typed options (e.g. ``{"rounds": 2}``; unknown keys
    and wrong types are an :class:`OptionError` naming the key). The search logs one JSONL row per
    evaluation and checkpoints into ``run_dir`` (default: a folder under ``$FXPRUNE_CACHE`` keyed by
    the call, so the same call resumes; ``resume=False`` restarts). ``max_evals`` caps the
    evaluations. The weights a search trains go into the pruned model. ``backend``: where plan
    evaluations run: ``"local"`` (this process), ``"processes"`` (``workers`` local processes) or
    ``"ray"`` (``workers`` evaluator actors on a Ray cluster: the one at ``$RAY_ADDRESS``, or a local
    one); the search returns the same plan on any of them (:mod:`fxprune.search.backends`).
    """
    _check_model(model)
    budget = Budget.coerce(budget)
    _check_options(importance, round_to, n_reward, max_prune_ratio, seed)
    check_backend(backend, workers)
    round_to = AUTO if round_to is None else round_to
    if budget.is_latency:
        return _prune_to_latency(model, budget, latency_fn, latency_threads, progress,
                                 dict(example_inputs=example_inputs, policy=policy, importance=importance,
                                      round_to=round_to, ignore=ignore, data=data, seed=seed,
                                      max_prune_ratio=max_prune_ratio))
    pol = get_policy(policy)
    ignore_names = _ignore_names(model, ignore)
    opts = SearchOptions(data, policy_config, run_dir, resume, max_evals, n_reward, device, progress, backend, workers)
    if getattr(pol, "needs_data", False):
        parse_config(pol, policy_config)  # bad options fail before the model is analysed
    elif policy_config:
        raise OptionError(f"policy '{pol.name}' takes no policy_config (got {sorted(policy_config)})")
    graph = analyze(model, example_inputs)
    _apply_ignore(graph, ignore_names)
    if not graph.prunable_groups:
        reasons = sorted({r for g in graph.groups for r in g.reasons[:1]})
        why = f" (its forward is not traceable: {graph.untraced})" if graph.untraced else ""
        raise NothingToPrune(f"nothing in {graph.model_name} is prunable{why}; every group is pinned: "
                             + "; ".join(reasons[:5]))
    common = dict(importance=importance, seed=seed, round_to=round_to, max_prune_ratio=max_prune_ratio)
    if getattr(pol, "needs_data", False):
        keep_vec, weights, search, ev = _search(pol, graph, budget, opts, common)
    else:
        keep_vec, weights, search, ev = _fixed(pol, graph, budget, data, common), None, None, None
    return _finish(graph, keep_vec, weights, search, budget, pol.name, ignore_names, policy_config, common, ev)


def _fixed(pol: Any, graph: DepGraph, budget: Budget, data: Any, common: dict) -> np.ndarray:
    """A baseline policy: kept counts per group (or a PolicyResult) -> a keep vector."""
    ctx = make_context(graph, budget, data=data, **common)
    out = pol.run(ctx)
    if isinstance(out, PolicyResult):
        return np.asarray(out.keep, np.float64)
    return ctx.keep_vector(np.asarray(out, np.int64))


def _search(pol: Any, graph: DepGraph, budget: Budget, opts: SearchOptions, common: dict):
    res, run, ev = run_search(pol, graph, budget, opts, **common)
    search = {"run_dir": str(run.folder), "evaluations": run.n_evals, "history": res.history, "info": res.info}
    return np.asarray(res.keep, np.float64), (res.model.cpu() if res.model is not None else None), search, ev


def _finish(graph: DepGraph, keep_vec: np.ndarray, weights: Any, search: dict | None, budget: Budget, policy: str,
            ignore_names: list[str], policy_config: dict | None, common: dict, ev: Any = None) -> PruneResult:
    keep = {g.id: np.flatnonzero(keep_vec[g.classes] > 0.5) for g in graph.groups}
    achieved = {"flops_ratio": float(graph.cost.flops(keep_vec) / graph.cost.full_flops),
                "params_ratio": float(graph.cost.params(keep_vec) / graph.cost.full_params)}
    meta = {**achieved, "ignore": ignore_names, **({"policy_config": policy_config} if policy_config else {})}
    plan = Plan.from_graph(graph, keep, budget=budget.to_dict(), policy=policy, importance=common["importance"],
                           seed=common["seed"], round_to=common["round_to"], meta=meta)
    pruned = pruned_model(graph, plan, weights)  # surgery on the weights a search trained, if any
    if ev is not None and ev.recalibrate(pruned):  # the norm statistics the search's scores assumed
        search["info"]["final_bn_recalib"] = ev.bn_recalib
    report = build_report(graph, plan, pruned, budget=budget.to_dict(), policy=policy,
                          importance=common["importance"], round_to=common["round_to"])
    if search is not None:
        report.search = {k: v for k, v in search.items() if k != "history"}
    log.info("pruned %s: FLOPs ratio %.3f, params ratio %.3f", graph.model_name,
             achieved["flops_ratio"], achieved["params_ratio"])
    return PruneResult(pruned, plan, report, graph, search)


def _prune_to_latency(model, budget: Budget, latency_fn, threads: int, progress: bool, kw: dict) -> PruneResult:
    from .export.latency_budget import OrtLatency, prune_to_latency

    fn = latency_fn if latency_fn is not None else OrtLatency(kw["example_inputs"], threads=threads,
                                                              reference=model)
    try:
        res = prune_to_latency(model, budget, lambda f: prune(model, Budget(flops=f), progress=False, **kw), fn,
                               progress=progress)
    finally:
        if latency_fn is None:
            fn.close()
    res.report.budget = res.plan.budget = budget.to_dict()
    if latency_fn is None:
        res.report.latency_settings = {"provider": "CPUExecutionProvider", "intra-op threads": threads,
                                       "graph optimization": "ORT_ENABLE_ALL", "batch": 1,
                                       "timing": "each probe interleaved with the original"}
    return res


def apply_plan(model: torch.nn.Module, plan: Plan, example_inputs: Any = None) -> PruneResult:
    """Re-apply a saved plan to a fresh model of the same architecture."""
    _check_model(model)
    if example_inputs is None and plan.input_shapes:
        example_inputs = inputs_from_spec(plan.input_shapes)
    graph = analyze(model, example_inputs)
    pruned = pruned_model(graph, plan)
    report = build_report(graph, plan, pruned, budget=plan.budget or {}, policy=plan.policy or "",
                          importance=plan.importance or "", round_to=plan.round_to)
    return PruneResult(pruned, plan, report, graph)


def save(result: PruneResult, path: str | Path, arch: str | None = None) -> Path:
    """Write the pruned weights (safetensors) with the plan (JSON) in the file's metadata.

    ``arch``: how to rebuild the unpruned model, e.g. ``"torchvision:resnet18"`` or
    ``"timm:resnet50"``; with it, ``load(path)`` (and the CLI) need no model argument.
    """
    from safetensors.torch import save_file

    if not isinstance(result, PruneResult):
        raise FxpruneError(f"save() takes a PruneResult, got {type(result).__name__}")
    if arch is not None and (not isinstance(arch, str) or ":" not in arch):
        raise OptionError(f"arch={arch!r} must be 'torchvision:NAME' or 'timm:NAME'")
    path = Path(path)
    writable_file(path, "save")
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in result.model.state_dict().items()}
    meta = {"format": _FORMAT, "plan": result.plan.to_json()}
    if arch:
        meta["arch"] = arch
    try:
        save_file(tensors, str(path), metadata=meta)
    except Exception as exc:  # noqa: BLE001 - safetensors reports OS errors as its own type
        raise FxpruneError(f"cannot write '{path}': {exc}") from exc
    return path


def writable_file(path: Path, what: str) -> None:
    """Raise a clear error unless ``path`` can be written (its folder exists and is writable)."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise FxpruneError(f"{what}: '{path}' is a folder; give a file name such as '{path / 'model.safetensors'}'")
    if not folder.is_dir():
        raise FxpruneError(f"{what}: cannot write '{path}': folder '{folder}' does not exist")
    if not os.access(folder, os.W_OK):
        raise FxpruneError(f"{what}: cannot write '{path}': folder '{folder}' is not writable")
    existed = path.exists()
    try:
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise FxpruneError(f"{what}: cannot write '{path}': {exc.strerror or exc}") from None
    if not existed:
        path.unlink()


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a file written by :func:`save` (format, plan JSON, arch); clear errors otherwise."""
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    path = Path(path)
    if not path.is_file():
        raise FxpruneError(f"no saved fxprune model at '{path}'")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise FxpruneError(f"'{path}' is not a readable safetensors file: {exc}") from exc
    if meta.get("format") != _FORMAT or "plan" not in meta:
        raise FxpruneError(f"'{path}' is a safetensors file but not one written by fxprune.save()")
    return meta


def load(path: str | Path, model: torch.nn.Module | None = None, example_inputs: Any = None) -> PruneResult:
    """Rebuild a saved pruned model: re-apply its plan to ``model`` (a fresh model of the same
    architecture; it is not modified) and load the saved weights. ``model`` may be left out when
    the file was saved with ``arch=``. Nothing is unpickled."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_metadata(path)
    if model is None:
        if "arch" not in meta:
            raise FxpruneError(f"'{path}' does not record its architecture; pass the unpruned model to load()")
        from .zoo import build_model

        model = build_model(meta["arch"])
    _check_model(model)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise FxpruneError(f"'{path}' is not a readable safetensors file: {exc}") from exc
    plan = Plan.from_json(meta["plan"])
    result = apply_plan(model, plan, example_inputs)
    try:
        result.model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise PlanError(f"saved weights in '{path}' do not fit the re-pruned model: {exc}") from exc
    return result
