"""The reward curve of a search (matplotlib on a bare ``Figure``: no pyplot state, no backend change).

Top panel: the reward of every evaluated candidate in order, the committed ones (policies that
commit a step), step boundaries. Policies that learn in batches (``update`` rows, e.g. ``ppo``)
get a second panel: per update batch, the fraction of sampled plans that broke the budget and the
mean reward-split accuracy of the feasible ones."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .runlog import RowKind


def plot_reward_curve(rows: list[dict[str, Any]], path: Path) -> Path:
    from matplotlib.figure import Figure

    updates = [r for r in rows if r.get("kind") == "update"]
    epochs = [r for r in rows if r.get("kind") == "epoch"]
    n = 1 + bool(updates) + (2 if epochs else 0)
    fig = Figure(figsize=(8, 4 + 2.6 * (n - 1)), dpi=110)
    axes = list(np.atleast_1d(fig.subplots(n, 1)))
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
    if epochs:
        _epoch_panels(axes[-2], axes[-1], epochs)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(path))
    return path


def _epoch_panels(ax, hx, epochs: list[dict[str, Any]]) -> None:
    """Joint train-and-prune searches (``epoch`` rows, e.g. ``sac``): per epoch the mean episode
    reward, the best reward so far and the reward decoder's loss; below, the kept fraction per
    acted group of the plan the weights are aligned to, over epochs."""
    es = [r["epoch"] for r in epochs]
    mean = [(r["epoch"], r["mean_reward"]) for r in epochs if r.get("mean_reward") is not None]
    if mean:
        ax.plot(*zip(*mean), "o-", ms=3, label="mean episode reward")
    best = [(r["epoch"], r["best_reward"]) for r in epochs if r.get("best_reward", -1) >= 0]
    if best:
        ax.plot(*zip(*best), "-", color="tab:red", label="best reward so far")
    dec = [(r["epoch"], r["decoder_mse"]) for r in epochs if r.get("decoder_mse") is not None]
    if dec:
        tx = ax.twinx()
        tx.plot(*zip(*dec), "s:", color="tab:gray", ms=3, label="reward decoder MSE")
        tx.set_ylabel("decoder MSE", fontsize=8)
        tx.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("reward")
    ax.legend(loc="upper left", fontsize=8)
    kept = [r["kept"] for r in epochs if r.get("kept")]
    if kept:
        first = next(i for i, r in enumerate(epochs) if r.get("kept"))
        im = hx.imshow(np.array(kept).T, aspect="auto", origin="lower", vmin=0, vmax=1, cmap="viridis",
                       extent=(es[first] - 0.5, es[first] + len(kept) - 0.5, -0.5, len(kept[0]) - 0.5))
        hx.figure.colorbar(im, ax=hx, label="kept fraction")
    hx.set_xlabel("epoch")
    hx.set_ylabel("acted group (model order)")
    hx.set_title("kept fraction per group of the plan the weights align to", fontsize=9)
