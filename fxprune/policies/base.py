"""The policy interface, its registry, and the context every policy runs in.

A policy sees the DepGraph (with its cost model), the budget, channel importance and the plan
arithmetic of :class:`~fxprune.policies.allocation.Allocation`. A *baseline* returns kept
channel counts per group (the channels kept inside a group are always its most important ones).
A *search* policy (``needs_data = True``) registers with a typed options class
(``@register_policy("mcq", config=MCQConfig)``) and also gets the substrate: ``ctx.evaluator``
(plan scoring on a reward split), ``ctx.trainer``, ``ctx.run`` (JSONL log, checkpoints), the graph
encoder; it returns a :class:`PolicyResult`: a keep vector over channels, plus the working model
when it changed weights. A policy changes weights only of its own working copy, and only through
the trainer (``with ctx.evaluator.training(keep) as model``); never the user's model.

Third-party policies register with :func:`register_policy` or through the ``fxprune.policies``
entry-point group (``name = "package.module:PolicyClass"``).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

from ..budget import Budget
from ..errors import BudgetError, FxpruneError
from .allocation import AUTO, Allocation, round_nearest

if TYPE_CHECKING:  # the substrate's types, for readers and type checkers
    from ..ir import DepGraph
    from ..search import Evaluator, SearchRun, Trainer
    from ..search.config import SearchConfig
    from ..search.splits import DataSplits

log = logging.getLogger(__name__)


@dataclasses.dataclass
class PolicyContext:
    """Everything a policy may use. Build it with :func:`make_context`."""

    graph: "DepGraph"
    budget: Budget
    importance: np.ndarray  # per class
    alloc: Allocation
    round_to: int | str = AUTO
    seed: int = 0
    max_prune_ratio: float = 0.9
    criterion: str = "l2"  # the importance criterion's name, to re-score changed weights
    data: "DataSplits | Any" = None  # DataSplits for searches; a loader for taylor importance
    config: "SearchConfig | None" = None  # the policy's typed options
    evaluator: "Evaluator | None" = None
    trainer: "Trainer | None" = None
    run: "SearchRun | None" = None
    max_evals: int | None = None
    progress: bool = True
    _encoder: Any = dataclasses.field(default=None, repr=False)

    # plan arithmetic (see Allocation) --------------------------------------------------------------
    @property
    def sizes(self) -> np.ndarray:
        return self.alloc.sizes

    @property
    def prunable(self) -> np.ndarray:
        return self.alloc.prunable

    @property
    def rank(self) -> np.ndarray:
        return self.alloc.rank

    @property
    def multiples(self) -> np.ndarray:
        return self.alloc.multiples

    @property
    def full(self) -> float:
        return self.alloc.full

    def keep_vector(self, counts: np.ndarray) -> np.ndarray:
        return self.alloc.keep_vector(counts)

    def ratio(self, counts: np.ndarray) -> float:
        return self.alloc.ratio(counts)

    def floor_counts(self) -> np.ndarray:
        return self.alloc.floor

    def round_counts(self, counts: np.ndarray) -> np.ndarray:
        return self.alloc.round_counts(counts)

    def check_feasible(self) -> None:
        if self.budget.metric == "channels":
            return
        best = self.ratio(self.floor_counts())
        if best > self.budget.value + 1e-12:
            raise BudgetError(
                f"budget {self.budget} cannot be met: the best achievable {self.budget.metric} ratio "
                f"is {best:.3f} ({int(self.prunable.sum())} of {len(self.sizes)} groups are prunable; "
                f"pinned groups and the per-group floor of {1 - self.max_prune_ratio:.0%} keep the rest)",
                best=best)

    def fill(self, counts: np.ndarray, order: Callable[[np.ndarray], np.ndarray], passes: int = 64) -> np.ndarray:
        """Give channels back, one multiple per group per pass, while the budget still holds."""
        counts = counts.copy()
        for _ in range(passes):
            changed = False
            for g in order(counts):
                if not self.prunable[g] or counts[g] >= self.sizes[g]:
                    continue
                trial = counts.copy()
                trial[g] = min(counts[g] + self.multiples[g], self.sizes[g])
                if self.ratio(trial) <= self.budget.value:
                    counts, changed = trial, True
            if not changed:
                break
        return counts

    def channel_counts(self) -> np.ndarray:
        counts = np.maximum(np.round(self.sizes * self.budget.value).astype(np.int64), 1)
        return np.where(self.prunable, round_nearest(counts, self.multiples, self.sizes), self.sizes)

    # the substrate ---------------------------------------------------------------------------------
    @property
    def encoder(self):
        """``(GraphEncoder, GraphFeatures)``: a seeded GAT encoder and this graph's features (built on first use)."""
        if self._encoder is None:
            from ..search.encoder import GraphEncoder
            from ..search.features import graph_features

            feats = graph_features(self.graph)
            self._encoder = (GraphEncoder(feats.x.shape[1], seed=self.seed), feats)
        return self._encoder

    def require_search(self, policy: str, why: str) -> None:
        """A search policy's precondition: the driver built its evaluator and run folder (``data=``)."""
        if self.evaluator is None or self.run is None:
            raise FxpruneError(f"policy '{policy}' needs data= ({why})")

    def importance_of(self, model: Any) -> np.ndarray:
        """Class importance by this context's criterion, on ``model``'s current weights."""
        from ..importance import class_importance

        calib = getattr(self.data, "calibration", None) or getattr(self.data, "train", None) or self.data
        limit = self.config.taylor_samples if self.config is not None else 1024
        return class_importance(self.graph, self.criterion, calib, self.seed, model=model, limit=limit)


def make_context(graph, budget: Budget, *, importance: str = "l2", round_to: int | str = AUTO, seed: int = 0,
                 max_prune_ratio: float = 0.9, data: Any = None, scores: np.ndarray | None = None,
                 **substrate: Any) -> PolicyContext:
    """The one place a :class:`PolicyContext` is built: importance scores (``scores``, or computed
    by the ``importance`` criterion on ``data``), the allocation arithmetic, and for searches the
    substrate objects (``config``, ``evaluator``, ``trainer``, ``run``, ``max_evals``, ``progress``)."""
    from ..importance import class_importance

    if scores is None:
        calib = getattr(data, "calibration", None) or getattr(data, "train", None) or data
        scores = class_importance(graph, importance, calib if importance == "taylor" else None, seed)
    alloc = Allocation(graph, budget, scores, round_to, max_prune_ratio)
    return PolicyContext(graph, budget, scores, alloc, round_to, seed, max_prune_ratio, importance, data, **substrate)


@dataclasses.dataclass
class PolicyResult:
    """What a search policy returns."""

    keep: np.ndarray  # 0/1 per class of the graph
    model: Any = None  # the working model (same structure as graph.gm) when weights changed
    history: list[dict] = dataclasses.field(default_factory=list)  # one row per evaluation
    info: dict[str, Any] = dataclasses.field(default_factory=dict)  # summary for the report


class Policy(Protocol):
    name: str
    needs_data: bool  # search policies: prune() builds an Evaluator, Trainer and SearchRun for them
    config_class: type | None  # the typed options (search policies)

    def run(self, ctx: PolicyContext) -> np.ndarray | PolicyResult:
        """Kept channel count for every group (pinned groups: their full size), or a PolicyResult."""


_POLICIES: dict[str, Callable[[], Policy]] = {}


def register_policy(name: str, *aliases: str, config: type | None = None):
    """Class decorator: register a policy under ``name`` (and ``aliases``); ``config``: its typed
    options class (a :class:`~fxprune.search.config.SearchConfig` subclass) for ``policy_config``."""
    def deco(cls):
        for n in (name, *aliases):
            _POLICIES[n] = cls
        cls.name = name
        cls.config_class = config
        return cls

    return deco


ENTRY_POINT_GROUP = "fxprune.policies"


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _load_entry_point(name: str) -> bool:
    ep = _entry_points().get(name)
    if ep is None:
        return False
    try:
        cls = ep.load()
    except Exception as exc:  # any import error of a plug-in is reported with its name
        raise FxpruneError(f"policy '{name}' from entry point '{ep.value}' failed to load: {exc}") from exc
    if not hasattr(cls, "run"):
        raise FxpruneError(f"entry point '{ep.value}' for policy '{name}' has no run(ctx) method")
    _POLICIES[name] = cls
    if not isinstance(getattr(cls, "name", None), str):
        cls.name = name
    return True


def get_policy(name: str) -> Policy:
    if isinstance(name, str) and (name in _POLICIES or _load_entry_point(name)):
        return _POLICIES[name]()
    if not isinstance(name, str) and hasattr(name, "run"):
        return name
    raise FxpruneError(f"unknown policy {name!r}; registered: {available_policies()}")


def available_policies() -> list[str]:
    """Registered names and aliases, plus the ``fxprune.policies`` entry points installed."""
    return sorted(set(_POLICIES) | set(_entry_points()))
