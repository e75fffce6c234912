#!/usr/bin/env bash
# On the GPU machine (device tool, `carry: [".gpu"]`): unpacks pack.sh's
# bundle into /tmp/heed, then runs, logging everything under $OUT:
#   1. the GPU numerical tests (test/Integration/GPU/run-examples.sh: every
#      example on the SIMT and tensor-core kernels against float64);
#   2. compute-sanitizer (memcheck, racecheck, synccheck) on two kernels,
#      where the machine supports it;
#   3. the benchmark (bench/gpu_attention.py) with --json.
# STEPS=numerics,sanitizer,bench selects; BENCH_ARGS passes options (e.g.
# "--quick" or "--dims 128").
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/heed-out}
mkdir -p "$out" /tmp/heed
xz -dc .gpu/heed-gpu.tar.xz | tar -C /tmp/heed -xf -
export PATH=/tmp/heed/bin:$PATH LD_LIBRARY_PATH=/tmp/heed/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export HEED_CACHE_DIR=/tmp/heed/cache HEED_LIBRARY=/tmp/heed/lib/libheed.so PYTHONUNBUFFERED=1
steps=${STEPS:-numerics,sanitizer,bench}
nvidia-smi --query-gpu=name,driver_version --format=csv 2>&1 | tee "$out/device.txt"
rc=0
if [[ $steps == *numerics* ]]; then
  test/Integration/GPU/run-examples.sh /tmp/heed/bin examples cuda 2>&1 | tee "$out/numerics.log"
  rc=${PIPESTATUS[0]}
  echo "numerics: exit $rc" | tee -a "$out/numerics.log"
fi
if [[ $steps == *sanitizer* ]] && command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck synccheck; do
    for args in "examples/causal.attn --dtype=bf16 --head-dim=128 --seq=333 --lse" \
                "examples/document.attn --dtype=f16 --head-dim=64 --seq=301 --buffer doc_ids=docs:10:90"; do
      echo "== $tool heed-run $args" >> "$out/sanitizer.log"
      compute-sanitizer --tool "$tool" --error-exitcode 9 heed-run $args --target=cuda \
        >> "$out/sanitizer.log" 2>&1 || echo "FAILED ($?)" >> "$out/sanitizer.log"
    done
  done
  tail -5 "$out/sanitizer.log"
fi
if [[ $steps == *bench* ]]; then
  python3 bench/gpu_attention.py --json "$out/bench.json" ${BENCH_ARGS:-} 2>&1 | tee "$out/bench.log"
fi
exit $rc
