// RUN: heed-opt %S/../Inputs/normalize.mlir --attn-choose-tiling="block-q=64 block-kv=0 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-pipeline-kv --attn-specialize-full-tiles --convert-attn-tile-to-nvgpu --canonicalize --split-input-file > %t
// RUN: FileCheck %s < %t
// RUN: FileCheck %s --check-prefix=NOSTATS < %t
// --convert-attn-tile-to-nvgpu on the normalizations: the sigmoid kernel has
// no row statistics at all (no f32 shuffle across the lanes of a row, no
// max, no log: no rescale of the accumulator; the i32 shuffles are the
// 16-byte epilogue's regrouping of O); the sink kernel is the online
// softmax with the sink joining the denominator in the store.

// CHECK-LABEL: gpu.func @sigmoid_kernel
// CHECK: arith.constant 0x7FC00000 : f32
// CHECK: nvgpu.mma.sync
// CHECK: math.absf
// CHECK: math.exp
// CHECK: nvgpu.mma.sync
// CHECK: gpu.return
// NOSTATS-LABEL: gpu.func @sigmoid_kernel
// NOSTATS-NOT: gpu.shuffle {{.*}} : f32
// NOSTATS-NOT: arith.maximumf
// NOSTATS-NOT: math.log
// NOSTATS: gpu.return

// The sink read once per head; per row slot in the store, the sum over the
// row's lanes, then m* = max(m, sink), the two exponentials, the log.
// CHECK-LABEL: gpu.func @sink_kernel
// CHECK: %[[SINK:.*]] = scf.if %{{.*}} -> (f32) {
// CHECK-NEXT: memref.load %arg5[%block_id_y] : memref<?xf32>
// CHECK: nvgpu.mma.sync
// CHECK: gpu.shuffle xor
// CHECK: %[[TOP:.*]] = arith.maximumf %{{.*}}, %[[SINK]] : f32
// CHECK: math.exp
// CHECK: math.exp
// CHECK: math.log
// CHECK: gpu.return
