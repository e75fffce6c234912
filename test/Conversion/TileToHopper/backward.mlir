// RUN: heed-opt %s --attn-differentiate --attn-backward-to-tile="block-q=64 block-kv=64 kernel=dq" --attn-pipeline-kv --convert-attn-tile-to-hopper --canonicalize --cse | FileCheck %s --check-prefixes=BOTH,DQ
// RUN: heed-opt %s --attn-differentiate --attn-backward-to-tile="block-q=64 block-kv=64 kernel=dkdv" --attn-pipeline-kv --convert-attn-tile-to-hopper --canonicalize --cse | FileCheck %s --check-prefixes=BOTH,DKDV
// The backward's two kernels on Hopper's wgmma (docs/backward.md, "On Hopper
// (wgmma)"), bf16 at head dim 64 with ALiBi (a buffer gradient) and a
// causal mask: the same schedule as the mma.sync kernels
// (TileToNVGPU/backward.mlir), lowered by the Hopper target.

// One warpgroup; the item's two operand tiles (64 x 64 x 2 bytes each), two
// slots of 64 rows of the staged tensors (2 x 2 x 8192 bytes), 4 barriers
// (one per operand tile, one per slot) and the alignment slack. After the
// gradients' words and the finalize flag, four tensor maps: (argument, box
// rows) of the operand tiles' tensors (dQ: q, dout; dK/dV: k, v), then of the
// slots' (dQ: k, v; dK/dV: q, dout).
// BOTH: gpu.func @backward({{.*}}, %arg11: memref<?xi64>, %arg12: index, %[[M0:.*]]: !llvm.ptr, %[[M1:.*]]: !llvm.ptr, %[[M2:.*]]: !llvm.ptr, %[[M3:.*]]: !llvm.ptr) kernel
// BOTH-SAME: attn.launch = #attn.launch<block_rows = 64, threads = 128, shared_bytes = 50208>
// DQ-SAME: heed.tensor_maps = array<i64: 0, 64, 3, 64, 1, 64, 2, 64>
// DKDV-SAME: heed.tensor_maps = array<i64: 1, 64, 2, 64, 0, 64, 3, 64>
// BOTH-COUNT-4: nvvm.mbarrier.init {{.*}}, %c1_i32
// BOTH: nvvm.fence.proxy {kind = #nvvm.proxy_kind<async.shared>, space = #nvvm.shared_space<cta>}
// Each operand tile by TMA on its own barrier, waited for at parity 0.
// BOTH: nvvm.mbarrier.arrive.expect_tx %[[B0:.*]], %c8192_i32
// BOTH: nvvm.cp.async.bulk.tensor.shared.cluster.global {{.*}}, %[[M0]], %[[B0]]
// BOTH: nvvm.mbarrier.try_wait.parity %[[B0]], %c0_i32
// BOTH: nvvm.mbarrier.arrive.expect_tx %[[B1:.*]], %c8192_i32
// BOTH: nvvm.cp.async.bulk.tensor.shared.cluster.global {{.*}}, %[[M1]], %[[B1]]
// BOTH: nvvm.mbarrier.try_wait.parity %[[B1]], %c0_i32
// The dK/dV kernel's key loop runs once per query head of the GQA group:
// before each run (and its first copies) the slots' barriers are made anew
// between two block barriers. The dQ kernel's runs once: no restart.
// DQ-NOT: nvvm.mbarrier.inval
// DKDV: scf.for
// DKDV: gpu.barrier
// DKDV: nvvm.mbarrier.inval %[[S0:.*]] :
// DKDV-NEXT: nvvm.mbarrier.init %[[S0]], %c1_i32
// DKDV: nvvm.mbarrier.inval %[[S1:.*]] :
// DKDV-NEXT: nvvm.mbarrier.init %[[S1]], %c1_i32
// DKDV-NEXT: nvvm.fence.proxy {kind = #nvvm.proxy_kind<async.shared>, space = #nvvm.shared_space<cta>}
// DKDV: gpu.barrier
// The first staged tile: both tensors onto the slot's barrier.
// BOTH: nvvm.mbarrier.arrive.expect_tx %{{.*}}, %c16384_i32
// BOTH: nvvm.cp.async.bulk.tensor.shared.cluster.global {{.*}}, %[[M2]]
// BOTH: nvvm.cp.async.bulk.tensor.shared.cluster.global {{.*}}, %[[M3]]
// In the loop: S (S^T) as SS wgmma, 4 steps of 16 over the head dim, then
// the RS wgmma of dV += P^T dO (dK/dV) or dQ += dS K (dQ) in one asm
// statement.
// BOTH: scf.for
// BOTH: nvvm.mbarrier.try_wait.parity
// BOTH: nvvm.wgmma.fence.aligned
// BOTH-COUNT-4: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 64, k = 16>
// BOTH: nvvm.wgmma.commit.group.sync.aligned
// BOTH: nvvm.wgmma.wait.group.sync.aligned 0
// BOTH: llvm.inline_asm has_side_effects {{.*}}wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {{.*}}, p, 1, 1, 1;

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
