#!/bin/bash
source "$(dirname "$0")/common.sh"
P=$RES/probe; mkdir -p $P
for r in self_competition lagrangian; do
( timeout ${T:-165} python3 - $r $P > $P/$r.log 2>&1 <<'PY'
import sys, json, time, torch, fxprune
from _common import cifar_resnet56
from fxprune.search import DataSplits
r, P = sys.argv[1], sys.argv[2]
model, test, rest, reward = cifar_resnet56(1)
t = time.time()
res = fxprune.prune(model, 0.5, example_inputs=(1, 3, 32, 32), policy="ppo", importance="l1", round_to=1, progress=False,
                    data=DataSplits(train=rest.loader(128, shuffle=True, augment=True, device="cuda"), reward=reward),
                    device="cuda", run_dir=f"{P}/run-{r}", resume=False,
                    policy_config={"episodes": 1200, "reward": r, "eval_mode": "masked"})
i = res.search["info"]
print(json.dumps({"chosen": i["chosen"], "best_sampled_acc": i["best_sampled_acc"], "s": time.time() - t,
                  "evals": i["evaluations"], "batches": i["batches"]}))
PY
) &
done
wait
for r in self_competition lagrangian; do tail -2 $P/$r.log | cut -c1-400; python3 -c "
import json,sys
for l in open('$P/run-$r/evals.jsonl'):
    d=json.loads(l)
    if d.get('kind')=='update': print('$r', d['update'], round(d['infeasible_fraction'],3), d['feasible_acc'] and round(d['feasible_acc'],4), round(d['mean_reward'],3), round(d.get('entropy',0),4))
"; done
snap
