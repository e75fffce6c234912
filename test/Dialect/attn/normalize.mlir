// RUN: heed-opt %s --split-input-file | heed-opt --split-input-file | FileCheck %s
// RUN: heed-opt %s --split-input-file --mlir-print-op-generic | heed-opt --split-input-file | FileCheck %s
// Round trips of the normalizations: sigmoid with its bias, a sink region,
// and the tile ops they use.

// CHECK-LABEL: attn.variant @sigmoid
// CHECK-SAME: normalize <sigmoid> sigmoid_bias -6.930000e+00 score
attn.variant @sigmoid buffers([] : []) shapes [] params {} normalize <sigmoid> sigmoid_bias -6.930000e+00 score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// CHECK-LABEL: attn.variant @sinks
// CHECK: sink {
// CHECK-NEXT: ^bb0(%{{.*}}: index, %{{.*}}: index, %[[S:.*]]: memref<?xf32>):
// CHECK-NEXT: attn.load %[[S]]
// CHECK: } score {
attn.variant @sinks buffers(["sinks"] : [memref<?xf32>]) shapes [["H"]] params {} sink {
^bb0(%b: index, %h: index, %sinks: memref<?xf32>):
  %x = attn.load %sinks[%h] : memref<?xf32> -> f32
  attn.yield %x : f32
} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %sinks: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %sinks: memref<?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}

// CHECK-LABEL: func.func @tile_ops
// CHECK: attn.tile.sink @sinks[%{{.*}}, %{{.*}}] buffers(%{{.*}} : memref<?xf32>)
// CHECK: attn.tile.sigmoid %{{.*}} bias 1.000000e+00 : !attn.tile<16x16xf32, s>
// CHECK: attn.tile.pv %{{.*}}, %{{.*}}, %{{.*}} : !attn.tile<16x16xf32, s>, !attn.tile<16x64xf32, v>, !attn.tile<16x64xf32, acc>
// CHECK: attn.tile.store {{.*}} sink(%{{.*}}) :
// CHECK: attn.tile.store {{.*}} normalize <sigmoid> :
func.func @tile_ops(%s: !attn.tile<16x16xf32, s>, %v: !attn.tile<16x64xf32, v>, %acc: !attn.tile<16x64xf32, acc>,
                    %m: !attn.tile<16xf32, row>, %l: !attn.tile<16xf32, row>, %span: !attn.span<16>,
                    %o: memref<?x?x?x64xf32>, %sinks: memref<?xf32>, %b: index, %h: index) {
  %x = attn.tile.sink @sinks[%b, %h] buffers(%sinks : memref<?xf32>)
  %p = attn.tile.sigmoid %s bias 1.0 : !attn.tile<16x16xf32, s>
  %a = attn.tile.pv %p, %v, %acc : !attn.tile<16x16xf32, s>, !attn.tile<16x64xf32, v>, !attn.tile<16x64xf32, acc>
  attn.tile.store %a, %m, %l to %o[%b, %h] span(%span) sink(%x) : !attn.tile<16x64xf32, acc>, !attn.tile<16xf32, row>, !attn.tile<16xf32, row>, memref<?x?x?x64xf32>, !attn.span<16>
  attn.tile.store %a, %m, %l to %o[%b, %h] span(%span) normalize <sigmoid> : !attn.tile<16x64xf32, acc>, !attn.tile<16xf32, row>, !attn.tile<16xf32, row>, memref<?x?x?x64xf32>, !attn.span<16>
  return
}
