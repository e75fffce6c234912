#!/usr/bin/env bash
# Head-routing benchmarks behind docs/benchmarks.md (not tests): DuoAttention-
# style routing (half the heads streaming: 4 sinks + 256-key window) against
# every head causal, at S = 32K on the CPU. The arithmetic allows at most 2x.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/heed" build >/dev/null
bin="${HEED_BUILD_DIR:-$root/build}/bin"
seq="${1:-32768}"
common=(--seq="$seq" --heads=4 --head-dim=64 --repeat=1 --no-check)
row() { # label, then heed-run arguments
  local label="$1"; shift
  "$bin/heed-run" "$@" --json | python3 "$root/bench/row.py" "$label"
}
echo "## Head routing, f32, B=1 H=4 S=$seq D=64 ($(nproc) cores)"
echo
echo "| variant | density | time (ms) | useful GFLOP/s | KV blocks visited | compile (ms) |"
echo "| --- | --- | --- | --- | --- | --- |"
row "all heads causal" "$root/examples/causal.attn" "${common[@]}"
row "DuoAttention: 2 causal + 2 streaming heads" "$root/bench/specs/duo_half_streaming.attn" "${common[@]}"
row "DuoAttention, head table (bits:0.5)" "$root/examples/duo_attention.attn" "${common[@]}" --buffer=streaming=bits:0.5 --seed=3
