"""Plan: the only thing a policy produces. Kept channel indices per group, plus metadata."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import PlanError

PLAN_VERSION = 1


@dataclasses.dataclass
class Plan:
    """``keep[gid]`` = sorted kept channel indices of group ``gid``; groups not listed are kept
    whole. ``signature`` ties the plan to the DepGraph it was made for."""

    keep: dict[int, list[int]]
    signature: str
    model: str = ""
    input_shapes: list[Any] = dataclasses.field(default_factory=list)  # see ir.trace.input_spec
    group_sizes: dict[int, int] = dataclasses.field(default_factory=dict)
    budget: dict[str, Any] | None = None
    policy: str | None = None
    importance: str | None = None
    seed: int | None = None
    round_to: int | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    version: int = PLAN_VERSION

    @classmethod
    def empty(cls, graph) -> "Plan":
        return cls.from_graph(graph, {})

    @classmethod
    def from_graph(cls, graph, keep: dict[int, Any], **meta: Any) -> "Plan":
        """A plan for ``graph``; groups that keep every channel are left out."""
        clean: dict[int, list[int]] = {}
        for gid, idx in keep.items():
            idx = sorted(int(i) for i in np.asarray(idx).ravel())
            if len(idx) < graph.groups[int(gid)].size:
                clean[int(gid)] = idx
        return cls(keep=clean, signature=graph.signature(), model=graph.model_name,
                   input_shapes=list(graph.input_shapes),
                   group_sizes={g.id: g.size for g in graph.groups}, **meta)

    # ---- validation --------------------------------------------------------------------------
    def validate(self, graph) -> None:
        """Raise ``PlanError`` unless this plan can be applied to ``graph``."""
        if self.signature != graph.signature():
            raise PlanError(
                f"plan was made for another architecture ({self.model or 'unknown'}, signature "
                f"{self.signature}); this model is {graph.model_name} with signature {graph.signature()}")
        for gid, idx in self.keep.items():
            if not 0 <= int(gid) < len(graph.groups):
                raise PlanError(f"plan names group {gid}, but the graph has {len(graph.groups)} groups")
            g = graph.groups[int(gid)]
            arr = np.asarray(idx, np.int64)
            if g.pinned and arr.size < g.size:
                raise PlanError(f"plan prunes group {gid}, which is pinned: {g.reasons[:1]}")
            if arr.size < g.min_keep:
                raise PlanError(f"plan keeps {arr.size} channels of group {gid}; at least {g.min_keep} must stay")
            if arr.size and (arr.min() < 0 or arr.max() >= g.size):
                raise PlanError(f"plan keeps index out of range for group {gid} of size {g.size}")
            if np.unique(arr).size != arr.size:
                raise PlanError(f"plan keeps duplicate indices in group {gid}")

    def kept_counts(self, graph) -> np.ndarray:
        counts = np.array([g.size for g in graph.groups], np.int64)
        for gid, idx in self.keep.items():
            counts[int(gid)] = len(idx)
        return counts

    # ---- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["keep"] = {str(k): list(map(int, v)) for k, v in self.keep.items()}
        d["group_sizes"] = {str(k): int(v) for k, v in self.group_sizes.items()}
        return d

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Plan":
        if not isinstance(d, dict) or "keep" not in d or "signature" not in d:
            raise PlanError("not an fxprune plan: 'keep' and 'signature' are required")
        if int(d.get("version", PLAN_VERSION)) > PLAN_VERSION:
            raise PlanError(f"plan version {d['version']} is newer than this fxprune ({PLAN_VERSION})")
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in fields}
        try:
            kw["keep"] = {int(k): [int(i) for i in v] for k, v in d["keep"].items()}
            kw["group_sizes"] = {int(k): int(v) for k, v in d.get("group_sizes", {}).items()}
        except (TypeError, ValueError, AttributeError) as exc:
            raise PlanError(f"malformed plan: {exc}") from exc
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise PlanError(f"plan is not valid JSON: {exc}") from exc

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        p = Path(path)
        if not p.is_file():
            raise PlanError(f"no plan file at '{p}'")
        return cls.from_json(p.read_text())
