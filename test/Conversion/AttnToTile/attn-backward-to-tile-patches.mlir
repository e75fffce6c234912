// RUN: heed-opt %s --attn-simplify --attn-choose-tiling="block-q=16 block-kv=64" --attn-analyze-mask --attn-differentiate --attn-backward-to-tile | FileCheck %s
// RUN: heed-opt %s --attn-simplify --attn-choose-tiling="block-q=16 block-kv=64" --attn-analyze-mask --attn-differentiate --attn-backward-to-tile --convert-attn-tile-to-cpu | FileCheck %s --check-prefix=CPU
// RUN: heed-opt %s --attn-simplify --attn-choose-tiling="block-q=16 block-kv=64" --attn-analyze-mask --attn-differentiate --attn-backward-to-tile="kernel=dkdv" | FileCheck %s --check-prefix=DKDV
// RUN: heed-opt %s --attn-simplify --attn-choose-tiling="block-q=16 block-kv=64" --attn-analyze-mask --attn-differentiate --attn-backward-to-tile="kernel=dq" | FileCheck %s --check-prefix=DQ
// RUN: heed-opt %s --attn-simplify --attn-choose-tiling="block-q=16 block-kv=64" --attn-analyze-mask | sed 's/tiling = #attn.tiling<q = \[4, 4\], kv = \[8, 8\], grid = \[24\]>/tiling = #attn.tiling<q = [16], kv = [64]>/' | not heed-opt --attn-differentiate --attn-backward-to-tile 2>&1 | FileCheck %s --check-prefix=FLATGRID
// The backward's one loop on patches of a token grid (docs/backward.md,
// "Patches"): --attn-choose-tiling sets the backward op's tiling as the
// forward's (4 x 4 query and 8 x 8 key patches of a ? x 24 grid), the items
// are key patches (the key tile count under that tiling) and the inner loop
// walks the query patches by number, each block classified on its grid box
// and skipped where EMPTY.

// CHECK-LABEL: func.func @backward
// CHECK: attn.num_tiles %{{.*}} of @grid2d side <kv> {tiling = #attn.tiling<q = [4, 4], kv = [8, 8], grid = [24]>}
// CHECK: attn.tile.work
// CHECK: %[[KEYS:.*]] = attn.tile.span %{{.*}}[%{{.*}}] tiling <q = [4, 4], kv = [8, 8], grid = [24]> side <kv> : <64>
// CHECK: attn.num_tiles %{{.*}} of @grid2d side <q> {tiling = #attn.tiling<q = [4, 4], kv = [8, 8], grid = [24]>}
// CHECK: scf.for
// CHECK: scf.for
// CHECK: %[[ROWS:.*]] = attn.tile.span %{{.*}}[%{{.*}}] tiling <q = [4, 4], kv = [8, 8], grid = [24]> side <q> : <16>
// CHECK: attn.tile.classify @grid2d
// CHECK: scf.if
// CHECK: attn.tile.probs @grid2d
// CHECK: attn.tile.grad_scores @grid2d_grad
// CHECK: attn.tile.write_rows {{.*}} span(%[[ROWS]]) accumulate
// CHECK: attn.tile.write_rows {{.*}} span(%[[KEYS]])
// CHECK-NOT: attn.attention_backward
// The CPU lowering takes the patches (no tile op left).
// CPU-LABEL: func.func @backward
// CPU-NOT: attn.tile.
// CPU: return
// A flat tiling beside a classifier of grid boxes (a flat tile crossing a
// grid row is no box): refused, as the forward's --attn-to-tile refuses it.
// FLATGRID: error: 'attn.attention_backward' op is tiled flat, but its variant's classifier decodes boxes of a grid
// The GPUs' two kernels on the same patches: dK/dV's items are key patches,
// its loop walks the query patches by number (dK and dV written once, not
// accumulated); dQ's items are query patches, its loop walks the key patches.
// DKDV: attn.num_tiles %{{.*}} of @grid2d side <kv> {tiling = #attn.tiling<q = [4, 4], kv = [8, 8], grid = [24]>}
// DKDV: attn.tile.work
// DKDV: %[[DKEYS:.*]] = attn.tile.span %{{.*}}[%{{.*}}] tiling <q = [4, 4], kv = [8, 8], grid = [24]> side <kv> : <64>
// DKDV: scf.for
// DKDV: attn.tile.span %{{.*}}[%{{.*}}] tiling <q = [4, 4], kv = [8, 8], grid = [24]> side <q> : <16>
// DKDV: attn.tile.classify @grid2d
// DKDV-NOT: accumulate
// DKDV: attn.tile.write_rows {{.*}} span(%[[DKEYS]])
// DKDV: attn.tile.write_rows {{.*}} span(%[[DKEYS]])
// DQ: attn.num_tiles %{{.*}} of @grid2d side <q> {tiling = #attn.tiling<q = [4, 4], kv = [8, 8], grid = [24]>}
// DQ: attn.tile.work
// DQ: %[[DROWS:.*]] = attn.tile.span %{{.*}}[%{{.*}}] tiling <q = [4, 4], kv = [8, 8], grid = [24]> side <q> : <16>
// DQ: scf.for
// DQ: attn.tile.span %{{.*}}[%{{.*}}] tiling <q = [4, 4], kv = [8, 8], grid = [24]> side <kv> : <64>
// DQ: attn.tile.classify @grid2d
// DQ: attn.tile.write_rows {{.*}} span(%[[DROWS]])

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

func.func @backward(%q: memref<?x?x?x16xf32>, %k: memref<?x?x?x16xf32>, %v: memref<?x?x?x16xf32>,
                    %do: memref<?x?x?x16xf32>, %lse: memref<?x?x?xf32>, %delta: memref<?x?x?xf32>,
                    %dq: memref<?x?x?x16xf32>, %dk: memref<?x?x?x16xf32>, %dv: memref<?x?x?x16xf32>) {
  attn.attention_backward @grid2d ins(%q, %k, %v, %do : memref<?x?x?x16xf32>, memref<?x?x?x16xf32>, memref<?x?x?x16xf32>, memref<?x?x?x16xf32>)
      lse(%lse, %delta : memref<?x?x?xf32>, memref<?x?x?xf32>)
      grads(%dq, %dk, %dv : memref<?x?x?x16xf32>, memref<?x?x?x16xf32>, memref<?x?x?x16xf32>)
      {scale = 0.25 : f32}
  return
}
