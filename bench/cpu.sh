#!/usr/bin/env bash
# CPU benchmark of issue 2's bars: heed vs the FMA peak and a naive loop nest,
# f32, B=1 H=8 S=2048 D=64, plus compile times. Prints one table.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/heed" build >/dev/null
bin="${HEED_BUILD_DIR:-$root/build}/bin"
S="${S:-2048}"
echo "# $(date -u +%F) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
"$bin/heed-cpu-baselines" "$S"
for spec in causal sliding_window alibi softcap document; do
  "$bin/heed-run" "$root/examples/$spec.attn" --batch=1 --heads=8 --seq="$S" --head-dim=64 \
      --repeat=5 --no-check --json |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print(f"heed {r[\"variant\"]:16s} density {r[\"density\"]:.3f}  {r[\"gflops\"]:7.2f} GFLOP/s  {r[\"time_s\"]*1e3:8.2f} ms  compile {r[\"compile_s\"]*1e3:6.1f} ms")'
done
