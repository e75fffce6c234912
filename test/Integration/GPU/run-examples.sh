#!/usr/bin/env bash
# GPU numerical tests (ctest label gpu): every example spec, odd sizes, GQA,
# f32/f16/bf16, lse, BSHD, on the SIMT kernel and on the matrix-core kernel
# (mma.sync on NVIDIA, MFMA on AMD) against the float64 reference. Exit 77
# (reported SKIPPED by ctest, never passed) where there is no GPU or runtime.
#   run-examples.sh BIN_DIR EXAMPLES_DIR [cuda|rocm]
set -uo pipefail
bin="$1" ex="$2" platform="${3:-cuda}"
fail=0
run() {
  "$bin/heed-run" "$@" --target="$platform" --repeat=1
  local rc=$?
  if [ $rc -eq 77 ]; then exit 77; fi
  if [ $rc -ne 0 ]; then echo "FAILED: heed-run $*"; fail=1; fi
}
# The SIMT kernel: the argument sets of test/Integration/CPU/examples.test
# (plus GQA and lse).
simt() { run "$@" --gpu-kernel=simt; }
simt "$ex/causal.attn" --batch=2 --heads=4 --kv-heads=2 --seq=77 --lse
simt "$ex/sliding_window.attn" --seq=333 --param window=50 --lse
simt "$ex/document.attn" --seq=301 --buffer doc_ids=docs:10:90
simt "$ex/prefix_lm.attn" --seq=150 --dtype=bf16
simt "$ex/neighborhood_2d.attn" --seq=384 --heads=2
simt "$ex/block_sparse.attn" --seq=256 --heads=3 --buffer layout=bits:0.3
simt "$ex/alibi.attn" --seq=99 --head-dim=128 --layout=bshd
simt "$ex/softcap.attn" --seq=65 --head-dim=256 --dtype=f16
run "$ex/softcap.attn" --seq=65 --head-dim=256 --dtype=bf16 --lse   # tensor cores, 66 KB of shared memory
simt "$ex/sinks.attn" --seq=200 --lse
simt "$ex/relative_bias.attn" --seq=90 --heads=2
simt "$ex/custom.attn" --seq=170
simt "$ex/duo_attention.attn" --seq=700 --heads=6 --kv-heads=3 --buffer streaming=bits:0.5 --lse
simt "$ex/moa.attn" --seq=613 --heads=6 --lse --dtype=bf16
simt "$ex/moh.attn" --seq=200 --heads=3 --lse --buffer router=bits:0.3
simt "$ex/sink_logits.attn" --seq=300 --heads=4 --kv-heads=2 --param window=40 --lse
simt "$ex/sigmoid.attn" --seq=211 --heads=3 --lse
# The matrix-core kernel (f16 and bf16): masks, modifiers, buffers, routing,
# GQA, odd sizes, head dims 64 and 128, BSHD, lse.
for f in causal sliding_window sinks prefix_lm softcap alibi relative_bias custom sink_logits \
         sigmoid; do
  run "$ex/$f.attn" --seq=333 --heads=4 --kv-heads=2 --dtype=f16 --lse
  run "$ex/$f.attn" --seq=190 --heads=2 --dtype=bf16 --head-dim=128 --layout=bshd
done
run "$ex/document.attn" --seq=1001 --dtype=f16 --head-dim=128 --layout=bshd --buffer doc_ids=docs:10:300
run "$ex/neighborhood_2d.attn" --seq=384 --heads=2 --dtype=f16
run "$ex/block_sparse.attn" --seq=256 --heads=3 --dtype=f16 --buffer layout=bits:0.3
run "$ex/duo_attention.attn" --seq=700 --heads=6 --kv-heads=3 --dtype=f16 --buffer streaming=bits:0.5
# Gated heads (MoH): each head's routed rows tiled densely; weights of both signs.
run "$ex/moh.attn" --seq=333 --heads=4 --kv-heads=2 --dtype=f16 --lse --buffer router=bits:0.25
run "$ex/moh.attn" --seq=1001 --batch=2 --heads=8 --kv-heads=2 --dtype=bf16 --head-dim=128 --layout=bshd --buffer router=uniform:-1:1
# Large heads: 256, and MLA's 192 for q/k with 128 for v.
run "$ex/causal.attn" --seq=333 --heads=2 --dtype=bf16 --head-dim=256 --lse
run "$ex/sliding_window.attn" --seq=333 --heads=4 --kv-heads=2 --dtype=f16 --head-dim=192 --head-dim-v=128 --lse
# Larger and odd: many blocks of rows, MQA.
run "$ex/causal.attn" --seq=1000 --heads=8 --kv-heads=1 --dtype=bf16 --layout=bshd --head-dim=128
run "$ex/document.attn" --seq=777 --batch=2 --dtype=f16 --lse --buffer=doc_ids=docs:20:200
exit $fail
