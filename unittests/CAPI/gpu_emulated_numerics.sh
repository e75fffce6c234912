#!/bin/sh
# heed's NVIDIA kernels run on the CPU (sm_80: mma.sync and SIMT; sm_90a:
# wgmma): heed-run --target=cuda:sm_80 / sm_90a against
# the stand-in driver with FAKE_CUDA_EXECUTE=1 (ptx_emulator.h), kernels kept
# as PTX (HEED_CUDA_LOAD_PTX=1), every output checked against float64 as on a GPU.
# Usage: gpu_emulated_numerics.sh HEED_RUN EXAMPLES_DIR
run=$1 ex=$2
export FAKE_CUDA_EXECUTE=1 HEED_CUDA_LOAD_PTX=1 FAKE_CUDA_CC=80 HEED_CACHE=off
fails=0
target=cuda:sm_80
check() {
  out=$("$run" "$@" --target=$target --repeat=1 2>&1)
  if printf '%s\n' "$out" | grep -Eq '^(check|backward) +PASSED'; then
    echo "PASSED  $*"
  else
    echo "FAILED  $*"
    printf '%s\n' "$out" | tail -8
    fails=$((fails + 1))
  fi
}
# Forward: tensor-core kernels (bf16, f16), the SIMT kernel (f32), masks,
# score modifiers, GQA, BSHD, D = 64, 128, 256, sizes off the tiles.
check "$ex/causal.attn" --seq=200 --heads=2 --dtype=bf16 --head-dim=128
check "$ex/causal.attn" --seq=77 --heads=2 --kv-heads=1 --dtype=f16
check "$ex/causal.attn" --seq=70 --heads=1 --dtype=bf16 --head-dim=256
check "$ex/causal.attn" --seq=100 --heads=2 --dtype=f32
check "$ex/sliding_window.attn" --seq=300 --heads=2 --dtype=bf16 --param window=50
check "$ex/document.attn" --seq=301 --heads=2 --dtype=bf16 --buffer doc_ids=docs:10:90
check "$ex/alibi.attn" --seq=99 --heads=4 --kv-heads=2 --dtype=bf16 --layout=bshd
check "$ex/softcap.attn" --seq=65 --heads=2 --dtype=f16
check "$ex/neighborhood_2d.attn" --seq=256 --heads=1 --dtype=bf16
check "$ex/sink_logits.attn" --seq=97 --heads=2 --dtype=bf16 --param window=40
# O in 16-byte stores (every f16/bf16 case above) or, where its rows are not
# 16-byte aligned (one element into its allocation), element by element;
# the emulator faults a misaligned 16-byte store. Split-KV's merge phase too.
check "$ex/causal.attn" --seq=77 --heads=2 --dtype=bf16 --head-dim=128 --lse --out-offset=1
check "$ex/alibi.attn" --seq=99 --heads=4 --kv-heads=2 --dtype=f16 --layout=bshd --out-offset=1
export HEED_SPLIT_KV=3
check "$ex/decode.attn" --dtype=bf16 --batch=2 --heads=8 --kv-heads=2 --seq=1 --seq-kv=300 --lse --out-offset=1
check "$ex/decode.attn" --dtype=bf16 --batch=2 --heads=8 --kv-heads=2 --seq=1 --seq-kv=300 --lse --out-offset=8
unset HEED_SPLIT_KV
# Serving: per-entry lengths, packed sequences, a paged cache (tensor cores
# and SIMT), split-KV, per-batch documents.
check "$ex/decode.attn" --dtype=bf16 --batch=3 --heads=8 --kv-heads=2 --seq=5 --lse --kv-lens=300,17,64
check "$ex/decode.attn" --dtype=bf16 --batch=3 --heads=8 --kv-heads=2 --seq=5 --lse --kv-lens=300,17,64 --q-lens=5,1,0 --packed --layout=bshd
check "$ex/decode.attn" --dtype=bf16 --batch=3 --heads=8 --kv-heads=2 --seq=5 --lse --kv-lens=300,17,64 --page-size=16
check "$ex/decode.attn" --dtype=bf16 --batch=3 --heads=8 --kv-heads=2 --seq=3 --lse --kv-lens=300,17,64 --page-size=16 --gpu-kernel=simt
check "$ex/decode.attn" --gpu-kernel=simt --batch=3 --seq=4 --seq-kv=500 --heads=4 --kv-heads=2 --kv-lens=500,3,250 --q-lens=4,0,2
check "$ex/decode.attn" --dtype=bf16 --head-dim=128 --batch=1 --heads=4 --kv-heads=1 --seq=1 --seq-kv=2048
check "$ex/decode_document.attn" --dtype=bf16 --batch=2 --heads=4 --kv-heads=2 --seq=3 --seq-kv=77 --buffer doc_ids=docs:1:40 --kv-lens=77,30
check "$ex/decode_document.attn" --dtype=bf16 --batch=3 --heads=4 --kv-heads=2 --seq=2 --kv-lens=300,33,129 --page-size=16 --buffer doc_ids=docs:1:40
# GQA packing (decode, --attn-pack-gqa{one-loop}): a group's query heads in
# one block's tile, one block per key/value head: every launch's grid y is
# Hkv (the stand-in driver prints each launch with FAKE_CUDA_TRACE=1), and
# the numerics pass. Per-head sinks (lane sinks), a score reading h (ALiBi),
# speculative Sq = 3 and 16 (a whole 64-row tile), ragged, packed and paged.
# A traced case's verdict: PASSED where heed-run's output ($1) says check
# PASSED and what the trace showed ($2) is what is wanted ($3), both named
# by $4; the case's arguments follow.
# (Its own variable names: sh has no locals, and the callers loop on theirs.)
traced() {
  t_out=$1 t_seen=$2 t_want=$3 t_what=$4
  shift 4
  if printf '%s\n' "$t_out" | grep -Eq '^check +PASSED' && [ "$t_seen" = "$t_want" ]; then
    echo "PASSED  ($t_what $t_seen) $*"
  else
    echo "FAILED  ($t_what '$t_seen', want '$t_want') $*"
    printf '%s\n' "$t_out" | tail -8
    fails=$((fails + 1))
  fi
}
packed() {
  want=$1
  shift
  out=$(FAKE_CUDA_TRACE=1 "$run" "$@" --target=$target --repeat=1 2>&1)
  ys=$(printf '%s\n' "$out" | awk '/^fake-cuda: launch grid/ {print $5}' | sort -u | tr '\n' ' ')
  traced "$out" "$ys" "$want " "grid y" "$@"
}
packed 2 "$ex/sink_logits.attn" --dtype=bf16 --batch=2 --heads=8 --kv-heads=2 --seq=1 --seq-kv=300 --lse
packed 3 "$ex/alibi.attn" --dtype=bf16 --head-dim=128 --batch=1 --heads=12 --kv-heads=3 --seq=3 --seq-kv=300 --lse
packed 2 "$ex/decode.attn" --dtype=f16 --batch=2 --heads=8 --kv-heads=2 --seq=16 --seq-kv=200 --layout=bshd --lse
packed 8 "$ex/decode.attn" --dtype=f16 --batch=2 --heads=8 --kv-heads=2 --seq=17 --seq-kv=200 --lse
packed 2 "$ex/decode.attn" --dtype=bf16 --batch=3 --heads=8 --kv-heads=2 --seq=4 --lse --kv-lens=300,64,77 --q-lens=4,1,2 --packed --layout=bshd
packed 2 "$ex/decode_paged.attn" --dtype=bf16 --batch=3 --heads=8 --kv-heads=2 --seq=1 --seq-kv=300 --lse --kv-lens=300,1,77 --page-size=16 --layout=bshd
# Gated (MoH) variants: the routed-row lists built on the stream by the
# image's heed_gate_rows kernel (one block of 128 threads per (b, h), run
# before the attention kernel; docs/runtime.md, "Routed rows on the device"),
# in both warp orders; f32 and bf16 gates, a sequence over one thread's run.
gated() {
  want=$1
  shift
  for reverse in 0 1; do
    out=$(FAKE_CUDA_TRACE=1 PTXEMU_REVERSE_WARPS=$reverse "$run" "$@" --target=$target \
          --repeat=1 2>&1)
    first=$(printf '%s\n' "$out" | awk '/^fake-cuda: launch grid/ {print $4, $5, $6, $8; exit}')
    traced "$out" "$first" "$want 1 1 128" "warps reversed $reverse, routed rows' launch" "$@"
  done
}
gated 4 "$ex/moh.attn" --seq=150 --heads=2 --batch=2 --dtype=bf16 --buffer router=bits:0.3
gated 3 "$ex/moh.attn" --seq=333 --heads=3 --dtype=f16 --layout=bshd --lse --buffer router=bits:0.5
# f32: the SIMT kernel (no dynamic shared memory: the routed rows' own
# workgroup words are the block's only shared memory).
gated 3 "$ex/moh.attn" --seq=200 --heads=3 --lse --buffer router=bits:0.3
bf16gate=$(mktemp)
sed 's/router: f32/router: bf16/' "$ex/moh.attn" > "$bf16gate"
gated 2 "$bf16gate" --seq=200 --heads=1 --batch=2 --dtype=bf16 --head-dim=128 --buffer router=bits:0.1
rm -f "$bf16gate"
# The same from an AOT artifact (its gpu_packed_rows line gives the grid).
aot=$(mktemp -d)
if HEED_PTXAS=none "$(dirname "$run")/heed-compile" "$ex/decode.attn" --aot --target=sm_80 \
     --dtype=bf16 --head-dim=64 -o "$aot" > /dev/null 2>&1 &&
   grep -q '^gpu_packed_rows 64$' "$aot/decode.heedk"; then
  packed 2 "$ex/decode.attn" --artifact="$aot/decode.heedk" --dtype=bf16 --head-dim=64 --heads=4 --kv-heads=2 --seq=1 --seq-kv=100
else
  echo "FAILED  the AOT artifact of decode.attn (sm_80) has no gpu_packed_rows 64"
  fails=$((fails + 1))
fi
rm -rf "$aot"
# Patch tiles (the mma.sync kernel tiles 2-D/3-D token grids by patches:
# Q, K and V gathered and O scattered by row, holes past the grid's edges
# and the sequence masked, FULL patches without the mask): non-dilated,
# dilated and causal axes, 3-D, GQA, D = 128 and 256, BSHD, lse, per-entry
# lengths, the backward; the launch's grid x is the number of query
# patches, from the compiled kernel and from an AOT artifact's gpu_patches
# line.
nbdir=$(mktemp -d)
cat > "$nbdir/nb2d.attn" <<'SPEC'
variant nb2d {
  mask = neighborhood_2d(20, 40, kh=7, kw=9)
}
SPEC
cat > "$nbdir/nb2dc.attn" <<'SPEC'
variant nb2dc {
  mask = neighborhood_2d(24, 30, kh=5, kw=11, dw=2, causal_h=true)
}
SPEC
cat > "$nbdir/nb3d.attn" <<'SPEC'
variant nb3d {
  mask = neighborhood_3d(6, 10, 12, 3, 5, 5, dil1=2)
}
SPEC
check "$nbdir/nb2d.attn" --seq=777 --heads=4 --kv-heads=2 --dtype=f16 --head-dim=128 --lse
check "$nbdir/nb2dc.attn" --seq=700 --heads=2 --dtype=bf16 --layout=bshd
check "$nbdir/nb3d.attn" --seq=700 --heads=1 --dtype=bf16 --head-dim=64
check "$ex/neighborhood_2d.attn" --seq=384 --heads=2 --dtype=bf16 --head-dim=256
check "$ex/neighborhood_2d.attn" --seq=300 --heads=2 --batch=2 --dtype=bf16 --kv-lens=300,120 --q-lens=250,7 --lse
# The backward's dQ (query patches) and dK/dV (key patches) kernels.
check "$nbdir/nb2d.attn" --backward --seq=800 --heads=2 --dtype=bf16
check "$nbdir/nb3d.attn" --backward --seq=700 --heads=4 --kv-heads=2 --dtype=f16 --head-dim=64
check "$ex/neighborhood_2d.attn" --backward --seq=300 --heads=2 --dtype=bf16 --head-dim=128
# (The last launch: split-KV's merge, or the only one, has grid x = the
# query patches: 20 x 40 in 8 x 8 patches, 3 x 5 of them.)
patches() {
  want=$1
  shift
  out=$(FAKE_CUDA_TRACE=1 "$run" "$@" --target=$target --repeat=1 2>&1)
  xs=$(printf '%s\n' "$out" | awk '/^fake-cuda: launch grid/ {x = $4} END {print x}')
  traced "$out" "$xs" "$want" "grid x" "$@"
}
aot=$(mktemp -d)
if HEED_PTXAS=none "$(dirname "$run")/heed-compile" "$nbdir/nb2d.attn" --aot --target=sm_80 \
     --dtype=bf16 --head-dim=64 -o "$aot" > /dev/null 2>&1 &&
   grep -q '^gpu_patches 1 40 8 8$' "$aot/nb2d.heedk"; then
  patches 15 "$nbdir/nb2d.attn" --artifact="$aot/nb2d.heedk" --dtype=bf16 --head-dim=64 --heads=2 --seq=800
else
  echo "FAILED  the AOT artifact of nb2d.attn (sm_80) has no gpu_patches 1 40 8 8"
  fails=$((fails + 1))
fi
rm -rf "$aot" "$nbdir"
# Backward: the dQ and dK/dV kernels, buffer gradients (fixed-point
# accumulators, then the finalizing launch).
check "$ex/alibi.attn" --backward --seq=70 --heads=4 --kv-heads=2 --dtype=bf16
check "$ex/causal.attn" --backward --seq=100 --heads=2 --dtype=bf16 --head-dim=128
check "$ex/relative_bias.attn" --backward --seq=90 --heads=2 --dtype=bf16
check "$ex/sink_logits.attn" --backward --seq=97 --heads=2 --dtype=bf16
# Padding query rows (Sq = 90 in 64-row tiles) add nothing to a gradient: with
# biases near 100 their P (lse 0) overflowed and made the table's gradient NaN.
check "$ex/relative_bias.attn" --backward --seq=90 --heads=2 --dtype=bf16 --buffer table=uniform:95:100
# Deterministic: every gradient's bits are the same with the warps run in
# the other order (each block's adds into a slope, a table entry or a sink
# logit then come in another order; float atomics would round differently).
same_bits() {
  one=$("$run" "$@" --target=$target --repeat=1 --seed=7 2>&1)
  two=$(PTXEMU_REVERSE_WARPS=1 "$run" "$@" --target=$target --repeat=1 --seed=7 2>&1)
  d1=$(printf '%s\n' "$one" | awk '/^digest/ {print $2}')
  d2=$(printf '%s\n' "$two" | awk '/^digest/ {print $2}')
  if [ -n "$d1" ] && [ "$d1" = "$d2" ] && printf '%s\n' "$one" | grep -q '^backward  PASSED' &&
     printf '%s\n' "$two" | grep -q '^backward  PASSED'; then
    echo "PASSED  (digest $d1 both warp orders) $*"
  else
    echo "FAILED  (digests '$d1' and '$d2') $*"
    printf '%s\n' "$one" "$two" | tail -8
    fails=$((fails + 1))
  fi
}
same_bits "$ex/relative_bias.attn" --backward --seq=90 --heads=2 --dtype=bf16
same_bits "$ex/alibi.attn" --backward --seq=70 --heads=4 --kv-heads=2 --dtype=bf16
same_bits "$ex/sink_logits.attn" --backward --seq=97 --heads=2 --dtype=bf16
check "$ex/document.attn" --backward --seq=130 --heads=2 --dtype=bf16 --buffer doc_ids=docs:10:90
# Ragged batches (docs/backward.md, "Ragged batches"): per-entry lengths on
# padded tensors and packed sequences, the lengths uploaded as the
# forward's, the gradients' rows past each entry zeroed; an entry without
# keys, one without queries, buffer gradients summed over the entries.
check "$ex/alibi.attn" --backward --batch=3 --seq=40 --heads=2 --dtype=bf16 --kv-lens=40,17,0 --q-lens=40,21,3 --layout=bshd
check "$ex/decode.attn" --backward --batch=3 --seq=9 --heads=2 --dtype=f16 --packed --q-lens=9,0,4 --kv-lens=70,3,33 --param window=20
# Hopper (sm_90a): the warp-specialized wgmma kernel (TMA into swizzled
# shared memory, mbarriers, SS and RS wgmma, named barriers) and the
# pipelined one without warp specialization.
target=cuda:sm_90a
export FAKE_CUDA_CC=90
check "$ex/causal.attn" --gpu-kernel=wgmma --seq=200 --heads=2 --dtype=bf16 --head-dim=128 --lse
check "$ex/causal.attn" --gpu-kernel=wgmma --seq=150 --heads=2 --kv-heads=1 --dtype=f16 --head-dim=64
check "$ex/document.attn" --gpu-kernel=wgmma --seq=300 --heads=2 --dtype=bf16 --head-dim=128 --buffer doc_ids=docs:10:90
check "$ex/block_sparse.attn" --gpu-kernel=wgmma --seq=256 --heads=2 --dtype=bf16 --head-dim=128 --buffer layout=bits:0.3
check "$ex/alibi.attn" --gpu-kernel=wgmma --seq=150 --heads=2 --dtype=bf16 --head-dim=128 --layout=bshd
check "$ex/alibi.attn" --gpu-kernel=wgmma --seq=150 --heads=2 --dtype=bf16 --head-dim=128 --layout=bshd --out-offset=1
check "$ex/causal.attn" --gpu-kernel=wgmma-pipelined --seq=200 --heads=2 --dtype=bf16 --head-dim=128
# The softmax overlap (--attn-overlap-softmax; every wgmma case above has it):
# one tile (no P V in the loop), EMPTY tiles between computed ones, sigmoid
# (no rescale carried), split-KV's parts; without it (wgmma-serial). The
# emulator faults a read of a register a pending wgmma writes.
check "$ex/causal.attn" --gpu-kernel=wgmma --seq=60 --heads=2 --dtype=bf16 --head-dim=64
check "$ex/sigmoid.attn" --gpu-kernel=wgmma --seq=300 --heads=2 --dtype=bf16 --head-dim=64
export HEED_SPLIT_KV=3
check "$ex/causal.attn" --gpu-kernel=wgmma --seq=100 --seq-kv=700 --heads=2 --dtype=bf16 --head-dim=64 --lse
unset HEED_SPLIT_KV
check "$ex/causal.attn" --gpu-kernel=wgmma-serial --seq=200 --heads=2 --dtype=bf16 --head-dim=128
# Persistent workers (--attn-persistent-workers; every wgmma case above runs
# them, but with the stand-in's 132 multiprocessors each worker takes one
# item; persistent where the default kernel fits, e.g. causal at D = 64):
# with one multiprocessor (two workers) each walks several items, so
# the K/V tile counts carry across items, Q's barriers go through their
# phases and the ping-pong turns across items' ends; causal items of every
# length, GQA with routing (DuoAttention's streaming heads: sliding-window
# EMPTY tiles), split-KV's parts and merges, and the
# kernel with a block per item (wgmma-grid).
export FAKE_CUDA_SMS=1
check "$ex/causal.attn" --gpu-kernel=wgmma --seq=333 --heads=2 --dtype=bf16 --head-dim=64 --lse
check "$ex/duo_attention.attn" --gpu-kernel=wgmma --seq=300 --batch=2 --heads=4 --kv-heads=2 --dtype=f16 --head-dim=64 --buffer streaming=bits:0.5
export HEED_SPLIT_KV=3
check "$ex/causal.attn" --gpu-kernel=wgmma --seq=100 --seq-kv=700 --heads=2 --dtype=bf16 --head-dim=64 --lse
unset HEED_SPLIT_KV
check "$ex/causal.attn" --gpu-kernel=wgmma-grid --seq=200 --heads=2 --dtype=bf16 --head-dim=64
# The grid: as many workers as the device holds (3 multiprocessors x the
# stand-in's 2 blocks each), at most one per item; a block per item without.
grid() {
  FAKE_CUDA_SMS=3 FAKE_CUDA_TRACE=1 "$run" "$ex/causal.attn" --seq=500 --heads=4 --dtype=bf16 \
    --head-dim=64 --target=$target --repeat=1 "$@" 2>&1 | grep -m1 'launch grid'
}
for expect in "wgmma:launch grid 6 1 1 " "wgmma-grid:launch grid 4 4 1 "; do
  kind=${expect%%:*} want=${expect#*:}
  got=$(grid --gpu-kernel=$kind)
  case "$got" in
    *"$want"*) echo "PASSED  grid of --gpu-kernel=$kind: $got" ;;
    *) echo "FAILED  grid of --gpu-kernel=$kind: '$got', expected '$want'"; fails=$((fails + 1)) ;;
  esac
done
unset FAKE_CUDA_SMS
# D = 256 with a document mask: compileCUDA's fit (with ptxas present) takes
# one consumer warpgroup; the emulator runs the fitted kernel.
check "$ex/document.attn" --gpu-kernel=wgmma --seq=150 --heads=2 --dtype=bf16 --head-dim=256 --buffer doc_ids=docs:5:60
# Serving calls on wgmma (docs/decode.md, "Serving calls on the GPU"):
# per-entry lengths (heed-run sets K, V and Q rows past each entry to NaN:
# a tile that ends past its entry has V's rows past it cleared in shared
# memory, by the block or, warp-specialized, by the producer before the
# consumers may read it), packed sequences (TMA from the entry's first
# row of the whole tensor), an entry without keys and one without queries;
# persistent workers walking items of several entries (the producer's own
# barrier made anew for each cleared tile); the backward's dQ and dK/dV
# kernels (both slot tensors cleared).
check "$ex/causal.attn" --gpu-kernel=wgmma-pipelined --batch=3 --seq=100 --seq-kv=200 --heads=2 --dtype=bf16 --head-dim=64 --kv-lens=200,17,130 --q-lens=100,3,70 --lse
check "$ex/causal.attn" --gpu-kernel=wgmma --batch=3 --seq=100 --seq-kv=200 --heads=2 --dtype=bf16 --head-dim=128 --kv-lens=200,17,130 --q-lens=100,3,70 --lse
check "$ex/sliding_window.attn" --gpu-kernel=wgmma --batch=3 --seq=5 --seq-kv=300 --heads=4 --kv-heads=2 --dtype=f16 --head-dim=64 --kv-lens=300,0,77 --param window=100 --lse
check "$ex/causal.attn" --gpu-kernel=wgmma --batch=3 --seq=100 --seq-kv=200 --heads=2 --dtype=bf16 --head-dim=64 --kv-lens=200,17,130 --q-lens=100,0,70 --packed --layout=bshd --lse
check "$ex/causal.attn" --gpu-kernel=wgmma --batch=3 --seq=100 --heads=2 --dtype=bf16 --head-dim=64 --q-lens=100,0,70 --lse
FAKE_CUDA_SMS=1 check "$ex/document.attn" --gpu-kernel=wgmma --batch=3 --seq=150 --heads=2 --dtype=bf16 --head-dim=64 --kv-lens=150,40,99 --q-lens=150,20,99 --buffer doc_ids=docs:10:60
# A paged cache on wgmma: a TMA box per page from the table (pages of 16
# keys in a random order: 8 boxes per 128-key tile, only those inside the
# entry), pages of whole tiles (256 keys), the pipelined form.
check "$ex/decode_paged.attn" --gpu-kernel=wgmma --batch=3 --seq=4 --seq-kv=300 --heads=4 --kv-heads=2 --dtype=bf16 --head-dim=128 --kv-lens=300,1,77 --q-lens=4,1,3 --page-size=16 --layout=bshd --lse
check "$ex/decode_paged.attn" --gpu-kernel=wgmma --batch=2 --seq=3 --seq-kv=600 --heads=2 --dtype=f16 --head-dim=64 --kv-lens=600,300 --page-size=256 --lse
check "$ex/decode_paged.attn" --gpu-kernel=wgmma-pipelined --batch=3 --seq=2 --seq-kv=300 --heads=4 --kv-heads=2 --dtype=bf16 --head-dim=64 --kv-lens=300,9,130 --page-size=8
check "$ex/causal.attn" --gpu-kernel=wgmma --backward --batch=3 --seq=70 --seq-kv=150 --heads=2 --dtype=bf16 --head-dim=64 --kv-lens=150,17,90 --q-lens=70,3,40
check "$ex/alibi.attn" --gpu-kernel=wgmma --backward --batch=3 --seq=70 --seq-kv=150 --heads=4 --kv-heads=2 --dtype=bf16 --head-dim=64 --kv-lens=150,17,90 --q-lens=70,0,40 --packed --layout=bshd
# The backward on wgmma (docs/backward.md, "On Hopper (wgmma)"): the dQ and
# dK/dV kernels' two operand tiles by TMA, S and dP as SS wgmma over either
# slot tensor (dP issued beside S, S waited for first: the emulator faults a
# read of a register a pending wgmma writes), dV, dK and dQ as RS wgmma; D = 64 and 128, f16 and bf16, BSHD;
# GQA (the dK/dV kernel's key loop per query head of the group restarts its
# slots' mbarriers: without that the emulator deadlocks), EMPTY tiles
# (documents, block-sparse), buffer gradients (ALiBi slopes, a bias table,
# sink logits), the same bits with the warps in either order.
check "$ex/causal.attn" --gpu-kernel=wgmma --backward --seq=150 --heads=2 --dtype=bf16 --head-dim=128
check "$ex/causal.attn" --gpu-kernel=wgmma --backward --seq=130 --heads=4 --kv-heads=1 --dtype=f16 --head-dim=64 --layout=bshd
check "$ex/alibi.attn" --gpu-kernel=wgmma --backward --seq=99 --heads=4 --kv-heads=2 --dtype=bf16 --head-dim=64
# (D = 128: ptxas' fit takes 16-row steps and one staging slot for its dK/dV kernel.)
check "$ex/alibi.attn" --gpu-kernel=wgmma --backward --seq=99 --heads=4 --kv-heads=2 --dtype=bf16 --head-dim=128
check "$ex/document.attn" --gpu-kernel=wgmma --backward --seq=200 --heads=2 --dtype=bf16 --head-dim=64 --buffer doc_ids=docs:10:90
check "$ex/block_sparse.attn" --gpu-kernel=wgmma --backward --seq=256 --heads=2 --dtype=bf16 --head-dim=64 --buffer layout=bits:0.3
check "$ex/sink_logits.attn" --gpu-kernel=wgmma --backward --seq=97 --heads=2 --dtype=bf16 --head-dim=64
same_bits "$ex/relative_bias.attn" --gpu-kernel=wgmma --backward --seq=90 --heads=2 --dtype=bf16 --head-dim=64
# (Every case above issues dP beside S, attn-overlap-backward; wgmma-serial does not.)
check "$ex/alibi.attn" --gpu-kernel=wgmma-serial --backward --seq=99 --heads=4 --kv-heads=2 --dtype=bf16 --head-dim=64
# The warps in the other order (the consumers before the producer): another
# interleaving of the same kernels.
export PTXEMU_REVERSE_WARPS=1
check "$ex/document.attn" --gpu-kernel=wgmma --seq=300 --heads=2 --dtype=bf16 --head-dim=128 --buffer doc_ids=docs:10:90
FAKE_CUDA_SMS=1 check "$ex/causal.attn" --gpu-kernel=wgmma --seq=333 --heads=2 --dtype=bf16 --head-dim=64
check "$ex/causal.attn" --gpu-kernel=wgmma --batch=3 --seq=100 --seq-kv=200 --heads=2 --dtype=bf16 --head-dim=64 --kv-lens=200,17,130 --q-lens=100,3,70 --lse
target=cuda:sm_80
export FAKE_CUDA_CC=80
check "$ex/causal.attn" --seq=200 --heads=2 --dtype=bf16 --head-dim=128
check "$ex/alibi.attn" --backward --seq=70 --heads=4 --kv-heads=2 --dtype=bf16
unset PTXEMU_REVERSE_WARPS
echo "$fails failed"
[ "$fails" -eq 0 ]
