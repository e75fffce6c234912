#!/usr/bin/env bash
# Head-routing benchmarks behind docs/benchmarks.md (not tests):
#  1. DuoAttention-style routing (half the heads streaming: 4 sinks + 256-key
#     window) against every head causal, at S = 32K. The arithmetic allows 2x.
#  2. MoH-style gating: causal attention with 25/50/75/100% of the (token,
#     head) pairs routed, at S = 8K: time should follow the routed fraction.
#   bench/routing.sh [S for 1] [S for 2]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/heed" build >/dev/null
bin="${HEED_BUILD_DIR:-$root/build}/bin"
seq="${1:-32768}"
seq2="${2:-8192}"
common=(--seq="$seq" --heads=4 --head-dim=64 --repeat=3 --no-check)
# The JSON goes to a file first: a python3 on heed-run's pipe would start up
# on a core while heed-run times its calls (bench/compare-cpu.sh).
json_out="$(mktemp)"
trap 'rm -f "$json_out"' EXIT
row() { # label, then heed-run arguments
  local label="$1"; shift
  "$bin/heed-run" "$@" --json > "$json_out"
  python3 "$root/bench/row.py" "$label" < "$json_out"
}
echo "## Head routing, f32, B=1 H=4 S=$seq D=64 ($(nproc) cores)"
echo
echo "| variant | density | time (ms) | useful GFLOP/s | KV blocks visited | compile (ms) |"
echo "| --- | --- | --- | --- | --- | --- |"
row "all heads causal" "$root/examples/causal.attn" "${common[@]}"
row "DuoAttention: 2 causal + 2 streaming heads" "$root/bench/specs/duo_half_streaming.attn" "${common[@]}"
row "DuoAttention, head table (bits:0.5)" "$root/examples/duo_attention.attn" "${common[@]}" --buffer=streaming=bits:0.5 --seed=3

echo
echo "## Per-token head gating (MoH), f32 causal, B=1 H=4 S=$seq2 D=64"
echo
echo "| routed (token, head) pairs | density | time (ms) | useful GFLOP/s | KV blocks visited | compile (ms) |"
echo "| --- | --- | --- | --- | --- | --- |"
gated=(--seq="$seq2" --heads=4 --head-dim=64 --repeat=5 --no-check --seed=7)
row "ungated causal (reference)" "$root/examples/causal.attn" "${gated[@]}"
for p in 1 0.75 0.5 0.25; do
  row "$(python3 -c "print(f'{float($p):.0%}')")" "$root/examples/moh.attn" "${gated[@]}" --buffer=router=bits:$p
done
