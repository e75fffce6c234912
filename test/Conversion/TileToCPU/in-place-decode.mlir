// RUN: heed-opt %s --attn-choose-tiling --attn-analyze-mask --attn-to-tile --attn-pack-gqa --convert-attn-tile-to-cpu=bf16-dot=1 --canonicalize | FileCheck %s
// RUN: heed-opt %s --attn-choose-tiling --attn-analyze-mask --attn-to-tile --attn-pack-gqa --convert-attn-tile-to-cpu --canonicalize | FileCheck %s --check-prefix=GENERAL
// The packed decode loop with bf16-dot (InPlaceTiles, docs/decode.md): a
// K or V tile is staged (as f32) only where it has holes; a whole one is
// read in place by the products: Q's rows back to bf16 (vcvtneps2bf16),
// S^T on vdpbf16ps with the K rows 32 keys ahead prefetched per 4-key group,
// P's key pairs interleaved as bf16 (vector.interleave), P V on vdpbf16ps over V rows read
// from the tensor two at a time and interleaved (vector.shuffle), the V rows
// ahead prefetched per key pair. Without bf16-dot, no x86vector op.

attn.variant @plain buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// CHECK-LABEL: func.func @decode(
// CHECK-SAME: %{{[^:]*}}: memref<?x?x?x64xbf16>, %[[K:[^:]*]]: memref<?x?x?x64xbf16>, %[[V:[^:]*]]: memref<?x?x?x64xbf16>
// The packed branch's key loop: staging only where the tile is not whole.
// CHECK: %[[WHOLE:.*]] = arith.cmpi eq, %[[LANES:.*]], %c16 : index
// CHECK-NEXT: %[[PARTIAL:.*]] = arith.cmpi ne, %[[LANES]], %c16 : index
// CHECK-NEXT: scf.if %[[PARTIAL]] {
// CHECK: arith.extf %{{.*}} : vector<64xbf16> to vector<64xf32>
// CHECK: scf.if %[[WHOLE]] {
// CHECK: x86vector.avx512.cvt.packed.f32_to_bf16 %{{.*}} : vector<16xf32> -> vector<16xbf16>
// CHECK: memref.prefetch %[[K]]
// CHECK: %[[KROW:.*]] = vector.load %[[K]][{{.*}}] : memref<?x?x?x64xbf16>, vector<32xbf16>
// CHECK-NEXT: x86vector.avx512.dot %{{.*}}, %{{.*}}, %[[KROW]] : vector<32xbf16> -> vector<16xf32>
// CHECK: } else {
// CHECK: scf.if %{{.*}} {
// CHECK: vector.interleave %{{.*}}, %{{.*}} : vector<16xbf16> -> vector<32xbf16>
// CHECK: scf.for
// CHECK: memref.prefetch %[[V]]
// CHECK: %[[V0:.*]] = vector.load %[[V]][{{.*}}] : memref<?x?x?x64xbf16>, vector<32xbf16>
// CHECK: %[[V1:.*]] = vector.load %[[V]][{{.*}}] : memref<?x?x?x64xbf16>, vector<32xbf16>
// CHECK-NEXT: vector.shuffle %[[V0]], %[[V1]] [0, 32, 1, 33,
// CHECK: x86vector.avx512.dot
// CHECK: return

// GENERAL-LABEL: func.func @decode(
// GENERAL-NOT: x86vector
// GENERAL: return
func.func @decode(%q: memref<?x?x?x64xbf16>, %k: memref<?x?x?x64xbf16>, %v: memref<?x?x?x64xbf16>, %o: memref<?x?x?x64xbf16>) {
  attn.attention @plain ins(%q, %k, %v : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>) outs(%o : memref<?x?x?x64xbf16>) {scale = 1.250000e-01 : f32}
  return
}
