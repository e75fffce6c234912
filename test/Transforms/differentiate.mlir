// RUN: heed-opt %s --attn-differentiate --attn-simplify --split-input-file --verify-diagnostics | FileCheck %s

// --attn-differentiate writes @v_grad beside each variant @v: its score
// region yields d score' / d score and states each float buffer element's
// partial derivative with attn.grad_add; the mask is kept as it is.
// (--attn-simplify folds the adjoint seed's multiplications by 1.0.)

// Softcap: c * tanh(s / c), so d/ds = (1 - tanh(s / c)^2) * c / c.
// CHECK-LABEL: attn.variant @softcap buffers
// CHECK-LABEL: attn.variant @softcap_grad buffers([] : []) shapes []
// CHECK-SAME: derivative_of = "softcap"
// CHECK-SAME: gradients = array<i64>
// CHECK: score {
// CHECK-NEXT: ^bb0(%[[S:.*]]: f32,
// CHECK-DAG: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK-DAG: %[[C:.*]] = arith.constant 2.000000e+00 : f32
// CHECK: %[[X:.*]] = arith.divf %[[S]], %[[C]] : f32
// CHECK: %[[T:.*]] = math.tanh %[[X]] : f32
// CHECK: %[[T2:.*]] = arith.mulf %[[T]], %[[T]] : f32
// CHECK: %[[SECH:.*]] = arith.subf %[[ONE]], %[[T2]] : f32
// CHECK: %[[DX:.*]] = arith.mulf %[[SECH]], %[[C]] : f32
// CHECK: %[[DS:.*]] = arith.divf %[[DX]], %[[C]] : f32
// CHECK-NEXT: attn.yield %[[DS]] : f32
// CHECK: mask {
// CHECK: arith.cmpi sge
attn.variant @softcap buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  %c = arith.constant 2.0 : f32
  %x = arith.divf %s, %c : f32
  %t = math.tanh %x : f32
  %r = arith.mulf %c, %t : f32
  attn.yield %r : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %m = arith.cmpi sge, %q, %kv : index
  attn.yield %m : i1
}

// -----

// A learned relative-position table: d/ds = 1, and the element read gets
// d/dtable = 1 at the same indices; the gradient buffer follows the others.
// CHECK-LABEL: attn.variant @rel_bias_grad buffers(["table", "dtable"] : [memref<?x9xf32>, memref<?x9xf32>]) shapes {{\[}}["H", "9"], ["H", "9"]]
// CHECK-SAME: gradients = array<i64: 0>
// CHECK: ^bb0(%{{.*}}: f32, %{{.*}}: index, %[[H:.*]]: index, %{{.*}}: index, %{{.*}}: index, %{{.*}}: memref<?x9xf32>, %[[DT:.*]]: memref<?x9xf32>):
// CHECK: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK-NOT: attn.load
// CHECK: %[[COL:.*]] = arith.addi
// CHECK-NEXT: attn.grad_add %[[ONE]] to %[[DT]][%[[H]], %[[COL]]] : f32, memref<?x9xf32>
// CHECK-NEXT: attn.yield %[[ONE]] : f32
// CHECK: mask {
// CHECK-NEXT: ^bb0({{.*}}, %{{.*}}: memref<?x9xf32>, %{{.*}}: memref<?x9xf32>):
attn.variant @rel_bias buffers(["table"] : [memref<?x9xf32>]) shapes [["H", "9"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %t: memref<?x9xf32>):
  %d = arith.subi %kv, %q : index
  %lo = arith.constant -4 : index
  %hi = arith.constant 4 : index
  %c1 = arith.maxsi %d, %lo : index
  %c2 = arith.minsi %c1, %hi : index
  %col = arith.addi %c2, %hi : index
  %bias = attn.load %t[%h, %col] : memref<?x9xf32> -> f32
  %r = arith.addf %s, %bias : f32
  attn.yield %r : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %t: memref<?x9xf32>):
  %m = arith.constant true
  attn.yield %m : i1
}

// -----

// ALiBi: s + slopes[h] * f32(kv - q): d/dslopes = f32(kv - q), and nothing
// flows into the integer distance.
// CHECK-LABEL: attn.variant @alibi_grad
// CHECK-SAME: gradients = array<i64: 0>
// CHECK: ^bb0(%{{.*}}: f32, %{{.*}}: index, %[[H:.*]]: index, %{{.*}}: index, %{{.*}}: index, %{{.*}}: memref<?xf32>, %[[DSL:.*]]: memref<?xf32>):
// CHECK: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK: %[[DIST:.*]] = arith.sitofp
// CHECK-NEXT: attn.grad_add %[[DIST]] to %[[DSL]][%[[H]]] : f32, memref<?xf32>
// CHECK-NEXT: attn.yield %[[ONE]] : f32
attn.variant @alibi buffers(["slopes"] : [memref<?xf32>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %sl: memref<?xf32>):
  %slope = attn.load %sl[%h] : memref<?xf32> -> f32
  %qi = arith.index_cast %q : index to i64
  %ki = arith.index_cast %kv : index to i64
  %d = arith.subi %ki, %qi : i64
  %df = arith.sitofp %d : i64 to f32
  %bias = arith.mulf %slope, %df : f32
  %r = arith.addf %s, %bias : f32
  attn.yield %r : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %sl: memref<?xf32>):
  %m = arith.cmpi sge, %q, %kv : index
  attn.yield %m : i1
}

// -----

// select and max: the branch taken gets the adjoint; max splits a tie in
// halves (PyTorch's torch.maximum); abs' (0) = 0.
// CHECK-LABEL: attn.variant @piecewise_grad
// CHECK: ^bb0(%[[S:.*]]: f32,
// CHECK-DAG: %[[HALF:.*]] = arith.constant 5.000000e-01 : f32
// CHECK-DAG: %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-DAG: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK-DAG: %[[MONE:.*]] = arith.constant -1.000000e+00 : f32
// CHECK: %[[C:.*]] = arith.cmpi sgt
// CHECK: %[[TAKEN:.*]] = arith.select %[[C]], %[[ONE]], %[[ZERO]] : f32
// CHECK: %[[OTHER:.*]] = arith.select %[[C]], %[[ZERO]], %[[ONE]] : f32
// CHECK: %[[NEG:.*]] = arith.cmpf olt, %[[S]], %[[ZERO]] : f32
// CHECK: %[[SNEG:.*]] = arith.select %[[NEG]], %[[MONE]], %[[ZERO]] : f32
// CHECK: %[[POS:.*]] = arith.cmpf ogt, %[[S]], %[[ZERO]] : f32
// CHECK: %[[SIGN:.*]] = arith.select %[[POS]], %[[ONE]], %[[SNEG]] : f32
// CHECK: %[[DABS:.*]] = arith.mulf %[[OTHER]], %[[SIGN]] : f32
// CHECK: %[[WIN:.*]] = arith.cmpf ogt, %[[S]], %[[MONE]] : f32
// CHECK: %[[TIE:.*]] = arith.cmpf oeq, %[[S]], %[[MONE]] : f32
// CHECK: %[[SPLIT:.*]] = arith.select %[[TIE]], %[[HALF]], %[[ZERO]] : f32
// CHECK: %[[SHARE:.*]] = arith.select %[[WIN]], %[[ONE]], %[[SPLIT]] : f32
// CHECK: %[[DMAX:.*]] = arith.mulf %[[TAKEN]], %[[SHARE]] : f32
// CHECK: %[[D:.*]] = arith.addf %[[DABS]], %[[DMAX]] : f32
// CHECK-NEXT: attn.yield %[[D]] : f32
attn.variant @piecewise buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  %floor = arith.constant -1.0 : f32
  %m = arith.maxnumf %s, %floor : f32
  %a = math.absf %s : f32
  %c = arith.cmpi sgt, %q, %kv : index
  %r = arith.select %c, %m, %a : f32
  attn.yield %r : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %m = arith.constant true
  attn.yield %m : i1
}

// -----

// A buffer read only in the mask needs no gradient (and gets none); an
// integer buffer never does.
// CHECK-LABEL: attn.variant @mask_only_grad buffers(["w", "doc"] : [memref<?xf32>, memref<?xi32>])
// CHECK-SAME: gradients = array<i64>
attn.variant @mask_only buffers(["w", "doc"] : [memref<?xf32>, memref<?xi32>]) shapes [["Skv"], ["Skv"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %w: memref<?xf32>, %doc: memref<?xi32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %w: memref<?xf32>, %doc: memref<?xi32>):
  %x = attn.load %w[%kv] : memref<?xf32> -> f32
  %z = arith.constant 0.0 : f32
  %m = arith.cmpf ogt, %x, %z : f32
  attn.yield %m : i1
}

// -----

// A float buffer that reaches the score only through a comparison: its
// gradient would be zero almost everywhere, which is an error.
// expected-error @+1 {{score is not differentiable in buffer 'w': it reaches the score only through comparisons or integer conversions}}
attn.variant @thresholded buffers(["w"] : [memref<?xf32>]) shapes [["Skv"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %w: memref<?xf32>):
  %x = attn.load %w[%kv] : memref<?xf32> -> f32
  %z = arith.constant 0.0 : f32
  %c = arith.cmpf ogt, %x, %z : f32
  %n = arith.constant -1.0e+30 : f32
  %r = arith.select %c, %s, %n : f32
  attn.yield %r : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %w: memref<?xf32>):
  %m = arith.constant true
  attn.yield %m : i1
}

// -----

// An f32 op without a derivative rule is named.
attn.variant @remainder buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  %c = arith.constant 3.0 : f32
  // expected-error @+1 {{'arith.remf' op has no derivative rule}}
  %r = arith.remf %s, %c : f32
  attn.yield %r : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %m = arith.constant true
  attn.yield %m : i1
}

// -----

// A sink logit: the derivative's sink region keeps yielding the logit (its
// lowering weighs the partials by it) and states d sink / d sinks[h] =
// 2 (1 - tanh^2) with attn.grad_add; the buffer the sink reads gets a
// gradient although the score does not read it.
// CHECK-LABEL: attn.variant @sink_grad buffers(["sinks", "dsinks"] : [memref<?xf32>, memref<?xf32>]) shapes {{\[}}["H"], ["H"]]
// CHECK-SAME: gradients = array<i64: 0>
// CHECK: sink {
// CHECK-NEXT: ^bb0(%{{.*}}: index, %[[H:.*]]: index, %[[SK:.*]]: memref<?xf32>, %[[DSK:.*]]: memref<?xf32>):
// CHECK-DAG: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK-DAG: %[[TWO:.*]] = arith.constant 2.000000e+00 : f32
// CHECK: %[[X:.*]] = attn.load %[[SK]][%[[H]]]
// CHECK: %[[T:.*]] = math.tanh %[[X]] : f32
// CHECK: %[[LOGIT:.*]] = arith.mulf %[[T]], %[[TWO]] : f32
// CHECK: %[[T2:.*]] = arith.mulf %[[T]], %[[T]] : f32
// CHECK: %[[SECH:.*]] = arith.subf %[[ONE]], %[[T2]] : f32
// CHECK: %[[D:.*]] = arith.mulf %[[SECH]], %[[TWO]] : f32
// CHECK: attn.grad_add %[[D]] to %[[DSK]][%[[H]]] : f32, memref<?xf32>
// CHECK-NEXT: attn.yield %[[LOGIT]] : f32
// CHECK: score {
// CHECK-NOT: attn.grad_add
// CHECK: mask {
attn.variant @sink buffers(["sinks"] : [memref<?xf32>]) shapes [["H"]] params {} sink {
^bb0(%b: index, %h: index, %sk: memref<?xf32>):
  %x = attn.load %sk[%h] : memref<?xf32> -> f32
  %t = math.tanh %x : f32
  %c = arith.constant 2.0 : f32
  %r = arith.mulf %c, %t : f32
  attn.yield %r : f32
} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %sk: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %sk: memref<?xf32>):
  %m = arith.cmpi sge, %q, %kv : index
  attn.yield %m : i1
}

// -----

// A sink logit that reads a float buffer only through a comparison.
// expected-error @+1 {{score and sink logit are not differentiable in buffer 'sinks': it reaches the score and sink logit only through comparisons or integer conversions}}
attn.variant @sink_step buffers(["sinks"] : [memref<?xf32>]) shapes [["H"]] params {} sink {
^bb0(%b: index, %h: index, %sk: memref<?xf32>):
  %x = attn.load %sk[%h] : memref<?xf32> -> f32
  %z = arith.constant 0.0 : f32
  %c = arith.cmpf ogt, %x, %z : f32
  %one = arith.constant 1.0 : f32
  %r = arith.select %c, %one, %z : f32
  attn.yield %r : f32
} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %sk: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %sk: memref<?xf32>):
  %m = arith.constant true
  attn.yield %m : i1
}

// -----

// An f32 op without a derivative rule in the sink region is named.
attn.variant @sink_remainder buffers(["sinks"] : [memref<?xf32>]) shapes [["H"]] params {} sink {
^bb0(%b: index, %h: index, %sk: memref<?xf32>):
  %x = attn.load %sk[%h] : memref<?xf32> -> f32
  %c = arith.constant 3.0 : f32
  // expected-error @+1 {{'arith.remf' op has no derivative rule: the sink logit cannot be differentiated}}
  %r = arith.remf %x, %c : f32
  attn.yield %r : f32
} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %sk: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %sk: memref<?xf32>):
  %m = arith.constant true
  attn.yield %m : i1
}
