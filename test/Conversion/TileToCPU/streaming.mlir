// RUN: heed-opt %s --attn-choose-tiling --attn-analyze-mask --attn-to-tile --attn-pack-gqa --convert-attn-tile-to-cpu --canonicalize | FileCheck %s
// K/V staging prefetches only where rows stream (read once per call): the
// packed GQA decode loop. The prefill loop (the other branch of the packed
// schedule) reuses K/V tiles from cache and has no prefetches.

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
// The packed (decode) branch: each K and V row prefetches the row 64 keys
// ahead (clamped to the last key): two 64-byte lines of 64 bf16.
// CHECK: memref.prefetch %[[K]][%{{.*}}, %{{.*}}, %[[AHEAD:.*]], %c0], read, locality<3>, data
// CHECK-NEXT: memref.prefetch %[[K]][%{{.*}}, %{{.*}}, %[[AHEAD]], %c32], read, locality<3>, data
// CHECK: vector.load %[[K]]
// CHECK: memref.prefetch %[[V]]
// CHECK: vector.load %[[V]]
// The prefill branch: none.
// CHECK: {{^    }}} else {
// CHECK-NOT: memref.prefetch
// CHECK: return
func.func @decode(%q: memref<?x?x?x64xbf16>, %k: memref<?x?x?x64xbf16>, %v: memref<?x?x?x64xbf16>, %o: memref<?x?x?x64xbf16>) {
  attn.attention @plain ins(%q, %k, %v : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>) outs(%o : memref<?x?x?x64xbf16>) {scale = 1.250000e-01 : f32}
  return
}
