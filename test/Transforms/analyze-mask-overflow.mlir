// RUN: heed-opt %s --attn-simplify --attn-analyze-mask --split-input-file | FileCheck %s

// i64 arithmetic wraps: the bounds of q + x come with a check that neither
// end overflowed (the sum's sign differs from both operands' only then), and
// the comparison is unknown (PARTIAL) where one did. Issue 19: with
// x = INT64_MAX this mask visited no block.
// CHECK-LABEL: attn.variant @sum
// CHECK-SAME: sparsity = #attn.sparsity<closed_form>
// CHECK: blocks {
// CHECK: ^bb0(%{{.*}}: index, %{{.*}}: index, %[[QLO:.*]]: index, %[[QHI:.*]]: index,
// CHECK-DAG: %[[MAX:.*]] = arith.constant 9223372036854775807 : i64
// CHECK-DAG: %[[qlo:.*]] = arith.index_cast %[[QLO]]
// CHECK: %[[LO:.*]] = arith.addi %[[qlo]], %[[MAX]]
// CHECK: %[[X:.*]] = arith.xori %[[qlo]], %[[LO]]
// CHECK: %[[Y:.*]] = arith.xori %[[MAX]], %[[LO]]
// CHECK: %[[SIGNS:.*]] = arith.andi %[[X]], %[[Y]]
// CHECK: arith.cmpi sge, %[[SIGNS]], %{{.*}}
// CHECK: attn.yield %{{.*}} : i8
attn.variant @sum buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %x = arith.constant 9223372036854775807 : i64
  %qi = arith.index_cast %q : index to i64
  %kvi = arith.index_cast %kv : index to i64
  %s = arith.addi %qi, %x : i64
  %m = arith.cmpi sgt, %s, %kvi : i64
  attn.yield %m : i1
}

// -----

// A product of two intervals: its corners, each from a widening multiply
// whose high half must be the sign of the low one.
// CHECK-LABEL: attn.variant @product
// CHECK: blocks {
// CHECK: %[[LOW:.*]], %[[HIGH:.*]] = arith.mulsi_extended
// CHECK: %[[SIGN:.*]] = arith.shrsi %[[LOW]]
// CHECK: arith.cmpi eq, %[[HIGH]], %[[SIGN]]
attn.variant @product buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %qi = arith.index_cast %q : index to i64
  %kvi = arith.index_cast %kv : index to i64
  %p = arith.muli %qi, %kvi : i64
  %c = arith.constant 1000 : i64
  %m = arith.cmpi slt, %p, %c : i64
  attn.yield %m : i1
}

// -----

// A product by a constant: the factor's range whose products fit, compared
// with the bounds (no widening multiply): 2^62 * q fits for q in [-2, 1].
// CHECK-LABEL: attn.variant @scaled
// CHECK: blocks {
// CHECK-NOT: arith.mulsi_extended
// CHECK-DAG: arith.constant -2 : i64
// CHECK-DAG: arith.constant 1 : i64
// CHECK: attn.yield
attn.variant @scaled buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %qi = arith.index_cast %q : index to i64
  %kvi = arith.index_cast %kv : index to i64
  %c = arith.constant 4611686018427387904 : i64
  %p = arith.muli %qi, %c : i64
  %m = arith.cmpi sgt, %p, %kvi : i64
  attn.yield %m : i1
}

// -----

// Division by -1 is a negation, which wraps at the smallest i64: checked
// like a subtraction from 0, and no arith.floordivsi by -1 (it would trap).
// CHECK-LABEL: attn.variant @negated
// CHECK: blocks {
// CHECK-NOT: arith.floordivsi
// CHECK: arith.subi %{{.*}}, %{{.*}} : i64
// CHECK: attn.yield
attn.variant @negated buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %qi = arith.index_cast %q : index to i64
  %kvi = arith.index_cast %kv : index to i64
  %min = arith.constant -9223372036854775808 : i64
  %x = arith.addi %qi, %min : i64
  %d = arith.constant -1 : i64
  %n = arith.floordivsi %x, %d : i64
  %m = arith.cmpi slt, %n, %kvi : i64
  attn.yield %m : i1
}
