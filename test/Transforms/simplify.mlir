// RUN: heed-opt %s --attn-simplify | FileCheck %s

// Constant parameters fold, identities disappear, repeated casts are shared.
// CHECK-LABEL: attn.variant @fold
// CHECK: score {
// CHECK-NEXT: ^bb0(%[[S:.*]]: f32,
// CHECK-NEXT: attn.yield %[[S]] : f32
// CHECK: mask {
// CHECK: arith.constant 512 : i64
// CHECK-COUNT-2: arith.index_cast
// CHECK-NOT: arith.index_cast
// CHECK: arith.subi
// CHECK: arith.cmpi slt
// CHECK: arith.cmpi sge
// CHECK: arith.andi
// CHECK-NOT: arith.andi
attn.variant @fold buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  %one = arith.constant 1.0 : f32
  %x = arith.mulf %s, %one : f32
  attn.yield %x : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %q1 = arith.index_cast %q : index to i64
  %q2 = arith.index_cast %q : index to i64
  %kv1 = arith.index_cast %kv : index to i64
  %w = arith.constant 256 : i64
  %two = arith.constant 2 : i64
  %w2 = arith.muli %w, %two : i64
  %d = arith.subi %q2, %kv1 : i64
  %c = arith.cmpi slt, %d, %w2 : i64
  %t = arith.constant true
  %m = arith.andi %t, %c : i1
  %g = arith.cmpi sge, %q1, %kv1 : i64
  %r = arith.andi %m, %g : i1
  attn.yield %r : i1
}
