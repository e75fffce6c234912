// RUN: heed-opt %s --attn-analyze-mask --split-input-file | FileCheck %s

// A bottom-right causal mask reads the run-time lengths: the blocks region
// reads them too (one value per launch, so exact there) and compares the
// box's corners shifted by Skv - Sq.
// CHECK-LABEL: attn.variant @causal_bottom_right
// CHECK-SAME: sparsity = #attn.sparsity<closed_form>
// CHECK: blocks {
// CHECK-DAG: attn.shape <Skv> : i64
// CHECK-DAG: attn.shape <Sq> : i64
// CHECK: arith.subi
// CHECK: attn.yield %{{.*}} : i8
attn.variant @causal_bottom_right buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %q64 = arith.index_cast %q : index to i64
  %kv64 = arith.index_cast %kv : index to i64
  %skv = attn.shape <Skv> : i64
  %sq = attn.shape <Sq> : i64
  %d = arith.subi %skv, %sq : i64
  %t = arith.addi %q64, %d : i64
  %0 = arith.cmpi sge, %t, %kv64 : i64
  attn.yield %0 : i1
}

// -----

// Per-batch document ids (rank 2): summarized too; the classifier reads the
// row b of the flattened summary.
// CHECK-LABEL: attn.variant @document_batched
// CHECK-SAME: sparsity = #attn.sparsity<data_dependent>
// CHECK: blocks {
// CHECK: memref<?x?xi32>, %[[SUM:.*]]: memref<?x?x2xi64>
// CHECK: arith.muli
// CHECK: memref.load %[[SUM]]
attn.variant @document_batched buffers(["doc"] : [memref<?x?xi32>]) shapes [["B", "Skv"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %doc: memref<?x?xi32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %doc: memref<?x?xi32>):
  %dq = attn.load %doc[%b, %q] : memref<?x?xi32> -> i64
  %dk = attn.load %doc[%b, %kv] : memref<?x?xi32> -> i64
  %0 = arith.cmpi eq, %dq, %dk : i64
  attn.yield %0 : i1
}
