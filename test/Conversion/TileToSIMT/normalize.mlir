// RUN: heed-opt %S/../Inputs/normalize.mlir --attn-choose-tiling="block-q=128 block-kv=4 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --convert-attn-tile-to-simt --canonicalize --cse --split-input-file | FileCheck %s
// --convert-attn-tile-to-simt on the normalizations: sigmoid weights per key
// with no running max and no rescale; the sink logit read once per head and
// added to the row's denominator in the store.

// CHECK-LABEL: gpu.func @sigmoid_kernel
// The lse of a sigmoid row is NaN.
// CHECK: arith.constant 0x7FC00000 : f32
// The key loop: weights from e^-|z|, accumulated without a rescale; no
// max anywhere, no log.
// CHECK-NOT: arith.maximumf
// CHECK: scf.for
// CHECK: math.absf
// CHECK: math.exp
// CHECK: math.fma
// CHECK-NOT: arith.maximumf
// CHECK-NOT: math.log
// CHECK: gpu.return

// The sink read once per head (bounds-checked), the online softmax, then
// the store: m* = max(m, sink), the carry e^(m - m*), the sink's share
// e^(sink - m*), lse = m* + ln l*, out scaled by carry / l*.
// CHECK-LABEL: gpu.func @sink_kernel
// CHECK: %[[SINK:.*]] = scf.if %{{.*}} -> (f32) {
// CHECK-NEXT: memref.load %arg5[%block_id_y] : memref<?xf32>
// CHECK: scf.for
// CHECK: %[[TOP:.*]] = arith.maximumf %[[M:.*]], %[[SINK]] : f32
// CHECK-NEXT: %[[D:.*]] = arith.subf %[[M]], %[[TOP]] : f32
// CHECK-NEXT: %[[CARRY:.*]] = math.exp %[[D]] : f32
// CHECK-NEXT: %[[DS:.*]] = arith.subf %[[SINK]], %[[TOP]] : f32
// CHECK-NEXT: %[[ES:.*]] = math.exp %[[DS]] : f32
// CHECK-NEXT: %[[LC:.*]] = arith.mulf %{{.*}}, %[[CARRY]] : f32
// CHECK-NEXT: %[[L:.*]] = arith.addf %[[LC]], %[[ES]] : f32
// CHECK-NEXT: %[[LOG:.*]] = math.log %[[L]] : f32
// CHECK-NEXT: %[[LSE:.*]] = arith.addf %[[TOP]], %[[LOG]] : f32
// CHECK-NEXT: %[[SCALE:.*]] = arith.divf %[[CARRY]], %[[L]] : f32
// CHECK: arith.mulf %{{.*}}, %[[SCALE]] : f32
// CHECK: memref.store %[[LSE]], %arg4
