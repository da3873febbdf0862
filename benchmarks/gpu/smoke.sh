#!/bin/bash
source "$(dirname "$0")/common.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $RES/smoke_env.txt
python3 -c "import torch, torchvision, torch_geometric, onnxruntime, PIL; print(torch.__version__, torchvision.__version__, torch_geometric.__version__, onnxruntime.__version__, PIL.__version__, torch.cuda.is_available())" 2>&1 | tee -a $RES/smoke_env.txt
timeout 8 python3 -c "import torch; x=torch.ones(3,device='cuda'); print('cuda under MPS ok', float(x.sum()))" 2>&1 | tee -a $RES/smoke_env.txt || { echo "MPS broken: quitting it" | tee -a $RES/smoke_env.txt; echo quit | nvidia-cuda-mps-control; }
timeout 60 python3 -m pytest -q -p no:cacheprovider -x tests/search/test_backends.py -k "cuda or device" tests/test_data.py 2>&1 | tail -5 | tee $RES/smoke_pytest.txt
timeout 60 python3 benchmarks/device_throughput.py --device cuda --out $RES/device_throughput.md > $RES/device_throughput.log 2>&1; echo "throughput rc=$?" | tee -a $RES/smoke_env.txt
tail -25 $RES/device_throughput.log
timeout 40 python3 - <<'PY' 2>&1 | tee $RES/epoch_timing.txt
import time, torch, fxprune, numpy as np
from fxprune.data import load_npz_folder
from fxprune.models import cifar_resnet
tr = load_npz_folder("/tmp/shared/cifar10", "train", normalize="cifar10")
for depth in (20, 56):
    ld = tr.loader(128, shuffle=True, augment=True, device="cuda")
    m = cifar_resnet(depth)
    fxprune.finetune(m, ld, max_steps=20, device="cuda", progress=False)
    torch.cuda.synchronize(); t = time.perf_counter()
    fxprune.finetune(m, ld, max_steps=100, device="cuda", progress=False)
    torch.cuda.synchronize(); dt = (time.perf_counter() - t) / 100
    print(f"resnet{depth}: {dt*1000:.1f} ms/step, {dt*len(ld):.1f} s/epoch of {len(tr)} images")
PY
S=$RES/smoke; mkdir -p $S
( timeout 100 python3 benchmarks/cifar10_resnet56.py --smoke --device cuda --threads 1 --seeds 0,1 --mcq global:8 --long-epochs 0.05 --rows $S/r56.jsonl --out $S/r56.md > $S/r56.log 2>&1; echo "r56 rc=$?" >> $S/rc.txt ) &
( timeout 100 python3 benchmarks/reward_fidelity.py --smoke --device cuda --threads 1 --plans 3 --recalib 0,8 --rows $S/rf.jsonl --out $S/rf.md --fresh > $S/rf.log 2>&1; echo "rf rc=$?" >> $S/rc.txt ) &
( timeout 100 python3 benchmarks/cifar10_sac.py --smoke --device cuda --threads 1 --rows $S/sac.jsonl --out $S/sac.md > $S/sac.log 2>&1; echo "sac rc=$?" >> $S/rc.txt ) &
wait
cat $S/rc.txt; for f in $S/*.log; do echo "== $f"; tail -4 $f; done
snap
