// RUN: heed-opt %s --attn-runtime-abi="split-kv=true" --attn-choose-tiling --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-split-kv --canonicalize --split-input-file | FileCheck %s
// RUN: heed-opt %s --attn-runtime-abi="split-kv=true" --attn-choose-tiling --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-split-kv="one-loop=true" --canonicalize --split-input-file | FileCheck %s --check-prefix=ONE
// --attn-runtime-abi{split-kv} gives the kernel the split-KV phase, count,
// keys per part and workspace; --attn-split-kv makes the three phases of
// each work loop.

attn.variant @plain buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %m = arith.cmpi uge, %q, %kv : index
  attn.yield %m : i1
}

// CHECK-LABEL: func.func @split(
// CHECK-SAME: %[[STATS:[^:]*]]: memref<3xi64>, %[[BEGIN:[^:]*]]: index, %[[END:[^:]*]]: index, %[[PHASE:[^:]*]]: index, %[[COUNT:[^:]*]]: index, %[[PKEYS:[^:]*]]: index, %[[PACC:[^:]*]]: memref<?x?x?x?x?xf32>, %[[PSTATS:[^:]*]]: memref<?x?x?x?x?xf32>)
// CHECK: %[[T:.*]] = attn.num_tiles
// CHECK: scf.index_switch %[[PHASE]]
// Phase 1: count items per query tile, each over part of the key range.
// CHECK: case 1 {
// CHECK: %[[TS:.*]] = arith.muli %[[T]], %[[COUNT]] : index
// CHECK: attn.tile.work %{{.*}}, %{{.*}}, %[[TS]] range(%[[BEGIN]], %[[END]]) {
// CHECK: ^bb0(%[[B:.*]]: index, %[[H:.*]]: index, %[[I:.*]]: index):
// CHECK: %[[TILE:.*]] = arith.divui %[[I]], %[[COUNT]] : index
// CHECK: %[[PART:.*]] = arith.remui %[[I]], %[[COUNT]] : index
// CHECK: attn.tile.span %{{.*}}[%[[TILE]]] {{.*}} side <q>
// CHECK: %[[FIRST:.*]], %[[LAST:.*]] = attn.tile.kv_range
// A part: the range's count-th, or the tiles of the part's keys (16 keys a
// tile) where more (parts of equal work).
// CHECK: %[[EVEN:.*]] = arith.ceildivui %{{.*}}, %[[COUNT]] : index
// CHECK: %[[PTILES:.*]] = arith.ceildivui %[[PKEYS]], %c16 : index
// CHECK: %[[CLAMPED:.*]] = arith.minui %[[PTILES]], %{{.*}} : index
// CHECK: %[[SIZE:.*]] = arith.maxui %[[EVEN]], %[[CLAMPED]] : index
// CHECK: %[[OFF:.*]] = arith.muli %[[PART]], %[[SIZE]] : index
// CHECK: %[[LO:.*]] = arith.addi %[[FIRST]], %[[OFF]] : index
// CHECK: %[[HI:.*]] = arith.minui
// CHECK: %[[LO2:.*]] = arith.minui %[[LO]], %[[HI]] : index
// CHECK: %[[R:.*]]:3 = scf.for %{{.*}} = %[[LO2]] to %[[HI]]
// CHECK: attn.tile.count %[[STATS]]
// CHECK: attn.tile.store_partial %[[R]]#0, %[[R]]#1, %[[R]]#2 to %[[PACC]], %[[PSTATS]][%[[PART]], %[[B]], %[[H]]] span(
// CHECK-NOT: attn.tile.store {{.*}} to
// Phase 2: the merge, no key loop, then the store as before.
// CHECK: case 2 {
// CHECK: attn.tile.work %{{.*}}, %{{.*}}, %[[T]] range(%[[BEGIN]], %[[END]]) {
// CHECK-NOT: scf.for
// CHECK-NOT: attn.tile.count
// CHECK: %[[ACC:.*]], %[[MAX:.*]], %[[SUM:.*]] = attn.tile.merge_partials %[[PACC]], %[[PSTATS]][%{{.*}}, %{{.*}}] splits(%[[COUNT]]) span(
// CHECK: attn.tile.store %[[ACC]], %[[MAX]], %[[SUM]] to
// Phase 0: the loop as it was.
// CHECK: default {
// CHECK: attn.tile.work %{{.*}}, %{{.*}}, %[[T]] range(%[[BEGIN]], %[[END]]) {
// CHECK: scf.for
// CHECK: attn.tile.store
// The GPU kernels' form: one work loop over T * parts (parts = 1 in phase
// 2), the state merged or computed over part s, one store.
// ONE-LABEL: func.func @split(
// ONE-SAME: %[[PHASE:[^:]*]]: index, %[[COUNT:[^:]*]]: index, %[[PKEYS:[^:]*]]: index, %[[PACC:[^:]*]]: memref<?x?x?x?x?xf32>, %[[PSTATS:[^:]*]]: memref<?x?x?x?x?xf32>)
// ONE: %[[T:.*]] = attn.num_tiles
// ONE: %[[MERGE:.*]] = arith.cmpi eq, %[[PHASE]], %c2 : index
// ONE: %[[PARTS:.*]] = arith.select %[[MERGE]], %c1, %[[COUNT]] : index
// The tiles of a part of the call's part keys (16 keys a tile), at least
// 1 (part keys 0: a tile, i.e. each item in min(parts, its tiles) parts,
// as without them), in 32 bits.
// ONE: %[[PTILES:.*]] = arith.ceildivui %[[PKEYS]], %c16 : index
// ONE: %[[PT32:.*]] = arith.index_castui %{{.*}} : index to i32
// ONE: %[[TS:.*]] = arith.muli %[[T]], %[[PARTS]] : index
// ONE-NOT: index_switch
// ONE: attn.tile.work %{{.*}}, %{{.*}}, %[[TS]] range(
// ONE: ^bb0(%[[B:.*]]: index, %[[H:.*]]: index, %[[I:.*]]: index):
// ONE: %[[TILE:.*]] = arith.divui %[[I]], %[[PARTS]] : index
// ONE: %[[PART:.*]] = arith.remui %[[I]], %[[PARTS]] : index
// ONE: attn.tile.span %{{.*}}[%[[TILE]]] {{.*}} side <q>
// The merge phase reads back the parts' states; what only the key loop
// needs (the query tile, the key range) is computed on the other side.
// ONE: %[[STATE:.*]]:3 = scf.if %[[MERGE]] -> (
// ONE-NEXT: attn.tile.merge_partials %[[PACC]], %[[PSTATS]][%[[B]], %[[H]]] splits(%[[COUNT]])
// ONE: } else {
// ONE: attn.tile.load %arg0
// Part s: tiles first + s, first + s + used, ... of [first, end), where
// the item uses min(parts, ceil(its tiles / the part keys' tiles)) parts
// (parts of equal work); parts past them are empty (the part keys' tiles
// are computed once, before the work loop: above).
// ONE: %[[FIRST:.*]], %[[END:.*]] = attn.tile.kv_range
// ONE: %[[LAST:.*]] = arith.maxui %[[END]], %[[FIRST]] : index
// ONE: %[[LEN:.*]] = arith.subi %[[LAST]], %[[FIRST]] : index
// ONE: %[[LEN32:.*]] = arith.index_castui %{{.*}} : index to i32
// ONE: %[[WANT32:.*]] = arith.ceildivui %[[LEN32]], %[[PT32]] : i32
// ONE: %[[WANT:.*]] = arith.index_castui %[[WANT32]] : i32 to index
// ONE: %[[WANT1:.*]] = arith.maxui %[[WANT]], %c1 : index
// ONE: %[[USED:.*]] = arith.minui %[[PARTS]], %[[WANT1]] : index
// ONE: %[[IDLE:.*]] = arith.cmpi uge, %[[PART]], %[[USED]] : index
// ONE: %[[STOP:.*]] = arith.select %[[IDLE]], %[[FIRST]], %[[LAST]] : index
// ONE: %[[FROM:.*]] = arith.addi %[[FIRST]], %[[PART]] : index
// ONE: %[[LO:.*]] = arith.minui %[[FROM]], %[[STOP]] : index
// ONE: scf.for %{{.*}} = %[[LO]] to %[[STOP]] step %[[USED]]
// ONE: %[[PARTIAL:.*]] = arith.cmpi eq, %[[PHASE]], %c1 : index
// ONE: scf.if %[[PARTIAL]] {
// ONE: attn.tile.store_partial %[[STATE]]#0, %[[STATE]]#1, %[[STATE]]#2 to %[[PACC]], %[[PSTATS]][%[[PART]], %[[B]], %[[H]]]
// ONE: } else {
// ONE: attn.tile.store %[[STATE]]#0, %[[STATE]]#1, %[[STATE]]#2 to
// ONE-NOT: attn.tile.work
func.func @split(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  attn.attention @plain ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

// A gated variant's item (an idle branch around its key loop): computed
// whole in phases 0 and 1, nothing in phase 2.
attn.variant @gated buffers(["router"] : [memref<?x?x?xf32>]) shapes [["B", "Sq", "H"]] params {} gate [0, 0, 1, 2] score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %r: memref<?x?x?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %r: memref<?x?x?xf32>):
  %m = arith.cmpi uge, %q, %kv : index
  attn.yield %m : i1
}

// CHECK-LABEL: func.func @gated_kernel(
// CHECK-SAME: %[[PHASE:[^:]*]]: index, %{{[^:]*}}: index, %{{[^:]*}}: index, %{{[^:]*}}: memref<?x?x?x?x?xf32>, %{{[^:]*}}: memref<?x?x?x?x?xf32>)
// CHECK-NOT: index_switch
// CHECK: %[[NOT:.*]] = arith.cmpi ne, %[[PHASE]], %c2 : index
// CHECK: scf.if %[[NOT]] {
// CHECK-NEXT: attn.tile.work
// CHECK-NOT: store_partial
// One loop: part 0 of each tile's items runs it whole, phase 2 nothing.
// ONE-LABEL: func.func @gated_kernel(
// ONE-SAME: %[[PHASE:[^:]*]]: index, %[[COUNT:[^:]*]]: index, %{{[^:]*}}: index, %{{[^:]*}}: memref<?x?x?x?x?xf32>, %{{[^:]*}}: memref<?x?x?x?x?xf32>)
// ONE: %[[MERGE:.*]] = arith.cmpi eq, %[[PHASE]], %c2 : index
// ONE: scf.if %[[MERGE]] {
// ONE-NEXT: } else {
// ONE: attn.tile.work
// ONE: %[[PART:.*]] = arith.remui %{{.*}}, %[[COUNT]] : index
// ONE: %[[FIRST:.*]] = arith.cmpi eq, %[[PART]], %c0 : index
// ONE: scf.if %[[FIRST]] {
// ONE-NOT: store_partial
func.func @gated_kernel(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %router: memref<?x?x?xf32>, %o: memref<?x?x?x64xf32>) {
  attn.attention @gated ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) buffers(%router : memref<?x?x?xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}
