"""How much of the falling infeasible fraction of a slope-annealed ppo search the schedule makes
by itself: the *untrained* policy of a search seed (the agent as the search builds it, GAE
pretraining included, no PPO update) sampled at the slope each batch of the schedule uses, every
sample screened with the cost model (no plan is evaluated beyond the search's baseline).

    python benchmarks/ppo_schedule_control.py [--seeds 0,1,2] [--samples 256]
        [--config '{"preset": "annealed"}'] [--out benchmarks/results/ppo_schedule_control.md]

The searches' observed per-batch infeasible fractions are read from the curves file
(``ppo_curves.py``) and printed beside the control's, batch by batch.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import fxprune
from _common import cifar_resnet56
from fxprune.policies import ppo as ppo_mod
from fxprune.policies.ppo_config import PPOConfig
from fxprune.search import DataSplits
from fxprune.search.config import config_from_dict


def control(model, rest, reward, cfg: dict, seed: int, batches: int, samples: int, batch_episodes: int) -> list:
    """Per batch ``b``: the infeasible fraction of ``samples`` episodes of the untrained policy at
    the slope factor of episode ``b * batch_episodes``."""
    out = []

    def run(self):  # replaces the search loop: build the agent as the search does, sample, screen
        st = self.start()
        for b in range(batches):
            st.episodes = b * batch_episodes
            self.schedule(st)
            plans, _, _ = self.sample_batch(samples)
            costs = np.array([self.cost_ratio(k) for k in plans])
            out.append({"batch": b, "slope": float(torch.as_tensor(self.agent.slope()).detach()),
                        "infeasible_fraction": float(np.mean(costs > self.budget + 1e-9))})
        return ppo_mod.PolicyResult(self.uniform, None, list(self.rl.rows), {})

    real = ppo_mod._Search.run
    ppo_mod._Search.run = run
    try:
        fxprune.prune(model, 0.5, example_inputs=torch.randn(1, 3, 32, 32), policy="ppo", progress=False,
                      data=DataSplits(train=rest.loader(128, shuffle=True, augment=True, seed=0), reward=reward),
                      policy_config={**cfg, "reward_score": "likelihood"}, resume=False, seed=seed)
    finally:
        ppo_mod._Search.run = real
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--batches", type=int, default=14)
    ap.add_argument("--config", default='{"preset": "annealed"}')
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--curves", default="benchmarks/results/cifar10_resnet56_cpu_ppo_curves.json")
    ap.add_argument("--out", default="benchmarks/results/ppo_schedule_control.md")
    args = ap.parse_args(argv)
    cfg = json.loads(args.config)
    full = config_from_dict(PPOConfig, cfg)
    model, _, rest, reward = cifar_resnet56(args.threads)
    observed = {}
    if Path(args.curves).exists():
        for c in json.loads(Path(args.curves).read_text()):
            k = c["config"]
            if k.get("rank_sharpness_final") == full.rank_sharpness_final and \
                    k.get("rank_sharpness") == full.rank_sharpness and k.get("group_noise") == full.group_noise:
                observed[c["seed"]] = [b["infeasible_fraction"] for b in c["batches"]]
    lines = ["# ppo: the slope schedule's own share of the falling infeasible fraction (ResNet-56, 50% FLOPs)",
             "", f"Command: `python benchmarks/ppo_schedule_control.py --seeds {args.seeds} --samples {args.samples} "
             f"--config '{args.config}'`", "",
             f"Options: `{json.dumps(cfg)}`. Control: the untrained policy of the search seed (GAE-pretrained "
             f"encoder, no PPO update), {args.samples} samples per batch at that batch's slope, screened with the "
             f"cost model. Observed: the search's own batch of {full.batch_episodes} (`{args.curves}`).", "",
             "| batch | slope | " + " | ".join(f"seed {s}: control / observed" for s in args.seeds.split(",")) + " |",
             "|---:|---:|" + "---:|" * len(args.seeds.split(","))]
    per_seed = {}
    for s in (int(x) for x in args.seeds.split(",")):
        per_seed[s] = control(model, rest, reward, cfg, s, args.batches, args.samples, full.batch_episodes)
        print(s, [round(r["infeasible_fraction"], 3) for r in per_seed[s]], flush=True)
    for b in range(args.batches):
        cells = []
        for s, rows in per_seed.items():
            obs = observed.get(s)
            cells.append(f"{rows[b]['infeasible_fraction']:.3f} / "
                         f"{'-' if obs is None or b >= len(obs) else f'{obs[b]:.2f}'}")
        slope = next(iter(per_seed.values()))[b]["slope"]
        lines.append(f"| {b} | {slope:.2f} | " + " | ".join(cells) + " |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
