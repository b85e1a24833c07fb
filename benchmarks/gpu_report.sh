#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: install xpnet's GPU extras from this checkout into a fresh
# virtual environment, then run what CI cannot, and write one report:
#   xpnet check --device cuda (and cuda:1 where there are 2 GPUs), the gpu-marked tests,
#   mpiexec -n 2 xpnet train --device cuda against one process (2 GPUs), the data-parallel
#   tests, bench_train.py and bench_conv.py --device cuda against PyTorch on the same GPU.
# Without a GPU it says so in one line and exits 0.
#
#   bash benchmarks/gpu_report.sh [--no-install] [REPORT]     (default REPORT: gpu-report.md)
#
# --no-install uses the current environment (one with the GPU extras already installed, for
# machines without a package index). Exit status: 0 if every step passed, else 1.
set -uo pipefail
cd "$(dirname "$0")/.."

install=1
if [[ "${1:-}" == "--no-install" ]]; then install=0; shift; fi
report=$(realpath -m "${1:-gpu-report.md}")

gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
if [[ "${gpus:-0}" -eq 0 ]]; then
    echo "gpu_report: no NVIDIA GPU on this machine (nvidia-smi lists none); nothing to measure"
    exit 0
fi
# the CUDA major the driver supports picks the extra: cuda12 or cuda13
cuda_major=$(nvidia-smi | grep -o 'CUDA Version: [0-9]*' | grep -o '[0-9]*$')
extra="cuda${cuda_major}"
[[ "$extra" == cuda12 || "$extra" == cuda13 ]] || extra=cuda12

if [[ $install -eq 1 ]]; then
    python3 -m venv .venv-gpu
    # shellcheck disable=SC1091
    source .venv-gpu/bin/activate
    # no CPU constraints file here: the test extra's torch is then PyPI's CUDA build
    pip install --quiet -e ".[${extra},mpi,test]" || { echo "gpu_report: pip install failed"; exit 1; }
fi

work=$(mktemp -d)
failed=0
{
    echo "# xpnet on $(nvidia-smi -L | head -n 1 | cut -d'(' -f1) ($gpus GPU(s)), $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), extra [$extra], python $(python --version 2>&1)"
} > "$report"

step() {  # step TITLE COMMAND...: run it, append its output and exit status to the report
    local title=$1 status; shift
    echo "gpu_report: $title" >&2
    { echo; echo "## $title"; echo; echo '```'; echo "\$ $*"; } >> "$report"
    "$@" > "$work/out" 2>&1
    status=$?
    { tail -n 300 "$work/out"; echo "(exit status $status)"; echo '```'; } >> "$report"
    [[ $status -eq 0 ]] || failed=1
}

step "nvidia-smi" nvidia-smi
step "what xpnet finds" python -c "import cupy, xpnet; print('cuda_status', xpnet.cuda_status()); \
print('probe of GPU 0:', xpnet.cuda.gpu_problem(0) or 'ok'); \
from cupy.cuda import nccl; print('NCCL available:', nccl.available, nccl.get_version() if nccl.available else '')"
step "xpnet check --device cuda" xpnet check --device cuda
if [[ $gpus -ge 2 ]]; then step "xpnet check --device cuda:1" xpnet check --device cuda:1; fi
step "gpu-marked tests" python -m pytest -m gpu -q
step "CuPy stand-in tests (what CI runs without a GPU)" python -m pytest tests/test_cupy_stand_in.py -q

if [[ $gpus -ge 2 ]]; then
    launcher="$(dirname "$(command -v python)")/mpiexec"
    args=(train --device cuda --dtype float64 --train-limit 6000 --batch-size 100 --iters 60 -q)
    step "one process on GPU 0" python -m xpnet "${args[@]}" --save "$work/one.npz"
    step "mpiexec -n 2 xpnet train --device cuda (ranks on GPUs 0 and 1)" \
        env MPIEXEC_TIMEOUT=600 "$launcher" -n 2 python -m xpnet "${args[@]}" --save "$work/two.npz"
    step "two ranks end with one process's parameters (float64)" python -c "
import numpy as np
one, two = np.load('$work/one.npz'), np.load('$work/two.npz')
keys = [k for k in one.files if k.startswith('params/')]
worst = max(float(np.max(np.abs(one[k] - two[k]))) for k in keys)
print(f'{len(keys)} arrays, max abs difference {worst:.3g}')
assert worst < 1e-9, worst"
    step "data-parallel tests" python -m pytest tests/test_distributed.py tests/test_distributed_training.py -q
else
    echo -e "\n## data-parallel on 2 GPUs\n\nskipped: this machine has 1 GPU" >> "$report"
fi

step "bench_train.py --device cuda (xpnet on CuPy vs PyTorch on the same GPU)" \
    python benchmarks/bench_train.py --device cuda --json "$work/bench_train.json"
step "bench_conv.py --device cuda" python benchmarks/bench_conv.py --device cuda --json "$work/bench_conv.json"
for json in "$work"/bench_*.json; do
    [[ -f "$json" ]] && { echo; echo "### $(basename "$json")"; echo '```json'; cat "$json"; echo '```'; } >> "$report"
done
rm -rf "$work"

echo "gpu_report: wrote $report ($([[ $failed -eq 0 ]] && echo 'every step passed' || echo 'some steps FAILED'))"
exit $failed
