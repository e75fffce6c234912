// RUN: heed-opt %s --attn-runtime-abi --split-input-file --verify-diagnostics | FileCheck %s
// --attn-runtime-abi: the runtime's arguments, in the order the runtime
// calls kernels with: (q, k, v, buffers..., summaries..., [gate_rows,
// gate_counts,] out, [lse,] status, stats, begin, end).

attn.variant @causal buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %m = arith.cmpi sge, %q, %kv : index
  attn.yield %m : i1
}
// No buffers: status, stats and the work range at the end, after lse.
// CHECK-LABEL: func.func @plain
// CHECK-SAME: (%[[Q:[^:]*]]: memref<?x?x?x64xf32>, %{{.*}}: memref<?x?x?x64xf32>, %{{.*}}: memref<?x?x?x64xf32>, %[[O:[^:]*]]: memref<?x?x?x64xf32>, %[[L:[^:]*]]: memref<?x?x?xf32>, %[[ST:[^:]*]]: memref<1xi32>, %[[SS:[^:]*]]: memref<3xi64>, %[[B:[^:]*]]: index, %[[E:[^:]*]]: index)
// CHECK-SAME: attributes {llvm.emit_c_interface}
// CHECK: attn.attention @causal ins(%[[Q]], {{.*}} outs(%[[O]] : {{.*}} lse(%[[L]] : {{.*}} status(%[[ST]] : memref<1xi32>) stats(%[[SS]] : memref<3xi64>) work(%[[B]], %[[E]])
func.func @plain(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %lse: memref<?x?x?xf32>) attributes {llvm.emit_c_interface} {
  attn.attention @causal ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) lse(%lse : memref<?x?x?xf32>) {scale = 1.0 : f32}
  return
}
// Hand-written runtime operands are left as they are.
// CHECK-LABEL: func.func @given
// CHECK-SAME: (%{{[^:]*}}: memref<?x?x?x64xf32>, %{{[^:]*}}: memref<?x?x?x64xf32>, %{{[^:]*}}: memref<1xi32>)
func.func @given(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %status: memref<1xi32>) {
  attn.attention @causal ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) status(%status : memref<1xi32>) {scale = 1.0 : f32}
  return
}

// -----

// A document-id buffer (rank-1 integer: summarized) and a rank-2 bias (not):
// one summary, before the output.
attn.variant @doc buffers(["doc", "bias"] : [memref<?xi32>, memref<?x?xf32>]) shapes [["Skv"], ["Sq", "Skv"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %doc: memref<?xi32>, %bias: memref<?x?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %doc: memref<?xi32>, %bias: memref<?x?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}
// CHECK-LABEL: func.func @summarized
// CHECK-SAME: %[[DOC:[^:]*]]: memref<?xi32>, %[[BIAS:[^:]*]]: memref<?x?xf32>, %[[SUM:[^:]*]]: memref<?x?x2xi64>, %[[O:[^:]*]]: memref<?x?x?x64xf32>, %{{[^:]*}}: memref<1xi32>, %{{[^:]*}}: memref<3xi64>, %{{[^:]*}}: index, %{{[^:]*}}: index)
// CHECK: buffers(%[[DOC]], %[[BIAS]] : {{.*}}) summaries(%[[SUM]] : memref<?x?x2xi64>) outs(%[[O]]
func.func @summarized(%q: memref<?x?x?x64xf32>, %doc: memref<?xi32>, %bias: memref<?x?xf32>, %o: memref<?x?x?x64xf32>) {
  attn.attention @doc ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) buffers(%doc, %bias : memref<?xi32>, memref<?x?xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.0 : f32}
  return
}

// -----

// A gated variant: its routed rows and their counts, before the output.
attn.variant @g buffers(["r"] : [memref<?x?x?xf32>]) shapes [["B", "Sq", "H"]] params {} gate [0, 0, 1, 2] score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %r: memref<?x?x?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %r: memref<?x?x?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}
// CHECK-LABEL: func.func @gated
// CHECK-SAME: %[[R:[^:]*]]: memref<?x?x?xf32>, %[[ROWS:[^:]*]]: memref<?xi32>, %[[COUNTS:[^:]*]]: memref<?xi32>, %[[O:[^:]*]]: memref<?x?x?x64xf32>, %{{[^:]*}}: memref<1xi32>
// CHECK: gate_rows(%[[ROWS]] : memref<?xi32>) gate_counts(%[[COUNTS]] : memref<?xi32>)
func.func @gated(%q: memref<?x?x?x64xf32>, %r: memref<?x?x?xf32>, %o: memref<?x?x?x64xf32>) {
  attn.attention @g ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) buffers(%r : memref<?x?x?xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.0 : f32}
  return
}

// -----

attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}
func.func @two(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  attn.attention @v ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.0 : f32}
  // expected-error @+1 {{attn-runtime-abi: 'two' holds more than one attention op}}
  attn.attention @v ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.0 : f32}
  return
}

// -----

attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}
func.func @local_out(%q: memref<?x?x?x64xf32>) {
  %o = memref.alloc() : memref<1x1x1x64xf32>
  // expected-error @+1 {{attn-runtime-abi: the output must be an argument of 'local_out'}}
  attn.attention @v ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<1x1x1x64xf32>) {scale = 1.0 : f32}
  return
}
