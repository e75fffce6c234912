// RUN: heed-opt %s --attn-choose-tiling="block-q=64 block-kv=64 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-pipeline-kv --split-input-file | FileCheck %s
// RUN: heed-opt %s --attn-choose-tiling="block-q=64 block-kv=64 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-pipeline-kv="stages=1" --split-input-file | FileCheck %s --check-prefix=ONE
// RUN: heed-opt %s --attn-choose-tiling="block-q=64 block-kv=64 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-pipeline-kv="stages=3" --split-input-file | FileCheck %s --check-prefix=THREE
// RUN: not heed-opt %s --attn-choose-tiling --attn-to-tile --attn-pipeline-kv="stages=5" 2>&1 | FileCheck %s --check-prefix=BAD
// --attn-pipeline-kv: the key loop's K/V tiles staged in workgroup memory.

attn.variant @causal buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %m = arith.cmpi sge, %q, %kv : index
  attn.yield %m : i1
}
// Two slots: every thread is done with the slots (the query tile may have
// been staged there), then the prologue copies the first tile (unless
// EMPTY: its class comes from a copy of the tile's classifier) and closes
// its group -- always, so that group counts stay uniform.
// CHECK-LABEL: func.func @kernel
// CHECK: %[[FIRST:.*]], %[[END:.*]] = attn.tile.kv_range
// CHECK: attn.tile.barrier
// CHECK: %[[ANY:.*]] = arith.cmpi ult, %[[FIRST]], %[[END]] : index
// CHECK: %[[CLS0:.*]] = scf.if %[[ANY]] -> (i8) {
// CHECK: %[[S0:.*]] = attn.tile.span %{{.*}}[%[[FIRST]]] {{.*}} side <kv>
// CHECK: %[[C0:.*]] = attn.tile.classify
// CHECK: %[[SLOT0:.*]] = arith.remui %[[FIRST]], %c2
// CHECK: scf.if
// CHECK: attn.tile.copy_kv %{{.*}}, %{{.*}}[%{{.*}}, %{{.*}}] span(%[[S0]]) stage(%[[SLOT0]]) of 2 async
// CHECK: scf.yield %[[C0]] : i8
// CHECK: attn.tile.commit_kv
// In the loop: wait until no group is pending (tile t is in), start tile
// t + 1's copy and close its group, compute tile t from its slot. A tile is
// classified once, when it is prefetched: its class rides along the loop
// (an i8 iter_arg), and the loop body classifies no other tile.
// CHECK: scf.for %[[T:[^ ]*]] = %[[FIRST]] to %[[END]] {{.*}}, %[[CLS:[^ ]*]] = %[[CLS0]]) -> ({{.*}}, i8)
// CHECK-NOT: attn.tile.classify
// CHECK: arith.cmpi ne, %[[CLS]], %{{.*}} : i8
// CHECK: %[[SLOT:.*]] = arith.remui %[[T]], %c2
// CHECK: attn.tile.wait_kv
// CHECK-NOT: pending
// CHECK: %[[NEXT:.*]] = arith.addi %[[T]], %c1
// CHECK: %[[MORE:.*]] = arith.cmpi ult, %[[NEXT]], %[[END]]
// CHECK: %[[CLS1:.*]] = scf.if %[[MORE]] -> (i8) {
// CHECK: attn.tile.span %{{.*}}[%[[NEXT]]]
// CHECK: attn.tile.classify
// CHECK: attn.tile.copy_kv {{.*}} of 2 async
// CHECK: attn.tile.commit_kv
// CHECK-NOT: attn.tile.classify
// CHECK: attn.tile.load {{.*}} stage(%[[SLOT]]) {{.*}}-> !attn.tile<64x64xbf16, k>
// CHECK: attn.tile.load {{.*}} stage(%[[SLOT]]) {{.*}}-> !attn.tile<64x64xbf16, v>
// CHECK: scf.yield {{.*}}, %[[CLS1]] : {{.*}}, i8
// Three slots: the prologue issues tiles first and first + 1 (one group
// each); the loop waits until at most one group is pending, then starts
// tile t + 2 in the slot tile t - 1 used.
// THREE-LABEL: func.func @kernel
// THREE: %[[FIRST:.*]], %[[END:.*]] = attn.tile.kv_range
// THREE: attn.tile.copy_kv {{.*}} of 3 async
// THREE: attn.tile.commit_kv
// THREE: %[[SECOND:.*]] = arith.addi %[[FIRST]], %c1
// THREE: arith.cmpi ult, %[[SECOND]], %[[END]]
// THREE: attn.tile.copy_kv {{.*}} of 3 async
// THREE: attn.tile.commit_kv
// Two classes in flight: tile t's and tile t + 1's, shifted each iteration.
// THREE: scf.for %[[T:[^ ]*]] = %[[FIRST]] to %[[END]] {{.*}}, %[[A:[^ ]*]] = %{{.*}}, %[[B:[^ ]*]] = %{{.*}}) -> ({{.*}}, i8, i8)
// THREE: %[[SLOT:.*]] = arith.remui %[[T]], %c3
// THREE: attn.tile.wait_kv {pending = 1 : i64}
// THREE: arith.addi %[[T]], %c2
// THREE: attn.tile.copy_kv {{.*}} of 3 async
// THREE: attn.tile.commit_kv
// THREE: attn.tile.load {{.*}} stage(%[[SLOT]]) {{.*}}-> !attn.tile<64x64xbf16, k>
// THREE: scf.yield {{.*}}, %[[B]], %{{.*}} : {{.*}}, i8, i8
// One slot: barrier, copy unless EMPTY, close the group, wait, compute.
// ONE-LABEL: func.func @kernel
// ONE-NOT: attn.tile.barrier
// ONE: scf.for
// ONE: attn.tile.barrier
// ONE: attn.tile.copy_kv {{.*}} stage(%c0{{.*}}) of 1 :
// ONE: attn.tile.commit_kv
// ONE: attn.tile.wait_kv
// ONE: attn.tile.load {{.*}} stage(%c0{{.*}})
// BAD: error: attn-pipeline-kv: stages must be in [1, 4], not 5
func.func @kernel(%q: memref<?x?x?x64xbf16>, %k: memref<?x?x?x64xbf16>, %v: memref<?x?x?x64xbf16>, %o: memref<?x?x?x64xbf16>, %lse: memref<?x?x?xf32>) {
  attn.attention @causal ins(%q, %k, %v : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>) outs(%o : memref<?x?x?x64xbf16>) lse(%lse : memref<?x?x?xf32>) {scale = 1.250000e-01 : f32}
  return
}

// A paged cache: the copy reads through the page table; the staged loads
// read the slot, with no table.
// CHECK-LABEL: func.func @paged
// CHECK-SAME: %[[TABLE:[^:]*]]: memref<?x?xi32>
// CHECK: attn.tile.copy_kv {{.*}} pages(%[[TABLE]] : memref<?x?xi32>) of 2 async
// CHECK: scf.for
// CHECK: attn.tile.copy_kv {{.*}} pages(%[[TABLE]] : memref<?x?xi32>) of 2 async
// CHECK-NOT: pages(
// CHECK: attn.tile.load {{.*}} stage(
// CHECK-NOT: pages(
// CHECK: return
func.func @paged(%q: memref<?x?x?x64xbf16>, %k: memref<?x?x16x64xbf16>, %v: memref<?x?x16x64xbf16>, %lens: memref<?xi32>, %table: memref<?x?xi32>, %o: memref<?x?x?x64xbf16>) {
  attn.attention @causal ins(%q, %k, %v : memref<?x?x?x64xbf16>, memref<?x?x16x64xbf16>, memref<?x?x16x64xbf16>) kv_lens(%lens : memref<?xi32>) page_table(%table : memref<?x?xi32>) outs(%o : memref<?x?x?x64xbf16>) {scale = 1.250000e-01 : f32}
  return
}
