// RUN: heed-opt %s --attn-differentiate --attn-backward-to-tile="block-q=128 block-kv=32 kernel=dq" --attn-pipeline-kv="stages=1" --convert-attn-tile-to-amdgpu --canonicalize --cse | FileCheck %s --check-prefix=DQ
// RUN: heed-opt %s --attn-differentiate --attn-backward-to-tile="block-q=32 block-kv=128 kernel=dkdv" --attn-pipeline-kv="stages=1" --convert-attn-tile-to-amdgpu --canonicalize --cse | FileCheck %s --check-prefix=DKDV
// RUN: heed-opt %s --attn-differentiate --attn-backward-to-tile="block-q=64 block-kv=64 kernel=dkdv" --attn-pipeline-kv="stages=1" --convert-attn-tile-to-amdgpu="mfma=16" --canonicalize --cse | FileCheck %s --check-prefix=MFMA16
// RUN: not heed-opt %s --attn-differentiate --attn-backward-to-tile="block-q=16 block-kv=128 kernel=dkdv" --attn-pipeline-kv="stages=1" --convert-attn-tile-to-amdgpu 2>&1 | FileCheck %s --check-prefix=STEP
// RUN: not heed-opt %s --attn-differentiate --attn-backward-to-tile="block-q=128 block-kv=128 kernel=dq" --attn-pipeline-kv="stages=1" --convert-attn-tile-to-amdgpu="lds-bytes=32768" 2>&1 | FileCheck %s --check-prefix=LDS
// The backward's two kernels on MFMA (docs/backward.md, "On AMD (MFMA)"),
// bf16 at head dim 64 with ALiBi (a buffer gradient) and a causal mask. As
// in the forward, a wave computes S^T = K Q^T: a lane holds one row slot
// (the column l % 32 of its accumulators) and 16 of its 32 partners.

// dQ: 4 waves own 128 query rows; lse and delta one per lane; a step
// stages 32 keys of K row by row ([32][64 + 4]: S^T = K Q^T), K transposed
// ([64][32 + 4]: dQ^T += K^T dS^T) and V row by row (dP^T = V dO^T): the
// LDS buffers of the parts each product reads. The slopes' gradient (an
// element of the head) is summed over the lane's elements and the wave (xor
// shuffles 1..32 of 64 lanes) and added once per wave into its fixed-point
// digit words (64-bit integer atomics; docs/backward.md); only the dK/dV
// kernel's entry branches to the finalizing code on its last argument (the
// dQ kernel is never launched to finalize). dQ is stored once
// per real row, 32 elements a lane.
// DQ: gpu.func @backward({{.*}}, %arg11: memref<?xi64>, %arg12: index) workgroup(%[[K:.*]] : memref<1x32x68xbf16, #gpu.address_space<workgroup>>, %[[KT:.*]] : memref<1x64x36xbf16, #gpu.address_space<workgroup>>, %[[V:.*]] : memref<1x32x68xbf16, #gpu.address_space<workgroup>>) kernel attributes {attn.launch = #attn.launch<block_rows = 128, threads = 256>}
// DQ-COUNT-1: memref.load %arg4[%block_id_z, %block_id_y, %{{.*}}] : memref<?x?x?xf32>
// DQ-COUNT-1: memref.load %arg5[%block_id_z, %block_id_y, %{{.*}}] : memref<?x?x?xf32>
// DQ: scf.for
// DQ: gpu.barrier
// DQ: memref.store %{{.*}}, %[[KT]][%c0, %{{.*}}, %{{.*}}] : memref<1x64x36xbf16
// DQ: gpu.barrier
// DQ-COUNT-8: amdgpu.mfma 32x32x8 {{.*}} : vector<4xbf16>, vector<4xbf16>, vector<16xf32>
// DQ: rocdl.exp2
// DQ: vector.load %[[V]]
// DQ-NEXT: amdgpu.mfma 32x32x8
// DQ: gpu.shuffle  xor %{{.*}}, %c1_i32, %c64_i32 : f32
// DQ: gpu.shuffle  xor %{{.*}}, %c32_i32, %c64_i32 : f32
// DQ: memref.atomic_rmw ori %{{.*}}, %arg11[%{{.*}}] : (i64, memref<?xi64>) -> i64
// DQ-COUNT-3: memref.atomic_rmw addi %{{.*}}, %arg11[%{{.*}}] : (i64, memref<?xi64>) -> i64
// DQ-NOT: memref.atomic_rmw
// DQ: vector.load %[[KT]][%c0, %{{.*}}, %{{.*}}] : memref<1x64x36xbf16, #gpu.address_space<workgroup>>, vector<4xbf16>
// DQ-NEXT: amdgpu.mfma 32x32x8 %{{.*}} * %{{.*}} + %arg{{[0-9]+}}
// DQ-COUNT-32: memref.store %{{.*}}, %arg7[%block_id_z, %block_id_y, %{{.*}}, %{{.*}}] : memref<?x?x?x64xbf16>
// DQ-NOT: memref.atomic_rmw

// dK/dV: 4 waves own the item's 128 keys; each step stages 32 query rows of
// Q and of dO, each row by row ([32][64 + 4]) and transposed ([64][32 + 4]):
// 4 buffers; lse and delta are loaded per element (the lane's 16 queries of
// its key column); no buffer gradient (the dQ kernel adds them); dK and dV
// are stored once, 32 elements each a lane.
// DKDV: gpu.func @backward({{.*}}) workgroup(%[[Q:.*]] : memref<1x32x68xbf16, #gpu.address_space<workgroup>>, %[[DOT:.*]] : memref<1x64x36xbf16, #gpu.address_space<workgroup>>, %[[QT:.*]] : memref<1x64x36xbf16, #gpu.address_space<workgroup>>, %[[DO:.*]] : memref<1x32x68xbf16, #gpu.address_space<workgroup>>) kernel attributes {attn.launch = #attn.launch<block_rows = 128, threads = 256>}
// DKDV: scf.for
// DKDV: scf.for
// DKDV: gpu.barrier
// DKDV: gpu.barrier
// DKDV-COUNT-16: memref.load %arg4[%block_id_z, %{{.*}}, %{{.*}}] : memref<?x?x?xf32>
// DKDV-COUNT-16: memref.load %arg5[%block_id_z, %{{.*}}, %{{.*}}] : memref<?x?x?xf32>
// S^T = K Q^T (Q row by row), P^T = e^(S^T - lse) as 2^((S - lse) log2 e).
// DKDV: vector.load %[[Q]]
// DKDV-NEXT: amdgpu.mfma 32x32x8
// DKDV: arith.subf
// DKDV: arith.mulf
// DKDV: rocdl.exp2
// dV^T += dO^T P: dO transposed.
// DKDV: vector.load %[[DOT]]
// DKDV-NEXT: amdgpu.mfma 32x32x8
// dP^T = V dO^T: dO row by row.
// DKDV: vector.load %[[DO]]
// DKDV-NEXT: amdgpu.mfma 32x32x8
// DKDV-NOT: memref.atomic_rmw
// dK^T += Q^T dS: Q transposed.
// DKDV: vector.load %[[QT]]
// DKDV-NEXT: amdgpu.mfma 32x32x8
// DKDV-COUNT-32: memref.store %{{.*}}, %arg8[%block_id_z, %block_id_y, %{{.*}}, %{{.*}}] : memref<?x?x?x64xbf16>
// DKDV-COUNT-32: memref.store %{{.*}}, %arg9[%block_id_z, %block_id_y, %{{.*}}, %{{.*}}] : memref<?x?x?x64xbf16>
// DKDV-NOT: memref.atomic_rmw

// MFMA 16x16x16: 4 waves of 16 keys; 4 elements of each of the 4 16x16
// accumulators of a 64-row step, so 16 lse per lane (no buffer gradient in
// the dK/dV kernel).
// MFMA16: attn.launch = #attn.launch<block_rows = 64, threads = 256>
// MFMA16-COUNT-16: memref.load %arg4
// MFMA16: amdgpu.mfma 16x16x16 {{.*}} : vector<4xbf16>, vector<4xbf16>, vector<4xf32>
// MFMA16-NOT: memref.atomic_rmw

// A query step that is not a multiple of the MFMA size is refused; so are
// staging slots over the LDS a workgroup may take (dQ with 128 keys: K and V
// row by row, 2 x 128 x 68 x 2 bytes, and K^T, 64 x 132 x 2: 51712).
// STEP: error: 'gpu.func' op --convert-attn-tile-to-amdgpu: MFMA 32 needs query and key tiles of a multiple of 32 rows; run the backward on the CPU
// LDS: error: 'gpu.func' op --convert-attn-tile-to-amdgpu: the staging slots take 51712 bytes of LDS, over the 32768 of a workgroup

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
