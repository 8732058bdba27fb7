#!/usr/bin/env bash
# The GPU checks as one prepared run, for a session that is lent a GPU machine (the `device` tool: 15 minutes
# of device time in all, at most 10 a command). Everything it finds lands in $OUT.
#
#   here:   .venv/bin/python benchmarks/device_pack.py       (writes .device/: MiniLM's tokenizer, SNLI slices)
#   there:  run(command="bash benchmarks/device_check.sh", carry=[".device"], timeout_s=590)
#
# Nothing is installed: the machine's own python3 (its torch, transformers, pytest) runs the checkout from
# src/. Order, each stage under its own time limit, so that a slow stage still leaves the others' figures:
#   1. the machine and the versions;
#   2. tests/test_cuda.py: the CUDA paths against the CPU, mixed precision, the non-finite skip, no host
#      synchronisation in a step (CUDA's own checker), pre-training resumed after SIGKILL on the GPU;
#   3. benchmarks/gpu.py eager: pre-training step of base at 128 and 512 tokens, fine-tuning step, encode,
#      host synchronisations, DDP overhead (gpu-eager.json);
#   4. the same pre-training step with torch.compile, as long as time is left (gpu-compile.json).
set -u
OUT=${OUT:-/tmp/device-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src:$PWD/benchmarks" PYTHONUNBUFFERED=1 BERTFORGE_CACHE="$PWD/.device/cache"
start=$(date +%s)
left() { echo $(( ${BUDGET_S:-570} - ($(date +%s) - start) )); }

{ nvidia-smi; nproc; free -g; "$PY" -c "import sys, torch, transformers; print(sys.version); \
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0)); \
print('transformers', transformers.__version__)"; } 2>&1 | tee "$OUT/machine.txt"

if [ ! -f .device/cache/minilm/config.json ]; then
  echo "no .device/ here: run benchmarks/device_pack.py before, and carry .device" | tee -a "$OUT/machine.txt"
  exit 2
fi
"$PY" benchmarks/device_pack.py --weights
trap 'rm -f .device/cache/minilm/model.safetensors' EXIT  # 87 MB: never left where it would travel next time

echo "== tests/test_cuda.py ($(left) s left)"
timeout 170 "$PY" -m pytest -q -p no:cacheprovider -o addopts="" tests/test_cuda.py -x -ra 2>&1 \
  | tee "$OUT/tests.log"

echo "== benchmarks/gpu.py, eager ($(left) s left)"
timeout $(( $(left) > 320 ? 300 : $(left) - 20 )) "$PY" benchmarks/gpu.py --no-compile --json "$OUT/gpu-eager.json" \
  2>&1 | tee "$OUT/gpu-eager.log"

echo "== benchmarks/gpu.py, pre-training with torch.compile ($(left) s left)"
if [ "$(left)" -gt 60 ]; then
  timeout $(( $(left) - 10 )) "$PY" benchmarks/gpu.py --compiled-only --skip finetune encode sync ddp \
    --json "$OUT/gpu-compile.json" 2>&1 | tee "$OUT/gpu-compile.log"
fi
echo "== done in $(( $(date +%s) - start )) s"
