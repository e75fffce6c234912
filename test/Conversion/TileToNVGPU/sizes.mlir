// RUN: heed-opt %S/../Inputs/gpu-sizes.mlir --attn-choose-tiling="block-q=64 block-kv=0 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-pipeline-kv --attn-specialize-full-tiles --convert-attn-tile-to-nvgpu --canonicalize --cse | FileCheck %s
// RUN: heed-opt %S/../Inputs/gpu-sizes.mlir --attn-choose-tiling="block-q=64 block-kv=0 patches=false" --attn-analyze-mask --attn-to-tile --attn-pipeline-kv | sed '/attn.tile.bind_shapes/d' | not heed-opt --convert-attn-tile-to-nvgpu 2>&1 | FileCheck %s --check-prefix=UNBOUND
// The run-time sizes in the tensor-core (mma.sync) kernel: a decode variant
// (Inputs/gpu-sizes.mlir) reads Sq, Skv and Hkv in its mask, score, sink
// and block classifier. attn.tile.bind_shapes is lowered once for every GPU
// target (lib/Conversion/TileToGPU): each attn.shape becomes the memref.dim
// of the kernel's own q or k argument, so no length is compiled in.

// CHECK-LABEL: gpu.module @heed_gpu
// CHECK: gpu.func @heed_kernel(%[[Q:[a-z0-9]+]]: memref<?x?x?x64xbf16>, %[[K:[a-z0-9]+]]: memref<?x?x?x64xbf16>
// CHECK-DAG: %[[SQ:.*]] = memref.dim %[[Q]], %c2
// CHECK-DAG: %[[SKV:.*]] = memref.dim %[[K]], %c2
// CHECK-DAG: %[[HKV:.*]] = memref.dim %[[K]], %c1
// The sink logit f32(Hkv), once per work item.
// CHECK: %[[HKV64:.*]] = arith.index_cast %[[HKV]] : index to i64
// CHECK-NEXT: arith.sitofp %[[HKV64]] : i64 to f32
// The key range: binary searches on the classifier, which reads Skv - Sq.
// CHECK: scf.while
// CHECK: %[[RSKV:.*]] = arith.index_cast %[[SKV]] : index to i64
// CHECK-NEXT: %[[RSQ:.*]] = arith.index_cast %[[SQ]] : index to i64
// CHECK-NEXT: arith.subi %[[RSKV]], %[[RSQ]] : i64
// CHECK: scf.while
// The tile loop. FULL tiles: S = Q K^T, then the score alone (Skv - kv).
// CHECK: scf.for
// CHECK: nvvm.mma.sync
// CHECK: %[[FSKV:.*]] = arith.index_cast %[[SKV]] : index to i64
// CHECK-NEXT: %[[FKV:.*]] = arith.index_cast %{{.*}} : index to i64
// CHECK-NEXT: %[[FBACK:.*]] = arith.subi %[[FSKV]], %[[FKV]] : i64
// CHECK-NEXT: arith.sitofp %[[FBACK]] : i64 to f32
// PARTIAL tiles: the mask on the S fragments (q + (Skv - Sq) >= kv), then
// the score.
// CHECK: } else {
// CHECK: nvvm.mma.sync
// CHECK: %[[MSKV:.*]] = arith.index_cast %[[SKV]] : index to i64
// CHECK-NEXT: %[[MSQ:.*]] = arith.index_cast %[[SQ]] : index to i64
// CHECK-NEXT: %[[SHIFT:.*]] = arith.subi %[[MSKV]], %[[MSQ]] : i64
// CHECK-NEXT: %[[LAST:.*]] = arith.addi %{{.*}}, %[[SHIFT]] : i64
// CHECK-NEXT: arith.cmpi sge, %[[LAST]], %{{.*}} : i64
// CHECK: %[[BACK:.*]] = arith.subi %[[MSKV]], %{{.*}} : i64
// CHECK-NEXT: arith.sitofp %[[BACK]] : i64 to f32
// CHECK-NOT: attn.tile
// CHECK-NOT: attn.shape

// An attn.shape with no binding above it is an error, not a constant.
// UNBOUND: error: 'attn.shape' op reads a size with no attn.tile.bind_shapes above it
