"""CIFAR-10 ResNet-56 (pretrained, ../shared/data) pruned to 50% FLOPs by the baselines and the
search policies, every row then given the *same plain fine-tune* (the fair protocol).

    python benchmarks/cifar10_resnet56.py [--policies uniform,global,ppo,ppo-nogae,random,mcq]
        [--mcq global:8,size:8,global:0,size:0] [--seeds 0,1,2] [--device cpu] [--threads 2]
        [--rows benchmarks/results/cifar10_resnet56_rows.jsonl] [--long-epochs 0] [--render]

Rows: ``uniform``, ``global`` (baselines); ``ppo`` and ``ppo-nogae`` (the GAE ablation: a random
encoder, ``gae_epochs=0``); ``random`` (random search given as many evaluations as the ``ppo`` row
of the rows file used, unless ``--random-evals``); ``mcq`` runs ``INIT:BN_RECALIB`` each. A search
row with the suffix ``-lik`` (``random-lik``, ``ppo-lik``, ``mcq-lik``) maximises the likelihood
score instead of the accuracy (``reward_score="likelihood"``, reward_fidelity.md). Every
row reports the test accuracy right after pruning, after the fair fine-tune (mean ± std over the
fine-tune seeds; all 10,000 test images, final step), FLOPs and params kept, ONNX Runtime latency
(1 thread, batch 1, interleaved with the unpruned model), search wall time, evaluations and the
reward set-up (``bn_recalib``, evaluation mode). A search that trains (mcq's step-wise
distillation) keeps that only in its weights: its plan on the *original* weights gets the same
fine-tune in a row of its own. ``--long-epochs N`` adds, for ``--long-policies``, the same recipe
over N epochs of every remaining TRAIN image (the GPU rows; a ``ppo`` long row waits for the ppo
plan another process writes). Searches score plans on 1,000 balanced TRAIN images; no search or
selection sees the test split.

Each finished row is appended to ``--rows`` (several processes may fill one file); the markdown,
the Jaccard-per-depth plot and the ppo reward curve are rendered from it (``--render`` only
renders). Writes benchmarks/results/cifar10_resnet56.md.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import fxprune
from _common import FAIR, FAIR_TEXT, append_row, cifar_resnet56, fair_finetune, mean_std, read_rows, table_path
from fxprune.finetune import accuracy
from fxprune.policies.mcq_config import MCQConfig
from fxprune.search import DataSplits

MCQ_CPU = {"samples": 10, "rounds": 2, "depth": 1, "step_ratio": 0.05, "kd_max_steps": 40, "batch_size": 500,
           "precision": "bf16"}
PPO = {}  # ppo at its defaults (fxprune/policies/ppo_config.py); --ppo-config overrides
NAMES = {"ppo": "ppo", "ppo-nogae": "ppo, random encoder (gae_epochs=0)"}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("--policies", default="uniform,global,ppo,ppo-nogae,random,mcq")
    ap.add_argument("--mcq", default="global:8,size:8,global:0,size:0", help="INIT:BN_RECALIB runs of mcq")
    ap.add_argument("--mcq-config", default="{}", help="JSON overrides of the mcq options")
    ap.add_argument("--ppo-config", default="{}", help="JSON overrides of the ppo options")
    ap.add_argument("--search-config", default="{}", help="JSON options for every search row (SearchConfig: e.g. "
                                                          "'{\"reward_train_steps\": 25}'; the row names say so)")
    ap.add_argument("--ppo-evals", type=int, default=None, help="cap ppo's evaluations (max_evals; e.g. the random "
                    "row's); default: its episodes decide")
    ap.add_argument("--random-evals", type=int, default=None, help="default: the ppo row's evaluations")
    ap.add_argument("--wait-ppo", type=float, default=0.0, help="random: wait this long for another process's ppo row")
    ap.add_argument("--seeds", default="0,1,2", help="fine-tune seeds of the fair protocol")
    ap.add_argument("--search-seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--importance", default="l1")
    ap.add_argument("--round-to", default="1", help="channel rounding for every policy (1: none, or 'auto')")
    ap.add_argument("--long-epochs", type=float, default=0.0)
    ap.add_argument("--long-policies", default="global,ppo")
    ap.add_argument("--latency-runs", type=int, default=300)
    ap.add_argument("--rows", default="benchmarks/results/cifar10_resnet56_rows.jsonl")
    ap.add_argument("--fresh", action="store_true", help="empty the rows file first")
    ap.add_argument("--render", action="store_true", help="only render the markdown from the rows file")
    ap.add_argument("--out", default=None, help="the markdown table (default: beside --rows, "
                    "x_rows.jsonl -> x.md)")
    ap.add_argument("--smoke", action="store_true", help="a minute-long check of the whole script: tiny test set, "
                    "fine-tunes, searches (numbers meaningless)")
    args = ap.parse_args(argv)
    args.out = str(table_path(args.rows, args.out))
    if args.smoke:
        FAIR["images"], args.latency_runs = 256, 5
        MCQ_CPU.update(samples=2, rounds=1, step_ratio=0.25, kd_max_steps=2)
        PPO.update(episodes=16, batch_episodes=8, gae_epochs=2, gae_graphs=8, ppo_epochs=1)
    rows_path = Path(args.rows)
    if args.fresh and rows_path.exists():
        rows_path.unlink()
    if not args.render:
        run(args, rows_path)
    render(args, rows_path)


def add_row(path: Path, row: dict) -> None:
    append_row(path, row)
    print({k: v for k, v in row.items() if k not in ("jaccard", "kept")}, flush=True)


def run(args, rows_path: Path) -> None:
    round_to = args.round_to if args.round_to == "auto" else int(args.round_to)
    seeds = [int(s) for s in args.seeds.split(",")]
    dev = torch.device(args.device)
    model, test, rest, reward = cifar_resnet56(args.threads)
    if args.smoke:
        test = test.subset(np.arange(500))
    test_loader = test.loader(500, device=dev if dev.type != "cpu" else None)
    base_acc = accuracy(model.to(dev), test_loader)
    model.cpu()
    print(f"unpruned test accuracy {base_acc:.4f}", flush=True)
    ex = torch.randn(1, 3, 32, 32)
    tmp = Path(tempfile.mkdtemp())
    fxprune.export_onnx(model, tmp / "orig.onnx", ex)
    setup = {"device": str(dev), "torch": torch.__version__, "base_acc": base_acc, "seeds": seeds,
             "search_seed": args.search_seed, "round_to": args.round_to, "importance": args.importance,
             "n_train": len(rest) + len(reward)}
    train_dev = dev if dev.type != "cpu" else None

    def finetunes(m, **kw):
        return [fair_finetune(m, rest, s, test_loader, device=train_dev, **kw) for s in seeds]

    def latency(m):
        fxprune.export_onnx(m, tmp / "m.onnx", ex)
        cmp = fxprune.compare_latency(tmp / "orig.onnx", tmp / "m.onnx", threads=1, runs=args.latency_runs,
                                      warmup=30)
        return {"lat_orig": cmp.a.median_ms, "lat": cmp.b.median_ms, "speedup": cmp.speedup}

    runs = []
    for policy in [p for p in args.policies.split(",") if p]:
        if policy.removesuffix("-lik") == "mcq":
            runs += [(policy, *v.split(":")) for v in args.mcq.split(",")]
        else:
            runs.append((policy, None, None))
    for row_policy, init, n in runs:
        policy, lik = row_policy.removesuffix("-lik"), row_policy.endswith("-lik")
        kw, name, cfg = {}, NAMES.get(policy, policy), None
        if policy == "mcq":
            cfg = {**MCQ_CPU, **json.loads(args.mcq_config), "init": init, "bn_recalib": int(n)}
            name = f"mcq (init {init}, bn_recalib {n}{'' if cfg.get('kd', MCQConfig().kd) else ', no distillation'})"
        elif policy in ("ppo", "ppo-nogae"):
            cfg = {**PPO, **json.loads(args.ppo_config), **({"gae_epochs": 0} if policy == "ppo-nogae" else {})}
            if cfg.get("keep_init", "bias") != "bias":
                more = "".join(f", {'' if v else 'no '}{k}" if isinstance(v, bool) else
                               f", {k} {v:g}" if isinstance(v, (int, float)) else f", {k} {v}"
                               for k, v in cfg.items() if k != "keep_init")
                name = f"{name} (keep_init {cfg['keep_init']}{more})"
        elif policy == "random":
            evals = args.random_evals
            if evals is None:
                t_wait = time.monotonic()
                while not any(r.get("policy") == "ppo" for r in read_rows(rows_path)) \
                        and time.monotonic() - t_wait < args.wait_ppo:
                    time.sleep(2.0)
                ppo_rows = [r for r in read_rows(rows_path) if r.get("policy") == "ppo"]
                if not ppo_rows:
                    sys.exit("random: no ppo row in the rows file to match its evaluations; pass --random-evals")
                evals = int(ppo_rows[-1]["evals"])
            cfg = {"evaluations": evals}
            name = f"random search ({evals} evaluations{'' if args.random_evals else ', as many as ppo'})"
        if cfg is not None:  # the row's name says its reward score, whatever the default
            cfg = {**cfg, **json.loads(args.search_config), "reward_score": "likelihood" if lik else "accuracy"}
            name = f"{name}, likelihood reward" if lik else name
            if cfg.get("reward_train_steps"):
                name = f"{name}, probe {cfg['reward_train_steps']} steps"
            name = f"{name}, search seed {args.search_seed}" if args.search_seed else name
        if cfg is not None:
            kw = {"data": DataSplits(train=rest.loader(128, shuffle=True, augment=True, seed=0, device=train_dev),
                                     reward=reward),
                  "policy_config": cfg, "resume": False, "seed": args.search_seed, "device": train_dev,
                  "run_dir": tmp / f"run-{row_policy}-{init}-{n}",
                  "max_evals": args.ppo_evals if policy in ("ppo", "ppo-nogae") else None}
        t = time.perf_counter()
        res = fxprune.prune(model, args.budget, example_inputs=ex, policy="ppo" if policy == "ppo-nogae" else policy,
                            importance=args.importance, round_to=round_to, progress=False, **kw)
        search_s = time.perf_counter() - t
        pruned = res.model.to(dev)
        row = {"name": name, "policy": row_policy, **setup, "flops": res.report.flops_ratio,
               "params": res.report.params_ratio, "search_s": search_s, "acc_pruned": accuracy(pruned, test_loader)}
        pruned.cpu()
        if res.search:
            hist = [h for h in res.search["history"] if "bn_recalib" in h]
            row.update(evals=res.search["evaluations"], plans_per_s=res.search["info"].get("plans_per_second"),
                       bn_recalib=hist[-1]["bn_recalib"] if hist else None, mode=hist[-1].get("mode") if hist else None,
                       config=cfg)
            if res.search["info"].get("jaccard"):
                row["jaccard"] = res.search["info"]["jaccard"]
            curve = Path(res.search["run_dir"]) / "reward_curve.png"
            if policy == "ppo" and curve.exists():
                shutil.copyfile(curve, figure(Path(args.out), "ppo_reward_curve"))
        row["kept"] = {str(g.id): g.kept / g.size for g in res.report.groups if not g.pinned}
        if row_policy == "ppo":
            res.plan.save(rows_path.with_name(rows_path.stem + "_ppo_plan.json"))
        row["ft"] = finetunes(res.model)
        row.update(latency(res.model))
        add_row(rows_path, row)
        if res.search and res.search["info"].get("trained"):  # the allocation alone, on the original weights
            alone = fxprune.apply_plan(model, res.plan, ex).model
            add_row(rows_path, {"name": f"{name}: its plan, original weights", "policy": row_policy + "-plan", **setup,
                                "flops": row["flops"], "params": row["params"],
                                "acc_pruned": accuracy(alone.to(dev), test_loader), "ft": finetunes(alone.cpu())})
    if args.long_epochs:
        for policy in args.long_policies.split(","):
            long_row(args, policy, model, ex, rows_path, setup, finetunes, round_to)


def long_row(args, policy, model, ex, rows_path, setup, finetunes, round_to) -> None:
    """The same recipe over ``--long-epochs`` epochs of every remaining TRAIN image."""
    if policy == "ppo":  # the plan of the ppo row (possibly written by another process)
        path = rows_path.with_name(rows_path.stem + "_ppo_plan.json")
        for _ in range(3600):
            if path.exists():
                break
            time.sleep(1.0)
        plan = fxprune.Plan.load(path)
        pruned = fxprune.apply_plan(model, plan, ex)
    else:
        pruned = fxprune.prune(model, args.budget, example_inputs=ex, policy=policy, importance=args.importance,
                               round_to=round_to, progress=False)
    t = time.perf_counter()
    ft = finetunes(pruned.model, epochs=args.long_epochs, images=0)
    add_row(rows_path, {"name": f"{NAMES.get(policy, policy)}, long fine-tune ({args.long_epochs:g} epochs, all "
                        f"{setup['n_train'] - 1000:,} remaining TRAIN images)", "policy": policy + "-long", **setup,
                        "flops": pruned.report.flops_ratio, "params": pruned.report.params_ratio, "ft": ft,
                        "long_epochs": args.long_epochs, "ft_s": time.perf_counter() - t})


def render(args, rows_path: Path) -> None:
    rows = read_rows(rows_path)
    if not rows:
        sys.exit(f"no rows in {rows_path}")
    s = rows[0]
    out = Path(args.out)
    mcq_cfg = next((r["config"] for r in rows if r["policy"].startswith("mcq") and r.get("config")), MCQ_CPU)
    mcq_cfg = {k: v for k, v in mcq_cfg.items() if k not in ("init", "bn_recalib", "reward_score")}
    lines = ["# CIFAR-10 ResNet-56: policies at 50% FLOPs under the fair fine-tune protocol", "",
             f"Command: `python {' '.join(sys.argv)}` (rows from `{rows_path}`)  ",
             f"torch {s['torch']}, device `{s['device']}`; importance `{s['importance']}` and channel rounding "
             f"`round_to={s['round_to']}` for every policy; {s['n_train']:,} TRAIN images, of which 1,000 "
             f"(balanced, seed 0) are the reward split the searches score plans on; search seed {s['search_seed']}; "
             "accuracies are on all 10,000 test images.", "",
             f"Unpruned test accuracy: **{s['base_acc']:.2%}** (documented 93.39%).", "",
             "mcq options: " + ", ".join(f"{k}={v}" for k, v in mcq_cfg.items()) + " (CPU-sized; the rest at their "
             "defaults, `fxprune/policies/mcq_config.py`). mcq rows not marked 'no distillation' distil their working "
             "model between steps (RL-Pruner's post-training, `kd=True`), so their weights have had that training; "
             "the '… its plan, original weights' rows isolate their channel allocation. ppo at its defaults "
             "(`fxprune/policies/ppo_config.py`) unless the row's config "
             "says otherwise. Reward: accuracy (rows marked 'likelihood reward': exp(-cross-entropy), "
             "`reward_score=\"likelihood\"`) on the reward split after `bn_recalib` batches of adaptive-BN "
             "recalibration (column), evaluation mode per row.", "",
             f"Fair protocol, the same for every row ({len(s['seeds'])} fine-tune seeds {s['seeds']}): {FAIR_TEXT}.",
             "", "| row | FLOPs kept | params kept | test acc right after pruning | after the fair fine-tune | "
             "ORT latency ms (unpruned → pruned) | search s | evaluations | bn_recalib / mode |",
             "|---|---:|---:|---:|---:|---|---:|---:|---|"]
    short = [r for r in rows if "long_epochs" not in r]
    for r in short:
        lat = f"{r['lat_orig']:.3f} → {r['lat']:.3f} ({r['speedup']:.2f}x)" if "lat" in r else "-"
        search = f"{r['search_s']:.1f}" if "search_s" in r else "-"
        rec = f"{r['bn_recalib']} / {r['mode']}" if r.get("bn_recalib") is not None else "-"
        lines.append(f"| {r['name']} | {r['flops']:.3f} | {r['params']:.3f} | {r['acc_pruned']:.2%} | "
                     f"**{mean_std(r['ft'])}** | {lat} | {search} | {r.get('evals', '-')} | {rec} |")
    lines += ["", "Per seed: " + "; ".join(f"{r['name']}: " + ", ".join(f"{a:.2%}" for a in r["ft"]) for r in short)]
    long = [r for r in rows if "long_epochs" in r]
    if long:
        lines += ["", "## Long fine-tune", "", "The same recipe (one-cycle SGD, lr "
                  f"{FAIR['lr']}, batch {FAIR['batch']}, flip+crop, cross-entropy only) over more epochs of every "
                  "remaining TRAIN image, images resident on the device.", "",
                  "| row | FLOPs kept | params kept | after the long fine-tune | per seed | fine-tune s (all seeds) |",
                  "|---|---:|---:|---:|---|---:|"]
        for r in long:
            lines.append(f"| {r['name']} | {r['flops']:.3f} | {r['params']:.3f} | **{mean_std(r['ft'])}** | "
                         + ", ".join(f"{a:.2%}" for a in r["ft"]) + f" | {r['ft_s']:.0f} |")
    lines += targets(rows)
    jac = [r for r in rows if r.get("jaccard")]
    if jac:
        plot_jaccard(jac, figure(out, "jaccard"))
        lines += ["", "![Jaccard of the learned masks with the L1 masks per group, by depth]"
                  f"({figure(out, 'jaccard').name})"]
    curve = figure(out, "ppo_reward_curve")
    if any(r["policy"] in ("ppo", "ppo-lik") for r in rows) and curve.exists():
        lines += ["", f"![ppo reward curve]({curve.name})"]
    notes = out.with_suffix(".notes.md")  # hand-written context kept beside the rendered table
    if notes.exists():
        lines += ["", notes.read_text().rstrip()]
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def figure(out: Path, what: str) -> Path:
    """The figure beside a results file: ``cifar10_resnet56.md`` -> ``cifar10_resnet56_jaccard.png``."""
    return out.with_name(f"{out.stem}_{what}.png")


def targets(rows: list[dict]) -> list[str]:
    plain = [r for r in rows if not (r.get("config") or {}).get("reward_train_steps")]  # probe rows: by name
    by = {r["name"] if r["policy"] in ("mcq", "mcq-lik") else r["policy"]: r for r in plain}
    out = ["", "## Targets (mean of the fine-tune seeds; a win must also exceed one std)", ""]

    def vs(a: str, b: str, margin: float = 0.003) -> None:
        if a not in by or b not in by:
            return
        ma, mb = np.mean(by[a]["ft"]), np.mean(by[b]["ft"])
        sd = max(np.std(by[a]["ft"], ddof=1) if len(by[a]["ft"]) > 1 else 0.0,
                 np.std(by[b]["ft"], ddof=1) if len(by[b]["ft"]) > 1 else 0.0)
        ok = ma - mb >= margin and ma - mb > sd
        out.append(f"- {by[a]['name']} {ma:.2%} vs {by[b]['name']} {mb:.2%}: {100 * (ma - mb):+.2f} points "
                   f"(target >= +{100 * margin:.1f} and > one std {100 * sd:.2f}: {'met' if ok else 'NOT met'})")

    vs("ppo", "global")
    vs("ppo", "random")
    def probe(r: dict) -> int:
        return int((r.get("config") or {}).get("reward_train_steps", 0))

    for r in (r for r in rows if r["policy"] == "ppo-lik"):  # every ppo-lik variant (keep_init ...)
        by[r["name"]] = r
        vs(r["name"], "global")
        twin = [q for q in rows if q["policy"] == "random-lik" and probe(q) == probe(r)]  # the same reward
        if twin:
            by[twin[-1]["name"]] = twin[-1]
            vs(r["name"], twin[-1]["name"])
    for r in (r for r in rows if r["policy"] == "random-lik" and probe(r)):  # the probe against no probe
        by[r["name"]] = r
        vs(r["name"], "random-lik", margin=0.0)
    vs("ppo", "ppo-nogae", margin=0.0)
    for p in sorted(k for k in by if k.startswith("mcq (")):
        vs(p, "global")
    lik = ", likelihood reward"
    for p in ("random", "ppo", *sorted(k for k in by if k.startswith("mcq (") and not k.endswith(lik))):
        vs(p + "-lik" if p in ("random", "ppo") else p + lik, p, margin=0.0)
    for p in sorted(k for k in by if k.endswith("-long") and k != "global-long"):
        vs(p, "global-long")
    same_threads = [r for r in rows if r["policy"] == "global-1t"]  # global re-run at the rows' thread count
    out += across_search_seeds(rows, by.get("global"), same_threads[-1] if same_threads else None)
    return out if len(out) > 3 else []


def across_search_seeds(rows: list[dict], ref: dict | None, ref_1t: dict | None = None) -> list[str]:
    """Rows repeated with other ``--search-seed`` values: the mean over search seeds of each seed's mean
    (against global, and against global fine-tuned at 1 thread where the rows hold that run)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("ft") and r["policy"] not in ("global", "global-1t", "uniform") and not r["policy"].endswith(("-plan", "-long")):
            groups.setdefault(r["name"].split(", search seed ")[0], []).append(r)
    out = []
    for name, rs in groups.items():
        if len({r.get("search_seed", 0) for r in rs}) < 2:
            continue
        means = [float(np.mean(r["ft"])) for r in rs]
        line = (f"- {name} over {len(rs)} search seeds {sorted(r.get('search_seed', 0) for r in rs)}: "
                f"{np.mean(means):.2%} ± {np.std(means, ddof=1):.2%} (std of the per-search means)")
        if ref is not None:
            line += f"; {100 * (np.mean(means) - np.mean(ref['ft'])):+.2f} points vs global {np.mean(ref['ft']):.2%}"
        if ref_1t is not None:
            line += f", {100 * (np.mean(means) - np.mean(ref_1t['ft'])):+.2f} vs global at 1 thread"
        out.append(line)
    return out


def plot_jaccard(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.6))
    for r in rows:
        ids = sorted(int(k) for k in r["jaccard"])
        ax.plot(range(len(ids)), [r["jaccard"][str(i)] for i in ids], ".-", lw=1, label=f"{r['name']}: Jaccard vs L1")
        if r.get("kept"):
            ax.plot(range(len(ids)), [r["kept"].get(str(i), np.nan) for i in ids], ":", lw=0.8,
                    label=f"{r['name']}: kept fraction")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("prunable group, input to output (depth)")
    ax.set_title("ResNet-56 at 50% FLOPs: learned keep masks vs the L1 masks of the same size")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
