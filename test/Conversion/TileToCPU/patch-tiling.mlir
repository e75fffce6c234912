// RUN: heed-opt %s --attn-simplify --attn-choose-tiling="block-q=16" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --convert-attn-tile-to-cpu --canonicalize --cse | FileCheck %s
// RUN: heed-opt %s --attn-simplify --attn-choose-tiling="block-q=16 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --convert-attn-tile-to-cpu --canonicalize --cse | FileCheck %s --check-prefix=FLAT

// A window on a ? x 24 grid, tiled by 4 x 4 patches. The lowering defines
// the tile counts the runtime sizes its work with (ceil(ceil(S / 24) / 4)
// bands of 24 / 4 = 6 patches), and walks KV patches by two nested loops
// (rows of patches, then patches in a row), each bounded by two bisections.
// CHECK-LABEL: func.func @lower_grid
// CHECK: scf.for
// CHECK: scf.while
// CHECK: scf.while
// CHECK: scf.for
// CHECK: scf.while
// CHECK: scf.while
// CHECK: scf.for
// CHECK: vector.fma
// CHECK-LABEL: func.func @heed_num_q_tiles
// CHECK-NOT: attn.num_tiles
// CHECK-DAG: %[[C24:.*]] = arith.constant 24 : index
// CHECK-DAG: %[[C4:.*]] = arith.constant 4 : index
// CHECK-DAG: %[[C6:.*]] = arith.constant 6 : index
// CHECK: %[[ROWS:.*]] = arith.ceildivui %arg0, %[[C24]]
// CHECK: %[[BANDS:.*]] = arith.ceildivui %[[ROWS]], %[[C4]]
// CHECK: %[[N:.*]] = arith.muli %[[BANDS]], %[[C6]]
// CHECK: return %[[N]]
// FLAT-LABEL: func.func @heed_num_q_tiles
// FLAT: %[[C16:.*]] = arith.constant 16 : index
// FLAT: %[[N:.*]] = arith.ceildivui %arg0, %[[C16]]
// FLAT: return %[[N]]
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
func.func @lower_grid(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  attn.attention @grid2d ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>)
      outs(%o : memref<?x?x?x64xf32>) {scale = 1.0 : f32}
  return
}
func.func @heed_num_q_tiles(%s: index) -> index {
  %n = attn.num_tiles %s of @grid2d side <q> : index
  return %n : index
}
