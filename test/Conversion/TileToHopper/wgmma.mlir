// RUN: heed-opt %s --attn-choose-tiling="block-q=64 block-kv=0 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-pipeline-kv --attn-specialize-full-tiles --convert-attn-tile-to-hopper --canonicalize --cse --split-input-file --verify-diagnostics | FileCheck %s
// --convert-attn-tile-to-hopper on .mlir input (through the NVIDIA schedule:
// choose-tiling, attn-to-tile, skip-tiles, pipeline-kv, specialize-full-tiles):
// the wgmma kernel (sm_90a) of a causal bf16 attention at head dim 64.

// CHECK-LABEL: gpu.module @heed_gpu
// One warpgroup of 64 rows; Q (64 x 64 x 2 bytes) and two slots of 64-key K
// and V tiles (4 x 8192 bytes), 3 barriers and 1024 bytes of alignment slack
// in dynamic shared memory; the tensor maps of Q, K, V appended as
// parameters (described argument, box rows).
// CHECK: gpu.func @heed_kernel({{.*}}, %[[QMAP:.*]]: !llvm.ptr, %[[KMAP:.*]]: !llvm.ptr, %[[VMAP:.*]]: !llvm.ptr) kernel attributes {attn.launch = #attn.launch<block_rows = 64, threads = 128, shared_bytes = 42008>, heed.tensor_maps = array<i64: 0, 64, 1, 64, 2, 64>}
// The barriers, initialized by thread 0 before anything else, then fenced
// for the async proxy.
// CHECK: scf.if
// CHECK-COUNT-3: nvvm.mbarrier.init {{.*}}, %c1_i32
// CHECK: nvvm.fence.proxy {kind = #nvvm.proxy_kind<async.shared>, space = #nvvm.shared_space<cta>}
// CHECK: gpu.barrier
// Q by one TMA box (64 columns), on barrier 0, waited for once (parity 0).
// CHECK: nvvm.mbarrier.arrive.expect_tx %[[QBAR:.*]], %c8192_i32
// CHECK: llvm.addrspacecast {{.*}} : !llvm.ptr<3> to !llvm.ptr<7>
// CHECK: nvvm.cp.async.bulk.tensor.shared.cluster.global {{.*}}, %[[QMAP]], %[[QBAR]], box[
// CHECK-NOT: nvvm.cp.async.bulk.tensor
// CHECK: nvvm.mbarrier.try_wait.parity %[[QBAR]], %c0_i32
// The first tile's K and V: one barrier, both byte counts, outside any
// EMPTY guard (only the loop bound and the leader thread guard them).
// CHECK: nvvm.mbarrier.arrive.expect_tx %[[KVBAR:.*]], %c16384_i32
// CHECK: nvvm.cp.async.bulk.tensor.shared.cluster.global {{.*}}, %[[KMAP]], %[[KVBAR]]
// CHECK: nvvm.cp.async.bulk.tensor.shared.cluster.global {{.*}}, %[[VMAP]], %[[KVBAR]]
// The loop: tile t's slot barrier (t mod 2) at parity ((t - first) / 2)
// mod 2 (causal: the first tile is 0), the block barrier, then the next
// tile's copies.
// CHECK: scf.for %[[T:.*]] = %c0 to
// CHECK-DAG: arith.remui %[[T]], %c2
// CHECK-DAG: arith.divui %[[T]], %c2
// CHECK: nvvm.mbarrier.try_wait.parity
// CHECK-NEXT: gpu.barrier
// CHECK: nvvm.mbarrier.arrive.expect_tx
// CHECK-COUNT-2: nvvm.cp.async.bulk.tensor.shared.cluster.global
// S = Q K^T: SS wgmma, 4 x k16 over the head dim, the first not reading D;
// one commit, one wait, then the accumulators pinned after the wait.
// CHECK: nvvm.wgmma.fence.aligned
// CHECK-NEXT: nvvm.wgmma.mma_async {{.*}}, <m = 64, n = 64, k = 16>, D[<f32>, <zero>], A[<bf16>, <one>, <row>], B[<bf16>, <one>, <col>]
// CHECK-COUNT-3: nvvm.wgmma.mma_async {{.*}}, <m = 64, n = 64, k = 16>, D[<f32>, <one>], A[<bf16>, <one>, <row>], B[<bf16>, <one>, <col>]
// CHECK-NEXT: nvvm.wgmma.commit.group.sync.aligned
// CHECK-NEXT: nvvm.wgmma.wait.group.sync.aligned 0
// CHECK: llvm.inline_asm has_side_effects asm_dialect = att "", "=f,
// O += P V: RS wgmma, the fence and 4 x k16 (64 keys) in one statement,
// V transposed (imm-trans-b 1).
// CHECK: llvm.inline_asm has_side_effects asm_dialect = att "{\0A.reg .pred p;\0Asetp.ne.b32 p, $52, 0;\0Awgmma.fence.sync.aligned;\0Awgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {$0, {{.*}}, $31}, {$32, $33, $34, $35}, $48, p, 1, 1, 1;\0Awgmma.mma_async{{.*}}$51, p, 1, 1, 1;\0A}"
// CHECK-NEXT: nvvm.wgmma.commit.group.sync.aligned
// CHECK-NEXT: nvvm.wgmma.wait.group.sync.aligned 0
// CHECK: llvm.inline_asm has_side_effects asm_dialect = att "", "=f,
// CHECK-NOT: attn.tile
attn.variant @causal buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %m = arith.cmpi uge, %q, %kv : index
  attn.yield %m : i1
}
func.func @heed_kernel(%q: memref<?x?x?x64xbf16>, %k: memref<?x?x?x64xbf16>, %v: memref<?x?x?x64xbf16>, %o: memref<?x?x?x64xbf16>, %lse: memref<?x?x?xf32>) {
  attn.attention @causal ins(%q, %k, %v : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>) outs(%o : memref<?x?x?x64xbf16>) lse(%lse : memref<?x?x?xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

attn.variant @full buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}
// wgmma takes 16-bit inputs here.
// expected-error @+1 {{'gpu.func' op --convert-attn-tile-to-hopper: wgmma takes f16 or bf16; use the SIMT kernel}}
func.func @f32_kernel(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  attn.attention @full ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

attn.variant @full buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}
// TMA boxes are 64 columns (128 bytes): head dims come in multiples of 64.
// expected-error @+1 {{'gpu.func' op --convert-attn-tile-to-hopper: the wgmma kernel needs head dims that are multiples of 64, at most 256; use the SIMT kernel}}
func.func @d32_kernel(%q: memref<?x?x?x32xf16>, %o: memref<?x?x?x32xf16>) {
  attn.attention @full ins(%q, %q, %q : memref<?x?x?x32xf16>, memref<?x?x?x32xf16>, memref<?x?x?x32xf16>) outs(%o : memref<?x?x?x32xf16>) {scale = 1.250000e-01 : f32}
  return
}
