#!/usr/bin/env bash
# CPU speed of this checkout against another revision, side by side in one
# run: builds REV in a second build directory (build-base/, a git worktree),
# then runs the same cases with both heed-run binaries, one after the other
# per case, and prints a markdown table of
# useful GFLOP/s (median of --repeat runs) and the fraction of the machine's
# FMA peak (cores x heed-cpu-baselines' single-core peak).
#   bench/compare-cpu.sh [REV] [--quick]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rev="${1:-HEAD}"
quick="${2:-}"
base="${HEED_BASE_DIR:-$root/build-base}"
src="$base/src"
"$root/heed" build >/dev/null 2>&1
if [ ! -d "$src" ]; then
  git -C "$root" worktree add --detach -q "$src" "$rev"
else
  git -C "$src" checkout -q --detach "$rev"
fi
HEED_BUILD_DIR="$base/build" "$src/heed" build >/dev/null 2>&1
new="$root/build/bin"; old="$base/build/bin"
cores=$(nproc)
peak=$("$new/heed-cpu-baselines" 256 | awk '/fma_peak_gflops_1core/ {print $2}')
echo "# $(date -u +%F), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $cores cores,"
echo "# single-core FMA peak $peak GFLOP/s; base $(git -C "$src" rev-parse --short HEAD), new $(git -C "$root" rev-parse --short HEAD)"
echo
echo "| case | base GFLOP/s | new GFLOP/s | new / base | new, % of peak |"
echo "| --- | --- | --- | --- | --- |"
# The JSON goes to a file first: a python3 reading heed-run's pipe starts up on
# one of the cores while heed-run times its calls (a 3.5 ms causal S=1024 call
# read 150-227 GFLOP/s that way against 269-295 without).
json_out="$(mktemp)"
trap 'rm -f "$json_out"' EXIT
gflops() {
  "$1/heed-run" "${@:2}" --no-check --json > "$json_out"
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["gflops"])' "$json_out"
}
run() { # label, then heed-run arguments
  local label="$1"; shift
  local a b
  a=$(gflops "$old" "$@"); b=$(gflops "$new" "$@")
  python3 -c "a,b,p,c=$a,$b,$peak,$cores; print(f'| $label | {a:.1f} | {b:.1f} | {b/a:.2f} | {100*b/(p*c):.0f}% |')"
}
ex="$root/examples"; sp="$root/bench/specs"
rep=(--repeat=7)
[ "$quick" = --quick ] && rep=(--repeat=3)
for s in 1024 2048 4096; do
  run "causal f32 D=64 H=8 S=$s" "$ex/causal.attn" --batch=1 --heads=8 --seq=$s --head-dim=64 "${rep[@]}"
done
[ "$quick" = --quick ] && exit 0
run "full f32 D=64 H=8 S=2048" "$sp/full.attn" --batch=1 --heads=8 --seq=2048 --head-dim=64 "${rep[@]}"
run "causal bf16 D=128 H=8 S=2048" "$ex/causal.attn" --batch=1 --heads=8 --seq=2048 --head-dim=128 --dtype=bf16 "${rep[@]}"
run "sliding window 1024, S=8192" "$ex/sliding_window.attn" --param window=1024 --batch=1 --heads=8 --seq=8192 --head-dim=64 --repeat=3
run "document 256..2048, S=8192" "$ex/document.attn" --buffer doc_ids=docs:256:2048 --batch=1 --heads=8 --seq=8192 --head-dim=64 --repeat=3
run "2-D neighborhood 17x17 on 64x128" "$sp/neighborhood_64x128.attn" --batch=1 --heads=8 --seq=8192 --head-dim=64 --repeat=3
run "ALiBi causal S=2048" "$ex/alibi.attn" --batch=1 --heads=8 --seq=2048 --head-dim=64 "${rep[@]}"
run "DuoAttention S=4096" "$ex/duo_attention.attn" --batch=1 --heads=8 --seq=4096 --head-dim=64 --repeat=3
run "MoH S=4096" "$ex/moh.attn" --batch=1 --heads=8 --seq=4096 --head-dim=64 --repeat=3
run "decode Sq=1 Skv=4096 GQA 8:2 bf16" "$sp/full.attn" --batch=4 --heads=8 --kv-heads=2 --seq=1 --seq-kv=4096 --head-dim=128 --dtype=bf16 "${rep[@]}"
