// RUN: heed-opt %s --attn-choose-tiling="block-q=64 block-kv=0 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-pipeline-kv --attn-specialize-full-tiles --convert-attn-tile-to-nvgpu --split-input-file --verify-diagnostics | FileCheck %s
// RUN: heed-opt %s --attn-choose-tiling="block-q=32 block-kv=32 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-pipeline-kv --convert-attn-tile-to-nvgpu --split-input-file --verify-diagnostics | FileCheck %s --check-prefix=SMALL
// RUN: not heed-opt %s --attn-choose-tiling="block-q=64 block-kv=48 patches=false" --attn-to-tile --convert-attn-tile-to-nvgpu --split-input-file 2>&1 | FileCheck %s --check-prefix=UNSTAGED
// --convert-attn-tile-to-nvgpu on .mlir input (through the NVIDIA schedule:
// choose-tiling, attn-to-tile, skip-tiles, pipeline-kv, specialize-full-tiles):
// the tensor-core (mma.sync) kernel of a causal bf16 attention at head dim 64.

// CHECK-LABEL: gpu.module @heed_gpu
// The launch shape: 4 warps of 16 rows, two slots of 64-key K/V tiles in
// dynamic shared memory ((2 * 64 rows) x (64 + 8) x 2 bytes, twice).
// CHECK: gpu.func @heed_kernel({{.*}}) kernel attributes {attn.launch = #attn.launch<block_rows = 64, threads = 128, shared_bytes = 36864>}
// CHECK: gpu.dynamic_shared_memory
// Q fragments from shared memory, once.
// CHECK: nvgpu.ldmatrix {{.*}} {numTiles = 4 : i32, transpose = false}
// The KV range by binary search on the classifier; the first tile's copies.
// CHECK: scf.while
// CHECK: scf.while
// CHECK: gpu.barrier
// CHECK: nvgpu.device_async_copy
// CHECK: nvgpu.device_async_create_group
// The tile loop: wait, barrier, the next tile's copies, S = Q K^T and
// O += P V on bf16 mma.sync, row statistics over the quad.
// CHECK: scf.for
// CHECK: nvvm.cp.async.wait.group 0
// CHECK: gpu.barrier
// CHECK: nvgpu.device_async_copy
// CHECK: nvvm.mma.sync {{.*}}multiplicandAPtxType = #nvvm.mma_type<bf16>
// CHECK: gpu.shuffle xor
// CHECK: nvgpu.ldmatrix {{.*}} {numTiles = 2 : i32, transpose = true}
// The lse of each row, from one lane of its quad.
// CHECK: math.log
// CHECK: memref.store {{.*}} : memref<?x?x?xf32>
// CHECK-NOT: attn.variant
// SMALL: attn.launch = #attn.launch<block_rows = 32, threads = 64, shared_bytes = 18432>
// K/V tiles are read from staging slots: without --attn-pipeline-kv the
// lowering stops.
// UNSTAGED: error: 'attn.tile.load' op reads K/V without staging: run --attn-pipeline-kv
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

attn.variant @causal buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %m = arith.cmpi uge, %q, %kv : index
  attn.yield %m : i1
}
// Tensor cores take f16 or bf16.
// expected-error @+1 {{'gpu.func' op --convert-attn-tile-to-nvgpu: tensor cores take f16 or bf16; use the SIMT kernel}}
func.func @f32_kernel(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  attn.attention @causal ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}
