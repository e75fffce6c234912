// The shared input and checks of the GPU targets' sizes.mlir tests
// (test/Conversion/TileTo{NVGPU,SIMT,AMDGPU,Hopper}): a decode variant that
// reads the run-time sizes in each of its regions. The mask is
// causal_bottom_right() (q + (Skv - Sq) >= kv), the score a recency bias
// from the end of the keys (Skv - kv), the sink logit reads Hkv, and
// --attn-analyze-mask derives a blocks classifier that reads Sq and Skv.
// attn.tile.bind_shapes is lowered once for every GPU target
// (lib/Conversion/TileToGPU): each attn.shape becomes the memref.dim of the
// kernel's own q or k argument, so no length is compiled into the kernel.
// Prefixes: CHECK (all), MC (matrix cores) with NVGPU, AMDGPU or HOPPER (the
// matrix instruction) and MC32 (NVIDIA: 32-bit integer code) or MC64 (AMD),
// SIMT, UNBOUND (no binding in scope).

// CHECK-LABEL: gpu.module @heed_gpu
// CHECK: gpu.func @heed_kernel(%[[Q:[a-z0-9]+]]: memref<?x?x?x64x{{bf16|f32}}>, %[[K:[a-z0-9]+]]: memref<?x?x?x64x{{bf16|f32}}>
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

// Matrix cores, FULL tiles: S = Q K^T, then the score alone (Skv - kv) on
// the S fragments.
// MC: scf.for
// NVGPU: nvvm.mma.sync
// AMDGPU: amdgpu.mfma
// HOPPER: nvvm.wgmma.mma_async
// NVIDIA (MC32) narrows the region's integers (RegionInlining::narrow): Skv - kv
// fits in 32 bits, the positions are i32 already; AMD (MC64) does not.
// MC32: %[[FSKV:.*]] = arith.index_cast %[[SKV]] : index to i64
// MC32-NEXT: %[[FSKV32:.*]] = arith.trunci %[[FSKV]] : i64 to i32
// MC32-NEXT: %[[FBACK:.*]] = arith.subi %[[FSKV32]], %{{.*}} : i32
// MC32-NEXT: arith.sitofp %[[FBACK]] : i32 to f32
// MC64: %[[FSKV:.*]] = arith.index_cast %[[SKV]] : index to i64
// MC64-NEXT: %[[FKV:.*]] = arith.index_cast %{{.*}} : index to i64
// MC64-NEXT: %[[FBACK:.*]] = arith.subi %[[FSKV]], %[[FKV]] : i64
// MC64-NEXT: arith.sitofp %[[FBACK]] : i64 to f32
// PARTIAL tiles: the mask on the fragments (q + (Skv - Sq) >= kv). Skv -
// Sq fits in 32 bits, q + (Skv - Sq) may not: the sum and the compare
// stay 64-bit.
// MC: } else {
// NVGPU: nvvm.mma.sync
// AMDGPU: amdgpu.mfma
// HOPPER: nvvm.wgmma.mma_async
// MC32: %[[MSKV:.*]] = arith.index_cast %[[SKV]] : index to i64
// MC32-NEXT: %[[MSQ:.*]] = arith.index_cast %[[SQ]] : index to i64
// MC32-NEXT: %[[MSKV32:.*]] = arith.trunci %[[MSKV]] : i64 to i32
// MC32-NEXT: %[[MSQ32:.*]] = arith.trunci %[[MSQ]] : i64 to i32
// MC32-NEXT: %[[SHIFT:.*]] = arith.subi %[[MSKV32]], %[[MSQ32]] : i32
// MC32-NEXT: %[[MQ64:.*]] = arith.extsi %{{.*}} : i32 to i64
// MC32-NEXT: %[[SHIFT64:.*]] = arith.extsi %[[SHIFT]] : i32 to i64
// MC32-NEXT: %[[LAST:.*]] = arith.addi %[[MQ64]], %[[SHIFT64]] : i64
// MC32-NEXT: %[[MKV64:.*]] = arith.extsi %{{.*}} : i32 to i64
// MC32-NEXT: arith.cmpi sge, %[[LAST]], %[[MKV64]] : i64
// MC64: %[[MSKV:.*]] = arith.index_cast %[[SKV]] : index to i64
// MC64-NEXT: %[[MSQ:.*]] = arith.index_cast %[[SQ]] : index to i64
// MC64-NEXT: %[[SHIFT:.*]] = arith.subi %[[MSKV]], %[[MSQ]] : i64
// MC64-NEXT: %[[LAST:.*]] = arith.addi %{{.*}}, %[[SHIFT]] : i64
// MC64-NEXT: arith.cmpi sge, %[[LAST]], %{{.*}} : i64

// The SIMT kernel, each key's mask where the tile is PARTIAL, then its score.
// SIMT: scf.for
// SIMT: scf.if
// SIMT: %[[TSKV:.*]] = arith.index_cast %[[SKV]] : index to i64
// SIMT-NEXT: %[[TSQ:.*]] = arith.index_cast %[[SQ]] : index to i64
// SIMT-NEXT: %[[TSKV32:.*]] = arith.trunci %[[TSKV]] : i64 to i32
// SIMT-NEXT: %[[TSQ32:.*]] = arith.trunci %[[TSQ]] : i64 to i32
// SIMT-NEXT: %[[TSHIFT:.*]] = arith.subi %[[TSKV32]], %[[TSQ32]] : i32
// SIMT-NEXT: %[[MQ:.*]] = arith.index_cast %{{.*}} : index to i64
// SIMT-NEXT: %[[TSHIFT64:.*]] = arith.extsi %[[TSHIFT]] : i32 to i64
// SIMT-NEXT: %[[TLAST:.*]] = arith.addi %[[MQ]], %[[TSHIFT64]] : i64
// SIMT-NEXT: %[[MKV:.*]] = arith.index_cast %{{.*}} : index to i64
// SIMT-NEXT: arith.cmpi sge, %[[TLAST]], %[[MKV]] : i64
// Past the masks (every key visible where the tile is FULL), the scores.
// SIMT: scf.yield %true, %true
// SIMT: %[[SSKV:.*]] = arith.index_cast %[[SKV]] : index to i64
// SIMT-NEXT: %[[SKVI:.*]] = arith.index_cast %{{.*}} : index to i32
// SIMT-NEXT: %[[SSKV32:.*]] = arith.trunci %[[SSKV]] : i64 to i32
// SIMT-NEXT: %[[SBACK:.*]] = arith.subi %[[SSKV32]], %[[SKVI]] : i32
// SIMT-NEXT: arith.sitofp %[[SBACK]] : i32 to f32

// Nothing of the tile IR or of the sizes is left.
// CHECK-NOT: attn.tile
// CHECK-NOT: attn.shape

// An attn.shape with no binding above it is an error, not a constant.
// UNBOUND: error: 'attn.shape' op reads a size with no attn.tile.bind_shapes above it

attn.variant @decode buffers([] : []) shapes [] params {} sink {
^bb0(%b: index, %h: index):
  %hkv = attn.shape <Hkv> : i64
  %f = arith.sitofp %hkv : i64 to f32
  attn.yield %f : f32
} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  %skv = attn.shape <Skv> : i64
  %kvi = arith.index_cast %kv : index to i64
  %back = arith.subi %skv, %kvi : i64
  %backf = arith.sitofp %back : i64 to f32
  %c = arith.constant 0.01 : f32
  %bias = arith.mulf %c, %backf : f32
  %r = arith.subf %s, %bias : f32
  attn.yield %r : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %qi = arith.index_cast %q : index to i64
  %kvi = arith.index_cast %kv : index to i64
  %skv = attn.shape <Skv> : i64
  %sq = attn.shape <Sq> : i64
  %shift = arith.subi %skv, %sq : i64
  %last = arith.addi %qi, %shift : i64
  %m = arith.cmpi sge, %last, %kvi : i64
  attn.yield %m : i1
}
func.func @heed_kernel(%q: memref<?x?x?x64xbf16>, %k: memref<?x?x?x64xbf16>, %v: memref<?x?x?x64xbf16>, %o: memref<?x?x?x64xbf16>) {
  attn.attention @decode ins(%q, %k, %v : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>) outs(%o : memref<?x?x?x64xbf16>) {scale = 1.250000e-01 : f32}
  return
}
