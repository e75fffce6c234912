// RUN: heed-opt %s --attn-choose-tiling="block-q=128 block-kv=64 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-warp-specialize="producer-registers=24 consumer-registers=240" --attn-specialize-full-tiles --convert-attn-tile-to-hopper --canonicalize --cse | FileCheck %s
// RUN: not heed-opt %s --attn-choose-tiling="block-q=128 block-kv=64 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-warp-specialize="producer-registers=40 consumer-registers=240" --convert-attn-tile-to-hopper 2>&1 | FileCheck %s --check-prefix=BUDGET
// RUN: not heed-opt %s --attn-choose-tiling="block-q=128 block-kv=64 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-warp-specialize --convert-attn-tile-to-nvgpu 2>&1 | FileCheck %s --check-prefix=MMA
// RUN: not heed-opt %s --attn-choose-tiling="block-q=128 block-kv=64 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-warp-specialize="stages=1 pingpong=true" --convert-attn-tile-to-hopper 2>&1 | FileCheck %s --check-prefix=ONESLOT
// RUN: heed-opt %s --attn-choose-tiling="block-q=128 block-kv=64 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-warp-specialize="producer-registers=24 consumer-registers=240 pingpong=true" --attn-overlap-softmax --convert-attn-tile-to-hopper --canonicalize --cse | FileCheck %s --check-prefix=OVERLAP
// --convert-attn-tile-to-hopper on a warp-specialized work item (causal bf16,
// D = 64, 128 query rows: two consumer warpgroups and a producer).

// 384 threads, one block per multiprocessor (ptxas then knows the registers
// at entry, 65536 / 384 = 168, and applies setmaxnreg). Shared memory: Q,
// the slots' K and V, and 9 mbarriers (the producer's own one of them,
// for a ragged entry's last V tile, not initialized at entry).
// CHECK: gpu.func @causal_kernel({{.*}}) kernel attributes {attn.launch = #attn.launch<block_rows = 128, threads = 384, shared_bytes = 50248>, {{.*}}nvvm.maxntid = array<i32: 384, 1, 1>, nvvm.minctasm = 1 : i32}
// The two consumer warpgroups' Q barriers and the two slots' K and V fill
// barriers take one arrival (the thread that posts the TMA bytes); the two
// release barriers every consumer thread's.
// CHECK: %[[TID:.*]] = gpu.thread_id x
// CHECK: scf.if
// CHECK-COUNT-6: nvvm.mbarrier.init {{.*}}, %c1_i32
// CHECK-COUNT-2: nvvm.mbarrier.init {{.*}}, %c256_i32
// CHECK-NOT: nvvm.mbarrier.init
// CHECK: nvvm.fence.proxy
// CHECK: gpu.barrier
// The consumers (threads 0-255) raise their registers, load Q (thread 0
// posts it), and per computed tile wait for its slot's K fill (parity: the
// fill's round mod 2), compute S, wait for the V fill, accumulate P V, and
// arrive on the slot's release barrier.
// CHECK: %[[CONSUMER:.*]] = arith.cmpi ult, %[[TID]], %c256 : index
// CHECK-NEXT: scf.if %[[CONSUMER]] {
// CHECK-NEXT: nvvm.setmaxregister increase 240
// CHECK: nvvm.cp.async.bulk.tensor.shared.cluster.global
// CHECK: nvvm.mbarrier.try_wait.parity %{{.*}}, %c0_i32
// CHECK: scf.for
// CHECK: %[[ROUND:.*]] = arith.divui %{{.*}}, %c2 : index
// CHECK: %[[ODD:.*]] = arith.andi %[[ROUND]], %c1 : index
// CHECK: %[[PARITY:.*]] = arith.index_cast %[[ODD]] : index to i32
// CHECK: nvvm.mbarrier.try_wait.parity %[[KFULL:.*]], %[[PARITY]]
// CHECK: nvvm.wgmma.mma_async
// CHECK: nvvm.mbarrier.try_wait.parity %[[VFULL:.*]], %[[PARITY]]
// CHECK: llvm.inline_asm
// CHECK: nvvm.wgmma.wait.group.sync.aligned 0
// CHECK: nvvm.mbarrier.arrive %{{.*}} : !llvm.ptr<3>
// The producer lowers its registers; its thread 256 alone walks the tiles:
// it waits until the slot is released (parity of the previous round: (round
// mod 2) xor 1, which a fresh barrier passes), then posts K's bytes on its
// fill barrier and issues its TMA box, and V's likewise on its own.
// CHECK: nvvm.setmaxregister decrease 24
// CHECK-NEXT: %[[ONE:.*]] = arith.cmpi eq, %[[TID]], %c256 : index
// CHECK-NEXT: scf.if %[[ONE]] {
// CHECK: scf.for {{.*}} -> (index)
// CHECK: %[[PROUND:.*]] = arith.divui %{{.*}}, %c2 : index
// CHECK: %[[PODD:.*]] = arith.andi %[[PROUND]], %c1 : index
// CHECK: %[[PPAR:.*]] = arith.index_cast %[[PODD]] : index to i32
// CHECK: %[[FREE:.*]] = arith.xori %[[PPAR]], %c1_i32 : i32
// CHECK: nvvm.mbarrier.try_wait.parity %{{.*}}, %[[FREE]]
// CHECK: nvvm.mbarrier.arrive.expect_tx %[[KBAR:.*]], %c8192_i32
// CHECK: nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.*}}, %arg5, %[[KBAR]]
// CHECK: nvvm.mbarrier.arrive.expect_tx %[[VBAR:.*]], %c8192_i32
// CHECK: nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.*}}, %arg6, %[[VBAR]]
// CHECK-NOT: gpu.barrier
// CHECK-NOT: attn.tile

// A producer at 40 and two consumer warpgroups at 240 registers do not fit
// the block's 65536.
// BUDGET: error: 'attn.tile.warp_specialize' op --convert-attn-tile-to-hopper: a producer at 40 and 2 consumer warpgroups at 240 registers per thread do not fit the 168 per thread a block of 384 threads has at launch
// Ping-pong over one slot would deadlock: refused.
// ONESLOT: error: 'attn.tile.warp_specialize' op --convert-attn-tile-to-hopper: ping-pong needs two staging slots or more
// The mma.sync kernel has no producer warpgroup.
// MMA: error: 'attn.tile.warp_specialize' op is warp-specialized code (--attn-warp-specialize): only the wgmma kernel (Hopper) runs it

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

// With the softmax overlap, the key loop carries the previous tile's P as
// its 16-bit fragments (8 of 64 keys, half the registers of f32 P),
// converted once the previous P V is done (its wgmma.wait_group 0), so
// that the new P never takes registers that product still reads.
// OVERLAP: scf.for {{.*}} -> ({{.*}}index, vector<2x2xbf16>, vector<2x2xbf16>, vector<2x2xbf16>, vector<2x2xbf16>, vector<2x2xbf16>, vector<2x2xbf16>, vector<2x2xbf16>, vector<2x2xbf16>, f32, f32, index
// OVERLAP: wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16
// OVERLAP: nvvm.wgmma.wait.group.sync.aligned 1
// OVERLAP: nvvm.wgmma.wait.group.sync.aligned 0
// OVERLAP-NOT: wgmma
// OVERLAP: arith.truncf %{{.*}} : vector<2x2xf32> to vector<2x2xbf16>
