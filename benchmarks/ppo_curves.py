"""ppo's per-batch curves of several searches in one figure: the infeasible fraction and the
feasible plans' mean reward-split accuracy per update batch, one line per search, one colour per
configuration (the issue's curve target, across search seeds rather than one run).

Collect from ppo run folders (each holds ``run.json`` and ``result.json``; the benchmark's are
temporary folders, ``/tmp/tmp*/run-ppo-*``) into ``--curves`` (added to the searches already saved
there), then plot; ``--curves`` alone re-plots a saved file::

    python benchmarks/ppo_curves.py --runs '/tmp/tmp*/run-ppo-lik-*' \\
        --curves benchmarks/results/cifar10_resnet56_cpu_ppo_curves.json \\
        --out benchmarks/results/cifar10_resnet56_cpu_ppo_curves.png
"""
from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import numpy as np

# the options that tell the compared configurations apart (the rest were the same in every search)
KEYS = ("keep_init", "batch_episodes", "group_shift", "fill", "select", "rank_sharpness", "group_noise", "prior_center",
        "rank_sharpness_final", "anneal_episodes")


def collect(pattern: str, match: dict) -> list[dict]:
    """One entry per finished run folder whose options contain ``match``: its seed, options and
    per-batch figures."""
    out = []
    for d in sorted(glob.glob(pattern)):
        run, res = Path(d) / "run.json", Path(d) / "result.json"
        if not (run.exists() and res.exists()):
            continue
        meta = json.loads(run.read_text())
        cfg = meta.get("config") or {}
        if any(cfg.get(k) != v for k, v in match.items()) or cfg.get("prefer_decode"):
            continue  # (prefer_decode: a re-decoded copy of another search, ppo_redecode.py)
        info = json.loads(res.read_text())["info"]
        out.append({"seed": meta.get("seed"), "config": {k: cfg.get(k) for k in KEYS},
                    "chosen": info.get("chosen"), "batches": [
                        {k: b[k] for k in ("infeasible_fraction", "feasible_acc", "slope") if k in b}
                        for b in info["batches"]]})
    return out


def label(cfg: dict) -> str:
    """The configuration's name in the figure: its slope, and its noise and prior centring where
    they differ from the preset's (0.1, 'boundary'; older folders have no ``prior_center``)."""
    out = f"rank_sharpness {cfg['rank_sharpness']:g}"
    if cfg.get("rank_sharpness_final"):  # the slope schedule (older folders have none)
        out += f"→{cfg['rank_sharpness_final']:g} over {cfg['anneal_episodes']} episodes"
    if cfg.get("group_noise") != 0.1:
        out += f", group_noise {cfg.get('group_noise'):g}"
    if cfg.get("prior_center") not in (None, "boundary"):
        out += f", prior_center {cfg['prior_center']}"
    return out


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` with ``new`` added; a search already there (same seed and options) is replaced."""
    def key(c: dict) -> tuple:
        return c["seed"], label(c["config"])

    have = {key(c): c for c in old}
    have.update({key(c): c for c in new})
    return list(have.values())


def summary(curves: list[dict]) -> list[str]:
    lines = []
    for c in sorted(curves, key=lambda c: (label(c["config"]), c["seed"])):
        inf = [b["infeasible_fraction"] for b in c["batches"]]
        acc = [b["feasible_acc"] for b in c["batches"] if b["feasible_acc"] is not None]
        last = max([i for i, v in enumerate(inf) if v > 0], default=-1)
        lines.append(f"{label(c['config'])}, seed {c['seed']}: infeasible "
                     f"{np.mean(inf[:3]):.2f} (first 3 batches) -> {np.mean(inf[-3:]):.2f} (last 3), last non-zero "
                     f"batch {last} of {len(inf)}; feasible accuracy {np.mean(acc[:3]):.3f} -> {np.mean(acc[-3:]):.3f}; "
                     f"returned: {c['chosen']}")
    return lines


def plot(curves: list[dict], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({label(c["config"]) for c in curves})
    colours = dict(zip(names, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
                               "tab:pink", "tab:olive")))
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for c in curves:
        s = label(c["config"])
        x = np.arange(len(c["batches"]))
        inf = [b["infeasible_fraction"] for b in c["batches"]]
        acc = [np.nan if b["feasible_acc"] is None else b["feasible_acc"] for b in c["batches"]]
        kw = {"color": colours[s], "alpha": 0.7, "lw": 1.2}
        a1.plot(x, inf, **kw)
        a2.plot(x, acc, **kw)
    for s in names:
        n = sum(label(c["config"]) == s for c in curves)
        a1.plot([], [], color=colours[s], label=f"{s} ({n} search seeds)")
    a1.set_ylabel("infeasible fraction")
    a2.set_ylabel("feasible accuracy (reward split)")
    a2.set_xlabel("update batch (16 episodes)")
    a1.legend(fontsize=8)
    a1.set_title("ppo on ResNet-56, 50% FLOPs, 440 evaluations: per update batch")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default=None, help="glob of ppo run folders to collect from")
    ap.add_argument("--match", default='{"keep_init": "global", "batch_episodes": 16, "group_shift": true, '
                    '"fill": true, "select": "sample"}',
                    help="JSON options a run must have to be collected")
    ap.add_argument("--curves", required=True, help="the JSON file the curves are saved in / read from")
    ap.add_argument("--out", required=True, help="the PNG")
    args = ap.parse_args(argv)
    path = Path(args.curves)
    if args.runs:
        old = json.loads(path.read_text()) if path.exists() else []
        curves = merge(old, collect(args.runs, json.loads(args.match)))
        path.write_text(json.dumps(curves, indent=1) + "\n")
    curves = json.loads(path.read_text())
    plot(curves, Path(args.out))
    print("\n".join(summary(curves)))


if __name__ == "__main__":
    main()
