"""Human-readable views of a DepGraph: a text table and a networkx graph."""
from __future__ import annotations

import networkx as nx

from .registry import describe


def _fmt(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}"


def summary(graph, max_rows: int | None = 60) -> str:
    c = graph.cost
    lines = [
        f"DepGraph of {graph.model_name}: {len(graph.groups)} channel groups, "
        f"{len(graph.prunable_groups)} prunable, {len(graph.pinned_groups)} pinned; "
        f"{_fmt(c.full_params)} params, {_fmt(c.full_flops)} FLOPs (MACs) at input {graph.input_shapes}",
    ]
    if not graph.prunable_groups:
        lines.append("NOTHING IS PRUNABLE: every channel group is pinned (reasons below).")
    for path, why in graph.leaves.items():
        lines.append(f"untraceable submodule kept as a leaf: '{path}': {why}")
    lines.append(f"{'gid':>4} {'size':>6} {'state':<7} {'flops-dep':>9}  modules / reason")
    rows = graph.groups if max_rows is None else graph.groups[:max_rows]
    for g in rows:
        mods = g.modules()
        mtxt = ", ".join(mods[:4]) + (f" (+{len(mods) - 4})" if len(mods) > 4 else "")
        dep = c.full_flops - c.group_cost(g.id, 0)["flops"]
        state = "pinned" if g.pinned else "prune"
        lines.append(f"{g.id:>4} {g.size:>6} {state:<7} {dep / max(c.full_flops, 1):>8.1%}  {mtxt or '-'}")
        if g.pinned:
            lines.append(f"{'':>29}why: {g.reasons[0] if g.reasons else 'unknown'}")
    if max_rows is not None and len(graph.groups) > max_rows:
        lines.append(f"... {len(graph.groups) - max_rows} more groups (summary(max_rows=None) lists all)")
    return "\n".join(lines)


def to_networkx(graph) -> nx.DiGraph:
    """Op nodes (one per fx node) with data-flow edges, plus one node per group linked to the
    op nodes whose parameters it indexes (edge attribute ``role``)."""
    g = nx.DiGraph()
    modules = dict(graph.gm.named_modules())
    owner: dict[str, str] = {}
    for n in graph.gm.graph.nodes:
        tm = n.meta.get("tensor_meta")
        g.add_node(n.name, kind="op", op=n.op, target=str(n.target),
                   desc=describe(n, modules) if n.op.startswith("call") else n.op,
                   shape=tuple(tm.shape) if hasattr(tm, "shape") else None)
        for a in n.all_input_nodes:
            g.add_edge(a.name, n.name, kind="flow")
        if n.op in ("call_module", "get_attr"):
            owner.setdefault(n.target, n.name)
    for grp in graph.groups:
        gname = f"group:{grp.id}"
        g.add_node(gname, kind="group", size=grp.size, pinned=grp.pinned, reasons=list(grp.reasons))
        for m in grp.members:
            mod = m.param.rsplit(".", 1)[0] if m.param not in owner else m.param
            node = owner.get(mod) or owner.get(m.param)
            if node is not None:
                g.add_edge(gname, node, kind="member", role=m.role, param=m.param, dim=m.dim)
    return g
