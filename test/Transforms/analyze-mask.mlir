// RUN: heed-opt %s --attn-simplify --attn-analyze-mask --split-input-file | FileCheck %s

// Causal: EMPTY where even the box's highest q is below its lowest kv, FULL
// where its lowest q is at or above its highest kv.
// CHECK-LABEL: attn.variant @causal
// CHECK-SAME: sparsity = #attn.sparsity<closed_form>
// CHECK: blocks {
// CHECK: ^bb0(%[[B:.*]]: index, %[[H:.*]]: index, %[[QLO:.*]]: index, %[[QHI:.*]]: index, %[[KLO:.*]]: index, %[[KHI:.*]]: index):
// CHECK-DAG: %[[qhi:.*]] = arith.index_cast %[[QHI]]
// CHECK-DAG: %[[klo:.*]] = arith.index_cast %[[KLO]]
// CHECK-DAG: arith.cmpi sge, %[[qhi]], %[[klo]]
// CHECK: attn.yield %{{.*}} : i8
attn.variant @causal buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %0 = arith.cmpi sge, %q, %kv : index
  attn.yield %0 : i1
}

// -----

// No mask: every box is FULL.
// CHECK-LABEL: attn.variant @dense
// CHECK-SAME: sparsity = #attn.sparsity<dense>
// CHECK: blocks {
// CHECK: %[[FULL:.*]] = arith.constant 2 : i8
attn.variant @dense buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// Document ids: the blocks region takes the buffer's summary (a sparse
// min/max table) and reads value ranges from it.
// CHECK-LABEL: attn.variant @document
// CHECK-SAME: sparsity = #attn.sparsity<data_dependent>
// CHECK: blocks {
// CHECK: memref<?xi32>, %[[SUM:.*]]: memref<?x?x2xi64>
// CHECK: math.ctlz
// CHECK: memref.load %[[SUM]]
attn.variant @document buffers(["doc"] : [memref<?xi32>]) shapes [["Skv"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %doc: memref<?xi32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %doc: memref<?xi32>):
  %x = attn.load %doc[%q] : memref<?xi32> -> i64
  %y = attn.load %doc[%kv] : memref<?xi32> -> i64
  %m = arith.cmpi eq, %x, %y : i64
  attn.yield %m : i1
}

// -----

// A float read from a buffer cannot be bounded: boxes stay PARTIAL (never
// wrongly EMPTY or FULL).
// CHECK-LABEL: attn.variant @floaty
// CHECK-SAME: sparsity = #attn.sparsity<data_dependent>
// CHECK: blocks {
// CHECK: %[[PARTIAL:.*]] = arith.constant 1 : i8
// CHECK: attn.yield
attn.variant @floaty buffers(["t"] : [memref<?xf32>]) shapes [["Skv"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %t: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %t: memref<?xf32>):
  %x = attn.load %t[%kv] : memref<?xf32> -> f32
  %c = arith.constant 3.5 : f32
  %m = arith.cmpf olt, %x, %c : f32
  attn.yield %m : i1
}
