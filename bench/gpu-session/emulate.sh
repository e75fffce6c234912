#!/bin/bash
# The GPU session's kernel cases (cases.txt: numerics, sanitize, backward;
# the mma.sync, SIMT and sm_90a wgmma kernels) on the CPU: heed-run
# --target=cuda against the stand-in driver's PTX emulator (FAKE_CUDA_EXECUTE=1;
# docs/testing.md, "GPU kernels on the CPU"), each checked against float64 as
# on the GPU, the emulator also checking shared-memory races, cp.async waits,
# bounds and alignment. About 4 minutes on 2 cores.
#   bash bench/gpu-session/emulate.sh [BUILD_DIR] [CASE_NAME_REGEX]
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
filter=${2:-.}
export LD_LIBRARY_PATH=$build/unittests/fake-cuda FAKE_CUDA_EXECUTE=1 HEED_CUDA_LOAD_PTX=1 \
  FAKE_CUDA_CC=${FAKE_CUDA_CC:-90} HEED_CACHE=off
cd "$root"
passed=0 failed=0 skipped=0
while IFS='|' read -r step name kopts ropts targets; do
  step=$(echo $step) name=$(echo $name)
  case "$step" in numerics|sanitize|backward) ;; *) continue;; esac
  [[ "$name" =~ $filter ]] || continue
  extra=""; [ "$step" = backward ] && extra="--backward"
  # heed-compile's flags for per-entry lengths: heed-run takes the lengths themselves.
  kopts=$(echo "$kopts" | sed -E "s/--(kv-lens|q-lens|cu-seqlens-q|cu-seqlens-kv)( |$)/ /g")
  start=$(date +%s.%N)
  out=$(timeout 300 "$build/bin/heed-run" $kopts $ropts $extra --target=cuda --repeat=1 2>&1)
  seconds=$(echo "$(date +%s.%N) - $start" | bc)
  if printf '%s\n' "$out" | grep -Eq '^(check|backward) +PASSED'; then
    printf 'PASSED  %-28s %6.1f s\n' "$name" "$seconds"; passed=$((passed + 1))
  else
    printf 'FAILED  %-28s %6.1f s\n' "$name" "$seconds"
    printf '%s\n' "$out" | grep -E "error|fake CUDA|problem|max error|FAILED" | head -4 | sed 's/^/        /'
    failed=$((failed + 1))
  fi
done < bench/gpu-session/cases.txt
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
