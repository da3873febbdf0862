"""The reward curve of a search (matplotlib on a bare ``Figure``: no pyplot state, no backend change).

Top panel: the reward of every evaluated candidate in order, the committed ones (policies that
commit a step), step boundaries. Policies that learn in batches (``update`` rows, e.g. ``ppo``)
get a second panel: per update batch, the fraction of sampled plans that broke the budget and the
mean reward-split accuracy of the feasible ones."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .runlog import RowKind


def plot_reward_curve(rows: list[dict[str, Any]], path: Path) -> Path:
    from matplotlib.figure import Figure

    updates = [r for r in rows if r.get("kind") == "update"]
    fig = Figure(figsize=(8, 6.5 if updates else 4), dpi=110)
    axes = fig.subplots(2, 1) if updates else [fig.subplots()]
    ax = axes[0]
    cand = [(r["eval"], r["reward"]) for r in rows if r.get("kind") == "candidate" and "reward" in r]
    commits = [(r.get("of_eval", r["eval"]), r["reward"]) for r in rows if r.get("kind") == "commit" and "reward" in r]
    if cand:
        xs, ys = zip(*cand)
        ax.scatter(xs, ys, s=6, alpha=0.5, label="candidates")
    if commits:
        xs, ys = zip(*commits)
        ax.plot(xs, ys, "o-", color="tab:red", ms=4, label="committed (one per step)")
    steps = sorted({r.get("step") for r in rows if r.get("step") is not None})
    for t in steps:
        first = next(r["eval"] for r in rows if r.get("step") == t)
        ax.axvline(first, color="0.85", lw=0.6, zorder=0)
    ax.set_xlabel("row of the run log")
    ax.set_ylabel("reward")
    n_evals = sum(1 for r in rows if r.get("kind") in RowKind.EVALUATED or "kind" not in r)
    ax.set_title(f"search reward ({n_evals} evaluations" + (f", {len(steps)} steps)" if steps else ")"))
    if cand or commits:
        ax.legend(loc="best", fontsize=8)
    if updates:
        bx = axes[1]
        xs = [u["update"] for u in updates]
        bx.plot(xs, [u["infeasible_fraction"] for u in updates], "o-", color="tab:red", ms=3,
                label="infeasible fraction of the batch")
        acc = [(u["update"], u["feasible_acc"]) for u in updates if u.get("feasible_acc") is not None]
        if acc:
            bx.plot(*zip(*acc), "s-", color="tab:green", ms=3, label="mean accuracy of the feasible plans")
        bx.set_ylim(-0.02, 1.02)
        bx.set_xlabel("update batch")
        bx.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(path))
    return path
