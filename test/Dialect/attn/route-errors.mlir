// RUN: heed-opt %s -split-input-file -verify-diagnostics

// The verifier rules of routed variants (attn.variant's route region and
// route_cases, attn.route).

// expected-error @+1 {{'attn.variant' op has route_cases but no 'route' region}}
attn.variant @v buffers([] : []) shapes [] params {} route_cases [0, 1] score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// expected-error @+1 {{has a 'route' region but no route_cases}}
attn.variant @v buffers([] : []) shapes [] params {} route {
^bb0(%b: index, %h: index):
  %c = arith.constant 0 : i64
  attn.yield %c : i64
} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// expected-error @+1 {{lists route case 1 twice}}
attn.variant @v buffers([] : []) shapes [] params {} route_cases [1, 1] route {
^bb0(%b: index, %h: index):
  %c = arith.constant 0 : i64
  attn.yield %c : i64
} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// The route region sees b and h only, and yields an i64.
// expected-error @+1 {{'route' region must have 2 arguments}}
attn.variant @v buffers([] : []) shapes [] params {} route_cases [0] route {
^bb0(%b: index, %h: index, %q: index):
  %c = arith.constant 0 : i64
  attn.yield %c : i64
} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

attn.variant @v buffers([] : []) shapes [] params {} route_cases [0] route {
^bb0(%b: index, %h: index):
  %c = arith.constant 0 : i32
  // expected-error @+1 {{in the 'route' region must yield 'i64', got 'i32'}}
  attn.yield %c : i32
} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// attn.route only means something in a routed variant...
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  // expected-error @+1 {{'attn.route' op must be inside a variant with a 'route' region}}
  %r = attn.route : i64
  %z = arith.constant 0 : i64
  %t = arith.cmpi eq, %r, %z : i64
  attn.yield %t : i1
}

// -----

// ...and not in the route region that defines it.
attn.variant @v buffers([] : []) shapes [] params {} route_cases [0] route {
^bb0(%b: index, %h: index):
  // expected-error @+1 {{'attn.route' op cannot appear in the 'route' region it reads}}
  %r = attn.route : i64
  attn.yield %r : i64
} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}
