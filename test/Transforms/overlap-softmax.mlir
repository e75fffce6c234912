// RUN: heed-opt %s --attn-choose-tiling="block-q=128 block-kv=64 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-warp-specialize="pingpong=true" --attn-overlap-softmax | FileCheck %s
// RUN: heed-opt %s --attn-choose-tiling="block-q=128 block-kv=64 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-warp-specialize --attn-overlap-softmax | FileCheck %s --check-prefix=NOPP
// RUN: heed-opt %s --attn-choose-tiling="block-q=128 block-kv=64 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-warp-specialize="stages=1" --attn-overlap-softmax | FileCheck %s --check-prefix=ONE
// RUN: heed-opt %s --attn-choose-tiling="block-q=128 block-kv=64 patches=false" --attn-to-tile --attn-warp-specialize --attn-overlap-softmax | FileCheck %s --check-prefix=NOGUARD
// RUN: heed-opt %s --attn-choose-tiling="block-q=128 block-kv=64 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-warp-specialize --attn-overlap-softmax --attn-specialize-full-tiles | FileCheck %s --check-prefix=FULL
// --attn-overlap-softmax: a computed tile issues its Q K^T, then the previous
// computed tile's P V, and runs its softmax while both are in flight
// (FlashAttention-3's intra-warpgroup overlap); the last tile's P V follows
// the loop.

attn.variant @causal buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %m = arith.cmpi uge, %q, %kv : index
  attn.yield %m : i1
}

// The loop carries the previous tile's P, alpha, slot, fill, key tile and
// whether there is one (false before the first computed tile).
// CHECK-LABEL: func.func @causal_kernel
// CHECK: } consumer {
// The carried P is in V's type (bf16), as the product reads it.
// CHECK: %[[P0:.*]] = attn.tile.fill 0.000000e+00 : !attn.tile<128x64xbf16, s>
// CHECK: %[[A0:.*]] = attn.tile.fill 1.000000e+00 : !attn.tile<128xf32, row>
// CHECK: %[[NONE:.*]] = arith.constant false
// CHECK: %[[LOOP:.*]]:10 = scf.for %[[T:.*]] = {{.*}} iter_args(%[[ACC:.*]] = %{{.*}}, %[[M:.*]] = %{{.*}}, %[[L:.*]] = %{{.*}}, %[[N:.*]] = %{{.*}}, %[[PP:.*]] = %[[P0]], %[[PA:.*]] = %[[A0]], %[[PS:.*]] = %{{.*}}, %[[PR:.*]] = %{{.*}}, %[[PT:.*]] = %{{.*}}, %[[HAS:.*]] = %[[NONE]])
// CHECK: %[[S:.*]] = arith.remui %[[N]]
// CHECK: %[[R:.*]] = arith.divui %[[N]]
// CHECK: scf.if %{{.*}} -> ({{.*}}, i1) {
// CHECK: scf.if %[[HAS]] -> (
// This tile's K, its Q K^T issued...
// CHECK: attn.tile.wait_kv stage(%[[S]]) round(%[[R]]) {part = 0 : i64}
// CHECK: %[[QK:.*]] = attn.tile.qk {{.*}} {async
// ... then the previous tile's V and P V, rescaled by its alpha.
// CHECK-NEXT: attn.tile.wait_kv stage(%[[PS]]) round(%[[PR]]) {part = 1 : i64}
// CHECK-NEXT: %[[PSPAN:.*]] = attn.tile.span %{{.*}}[%[[PT]]] {{.*}} side <kv> :
// CHECK-NEXT: %[[V:.*]] = attn.tile.load %arg2{{.*}} span(%[[PSPAN]]) stage(%[[PS]]) {part = 1 : i64}
// CHECK-NEXT: %[[PV:.*]] = attn.tile.pv %[[PP]], %[[V]], %[[ACC]], %[[PA]] {{.*}}{async}
// CHECK-NEXT: attn.tile.pass_turn
// Q K^T complete (P V may still run): the softmax.
// CHECK-NEXT: %[[SC:.*]] = attn.tile.mma_wait %[[QK]] {pending = 1 : i64}
// CHECK-NEXT: attn.tile.apply @causal(%[[SC]])
// CHECK-NEXT: %[[NM:.*]], %[[NL:.*]], %[[P32:.*]], %[[A:.*]] = attn.tile.softmax
// CHECK-NEXT: %[[O:.*]] = attn.tile.mma_wait %[[PV]] {pending = 0 : i64}
// CHECK-NEXT: attn.tile.release_kv stage(%[[PS]])
// P in V's type once the previous P V is done (not while it still reads its P).
// CHECK-NEXT: %[[P:.*]] = attn.tile.convert %[[P32]] : !attn.tile<128x64xf32, s> to !attn.tile<128x64xbf16, s>
// CHECK-NEXT: attn.tile.take_turn
// CHECK-NEXT: scf.yield %[[O]], %[[NM]], %[[NL]], %[[P]], %[[A]], %[[S]], %[[R]], %[[T]]
// The first computed tile: its Q K^T alone.
// CHECK: } else {
// CHECK: attn.tile.qk {{.*}} {async
// CHECK-NEXT: attn.tile.pass_turn
// CHECK-NEXT: attn.tile.mma_wait %{{.*}} {pending = 0 : i64}
// CHECK-NOT: attn.tile.pv
// CHECK: attn.tile.take_turn
// CHECK-NEXT: scf.yield %[[ACC]],
// CHECK: %[[TRUE:.*]] = arith.constant true
// CHECK: scf.yield {{.*}}, %[[TRUE]]
// A skipped tile keeps what came in.
// CHECK: } else {
// CHECK-NEXT: scf.yield %[[ACC]], %[[M]], %[[L]], %[[PP]], %[[PA]], %[[PS]], %[[PR]], %[[PT]], %[[HAS]]
// After the loop: the last computed tile's P V.
// CHECK: %[[LAST:.*]] = scf.if %[[LOOP]]#9 -> (!attn.tile<128x64xf32, acc>) {
// CHECK-NEXT: attn.tile.wait_kv stage(%[[LOOP]]#6) round(%[[LOOP]]#7) {part = 1 : i64}
// CHECK-NEXT: attn.tile.span %{{.*}}[%[[LOOP]]#8]
// CHECK-NEXT: attn.tile.load %arg2
// CHECK-NEXT: %[[TAIL:.*]] = attn.tile.pv %[[LOOP]]#4, %{{.*}}, %[[LOOP]]#0, %[[LOOP]]#5 {{.*}}{async}
// CHECK-NEXT: %[[TDONE:.*]] = attn.tile.mma_wait %[[TAIL]] {pending = 0 : i64}
// CHECK-NEXT: attn.tile.release_kv stage(%[[LOOP]]#6)
// CHECK-NEXT: scf.yield %[[TDONE]]
// CHECK-NEXT: } else {
// CHECK-NEXT: scf.yield %[[LOOP]]#0
// CHECK: attn.tile.store %[[LAST]]

// Without ping-pong: no turns.
// NOPP: } consumer {
// NOPP: attn.tile.mma_wait
// NOPP-NOT: attn.tile.take_turn
// NOPP-NOT: attn.tile.pass_turn
// NOPP: attn.tile.store

// One slot: a tile's fill would wait for its predecessor's release, which
// the overlap defers: the loop stays as it is.
// ONE: } consumer {
// ONE-NOT: async
// ONE-NOT: attn.tile.mma_wait
// ONE: attn.tile.pv
// ONE-NEXT: attn.tile.release_kv

// Without the mask analysis there is no guard (the release sits at the
// loop body's end): left as it is.
// NOGUARD: } consumer {
// NOGUARD-NOT: attn.tile.mma_wait
// NOGUARD: attn.tile.store

// The FULL tiles' copy (no mask) is made of the overlapped code: both
// forms of the tile, each in both classes.
// FULL: scf.if %{{.*}} -> (
// FULL: attn.tile.apply {{.*}} mask_if(%false{{.*}})
// FULL: attn.tile.mma_wait
// FULL: } else {
// FULL: attn.tile.apply
// FULL: attn.tile.mma_wait
// FULL: } else {
// FULL: attn.tile.apply {{.*}} mask_if(%false{{.*}})
// FULL: } else {
// FULL: attn.tile.apply
func.func @causal_kernel(%q: memref<?x?x?x64xbf16>, %k: memref<?x?x?x64xbf16>, %v: memref<?x?x?x64xbf16>, %o: memref<?x?x?x64xbf16>) {
  attn.attention @causal ins(%q, %k, %v : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>) outs(%o : memref<?x?x?x64xbf16>) {scale = 1.250000e-01 : f32}
  return
}
