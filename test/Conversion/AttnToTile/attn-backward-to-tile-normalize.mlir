// RUN: heed-opt %s --split-input-file --attn-differentiate --attn-backward-to-tile="block-q=8 block-kv=4" | FileCheck %s
// RUN: heed-opt %s --split-input-file --attn-differentiate --attn-backward-to-tile="block-q=8 block-kv=4" --convert-attn-tile-to-cpu | FileCheck %s --check-prefix=CPU

// The backward under the normalizations other than plain softmax.

// A sink logit read from a buffer: the blocks are softmax's (the forward's
// lse includes the sink), and the items of key tile 0 add the logit's
// gradient -sum_i exp(x - lse_i) delta_i of every row of the group's heads
// through the derivative's sink region (attn.tile.grad_sink).
// CHECK-LABEL: func.func @sink_backward
// CHECK: ^bb0(%[[B:.*]]: index, %[[HK:.*]]: index, %[[KT:.*]]: index):
// CHECK: attn.tile.probs @sink(%{{.*}}) lse(%{{.*}})
// CHECK: attn.tile.grad_scores @sink_grad({{.*}}) delta(%{{.*}})
// CHECK: attn.tile.write_rows
// CHECK: attn.tile.write_rows
// CHECK: %[[FIRST:.*]] = arith.cmpi eq, %[[KT]], %{{.*}} : index
// CHECK: scf.if %[[FIRST]] {
// CHECK: scf.for
// CHECK: %[[H:.*]] = arith.addi
// CHECK: scf.for
// CHECK: %[[ROWS:.*]] = attn.tile.span %{{.*}} side <q> : <8>
// CHECK: %[[LSE:.*]] = attn.tile.load_rows %[[LSEIN:.*]][%[[B]], %[[H]]] span(%[[ROWS]])
// CHECK: %[[DELTA:.*]] = attn.tile.load_rows %{{.*}}[%[[B]], %[[H]]] span(%[[ROWS]])
// CHECK: attn.tile.grad_sink @sink_grad lse(%[[LSE]]) delta(%[[DELTA]]) [%[[B]], %[[H]]] rows(%[[ROWS]]) buffers(%{{.*}}, %{{.*}} : memref<?xf32>, memref<?xf32>)

// On the CPU the sink region runs once per span, scalar; the rows' terms
// are reduced and the grad_add becomes a bounds-checked add to dsinks.
// CPU-LABEL: func.func @sink_backward
// CPU: vector.reduction <add>, %{{.*}} : vector<8xf32> into f32
// CPU: %[[A:.*]] = arith.negf %{{.*}} : f32
// CPU: %[[C:.*]] = arith.mulf %[[A]], %{{.*}} : f32
// CPU: scf.if
// CPU: %[[OLD:.*]] = memref.load %[[DS:.*]][%{{.*}}] : memref<?xf32>
// CPU: %[[NEW:.*]] = arith.addf %[[OLD]], %[[C]] : f32
// CPU: memref.store %[[NEW]], %[[DS]][%{{.*}}] : memref<?xf32>
// CPU-NOT: attn.
attn.variant @sink buffers(["sinks"] : [memref<?xf32>]) shapes [["H"]] params {} sink {
^bb0(%b: index, %h: index, %sk: memref<?xf32>):
  %x = attn.load %sk[%h] : memref<?xf32> -> f32
  attn.yield %x : f32
} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %sk: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %sk: memref<?xf32>):
  %m = arith.cmpi sge, %q, %kv : index
  attn.yield %m : i1
}

func.func @sink_backward(%q: memref<?x?x?x16xf32>, %k: memref<?x?x?x16xf32>, %v: memref<?x?x?x8xf32>,
                         %do: memref<?x?x?x8xf32>, %lse: memref<?x?x?xf32>, %delta: memref<?x?x?xf32>,
                         %sinks: memref<?xf32>, %dq: memref<?x?x?x16xf32>, %dk: memref<?x?x?x16xf32>,
                         %dv: memref<?x?x?x8xf32>, %dsinks: memref<?xf32>) {
  attn.attention_backward @sink ins(%q, %k, %v, %do : memref<?x?x?x16xf32>, memref<?x?x?x16xf32>, memref<?x?x?x8xf32>, memref<?x?x?x8xf32>)
      lse(%lse, %delta : memref<?x?x?xf32>, memref<?x?x?xf32>) buffers(%sinks : memref<?xf32>)
      grads(%dq, %dk, %dv : memref<?x?x?x16xf32>, memref<?x?x?x16xf32>, memref<?x?x?x8xf32>)
      buffer_grads(%dsinks : memref<?xf32>) {scale = 0.25 : f32}
  return
}

// -----

// softmax_off_by_one: a constant sink logit has no gradient to add.
// CHECK-LABEL: func.func @off_by_one_backward
// CHECK: attn.tile.probs @obo(
// CHECK: attn.tile.grad_scores @obo_grad(
// CHECK-NOT: attn.tile.grad_sink
// CHECK: return
// CPU-LABEL: func.func @off_by_one_backward
// CPU-NOT: attn.
attn.variant @obo buffers([] : []) shapes [] params {} sink {
^bb0(%b: index, %h: index):
  %x = arith.constant 0.0 : f32
  attn.yield %x : f32
} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %m = arith.cmpi sge, %q, %kv : index
  attn.yield %m : i1
}

func.func @off_by_one_backward(%q: memref<?x?x?x16xf32>, %k: memref<?x?x?x16xf32>, %v: memref<?x?x?x8xf32>,
                               %do: memref<?x?x?x8xf32>, %lse: memref<?x?x?xf32>, %delta: memref<?x?x?xf32>,
                               %dq: memref<?x?x?x16xf32>, %dk: memref<?x?x?x16xf32>, %dv: memref<?x?x?x8xf32>) {
  attn.attention_backward @obo ins(%q, %k, %v, %do : memref<?x?x?x16xf32>, memref<?x?x?x16xf32>, memref<?x?x?x8xf32>, memref<?x?x?x8xf32>)
      lse(%lse, %delta : memref<?x?x?xf32>, memref<?x?x?xf32>)
      grads(%dq, %dk, %dv : memref<?x?x?x16xf32>, memref<?x?x?x16xf32>, memref<?x?x?x8xf32>) {scale = 0.25 : f32}
  return
}

// -----

// Sigmoid: neither lse (NaN in the forward) nor delta is read; the probs
// are the sigmoid weights and dS = dP P (1 - P) f'.
// CHECK-LABEL: func.func @sigmoid_backward
// CHECK-NOT: attn.tile.load_rows
// CHECK: %[[ZERO:.*]] = attn.tile.fill 0.000000e+00 : !attn.tile<8xf32, row>
// CHECK: attn.tile.probs @sig(%{{.*}}) lse(%[[ZERO]])
// CHECK: attn.tile.grad_scores @sig_grad({{.*}}) delta(%[[ZERO]])
// CHECK-NOT: attn.tile.load_rows
// CHECK-NOT: attn.tile.grad_sink
// CHECK: return

// On the CPU the weights are 1 / (1 + e^-|z|) or e^-|z| / (1 + e^-|z|) with
// z = s + bias (bias -3), and dS multiplies dP by P (1 - P).
// CPU-LABEL: func.func @sigmoid_backward
// CPU: %[[BIAS:.*]] = arith.constant dense<-3.000000e+00> : vector<8xf32>
// CPU: arith.addf %{{.*}}, %[[BIAS]] : vector<8xf32>
// CPU: %[[Q:.*]] = arith.subf %cst{{[_0-9]*}}, %[[P:[0-9]+]] : vector<8xf32>
// CPU-NEXT: %[[W:.*]] = arith.mulf %[[P]], %[[Q]] : vector<8xf32>
// CPU-NEXT: %[[DP:.*]] = vector.load
// CPU-NEXT: arith.mulf %[[DP]], %[[W]] : vector<8xf32>
// CPU-NOT: attn.
attn.variant @sig buffers([] : []) shapes [] params {} normalize <sigmoid> sigmoid_bias -3.0 score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %m = arith.cmpi sge, %q, %kv : index
  attn.yield %m : i1
}

func.func @sigmoid_backward(%q: memref<?x?x?x16xf32>, %k: memref<?x?x?x16xf32>, %v: memref<?x?x?x8xf32>,
                            %do: memref<?x?x?x8xf32>, %lse: memref<?x?x?xf32>, %delta: memref<?x?x?xf32>,
                            %dq: memref<?x?x?x16xf32>, %dk: memref<?x?x?x16xf32>, %dv: memref<?x?x?x8xf32>) {
  attn.attention_backward @sig ins(%q, %k, %v, %do : memref<?x?x?x16xf32>, memref<?x?x?x16xf32>, memref<?x?x?x8xf32>, memref<?x?x?x8xf32>)
      lse(%lse, %delta : memref<?x?x?xf32>, memref<?x?x?xf32>)
      grads(%dq, %dk, %dv : memref<?x?x?x16xf32>, memref<?x?x?x16xf32>, memref<?x?x?x8xf32>) {scale = 0.25 : f32}
  return
}
