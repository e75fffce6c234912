// RUN: heed-opt %s --attn-differentiate --attn-backward-to-tile="block-q=16 block-kv=32 kernel=dq" --attn-pipeline-kv="stages=2" | FileCheck %s --check-prefix=DQ
// RUN: heed-opt %s --attn-differentiate --attn-backward-to-tile="block-q=16 block-kv=32 kernel=dkdv" --attn-pipeline-kv="stages=2" | FileCheck %s --check-prefix=DKDV
// RUN: heed-opt %s --attn-analyze-mask --attn-differentiate --attn-backward-to-tile="block-q=16 block-kv=32 kernel=dkdv" | FileCheck %s --check-prefix=SKIP
// RUN: heed-opt %s --attn-analyze-mask --attn-differentiate --attn-backward-to-tile="block-q=16 block-kv=32 kernel=dq" | FileCheck %s --check-prefix=SKIP
// RUN: not heed-opt %s --attn-differentiate --attn-backward-to-tile="kernel=dx" 2>&1 | FileCheck %s --check-prefix=NAME

// The GPUs' backward as two kernels (docs/backward.md, "GPU kernels").

// dQ: an item per (batch, query head, query tile); Q and dO are the item's
// operand rows (q tiles); the key loop stages K (part 0) and V (part 1),
// read as k tiles for S = Q K^T and dP = dO V^T and K as v tiles for
// dQ += dS K; dS adds the slopes' gradient here (the lighter kernel: its
// registers hold dQ only); dQ is written once.
// DQ-LABEL: func.func @backward
// DQ: ^bb0(%[[B:.*]]: index, %[[H:.*]]: index, %[[QT:.*]]: index):
// DQ: %[[ROWS:.*]] = attn.tile.span %{{.*}}[%[[QT]]] {{.*}} side <q> : <16>
// DQ: %[[HK:.*]] = arith.divui %[[H]], %{{.*}} : index
// DQ: %[[Q:.*]] = attn.tile.load %arg0[%[[B]], %[[H]]] span(%[[ROWS]]) {{.*}} -> !attn.tile<16x16xf32, q>
// DQ: %[[DO:.*]] = attn.tile.load %arg3[%[[B]], %[[H]]] span(%[[ROWS]]) {{.*}} -> !attn.tile<16x8xf32, q>
// DQ: %[[LSE:.*]] = attn.tile.load_rows %arg4[%[[B]], %[[H]]] span(%[[ROWS]]) {{.*}} -> !attn.tile<16xf32, row>
// DQ: %[[DELTA:.*]] = attn.tile.load_rows %arg5
// DQ: attn.tile.copy_kv %arg1, %arg2[%[[B]], %[[HK]]]
// DQ: %[[DQ:.*]] = scf.for {{.*}} -> (!attn.tile<16x16xf32, acc>)
// DQ: attn.tile.wait_kv
// DQ: %[[K:.*]] = attn.tile.load %arg1[%[[B]], %[[HK]]] span(%{{.*}}) stage(%{{.*}}) : {{.*}} -> !attn.tile<32x16xf32, k>
// DQ: %[[VK:.*]] = attn.tile.load %arg2[%[[B]], %[[HK]]] span(%{{.*}}) stage(%{{.*}}) {part = 1 : i64} : {{.*}} -> !attn.tile<32x8xf32, k>
// DQ: %[[KV:.*]] = attn.tile.load %arg1[%[[B]], %[[HK]]] span(%{{.*}}) stage(%{{.*}}) : {{.*}} -> !attn.tile<32x16xf32, v>
// DQ: %[[S:.*]] = attn.tile.qk %[[Q]], %[[K]] {scale = 2.500000e-01 : f32}
// DQ: %[[P:.*]] = attn.tile.probs @alibi(%[[S]]) lse(%[[LSE]])
// DQ: %[[DP:.*]] = attn.tile.qk %[[DO]], %[[VK]] {scale = 1.000000e+00 : f32}
// DQ: %[[DS:.*]] = attn.tile.grad_scores @alibi_grad(%[[S]], %[[P]], %[[DP]]) delta(%[[DELTA]]) {{.*}} buffers(%arg6, %arg10 : memref<?xf32>, memref<?xf32>) :
// DQ-NOT: no_buffer_grads
// DQ: attn.tile.pv %[[DS]], %[[KV]], %{{.*}} rows(%[[ROWS]] : !attn.span<16>)
// DQ: attn.tile.write_rows %[[DQ]] to %arg7[%[[B]], %[[H]]] span(%[[ROWS]]) {scale = 2.500000e-01 : f32}
// DQ-NOT: accumulate

// dK/dV: an item per (batch, kv head, key tile); K and V are the item's
// operand rows; for each query head of the group the query loop stages Q
// (part 0) and dO (part 1); the tiles are key-major: S^T = K Q^T, probs and
// grad_scores `transposed` with lse and delta as col tiles, dV += P^T dO
// and dK += dS^T Q as attn.tile.pv; this kernel adds no buffer gradient.
// DKDV-LABEL: func.func @backward
// DKDV: ^bb0(%[[B:.*]]: index, %[[HK:.*]]: index, %[[KT:.*]]: index):
// DKDV: %[[KEYS:.*]] = attn.tile.span %{{.*}}[%[[KT]]] {{.*}} side <kv> : <32>
// DKDV: %[[KR:.*]] = attn.tile.load %arg1[%[[B]], %[[HK]]] span(%[[KEYS]]) {{.*}} -> !attn.tile<32x16xf32, q>
// DKDV: %[[VR:.*]] = attn.tile.load %arg2[%[[B]], %[[HK]]] span(%[[KEYS]]) {{.*}} -> !attn.tile<32x8xf32, q>
// DKDV: %[[GRADS:.*]]:2 = scf.for
// DKDV: attn.tile.copy_kv %arg0, %arg3[%[[B]], %[[H:.*]]] span
// DKDV: scf.for
// DKDV: %[[ROWS:.*]] = attn.tile.span %{{.*}} side <q> : <16>
// DKDV: attn.tile.wait_kv
// DKDV: %[[QK:.*]] = attn.tile.load %arg0[%[[B]], %[[H]]] span(%[[ROWS]]) stage(%{{.*}}) : {{.*}} -> !attn.tile<16x16xf32, k>
// DKDV: %[[DOK:.*]] = attn.tile.load %arg3[%[[B]], %[[H]]] span(%[[ROWS]]) stage(%{{.*}}) {part = 1 : i64} : {{.*}} -> !attn.tile<16x8xf32, k>
// DKDV: %[[QV:.*]] = attn.tile.load %arg0[%[[B]], %[[H]]] span(%[[ROWS]]) stage(%{{.*}}) : {{.*}} -> !attn.tile<16x16xf32, v>
// DKDV: %[[DOV:.*]] = attn.tile.load %arg3[%[[B]], %[[H]]] span(%[[ROWS]]) stage(%{{.*}}) {part = 1 : i64} : {{.*}} -> !attn.tile<16x8xf32, v>
// DKDV: %[[LSE:.*]] = attn.tile.load_rows %arg4[%[[B]], %[[H]]] span(%[[ROWS]]) {{.*}} -> !attn.tile<16xf32, col>
// DKDV: %[[DELTA:.*]] = attn.tile.load_rows %arg5[%[[B]], %[[H]]] span(%[[ROWS]]) {{.*}} -> !attn.tile<16xf32, col>
// DKDV: %[[ST:.*]] = attn.tile.qk %[[KR]], %[[QK]] {scale = 2.500000e-01 : f32} : {{.*}} -> !attn.tile<32x16xf32, s>
// DKDV: %[[PT:.*]] = attn.tile.probs @alibi(%[[ST]]) lse(%[[LSE]]) [%[[B]], %[[H]]] rows(%[[ROWS]]) cols(%[[KEYS]]) {{.*}} transposed
// DKDV: attn.tile.pv %[[PT]], %[[DOV]], %{{.*}} : {{.*}}, !attn.tile<32x8xf32, acc>
// DKDV: %[[DPT:.*]] = attn.tile.qk %[[VR]], %[[DOK]] {scale = 1.000000e+00 : f32}
// DKDV: %[[DST:.*]] = attn.tile.grad_scores @alibi_grad(%[[ST]], %[[PT]], %[[DPT]]) delta(%[[DELTA]]) {{.*}} buffers(%arg6, %arg10 : memref<?xf32>, memref<?xf32>) transposed no_buffer_grads :
// DKDV: attn.tile.pv %[[DST]], %[[QV]], %{{.*}} : {{.*}}, !attn.tile<32x16xf32, acc>
// DKDV: attn.tile.write_rows %[[GRADS]]#0 to %arg8[%[[B]], %[[HK]]] span(%[[KEYS]]) {scale = 2.500000e-01 : f32}
// DKDV: attn.tile.write_rows %[[GRADS]]#1 to %arg9[%[[B]], %[[HK]]] span(%[[KEYS]])

// With the mask analysis, EMPTY (query tile, key tile) blocks are skipped
// and FULL ones skip the mask, as in the CPU's loop, in both kernels.
// SKIP-LABEL: func.func @backward
// SKIP: %[[CLS:.*]] = attn.tile.classify @alibi
// SKIP: %[[VISIT:.*]] = arith.cmpi ne, %[[CLS]], %{{.*}} : i8
// SKIP: %[[PARTIAL:.*]] = arith.cmpi eq, %[[CLS]], %{{.*}} : i8
// SKIP: scf.if %[[VISIT]]
// SKIP: attn.tile.probs @alibi({{.*}} mask_if(%[[PARTIAL]])

// NAME: error: attn-backward-to-tile: kernel must be fused, dq or dkdv, not 'dx'
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
