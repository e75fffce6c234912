// RUN: heed-opt %s --attn-analyze-mask --attn-lower-to-amdgpu --split-input-file --verify-diagnostics | FileCheck %s
// RUN: heed-opt %s --attn-analyze-mask --attn-lower-to-amdgpu="mfma=16" --split-input-file --verify-diagnostics | FileCheck %s --check-prefix=MFMA16
// RUN: not heed-opt %s --attn-lower-to-amdgpu="mfma=8" --split-input-file 2>&1 | FileCheck %s --check-prefix=BADMFMA
// --attn-lower-to-amdgpu on .mlir input: the MFMA kernel (wave64) of a causal
// f16 attention at head dim 64.

// CHECK-LABEL: gpu.module @heed_gpu
// 4 waves of 32 rows (MFMA 32x32x8); K and V^T tiles of 64 keys in LDS,
// rows padded by 4.
// CHECK: gpu.func @heed_kernel({{.*}}) workgroup(%{{.*}} : memref<64x68xf16, #gpu.address_space<workgroup>>, %{{.*}} : memref<64x68xf16, #gpu.address_space<workgroup>>) kernel attributes {attn.launch = #attn.launch<block_rows = 128, threads = 256>}
// CHECK: scf.while
// CHECK: scf.for
// CHECK: gpu.barrier
// CHECK: amdgpu.mfma 32x32x8 {{.*}} : vector<4xf16>, vector<4xf16>, vector<16xf32>
// CHECK: math.log
// MFMA16: attn.launch = #attn.launch<block_rows = 64, threads = 256>
// MFMA16: amdgpu.mfma 16x16x16
// BADMFMA: error: --attn-lower-to-amdgpu: mfma must be 32 (32x32x8) or 16 (16x16x16), not 8
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
// Head dims past 128 are not lowered to MFMA yet.
func.func @d256(%q: memref<?x?x?x256xf16>, %o: memref<?x?x?x256xf16>) {
  // expected-error @+1 {{'attn.attention' op --attn-lower-to-amdgpu needs head dims that are multiples of 16 (and of the MFMA size for v), at most 128 so far; use --attn-lower-to-gpu}}
  attn.attention @causal ins(%q, %q, %q : memref<?x?x?x256xf16>, memref<?x?x?x256xf16>, memref<?x?x?x256xf16>) outs(%o : memref<?x?x?x256xf16>) {scale = 1.250000e-01 : f32}
  return
}
