#!/bin/bash
# Split-KV parts of equal work against even parts on ragged decode (CPU;
# docs/decode.md, "Parts of equal work"; docs/benchmarks.md): heed-run on one
# entry of 32768 keys among entries of 1024, each way twice, then checked.
# Needs build/bin/heed-run (./heed build).
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export HEED_CACHE_DIR="${HEED_CACHE_DIR:-/tmp/heed-bench-cache}"
run() { # label, env..., args
  label=$1; shift
  env "$@" 2>&1 | grep -E "^time|^split|kv_splits|GFLOP|^error|PASSED|FAILED" | tr '\n' ' '; echo " <- $label"
}
A="build/bin/heed-run examples/decode.attn --batch=4 --heads=8 --kv-heads=1 --seq=1 --seq-kv=32768 --kv-lens=32768,1024,1024,1024 --head-dim=128 --dtype=bf16"
B="build/bin/heed-run examples/decode.attn --batch=8 --heads=32 --kv-heads=8 --seq=1 --seq-kv=32768 --kv-lens=32768,1024,1024,1024,1024,1024,1024,1024 --head-dim=128 --dtype=bf16"
for i in 1 2; do
run "A default equal" $A --repeat=30 --no-check
run "A even" HEED_SPLIT_KV_PARTS=even $A --repeat=30 --no-check
run "B split8 equal" HEED_SPLIT_KV=8 $B --repeat=10 --no-check
run "B split8 even" HEED_SPLIT_KV=8 HEED_SPLIT_KV_PARTS=even $B --repeat=10 --no-check
done
run "A check equal" $A --repeat=1
run "B check split8 equal" HEED_SPLIT_KV=8 $B --repeat=1
