"""The pruning report: per-group and per-layer channels before/after, FLOPs, params (and, when
measured, ONNX Runtime latency) before/after, pinned groups and why. Plain data with text,
Markdown and JSON views; ``Report.save(folder)`` also draws PNG plots (``report_plots.py``)."""
from __future__ import annotations

import dataclasses
import json
import shutil
import math
from pathlib import Path
from typing import Any

import torch

from .errors import FxpruneError
from .ir.context import shape_of
from .ir.summary import _fmt
from .policies.allocation import describe_rounding


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
    flops_before: float = 0.0  # MACs of this layer (conv/linear modules), per example input
    flops_after: float = 0.0

    @property
    def kept_ratio(self) -> float:
        """Output channels (dim 0 of the weight) kept."""
        return self.weight_after[0] / self.weight_before[0] if self.weight_before and self.weight_before[0] else 1.0


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
    round_to: int | str | None = None  # channel multiples (policies/allocation.py)
    latency_before_ms: float | None = None  # ONNX Runtime medians, when measured
    latency_after_ms: float | None = None
    latency_settings: dict[str, Any] | None = None
    latency_search: list[dict[str, float]] | None = None  # steps of a latency-budget search
    search: dict[str, Any] | None = None  # search policies: run_dir, evaluations, info
    # a model whose forward is untraceable: the traced parts that were pruned, why the rest was
    # not, and the whole model's MACs (torch.utils.flop_counter) before/after
    regions: list[str] | None = None
    untraced: str | None = None
    whole_flops_before: float | None = None
    whole_flops_after: float | None = None
    specialisations: list[str] = dataclasses.field(default_factory=list)

    @property
    def flops_ratio(self) -> float:
        return self.flops_after / max(self.flops_before, 1e-12)

    @property
    def params_ratio(self) -> float:
        return self.params_after / max(self.params_before, 1e-12)

    @property
    def pinned(self) -> list[GroupRow]:
        return [g for g in self.groups if g.pinned]

    @property
    def speedup(self) -> float | None:
        if self.latency_before_ms is None or self.latency_after_ms is None:
            return None
        return self.latency_before_ms / max(self.latency_after_ms, 1e-12)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["flops_ratio"], d["params_ratio"], d["speedup"] = self.flops_ratio, self.params_ratio, self.speedup
        for row, layer in zip(d["layers"], self.layers):
            row["kept_ratio"] = layer.kept_ratio
        return d

    def save(self, folder: str | Path, plots: bool = True) -> dict[str, Path]:
        """Write ``report.md``, ``report.json`` and (``plots``) ``kept_channels.png`` and
        ``flops_share.png`` into ``folder`` (created if needed); return the paths by name."""
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise FxpruneError(f"cannot write the report into '{folder}': it is a file, not a folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / ".write-test").write_text("")
            (folder / ".write-test").unlink()
        except OSError as exc:
            raise FxpruneError(f"cannot write the report into '{folder}': {exc.strerror or exc}") from exc
        out = {"markdown": folder / "report.md", "json": folder / "report.json"}
        if plots:
            from .report_plots import plot_flops_share, plot_kept_channels

            out["kept_channels"] = plot_kept_channels(self, folder / "kept_channels.png")
            out["flops_share"] = plot_flops_share(self, folder / "flops_share.png")
            if self.jaccard():
                from .report_plots import plot_jaccard

                out["jaccard"] = plot_jaccard(self, folder / "jaccard.png")
            curve = Path(self.search["run_dir"]) / "reward_curve.png" if self.search else None
            if curve is not None and curve.exists():
                out["reward_curve"] = folder / "reward_curve.png"
                shutil.copyfile(curve, out["reward_curve"])
        md = self.to_markdown()
        if plots:
            md += "\n## Plots\n\n![kept channels per layer](kept_channels.png)\n\n![FLOPs share per layer](flops_share.png)\n"
            if "reward_curve" in out:
                md += "\n![search reward per evaluation](reward_curve.png)\n"
            if "jaccard" in out:
                md += "\n![learned mask vs L1 mask per group](jaccard.png)\n"
        out["markdown"].write_text(md)
        out["json"].write_text(self.to_json())
        return out

    def jaccard(self) -> dict[int, float]:
        """Per group, the overlap of a learned mask with the L1 mask of the same size (policies
        that choose channels themselves, e.g. ``ppo``), else empty."""
        jac = ((self.search or {}).get("info") or {}).get("jaccard") or {}
        return {int(k): float(v) for k, v in jac.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def to_markdown(self) -> str:
        out = [f"# fxprune report: {self.model}", "",
               f"budget {self.budget}, policy `{self.policy}`, importance `{self.importance}`, "
               f"channel rounding: {describe_rounding(self.round_to)}", "",
               "| | before | after | ratio |", "|---|---:|---:|---:|",
               f"| FLOPs (MACs) | {_fmt(self.flops_before)} | {_fmt(self.flops_after)} | {self.flops_ratio:.3f} |",
               f"| params | {_fmt(self.params_before)} | {_fmt(self.params_after)} | {self.params_ratio:.3f} |"]
        if self.whole_flops_before is not None:
            out.append(f"| whole-model MACs (flop_counter) | {_fmt(self.whole_flops_before)} | "
                       f"{_fmt(self.whole_flops_after)} | {self.whole_flops_after / max(self.whole_flops_before, 1e-12):.3f} |")
        if self.speedup is not None:
            out.append(f"| latency (ms, ONNX Runtime) | {self.latency_before_ms:.3f} | {self.latency_after_ms:.3f} | "
                       f"{1 / self.speedup:.3f} (speedup {self.speedup:.2f}x) |")
        if self.latency_settings:
            out += ["", "Latency measured with " + ", ".join(f"{k} {v}" for k, v in self.latency_settings.items()) + "."]
        if self.latency_search:
            out += ["", "Latency search: " + "; ".join(
                f"FLOPs {s['flops_fraction']:.3f} -> {s['latency_ms']:.3f} ms" for s in self.latency_search) + "."]
        if self.search:
            info = self.search.get("info", {})
            out += ["", f"Search: {self.search.get('evaluations')} evaluations, "
                    f"{len(info.get('steps', []))} steps, {info.get('plans_per_second', float('nan')):.2f} plans/s; "
                    f"log and checkpoints in `{self.search.get('run_dir')}`"
                    + (f"; repaired by {info['repaired']} channels to meet the budget" if info.get("repaired") else "")
                    + "."]
            if info.get("updates") is not None:
                out[-1] = out[-1].replace(f"{len(info.get('steps', []))} steps", f"{info.get('episodes')} episodes, "
                                          f"{info['updates']} policy updates")
                out += ["", f"The plan kept is the {info.get('chosen', '?')} (best sampled reward-split score "
                        f"{info.get('best_sampled_score', float('nan')):.4f})."]
        if self.regions:
            out += ["", "## Traced parts", "", f"The model's forward is not traceable ({self.untraced}); FLOPs and "
                    "the budget count the parts that are, which were pruned inside: "
                    + ", ".join(f"`{r}`" for r in self.regions) + ". Their inputs and outputs keep their channels."]
        if self.specialisations:
            out += ["", "Control flow on shapes was specialised to the example input: "
                    + "; ".join(self.specialisations[:10]) + "."]
        out += ["", "## Pinned groups", ""]
        out += [f"- group {g.id} ({g.size} channels; {', '.join(g.modules[:3]) or '-'}): {g.reason}" for g in self.pinned]
        jac = self.jaccard()
        out += ["" if self.pinned else "none", "", "## Groups", ""]
        if jac:
            out += ["Jaccard: overlap of the learned keep mask with the L1-norm mask of the same size (1: the "
                    "policy kept exactly the largest-norm channels).", ""]
        out += ["| group | channels before | after | modules | pinned because |" + (" Jaccard vs L1 |" if jac else ""),
                "|---:|---:|---:|---|---|" + ("---:|" if jac else "")]
        for g in self.groups:
            mods = ", ".join(g.modules[:3]) + (f" (+{len(g.modules) - 3})" if len(g.modules) > 3 else "")
            out.append(f"| {g.id} | {g.size} | {g.kept} | {mods} | {g.reason if g.pinned else ''} |"
                       + (f" {jac[g.id]:.2f} |" if g.id in jac else (" |" if jac else "")))
        out += ["", "## Layers", "", "| layer | kind | weight before | weight after | kept | MACs before | MACs after |",
                "|---|---|---|---|---:|---:|---:|"]
        out += [f"| {r.name} | {r.kind} | {tuple(r.weight_before)} | {tuple(r.weight_after)} | {r.kept_ratio:.2f} | "
                f"{_fmt(r.flops_before)} | {_fmt(r.flops_after)} |" for r in self.layers]
        return "\n".join(out) + "\n"

    def __str__(self) -> str:
        lines = [f"fxprune: {self.model} pruned with policy '{self.policy}' (importance '{self.importance}'), budget {self.budget}",
                 f"  FLOPs  {_fmt(self.flops_before):>9} -> {_fmt(self.flops_after):>9}  ({self.flops_ratio:.3f})",
                 f"  params {_fmt(self.params_before):>9} -> {_fmt(self.params_after):>9}  ({self.params_ratio:.3f})",
                 *([f"  latency {self.latency_before_ms:.3f} ms -> {self.latency_after_ms:.3f} ms (speedup "
                    f"{self.speedup:.2f}x, ONNX Runtime)"] if self.speedup is not None else []),
                 f"  groups: {sum(1 for g in self.groups if g.kept < g.size)} pruned, "
                 f"{sum(1 for g in self.groups if not g.pinned)} prunable, {len(self.pinned)} pinned",
                 f"  channel rounding: {describe_rounding(self.round_to)}"]
        if self.regions:
            lines.append(f"  forward not traceable; pruned inside: {', '.join(self.regions)}")
            lines.append(f"  whole model (flop_counter): {_fmt(self.whole_flops_before)} -> "
                         f"{_fmt(self.whole_flops_after)} MACs")
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


def _weights(gm: torch.nn.Module) -> dict[str, tuple[str, list[int], int]]:
    out = {}
    for name, mod in gm.named_modules():
        w = getattr(mod, "weight", None)
        if isinstance(w, torch.Tensor):
            out[name] = (type(mod).__name__, list(w.shape), w.numel())
    return out


_MAC_LAYERS = (torch.nn.modules.conv._ConvNd, torch.nn.Linear)


def _out_positions(graph) -> dict[str, int]:
    """Per conv/linear module: output positions each weight element is used at (summed over calls)."""
    modules = dict(graph.gm.named_modules())
    pos: dict[str, int] = {}
    for n in graph.gm.graph.nodes:
        if n.op != "call_module" or not isinstance(modules.get(n.target), _MAC_LAYERS):
            continue
        shape = shape_of(n)
        if shape is None:
            continue
        # batch included, as in the cost model
        spatial = shape[:1] + shape[2:] if isinstance(modules[n.target], torch.nn.modules.conv._ConvNd) else shape[:-1]
        pos[n.target] = pos.get(n.target, 0) + int(math.prod(spatial))
    return pos


def build_report(graph, plan, pruned: torch.nn.Module, *, budget: dict, policy: str, importance: str,
                 round_to: int | str | None = None) -> Report:
    keep = graph.keep_vector(plan.keep)
    counts = plan.kept_counts(graph)
    groups = [GroupRow(g.id, g.size, int(counts[g.id]), g.pinned, g.reasons[0] if g.reasons else "",
                       g.modules()) for g in graph.groups]
    before, after = _weights(graph.gm), _weights(pruned)
    pos = _out_positions(graph)
    layers = []
    for n, (k, s, numel) in before.items():
        _, s2, numel2 = after.get(n, (k, s, numel))
        p = pos.get(n, 0)
        layers.append(LayerRow(n, k, s, s2, float(numel * p), float(numel2 * p)))
    rep = Report(graph.model_name, budget, policy, importance, graph.cost.full_flops,
                 float(graph.cost.flops(keep)), graph.cost.full_params, float(graph.cost.params(keep)),
                 groups, layers, dict(graph.leaves), round_to, specialisations=list(graph.specialisations))
    if graph.regions:
        from .ir.flops import model_macs

        rep.regions, rep.untraced = [r.path for r in graph.regions], graph.untraced
        rep.whole_flops_before = graph.whole_flops
        rep.whole_flops_after = model_macs(pruned, graph.example_inputs)
    return rep
