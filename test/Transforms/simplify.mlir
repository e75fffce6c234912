// RUN: heed-opt %s --attn-simplify --split-input-file | FileCheck %s

// --attn-simplify runs the canonicalization patterns of the loaded dialects
// and CSE inside every attn.variant (all of its regions), and nowhere else.

// Constant parameters fold, `true && m` reduces to `m`, and index casts
// repeated by the frontend are shared.
// CHECK-LABEL: attn.variant @params_fold
// CHECK: mask {
// CHECK-NEXT: ^bb0(%{{.*}}: index, %{{.*}}: index, %[[Q:.*]]: index, %[[KV:.*]]: index):
// CHECK-DAG: %[[W:.*]] = arith.constant 512 : i64
// CHECK-DAG: %[[QI:.*]] = arith.index_cast %[[Q]] : index to i64
// CHECK-DAG: %[[KI:.*]] = arith.index_cast %[[KV]] : index to i64
// CHECK-NOT: arith.index_cast
// CHECK: %[[D:.*]] = arith.subi %[[QI]], %[[KI]] : i64
// CHECK: %[[IN:.*]] = arith.cmpi slt, %[[D]], %[[W]] : i64
// CHECK: %[[CAUSAL:.*]] = arith.cmpi sge, %[[QI]], %[[KI]] : i64
// CHECK: %[[R:.*]] = arith.andi %[[IN]], %[[CAUSAL]] : i1
// CHECK-NEXT: attn.yield %[[R]] : i1
attn.variant @params_fold buffers([] : []) shapes [] params {window = 256 : i64} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
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

// -----

// Float identities go where they are exact under IEEE: `x * (0.5 * 2.0)`,
// `x + -0.0`, `x - 0.0` and `x / 1.0` vanish; `x + 0.0` stays (it turns -0.0
// into +0.0).
// CHECK-LABEL: attn.variant @float_identities
// CHECK: score {
// CHECK-NEXT: ^bb0(%[[S:.*]]: f32,
// CHECK-NEXT: %[[Z:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-NEXT: %[[R:.*]] = arith.addf %[[S]], %[[Z]] : f32
// CHECK-NEXT: attn.yield %[[R]] : f32
// CHECK-NEXT: } mask {
attn.variant @float_identities buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  %half = arith.constant 0.5 : f32
  %two = arith.constant 2.0 : f32
  %one = arith.mulf %half, %two : f32
  %x = arith.mulf %s, %one : f32
  %nz = arith.constant -0.0 : f32
  %y = arith.addf %x, %nz : f32
  %pz = arith.constant 0.0 : f32
  %u = arith.subf %y, %pz : f32
  %d = arith.divf %u, %one : f32
  %w = arith.addf %d, %pz : f32
  attn.yield %w : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// Boolean identities: `false || c`, `!!c` and `select(true, c, _)` are `c`.
// CHECK-LABEL: attn.variant @bool_identities
// CHECK: mask {
// CHECK-NEXT: ^bb0(%{{.*}}: index, %{{.*}}: index, %[[Q:.*]]: index, %[[KV:.*]]: index):
// CHECK-NEXT: %[[C:.*]] = arith.cmpi sge, %[[Q]], %[[KV]] : index
// CHECK-NEXT: attn.yield %[[C]] : i1
attn.variant @bool_identities buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %f = arith.constant false
  %t = arith.constant true
  %c = arith.cmpi sge, %q, %kv : index
  %o = arith.ori %f, %c : i1
  %n1 = arith.xori %o, %t : i1
  %n2 = arith.xori %n1, %t : i1
  %s = arith.select %t, %n2, %f : i1
  attn.yield %s : i1
}

// -----

// The frontend's zero-safe floor division and remainder (a zero divisor gives
// 0) by a constant reduce to a plain arith.floordivsi by that constant; the
// bool -> i64 -> bool round trip disappears.
// CHECK-LABEL: attn.variant @floor_division
// CHECK: mask {
// CHECK-NEXT: ^bb0(%{{.*}}: index, %{{.*}}: index, %[[Q:.*]]: index, %[[KV:.*]]: index):
// CHECK-DAG: %[[C16:.*]] = arith.constant 16 : i64
// CHECK-DAG: %[[QI:.*]] = arith.index_cast %[[Q]] : index to i64
// CHECK-DAG: %[[KI:.*]] = arith.index_cast %[[KV]] : index to i64
// CHECK-NOT: arith.select
// CHECK-DAG: %[[QB:.*]] = arith.floordivsi %[[QI]], %[[C16]] : i64
// CHECK-DAG: %[[KD:.*]] = arith.floordivsi %[[KI]], %[[C16]] : i64
// CHECK: %[[KM:.*]] = arith.muli %[[KD]], %[[C16]] : i64
// CHECK: %[[KR:.*]] = arith.subi %[[KI]], %[[KM]] : i64
// CHECK: %[[R:.*]] = arith.cmpi sge, %[[QB]], %[[KR]] : i64
// CHECK-NEXT: attn.yield %[[R]] : i1
attn.variant @floor_division buffers([] : []) shapes [] params {block = 16 : i64} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %q64 = arith.index_cast %q : index to i64
  %kv64 = arith.index_cast %kv : index to i64
  %c16 = arith.constant 16 : i64
  %c0 = arith.constant 0 : i64
  %c1 = arith.constant 1 : i64
  // q floordiv 16
  %z0 = arith.cmpi eq, %c16, %c0 : i64
  %s0 = arith.select %z0, %c1, %c16 : i64
  %qd = arith.floordivsi %q64, %s0 : i64
  %qb = arith.select %z0, %c0, %qd : i64
  // kv floormod 16
  %z1 = arith.cmpi eq, %c16, %c0 : i64
  %s1 = arith.select %z1, %c1, %c16 : i64
  %kd = arith.floordivsi %kv64, %s1 : i64
  %m = arith.muli %kd, %s1 : i64
  %kr = arith.subi %kv64, %m : i64
  %kb = arith.select %z1, %c0, %kr : i64
  %lt = arith.cmpi sge, %qb, %kb : i64
  %e = arith.extui %lt : i1 to i64
  %r = arith.cmpi ne, %e, %c0 : i64
  attn.yield %r : i1
}

// -----

// Dead code goes (an unused attn.load only reads, so it is dead too), and two
// identical reads of a buffer become one.
// CHECK-LABEL: attn.variant @loads
// CHECK: score {
// CHECK-NEXT: ^bb0(%[[S:.*]]: f32,
// CHECK-NEXT: attn.yield %[[S]] : f32
// CHECK: mask {
// CHECK-NEXT: ^bb0(%{{.*}}: index, %{{.*}}: index, %[[Q:.*]]: index, %[[KV:.*]]: index, %[[DOC:.*]]: memref<?xi32>):
// CHECK-DAG: %[[X:.*]] = attn.load %[[DOC]][%[[Q]]] : memref<?xi32> -> i64
// CHECK-DAG: %[[Y:.*]] = attn.load %[[DOC]][%[[KV]]] : memref<?xi32> -> i64
// CHECK-NOT: attn.load
// CHECK: arith.cmpi eq, %[[X]], %[[Y]] : i64
// CHECK-NOT: attn.load
// CHECK: attn.yield
attn.variant @loads buffers(["doc"] : [memref<?xi32>]) shapes [["Skv"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %doc: memref<?xi32>):
  %unused = attn.load %doc[%kv] : memref<?xi32> -> i64
  %e = math.exp %s : f32
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %doc: memref<?xi32>):
  %x = attn.load %doc[%q] : memref<?xi32> -> i64
  %y = attn.load %doc[%kv] : memref<?xi32> -> i64
  %x2 = attn.load %doc[%q] : memref<?xi32> -> i64
  %m = arith.cmpi eq, %x2, %y : i64
  %c = arith.constant 0 : i64
  %n = arith.cmpi sge, %x, %c : i64
  %r = arith.andi %m, %n : i1
  attn.yield %r : i1
}

// -----

// The blocks region is simplified too: the unused casts of b and h go, and
// `select(!empty, PARTIAL, EMPTY)` becomes a zero extension.
// CHECK-LABEL: attn.variant @blocks
// CHECK: blocks {
// CHECK-NEXT: ^bb0(%{{.*}}: index, %{{.*}}: index, %{{.*}}: index, %[[QHI:.*]]: index, %[[KVLO:.*]]: index, %{{.*}}: index):
// CHECK-NEXT: %[[NE:.*]] = arith.cmpi sge, %[[QHI]], %[[KVLO]] : index
// CHECK-NEXT: %[[R:.*]] = arith.extui %[[NE]] : i1 to i8
// CHECK-NEXT: attn.yield %[[R]] : i8
attn.variant @blocks buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %0 = arith.cmpi sge, %q, %kv : index
  attn.yield %0 : i1
} blocks {
^bb0(%b: index, %h: index, %qlo: index, %qhi: index, %kvlo: index, %kvhi: index):
  %bi = arith.index_cast %b : index to i64
  %hi = arith.index_cast %h : index to i64
  %e = arith.cmpi slt, %qhi, %kvlo : index
  %empty = arith.constant 0 : i8
  %partial = arith.constant 1 : i8
  %t = arith.constant true
  %ne = arith.xori %e, %t : i1
  %r = arith.select %ne, %partial, %empty : i8
  attn.yield %r : i8
}

// -----

attn.variant @plain buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// Code outside variants is left alone.
// CHECK-LABEL: func.func @untouched
// CHECK: arith.mulf
// CHECK: attn.attention @plain
func.func @untouched(%x: f32, %q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) -> f32 {
  %one = arith.constant 1.0 : f32
  %y = arith.mulf %x, %one : f32
  attn.attention @plain ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>)
      outs(%o : memref<?x?x?x64xf32>) {scale = 1.0 : f32}
  return %y : f32
}
