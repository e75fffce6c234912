// RUN: heed-opt %s --attn-choose-tiling="block-q=64 block-kv=64" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-pipeline-kv --attn-specialize-full-tiles --canonicalize | FileCheck %s
// RUN: heed-opt %s --attn-choose-tiling="block-q=64 block-kv=64" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-pipeline-kv --attn-specialize-full-tiles --convert-attn-tile-to-nvgpu | FileCheck %s --check-prefix=NVGPU
// RUN: not heed-opt %s --attn-choose-tiling="block-q=64 block-kv=64" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-pipeline-kv="stages=1" --convert-attn-tile-to-amdgpu 2>&1 | FileCheck %s --check-prefix=AMD
// RUN: not heed-opt %s --attn-choose-tiling="block-q=64 block-kv=64" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-warp-specialize 2>&1 | FileCheck %s --check-prefix=WS
// The GPU's tile schedule on patches of a token grid (docs/passes.md,
// "Patch tiling", on the GPU): --attn-pipeline-kv stages the innermost
// patch loop (its prologue issued per outer digit, after a barrier), and
// --attn-specialize-full-tiles runs a FULL patch without the mask, its span
// not in bounds (holes past the grid's edges stay masked). The mma.sync
// lowering takes it and records the patches in the launch; AMD's kernel and
// the warp-specialized (wgmma) schedule refuse them clearly.

// A 7 x 7 window on a ? x 24 grid.
attn.variant @grid buffers([] : []) shapes [] params {} score {
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
// CHECK-LABEL: func.func @patches
// CHECK: attn.tile.span %{{.*}}[%{{.*}}] tiling <q = [8, 8], kv = [8, 8], grid = [24]> side <q>
// CHECK: %[[F0:.*]], %[[E0:.*]] = attn.tile.kv_range {{.*}} dim 0
// CHECK: scf.for %[[P0:.*]] = %[[F0]] to %[[E0]]
// CHECK: %[[F1:.*]], %[[E1:.*]] = attn.tile.kv_range {{.*}} outer[%[[P0]]] {{.*}} dim 1
// The prologue: the slots' last readers are done, the first tile of this
// row of patches issued.
// CHECK-NEXT: attn.tile.barrier
// CHECK: attn.tile.span %{{.*}}[%[[P0]], %[[F1]]] {{.*}} side <kv>
// CHECK: attn.tile.copy_kv {{.*}} of 2 async
// CHECK: attn.tile.commit_kv
// CHECK: scf.for %[[P1:.*]] = %[[F1]] to %[[E1]] step %{{.*}} iter_args({{.*}}, %[[CLS:.*]] = %{{.*}}) ->
// CHECK: %[[KS:.*]] = attn.tile.span %{{.*}}[%[[P0]], %[[P1]]] {{.*}} side <kv> : <64>
// CHECK: attn.tile.wait_kv
// The next patch along the row, unless EMPTY.
// CHECK: attn.tile.copy_kv
// CHECK: attn.tile.commit_kv
// FULL (its class alone: a patch's holes are masked in either form).
// CHECK: %[[FULL:.*]] = arith.cmpi eq, %[[CLS]], %c2_i8
// CHECK-NEXT: scf.if %[[FULL]]
// CHECK-NOT: in_bounds
// CHECK: attn.tile.apply @grid(%{{.*}}) [%{{.*}}, %{{.*}}] rows(%{{.*}}) cols(%[[KS]]) mask_if(%false)
// CHECK: } else {
// CHECK: attn.tile.apply @grid(%{{.*}}) [%{{.*}}, %{{.*}}] rows(%{{.*}}) cols(%[[KS]]) mask_if(%{{.*}})

// The launch's grid x counts the query patches (the runtime's
// GPULaunch::queryTiles); K/V rows by cp.async.
// NVGPU: gpu.func @patches({{.*}} attributes {attn.launch = #attn.launch<block_rows = 64, threads = 128, shared_bytes = 36864, grid = [24], patch = [8, 8]>}
// NVGPU: nvgpu.device_async_copy
// AMD: error: 'attn.tile.span' op --convert-attn-tile-to-amdgpu: patch tiles are not lowered to this kernel (choose flat tiles: patch-tiling=false)
// WS: error: 'attn.tile.load' op is a k tile of a patch: --attn-warp-specialize takes flat tiles (patch-tiling=false)
func.func @patches(%q: memref<?x?x?x64xbf16>, %o: memref<?x?x?x64xbf16>) {
  attn.attention @grid ins(%q, %q, %q : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>) outs(%o : memref<?x?x?x64xbf16>) {scale = 1.250000e-01 : f32}
  return
}
