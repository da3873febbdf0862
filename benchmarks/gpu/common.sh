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
