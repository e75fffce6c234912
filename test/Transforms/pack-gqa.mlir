// RUN: heed-opt %s --attn-choose-tiling --attn-analyze-mask --attn-to-tile --attn-pack-gqa --split-input-file | FileCheck %s
// RUN: heed-opt %s --attn-choose-tiling --attn-analyze-mask --attn-to-tile --attn-pack-gqa --split-input-file | FileCheck %s --check-prefix=RETILE
// RUN: heed-opt %s --attn-choose-tiling --attn-analyze-mask --attn-to-tile --attn-pack-gqa="rows=4" --split-input-file | FileCheck %s --check-prefix=ROWS4
// RUN: heed-opt %s --attn-choose-tiling --attn-analyze-mask --attn-to-tile --attn-pack-gqa="one-loop=1" --split-input-file | FileCheck %s --check-prefix=ONE
// --attn-pack-gqa: when a GQA group's queries fit one query tile (decided
// at run time), one work item per key/value head over a packed query tile.

attn.variant @causal buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %m = arith.cmpi uge, %q, %kv : index
  attn.yield %m : i1
}
// CHECK-LABEL: func.func @decode
// CHECK-SAME: (%[[Q:[a-z0-9]+]]: memref<?x?x?x64xbf16>, %[[K:[a-z0-9]+]]: memref<?x?x?x64xbf16>
// CHECK-DAG: %[[SQ:.*]] = memref.dim %[[Q]], %c2
// CHECK-DAG: %[[HQ:.*]] = memref.dim %[[Q]], %c1
// CHECK-DAG: %[[HKV:.*]] = memref.dim %[[K]], %c1
// CHECK: %[[G:.*]] = arith.divui %[[HQ]], %[[HKV]]
// CHECK: %[[PACKED:.*]] = arith.muli %[[SQ]], %[[G]]
// CHECK-DAG: %[[GROUPED:.*]] = arith.cmpi ugt, %[[G]], %c1
// CHECK-DAG: %[[FITS:.*]] = arith.cmpi ule, %[[PACKED]], %c16
// CHECK: %[[CHOOSE:.*]] = arith.andi %[[GROUPED]], %[[FITS]]
// CHECK: scf.if %[[CHOOSE]] {
// CHECK: %[[TILES:.*]] = attn.num_tiles %[[PACKED]] of @causal side <q>
// CHECK: attn.tile.work %{{.*}}, %[[HKV]], %[[TILES]]
// CHECK: ^bb0(%{{[a-z0-9]+}}: index, %[[KVH:[a-z0-9]+]]: index, %[[T:[a-z0-9]+]]: index):
// CHECK: %[[FIRST:.*]] = arith.muli %[[KVH]], %[[G]]
// CHECK: attn.tile.packed_span %[[SQ]] group %[[G]][%[[T]]]
// CHECK: attn.tile.load %[[Q]][%{{.*}}, %[[FIRST]]]
// CHECK: scf.for %{{.*}} = %c0{{.*}} to %[[G]] step %c1{{.*}} {
// CHECK-NEXT: attn.tile.count
// CHECK: } else {
// CHECK: attn.tile.work %{{.*}}, %[[HQ]], 
// CHECK: attn.tile.span %[[SQ]]
// CHECK-NOT: attn.tile.packed_span
// one-loop (the GPU kernels): no copy; the loop's items, heads per item
// and tile count are chosen at run time, and its query tile is always a
// packed span (of one head where it does not pack), in the loop's own rows.
// ONE-LABEL: func.func @decode
// ONE-SAME: (%[[Q:[a-z0-9]+]]: memref<?x?x?x64xbf16>, %[[K:[a-z0-9]+]]: memref<?x?x?x64xbf16>
// ONE-DAG: %[[SQ:.*]] = memref.dim %[[Q]], %c2
// ONE-DAG: %[[HQ:.*]] = memref.dim %[[Q]], %c1
// ONE-DAG: %[[HKV:.*]] = memref.dim %[[K]], %c1
// ONE: %[[G:.*]] = arith.divui %[[HQ]], %[[HKV]]
// ONE: %[[CHOOSE:.*]] = arith.andi
// ONE-NOT: scf.if
// ONE: %[[GE:.*]] = arith.select %[[CHOOSE]], %[[G]], %c1
// ONE: %[[HEADS:.*]] = arith.select %[[CHOOSE]], %[[HKV]], %[[HQ]]
// ONE: %[[ROWS:.*]] = arith.muli %[[SQ]], %[[GE]]
// ONE: %[[TILES:.*]] = attn.num_tiles %[[ROWS]] of @causal side <q> {tiling = #attn.tiling<q = [32]
// ONE: attn.tile.work %{{.*}}, %[[HEADS]], %[[TILES]]
// ONE: ^bb0(%{{[a-z0-9]+}}: index, %[[ITEM:[a-z0-9]+]]: index, %[[T:[a-z0-9]+]]: index):
// ONE: %[[FIRST:.*]] = arith.muli %[[ITEM]], %[[GE]]
// ONE: attn.tile.packed_span %[[SQ]] group %[[GE]][%[[T]]] tiling <q = [32], kv = [16]> : <32>
// ONE: attn.tile.load %[[Q]][%{{.*}}, %[[FIRST]]]
// ONE: scf.for %{{.*}} = %c0{{.*}} to %[[GE]] step %c1{{.*}} {
// ONE-NEXT: attn.tile.count

// The packed branch has its own tile (--attn-pack-gqa's rows, 16): the
// prefill loop keeps choose-tiling's 32 rows, the packed one's q, s, acc and
// row tiles, its span and its tilings are retyped; key tiles are not.
// RETILE-LABEL: func.func @decode
// RETILE: arith.cmpi ule, %{{.*}}, %c16
// RETILE: scf.if
// RETILE: attn.num_tiles %{{.*}} of @causal side <q> {tiling = #attn.tiling<q = [16], kv = [16]>}
// RETILE: attn.tile.packed_span {{.*}} tiling <q = [16], kv = [16]> : <16>
// RETILE: -> !attn.tile<16x64xbf16, q>
// RETILE: scf.for {{.*}} -> (!attn.tile<16x64xf32, acc>, !attn.tile<16xf32, row>, !attn.tile<16xf32, row>)
// RETILE: attn.tile.span {{.*}} tiling <q = [16], kv = [16]> side <kv> : <16>
// RETILE: -> !attn.tile<16x64xbf16, k>
// RETILE: attn.tile.qk {{.*}} -> !attn.tile<16x16xf32, s>
// RETILE: attn.tile.store {{.*}} !attn.tile<16x64xf32, acc>
// RETILE: } else {
// RETILE: attn.tile.span {{.*}} tiling <q = [32], kv = [16]> side <q> : <32>
// RETILE: -> !attn.tile<32x64xbf16, q>
// RETILE: attn.tile.qk {{.*}} -> !attn.tile<32x16xf32, s>
// ROWS4-LABEL: func.func @decode
// ROWS4: arith.cmpi ule, %{{.*}}, %c4
// ROWS4: attn.tile.packed_span {{.*}} tiling <q = [4], kv = [16]> : <4>
// ROWS4: attn.tile.qk {{.*}} -> !attn.tile<4x16xf32, s>
// ROWS4: } else {
// ROWS4: attn.tile.qk {{.*}} -> !attn.tile<32x16xf32, s>
func.func @decode(%q: memref<?x?x?x64xbf16>, %k: memref<?x?x?x64xbf16>, %v: memref<?x?x?x64xbf16>, %o: memref<?x?x?x64xbf16>, %stats: memref<3xi64>) {
  attn.attention @causal ins(%q, %k, %v : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>) outs(%o : memref<?x?x?x64xbf16>) stats(%stats : memref<3xi64>) {scale = 1.250000e-01 : f32}
  return
}

// Ragged queries: the choice is made on the capacity (q's length), and the
// packed span holds the item's entry's own queries.
// CHECK-LABEL: func.func @ragged
// CHECK-SAME: (%[[Q:[a-z0-9]+]]: memref<?x?x?x64xbf16>, %[[K:[a-z0-9]+]]: memref<?x?x?x64xbf16>, %{{[a-z0-9]+}}: memref<?x?x?x64xbf16>, %[[QL:[a-z0-9]+]]: memref<?xi32>
// CHECK-DAG: %[[CAP:.*]] = memref.dim %[[Q]], %c2
// CHECK: %[[G:.*]] = arith.divui
// CHECK: %[[PACKED:.*]] = arith.muli %[[CAP]], %[[G]]
// CHECK: scf.if
// CHECK: attn.tile.work
// CHECK: ^bb0(%[[B:[a-z0-9]+]]: index,
// CHECK: memref.load %[[QL]][%[[B]]]
// CHECK: %[[SQ:.*]] = arith.minui %{{.*}}, %[[CAP]]
// CHECK: attn.tile.packed_span %[[SQ]] group %[[G]]
// CHECK: } else {
// CHECK: attn.tile.span
func.func @ragged(%q: memref<?x?x?x64xbf16>, %k: memref<?x?x?x64xbf16>, %v: memref<?x?x?x64xbf16>, %ql: memref<?xi32>, %o: memref<?x?x?x64xbf16>) {
  attn.attention @causal ins(%q, %k, %v : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>) q_lens(%ql : memref<?xi32>) outs(%o : memref<?x?x?x64xbf16>) {scale = 1.250000e-01 : f32}
  return
}

// -----

// A classifier that reads the head (a per-head window) sees one head per
// work item: such loops stay as they are.
attn.variant @window_of_h buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %d = arith.subi %q, %kv : index
  %m = arith.cmpi slt, %d, %h : index
  attn.yield %m : i1
}
// CHECK-LABEL: func.func @per_head
// CHECK-NOT: scf.if
// CHECK-NOT: attn.tile.packed_span
// CHECK: return
func.func @per_head(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  attn.attention @window_of_h ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

// A sink logit that reads the head (gpt-oss's learned per-head sinks):
// attn.tile.sink gives one logit per work item, a packed tile's rows belong
// to several heads: the packed copy computes one per row instead
// (attn.tile.lane_sinks on the packed span) and the store takes those.
attn.variant @sink_of_h buffers(["sinks"] : [memref<?xf32>]) shapes [["H"]] params {} sink {
^bb0(%b: index, %h: index, %sinks: memref<?xf32>):
  %x = attn.load %sinks[%h] : memref<?xf32> -> f32
  attn.yield %x : f32
} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %sinks2: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %sinks3: memref<?xf32>):
  %m = arith.cmpi uge, %q, %kv : index
  attn.yield %m : i1
}
// CHECK-LABEL: func.func @per_head_sink
// CHECK: scf.if
// CHECK: %[[ROWS:.*]] = attn.tile.packed_span
// CHECK: %[[SINKS:.*]] = attn.tile.lane_sinks @sink_of_h[%{{.*}}, %{{.*}}] rows(%[[ROWS]]) buffers(%{{.*}} : memref<?xf32>) : <16> -> !attn.tile<16xf32, row>
// CHECK-NOT: attn.tile.sink
// CHECK: attn.tile.store {{.*}} span(%[[ROWS]]) lane_sinks(%[[SINKS]] : !attn.tile<16xf32, row>)
// The unpacked loop keeps one logit per item.
// CHECK: } else {
// CHECK: %[[SINK:.*]] = attn.tile.sink @sink_of_h
// CHECK: attn.tile.store {{.*}} sink(%[[SINK]])
// CHECK: return
func.func @per_head_sink(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %sinks: memref<?xf32>, %o: memref<?x?x?x64xf32>) {
  attn.attention @sink_of_h ins(%q, %k, %k : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) buffers(%sinks : memref<?xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}
