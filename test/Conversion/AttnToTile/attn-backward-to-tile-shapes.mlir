// RUN: heed-opt %s --attn-differentiate --attn-backward-to-tile="block-q=8 block-kv=4" | FileCheck %s

// --attn-backward-to-tile binds the run-time sizes a variant reads (here a
// bottom-right causal mask: Skv - Sq) above its KV-major loop, as
// --attn-to-tile does for the forward, so that the inlined regions find them.

attn.variant @end_aligned buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %skv = attn.shape <Skv> : i64
  %sq = attn.shape <Sq> : i64
  %d = arith.subi %skv, %sq : i64
  %qi = arith.index_cast %q : index to i64
  %end = arith.addi %qi, %d : i64
  %kvi = arith.index_cast %kv : index to i64
  %m = arith.cmpi sge, %end, %kvi : i64
  attn.yield %m : i1
}

// CHECK-LABEL: func.func @backward
// CHECK-SAME: %[[Q:[^:]*]]: memref<?x?x?x16xf32>, %[[K:[^:]*]]: memref<?x?x?x16xf32>
// CHECK-DAG: %[[SQ:.*]] = memref.dim %[[Q]], %c2
// CHECK-DAG: %[[SKV:.*]] = memref.dim %[[K]], %c2
// CHECK: attn.tile.bind_shapes {{.*}} Sq = %[[SQ]]{{.*}} Skv = %[[SKV]]
// CHECK: attn.tile.work
// CHECK: attn.tile.probs @end_aligned
func.func @backward(%q: memref<?x?x?x16xf32>, %k: memref<?x?x?x16xf32>, %v: memref<?x?x?x8xf32>,
                    %do: memref<?x?x?x8xf32>, %lse: memref<?x?x?xf32>, %delta: memref<?x?x?xf32>,
                    %dq: memref<?x?x?x16xf32>, %dk: memref<?x?x?x16xf32>,
                    %dv: memref<?x?x?x8xf32>, %stats: memref<3xi64>) {
  attn.attention_backward @end_aligned ins(%q, %k, %v, %do : memref<?x?x?x16xf32>, memref<?x?x?x16xf32>, memref<?x?x?x8xf32>, memref<?x?x?x8xf32>)
      lse(%lse, %delta : memref<?x?x?xf32>, memref<?x?x?xf32>)
      grads(%dq, %dk, %dv : memref<?x?x?x16xf32>, memref<?x?x?x16xf32>, memref<?x?x?x8xf32>)
      stats(%stats : memref<3xi64>) {scale = 0.25 : f32}
  return
}
