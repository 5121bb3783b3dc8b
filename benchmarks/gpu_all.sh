#!/usr/bin/env bash
# Every GPU figure of docs/benchmarks.md in one go, on one CUDA GPU, in about 7-9 minutes on an H200 (7 min on 2026-12-04):
#
#     bash benchmarks/gpu_all.sh [OUT]        # OUT: the folder for the logs (default gpu_results)
#
# 1. the CUDA tests (`pytest -m cuda`: a run against the CPU pipeline, no host sync inside any strategy's
#    steps, the optimizers on CUDA);
# 2. benchmarks/gpu.py: ms/step by precision and memory format at 256² and 512² (width 128), fit / bare loop,
#    the papers' 20 000-step protocol projected, K chains batched (compilation left out: it costs a minute
#    a run; `python benchmarks/gpu.py` alone includes it);
# 3. benchmarks/paper_protocol.py: one 512² image, width 128, per part of a step, float32 and bf16-mixed;
# 4. benchmarks/chains.py: 4 batched chains against 4 single runs in turn, at 64² and 256²;
# 5. benchmarks/step_overhead.py --device cuda: every strategy against its bare loop, 64² and 256², 1 and
#    4 chains (one repeat: a GPU's wall clock varies far less than this project's shared CPU's).
# Each part has its own time limit, so that one stuck part leaves the others' figures.
set -u
out=${1:-gpu_results}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 WANDB_MODE=offline
part() {  # part NAME SECONDS COMMAND...: run COMMAND under a limit, its output to OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout -k 10 "$limit" "$@" >"$out/$name.log" 2>&1
    echo "$name: exit $? after $((SECONDS - start)) s" | tee -a "$out/parts.log"
}
{ nvidia-smi; python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"; } \
    >"$out/parts.log" 2>&1
part pytest_cuda 100 python3 -m pytest -q -m cuda -p no:cacheprovider tests/test_runs.py tests/test_host_sync.py \
    tests/test_sgld_optim.py
part gpu 100 python3 benchmarks/gpu.py --steps 60 --warmup 10 --compile-sizes --csv "$out/gpu.csv"
part paper_protocol 60 bash -c "python3 benchmarks/paper_protocol.py --steps 200 --device cuda && \
    python3 benchmarks/paper_protocol.py --steps 200 --device cuda --precision bf16-mixed"
part chains 110 bash -c "python3 benchmarks/chains.py --device cuda --crop 64 --steps 120 --repeats 2 && \
    python3 benchmarks/chains.py --device cuda --crop 256 --steps 120 --repeats 2"
part step_overhead 180 python3 benchmarks/step_overhead.py --device cuda --repeats 1 --steps 60 45
