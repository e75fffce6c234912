// RUN: heed-opt %s --attn-choose-tiling --attn-to-tile --convert-attn-tile-to-cpu --canonicalize --cse --split-input-file | FileCheck %s
// A paged key/value cache on the CPU (--convert-attn-tile-to-cpu's k/v
// loads with a page table): key t of batch entry b is slot t % P of page
// page_table[b, t / P]. Where a page holds whole key tiles (P a multiple of
// block-kv) the table is read once per tile (and once for the tile the
// prefetches run ahead to), not once per key.

attn.variant @plain buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// CHECK-LABEL: func.func @whole_tiles(
// CHECK-SAME: %{{[^:]*}}: memref<?x?x?x64xbf16>, %[[K:[^:]*]]: memref<?x32x?x64xbf16>, %{{[^:]*}}: memref<?x32x?x64xbf16>, %{{[^:]*}}: memref<?xi32>, %[[PT:[^:]*]]: memref<?x?xi32>
// The key tile's page, and the page 64 keys ahead, before the row loop.
// CHECK: %[[SLOT:.*]] = arith.divui %{{.*}}, %c32 : index
// CHECK: %[[CLAMPED:.*]] = arith.minui %[[SLOT]], %{{.*}} : index
// CHECK: %[[PAGE:.*]] = memref.load %[[PT]][%{{.*}}, %[[CLAMPED]]] : memref<?x?xi32>
// CHECK: %[[PAGEIDX:.*]] = arith.index_castui %[[PAGE]] : i32 to index
// CHECK: memref.load %[[PT]]
// The tile's real keys, a prefix of consecutive tokens: one loop, no
// per-row test.
// CHECK: scf.for %{{.*}} = %c0 to %{{[^ ]+}} step %c1 {
// CHECK-NOT: memref.load %[[PT]]
// CHECK-NOT: vector.extract
// CHECK: memref.prefetch %[[K]]
// CHECK: %[[POS:.*]] = arith.remui %{{.*}}, %c32 : index
// CHECK: vector.load %[[K]][%[[PAGEIDX]], %[[POS]], %{{.*}}, %c0] : memref<?x32x?x64xbf16>, vector<64xbf16>
func.func @whole_tiles(%q: memref<?x?x?x64xbf16>, %k: memref<?x32x?x64xbf16>, %v: memref<?x32x?x64xbf16>, %lens: memref<?xi32>, %pt: memref<?x?xi32>, %o: memref<?x?x?x64xbf16>) {
  attn.attention @plain ins(%q, %k, %v : memref<?x?x?x64xbf16>, memref<?x32x?x64xbf16>, memref<?x32x?x64xbf16>) kv_lens(%lens : memref<?xi32>) page_table(%pt : memref<?x?xi32>) outs(%o : memref<?x?x?x64xbf16>) {layout = #attn.layout<bshd>, scale = 1.250000e-01 : f32}
  return
}

// -----

attn.variant @plain buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// Pages of 4 keys (bhsd: [pages, Hkv, 4, D]): a key tile spans four, so
// each key reads its page.
// CHECK-LABEL: func.func @small_pages(
// CHECK-SAME: %{{[^:]*}}: memref<?x?x?x64xf32>, %[[K:[^:]*]]: memref<?x?x4x64xf32>, %{{[^:]*}}: memref<?x?x4x64xf32>, %{{[^:]*}}: memref<?xi32>, %[[PT:[^:]*]]: memref<?x?xi32>
// CHECK: scf.for %{{.*}} = %c0 to %{{[^ ]+}} step %c1 {
// CHECK: memref.prefetch %[[K]]
// CHECK: %[[SLOT:.*]] = arith.divui %[[T:.*]], %c4 : index
// CHECK: %[[PAGE:.*]] = memref.load %[[PT]][%{{.*}}, %[[SLOT]]] : memref<?x?xi32>
// CHECK: %[[PAGEIDX:.*]] = arith.index_castui %[[PAGE]] : i32 to index
// CHECK: %[[POS:.*]] = arith.remui %[[T]], %c4 : index
// CHECK: vector.load %[[K]][%[[PAGEIDX]], %{{.*}}, %[[POS]], %c0] : memref<?x?x4x64xf32>, vector<64xf32>
func.func @small_pages(%q: memref<?x?x?x64xf32>, %k: memref<?x?x4x64xf32>, %v: memref<?x?x4x64xf32>, %lens: memref<?xi32>, %pt: memref<?x?xi32>, %o: memref<?x?x?x64xf32>) {
  attn.attention @plain ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x4x64xf32>, memref<?x?x4x64xf32>) kv_lens(%lens : memref<?xi32>) page_table(%pt : memref<?x?xi32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}
