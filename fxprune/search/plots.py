"""The reward curve of a search (matplotlib, Agg backend, no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_reward_curve(rows: list[dict[str, Any]], path: Path) -> Path:
    """Reward of every evaluated candidate in order, the best so far, and the committed ones."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cand = [(r["eval"], r["reward"]) for r in rows if r.get("kind") == "candidate" and "reward" in r]
    commits = [(r.get("of_eval", r["eval"]), r["reward"]) for r in rows if r.get("kind") == "commit" and "reward" in r]
    fig, ax = plt.subplots(figsize=(8, 4))
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
    ax.set_xlabel("evaluation")
    ax.set_ylabel("reward")
    n_evals = sum(1 for r in rows if r.get("kind") not in ("commit", "epoch"))
    ax.set_title(f"search reward ({n_evals} evaluations, {len(steps)} steps)")
    if cand or commits:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
