"""``cifar10_sac.py``'s comparison under the fair protocol: three fine-tune seeds for every row.

    python benchmarks/cifar10_sac_fair.py --seeds 0,1,2,3 [--ft-seeds 0,1,2]
        [--variants all-fade,all-fade-noz,all-noalign[,all-fade80,all-fade80-noz]] [--threads 1]
        [--rows benchmarks/results/cifar10_sac_fair_rows.jsonl] [--unseen N] [--render]

``cifar10_sac.py`` gives each training seed one fine-tune (sac's own, inside ``prune``). Here the
fine-tune is taken out of every row and run three times, identically for all rows:

- (b), (c): the dense model of training seed S (``cifar10_sac.py --variants dense``, kept in its run
  directory; trained here with the same recipe when it is missing) pruned by ``global`` / ``uniform``
  at the budget, L1 selection;
- sac rows: the working weights of the finished sac run of seed S after its last joint epoch (the
  run's last checkpoint) with surgery on that run's final plan (``result.json``), which is what sac
  fine-tunes inside ``prune``; the script checks that the FLOPs match the main table's row.

Each pruned model then gets F epochs of the recipe from ``cifar10_sac.py`` (SGD, lr 0.1 cosine,
batch 128, flip + crop, cross-entropy) with fine-tune seed T (data order and RNG), for T in
``--ft-seeds``. Test accuracy after the final epoch. A row's figure is the mean over training seeds
of the mean over fine-tune seeds; its ± is the std across training seeds. Finished fine-tunes are
appended to ``--rows`` and skipped on a re-run, so a killed run continues where it stopped.

``--unseen N`` also scores every fine-tuned model on N training images that no row trained on and no
search scored (``cifar10_sac.unseen``): the test split has served every table, so the choice among the
sac variants has seen it; these images no choice has. The table then gains a section on them.
"""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

import fxprune
from _common import append_row, mean_std, read_rows, table_path
from cifar10_sac import ABLATES, LABEL, RECIPE, data, derived_args, run_dir, train_dense, train_loader, unseen
from fxprune.finetune import accuracy
from fxprune.models import cifar_resnet

EX = (1, 3, 32, 32)
MAIN_ROWS = Path(__file__).parent / "results" / "cifar10_sac_cpu_rows.jsonl"  # the one-fine-tune table
FAIR_ROWS = Path(__file__).parent / "results" / "cifar10_sac_fair_rows.jsonl"  # this table's rows
BASELINES = ("global", "uniform")
SHORT = {"global": "(b) dense → global", "uniform": "(c) dense → uniform", "all-fade": "(a8) sac",
         "all-fade-noz": "(d8) sac without z", "all-noalign": "(e8) sac without alignment",
         "all-fade80": "(a8e) sac, fade ends at 80%", "all-fade80-noz": "(d8e) (a8e) without z"}


def label(v: str) -> str:
    return SHORT.get(v, LABEL.get(v, v))


def dense_model(args, seed: int, rest, dev):
    """The dense model of training seed ``seed``: loaded from its run directory, trained when missing."""
    depth = int(args.arch[len("resnet"):])
    path = run_dir(args, "dense", seed) / "dense.safetensors"
    torch.manual_seed(seed)
    model = cifar_resnet(depth).eval()
    if path.exists():
        model.load_state_dict(load_file(str(path)))
        return model
    print(f"training the dense model of seed {seed} ({args.epochs} epochs)", flush=True)
    return train_dense(args, seed, model, train_loader(rest, seed, dev), args.epochs, dev).cpu().eval()


def sac_pruned(args, variant: str, seed: int) -> fxprune.PruneResult:
    """Surgery on the final plan of sac run ``variant``-``seed``, applied to its last joint epoch's weights."""
    folder = run_dir(args, variant, seed)
    last = json.loads((folder / "checkpoint.json").read_text())
    model = cifar_resnet(int(args.arch[len("resnet"):])).eval()
    model.load_state_dict(load_file(str(folder / f"checkpoint-{last['k']}-module.model.safetensors")))
    graph = fxprune.analyze(model, example_inputs=EX)
    keep = np.ones(graph.n_classes)
    keep[np.asarray(json.loads((folder / "result.json").read_text())["dropped"], np.int64)] = 0.0
    plan = fxprune.Plan.from_graph(graph, {g.id: np.flatnonzero(keep[g.classes] > 0.5) for g in graph.groups})
    res = fxprune.apply_plan(model, plan, example_inputs=EX)
    main = [r for r in read_rows(MAIN_ROWS) if r["variant"] == variant and r["seed"] == seed and r["arch"] == args.arch]
    if main and abs(main[0]["flops"] - res.report.flops_ratio) > 1e-9:
        sys.exit(f"{folder}: the plan keeps {res.report.flops_ratio:.6f} of the FLOPs, the main table's row "
                 f"{main[0]['flops']:.6f}")
    return res


def run(args, seeds: list[int]) -> None:
    """Every missing fine-tune, one fine-tune seed over every training seed before the next, so that a
    cut-short run stays balanced; each pruned model is built once."""
    torch.set_num_threads(args.threads)
    dev = None if args.device == "cpu" else torch.device(args.device)
    done = {(r["arch"], r["seed"], r["variant"], r["ft_seed"]) for r in read_rows(args.rows)}
    if args.unseen and any("acc_unseen" not in r for r in read_rows(args.rows)):
        sys.exit(f"--unseen: {args.rows} holds fine-tunes without unseen scores, which a re-run would skip; "
                 "give --unseen a rows file of its own")
    variants = [*BASELINES, *args.variants.split(",")]
    todo = [(t, seed, v) for t in args.ft_seeds for seed in seeds for v in variants
            if (args.arch, seed, v, t) not in done]
    if not todo:
        return
    rest, _, _, test_loader = data(args, 0, dev)  # the split does not depend on the seed, only the loader's order
    unseen_loader = unseen(args, args.unseen, dev) if args.unseen else None
    base = {"arch": args.arch, "epochs": args.epochs, "finetune_epochs": args.finetune_epochs,
            "budget": args.budget, "n_train": len(rest), "device": args.device, "torch": torch.__version__}
    pruned, dense = {}, {}
    for t, seed, v in todo:
        if (seed, v) not in pruned:
            if v in BASELINES:
                if seed not in dense:
                    dense[seed] = dense_model(args, seed, rest, dev)
                pruned[seed, v] = fxprune.prune(dense[seed], args.budget, example_inputs=EX, policy=v,
                                                importance="l1", progress=False)
            else:
                pruned[seed, v] = sac_pruned(args, v, seed)
        res = pruned[seed, v]
        t0 = time.perf_counter()
        torch.manual_seed(t)
        ft = fxprune.finetune(res.model, train_loader(rest, t, dev), epochs=args.finetune_epochs, device=dev,
                              progress=False, **RECIPE).model
        kept = [len(res.plan.keep.get(g.id, range(g.size))) for g in res.graph.groups]
        row = {**base, "seed": seed, "variant": v, "ft_seed": t, "acc": accuracy(ft, test_loader),
               "acc_pruned": accuracy(res.model.to(dev or "cpu"), test_loader), "flops": res.report.flops_ratio,
               "params": res.report.params_ratio, "kept": kept, "wall_s": time.perf_counter() - t0}
        if unseen_loader is not None:
            row["acc_unseen"], row["n_unseen"] = accuracy(ft, unseen_loader), args.unseen
        append_row(args.rows, row)
        print(row, flush=True)


def per_seed(rows: list[dict], variant: str, key: str = "acc") -> dict[int, list[float]]:
    """``key`` (test accuracy by default) of ``variant``'s fine-tunes, by training seed."""
    out: dict[int, list[float]] = {}
    for r in sorted(rows, key=lambda r: (r["seed"], r["ft_seed"])):
        if r["variant"] == variant and key in r:
            out.setdefault(r["seed"], []).append(r[key])
    return out


def render(args) -> None:
    rows = [r for r in read_rows(args.rows) if r["arch"] == args.arch]
    if not rows:
        sys.exit(f"no {args.arch} rows in {args.rows}")
    mixed = {k: sorted({r[k] for r in rows}) for k in ("epochs", "finetune_epochs", "budget", "n_train")}
    mixed = {k: v for k, v in mixed.items() if len(v) > 1}
    if mixed:
        sys.exit(f"{args.rows} mixes settings {mixed}: one table per setting (give --rows a file of its own)")
    s = rows[0]
    n_ft = len({r["ft_seed"] for r in rows})
    lines = [f"# CIFAR-10 from scratch, sac vs dense → global / uniform: {n_ft} fine-tune seed{'s' * (n_ft > 1)} per row",
             "",
             f"Command: `python {' '.join(sys.argv)}` (rows from `{args.rows}`); see the docstring of "
             "`benchmarks/cifar10_sac_fair.py`. The same models as `cifar10_sac_cpu.md` (E = "
             f"{s['epochs']} joint / dense epochs on {s['n_train']:,} training images, {s['budget']:.0%} FLOPs), "
             f"each fine-tuned {s['finetune_epochs']} epochs with the same recipe under every fine-tune seed. "
             f"Device `{s['device']}`, torch {s['torch']}.", "",
             "Accuracy = mean over training seeds of the mean over fine-tune seeds; ± = std across training seeds "
             "(the spread that matters); the last column gives the std across fine-tune seeds, averaged over "
             "training seeds (the fine-tune noise).", ""]
    order = [*BASELINES, *dict.fromkeys(r["variant"] for r in rows if r["variant"] not in BASELINES)]
    order = [v for v in order if per_seed(rows, v)]
    lines += section(args, rows, order, "acc", "test accuracy")
    unseen_rows = [r for r in rows if "acc_unseen" in r]
    if unseen_rows:
        n = sorted({r["n_unseen"] for r in unseen_rows})
        lines += ["", (f"## On {'/'.join(f'{k:,}' for k in n)} training images no row, search or choice saw "
                       "(`--unseen`)"), ""]
        lines += section(args, unseen_rows, [v for v in order if per_seed(unseen_rows, v, "acc_unseen")],
                         "acc_unseen", "accuracy on unseen images")
        lines += ["", same_as_fair(rows)]
    out = table_path(args.rows, args.out)
    name = f"{out.stem}_{args.arch}.png"
    plot(rows, order, out.with_name(name))
    lines += ["", f"![every fine-tune, by row and training seed]({name})"]
    notes = out.with_suffix(".notes.md")
    if notes.exists():
        lines += ["", notes.read_text().rstrip()]
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def section(args, rows: list[dict], order: list[str], key: str, what: str) -> list[str]:
    """The table of ``key`` (an accuracy) by row and its targets, paired on the training seeds."""
    lines = [f"| row | training seeds × fine-tune seeds | {what} | per training seed (mean over fine-tunes) | "
             "FLOPs kept | params kept | right after pruning (test) | fine-tune std |",
             "|---|---:|---:|---|---:|---:|---:|---:|"]
    means = {}
    for v in order:
        ps = per_seed(rows, v, key)
        means[v] = per_seed_means(rows, v, key)
        rs = [r for r in rows if r["variant"] == v]
        n_ft = sorted({len(a) for a in ps.values()})
        ft_std = (f"{100 * np.mean([np.std(a, ddof=1) for a in ps.values()]):.2f}" if n_ft[0] > 1 else "-")
        lines.append(f"| {label(v)} | {len(ps)} × {'/'.join(map(str, n_ft))} | "
                     f"**{mean_std(list(means[v].values()))}** | "
                     + ", ".join(f"{m:.2%}" for m in means[v].values())
                     + f" | {np.mean([r['flops'] for r in rs]):.3f} | {np.mean([r['params'] for r in rs]):.3f} | "
                     f"{np.mean([r['acc_pruned'] for r in rs]):.2%} | {ft_std} |")
    lines += ["", "Targets (paired on the training seeds both rows have; per-seed difference, its mean and std):"]

    def cmp(a: str, b: str, rel: str) -> None:
        seeds = sorted(set(means.get(a, {})) & set(means.get(b, {})))
        if not seeds:
            return
        d = np.array([means[a][k] - means[b][k] for k in seeds]) * 100
        ok = d.mean() >= 0 if rel == ">=" else d.mean() <= 0
        lines.append(f"- {label(a)} {rel} {label(b)}: {'met' if ok else 'NOT met'}, "
                     f"{d.mean():+.2f} points (per seed {', '.join(f'{x:+.2f}' for x in d)}; std {d.std(ddof=1) if len(d) > 1 else 0:.2f}; "
                     f"seeds {', '.join(map(str, seeds))})")

    variants = args.variants.split(",")
    rows_a = [v for v in variants if v not in ABLATES]  # sac rows; the first is the reference
    for v in rows_a:
        cmp(v, "global", ">=")
        cmp(v, "uniform", ">=")
    for v in rows_a[1:]:
        cmp(v, rows_a[0], ">=")
    for v in variants:
        if v in ABLATES:
            for a in ABLATES[v]:
                if a in variants:
                    cmp(v, a, "<=")
    return lines


def same_as_fair(rows: list[dict]) -> str:
    """Whether these fine-tunes repeat those of the three-seed table: the same test accuracy for the same
    training seed, row and fine-tune seed (a re-run, with the unseen images scored too)."""
    ref = {(r["arch"], r["seed"], r["variant"], r["ft_seed"]): r["acc"] for r in read_rows(FAIR_ROWS)} \
        if FAIR_ROWS.exists() else {}
    pairs = [(r["acc"], ref[k]) for r in rows if (k := (r["arch"], r["seed"], r["variant"], r["ft_seed"])) in ref]
    if not pairs:
        return "No fine-tune here is in the three-seed table's rows, so none could be checked against them."
    same = sum(a == b for a, b in pairs)
    worst = max(abs(a - b) for a, b in pairs)
    return (f"Re-run check: {same} of {len(pairs)} fine-tunes give exactly the test accuracy of the same fine-tune "
            f"in `{FAIR_ROWS.name}` (largest difference {100 * worst:.2f} points).")


def plot(rows: list[dict], order: list[str], path: Path) -> None:
    """One dot per fine-tune, coloured by training seed, a bar at each row's mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(8.0, 1.45 * len(order) + 1.5), 4.2))
    seeds = sorted({r["seed"] for r in rows})
    for i, v in enumerate(order):
        for j, seed in enumerate(seeds):
            acc = [100 * r["acc"] for r in rows if r["variant"] == v and r["seed"] == seed]
            ax.scatter(np.full(len(acc), i + 0.08 * (j - (len(seeds) - 1) / 2)), acc, s=14,
                       color=plt.get_cmap("tab10")(j), label=f"training seed {seed}" if i == 0 else None)
        ax.hlines(100 * np.mean(list(per_seed_means(rows, v).values())), i - 0.3, i + 0.3, color="k")
    ax.set_xticks(range(len(order)), [textwrap.fill(label(v), 16) for v in order], fontsize=8)
    ax.set_ylabel("test accuracy after fine-tune (%)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
    plt.close(fig)


def per_seed_means(rows: list[dict], variant: str, key: str = "acc") -> dict[int, float]:
    return {k: float(np.mean(a)) for k, a in per_seed(rows, variant, key).items()}


def main(argv=None):
    ap = argparse.ArgumentParser()
    derived_args(ap, "benchmarks/results/cifar10_sac_fair_rows.jsonl")
    ap.add_argument("--epochs", type=int, default=30, help="dense epochs, when a dense model must be trained")
    ap.add_argument("--seeds", default="0", help="training seeds (their cifar10_sac.py runs)")
    ap.add_argument("--ft-seeds", default="0,1,2")
    ap.add_argument("--unseen", type=int, default=0,
                    help="also score every fine-tune on this many training images that no row, search or choice saw")
    ap.add_argument("--variants", default="all-fade,all-fade-noz,all-noalign",
                    help="sac runs (cifar10_sac.py variants); ablations are compared with the rows they ablate, "
                         "the others with (b), (c) and the first of them")
    args = ap.parse_args(argv)
    args.smoke = False
    args.ft_seeds = [int(t) for t in args.ft_seeds.split(",")]
    if not args.render:
        run(args, [int(s) for s in args.seeds.split(",")])
    render(args)


if __name__ == "__main__":
    main()
