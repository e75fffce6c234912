// RUN: heed-opt %s --attn-choose-tiling --attn-to-tile --attn-specialize-routes | FileCheck %s
// --attn-specialize-routes: after the head's route value, one copy of the
// work item per case with the value a constant, and a default whose value
// matches no case.

attn.variant @duo buffers(["kind"] : [memref<?xi32>]) shapes [["H"]] params {} route_cases [0, 7] route {
^bb0(%b: index, %h: index, %kind: memref<?xi32>):
  %k = attn.load %kind[%h] : memref<?xi32> -> i64
  attn.yield %k : i64
} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %kind: memref<?xi32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %kind: memref<?xi32>):
  %r = attn.route : i64
  %zero = arith.constant 0 : i64
  %full = arith.cmpi eq, %r, %zero : i64
  %m = arith.cmpi uge, %q, %kv : index
  %x = arith.ori %full, %m : i1
  attn.yield %x : i1
}
// CHECK-LABEL: func.func @routed
// CHECK: %[[R:.*]] = attn.tile.route @duo
// CHECK: %[[SEL:.*]] = arith.index_cast %[[R]] : i64 to index
// CHECK: scf.index_switch %[[SEL]]
// CHECK: case 0 {
// CHECK: %[[C0:.*]] = arith.constant 0 : i64
// CHECK: attn.tile.apply @duo{{.*}} route(%[[C0]])
// CHECK: case 7 {
// CHECK: %[[C7:.*]] = arith.constant 7 : i64
// CHECK: attn.tile.apply @duo{{.*}} route(%[[C7]])
// CHECK: default {
// CHECK: %[[CD:.*]] = arith.constant -1 : i64
// CHECK: attn.tile.apply @duo{{.*}} route(%[[CD]])
func.func @routed(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %kind: memref<?xi32>) {
  attn.attention @duo ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) buffers(%kind : memref<?xi32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}
