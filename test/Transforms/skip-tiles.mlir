// RUN: heed-opt %s --attn-choose-tiling="block-q=16" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --split-input-file | FileCheck %s
// --attn-skip-tiles: key loops narrowed to the tiles the classifier cannot
// prove EMPTY, and each tile's work guarded by its class.

attn.variant @causal buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %m = arith.cmpi uge, %q, %kv : index
  attn.yield %m : i1
}
// CHECK-LABEL: func.func @flat
// CHECK: %[[LO:.*]], %[[HI:.*]] = attn.tile.span_box
// CHECK: %[[FIRST:.*]], %[[END:.*]] = attn.tile.kv_range @causal[%{{.*}}, %{{.*}}] rows(%[[LO]], %[[HI]]) of %[[SKV:.*]] outer[] tiling <q = [16], kv = [16]> dim 0
// CHECK: scf.for %{{.*}} = %[[FIRST]] to %[[END]]
// CHECK: %[[KLO:.*]], %{{.*}} = attn.tile.span_box
// CHECK: %[[CLS:.*]] = attn.tile.classify
// CHECK-DAG: %[[REAL:.*]] = arith.cmpi ult, %[[KLO]], %[[SKV]]
// CHECK-DAG: %[[NONEMPTY:.*]] = arith.cmpi ne, %[[CLS]], %c0_i8
// CHECK: %[[VISIT:.*]] = arith.andi
// CHECK: scf.if %{{.*}} -> (!attn.tile<16x64xf32, acc>, !attn.tile<16xf32, row>, !attn.tile<16xf32, row>) {
// CHECK: attn.tile.count
// CHECK: attn.tile.qk
// CHECK: attn.tile.pv
// CHECK: scf.yield
// CHECK: } else {
// CHECK-NEXT: scf.yield %{{.*}}, %{{.*}}, %{{.*}} :
func.func @flat(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %stats: memref<3xi64>) {
  attn.attention @causal ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) stats(%stats : memref<3xi64>) {scale = 1.250000e-01 : f32}
  return
}

// -----

// Patches: each grid dim's loop narrowed, the inner ones given the outer
// coordinates.
attn.variant @grid buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %w = arith.constant 24 : index
  %r = arith.constant 3 : index
  %qr = arith.floordivsi %q, %w : index
  %kr = arith.floordivsi %kv, %w : index
  %qm = arith.muli %qr, %w : index
  %qc = arith.subi %q, %qm : index
  %km = arith.muli %kr, %w : index
  %kc = arith.subi %kv, %km : index
  %dr = arith.subi %qr, %kr : index
  %dc = arith.subi %qc, %kc : index
  %adr = math.absi %dr : index
  %adc = math.absi %dc : index
  %a = arith.cmpi sle, %adr, %r : index
  %c = arith.cmpi sle, %adc, %r : index
  %m = arith.andi %a, %c : i1
  attn.yield %m : i1
}
// CHECK-LABEL: func.func @patches
// CHECK: %[[F0:.*]], %[[E0:.*]] = attn.tile.kv_range @grid{{.*}} outer[] {{.*}} dim 0
// CHECK: scf.for %[[P0:.*]] = %[[F0]] to %[[E0]]
// CHECK: %[[F1:.*]], %[[E1:.*]] = attn.tile.kv_range @grid{{.*}} outer[%[[P0]]] {{.*}} dim 1
// CHECK: scf.for %{{.*}} = %[[F1]] to %[[E1]]
// The query patch may be all holes too (a sequence ending mid-row).
// CHECK: %[[QREAL:.*]] = arith.cmpi ult, %{{.*}}, %{{.*}} : index
// CHECK: scf.if
func.func @patches(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  attn.attention @grid ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}
