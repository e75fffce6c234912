// RUN: heed-opt %s -split-input-file -verify-diagnostics

// The verifier rules of gated variants (attn.variant's gate attribute and
// attn.attention's gate_rows / gate_counts).

// expected-error @+1 {{gate reads buffer #1, but the variant has 1}}
attn.variant @v buffers(["r"] : [memref<?x?x?xf32>]) shapes [["B", "Sq", "H"]] params {} gate [1, 0, 1, 2] score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %r: memref<?x?x?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %r: memref<?x?x?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// expected-error @+1 {{gate buffer #0 must be a rank-3 float buffer, got 'memref<?x?x?xi32>'}}
attn.variant @v buffers(["r"] : [memref<?x?x?xi32>]) shapes [["B", "Sq", "H"]] params {} gate [0, 0, 1, 2] score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %r: memref<?x?x?xi32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %r: memref<?x?x?xi32>):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// expected-error @+1 {{gate dims must be a permutation of 0, 1, 2}}
attn.variant @v buffers(["r"] : [memref<?x?x?xf32>]) shapes [["B", "Sq", "H"]] params {} gate [0, 0, 0, 2] score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %r: memref<?x?x?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %r: memref<?x?x?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

attn.variant @v buffers(["r"] : [memref<?x?x?xf32>]) shapes [["B", "Sq", "H"]] params {} gate [0, 0, 1, 2] score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %r: memref<?x?x?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %r: memref<?x?x?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}
// The routed rows come with the runtime's operands (--attn-runtime-abi), so
// a gated variant's op may lack them, but not half of them.
func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>,
             %r: memref<?x?x?xf32>, %o: memref<?x?x?x64xf32>, %rows: memref<?xi32>) {
  // expected-error @+1 {{needs both gate_rows and gate_counts or neither}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) buffers(%r : memref<?x?x?xf32>) outs(%o : memref<?x?x?x64xf32>) gate_rows(%rows : memref<?xi32>) {scale = 1.0 : f32}
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
func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>,
             %o: memref<?x?x?x64xf32>, %rows: memref<?xi32>, %counts: memref<?xi32>) {
  // expected-error @+1 {{takes no gate_rows or gate_counts: variant 'v' is not gated}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) gate_rows(%rows : memref<?xi32>) gate_counts(%counts : memref<?xi32>) {scale = 1.0 : f32}
  return
}
