"""Reward fidelity: does the score a search sees right after pruning rank plans the way their
test accuracy after fine-tuning does? With and without adaptive BN (``bn_recalib``).

    python benchmarks/reward_fidelity.py [--plans 24] [--recalib 0,1,2,4,8,16] [--seed 0] [--threads 2]
    python benchmarks/reward_fidelity.py --rescore   # new scores for the stored plans, fine-tunes kept

Each finished plan is appended to ``benchmarks/results/reward_fidelity_rows.jsonl`` (with the
settings it was measured under); a later run with the same settings skips the plans it finds
there, so the benchmark can be stopped and continued (``--fresh`` starts over).

CIFAR-10 ResNet-56 (pretrained, ../shared/data), random plans at 50% FLOPs (random per-group keep
ratios, L1 selection inside each group, default channel rounding). For each plan: the reward-split
accuracy and likelihood (``exp(-cross-entropy)``, the searches' ``reward_score`` options) on 1,000
balanced TRAIN images (the searches' default reward split), with the original norm statistics
and after re-estimating them on N batches of 64 calibration images (TRAIN, disjoint from the
reward split), for each N; and the CIFAR-10 test accuracy after the same short plain fine-tune
(the fair protocol's recipe, one seed). Spearman's rho between each score and the post-fine-tune
accuracy. Writes benchmarks/results/reward_fidelity.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

import fxprune
from _common import FAIR, FAIR_TEXT, append_row, cifar_resnet56, fair_finetune, random_ratio_plan, read_rows
from fxprune.data import reward_split
from fxprune.importance import class_importance


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--plans", type=int, default=24)
    ap.add_argument("--recalib", default="0,1,2,4,8,16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/reward_fidelity.md")
    ap.add_argument("--rows", default="benchmarks/results/reward_fidelity_rows.jsonl")
    ap.add_argument("--fresh", action="store_true", help="ignore the rows of an earlier run")
    ap.add_argument("--device", default="cpu", help="scoring and fine-tunes there (images resident on it)")
    ap.add_argument("--smoke", action="store_true", help="a quick check of the script (numbers meaningless)")
    ap.add_argument("--rescore", action="store_true",
                    help="score the stored plans again here (whatever device they were fine-tuned on), keep their "
                         "fine-tune accuracies, rewrite the rows file")
    ap.add_argument("--render", action="store_true", help="only write the results file from the stored rows")
    ap.add_argument("--probe", default="", help="with --rescore: also score after K steps of the training probe "
                                                "(reward_train_steps), for each K of a comma list, after N=8 recalibration")
    args = ap.parse_args(argv)
    if args.smoke:
        FAIR["images"] = 256
    settings = {"recalib": args.recalib, "seed": args.seed, "device": args.device.split(":")[0]}
    rows_path = Path(args.rows)
    if args.fresh and rows_path.exists():
        rows_path.unlink()
    same = (lambda s: {k: s[k] for k in ("recalib", "seed")} == {k: settings[k] for k in ("recalib", "seed")}) \
        if args.rescore or args.render else (lambda s: {k: v for k, v in s.items() if k != "scored_on"} == settings)
    stored = [r for r in read_rows(rows_path) if same(r["settings"])]
    done = {r["plan"]: r for r in stored}
    if args.render:
        args.rescore = any(r["settings"].get("scored_on", r["settings"]["device"]) != r["settings"]["device"]
                           for r in stored)
        args.device = stored[0]["settings"].get("scored_on", stored[0]["settings"]["device"])
        rows = [{k: v for k, v in r.items() if k != "settings"} for r in sorted(stored, key=lambda r: r["plan"])]
        return write(args, [int(v) for v in args.recalib.split(",")], rows,
                     ", ".join(sorted({r["settings"]["device"] for r in stored})))
    ns = [int(v) for v in args.recalib.split(",")]
    model, test, rest, reward = cifar_resnet56(args.threads)
    dev = None if args.device == "cpu" else torch.device(args.device)
    if args.smoke:
        test = test.subset(np.arange(500))
    test_loader = test.loader(500, device=dev)
    graph = fxprune.analyze(model, (1, 3, 32, 32))
    imp = class_importance(graph, "l1")
    # calibration images: TRAIN images outside the reward split (``rest`` excludes it)
    _, calib_set = reward_split(rest, 64 * max(max(ns), 1), seed=1)
    calib_loader = calib_set.loader(64)
    evs = {n: fxprune.Evaluator(graph, reward, n_samples=1000, batch_size=500, mode="compact", bn_recalib=n,
                                calibration=calib_loader if n else None, device=dev) for n in ns}
    probes = [int(k) for k in args.probe.split(",") if k]
    if probes:  # the searches' probe: TRAIN batches outside the reward split, in a fixed order
        train = rest.loader(64, shuffle=True, seed=2)
        evs.update({f"p{k}": fxprune.Evaluator(graph, reward, n_samples=1000, batch_size=500, mode="compact",
                                               bn_recalib=8, calibration=calib_loader, device=dev, train_steps=k,
                                               train_data=train) for k in probes})
    rng = np.random.default_rng(args.seed)
    rows = []
    t0 = time.perf_counter()
    for i in range(args.plans):
        plan = random_ratio_plan(graph, 0.5, rng, imp)  # drawn in order, so plan i is the same every run
        if i in done and not args.rescore:
            rows.append(done[i])
            continue
        if args.rescore and i not in done:
            break  # only plans with a fine-tune accuracy are scored again
        ms = {n: ev.evaluate(plan) for n, ev in evs.items()}
        scores = {**{f"r{n}": m.acc for n, m in ms.items() if isinstance(n, int)},
                  **{f"l{n}": m.loss for n, m in ms.items() if isinstance(n, int)},
                  **{f"{n}a": m.acc for n, m in ms.items() if isinstance(n, str)},
                  **{f"{n}l": m.loss for n, m in ms.items() if isinstance(n, str)}}
        if args.rescore:
            rows.append({**{k: v for k, v in done[i].items() if k != "settings"}, **scores})
            print(f"plan {i}: scored again ({time.perf_counter() - t0:.0f} s)", flush=True)
            continue
        pruned = fxprune.apply_plan(model, plan, (1, 3, 32, 32)).model
        acc_ft = fair_finetune(pruned, rest, seed=0, test_loader=test_loader, device=dev)
        flops = graph.cost.flops(graph.keep_vector(plan.keep)) / graph.cost.full_flops
        rows.append({"plan": i, "flops": flops, "acc_ft": acc_ft, **scores})
        append_row(rows_path, {**rows[-1], "settings": {**settings, "scored_on": settings["device"]}})
        print(f"plan {i}: FLOPs {flops:.3f}, scores {scores}, after fine-tune {acc_ft:.4f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    if args.rescore:
        old = {r["plan"]: r["settings"] for r in stored}
        rows_path.write_text("".join(json.dumps({**r, "settings": {**old[r["plan"]], "scored_on": settings["device"]}})
                                     + "\n" for r in rows))
    write(args, ns, rows, ", ".join(sorted({r['settings']['device'] for r in stored})) or args.device)


def _rho(rows, key, ft):
    s = np.array([r[key] for r in rows])
    return spearmanr(-s if key.startswith("l") else s, ft).statistic  # a lower loss is a better score


def _bootstrap(rows, ft, n: int = 4000) -> str:
    """How sure is the likelihood's lead at N=8? Plans resampled with replacement."""
    rng = np.random.default_rng(0)
    d, lk = [], []
    for _ in range(n):
        i = rng.integers(0, len(rows), len(rows))
        sub = [rows[j] for j in i]
        lk.append(_rho(sub, "l8", ft[i]))
        d.append(lk[-1] - _rho(sub, "r8", ft[i]))
    d, lk = np.array(d), np.array(lk)
    return (f"Bootstrap over plans ({n} resamples), N=8: likelihood rho 90% interval {np.percentile(lk, 5):.2f} - "
            f"{np.percentile(lk, 95):.2f}; likelihood minus accuracy rho {np.median(d):+.3f} (90% interval "
            f"{np.percentile(d, 5):+.3f} - {np.percentile(d, 95):+.3f}), above 0 in {np.mean(d > 0):.1%} of resamples.")


def write(args, ns, rows, ft_device):
    ft = np.array([r["acc_ft"] for r in rows])
    lik = all(f"l{n}" in r for r in rows for n in ns)
    where = (f"scores measured on `{args.device}` with torch {torch.__version__}, the fine-tune accuracies "
             f"(`{ft_device}`) kept from the rows file" if args.rescore
             else f"torch {torch.__version__}, device `{args.device}`")
    lines = ["# Reward fidelity: scores right after pruning vs test accuracy after fine-tuning", "",
             f"Command: `python {' '.join(sys.argv)}`  ",
             f"{where} ({args.threads} CPU threads). CIFAR-10 ResNet-56 (pretrained), {len(rows)} random "
             "plans at 50% FLOPs (random per-group keep ratios in [0.15, 1] rescaled to the budget, L1 selection, "
             "default channel rounding). Scores on the 1,000-image reward split drawn from TRAIN (compact "
             "evaluation, fp32): the accuracy, and the likelihood exp(-cross-entropy) (`reward_score` "
             "'accuracy' / 'likelihood'), with the original BN statistics (N = 0) or after re-estimating them on N "
             "calibration batches of 64 TRAIN images disjoint from the reward split. After fine-tune: " + FAIR_TEXT
             + " (one seed here). Plans measured across runs are kept in `" + args.rows + "`.", "",
             "| bn_recalib N | Spearman rho, accuracy | Spearman rho, likelihood | accuracy range | evaluation cost |",
             "|---:|---:|---:|---|---|"]
    rho = {}
    for n in ns:
        s = np.array([r[f"r{n}"] for r in rows])
        rho["accuracy", n] = _rho(rows, f"r{n}", ft)
        if lik:
            rho["likelihood", n] = _rho(rows, f"l{n}", ft)
        cost = "the reward forward only" if n == 0 else f"+ {n} forward(s) of 64 images"
        lk = f"**{rho['likelihood', n]:.3f}**" if lik else "-"
        lines.append(f"| {n} | **{rho['accuracy', n]:.3f}** | {lk} | {s.min():.2%} - {s.max():.2%} | {cost} |")
    if 0 in ns and any(ns):
        lines.append("")
        for score in ("accuracy", "likelihood") if lik else ("accuracy",):
            best = max((n for n in ns if n), key=lambda n: rho[score, n])
            ok = rho[score, best] >= 0.7 and rho[score, best] > rho[score, 0] + 0.1
            lines.append(f"Target (rho with recalibration >= 0.7 and clearly above rho without), {score} score: best "
                         f"N={best} gives {rho[score, best]:.3f} against {rho[score, 0]:.3f} at N=0 "
                         f"({'met' if ok else 'NOT met'}); the search default N=8 gives "
                         f"{rho.get((score, 8), float('nan')):.3f}.  ")
    probes = sorted({int(k[1:-1]) for r in rows for k in r if k.startswith("p") and k.endswith("l")})
    if probes and all(f"p{k}l" in r for r in rows for k in probes):
        lines += ["", "With the training probe (`reward_train_steps=K`: a copy of the pruned network trained for K SGD "
                  "steps of 64 TRAIN images outside the reward split, peak lr 0.02, after N=8 recalibration, "
                  "`fxprune/search/probe.py`):", "",
                  "| probe steps K | Spearman rho, accuracy | Spearman rho, likelihood | accuracy range |",
                  "|---:|---:|---:|---|"]
        for k in probes:
            a = np.array([r[f"p{k}a"] for r in rows])
            lines.append(f"| {k} | **{spearmanr(a, ft).statistic:.3f}** | "
                         f"**{spearmanr(-np.array([r[f'p{k}l'] for r in rows]), ft).statistic:.3f}** | "
                         f"{a.min():.2%} - {a.max():.2%} |")
    if lik and 8 in ns:
        lines += ["", _bootstrap(rows, ft)]
    cols = [(f"acc N={n}", f"r{n}", "{:.2%}") for n in ns]
    cols += [(f"likelihood N={n}", f"l{n}", "lik") for n in ns if lik and n in (0, 8)]
    lines += ["", "| plan | FLOPs kept | after fine-tune | " + " | ".join(c[0] for c in cols) + " |",
              "|---:|---:|---:|" + "---:|" * len(cols)]
    for r in rows:
        cells = [f"{np.exp(-r[k]):.4f}" if f == "lik" else f.format(r[k]) for _, k, f in cols]
        lines.append(f"| {r['plan']} | {r['flops']:.3f} | {r['acc_ft']:.2%} | " + " | ".join(cells) + " |")
    notes = Path(args.out).with_suffix(".notes.md")  # hand-written context kept beside the rendered table
    if notes.exists():
        lines += ["", notes.read_text().rstrip()]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:16]))


if __name__ == "__main__":
    main()
