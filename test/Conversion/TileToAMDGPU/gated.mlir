// RUN: heed-opt %s --attn-choose-tiling="block-q=128 block-kv=0 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-pipeline-kv="stages=1" --attn-specialize-full-tiles --convert-attn-tile-to-amdgpu --canonicalize --cse | FileCheck %s
// A gated variant (MoH) on MFMA: work item (b, h, t) takes list slots
// [128 t, 128 t + 128) of head (b, h)'s routed-row list (%arg5; %arg6 holds
// the routed counts). A block past the routed count only stores zeros; the
// others read each lane's query row through the list, and the store scales
// the row by its gate (router[b, q, h]).

// CHECK-LABEL: gpu.func @gated
// CHECK: %[[COUNT:.*]] = memref.load %arg6[%{{.*}}] : memref<?xi32>
// CHECK: %[[COUNTIDX:.*]] = arith.index_cast %[[COUNT]] : i32 to index
// CHECK: %[[IDLE:.*]] = arith.cmpi uge, %{{.*}}, %[[COUNTIDX]] : index
// CHECK: scf.if %[[IDLE]] {
// CHECK: memref.load %arg4[%{{.*}}, %{{.*}}, %{{.*}}] : memref<?x?x?xf32>
// CHECK: } else {
// The lane's query row: its slot (the first slot where it is past the tile).
// CHECK: %[[REAL:.*]] = arith.cmpi ult, %[[SLOT:.*]], %{{.*}} : index
// CHECK: %[[SAFE:.*]] = arith.select %[[REAL]], %[[SLOT]], %{{.*}} : index
// CHECK: %[[ROW:.*]] = memref.load %arg5[%[[SAFE]]] : memref<?xi32>
// CHECK: %[[TOKEN:.*]] = arith.index_cast %[[ROW]] : i32 to index
// CHECK: vector.load %arg0[%{{.*}}, %{{.*}}, %[[TOKEN]], %{{.*}}] : memref<?x?x?x64xf16>, vector<4xf16>
// CHECK: amdgpu.mfma 32x32x8
// CHECK: %[[GATE:.*]] = memref.load %arg4[%{{.*}}, %{{.*}}, %{{.*}}] : memref<?x?x?xf32>
// CHECK: arith.mulf %{{.*}}, %[[GATE]] : f32
// CHECK: memref.store %{{.*}}, %arg3[
attn.variant @moh buffers(["router"] : [memref<?x?x?xf32>]) shapes [["B", "Sq", "H"]] params {} gate [0, 0, 1, 2] score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %router: memref<?x?x?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %router: memref<?x?x?xf32>):
  %m = arith.cmpi uge, %q, %kv : index
  attn.yield %m : i1
}
func.func @gated(%q: memref<?x?x?x64xf16>, %k: memref<?x?x?x64xf16>, %v: memref<?x?x?x64xf16>, %o: memref<?x?x?x64xf16>, %router: memref<?x?x?xf32>, %rows: memref<?xi32>, %counts: memref<?xi32>) {
  attn.attention @moh ins(%q, %k, %v : memref<?x?x?x64xf16>, memref<?x?x?x64xf16>, memref<?x?x?x64xf16>) buffers(%router : memref<?x?x?xf32>) outs(%o : memref<?x?x?x64xf16>) gate_rows(%rows : memref<?xi32>) gate_counts(%counts : memref<?xi32>) {scale = 1.250000e-01 : f32}
  return
}
