#!/usr/bin/env bash
# GPU numerical tests of the Hopper kernel (--gpu-kernel=wgmma, ctest label
# gpu): causal and full at D 64 and 128, f16 and bf16, odd lengths, GQA,
# BSHD, lse, EMPTY tiles inside the key range, Sq != Skv, against the float64
# reference. Exit 77 (SKIPPED, never passed) where there is no CUDA GPU or it
# is not a compute capability 9.0 one (wgmma is sm_90a's).
#   run-wgmma.sh BIN_DIR EXAMPLES_DIR FULL_SPEC
set -uo pipefail
bin="$1" ex="$2" full="$3"
fail=0
run() {
  local log rc
  log=$("$bin/heed-run" "$@" --gpu-kernel=wgmma --target=cuda --repeat=1 2>&1)
  rc=$?
  echo "$log"
  [ $rc -eq 77 ] && exit 77
  if [ $rc -ne 0 ]; then
    # Not a Hopper GPU: the kernel cannot run there; say so, do not pass.
    grep -q "no entry\|needs --target=sm_90a" <<< "$log" && { echo "SKIPPED: not an sm_90 GPU"; exit 77; }
    echo "FAILED: heed-run $*"
    fail=1
  fi
}
for t in f16 bf16; do
  for d in 64 128; do
    run "$ex/causal.attn" --seq=333 --heads=4 --kv-heads=2 --dtype=$t --head-dim=$d --lse
    run "$full" --seq=257 --heads=2 --dtype=$t --head-dim=$d
  done
done
run "$ex/causal.attn" --seq=1 --heads=2 --dtype=bf16 --head-dim=128
run "$ex/causal.attn" --seq=3001 --heads=8 --kv-heads=2 --dtype=bf16 --head-dim=128 --layout=bshd
run "$ex/sliding_window.attn" --seq=1000 --heads=2 --dtype=f16 --param window=200
run "$ex/block_sparse.attn" --seq=256 --heads=4 --dtype=bf16 --head-dim=128 --buffer layout=bits:0.25
run "$ex/sinks.attn" --seq=100 --seq-kv=333 --heads=2 --dtype=f16
exit $fail
