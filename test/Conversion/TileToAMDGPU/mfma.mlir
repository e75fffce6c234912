// RUN: heed-opt %s --attn-choose-tiling="block-q=128 block-kv=0 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-pipeline-kv="stages=1" --attn-specialize-full-tiles --convert-attn-tile-to-amdgpu --split-input-file --verify-diagnostics | FileCheck %s
// RUN: heed-opt %s --attn-choose-tiling="block-q=64 block-kv=0 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-pipeline-kv="stages=1" --convert-attn-tile-to-amdgpu="mfma=16" --split-input-file --verify-diagnostics | FileCheck %s --check-prefix=MFMA16
// RUN: heed-opt %s --attn-choose-tiling="block-q=128 block-kv=0 patches=false" --attn-to-tile --attn-pipeline-kv="stages=2" --convert-attn-tile-to-amdgpu --split-input-file --verify-diagnostics | FileCheck %s --check-prefix=STAGES2
// RUN: heed-opt %s --attn-choose-tiling="block-q=128 block-kv=0 patches=false" --attn-to-tile --attn-pipeline-kv="stages=1" --convert-attn-tile-to-amdgpu --split-input-file --verify-diagnostics | FileCheck %s --check-prefix=NOMASK
// RUN: not heed-opt %s --attn-choose-tiling="block-q=128 block-kv=0 patches=false" --attn-to-tile --convert-attn-tile-to-amdgpu="mfma=8" --split-input-file 2>&1 | FileCheck %s --check-prefix=BADMFMA
// RUN: not heed-opt %s --attn-choose-tiling="block-q=48 block-kv=0 patches=false" --attn-to-tile --attn-pipeline-kv="stages=1" --convert-attn-tile-to-amdgpu --split-input-file 2>&1 | FileCheck %s --check-prefix=ROWS
// RUN: not heed-opt %s --attn-choose-tiling="block-q=128 block-kv=0 patches=false" --attn-to-tile --convert-attn-tile-to-amdgpu --split-input-file 2>&1 | FileCheck %s --check-prefix=UNSTAGED
// --convert-attn-tile-to-amdgpu on .mlir input (through the AMD schedule:
// choose-tiling, attn-to-tile, skip-tiles, pipeline-kv{stages=1},
// specialize-full-tiles): the MFMA kernel (wave64) of a causal f16
// attention at head dim 64.

// CHECK-LABEL: gpu.module @heed_gpu
// 4 waves of 32 rows (MFMA 32x32x8); one LDS slot of the K tile (64 keys)
// and of the V^T tile, rows padded by 4; no dynamic shared memory.
// CHECK: gpu.func @heed_kernel({{.*}}) workgroup(%[[K:.*]] : memref<1x64x68xf16, #gpu.address_space<workgroup>>, %[[VT:.*]] : memref<1x64x68xf16, #gpu.address_space<workgroup>>) kernel attributes {attn.launch = #attn.launch<block_rows = 128, threads = 256>}
// Q's B operands (4 elements of the lane's row) from global memory, once.
// CHECK: vector.load %arg0{{.*}} vector<4xf16>
// The KV range by binary search on the classifier.
// CHECK: scf.while
// CHECK: scf.while
// The tile loop: barrier, K row by row and V transposed into LDS (unless
// EMPTY), barrier, S^T = K Q^T and O^T += V^T P^T on MFMA, row statistics
// over the lanes l and l + 32.
// CHECK: scf.for
// CHECK: gpu.barrier
// CHECK: vector.store {{.*}}, %[[K]]{{.*}} vector<8xf16>
// CHECK: memref.store {{.*}}, %[[VT]]
// CHECK: gpu.barrier
// CHECK: vector.load %[[K]]{{.*}} vector<4xf16>
// CHECK: amdgpu.mfma 32x32x8 {{.*}} : vector<4xf16>, vector<4xf16>, vector<16xf32>
// CHECK: gpu.shuffle xor {{.*}} : f32
// CHECK: vector.load %[[VT]]{{.*}} vector<4xf16>
// The lse of each row, from the lanes l < 32.
// CHECK: math.log
// CHECK: memref.store {{.*}} : memref<?x?x?xf32>
// CHECK-NOT: attn.
// MFMA16: attn.launch = #attn.launch<block_rows = 64, threads = 256>
// MFMA16: amdgpu.mfma 16x16x16 {{.*}} : vector<4xf16>, vector<4xf16>, vector<4xf32>
// Two staging slots (the NVIDIA schedule) give two LDS slots each.
// STAGES2: workgroup(%{{.*}} : memref<2x64x68xf16, #gpu.address_space<workgroup>>, %{{.*}} : memref<2x64x68xf16, #gpu.address_space<workgroup>>)
// Without the mask analysis every key tile is visited and copied.
// NOMASK-LABEL: gpu.module @heed_gpu
// NOMASK-NOT: scf.while
// NOMASK: gpu.barrier
// NOMASK: vector.store {{.*}} vector<8xf16>
// NOMASK: gpu.barrier
// NOMASK: amdgpu.mfma 32x32x8
// BADMFMA: error: --convert-attn-tile-to-amdgpu: mfma must be 32 (32x32x8) or 16 (16x16x16), not 8
// ROWS: error: 'gpu.func' op --convert-attn-tile-to-amdgpu: MFMA 32 needs query and key tiles of a multiple of 32 rows; use the SIMT kernel
// K/V tiles are read from LDS slots: without --attn-pipeline-kv the
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
func.func @heed_kernel(%q: memref<?x?x?x64xf16>, %k: memref<?x?x?x64xf16>, %v: memref<?x?x?x64xf16>, %o: memref<?x?x?x64xf16>, %lse: memref<?x?x?xf32>) {
  attn.attention @causal ins(%q, %k, %v : memref<?x?x?x64xf16>, memref<?x?x?x64xf16>, memref<?x?x?x64xf16>) outs(%o : memref<?x?x?x64xf16>) lse(%lse : memref<?x?x?xf32>) {scale = 1.250000e-01 : f32}
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
// Head dims past 256 are not lowered to MFMA.
// expected-error @+1 {{'gpu.func' op --convert-attn-tile-to-amdgpu: MFMA needs head dims that are multiples of 16 (and of the MFMA size for v), at most 256; use the SIMT kernel}}
func.func @d288(%q: memref<?x?x?x288xf16>, %o: memref<?x?x?x288xf16>) {
  attn.attention @causal ins(%q, %q, %q : memref<?x?x?x288xf16>, memref<?x?x?x288xf16>, memref<?x?x?x288xf16>) outs(%o : memref<?x?x?x288xf16>) {scale = 1.250000e-01 : f32}
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
// MFMA takes f16 or bf16.
// expected-error @+1 {{'gpu.func' op --convert-attn-tile-to-amdgpu: MFMA takes f16 or bf16; use the SIMT kernel}}
func.func @f32_kernel(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  attn.attention @causal ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}
