// RUN: heed-opt %s --attn-choose-tiling="block-q=128 block-kv=0 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-pipeline-kv="stages=1" --attn-specialize-full-tiles --convert-attn-tile-to-amdgpu --canonicalize --cse --split-input-file | FileCheck %s
// RUN: heed-opt %s --attn-choose-tiling="block-q=64 block-kv=0 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-pipeline-kv="stages=1" --attn-specialize-full-tiles --convert-attn-tile-to-amdgpu="mfma=16" --canonicalize --cse --split-input-file | FileCheck %s --check-prefix=MFMA16
// Head dims above 128 on MFMA: 32-key tiles, K in LDS as [32][D + 4], V^T as
// [Dv][32 + 4]; Q stays in registers as D / 8 (MFMA 32) or D / 16 (MFMA 16)
// B operands, O^T as Dv / M accumulators.

attn.variant @causal buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %m = arith.cmpi uge, %q, %kv : index
  attn.yield %m : i1
}
// D = 256: 35072 bytes of LDS; per key tile 32 MFMAs for S^T (K = 8) and 8
// accumulators of O^T.
// CHECK-LABEL: gpu.func @d256
// CHECK-SAME: workgroup(%[[K:.*]] : memref<1x32x260xbf16, #gpu.address_space<workgroup>>, %[[VT:.*]] : memref<1x256x36xbf16, #gpu.address_space<workgroup>>)
// CHECK-SAME: attn.launch = #attn.launch<block_rows = 128, threads = 256>
// CHECK-COUNT-32: vector.load %arg0{{.*}} vector<4xbf16>
// CHECK: scf.for
// CHECK-COUNT-32: amdgpu.mfma 32x32x8 {{.*}} : vector<4xbf16>, vector<4xbf16>, vector<16xf32>
// MFMA16-LABEL: gpu.func @d256
// MFMA16-SAME: workgroup(%{{.*}} : memref<1x32x260xbf16, #gpu.address_space<workgroup>>, %{{.*}} : memref<1x256x36xbf16, #gpu.address_space<workgroup>>)
// MFMA16-SAME: attn.launch = #attn.launch<block_rows = 64, threads = 256>
// MFMA16: amdgpu.mfma 16x16x16 {{.*}} : vector<4xbf16>, vector<4xbf16>, vector<4xf32>
func.func @d256(%q: memref<?x?x?x256xbf16>, %o: memref<?x?x?x256xbf16>) {
  attn.attention @causal ins(%q, %q, %q : memref<?x?x?x256xbf16>, memref<?x?x?x256xbf16>, memref<?x?x?x256xbf16>) outs(%o : memref<?x?x?x256xbf16>) {scale = 0.0625 : f32}
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
// MLA's heads: Dqk = 192, Dv = 128 (21760 bytes of LDS); O^T is 4
// accumulators, stored at 128 value dims.
// CHECK-LABEL: gpu.func @mla
// CHECK-SAME: workgroup(%{{.*}} : memref<1x32x196xf16, #gpu.address_space<workgroup>>, %{{.*}} : memref<1x128x36xf16, #gpu.address_space<workgroup>>)
// CHECK-COUNT-24: vector.load %arg0{{.*}} vector<4xf16>
// CHECK: scf.for
// CHECK: amdgpu.mfma 32x32x8
// CHECK: memref.store {{.*}} : memref<?x?x?x128xf16>
// MFMA16-LABEL: gpu.func @mla
// MFMA16-SAME: workgroup(%{{.*}} : memref<1x32x196xf16, #gpu.address_space<workgroup>>, %{{.*}} : memref<1x128x36xf16, #gpu.address_space<workgroup>>)
func.func @mla(%q: memref<?x?x?x192xf16>, %v: memref<?x?x?x128xf16>, %o: memref<?x?x?x128xf16>) {
  attn.attention @causal ins(%q, %q, %v : memref<?x?x?x192xf16>, memref<?x?x?x192xf16>, memref<?x?x?x128xf16>) outs(%o : memref<?x?x?x128xf16>) {scale = 0.072168784 : f32}
  return
}
