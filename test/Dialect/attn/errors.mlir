// RUN: heed-opt %s -split-input-file -verify-diagnostics

// expected-error @+1 {{needs one name and one shape per buffer}}
attn.variant @v buffers(["a", "b"] : [memref<?xf32>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %a: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %a: memref<?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// expected-error @+1 {{buffer name 'a' is used twice}}
attn.variant @v buffers(["a", "a"] : [memref<?xf32>, memref<?xf32>]) shapes [["H"], ["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %a: memref<?xf32>, %c: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %a: memref<?xf32>, %c: memref<?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// expected-error @+1 {{buffer 'a' must be a memref}}
attn.variant @v buffers(["a"] : [f32]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %a: f32):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %a: f32):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// expected-error @+1 {{buffer 'a' has unsupported element type 'f64'}}
attn.variant @v buffers(["a"] : [memref<?xf64>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %a: memref<?xf64>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %a: memref<?xf64>):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// expected-error @+1 {{buffer 'a' of rank 2 needs a shape with as many dimensions}}
attn.variant @v buffers(["a"] : [memref<?x?xf32>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %a: memref<?x?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %a: memref<?x?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// expected-error @+1 {{buffer 'a' has dimension "Heads"}}
attn.variant @v buffers(["a"] : [memref<?xf32>]) shapes [["Heads"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %a: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %a: memref<?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// expected-error @+1 {{'score' region must have 5 arguments}}
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// expected-error @+1 {{'score' region argument #0 must be 'f32', got 'f16'}}
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f16, %b: index, %h: index, %q: index, %kv: index):
  %x = arith.extf %s : f16 to f32
  attn.yield %x : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// expected-error @+1 {{'score' region argument #5 must have the type of buffer #0}}
attn.variant @v buffers(["a"] : [memref<?xf32>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %a: memref<?xi32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %a: memref<?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// expected-error @+7 {{must yield 'i1', got 'i32'}}
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant 1 : i32
  attn.yield %t : i32
}

// -----

attn.variant @v buffers(["t"] : [memref<?x?xf32>]) shapes [["H", "H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %t: memref<?x?xf32>):
  // expected-error @+1 {{needs 2 indices for a buffer of rank 2, got 1}}
  %x = attn.load %t[%h] : memref<?x?xf32> -> f32
  attn.yield %x : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %t: memref<?x?xf32>):
  %c = arith.constant true
  attn.yield %c : i1
}

// -----

attn.variant @v buffers(["t"] : [memref<?xi32>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %t: memref<?xi32>):
  // expected-error @+1 {{reading 'i32' must produce 'i64'}}
  %x = attn.load %t[%h] : memref<?xi32> -> f32
  attn.yield %x : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %t: memref<?xi32>):
  %c = arith.constant true
  attn.yield %c : i1
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

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  // expected-error @+1 {{refers to 'missing', which is not an attn.variant}}
  attn.attention @missing ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

attn.variant @vb buffers(["t"] : [memref<?xf32>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %t: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %t: memref<?xf32>):
  %c = arith.constant true
  attn.yield %c : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  // expected-error @+1 {{variant 'vb' reads 1 buffer(s), but 0 were given}}
  attn.attention @vb ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

attn.variant @vb buffers(["t"] : [memref<?xf32>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %t: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %t: memref<?xf32>):
  %c = arith.constant true
  attn.yield %c : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %t: memref<?xi32>) {
  // expected-error @+1 {{buffer #0 ('t') must be a rank-1 memref of 'f32'}}
  attn.attention @vb ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) buffers(%t : memref<?xi32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.0 : f32}
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

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  // expected-error @+1 {{layout must be "bhsd" or "bshd", got "sbhd"}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32, layout = "sbhd"}
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

func.func @f(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  // expected-error @+1 {{scale must be finite}}
  attn.attention @v ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 0x7F800000 : f32}
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

func.func @f(%q: memref<?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  // expected-error @+1 {{query must have rank 4, got rank 3}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
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

func.func @f(%q: memref<?x?x?x64xi32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  // expected-error @+1 {{query must hold f32, f16 or bf16, got 'i32'}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xi32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
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

func.func @f(%q: memref<?x?x?x?xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  // expected-error @+1 {{query must have a static head dimension}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x?xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
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

func.func @f(%q: memref<?x?x?x64xbf16>, %k: memref<?x?x?x64xbf16>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  // expected-error @+1 {{query, key and value must share an element type}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
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

func.func @f(%q: memref<?x?x?x128xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  // expected-error @+1 {{query and key head dims differ: 128 vs 64}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x128xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
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

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x32xf32>, %o: memref<?x?x?x64xf32>) {
  // expected-error @+1 {{value and out head dims differ: 32 vs 64}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x32xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
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

func.func @f(%q: memref<2x?x?x64xf32>, %k: memref<3x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  // expected-error @+1 {{batch sizes of query, key, value and out differ}}
  attn.attention @v ins(%q, %k, %v : memref<2x?x?x64xf32>, memref<3x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
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

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x4x?x64xf32>, %v: memref<?x2x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  // expected-error @+1 {{key and value must have the same heads and length}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x4x?x64xf32>, memref<?x2x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
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

func.func @f(%q: memref<?x8x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x4x?x64xf32>) {
  // expected-error @+1 {{query and out must have the same heads and length}}
  attn.attention @v ins(%q, %k, %v : memref<?x8x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x4x?x64xf32>) {scale = 1.250000e-01 : f32}
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

func.func @f(%q: memref<?x6x?x64xf32>, %k: memref<?x4x?x64xf32>, %v: memref<?x4x?x64xf32>, %o: memref<?x6x?x64xf32>) {
  // expected-error @+1 {{query heads (6) must be a multiple of key/value heads (4)}}
  attn.attention @v ins(%q, %k, %v : memref<?x6x?x64xf32>, memref<?x4x?x64xf32>, memref<?x4x?x64xf32>) outs(%o : memref<?x6x?x64xf32>) {scale = 1.250000e-01 : f32}
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

func.func @f(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %l: memref<?x?xf32>) {
  // expected-error @+1 {{lse must be a rank-3 memref of f32}}
  attn.attention @v ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) lse(%l : memref<?x?xf32>) {scale = 1.0 : f32}
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

func.func @f(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %s: memref<2xi32>) {
  // expected-error @+1 {{status must be memref<1xi32>}}
  attn.attention @v ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) status(%s : memref<2xi32>) {scale = 1.0 : f32}
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

func.func @f(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %s: memref<3xi32>) {
  // expected-error @+1 {{stats must be memref<3xi64>}}
  attn.attention @v ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) stats(%s : memref<3xi32>) {scale = 1.0 : f32}
  return
}
