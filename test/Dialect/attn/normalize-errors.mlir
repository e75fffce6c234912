// RUN: heed-opt %s -split-input-file -verify-diagnostics
// The verifier rules of the normalizations (attn.variant's normalize,
// sigmoid_bias and sink region; attn.tile.store, attn.tile.sink).

// expected-error @+1 {{'attn.variant' op has a sigmoid_bias but normalizes by softmax}}
attn.variant @v buffers([] : []) shapes [] params {} sigmoid_bias 1.0 score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// expected-error @+1 {{has a 'sink' region, but a sink logit needs softmax}}
attn.variant @v buffers([] : []) shapes [] params {} normalize <sigmoid> sink {
^bb0(%b: index, %h: index):
  %z = arith.constant 0.0 : f32
  attn.yield %z : f32
} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

attn.variant @v buffers([] : []) shapes [] params {} sink {
^bb0(%b: index, %h: index):
  %z = arith.constant 0 : i64
  // expected-error @+1 {{in the 'sink' region must yield 'f32', got 'i64'}}
  attn.yield %z : i64
} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// expected-error @+1 {{'sink' region must have 2 arguments}}
attn.variant @v buffers([] : []) shapes [] params {} sink {
^bb0(%b: index, %h: index, %q: index):
  %z = arith.constant 0.0 : f32
  attn.yield %z : f32
} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
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

func.func @no_sink(%b: index, %h: index) {
  // expected-error @+1 {{@plain has no sink logit}}
  %x = attn.tile.sink @plain[%b, %h]
  return
}

// -----

func.func @sigmoid_sink(%a: !attn.tile<16x64xf32, acc>, %m: !attn.tile<16xf32, row>, %span: !attn.span<16>,
                        %o: memref<?x?x?x64xf32>, %x: f32, %b: index) {
  // expected-error @+1 {{a sink logit needs softmax, not sigmoid}}
  attn.tile.store %a, %m, %m to %o[%b, %b] span(%span) sink(%x) normalize <sigmoid> : !attn.tile<16x64xf32, acc>, !attn.tile<16xf32, row>, !attn.tile<16xf32, row>, memref<?x?x?x64xf32>, !attn.span<16>
  return
}
