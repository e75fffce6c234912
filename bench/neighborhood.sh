#!/usr/bin/env bash
# 2-D neighborhood 17x17 on a 64x128 grid (S = 8192): patch tiles vs flat
# tiles, for docs/benchmarks.md (bench/cpu.sh runs it too). Prints markdown.
#   1. visited-block density by brute force over the actual tiles: heed's
#      4x4 patches, heed's flat 16-token tiles, flat 128-token tiles
#   2. CPU time, f32 B=1 H=8 D=64, patch tiles / flat tiles / no analysis
#   3. the same times for the 2-D neighborhood with dilation 2 x 2, and a 3-D
#      neighborhood 7x7x7 on 16x16x32 (S = 8192)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/heed" build >/dev/null
bin="${HEED_BUILD_DIR:-$root/build}/bin"
spec="$root/bench/specs/neighborhood_64x128.attn"

echo "## 2-D neighborhood 17x17 on 64x128 (S=8192): patch tiles vs flat tiles"
echo
echo "Visited-block density (blocks with at least one visible pair / all blocks), brute force over the tiles:"
echo
"$bin/heed-bench-tile-density" "$spec" 8192
echo
echo "f32, B=1 H=8 S=8192 D=64:"
echo
echo "| tiling | density | time (ms) | useful GFLOP/s | KV blocks visited | compile (ms) |"
echo "| --- | --- | --- | --- | --- | --- |"
# The JSON goes to a file first: a python3 on heed-run's pipe would start up
# on a core while heed-run times its calls (bench/compare-cpu.sh).
json_out="$(mktemp)"
trap 'rm -f "$json_out"' EXIT
row() {
  local label="$1"; shift
  "$bin/heed-run" "$spec" --batch=1 --heads=8 --seq=8192 --head-dim=64 --repeat=7 \
    --no-check --json "$@" > "$json_out"
  python3 "$root/bench/row.py" "$label" < "$json_out"
}
row "4x4 patches (default)"
row "flat 16-token tiles (--no-patch-tiling)" --no-patch-tiling
row "no analysis (--no-analysis)" --no-analysis

spec="$root/bench/specs/neighborhood_64x128_dilated.attn"
echo
echo "2-D neighborhood 17x17, dilation 2x2, on 64x128 (S=8192), f32, B=1 H=8 D=64:"
echo
echo "| tiling | density | time (ms) | useful GFLOP/s | KV blocks visited | compile (ms) |"
echo "| --- | --- | --- | --- | --- | --- |"
row "4x1x4x1 patches, one dilation group (default)"
row "flat 16-token tiles (--no-patch-tiling)" --no-patch-tiling

spec="$root/bench/specs/neighborhood_16x16x32.attn"
echo
echo "3-D neighborhood 7x7x7 on 16x16x32 (S=8192), f32, B=1 H=8 D=64:"
echo
echo "| tiling | density | time (ms) | useful GFLOP/s | KV blocks visited | compile (ms) |"
echo "| --- | --- | --- | --- | --- | --- |"
row "2x2x4 patches (default)"
row "flat 16-token tiles (--no-patch-tiling)" --no-patch-tiling
