// RUN: heed-opt %s --split-input-file --attn-differentiate --attn-backward-to-tile="block-q=8 block-kv=4" | FileCheck %s
// RUN: heed-opt %s --split-input-file --attn-differentiate --attn-backward-to-tile="kernel=dq block-q=8 block-kv=4" | FileCheck %s --check-prefix=DQ

// Ragged batches in --attn-backward-to-tile (docs/backward.md, "Ragged
// batches"): each work item (b, kv head, key tile) reads its entry's
// lengths from the packed offsets, views every row tensor from the entry's
// first row (memref.reinterpret_cast of the batch-stride-0 view the caller
// passes), binds the entry's Sq and Skv for the variant, and a key tile past
// the entry's keys walks no query tile (the dQ loop: a query tile past its
// queries no key tile).

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


// CHECK-LABEL: func.func @packed
// CHECK-SAME: (%[[Q:arg0]]: memref<?x?x?x16xf32
// CHECK-SAME: %[[K:arg1]]: memref<?x?x?x16xf32
// CHECK-SAME: %[[CUQ:arg4]]: memref<?xi32>, %[[CUKV:arg5]]: memref<?xi32>
// CHECK: attn.tile.work
// CHECK-NEXT: ^bb0(%[[B:[^:]*]]: index, %[[HK:[^:]*]]: index, %[[KT:[^:]*]]: index):
// CHECK: memref.load %[[CUKV]][%[[B]]]
// CHECK: %[[KEYS:.*]] = memref.reinterpret_cast %[[K]]
// CHECK: memref.load %[[CUQ]][%[[B]]]
// CHECK: %[[QUERIES:.*]] = memref.reinterpret_cast %[[Q]]
// CHECK: %[[KVTILES:.*]] = attn.num_tiles %[[SKV:.*]] of @end_aligned side <kv>
// CHECK: %[[PAST:.*]] = arith.cmpi uge, %[[KT]], %[[KVTILES]]
// CHECK: attn.tile.bind_shapes {{.*}} Sq = %[[SQ:.*]], Skv = %[[SKV]]
// CHECK: %[[QTILES:.*]] = attn.num_tiles %[[SQ]] of @end_aligned side <q>
// CHECK: %[[WALK:.*]] = arith.select %[[PAST]], %{{.*}}, %[[QTILES]]
// CHECK: attn.tile.load %[[KEYS]]
// CHECK: scf.for
// CHECK: scf.for %{{.*}} = %{{.*}} to %[[WALK]]
// CHECK: attn.tile.load %[[QUERIES]]
// DQ-LABEL: func.func @packed
// DQ: attn.tile.work
// DQ-NEXT: ^bb0(%[[B:[^:]*]]: index, %[[H:[^:]*]]: index, %[[QT:[^:]*]]: index):
// DQ: %[[QTILES:.*]] = attn.num_tiles %{{.*}} of @end_aligned side <q>
// DQ: %[[PAST:.*]] = arith.cmpi uge, %[[QT]], %[[QTILES]]
// DQ: %[[KTILES:.*]] = attn.num_tiles %{{.*}} of @end_aligned side <kv>
// DQ: %[[WALK:.*]] = arith.select %[[PAST]], %{{.*}}, %[[KTILES]]
// DQ: scf.for %{{.*}} = %{{.*}} to %[[WALK]]
func.func @packed(%q: memref<?x?x?x16xf32, strided<[?, ?, ?, 1], offset: ?>>, %k: memref<?x?x?x16xf32, strided<[?, ?, ?, 1], offset: ?>>, %v: memref<?x?x?x8xf32, strided<[?, ?, ?, 1], offset: ?>>,
                    %do: memref<?x?x?x8xf32, strided<[?, ?, ?, 1], offset: ?>>, %cuq: memref<?xi32>, %cukv: memref<?xi32>,
                    %lse: memref<?x?x?xf32, strided<[?, ?, 1], offset: ?>>, %delta: memref<?x?x?xf32, strided<[?, ?, 1], offset: ?>>,
                    %dq: memref<?x?x?x16xf32, strided<[?, ?, ?, 1], offset: ?>>, %dk: memref<?x?x?x16xf32, strided<[?, ?, ?, 1], offset: ?>>,
                    %dv: memref<?x?x?x8xf32, strided<[?, ?, ?, 1], offset: ?>>, %stats: memref<3xi64>) {
  attn.attention_backward @end_aligned ins(%q, %k, %v, %do : memref<?x?x?x16xf32, strided<[?, ?, ?, 1], offset: ?>>, memref<?x?x?x16xf32, strided<[?, ?, ?, 1], offset: ?>>, memref<?x?x?x8xf32, strided<[?, ?, ?, 1], offset: ?>>, memref<?x?x?x8xf32, strided<[?, ?, ?, 1], offset: ?>>)
      cu_seqlens_q(%cuq : memref<?xi32>) cu_seqlens_kv(%cukv : memref<?xi32>)
      lse(%lse, %delta : memref<?x?x?xf32, strided<[?, ?, 1], offset: ?>>, memref<?x?x?xf32, strided<[?, ?, 1], offset: ?>>)
      grads(%dq, %dk, %dv : memref<?x?x?x16xf32, strided<[?, ?, ?, 1], offset: ?>>, memref<?x?x?x16xf32, strided<[?, ?, ?, 1], offset: ?>>, memref<?x?x?x8xf32, strided<[?, ?, ?, 1], offset: ?>>)
      stats(%stats : memref<3xi64>) {scale = 0.25 : f32}
  return
}

// -----

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


// Per-entry lengths on padded tensors: no views, the lengths clamped to the
// tensors' (memref.dim) capacities.
// CHECK-LABEL: func.func @lengths
// CHECK-SAME: %[[KVL:arg4]]: memref<?xi32>, %[[QL:arg5]]: memref<?xi32>
// CHECK: ^bb0(%[[B:[^:]*]]: index,
// CHECK: memref.load %[[KVL]][%[[B]]]
// CHECK: memref.load %[[QL]][%[[B]]]
// CHECK-NOT: memref.reinterpret_cast
// CHECK: attn.tile.bind_shapes
func.func @lengths(%q: memref<?x?x?x16xf32>, %k: memref<?x?x?x16xf32>, %v: memref<?x?x?x8xf32>,
                   %do: memref<?x?x?x8xf32>, %kvl: memref<?xi32>, %ql: memref<?xi32>,
                   %lse: memref<?x?x?xf32>, %delta: memref<?x?x?xf32>,
                   %dq: memref<?x?x?x16xf32>, %dk: memref<?x?x?x16xf32>,
                   %dv: memref<?x?x?x8xf32>) {
  attn.attention_backward @end_aligned ins(%q, %k, %v, %do : memref<?x?x?x16xf32>, memref<?x?x?x16xf32>, memref<?x?x?x8xf32>, memref<?x?x?x8xf32>)
      kv_lens(%kvl : memref<?xi32>) q_lens(%ql : memref<?xi32>)
      lse(%lse, %delta : memref<?x?x?xf32>, memref<?x?x?xf32>)
      grads(%dq, %dk, %dv : memref<?x?x?x16xf32>, memref<?x?x?x16xf32>, memref<?x?x?x8xf32>)
      {scale = 0.25 : f32}
  return
}
