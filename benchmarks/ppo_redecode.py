"""Re-decode finished ppo searches of ``cifar10_resnet56.py`` with ``prefer_decode=True`` and give
the result the same fair fine-tune: does the greedy decode fine-tune better than the best sampled
plan that the search returned (the maximum of hundreds of noisy scores)?

Each run folder is copied, its recorded options get ``prefer_decode: true``, its result is dropped,
and the search resumes from its last checkpoint: no update runs again, only the final choice (the
greedy decode is scored and returned). The rows go to ``--rows`` like the benchmark's::

    python benchmarks/ppo_redecode.py --run /tmp/tmpXXXX/run-ppo-lik-None-None --threads 1 \\
        --rows benchmarks/results/cifar10_resnet56_cpu_rows.jsonl
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

import fxprune
from _common import append_row, cifar_resnet56, fair_finetune
from fxprune.finetune import accuracy
from fxprune.policies.ppo_config import PPOConfig
from fxprune.search import DataSplits


# the order of the options in the benchmark's row names
ORDER = ("keep_init", "batch_episodes", "group_shift", "select", "fill", "rank_sharpness", "group_noise",
         "prefer_decode")


def redecode_folder(src: Path) -> tuple[Path, dict, int]:
    """A copy of a finished ppo run folder whose search will return its greedy decode on resume."""
    dst = Path(tempfile.mkdtemp()) / src.name
    shutil.copytree(src, dst)
    meta = json.loads((dst / "run.json").read_text())
    meta["config"]["prefer_decode"] = True
    (dst / "run.json").write_text(json.dumps(meta, indent=1))
    (dst / "result.json").unlink(missing_ok=True)
    (dst / "reward_curve.png").unlink(missing_ok=True)
    return dst, meta, int(meta["seed"])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, action="append", help="a finished ppo run folder (repeatable)")
    ap.add_argument("--seeds", default="0,1,2", help="fine-tune seeds of the fair protocol")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rows", required=True)
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    model, test, rest, reward = cifar_resnet56(args.threads)
    test_loader = test.loader(500)
    base_acc = accuracy(model, test_loader)
    ex = torch.randn(1, 3, 32, 32)
    for src in args.run:
        folder, meta, seed = redecode_folder(Path(src))
        defaults = dataclasses.asdict(PPOConfig())
        user = {k: meta["config"][k] for k in ORDER if meta["config"][k] != defaults[k]}
        t = time.perf_counter()
        if set(meta["budget"]) != {"flops"}:
            raise SystemExit(f"{src}: ppo_redecode.py re-runs FLOPs budgets (cifar10_resnet56.py's); "
                             f"this search had {meta['budget']}")
        res = fxprune.prune(model, meta["budget"]["flops"],
                            example_inputs=ex, policy="ppo", importance=meta["importance"],
                            round_to=meta["round_to"], progress=False, resume=True, seed=seed, run_dir=folder,
                            max_evals=meta["max_evals"], policy_config=meta["config"],
                            data=DataSplits(train=rest.loader(128, shuffle=True, augment=True, seed=0), reward=reward))
        info = res.search["info"]
        more = ", ".join(k if v is True else f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}"
                         for k, v in user.items())
        name = f"ppo ({more}), likelihood reward, re-decoded" + (f", search seed {seed}" if seed else "")
        row = {"name": name, "policy": "ppo-lik", "device": "cpu", "torch": torch.__version__, "base_acc": base_acc,
               "seeds": seeds, "search_seed": seed, "round_to": str(meta["round_to"]), "importance": meta["importance"],
               "flops": res.report.flops_ratio, "params": res.report.params_ratio,
               "search_s": time.perf_counter() - t, "acc_pruned": accuracy(res.model, test_loader),
               "evals": res.search["evaluations"], "chosen": info["chosen"],
               "config": {**user, "reward_score": meta["config"]["reward_score"]},
               "jaccard": info.get("jaccard"), "source_run": str(src),
               "ft": [fair_finetune(res.model, rest, s, test_loader) for s in seeds]}
        append_row(args.rows, row)
        print(row["name"], info["chosen"], row["ft"], flush=True)


if __name__ == "__main__":
    main()
