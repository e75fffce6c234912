// RUN: heed-opt %s --attn-differentiate --attn-backward-to-tile="block-q=64 block-kv=64 kernel=dq" --attn-pipeline-kv --convert-attn-tile-to-nvgpu --canonicalize --cse | FileCheck %s --check-prefix=DQ
// RUN: heed-opt %s --attn-differentiate --attn-backward-to-tile="block-q=16 block-kv=64 kernel=dkdv" --attn-pipeline-kv --convert-attn-tile-to-nvgpu --canonicalize --cse | FileCheck %s --check-prefix=DKDV
// The backward's two kernels on mma.sync (docs/backward.md, "GPU kernels"),
// bf16 at head dim 32 with ALiBi (a buffer gradient) and a causal mask.

// dQ: 4 warps own the 64 query rows; lse and delta one per row slot; two
// slots of 64 keys of K and of V: 2 x 64 x (32 + 8) x 2 bytes, twice. The
// kernel's last two arguments are the buffer gradients' fixed-point words and
// the finalize flag (docs/backward.md, "Deterministic buffer gradients on
// GPUs"), which only the dK/dV kernel reads (it is the one launched to
// finalize): the dQ kernel has no branch on it. The slopes' gradient (an element of the head) is
// summed over the lane's elements and the warp (xor shuffles 1..16) and added
// once per warp in base-2^24 digits (two digit words and the count; the
// flags word for NaN and infinities), never as a float atomic; dQ is stored
// once per real row, in bf16.
// DQ: gpu.func @backward({{.*}}, %arg10: memref<?xf32>, %arg11: memref<?xi64>, %arg12: index) kernel attributes {attn.launch = #attn.launch<block_rows = 64, threads = 128, shared_bytes = 20480>}
// DQ-NOT: cf.cond_br
// DQ-COUNT-2: memref.load %arg4[%block_id_z, %block_id_y, %{{.*}}] : memref<?x?x?xf32>
// DQ-COUNT-2: memref.load %arg5[%block_id_z, %block_id_y, %{{.*}}] : memref<?x?x?xf32>
// DQ: nvgpu.device_async_copy
// DQ: nvvm.mma.sync
// DQ: gpu.shuffle  xor %{{.*}}, %c1_i32, %c32_i32 : f32
// DQ: gpu.shuffle  xor %{{.*}}, %c16_i32, %c32_i32 : f32
// DQ: memref.atomic_rmw ori %{{.*}}, %arg11[%{{.*}}] : (i64, memref<?xi64>) -> i64
// DQ-COUNT-3: memref.atomic_rmw addi %{{.*}}, %arg11[%{{.*}}] : (i64, memref<?xi64>) -> i64
// DQ-NOT: memref.atomic_rmw addf
// DQ: arith.truncf %{{.*}} : f32 to bf16
// DQ: memref.store %{{.*}}, %arg7[%block_id_z, %block_id_y, %{{.*}}, %{{.*}}] : memref<?x?x?x32xbf16>
// DQ-NOT: memref.atomic_rmw

// dK/dV: 4 warps own the item's 64 keys; each step stages 16 query rows of
// Q and dO; lse and delta are loaded per column of the lane's key-major
// score fragments (16 columns / 4 = 4 per lane, each); no buffer gradient
// here (the dQ kernel adds them); dK and dV are stored once.
// DKDV: gpu.func @backward({{.*}}) kernel attributes {attn.launch = #attn.launch<block_rows = 64, threads = 128, shared_bytes = 10240>}
// With the flag, each thread turns one element's 8 words into its f32 and
// returns.
// DKDV: %[[FIN:.*]] = arith.cmpi ne, %arg{{[0-9]+}}, %c0 : index
// DKDV: cf.cond_br %[[FIN]], ^bb1, ^bb2
// DKDV: ^bb1:
// DKDV-COUNT-8: memref.load %arg{{[0-9]+}}[%{{.*}}] : memref<?xi64>
// DKDV: arith.shrsi
// DKDV: arith.sitofp %{{.*}} : i64 to f64
// DKDV: arith.truncf %{{.*}} : f64 to f32
// DKDV: memref.store %{{.*}}, %{{.*}}[%{{.*}}] : memref<?xf32, strided<[1]>>
// DKDV: gpu.return
// DKDV: ^bb2:
// DKDV: scf.for
// DKDV: scf.for
// DKDV: nvgpu.device_async_copy
// (each through a 1-D view of its (batch, head) row, 32-bit offsets)
// DKDV: %[[LSE:.*]] = memref.reinterpret_cast %arg4 to offset: [%{{.*}}], sizes: [2147483647], strides: [1] : memref<?x?x?xf32> to memref<?xf32, strided<[1], offset: ?>>
// DKDV-COUNT-4: memref.load %[[LSE]][%{{.*}}] : memref<?xf32, strided<[1], offset: ?>>
// DKDV: %[[DELTA:.*]] = memref.reinterpret_cast %arg5 to offset: [%{{.*}}], sizes: [2147483647], strides: [1] : memref<?x?x?xf32> to memref<?xf32, strided<[1], offset: ?>>
// DKDV-COUNT-4: memref.load %[[DELTA]][%{{.*}}] : memref<?xf32, strided<[1], offset: ?>>
// DKDV: nvvm.mma.sync
// P = e^(S - lse) as 2^((S - lse) log2 e), ex2.approx.ftz per element.
// DKDV: arith.subf
// DKDV: arith.mulf
// DKDV: llvm.call_intrinsic "llvm.nvvm.ex2.approx.ftz.f"
// DKDV-NOT: memref.atomic_rmw
// DKDV: nvgpu.ldmatrix %{{.*}} {numTiles = 2 : i32, transpose = true}
// DKDV: memref.store %{{.*}}, %arg8[%block_id_z, %block_id_y, %{{.*}}, %{{.*}}] : memref<?x?x?x32xbf16>
// DKDV: memref.store %{{.*}}, %arg9[%block_id_z, %block_id_y, %{{.*}}, %{{.*}}] : memref<?x?x?x32xbf16>
// DKDV-NOT: memref.atomic_rmw

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

func.func @backward(%q: memref<?x?x?x32xbf16>, %k: memref<?x?x?x32xbf16>, %v: memref<?x?x?x32xbf16>,
                    %do: memref<?x?x?x32xbf16>, %lse: memref<?x?x?xf32>, %delta: memref<?x?x?xf32>,
                    %slopes: memref<?xf32>, %dq: memref<?x?x?x32xbf16>, %dk: memref<?x?x?x32xbf16>,
                    %dv: memref<?x?x?x32xbf16>, %dslopes: memref<?xf32>) {
  attn.attention_backward @alibi ins(%q, %k, %v, %do : memref<?x?x?x32xbf16>, memref<?x?x?x32xbf16>, memref<?x?x?x32xbf16>, memref<?x?x?x32xbf16>)
      lse(%lse, %delta : memref<?x?x?xf32>, memref<?x?x?xf32>) buffers(%slopes : memref<?xf32>)
      grads(%dq, %dk, %dv : memref<?x?x?x32xbf16>, memref<?x?x?x32xbf16>, memref<?x?x?x32xbf16>)
      buffer_grads(%dslopes : memref<?xf32>) {scale = 0.25 : f32}
  return
}
