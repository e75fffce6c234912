#!/usr/bin/env bash
# ptxas' report on heed's NVIDIA kernels, one row per example and head dim, for
# docs/passes.md (the register and fit tables): stack frame, spill stores and
# loads, registers, and the warp-specialized kernel's fit where it needed one.
#   bench/ptxas-report.sh [KERNEL [DIMS...]]
# KERNEL: a --gpu-kernel (default wgmma); DIMS: head dims (default 64 128 256).
# Needs ptxas (the CUDA toolkit); no GPU. bf16, lse, sm_90a for the wgmma
# kernels, sm_90 otherwise; the gated example (moh) is skipped for wgmma.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/heed" build >/dev/null 2>&1
bin="${HEED_BUILD_DIR:-$root/build}/bin"
kernel="${1:-wgmma}"
shift || true
dims=("${@:-64 128 256}")
read -ra dims <<< "${dims[*]}"
chip=sm_90
case "$kernel" in wgmma*) chip=sm_90a ;; esac
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo 'variant full { score = score }' > "$tmp/full.attn"

echo "| example | D | stack frame | spill stores | spill loads | registers | fit |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for f in "$root"/examples/*.attn "$tmp/full.attn"; do
  name="$(basename "$f" .attn)"
  case "$kernel:$name" in wgmma*:moh) continue ;; esac
  for d in "${dims[@]}"; do
    out="$("$bin/heed-compile" "$f" --emit=cubin --target="$chip" --dtype=bf16 --head-dim="$d" \
             --lse --gpu-kernel="$kernel" -o "$tmp/k.cubin" 2>&1)" || {
      echo "| $name | $d | error: $(grep -m1 error <<< "$out" | cut -c1-80) | | | | |"
      continue
    }
    # heed_kernel's lines only (a variant with summarized buffers has its
    # heed_summary_<n> kernels in the image too).
    kern="$(awk -v name="'heed_kernel'" '/Compiling entry function/ { f = index($0, name) > 0 } f' <<< "$out")"
    frame="$(sed -n 's/^ *\([0-9]*\) bytes stack frame.*/\1/p' <<< "$kern" | head -1)"
    stores="$(sed -n 's/.* \([0-9]*\) bytes spill stores.*/\1/p' <<< "$kern" | head -1)"
    loads="$(sed -n 's/.* \([0-9]*\) bytes spill loads.*/\1/p' <<< "$kern" | head -1)"
    regs="$(sed -n 's/.*Used \([0-9]*\) registers.*/\1/p' <<< "$kern" | head -1)"
    fit="$(sed -n 's/^heed: warp-specialized fit: //p' <<< "$out" | tail -1)"
    echo "| $name | $d | $frame | $stores | $loads | $regs | ${fit:--} |"
  done
done
