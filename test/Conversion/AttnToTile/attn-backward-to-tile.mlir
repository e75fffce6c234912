// RUN: heed-opt %s --attn-differentiate --attn-backward-to-tile="block-q=8 block-kv=4" | FileCheck %s
// RUN: heed-opt %s --attn-analyze-mask --attn-differentiate --attn-backward-to-tile="block-q=8 block-kv=4" | FileCheck %s --check-prefix=SKIP
// RUN: not heed-opt %s --attn-backward-to-tile 2>&1 | FileCheck %s --check-prefix=NODIFF

// --attn-backward-to-tile: the KV-major loop of FlashAttention-2's backward
// in tile ops, one work item per (batch, kv head, key tile).

attn.variant @alibi buffers(["slopes"] : [memref<?xf32>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %sl: memref<?xf32>):
  %slope = attn.load %sl[%h] : memref<?xf32> -> f32
  %qi = arith.index_cast %q : index to i64
  %ki = arith.index_cast %kv : index to i64
  %d = arith.subi %ki, %qi : i64
  %df = arith.sitofp %d : i64 to f32
  %bias = arith.mulf %slope, %df : f32
  %r = arith.addf %s, %bias : f32
  attn.yield %r : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %sl: memref<?xf32>):
  %m = arith.cmpi sge, %q, %kv : index
  attn.yield %m : i1
}

// CHECK-LABEL: func.func @backward
// CHECK: attn.tile.work %{{.*}}, %{{.*}}, %{{.*}} {
// CHECK: ^bb0(%[[B:.*]]: index, %[[HK:.*]]: index, %[[KT:.*]]: index):
// CHECK: %[[KEYS:.*]] = attn.tile.span %{{.*}}[%[[KT]]] {{.*}} side <kv> : <4>
// CHECK: %[[K:.*]] = attn.tile.load %{{.*}}[%[[B]], %[[HK]]] span(%[[KEYS]]) {{.*}} -> !attn.tile<4x16xf32, k>
// CHECK: %[[KV:.*]] = attn.tile.load %{{.*}}[%[[B]], %[[HK]]] span(%[[KEYS]]) {{.*}} -> !attn.tile<4x16xf32, v>
// CHECK: %[[VK:.*]] = attn.tile.load %{{.*}}[%[[B]], %[[HK]]] span(%[[KEYS]]) {{.*}} -> !attn.tile<4x8xf32, k>
// CHECK: %[[GRAD:.*]]:2 = scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} iter_args(
// CHECK: %[[H:.*]] = arith.addi
// CHECK: scf.for
// CHECK: %[[ROWS:.*]] = attn.tile.span %{{.*}} side <q> : <8>
// CHECK: attn.tile.load_rows
// CHECK: %[[S:.*]] = attn.tile.qk %{{.*}}, %[[K]] {scale = 2.500000e-01 : f32}
// CHECK: %[[P:.*]] = attn.tile.probs @alibi(%[[S]]) lse(%{{.*}}) [%[[B]], %[[H]]] rows(%[[ROWS]]) cols(%[[KEYS]]) buffers(
// CHECK-NOT: mask_if
// CHECK: attn.tile.grad_kv %[[P]], %{{.*}}, %{{.*}} : !attn.tile<8x4xf32, s>, !attn.tile<8x8xf32, k>, !attn.tile<4x8xf32, acc>
// CHECK: %[[DP:.*]] = attn.tile.qk %{{.*}}, %[[VK]] {scale = 1.000000e+00 : f32}
// CHECK: %[[DS:.*]] = attn.tile.grad_scores @alibi_grad(%[[S]], %[[P]], %[[DP]]) delta(%{{.*}}) [%[[B]], %[[H]]] rows(%[[ROWS]]) cols(%[[KEYS]]) buffers(%{{.*}}, %{{.*}} : memref<?xf32>, memref<?xf32>)
// CHECK: attn.tile.grad_kv %[[DS]], %{{.*}}, %{{.*}} : !attn.tile<8x4xf32, s>, !attn.tile<8x16xf32, k>, !attn.tile<4x16xf32, acc>
// CHECK: %[[DQ:.*]] = attn.tile.pv %[[DS]], %[[KV]]
// CHECK: attn.tile.write_rows %[[DQ]] to %{{.*}}[%[[B]], %[[H]]] span(%[[ROWS]]) accumulate {scale = 2.500000e-01 : f32}
// CHECK: attn.tile.write_rows %[[GRAD]]#0 to %{{.*}}[%[[B]], %[[HK]]] span(%[[KEYS]]) {scale = 2.500000e-01 : f32}
// CHECK: attn.tile.write_rows %[[GRAD]]#1 to %{{.*}}[%[[B]], %[[HK]]] span(%[[KEYS]])
// CHECK-NOT: attn.attention_backward

// With the mask analysis, EMPTY blocks are skipped (scf.if on the class)
// and FULL ones skip the mask (mask_if).
// SKIP-LABEL: func.func @backward
// SKIP: %[[CLS:.*]] = attn.tile.classify @alibi
// SKIP: %[[VISIT:.*]] = arith.cmpi ne, %[[CLS]], %{{.*}} : i8
// SKIP: %[[PARTIAL:.*]] = arith.cmpi eq, %[[CLS]], %{{.*}} : i8
// SKIP: scf.if %[[VISIT]]
// SKIP: attn.tile.count
// SKIP: attn.tile.probs @alibi({{.*}} mask_if(%[[PARTIAL]])

// NODIFF: error: 'attn.attention_backward' op needs the derivative variant @alibi_grad (run --attn-differentiate first)
func.func @backward(%q: memref<?x?x?x16xf32>, %k: memref<?x?x?x16xf32>, %v: memref<?x?x?x8xf32>,
                    %do: memref<?x?x?x8xf32>, %lse: memref<?x?x?xf32>, %delta: memref<?x?x?xf32>,
                    %slopes: memref<?xf32>, %dq: memref<?x?x?x16xf32>, %dk: memref<?x?x?x16xf32>,
                    %dv: memref<?x?x?x8xf32>, %dslopes: memref<?xf32>, %stats: memref<3xi64>) {
  attn.attention_backward @alibi ins(%q, %k, %v, %do : memref<?x?x?x16xf32>, memref<?x?x?x16xf32>, memref<?x?x?x8xf32>, memref<?x?x?x8xf32>)
      lse(%lse, %delta : memref<?x?x?xf32>, memref<?x?x?xf32>) buffers(%slopes : memref<?xf32>)
      grads(%dq, %dk, %dv : memref<?x?x?x16xf32>, memref<?x?x?x16xf32>, memref<?x?x?x8xf32>)
      buffer_grads(%dslopes : memref<?xf32>) stats(%stats : memref<3xi64>) {scale = 0.25 : f32}
  return
}
