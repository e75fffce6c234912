// RUN: heed-opt %s --attn-choose-tiling="block-q=128 block-kv=64 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-warp-specialize="pingpong=true" --attn-persistent-workers="l2-bytes=1048576" | FileCheck %s
// RUN: heed-opt %s --attn-runtime-abi="split-kv=true" --attn-choose-tiling="block-q=128 block-kv=64 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-split-kv="one-loop=true" --attn-warp-specialize --attn-persistent-workers | FileCheck %s --check-prefix=SPLIT
// RUN: heed-opt %s --attn-choose-tiling="block-q=128 block-kv=64 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-warp-specialize="pingpong=true" --attn-persistent-workers --attn-overlap-softmax | FileCheck %s --check-prefix=OVERLAP
// RUN: heed-opt %s --attn-choose-tiling="block-q=128 block-kv=64 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-pipeline-kv --attn-persistent-workers | FileCheck %s --check-prefix=NOWS
// --attn-persistent-workers: each warp-specialized side walks the items of
// its worker (worker, worker + workers, ...), longest first, carrying its
// count of K/V tiles across items.

attn.variant @causal buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %m = arith.cmpi uge, %q, %kv : index
  attn.yield %m : i1
}

func.func @causal_kernel(%q: memref<?x?x?x64xbf16>, %k: memref<?x?x?x64xbf16>, %v: memref<?x?x?x64xbf16>, %o: memref<?x?x?x64xbf16>) {
  attn.attention @causal ins(%q, %k, %v : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>) outs(%o : memref<?x?x?x64xbf16>) {scale = 1.250000e-01 : f32}
  return
}

// The work is one body per worker: (worker, workers); the items B x H x T;
// a section: the (b, h) pairs whose K and V (64 + 64 bf16 a row: 256 bytes
// per key) fit 1 MiB, a GQA group's query heads sharing theirs.
// CHECK-LABEL: func.func @causal_kernel
// CHECK: %[[T:.*]] = attn.num_tiles
// CHECK: attn.tile.work %[[B:.*]], %[[H:.*]], %[[T]] {
// CHECK-NEXT: ^bb0(%[[W:.*]]: index, %[[NW:.*]]: index):
// CHECK-NEXT: %[[BH:.*]] = arith.muli %[[B]], %[[H]]
// CHECK-NEXT: %[[ITEMS:.*]] = arith.muli %[[BH]], %[[T]]
// CHECK: arith.muli %{{.*}}, %c256
// CHECK: arith.minui
// CHECK-NEXT: %[[SEC:.*]] = arith.maxui
// The producer: its count starts at the carried one, the item's count out.
// CHECK-NEXT: attn.tile.warp_specialize producer {
// CHECK: %[[PDONE:.*]] = scf.for %[[I:.*]] = %[[W]] to %[[ITEMS]] step %[[NW]] iter_args(%[[N:.*]] = %c0{{.*}}) -> (index) {
// CHECK-NEXT: %[[PB:.*]], %[[PH:.*]], %[[PT:.*]] = attn.tile.work_item %[[I]] of %[[B]], %[[H]], %[[T]] section(%[[SEC]])
// CHECK: attn.tile.span %{{.*}}[%[[PT]]]
// CHECK: %[[PK:.*]] = scf.for {{.*}} iter_args(%[[PC:.*]] = %[[N]]) -> (index) {
// CHECK: attn.tile.acquire_kv
// CHECK: attn.tile.copy_kv {{.*}}[%[[PB]],
// CHECK: scf.yield %[[PK]] : index
// The consumers: the count, and the q tile's round (the worker's how-many-th).
// CHECK: } consumer {
// CHECK: scf.for %[[CI:.*]] = %[[W]] to %[[ITEMS]] step %[[NW]] iter_args(%[[CN:.*]] = %c0{{.*}}, %[[J:.*]] = %c0{{.*}}) -> (index, index) {
// CHECK-NEXT: %[[CB:.*]], %[[CH:.*]], %[[CT:.*]] = attn.tile.work_item %[[CI]] of %[[B]], %[[H]], %[[T]] section(%[[SEC]])
// CHECK: attn.tile.load %arg0[%[[CB]], %[[CH]]] span(%{{.*}}) round(%[[J]])
// CHECK: %[[NEXT:.*]] = arith.addi %[[J]], %c1
// CHECK: %[[KEYS:.*]]:4 = scf.for {{.*}} iter_args({{.*}}, %{{.*}} = %[[CN]]) ->
// CHECK: attn.tile.wait_kv
// CHECK: attn.tile.store
// CHECK: scf.yield %[[KEYS]]#3, %[[NEXT]] : index, index
// CHECK: } {pingpong
// CHECK-NEXT: } {persistent}

// Split-KV's phases: the counts leave the phase branches as one more result
// each (the merge phase passes them through); the work range is dropped.
// SPLIT: attn.tile.work %{{.*}}, %{{.*}}, %{{.*}} {
// SPLIT-NEXT: ^bb0(%{{.*}}: index, %{{.*}}: index):
// SPLIT: attn.tile.warp_specialize producer {
// SPLIT: scf.for {{.*}} iter_args(%[[N:.*]] = %c0{{.*}}) -> (index) {
// SPLIT: %[[PP:.*]] = scf.if %{{.*}} -> (index) {
// SPLIT-NEXT: scf.yield %[[N]] : index
// SPLIT-NEXT: } else {
// SPLIT: %[[PK:.*]] = scf.for {{.*}} iter_args(%{{.*}} = %[[N]]) -> (index) {
// SPLIT: scf.yield %[[PK]] : index
// SPLIT: scf.yield %[[PP]] : index
// SPLIT: } consumer {
// SPLIT: scf.for {{.*}} iter_args(%[[CN:.*]] = %c0{{.*}}, %[[J:.*]] = %c0{{.*}}) -> (index, index) {
// SPLIT: %[[CP:.*]]:5 = scf.if %{{.*}} -> ({{.*}}, index, index) {
// SPLIT: attn.tile.merge_partials
// SPLIT: scf.yield {{.*}}, %[[CN]], %[[J]] :
// SPLIT: } else {
// SPLIT: attn.tile.load %arg0{{.*}} round(%[[J]])
// SPLIT: scf.yield %[[CP]]#3, %[[CP]]#4 : index, index
// SPLIT: } {persistent}

// The softmax overlap then rearranges each item's key loop; the count it
// carries still leaves the item.
// OVERLAP: } consumer {
// OVERLAP: scf.for {{.*}} iter_args(%[[CN:.*]] = %c0{{.*}}, %[[J:.*]] = %c0{{.*}}) -> (index, index) {
// OVERLAP: %[[LOOP:.*]]:10 = scf.for {{.*}} iter_args({{.*}}, %{{.*}} = %[[CN]], {{.*}})
// OVERLAP: attn.tile.mma_wait {{.*}} {pending = 1 : i64}
// OVERLAP: scf.if %[[LOOP]]#9
// OVERLAP: attn.tile.store
// OVERLAP: scf.yield %[[LOOP]]#3, %{{.*}} : index, index

// Without a producer (--attn-pipeline-kv's one kernel): one item per block.
// NOWS: attn.tile.work %{{.*}}, %{{.*}}, %{{.*}} {
// NOWS-NEXT: ^bb0(%{{.*}}: index, %{{.*}}: index, %{{.*}}: index):
// NOWS-NOT: attn.tile.work_item
// NOWS-NOT: persistent
