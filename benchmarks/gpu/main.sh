#!/bin/bash
# knobs: PPO_EPISODES SAC_EPOCHS SAC_SEEDS R56_SAC_EPOCHS LONG_EPOCHS RF_PLANS DEADLINE (seconds per job)
source "$(dirname "$0")/common.sh"
D=${DEADLINE:-450}; PE=${PPO_EPISODES:-2000}; SE=${SAC_EPOCHS:-30}; SS=${SAC_SEEDS:-0 1}; RE=${R56_SAC_EPOCHS:-30}
LE=${LONG_EPOCHS:-15}; RP=${RF_PLANS:-32}
M=$RES/main; mkdir -p $M
R56="python3 benchmarks/cifar10_resnet56.py --device ${DEV:-cuda} ${EXTRA:-} --threads 1 --rows $M/r56.jsonl --out $M/r56.md"
job r56_ppo $R56 --policies uniform,global,ppo --ppo-config "{\"episodes\": $PE}"
job r56_nogae $R56 --policies ppo-nogae --ppo-config "{\"episodes\": $PE}"
job r56_random $R56 --policies random --wait-ppo 400
job r56_mcq_g $R56 --policies mcq --mcq global:8,global:0
job r56_mcq_s $R56 --policies mcq --mcq size:8,size:0
job r56_long_g $R56 --policies "" --long-epochs $LE --long-policies global
job r56_long_p $R56 --policies "" --long-epochs $LE --long-policies ppo
job rf python3 benchmarks/reward_fidelity.py --device ${DEV:-cuda} ${EXTRA:-} --threads 1 --plans $RP --rows $M/rf.jsonl --out $M/rf.md --fresh
SAC="python3 benchmarks/cifar10_sac.py --device ${DEV:-cuda} ${EXTRA:-} --threads 1 --rows $M/sac.jsonl --out $M/sac.md --epochs $SE"
for s in $SS; do for v in sac dense noz noalign; do job sac_${v}_$s $SAC --variants $v --seeds $s; done; done
job sac56_sac python3 benchmarks/cifar10_sac.py --arch resnet56 --device ${DEV:-cuda} ${EXTRA:-} --threads 1 --rows $M/sac.jsonl --out $M/sac.md --epochs $RE --variants sac
job sac56_dense python3 benchmarks/cifar10_sac.py --arch resnet56 --device ${DEV:-cuda} ${EXTRA:-} --threads 1 --rows $M/sac.jsonl --out $M/sac.md --epochs $RE --variants dense
wait_jobs
