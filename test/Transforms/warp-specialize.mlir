// RUN: heed-opt %s --attn-choose-tiling="block-q=128 block-kv=64 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-warp-specialize="producer-registers=24 consumer-registers=240" --split-input-file | FileCheck %s
// RUN: heed-opt %s --attn-choose-tiling="block-q=128 block-kv=64 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-warp-specialize="producer-registers=24 consumer-registers=240" --split-input-file | FileCheck %s --check-prefix=CONS
// RUN: heed-opt %s --attn-runtime-abi="split-kv=true" --attn-choose-tiling="block-q=128 block-kv=64 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-split-kv="one-loop=true" --attn-warp-specialize="stages=3" --canonicalize --split-input-file | FileCheck %s --check-prefix=SPLIT
// RUN: heed-opt %s --attn-choose-tiling="block-q=128 block-kv=64 patches=false" --attn-to-tile --attn-warp-specialize --split-input-file | FileCheck %s --check-prefix=NOGUARD
// RUN: not heed-opt %s --attn-choose-tiling --attn-to-tile --attn-warp-specialize="stages=0" 2>&1 | FileCheck %s --check-prefix=BAD
// --attn-warp-specialize: the work item's code becomes the consumers' side
// of an attn.tile.warp_specialize; the producer walks the same key tiles and
// copies each tile the consumers compute (and no other) into slot n mod N,
// its fill n / N, n counting the computed tiles on both sides.

attn.variant @causal buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %m = arith.cmpi uge, %q, %kv : index
  attn.yield %m : i1
}

// CHECK-LABEL: func.func @causal_kernel
// CHECK: attn.tile.work
// CHECK-NEXT: ^bb0(%[[B:.*]]: index, %[[H:.*]]: index, %[[T:.*]]: index):
// CHECK-NEXT: attn.tile.warp_specialize producer {
// The producer: the loop's bounds (the query tile's key range), cloned.
// CHECK: %[[QS:.*]] = attn.tile.span %{{.*}}[%[[T]]] {{.*}} side <q>
// CHECK: %[[LO:.*]], %[[HI:.*]] = attn.tile.span_box %[[QS]]
// CHECK: %[[FIRST:.*]], %[[END:.*]] = attn.tile.kv_range @causal[%[[B]], %[[H]]] rows(%[[LO]], %[[HI]])
// CHECK-NOT: attn.tile.load
// CHECK: scf.for %[[KT:.*]] = %[[FIRST]] to %[[END]] step %{{.*}} iter_args(%[[N:.*]] = %c0{{.*}}) -> (index) {
// Each tile's span and class, and the test that guards the consumers' code.
// CHECK: %[[KS:.*]] = attn.tile.span %{{.*}}[%[[KT]]] {{.*}} side <kv>
// CHECK: %[[CLS:.*]] = attn.tile.classify @causal
// CHECK: arith.cmpi ne, %[[CLS]], %c0_i8
// CHECK: scf.if %[[GUARD:[0-9]+]] {
// CHECK: %[[SLOT:.*]] = arith.remui %[[N]], %[[TWO:.*]] : index
// CHECK: %[[FILL:.*]] = arith.divui %[[N]], %[[TWO]] : index
// CHECK: attn.tile.acquire_kv stage(%[[SLOT]]) round(%[[FILL]])
// CHECK: attn.tile.copy_kv %arg1, %arg2[%[[B]], %{{.*}}] span(%[[KS]]) stage(%[[SLOT]]) of 2 async
// CHECK: }
// CHECK: %[[INC:.*]] = arith.addi %[[N]], %c1
// CHECK: %[[NEXT:.*]] = arith.select %[[GUARD]], %[[INC]], %[[N]] : index
// CHECK: scf.yield %[[NEXT]] : index
// The consumers: the work item's code, the loop counting its computed tiles.
// CHECK: } consumer {
// CHECK: attn.tile.load %arg0
// CHECK: scf.for %{{.*}} iter_args({{.*}}, %[[CN:.*]] = %c0{{.*}}) -> ({{.*}}, index) {
// CHECK: %[[CSLOT:.*]] = arith.remui %[[CN]], %{{.*}} : index
// CHECK: %[[CFILL:.*]] = arith.divui %[[CN]], %{{.*}} : index
// K's fill before the tile's code, V's before P V (Q K^T need not wait for
// V), the release after it.
// CHECK: scf.if %[[CGUARD:[0-9]+]] ->
// CHECK-NEXT: attn.tile.wait_kv stage(%[[CSLOT]]) round(%[[CFILL]]) {part = 0 : i64}
// CHECK: attn.tile.load %arg1{{.*}} stage(%[[CSLOT]])
// CHECK: attn.tile.load %arg2{{.*}} stage(%[[CSLOT]]) {part = 1 : i64}
// CHECK: attn.tile.qk
// CHECK: attn.tile.softmax
// CHECK-NEXT: attn.tile.wait_kv stage(%[[CSLOT]]) round(%[[CFILL]]) {part = 1 : i64}
// CHECK-NEXT: attn.tile.pv
// CHECK-NEXT: attn.tile.release_kv stage(%[[CSLOT]])
// CHECK-NEXT: scf.yield
// CHECK: arith.select %[[CGUARD]]
// CHECK: attn.tile.store
// CHECK: } {consumer_registers = 240 : i64, producer_registers = 24 : i64}
// The consumers copy nothing and wait for no copy group nor the whole block.
// CONS: } consumer {
// CONS-NOT: attn.tile.copy_kv
// CONS-NOT: attn.tile.barrier
// CONS-NOT: attn.tile.commit_kv
// CONS: {consumer_registers = 240 : i64, producer_registers = 24 : i64}
func.func @causal_kernel(%q: memref<?x?x?x64xbf16>, %k: memref<?x?x?x64xbf16>, %v: memref<?x?x?x64xbf16>, %o: memref<?x?x?x64xbf16>) {
  attn.attention @causal ins(%q, %k, %v : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>) outs(%o : memref<?x?x?x64xbf16>) {scale = 1.250000e-01 : f32}
  return
}

// Split-KV's one-loop form: the key loop sits in the else branch of the
// merge phase's test; the producer copies that branch (without results),
// the part's strided loop and its three slots.
// SPLIT-LABEL: func.func @causal_kernel
// SPLIT: attn.tile.warp_specialize producer {
// SPLIT: %[[PART:.*]] = arith.remui
// SPLIT: scf.if %[[MERGE:.*]] {
// SPLIT-NEXT: } else {
// SPLIT: %[[FIRST:.*]], %[[END:.*]] = attn.tile.kv_range
// SPLIT: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %[[PARTS:.*]] iter_args
// SPLIT: arith.remui %{{.*}}, %c3 : index
// SPLIT: attn.tile.acquire_kv
// SPLIT: attn.tile.copy_kv {{.*}} of 3 async
// SPLIT: } consumer {
// SPLIT: scf.if %[[MERGE]] -> (
// SPLIT: attn.tile.merge_partials
// SPLIT: } else {
// (each side computes the parts its item uses, the same min of the same
// operands: parts of equal work, docs/decode.md)
// SPLIT: arith.ceildivui %{{.*}}, %{{.*}} : i32
// SPLIT: %[[USED:.*]] = arith.minui %{{.*}}, %{{.*}} : index
// SPLIT: scf.for {{.*}} step %[[USED]] iter_args
// SPLIT: attn.tile.wait_kv stage
// SPLIT: attn.tile.release_kv
// SPLIT: attn.tile.store_partial

// Without the mask analysis no guard holds the tile's code: the producer
// copies every tile, the consumers wait for both parts before the loads and
// release the slot at the loop body's end, after P V (not after the op that
// holds the first load).
// NOGUARD: attn.tile.warp_specialize producer {
// NOGUARD: scf.for
// NOGUARD-NOT: scf.if
// NOGUARD: attn.tile.acquire_kv
// NOGUARD: attn.tile.copy_kv
// NOGUARD: } consumer {
// NOGUARD: attn.tile.wait_kv stage(%[[S:.*]]) round(%{{.*}}) {part = 0 : i64}
// NOGUARD-NEXT: attn.tile.wait_kv stage(%[[S]]) round(%{{.*}}) {part = 1 : i64}
// NOGUARD: attn.tile.pv
// NOGUARD: attn.tile.release_kv stage(%[[S]])
// NOGUARD-NEXT: scf.yield

// BAD: attn-warp-specialize: stages must be in [1, 4], not 0
