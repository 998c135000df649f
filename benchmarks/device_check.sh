#!/usr/bin/env bash
# The CUDA checks of the compute types, as one script for a lent GPU machine (see the README):
# the compute-type tests (their CUDA cases run there), then the mms-1b-all benchmark per type
# at batch 1 (10 s and 30 s clips) and at batch 16 (30 s clips). Results go to $OUT.
# Python packages the machine lacks travel as wheels in .whl/ (see the device tool's notes).
set -uo pipefail
OUT=${OUT:-/tmp/device-out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD/src
else
    export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_compute_types.py 2>&1 \
    | tee "$OUT/pytest.log" | tail -15
model=/tmp/mms-1b-random
timeout 240 python3 benchmarks/compute_types.py --device cuda --model-dir "$model" \
    --types float16,bfloat16,int8,int8_float16 --seconds 10,30 --repeats 5 \
    --out-json "$OUT/cuda-batch1.json" 2>"$OUT/bench1.log" | tee "$OUT/cuda-batch1.md"
timeout 150 python3 benchmarks/compute_types.py --device cuda --model-dir "$model" \
    --types float16,bfloat16,int8,int8_float16 --seconds 30 --batch 16 --repeats 5 \
    --out-json "$OUT/cuda-batch16.json" 2>"$OUT/bench16.log" | tee "$OUT/cuda-batch16.md"
tail -3 "$OUT/bench16.log"
