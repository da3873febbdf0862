"""PNG plots of a pruning report (matplotlib, drawn on a bare ``Figure``: no pyplot state and no
global backend change in the user's process)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _figure(n: int):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(min(max(6.0, 0.12 * n + 2), 24.0), 4.0), dpi=110)
    return fig, fig.subplots()


def _ticks(ax, names: list[str]) -> None:
    step = max(1, len(names) // 40)
    idx = list(range(0, len(names), step))
    ax.set_xticks(idx)
    ax.set_xticklabels([names[i] for i in idx], rotation=90, fontsize=6)


def plot_kept_channels(report, path: str | Path) -> Path:
    """Bar chart: fraction of output channels kept, per conv/linear layer, in model order."""
    rows = [r for r in report.layers if r.flops_before > 0 or r.kind.startswith(("Conv", "Linear"))]
    names = [r.name for r in rows]
    fig, ax = _figure(len(rows))
    ax.bar(np.arange(len(rows)), [r.kept_ratio for r in rows], color="tab:blue")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("kept output channels")
    ax.set_title(f"{report.model}: channels kept per layer (FLOPs ratio {report.flops_ratio:.2f})")
    _ticks(ax, names)
    fig.tight_layout()
    fig.savefig(str(path))
    return Path(path)


def plot_flops_share(report, path: str | Path) -> Path:
    """Grouped bars: each layer's share of the model's layer FLOPs, before and after pruning."""
    rows = [r for r in report.layers if r.flops_before > 0]
    names = [r.name for r in rows]
    before = np.array([r.flops_before for r in rows], np.float64)
    after = np.array([r.flops_after for r in rows], np.float64)
    x = np.arange(len(rows))
    fig, ax = _figure(len(rows))
    ax.bar(x - 0.2, before / max(before.sum(), 1e-12), 0.4, label="before", color="tab:gray")
    ax.bar(x + 0.2, after / max(after.sum(), 1e-12), 0.4, label="after", color="tab:orange")
    ax.set_ylabel("share of layer FLOPs (MACs)")
    ax.set_title(f"{report.model}: FLOPs share per layer")
    ax.legend()
    _ticks(ax, names)
    fig.tight_layout()
    fig.savefig(str(path))
    return Path(path)


def plot_jaccard(report, path: str | Path) -> Path:
    """Bars: per prunable group in model order, the overlap (Jaccard) of the learned keep mask with
    the L1-norm mask of the same size; the line: the fraction of the group's channels kept."""
    jac = report.jaccard()
    by_id = {g.id: g for g in report.groups}
    ids = [i for i in sorted(jac) if i in by_id]
    x = np.arange(len(ids))
    fig, ax = _figure(len(ids))
    ax.bar(x, [jac[i] for i in ids], color="tab:purple", label="Jaccard vs L1 mask")
    ax.plot(x, [by_id[i].kept / max(by_id[i].size, 1) for i in ids], "k.-", lw=0.8, label="kept fraction")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("prunable group (model order)")
    ax.set_title(f"{report.model}: how far the learned masks depart from the L1 masks")
    ax.legend(fontsize=8)
    _ticks(ax, [f"g{i}" for i in ids])
    fig.tight_layout()
    fig.savefig(str(path))
    return Path(path)
