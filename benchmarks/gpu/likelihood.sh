#!/bin/bash
# Does the better-ranking reward find better plans? ResNet-56 rows with reward_score accuracy and
# likelihood side by side (same search seed, same evaluations, the fair fine-tune), one process per
# row under MPS. Knobs: PPO_EPISODES RANDOM_EVALS DEADLINE (seconds per job).
# Render: python benchmarks/cifar10_resnet56.py --render --rows RES/lik/r56.jsonl --out benchmarks/results/cifar10_resnet56_likelihood.md
source "$(dirname "$0")/common.sh"
D=${DEADLINE:-480}; PE=${PPO_EPISODES:-600}; RE=${RANDOM_EVALS:-440}
M=$RES/lik; mkdir -p $M
R56="python3 benchmarks/cifar10_resnet56.py --device ${DEV:-cuda} ${EXTRA:-} --threads 1 --rows $M/r56.jsonl --out $M/r56.md"
job global $R56 --policies global
job random $R56 --policies random --random-evals $RE
job random_lik $R56 --policies random-lik --random-evals $RE
job ppo $R56 --policies ppo --ppo-config "{\"episodes\": $PE}"
job ppo_lik $R56 --policies ppo-lik --ppo-config "{\"episodes\": $PE}"
job mcq $R56 --policies mcq --mcq global:8
job mcq_lik $R56 --policies mcq-lik --mcq global:8
wait_jobs
