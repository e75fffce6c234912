#!/usr/bin/env bash
# Where a cold GPU compile's time goes, for one kernel (default: the causal
# bf16 D=128 tensor-core kernel at sm_90), on the machine it runs on: the
# median of N runs of heed-compile --time (MLIR passes, LLVM IR + NVPTX,
# ptxas), of ptxas alone at each -O level with its resource report, of the
# PTX-only compile (HEED_PTXAS=none), and of an AOT export for sm_80+sm_90
# (two ptxas runs in parallel) against the two compiles one after the other.
#   compile-times.sh [HEED_COMPILE] [N]      (figures: docs/benchmarks.md)
set -uo pipefail
cd "$(dirname "$0")/../.."
compile=${1:-build/bin/heed-compile}
runs=${2:-5}
kernel=(examples/causal.attn --dtype=bf16 --head-dim=128)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ptxas=${HEED_PTXAS:-$(command -v ptxas || echo /usr/local/cuda/bin/ptxas)}

median() { sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : "-")}'; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.0f\n", (b - a) * 1000}'; }

echo "# $(uname -m), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "# kernel: ${kernel[*]} --target=sm_90; median of $runs runs, ms"
echo
echo "| phase | ms |"
echo "| --- | --- |"
for ((i = 0; i < runs; ++i)); do
  "$compile" "${kernel[@]}" --emit=cubin --target=sm_90 --time -o "$tmp/k.cubin" 2>&1 |
    grep '^heed timing' >> "$tmp/timing.txt"
done
field() { # the number after $1 in each timing line
  sed -n "s|.*$1 \([0-9]*\).*|\1|p" "$tmp/timing.txt" | median
}
echo "| total (heed-compile --emit=cubin) | $(sed -n 's/.*kernel: \([0-9]*\) ms.*/\1/p' "$tmp/timing.txt" | median) |"
echo "| MLIR passes | $(field 'MLIR passes') |"
echo "| LLVM IR and NVPTX (gpu-module-to-binary) | $(field 'gpu-module-to-binary)') |"
echo "| ptxas -O3 | $(field 'ptxas') |"
echo "| the rest (kernel IR, I/O) | $(field 'I/O)') |"
for ((i = 0; i < runs; ++i)); do
  t=$(now)
  HEED_PTXAS=none "$compile" "${kernel[@]}" --emit=ptx --target=sm_90 -o "$tmp/k.ptx" 2>/dev/null
  elapsed "$t" >> "$tmp/ptx.txt"
done
echo "| PTX only (HEED_PTXAS=none, process included) | $(median < "$tmp/ptx.txt") |"
echo
if [ -x "$ptxas" ]; then
  echo "| ptxas | ms | registers | spills (stores/loads) |"
  echo "| --- | --- | --- | --- |"
  for level in 3 2 1 0; do
    : > "$tmp/o$level.txt"
    for ((i = 0; i < runs; ++i)); do
      t=$(now)
      "$ptxas" -arch=sm_90 -v -O$level "$tmp/k.ptx" -o "$tmp/o.cubin" 2> "$tmp/o$level.log"
      elapsed "$t" >> "$tmp/o$level.txt"
    done
    regs=$(sed -n 's/.*Used \([0-9]*\) registers.*/\1/p' "$tmp/o$level.log")
    spills=$(sed -n 's/.*, \([0-9]*\) bytes spill stores, \([0-9]*\) bytes spill loads.*/\1 \/ \2/p' "$tmp/o$level.log")
    echo "| -O$level | $(median < "$tmp/o$level.txt") | $regs | $spills |"
  done
  echo
  : > "$tmp/seq.txt" ; : > "$tmp/par.txt"
  for ((i = 0; i < runs; ++i)); do
    t=$(now)
    "$compile" "${kernel[@]}" --emit=cubin --target=sm_80 -o "$tmp/a.cubin" 2>/dev/null
    "$compile" "${kernel[@]}" --emit=cubin --target=sm_90 -o "$tmp/b.cubin" 2>/dev/null
    elapsed "$t" >> "$tmp/seq.txt"
    t=$(now)
    "$compile" "${kernel[@]}" --aot --target=sm_80,sm_90 -o "$tmp/aot" > /dev/null
    elapsed "$t" >> "$tmp/par.txt"
  done
  echo "| sm_80 + sm_90 | ms |"
  echo "| --- | --- |"
  echo "| two heed-compile --emit=cubin, one after the other | $(median < "$tmp/seq.txt") |"
  echo "| one heed-compile --aot --target=sm_80,sm_90 (parallel) | $(median < "$tmp/par.txt") |"
else
  echo "no ptxas: the -O levels and the two-target export are not measured"
fi
