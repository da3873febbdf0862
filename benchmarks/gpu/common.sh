# sourced by the device scripts: environment, data, MPS
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export PYTHONPATH=$PWD:$PWD/benchmarks PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
export FXPRUNE_SHARED_DATA=/tmp/shared MPLBACKEND=Agg FXPRUNE_CACHE=/tmp/fxcache
RES=/tmp/res; mkdir -p $RES
if [ ! -f /tmp/shared/cifar10/test.npz ]; then
  python3 benchmarks/gpu/unpack.py .gpu/data /tmp/shared && cp .gpu/data/resnet56-4bfd9763.th /tmp/shared/weights/
fi
if [ -z "${NO_MPS:-}" ] && ! pgrep -f nvidia-cuda-mps-control >/dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps CUDA_MPS_LOG_DIRECTORY=/tmp/mpslog; mkdir -p /tmp/mps /tmp/mpslog
  timeout 20 nvidia-cuda-mps-control -d && echo "MPS started" || echo "MPS failed"
fi
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps CUDA_MPS_LOG_DIRECTORY=/tmp/mpslog
snap() { tar czf ${OUT:-/tmp}/results.tgz --exclude='*.safetensors' --exclude='sac-run-*' -C $RES . 2>/dev/null; }
# job NAME CMD...: run CMD in the background (timeout $D, log $M/NAME.log, exit code to $M/rc.txt);
# wait_jobs: snapshot every 45 s until every job ended, then print the exit codes and log tails.
PIDS=""
job() { local name=$1; shift; ( timeout $D "$@" > $M/$name.log 2>&1; echo "$name rc=$? $(date +%T)" >> $M/rc.txt ) & PIDS="$PIDS $!"; }
wait_jobs() {
  ( while sleep 45; do snap; echo "$(date +%T) $(cat $M/rc.txt 2>/dev/null | wc -l) jobs done; $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null)"; done ) &
  local snapper=$!
  wait $PIDS
  sleep 1; kill $snapper 2>/dev/null
  cat $M/rc.txt; for f in $M/*.log; do echo "== $f"; tail -3 $f; done
  snap
}
