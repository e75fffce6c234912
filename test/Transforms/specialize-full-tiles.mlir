// RUN: heed-opt %s --attn-choose-tiling="block-q=64 block-kv=64 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-specialize-full-tiles | FileCheck %s
// --attn-specialize-full-tiles: inside a key tile's EMPTY check, a copy of
// the tile's code for FULL tiles wholly inside the sequence, with the mask
// off and the key span in bounds.

attn.variant @causal buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %m = arith.cmpi sge, %q, %kv : index
  attn.yield %m : i1
}
// CHECK-LABEL: func.func @kernel
// CHECK: scf.for %[[T:[^ ]*]] =
// CHECK: %[[KS:.*]] = attn.tile.span %[[SKV:.*]][%[[T]]] {{.*}} side <kv> : <64>
// CHECK: %[[CLS:.*]] = attn.tile.classify
// CHECK: scf.if %{{.*}} -> (!attn.tile<64x64xf32, acc>, !attn.tile<64xf32, row>, !attn.tile<64xf32, row>) {
// Every key of the tile before Skv: (t + 1) * 64 <= Skv.
// CHECK: %[[T1:.*]] = arith.addi %[[T]], %c1
// CHECK: %[[END:.*]] = arith.muli %[[T1]], %c64
// CHECK-DAG: %[[ISFULL:.*]] = arith.cmpi eq, %[[CLS]], %c2_i8
// CHECK-DAG: %[[INSIDE:.*]] = arith.cmpi ule, %[[END]], %[[SKV]]
// CHECK: %[[FULL:.*]] = arith.andi %[[ISFULL]], %[[INSIDE]]
// CHECK: scf.if %[[FULL]] -> (!attn.tile<64x64xf32, acc>, !attn.tile<64xf32, row>, !attn.tile<64xf32, row>) {
// CHECK: %[[IN:.*]] = attn.tile.span %[[SKV]][%[[T]]] {{.*}} side <kv> in_bounds : <64>
// CHECK: %[[OFF:.*]] = arith.constant false
// CHECK: attn.tile.apply @causal(%{{.*}}) [%{{.*}}, %{{.*}}] rows(%{{.*}}) cols(%[[IN]]) mask_if(%[[OFF]])
// CHECK: } else {
// CHECK: attn.tile.apply @causal(%{{.*}}) [%{{.*}}, %{{.*}}] rows(%{{.*}}) cols(%[[KS]]) mask_if(%{{.*}})
func.func @kernel(%q: memref<?x?x?x64xbf16>, %k: memref<?x?x?x64xbf16>, %v: memref<?x?x?x64xbf16>, %o: memref<?x?x?x64xbf16>, %lse: memref<?x?x?xf32>) {
  attn.attention @causal ins(%q, %k, %v : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>) outs(%o : memref<?x?x?x64xbf16>) lse(%lse : memref<?x?x?xf32>) {scale = 1.250000e-01 : f32}
  return
}
