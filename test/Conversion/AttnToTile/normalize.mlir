// RUN: heed-opt %s --attn-choose-tiling="block-q=16" --attn-analyze-mask --attn-to-tile --split-input-file --verify-diagnostics | FileCheck %s
// RUN: heed-opt %s --attn-choose-tiling="block-q=16" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --convert-attn-tile-to-cpu --split-input-file | FileCheck %s --check-prefix=CPU
// The normalizations in the tile loop: sigmoid carries only the accumulator
// (no max, no sum, no rescale); a sink logit enters only the store.

attn.variant @sigmoid buffers([] : []) shapes [] params {} normalize <sigmoid> sigmoid_bias -2.500000e+00 score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %m = arith.cmpi uge, %q, %kv : index
  attn.yield %m : i1
}

// CHECK-LABEL: func.func @sigmoid_kernel
// CHECK: %[[ACC:.*]] = attn.tile.fill 0.000000e+00 : !attn.tile<16x64xf32, acc>
// CHECK: scf.for %{{.*}} iter_args(%[[A:.*]] = %[[ACC]]) -> (!attn.tile<16x64xf32, acc>) {
// CHECK-NOT: attn.tile.softmax
// CHECK: %[[S:.*]] = attn.tile.apply @sigmoid
// CHECK-NEXT: %[[P:.*]] = attn.tile.sigmoid %[[S]] bias -2.500000e+00 : !attn.tile<16x16xf32, s>
// CHECK-NEXT: %[[NA:.*]] = attn.tile.pv %[[P]], %{{.*}}, %[[A]] rows(%{{.*}} : !attn.span<16>) : !attn.tile<16x16xf32, s>, !attn.tile<16x64xbf16, v>, !attn.tile<16x64xf32, acc>{{$}}
// CHECK-NEXT: scf.yield %[[NA]] : !attn.tile<16x64xf32, acc>
// CHECK: attn.tile.store %{{.*}} lse(%{{.*}} : memref<?x?x?xf32>) normalize <sigmoid>
// CPU-LABEL: func.func @sigmoid_kernel
// CPU-NOT: attn.
// CPU: math.absf {{.*}} : vector<16xf32>
// CPU: arith.divf {{.*}} : vector<16xf32>
// The store writes NaN to the lse.
// CPU: arith.constant dense<0x7FC00000> : vector<16xf32>
func.func @sigmoid_kernel(%q: memref<?x?x?x64xbf16>, %k: memref<?x?x?x64xbf16>, %o: memref<?x?x?x64xbf16>, %lse: memref<?x?x?xf32>) {
  attn.attention @sigmoid ins(%q, %k, %k : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>) outs(%o : memref<?x?x?x64xbf16>) lse(%lse : memref<?x?x?xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

attn.variant @sink_logits buffers(["sinks"] : [memref<?xf32>]) shapes [["H"]] params {} sink {
^bb0(%b: index, %h: index, %sinks: memref<?xf32>):
  %x = attn.load %sinks[%h] : memref<?xf32> -> f32
  attn.yield %x : f32
} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %sinks: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %sinks: memref<?xf32>):
  %m = arith.cmpi uge, %q, %kv : index
  attn.yield %m : i1
}

// The head's sink logit once per work item; the loop is the plain online
// softmax; the store takes the sink.
// CHECK-LABEL: func.func @sink_kernel
// CHECK: attn.tile.work
// CHECK: %[[X:.*]] = attn.tile.sink @sink_logits[%{{.*}}, %{{.*}}] buffers(%{{.*}} : memref<?xf32>) status(%{{.*}} : memref<1xi32>)
// CHECK: scf.for
// CHECK: attn.tile.softmax
// CHECK: attn.tile.pv %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} rows
// CHECK: attn.tile.store {{.*}} lse(%{{.*}} : memref<?x?x?xf32>) sink(%[[X]])
// CPU-LABEL: func.func @sink_kernel
// CPU-NOT: attn.tile
// The sink read by a bounds-checked scalar load.
// CPU: memref.load %{{.*}} : memref<?xf32>
// CPU: arith.maximumf {{.*}} : vector<16xf32>
func.func @sink_kernel(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %lse: memref<?x?x?xf32>, %sinks: memref<?xf32>, %st: memref<1xi32>) {
  attn.attention @sink_logits ins(%q, %k, %k : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) buffers(%sinks : memref<?xf32>) outs(%o : memref<?x?x?x64xf32>) lse(%lse : memref<?x?x?xf32>) status(%st : memref<1xi32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

attn.variant @off_by_one buffers([] : []) shapes [] params {} sink {
^bb0(%b: index, %h: index):
  %z = arith.constant 0.000000e+00 : f32
  attn.yield %z : f32
} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// A constant sink (softmax-off-by-one) needs no attn.tile.sink.
// CHECK-LABEL: func.func @off_by_one_kernel
// CHECK-NOT: attn.tile.sink
// CHECK: %[[Z:.*]] = arith.constant 0.000000e+00 : f32
// CHECK: attn.tile.store {{.*}} sink(%[[Z]])
func.func @off_by_one_kernel(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  attn.attention @off_by_one ins(%q, %k, %k : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}
