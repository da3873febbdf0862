"""The pruning report: per-group and per-layer channels before/after, FLOPs and params before/
after, pinned groups and why. Plain data: text, Markdown and JSON views."""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import torch

from .ir.summary import _fmt


@dataclasses.dataclass
class GroupRow:
    id: int
    size: int
    kept: int
    pinned: bool
    reason: str
    modules: list[str]


@dataclasses.dataclass
class LayerRow:
    name: str
    kind: str
    weight_before: list[int]
    weight_after: list[int]


@dataclasses.dataclass
class Report:
    model: str
    budget: dict[str, float]
    policy: str
    importance: str
    flops_before: float
    flops_after: float
    params_before: float
    params_after: float
    groups: list[GroupRow]
    layers: list[LayerRow]
    leaves: dict[str, str]
    round_to: int | None = None

    @property
    def flops_ratio(self) -> float:
        return self.flops_after / max(self.flops_before, 1e-12)

    @property
    def params_ratio(self) -> float:
        return self.params_after / max(self.params_before, 1e-12)

    @property
    def pinned(self) -> list[GroupRow]:
        return [g for g in self.groups if g.pinned]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["flops_ratio"], d["params_ratio"] = self.flops_ratio, self.params_ratio
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def to_markdown(self) -> str:
        out = [f"# fxprune report: {self.model}", "",
               f"budget {self.budget}, policy `{self.policy}`, importance `{self.importance}`"
               + (f", round_to {self.round_to}" if self.round_to else ""), "",
               "| | before | after | ratio |", "|---|---:|---:|---:|",
               f"| FLOPs (MACs) | {_fmt(self.flops_before)} | {_fmt(self.flops_after)} | {self.flops_ratio:.3f} |",
               f"| params | {_fmt(self.params_before)} | {_fmt(self.params_after)} | {self.params_ratio:.3f} |",
               "", "## Groups", "", "| group | channels before | after | modules | pinned because |",
               "|---:|---:|---:|---|---|"]
        for g in self.groups:
            mods = ", ".join(g.modules[:3]) + (f" (+{len(g.modules) - 3})" if len(g.modules) > 3 else "")
            out.append(f"| {g.id} | {g.size} | {g.kept} | {mods} | {g.reason if g.pinned else ''} |")
        out += ["", "## Layers", "", "| layer | kind | weight before | weight after |", "|---|---|---|---|"]
        out += [f"| {r.name} | {r.kind} | {tuple(r.weight_before)} | {tuple(r.weight_after)} |" for r in self.layers]
        return "\n".join(out) + "\n"

    def __str__(self) -> str:
        lines = [f"fxprune: {self.model} pruned with policy '{self.policy}' (importance '{self.importance}'), budget {self.budget}",
                 f"  FLOPs  {_fmt(self.flops_before):>9} -> {_fmt(self.flops_after):>9}  ({self.flops_ratio:.3f})",
                 f"  params {_fmt(self.params_before):>9} -> {_fmt(self.params_after):>9}  ({self.params_ratio:.3f})",
                 f"  groups: {sum(1 for g in self.groups if g.kept < g.size)} pruned, "
                 f"{sum(1 for g in self.groups if not g.pinned)} prunable, {len(self.pinned)} pinned"]
        changed = [r for r in self.layers if r.weight_before != r.weight_after]
        lines.append(f"  layers resized: {len(changed)} of {len(self.layers)}")
        for r in changed[:12]:
            lines.append(f"    {r.name:<40} {tuple(r.weight_before)} -> {tuple(r.weight_after)}")
        if len(changed) > 12:
            lines.append(f"    ... {len(changed) - 12} more (report.layers)")
        if self.pinned:
            lines.append("  pinned groups:")
            for g in self.pinned[:10]:
                lines.append(f"    group {g.id} ({g.size} ch, {', '.join(g.modules[:2]) or '-'}): {g.reason}")
            if len(self.pinned) > 10:
                lines.append(f"    ... {len(self.pinned) - 10} more (report.pinned)")
        for path, why in self.leaves.items():
            lines.append(f"  untraceable submodule '{path}' kept whole: {why}")
        return "\n".join(lines)


def _weights(gm: torch.nn.Module) -> dict[str, tuple[str, list[int]]]:
    out = {}
    for name, mod in gm.named_modules():
        w = getattr(mod, "weight", None)
        if isinstance(w, torch.Tensor):
            out[name] = (type(mod).__name__, list(w.shape))
    return out


def build_report(graph, plan, pruned: torch.nn.Module, *, budget: dict, policy: str, importance: str,
                 round_to: int | None = None) -> Report:
    keep = graph.keep_vector(plan.keep)
    counts = plan.kept_counts(graph)
    groups = [GroupRow(g.id, g.size, int(counts[g.id]), g.pinned, g.reasons[0] if g.reasons else "",
                       g.modules()) for g in graph.groups]
    before, after = _weights(graph.gm), _weights(pruned)
    layers = [LayerRow(n, k, s, after.get(n, (k, s))[1]) for n, (k, s) in before.items()]
    return Report(graph.model_name, budget, policy, importance, graph.cost.full_flops,
                  float(graph.cost.flops(keep)), graph.cost.full_params, float(graph.cost.params(keep)),
                  groups, layers, dict(graph.leaves), round_to)
