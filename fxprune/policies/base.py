"""The policy interface, its registry, and the budget arithmetic every policy shares.

A policy sees the DepGraph (with its cost model), the budget and channel importance. A *baseline*
returns kept channel counts per group (the channels kept inside a group are always its most
important ones). A *search* policy also gets ``ctx.evaluate`` (masked plan scoring on a reward
split), the graph encoder, a trainer and a :class:`~fxprune.search.SearchRun` (JSONL log,
checkpoints), and returns a :class:`PolicyResult`: a keep vector over channels, plus a model when
it changed weights (e.g. distillation between pruning steps). Policies never touch the user's
weights; searches train their own working copy.

Third-party policies register with :func:`register_policy` or through the ``fxprune.policies``
entry-point group (``name = "package.module:PolicyClass"``).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Protocol

import numpy as np

from ..budget import Budget
from ..errors import BudgetError, FxpruneError
from .allocation import group_multiples, round_nearest, round_up

log = logging.getLogger(__name__)


@dataclasses.dataclass
class PolicyContext:
    graph: Any  # DepGraph
    budget: Budget
    importance: np.ndarray  # per class
    round_to: int | str | None = "auto"  # see policies/allocation.py
    seed: int = 0
    max_prune_ratio: float = 0.9  # a group keeps at least 10% of its channels (and >= min_keep)
    data: Any = None  # DataSplits (train, reward) for searches; a loader for taylor importance
    criterion: str = "l2"  # the importance criterion's name, to re-score changed weights
    evaluator: Any = None  # fxprune.search.Evaluator on the reward split (searches only)
    trainer: Any = None  # fxprune.search.Trainer: KD fine-tuning of a working model
    run: Any = None  # fxprune.search.SearchRun: JSONL rows, checkpoints, progress
    config: dict = dataclasses.field(default_factory=dict)  # policy options (policy_config=)
    max_evals: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        g = self.graph
        self.sizes = np.array([grp.size for grp in g.groups], np.int64)
        self.multiples = group_multiples(self.sizes, self.round_to)
        self.prunable = np.zeros(len(g.groups), bool)
        for grp in g.prunable_groups:
            self.prunable[grp.id] = True
        # rank of each class inside its group, most important first
        order = np.lexsort((-self.importance, g.group_of_class))
        rank = np.empty(g.n_classes, np.int64)
        starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        rank[order] = np.arange(g.n_classes) - np.repeat(starts, self.sizes)
        self.rank = rank
        self.full = self._metric(np.ones(g.n_classes))

        self._encoder = None

    @property
    def encoder(self):
        """``(GraphEncoder, GraphFeatures)``: a seeded GAT encoder and this graph's features (built on first use)."""
        if self._encoder is None:
            from ..search.encoder import GraphEncoder, graph_features

            feats = graph_features(self.graph)
            self._encoder = (GraphEncoder(feats.x.shape[1], seed=self.seed), feats)
        return self._encoder

    def importance_of(self, model: Any) -> np.ndarray:
        """Class importance by this context's criterion, on ``model``'s current weights."""
        from .importance import class_importance

        calib = self.data
        for split in ("calibration", "train"):
            if getattr(self.data, split, None) is not None:
                calib = getattr(self.data, split)
                break
        return class_importance(self.graph, self.criterion, calib, self.seed, model=model,
                                limit=self.config.get("taylor_samples", 1024))

    # ---- budget arithmetic -------------------------------------------------------------------
    def _metric(self, keep: np.ndarray) -> float:
        c = self.graph.cost
        return float(c.params(keep) if self.budget.metric == "params" else c.flops(keep))

    def keep_vector(self, counts: np.ndarray) -> np.ndarray:
        """Keep the ``counts[g]`` most important channels of every group."""
        return (self.rank < counts[self.graph.group_of_class]).astype(np.float64)

    def ratio(self, counts: np.ndarray) -> float:
        return self._metric(self.keep_vector(counts)) / max(self.full, 1e-12)

    def floor_counts(self) -> np.ndarray:
        """The smallest count each group may keep (pinned groups keep everything)."""
        low = np.maximum(np.ceil(self.sizes * (1.0 - self.max_prune_ratio)).astype(np.int64), 1)
        low = np.maximum(low, [g.min_keep for g in self.graph.groups])
        low = self.round_counts(low)
        return np.where(self.prunable, np.minimum(low, self.sizes), self.sizes)

    def round_counts(self, counts: np.ndarray) -> np.ndarray:
        """Round up to each group's channel multiple (never above the group size)."""
        return round_up(counts, self.multiples, self.sizes)

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
        """Give channels back, one step per group per pass, while the budget still holds."""
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
        frac = self.budget.value
        counts = np.maximum(np.round(self.sizes * frac).astype(np.int64), 1)
        return np.where(self.prunable, round_nearest(counts, self.multiples, self.sizes), self.sizes)


@dataclasses.dataclass
class PolicyResult:
    """What a search policy returns."""

    keep: np.ndarray  # 0/1 per class of the graph
    model: Any = None  # the working model (same structure as graph.gm) when weights changed
    history: list[dict] = dataclasses.field(default_factory=list)  # one row per evaluation
    info: dict[str, Any] = dataclasses.field(default_factory=dict)  # summary for the report


class Policy(Protocol):
    name: str
    needs_data: bool  # search policies: prune() builds an Evaluator and a SearchRun for them

    def run(self, ctx: PolicyContext) -> np.ndarray | PolicyResult:
        """Kept channel count for every group (pinned groups: their full size), or a PolicyResult."""


_POLICIES: dict[str, Callable[[], Policy]] = {}


def register_policy(name: str, *aliases: str):
    def deco(cls):
        for n in (name, *aliases):
            _POLICIES[n] = cls
        cls.name = name
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
