// RUN: heed-opt %s --heed-amdgpu-pipeline | FileCheck %s
// RUN: heed-opt %s --heed-amdgpu-pipeline="chip=gfx90a mfma=16" | FileCheck %s --check-prefix=GFX90A
// RUN: heed-opt %s --heed-amdgpu-pipeline="analyze-mask=false" | FileCheck %s --check-prefix=NOMASK
// RUN: heed-opt %s --heed-amdgpu-pipeline="kernel=simt" | FileCheck %s --check-prefix=SIMT
// heed-amdgpu-pipeline, by name: attn -> the tile schedule -> the MFMA
// kernel (--convert-attn-tile-to-amdgpu) -> ROCDL -> AMDGCN assembly in a
// gpu.binary (what heed-compile --emit=amdgcn prints).

// CHECK: gpu.binary @heed_gpu [#gpu.object<#rocdl.target<chip = "gfx942">
// CHECK-SAME: v_mfma_f32_32x32x8_f16
// CHECK-NOT: attn.
// GFX90A: #rocdl.target<chip = "gfx90a">
// GFX90A-SAME: v_mfma_f32_16x16x16
// Without the mask analysis (no classifier: every key tile is staged).
// NOMASK: gpu.binary @heed_gpu
// NOMASK-SAME: v_mfma_f32_32x32x8_f16
// The SIMT kernel (kernel=simt: the tile IR through
// --convert-attn-tile-to-simt): no MFMA, its private arrays in registers.
// SIMT: gpu.binary @heed_gpu
// SIMT-NOT: v_mfma
// SIMT-SAME: .private_segment_fixed_size: 0
// SIMT-NOT: attn.
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
