"""CIFAR-10 from scratch: ``sac`` (RLAL's joint train-and-prune) against dense training followed
by ``global`` / ``uniform`` pruning, at equal total epochs, plus the paper's two ablations.

    python benchmarks/cifar10_sac.py [--arch resnet20] [--epochs 30] [--finetune-epochs 5]
        [--variants sac,dense,noz,noalign] [--seeds 0] [--device cpu]
        [--rows benchmarks/results/cifar10_sac_rows.jsonl] [--render]

Rows (the same data, recipe and total epochs E + F for each; test accuracy after the final epoch,
no best-epoch selection):

- (a) ``sac``: E joint train-and-prune epochs from a random initialisation, surgery on the best
  policy's plan, F fine-tune epochs (all inside ``fxprune.prune(..., policy="sac")``);
- (b) ``dense`` → ``global``: E epochs of dense training with the same recipe, ``global`` at the
  same FLOPs budget, F fine-tune epochs; (c) the same dense model → ``uniform``;
- (d) ``noz``: sac without the environment code (``env_code=False``: no GRU, no epoch embeddings);
- (e) ``noalign``: sac without the alignment loss (``beta_align=0``).

Recipe (RLAL App. B, CIFAR-10): SGD momentum 0.9, weight decay 1e-4, lr 0.1 with one cosine over
the E epochs (the paper: steps at 100/150 of 200), then a fresh cosine from 0.1 over the F epochs;
batch 128, flip + 4-pixel crop; cross-entropy. The reward split (``--n-reward`` balanced TRAIN
images) is held out of training for every row. Every finished row is appended to ``--rows`` (one
process per variant can share the file); the markdown is rendered from it.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

import fxprune
from _common import append_row, mean_std, read_rows, shared_data, table_path
from fxprune.data import load_npz_folder, reward_split
from fxprune.finetune import accuracy
from fxprune.models import cifar_resnet
from fxprune.search import DataSplits

RECIPE = {"lr": 0.1, "lr_min": 0.0, "momentum": 0.9, "weight_decay": 1e-4, "warmup_ratio": 0.0}
SAC = {"beta_align": 1e-3}  # policies.md §2.7: 1e-4 matters only over many epochs; short schedules use 1e-3
# the rows up to stop 30 re-ran the best snapshot with each epoch's own environment code past the agent phase
# (untrained embeddings: the target's counts moved every epoch); their variants keep that, the later ones do not
OLD = {"z_after_agent": "current"}
VARIANTS = {"sac": {**OLD}, "noz": {"env_code": False}, "noalign": {"beta_align": 0.0, **OLD},
            # a stronger pull: a group lasso per removed channel, 20x the weight (the removed channels' norm
            # stayed at 0.83 of the kept ones with the per-layer 1e-3, so surgery still cut signal)
            "align": {"beta_align": 0.02, "align_form": "per_channel", **OLD},
            # every prunable group, residual streams too (what global and uniform prune)
            "all": {"scope": "all", **OLD},
            # the same, with the agent acting until epoch 24 of 30 instead of 13.5 (App. B's 90/200): tests the
            # reading that sac loses because it commits to a plan chosen on immature weights
            "all-late": {"scope": "all", "agent_end_frac": 0.8, **OLD},
            # every group, rewards scored by the mean log-likelihood of the true class instead of the accuracy:
            # tests the reading that the reward's fidelity (a 2,000-image accuracy) limits sac, as it did ppo
            "all-lik": {"scope": "all", "reward_score": "likelihood", **OLD},
            # (a'') with each reward scored after 25 SGD steps of the pruned copy (the substrate's training probe):
            # tests the reading that an immature network's accuracy right after pruning misranks the plans
            "all-probe": {"scope": "all", "reward_train_steps": 25, **OLD},
            # (a'') with the actor starting at the prune rate that spreads the budget over every group: tests the
            # reading that the first groups spend the budget and the upper bound zeroes the rest (stop 30 notes)
            "all-uniform": {"scope": "all", "action_init": "uniform", **OLD},
            # (a'') with the target fixed past the agent phase (z_after_agent='last', the default since stop 31)
            "all-z": {"scope": "all"},
            # all-z with the removed channels faded linearly to zero by the last joint epoch (align_fade): tests the
            # reading that the cut itself costs sac (the 1e-3 loss leaves them at ~0.8 of the kept norms) while a
            # hard early commit (a') costs more, since the network then trains pruned from the first epochs
            "all-fade": {"scope": "all", "align_fade": True},
            # the paper's two ablations of all-fade: (d) without z, (e) without alignment (no loss, no fade)
            "all-fade-noz": {"scope": "all", "align_fade": True, "env_code": False},
            "all-noalign": {"scope": "all", "beta_align": 0.0},
            # (a8) with the fade ending at 80% of the joint epochs: the last 20% train the pruned sub-network at
            # the joint schedule's learning rate (stop 33: the faded models ended joint training at 51-69%)
            "all-fade80": {"scope": "all", "align_fade": True, "fade_end_frac": 0.8},
            "all-fade80-noz": {"scope": "all", "align_fade": True, "fade_end_frac": 0.8, "env_code": False}}
LABEL = {"sac": "(a) sac", "global": "(b) dense → global", "uniform": "(c) dense → uniform",
         "noz": "(d) sac without z (no GRU / epoch embeddings)", "noalign": "(e) sac without alignment",
         "align": "(a') sac, stronger alignment (per-channel group lasso, beta_align 0.02)",
         "all": "(a'') sac, scope 'all' (residual streams too)",
         "all-late": "(a''') sac, scope 'all', the agent acting until 80% of the epochs (App. B: 45%)",
         "all-lik": "(a'''') sac, scope 'all', likelihood reward (the paper: accuracy)",
         "all-probe": "(a''''') sac, scope 'all', rewards after a 25-step training probe",
         "all-uniform": "(a6) sac, scope 'all', actions starting at the uniform rate (action_init)",
         "all-z": "(a7) sac, scope 'all', the last agent epoch's code past the agent phase (z_after_agent='last')",
         "all-fade": "(a8) sac, scope 'all', the last agent epoch's code past the agent phase (z_after_agent='last'), removed "
                     "channels faded to zero by the last epoch (align_fade)",
         "all-fade-noz": "(d8) (a8) without z (no GRU / epoch embeddings)",
         "all-noalign": "(e8) (a8) without alignment (no loss, no fade)",
         "all-fade80": "(a8e) (a8) with the fade ending after 80% of the joint epochs (fade_end_frac=0.8); the "
                       "last 20% train the pruned sub-network",
         "all-fade80-noz": "(d8e) (a8e) without z (no GRU / epoch embeddings)",
         "dense": "dense, unpruned (E + F epochs)"}
# the paper's ablations (Tab. 3) of each sac row, in table order: none may beat the rows it ablates
ABLATES = {"noz": ("sac",), "noalign": ("sac",), "all-fade-noz": ("all-fade",), "all-noalign": ("all-fade", "all-fade80"),
           "all-fade80-noz": ("all-fade80",)}
SAC_ROWS = ("sac", "align", "all", "all-late", "all-lik", "all-probe", "all-uniform", "all-z", "all-fade",
            "all-fade80")  # (a) and its variants, table order


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet20", choices=["resnet20", "resnet32", "resnet56"])
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--finetune-epochs", type=int, default=5)
    ap.add_argument("--variants", default="sac,dense,noz,noalign")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--n-reward", type=int, default=2000)
    ap.add_argument("--train-images", type=int, default=0, help="0: all TRAIN images outside the reward split")
    ap.add_argument("--sac-config", default="{}", help="JSON overrides of the sac options")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", default="benchmarks/results/cifar10_sac_rows.jsonl")
    ap.add_argument("--render", action="store_true")
    ap.add_argument("--out", default=None, help="the markdown table (default: beside --rows, "
                    "x_rows.jsonl -> x.md)")
    ap.add_argument("--resume", action="store_true", help="continue a sac run from its last checkpoint in the run "
                    "directory (the row then says so; its wall time covers only the resumed part)")
    ap.add_argument("--smoke", action="store_true", help="a quick check of the script (numbers meaningless)")
    args = ap.parse_args(argv)
    args.out = str(table_path(args.rows, args.out))
    if not args.render:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for v in args.variants.split(","):
                run(args, v, seed)
    render(args)


def training_split(args):
    """``(rest, reward, order)``: the training images outside the reward split, the reward split, and
    the order of ``rest`` whose first ``--train-images`` entries are the images every row trains on."""
    train = load_npz_folder(shared_data() / "cifar10", "train", normalize="cifar10")
    if args.smoke:
        train = train.subset(np.arange(1200))
    rest, reward = reward_split(train, args.n_reward if not args.smoke else 200, seed=0)
    return rest, reward, np.random.default_rng(0).permutation(len(rest))


def data(args, seed: int, dev):
    rest, reward, order = training_split(args)
    if args.train_images and args.train_images < len(rest):
        rest = rest.subset(np.sort(order[:args.train_images]))
    test = load_npz_folder(shared_data() / "cifar10", "test", normalize="cifar10")
    if args.smoke:
        test = test.subset(np.arange(300))
    return rest, reward, train_loader(rest, seed, dev), test.loader(1000, device=dev)


def unseen(args, n: int, dev):
    """A loader over ``n`` training images that no row trains on and no search scores on: the images
    ``data`` leaves out of the ``--train-images`` subset, never in the reward split. No row, search or
    choice between variants has seen them, unlike the test split, which every table reports."""
    rest, _, order = training_split(args)
    left = order[args.train_images or len(rest):]
    if not 0 < n <= len(left):
        sys.exit(f"--unseen {n}: only {len(left)} training images are left out of the --train-images "
                 f"{args.train_images} subset and the reward split")
    return rest.subset(np.sort(np.random.default_rng(1).choice(left, n, replace=False))).loader(1000, device=dev)


def derived_args(ap: argparse.ArgumentParser, rows: str) -> None:
    """The options of the scripts that reuse this table's runs (sac_plan_transfer.py, cifar10_sac_fair.py):
    the table's model, budget, data split and fine-tune length, and where the rows go."""
    ap.add_argument("--arch", default="resnet20", choices=["resnet20", "resnet32", "resnet56"])
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("--finetune-epochs", type=int, default=5)
    ap.add_argument("--n-reward", type=int, default=2000)
    ap.add_argument("--train-images", type=int, default=10000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", default=rows)
    ap.add_argument("--out", default=None)
    ap.add_argument("--render", action="store_true")


def train_loader(rest, seed: int, dev):
    """The training batches of every row: 128, shuffled and augmented, in an order set by ``seed``."""
    return rest.loader(128, shuffle=True, augment=True, seed=seed, device=dev)


def add_row(args, row: dict) -> None:
    append_row(args.rows, row)
    print(row, flush=True)


RUNS = Path(tempfile.gettempdir()) / "fxprune-sac-runs"  # one folder per arch-variant-seed


def run_dir(args, variant: str, seed: int) -> Path:
    return RUNS / f"{args.arch}-{variant}-{seed}"


def train_dense(args, seed: int, model, loader, epochs: int, dev):
    """Row (b)/(c)'s dense training: ``epochs`` epochs of the recipe from ``model``'s random
    initialisation; the weights are kept in the run directory (for sac_plan_transfer.py and
    cifar10_sac_fair.py)."""
    dense = fxprune.finetune(model, loader, epochs=epochs, device=dev, progress=False, **RECIPE).model
    keep = run_dir(args, "dense", seed)
    keep.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in dense.state_dict().items()},
              str(keep / "dense.safetensors"))
    return dense


def run(args, variant: str, seed: int) -> None:
    torch.set_num_threads(args.threads)
    dev = None if args.device == "cpu" else torch.device(args.device)
    depth = int(args.arch[len("resnet"):])
    rest, reward, loader, test_loader = data(args, seed, dev)
    e, f = (2, 1) if args.smoke else (args.epochs, args.finetune_epochs)
    base = {"arch": args.arch, "seed": seed, "epochs": e, "finetune_epochs": f, "budget": args.budget,
            "device": args.device, "torch": torch.__version__, "n_train": len(rest), "n_reward": len(reward)}
    torch.manual_seed(seed)
    model = cifar_resnet(depth).eval()
    ex = (1, 3, 32, 32)
    t0 = time.perf_counter()
    if variant == "dense":
        dense = train_dense(args, seed, model, loader, e, dev)
        t_dense = time.perf_counter() - t0
        acc_dense = accuracy(dense, test_loader)
        cont = fxprune.finetune(dense, loader, epochs=f, device=dev, progress=False, **RECIPE).model
        add_row(args, {**base, "variant": "dense", "acc": accuracy(cont, test_loader), "acc_after_e": acc_dense,
                       "flops": 1.0, "params": 1.0, "wall_s": time.perf_counter() - t0})
        for policy in ("global", "uniform"):
            t = time.perf_counter()
            res = fxprune.prune(dense.cpu(), args.budget, example_inputs=ex, policy=policy, importance="l1",
                                progress=False)
            acc0 = accuracy(res.model.to(dev or "cpu"), test_loader)
            ft = fxprune.finetune(res.model, loader, epochs=f, device=dev, progress=False, **RECIPE).model
            add_row(args, {**base, "variant": policy, "acc": accuracy(ft, test_loader), "acc_pruned": acc0,
                           "acc_dense": acc_dense, "flops": res.report.flops_ratio, "params": res.report.params_ratio,
                           "wall_s": t_dense + time.perf_counter() - t})
        return
    cfg = {**SAC, **VARIANTS[variant], **json.loads(args.sac_config), "epochs": e, "finetune_epochs": f}
    if args.smoke:
        cfg.update(episodes_per_epoch=2, updates_per_epoch=4, hidden=32, emb_dim=8, z_dim=8, batch=16)
    res = fxprune.prune(model, args.budget, example_inputs=ex, policy="sac", progress=False, seed=seed, device=dev,
                        data=DataSplits(train=loader, reward=reward), n_reward=len(reward), resume=args.resume,
                        run_dir=run_dir(args, variant, seed),
                        policy_config=cfg)
    info = res.search["info"]
    log = info["epoch_log"]
    add_row(args, {**base, "variant": variant, "acc": accuracy(res.model.to(dev or "cpu"), test_loader),
                   "flops": res.report.flops_ratio, "params": res.report.params_ratio,
                   "wall_s": time.perf_counter() - t0, "resumed": args.resume, "best_reward": info["best_reward"],
                   "best_epoch": info["best_epoch"], "evals": info["evaluations"],
                   "removed_norm_ratio": info["removed_norm_ratio"], "config": cfg,
                   "reward_before_cut": info["reward_before_cut"]["acc"], "reward_after_cut": info["reward_after_cut"]["acc"],
                   "mean_reward": [x.get("mean_reward") for x in log], "best_so_far": [x.get("best_reward") for x in log],
                   "decoder_mse": [x.get("decoder_mse") for x in log]})


def wall(rows: list[dict]) -> str:
    """Mean wall time of the rows that ran start to end (a resumed run's covers only its tail)."""
    full = [r["wall_s"] for r in rows if not r.get("resumed")]
    return (f"{np.mean(full):.0f}" if full else "-") + (" (resumed runs left out)" if len(full) < len(rows) else "")


def render(args) -> None:
    path = Path(args.rows)
    rows = read_rows(path)
    if not rows:
        sys.exit(f"no rows in {path}")
    out = Path(args.out)
    lines = ["# CIFAR-10 from scratch: sac (RLAL) vs dense training + global / uniform, at equal epochs", "",
             f"Command: `python {' '.join(sys.argv)}` (rows from `{path}`)  ",
             "Recipe for every row (RLAL App. B): SGD momentum 0.9, weight decay 1e-4, lr 0.1 with one cosine over "
             "the E joint/dense epochs, then a fresh cosine from 0.1 over the F fine-tune epochs; batch 128, flip + "
             "4-pixel crop, cross-entropy. Test accuracy after the final epoch on all 10,000 test images (no "
             "best-epoch selection). sac: 50% FLOPs, block interiors (the paper's scope), P = 10 episodes per "
             "epoch, reward = accuracy of the pruned working copy on the held-out reward split after adaptive-BN "
             f"recalibration (8 batches of 64), options {json.dumps(SAC)} (see the rows' configs).", ""]
    for arch in sorted({r["arch"] for r in rows}):
        ar = [r for r in rows if r["arch"] == arch]
        s = ar[0]
        lines += [f"## {arch}: E = {s['epochs']} + F = {s['finetune_epochs']} epochs, {s['n_train']:,} training "
                  f"images, {s['n_reward']:,}-image reward split; device `{s['device']}`, torch {s['torch']}", "",
                  "| row | seeds | test accuracy (mean ± std) | per seed | FLOPs kept | params kept | right after "
                  "pruning | wall s (per seed) |", "|---|---:|---:|---|---:|---:|---:|---:|"]
        by = {}
        for v in (*SAC_ROWS, "global", "uniform", *ABLATES, "dense"):
            rs = sorted((r for r in ar if r["variant"] == v), key=lambda r: r["seed"])
            if not rs:
                continue
            by[v] = rs
            accs = [r["acc"] for r in rs]
            pruned = [r["acc_pruned"] for r in rs if "acc_pruned" in r]
            lines.append(f"| {LABEL[v]} | {len(rs)} | **{mean_std(accs)}** | " + ", ".join(f"{a:.2%}" for a in accs)
                         + f" | {np.mean([r['flops'] for r in rs]):.3f} | {np.mean([r['params'] for r in rs]):.3f} | "
                         + (f"{np.mean(pruned):.2%}" if pruned else "-")
                         + f" | {wall(rs)} |")
        lines += ["", "Targets:"]

        def cmp(a: str, b: str, rel: str) -> None:
            """Compare two rows on the seeds both have, so a 2-seed row never meets a 3-seed mean."""
            seeds = sorted({r["seed"] for r in by.get(a, [])} & {r["seed"] for r in by.get(b, [])})
            if seeds:
                ma, mb = (np.mean([r["acc"] for r in by[v] if r["seed"] in seeds]) for v in (a, b))
                ok = ma >= mb if rel == ">=" else ma <= mb
                lines.append(f"- {LABEL[a]} {ma:.2%} {rel} {LABEL[b]} {mb:.2%} (seeds "
                             f"{', '.join(map(str, seeds))}): {'met' if ok else 'NOT met'} ({100 * (ma - mb):+.2f} "
                             "points)")

        cmp("sac", "global", ">=")
        cmp("sac", "uniform", ">=")
        for v, targets in ABLATES.items():
            for a in targets:
                cmp(v, a, "<=")
        for v in SAC_ROWS[1:]:
            cmp(v, "global", ">=")
            cmp(v, "uniform", ">=")
        for v in (*SAC_ROWS, *ABLATES):
            for r in by.get(v, []):
                cut = (f", reward-split accuracy {r['reward_before_cut']:.3f} before the cut, "
                       f"{r['reward_after_cut']:.3f} after" if "reward_after_cut" in r else "")
                lines.append(f"- {LABEL[v]}, seed {r['seed']}: best reward {r['best_reward']:.3f} at epoch "
                             f"{r['best_epoch']}, {r['evals']} episodes scored, removed/kept channel norm before "
                             f"surgery {r['removed_norm_ratio']:.3f}{cut}" if r.get("removed_norm_ratio") is not None
                             else f"- {LABEL[v]}, seed {r['seed']}: best reward {r['best_reward']:.3f}")
        if arch == "resnet56":
            lines += ["", "Paper (RLAL Tab. 1, 200 + 200 epochs on all 50,000 TRAIN images): ResNet-56 93.41% dense "
                      "→ 93.86% pruned at 50.0% FLOPs."]
        lines.append("")
        curves = [r for r in ar if r["variant"] in VARIANTS and r.get("best_so_far")]
        if curves:
            name = f"{out.stem}_{arch}_rewards.png"  # the CPU table does not overwrite the GPU one's
            plot_rewards(curves, out.with_name(name))
            lines += [f"![reward per epoch]({name})", ""]
    notes = out.with_suffix(".notes.md")  # hand-written context kept beside the rendered table
    if notes.exists():
        lines += ["", notes.read_text().rstrip()]
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def plot_rewards(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    color = {v: plt.get_cmap("tab10")(i % 10) for i, v in enumerate(variants)}  # one colour per variant
    styles = ("-", "--", ":", "-.")  # one line style per seed
    for r in rows:
        ep = np.arange(1, len(r["mean_reward"]) + 1)
        mean = np.array([np.nan if v is None else v for v in r["mean_reward"]], float)
        best = np.array([np.nan if v is None or v < 0 else v for v in r["best_so_far"]], float)
        kw = {"color": color[r["variant"]], "ls": styles[int(r["seed"]) % len(styles)],
              "label": f"{LABEL[r['variant']]}, seed {r['seed']}"}
        axes[0].plot(ep, mean, marker=".", lw=0.8, **kw)
        axes[1].plot(ep, best, lw=1, **kw)
    axes[0].set_title("mean episode reward per epoch")
    axes[1].set_title("best reward so far")
    for ax in axes:
        ax.set_xlabel("epoch")
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
