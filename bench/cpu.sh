#!/usr/bin/env bash
# CPU benchmarks behind docs/benchmarks.md (not tests): prints markdown tables.
#   1. the machine: single-core FMA peak; a naive three-loop causal attention
#   2. heed, f32 B=1 H=8 S=2048 D=64 causal (issue 2's bar) and compile times
#   3. heed at S=8192 with and without the mask analysis (issue 3's list)
#   4. per-call block-structure cost: heed vs a brute-force O(S^2) block mask
#   5. the 2-D neighborhood with patch tiles vs flat tiles (bench/neighborhood.sh)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/heed" build >/dev/null
bin="${HEED_BUILD_DIR:-$root/build}/bin"
ex="$root/examples"; sp="$root/bench/specs"

echo "# $(date -u +%F), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
echo
echo '```'
"$bin/heed-cpu-baselines" 2048
echo '```'

row() { # label, then heed-run arguments
  local label="$1"; shift
  "$bin/heed-run" "$@" --no-check --json |
    python3 "$root/bench/row.py" "$label"
}

echo
echo "## f32, B=1 H=8 S=2048 D=64"
echo
echo "| variant | density | time (ms) | useful GFLOP/s | KV blocks visited | compile (ms) |"
echo "| --- | --- | --- | --- | --- | --- |"
common=(--batch=1 --heads=8 --seq=2048 --head-dim=64 --repeat=7)
row "causal" "$ex/causal.attn" "${common[@]}"
row "causal, no analysis" "$ex/causal.attn" "${common[@]}" --no-analysis
row "full" "$sp/full.attn" "${common[@]}"
row "causal, bf16" "$ex/causal.attn" "${common[@]}" --dtype=bf16
row "causal, 1 thread" "$ex/causal.attn" "${common[@]}" --num-threads=1

echo
echo "## f32, B=1 H=8 S=8192 D=64, with and without the mask analysis"
echo
echo "| variant | density | time (ms) | useful GFLOP/s | KV blocks visited | compile (ms) |"
echo "| --- | --- | --- | --- | --- | --- |"
big=(--batch=1 --heads=8 --seq=8192 --head-dim=64 --repeat=3)
for mode in "" "--no-analysis"; do
  tag=${mode:+", no analysis"}
  row "causal$tag" "$ex/causal.attn" "${big[@]}" $mode
  row "sliding window 1024$tag" "$ex/sliding_window.attn" --param window=1024 "${big[@]}" $mode
  row "document 256..2048$tag" "$ex/document.attn" --buffer doc_ids=docs:256:2048 "${big[@]}" $mode
  row "2-D neighborhood 17x17 on 64x128$tag" "$sp/neighborhood_64x128.attn" "${big[@]}" $mode
  row "block-sparse 25%$tag" "$sp/block_sparse_128.attn" --buffer layout=bits:0.25 "${big[@]}" $mode
done

echo
echo "## Block structures per call (document mask, causal)"
echo
"$bin/heed-bench-block-structures"

echo
bash "$root/bench/neighborhood.sh"
