// RUN: heed-opt %s --attn-differentiate --attn-backward-to-tile="block-q=64 block-kv=64 kernel=dkdv" --attn-pipeline-kv --attn-overlap-backward | FileCheck %s --check-prefix=DKDV
// RUN: heed-opt %s --attn-differentiate --attn-backward-to-tile="block-q=64 block-kv=64 kernel=dq" --attn-pipeline-kv --attn-overlap-backward | FileCheck %s --check-prefix=DQ
// RUN: heed-opt %s --attn-differentiate --attn-backward-to-tile="block-q=64 block-kv=64 kernel=dq" --attn-pipeline-kv --attn-overlap-backward --attn-overlap-backward | FileCheck %s --check-prefix=TWICE
// --attn-overlap-backward: in each tile of the backward's staged loop the dP
// product (dP^T = V dO^T in the dK/dV kernel, dP = dO V^T in the dQ kernel)
// moves right after S's; both are async; S is waited for with dP in flight
// (pending 1), before P; dP (pending 0) before its first use, grad_scores.

// DKDV: scf.for
// DKDV: scf.for
// DKDV: %[[S:.*]] = attn.tile.qk %{{.*}}, %{{.*}} {async, scale = 2.500000e-01 : f32}
// DKDV-NEXT: %[[DP:.*]] = attn.tile.qk %{{.*}}, %{{.*}} {async, scale = 1.000000e+00 : f32}
// DKDV-NEXT: %[[S2:.*]] = attn.tile.mma_wait %[[S]] {pending = 1 : i64}
// DKDV-NEXT: %[[P:.*]] = attn.tile.probs @alibi(%[[S2]])
// DKDV-NEXT: attn.tile.pv %[[P]]
// DKDV-NEXT: %[[DP2:.*]] = attn.tile.mma_wait %[[DP]] {pending = 0 : i64}
// DKDV-NEXT: attn.tile.grad_scores @alibi_grad(%[[S2]], %[[P]], %[[DP2]])

// DQ: %[[S:.*]] = attn.tile.qk %{{.*}}, %{{.*}} {async, scale = 2.500000e-01 : f32}
// DQ-NEXT: %[[DP:.*]] = attn.tile.qk %{{.*}}, %{{.*}} {async, scale = 1.000000e+00 : f32}
// DQ-NEXT: %[[S2:.*]] = attn.tile.mma_wait %[[S]] {pending = 1 : i64}
// DQ-NEXT: %[[P:.*]] = attn.tile.probs @alibi(%[[S2]])
// DQ-NEXT: %[[DP2:.*]] = attn.tile.mma_wait %[[DP]] {pending = 0 : i64}
// DQ-NEXT: attn.tile.grad_scores @alibi_grad(%[[S2]], %[[P]], %[[DP2]])

// Run twice, the pass changes nothing more (its products are async already).
// TWICE-COUNT-2: attn.tile.mma_wait
// TWICE-NOT: attn.tile.mma_wait

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

func.func @backward(%q: memref<?x?x?x64xbf16>, %k: memref<?x?x?x64xbf16>, %v: memref<?x?x?x64xbf16>,
                    %do: memref<?x?x?x64xbf16>, %lse: memref<?x?x?xf32>, %delta: memref<?x?x?xf32>,
                    %slopes: memref<?xf32>, %dq: memref<?x?x?x64xbf16>, %dk: memref<?x?x?x64xbf16>,
                    %dv: memref<?x?x?x64xbf16>, %dslopes: memref<?xf32>) {
  attn.attention_backward @alibi ins(%q, %k, %v, %do : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>)
      lse(%lse, %delta : memref<?x?x?xf32>, memref<?x?x?xf32>) buffers(%slopes : memref<?xf32>)
      grads(%dq, %dk, %dv : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>)
      buffer_grads(%dslopes : memref<?xf32>) {scale = 0.25 : f32}
  return
}
