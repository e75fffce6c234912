// RUN: heed-opt %s --attn-simplify --attn-choose-tiling --attn-analyze-mask --split-input-file | FileCheck %s
// RUN: heed-opt %s --attn-simplify --attn-choose-tiling="patches=false" --attn-analyze-mask --split-input-file | FileCheck %s --check-prefix=FLAT
// RUN: heed-opt %s --attn-simplify --attn-choose-tiling="block-q=8 block-kv=32" --split-input-file | FileCheck %s --check-prefix=SIZES
// RUN: not heed-opt %s --attn-choose-tiling="block-q=5000" 2>&1 | FileCheck %s --check-prefix=BAD

// BAD: error: attn-choose-tiling: block-q must be in [0, 4096] (0: by schedule) and block-kv in [0, 4096] (0: by head dim)

// A window on a ? x 24 grid: q and kv are read only as row (floordiv 24)
// and column (remainder 24), so tiles are 4 x 4 patches (the attention op's
// tiling, and the kv tile count's), the variant records the grid and the
// blocks region decodes the corner tokens of a box into row and column
// intervals.
// CHECK-LABEL: attn.variant @grid2d
// CHECK-SAME: grid = #attn.grid<[24]>
// CHECK-SAME: sparsity = #attn.sparsity<closed_form>
// CHECK: blocks {
// CHECK: ^bb0(%{{.*}}: index, %{{.*}}: index, %[[QLO:.*]]: index, %[[QHI:.*]]: index, %{{.*}}: index, %{{.*}}: index):
// CHECK: %[[qlo:.*]] = arith.index_cast %[[QLO]]
// CHECK: arith.floordivsi %[[qlo]], %c24_i64
// CHECK: attn.yield %{{.*}} : i8
// CHECK-LABEL: func.func @grid2d_attention
// CHECK: attn.attention @grid2d {{.*}}tiling = #attn.tiling<q = [4, 4], kv = [4, 4], grid = [24]>
// CHECK: attn.num_tiles %{{.*}} of @grid2d side <kv> {tiling = #attn.tiling<q = [4, 4], kv = [4, 4], grid = [24]>}
// FLAT-LABEL: attn.variant @grid2d
// FLAT-NOT: grid
// FLAT: sparsity = #attn.sparsity<closed_form>
// FLAT: tiling = #attn.tiling<q = [32], kv = [16]>
// SIZES-LABEL: attn.variant @grid2d
// SIZES-SAME: grid = #attn.grid<[24]>
// SIZES: tiling = #attn.tiling<q = [2, 4], kv = [4, 8], grid = [24]>
attn.variant @grid2d buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %w = arith.constant 24 : index
  %r = arith.constant 3 : index
  %qr = arith.floordivsi %q, %w : index
  %kr = arith.floordivsi %kv, %w : index
  %qm = arith.muli %qr, %w : index
  %qc = arith.subi %q, %qm : index
  %km = arith.muli %kr, %w : index
  %kc = arith.subi %kv, %km : index
  %dr = arith.subi %qr, %kr : index
  %dc = arith.subi %qc, %kc : index
  %adr = math.absi %dr : index
  %adc = math.absi %dc : index
  %a = arith.cmpi sle, %adr, %r : index
  %c = arith.cmpi sle, %adc, %r : index
  %m = arith.andi %a, %c : i1
  attn.yield %m : i1
}

func.func @grid2d_attention(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %n: index) -> index {
  attn.attention @grid2d ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  %c = attn.num_tiles %n of @grid2d side <kv> : index
  return %c : index
}

// -----

// Three levels: floordiv 30 (the outermost digit), floordiv 5 then
// remainder 6 (the middle one), remainder 5 (the innermost): a ? x 6 x 5 grid,
// tiled by 8 x 2 x 1 patches (no lane past an edge).
// CHECK-LABEL: attn.variant @grid3d
// CHECK-SAME: grid = #attn.grid<[6, 5]>
// CHECK: attn.attention @grid3d {{.*}}tiling = #attn.tiling<q = [8, 2, 1], kv = [8, 2, 1], grid = [6, 5]>
attn.variant @grid3d buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %c30 = arith.constant 30 : index
  %c6 = arith.constant 6 : index
  %c5 = arith.constant 5 : index
  %q0 = arith.floordivsi %q, %c30 : index
  %k0 = arith.floordivsi %kv, %c30 : index
  %q5 = arith.floordivsi %q, %c5 : index
  %q16 = arith.floordivsi %q5, %c6 : index
  %q1m = arith.muli %q16, %c6 : index
  %q1 = arith.subi %q5, %q1m : index
  %k5 = arith.floordivsi %kv, %c5 : index
  %k16 = arith.floordivsi %k5, %c6 : index
  %k1m = arith.muli %k16, %c6 : index
  %k1 = arith.subi %k5, %k1m : index
  %q2m = arith.muli %q5, %c5 : index
  %q2 = arith.subi %q, %q2m : index
  %k2m = arith.muli %k5, %c5 : index
  %k2 = arith.subi %kv, %k2m : index
  %e0 = arith.cmpi eq, %q0, %k0 : index
  %e1 = arith.cmpi eq, %q1, %k1 : index
  %e2 = arith.cmpi sle, %k2, %q2 : index
  %a = arith.andi %e0, %e1 : i1
  %m = arith.andi %a, %e2 : i1
  attn.yield %m : i1
}

func.func @grid3d_attention(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  attn.attention @grid3d ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

// Quotients only (a block layout read, say): blocks of a 1-D sequence, not
// a grid; and q read directly: not a grid either. Both keep flat tiles.
// CHECK-LABEL: attn.variant @quotients
// CHECK-NOT: grid
// CHECK: sparsity
attn.variant @quotients buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %c16 = arith.constant 16 : index
  %qb = arith.floordivsi %q, %c16 : index
  %kb = arith.floordivsi %kv, %c16 : index
  %m = arith.cmpi sge, %qb, %kb : index
  attn.yield %m : i1
}

// -----

// CHECK-LABEL: attn.variant @direct
// CHECK-NOT: grid
// CHECK: sparsity
attn.variant @direct buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %c8 = arith.constant 8 : index
  %qr = arith.floordivsi %q, %c8 : index
  %qm = arith.muli %qr, %c8 : index
  %qc = arith.subi %q, %qm : index
  %kr = arith.floordivsi %kv, %c8 : index
  %e = arith.cmpi eq, %qr, %kr : index
  %l = arith.cmpi sge, %q, %kv : index
  %m = arith.andi %e, %l : i1
  %u = arith.cmpi sge, %qc, %c8 : index
  %r = arith.ori %m, %u : i1
  attn.yield %r : i1
}
