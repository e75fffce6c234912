#!/bin/bash
# The GPU session's kernel cases (cases.txt: numerics, sanitize, backward;
# the mma.sync, SIMT and sm_90a wgmma kernels) on the CPU: heed-run
# --target=cuda against the stand-in driver's PTX emulator (FAKE_CUDA_EXECUTE=1;
# docs/testing.md, "GPU kernels on the CPU"), each checked against float64 as
# on the GPU, the emulator also checking shared-memory races, cp.async and TMA
# waits, bounds and alignment. The kernels are the ones a GPU would load
# (ptxas runs and fits them; HEED_CUDA_LOAD_PTX=1 loads their PTX). Cases run
# JOBS at a time (default: the CPUs); results print in the list's order. About
# 4 minutes on 2 cores.
#   bash bench/gpu-session/emulate.sh [BUILD_DIR] [CASE_NAME_REGEX]
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
filter=${2:-.}
jobs=${JOBS:-$(nproc)}
export LD_LIBRARY_PATH=$build/unittests/fake-cuda FAKE_CUDA_EXECUTE=1 HEED_CUDA_LOAD_PTX=1 \
  FAKE_CUDA_CC=${FAKE_CUDA_CC:-90} HEED_CACHE=off
cd "$root"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One case: its result line (and the failure's lines) into $work/<n>.
run_case() {
  local n=$1 name=$2 args=$3 start end
  start=$(date +%s.%N)
  out=$(timeout 300 "$build/bin/heed-run" $args --target=cuda --repeat=1 2>&1)
  end=$(date +%s.%N)
  seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  if printf '%s\n' "$out" | grep -Eq '^(check|backward) +PASSED'; then
    printf 'PASSED  %-28s %6s s\n' "$name" "$seconds" > "$work/$n"
  else
    { printf 'FAILED  %-28s %6s s\n' "$name" "$seconds"
      printf '%s\n' "$out" | grep -E "error|fake CUDA|problem|max error|FAILED" | head -4 |
        sed 's/^/        /'; } > "$work/$n"
  fi
}

n=0
while IFS='|' read -r step name kopts ropts targets; do
  step=$(echo $step) name=$(echo $name)
  case "$step" in numerics|sanitize|backward) ;; *) continue;; esac
  [[ "$name" =~ $filter ]] || continue
  extra=""; [ "$step" = backward ] && extra="--backward"
  # heed-compile's flags for per-entry lengths: heed-run takes the lengths themselves.
  kopts=$(echo "$kopts" | sed -E "s/--(kv-lens|q-lens|cu-seqlens-q|cu-seqlens-kv)( |$)/ /g")
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
  run_case "$(printf '%04d' $n)" "$name" "$kopts $ropts $extra" &
  n=$((n + 1))
done < bench/gpu-session/cases.txt
wait

passed=0 failed=0
for f in "$work"/*; do
  [ -e "$f" ] || continue
  cat "$f"
  if head -1 "$f" | grep -q '^PASSED'; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$n" -gt 0 ]
