// RUN: heed-opt %s -split-input-file -verify-diagnostics

// One case per verifier rule of the attn dialect (dialects/attn/AttnOps.cpp):
// attn.variant (attributes, then the score/mask/blocks regions), attn.load,
// then attn.attention (symbol uses, then operand types).

// Buffer arrays of different lengths: two names, one type.
// expected-error @+1 {{'attn.variant' op needs one name and one shape per buffer: 1 types, 2 names, 1 shapes}}
attn.variant @v buffers(["a", "b"] : [memref<?xf32>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %a: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %a: memref<?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// Buffer arrays of different lengths: one shape missing.
// expected-error @+1 {{needs one name and one shape per buffer: 2 types, 2 names, 1 shapes}}
attn.variant @v buffers(["a", "b"] : [memref<?xf32>, memref<?xf32>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %a: memref<?xf32>, %c: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %a: memref<?xf32>, %c: memref<?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// Duplicate buffer name.
// expected-error @+1 {{buffer name 'a' is used twice}}
attn.variant @v buffers(["a", "a"] : [memref<?xf32>, memref<?xi32>]) shapes [["H"], ["Skv"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %a: memref<?xf32>, %c: memref<?xi32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %a: memref<?xf32>, %c: memref<?xi32>):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// A buffer that is not a memref.
// expected-error @+1 {{buffer 'a' must be a memref}}
attn.variant @v buffers(["a"] : [tensor<?xf32>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %a: tensor<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %a: tensor<?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// Unsupported buffer element type (f64).
// expected-error @+1 {{buffer 'a' has unsupported element type 'f64' (expected f32, f16, bf16, i1, i8, i32 or i64)}}
attn.variant @v buffers(["a"] : [memref<?xf64>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %a: memref<?xf64>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %a: memref<?xf64>):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// Unsupported buffer element type (i16).
// expected-error @+1 {{buffer 'a' has unsupported element type 'i16'}}
attn.variant @v buffers(["a"] : [memref<?xi16>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %a: memref<?xi16>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %a: memref<?xi16>):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// A shape with fewer dimensions than the buffer has.
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

// A shape that is not an array of dimensions.
// expected-error @+1 {{buffer 'a' of rank 1 needs a shape with as many dimensions}}
attn.variant @v buffers(["a"] : [memref<?xf32>]) shapes ["H"] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %a: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %a: memref<?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// An unknown dimension symbol.
// expected-error @+1 {{buffer 'a' has dimension "Heads"; expected "B", "H", "Hkv", "Sq", "Skv" or a positive integer}}
attn.variant @v buffers(["a"] : [memref<?xf32>]) shapes [["Heads"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %a: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %a: memref<?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// A constant dimension must be positive.
// expected-error @+1 {{buffer 'a' has dimension "0"}}
attn.variant @v buffers(["a"] : [memref<?x?xf32>]) shapes [["H", "0"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %a: memref<?x?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %a: memref<?x?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// A dimension that is not a string.
// expected-error @+1 {{buffer 'a' has dimension 4 : i64}}
attn.variant @v buffers(["a"] : [memref<?xf32>]) shapes [[4]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %a: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %a: memref<?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// Score region: one index argument missing.
// expected-error @+1 {{'score' region must have 5 arguments (5 index/score arguments and one per buffer), got 4}}
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// Mask region: the buffer argument missing.
// expected-error @+1 {{'mask' region must have 5 arguments (4 index/score arguments and one per buffer), got 4}}
attn.variant @v buffers(["a"] : [memref<?xf32>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %a: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// Score region: the score must be f32.
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

// Mask region: indices must be index.
// expected-error @+1 {{'mask' region argument #2 must be 'index', got 'i64'}}
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: i64, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// A buffer argument whose type differs from the declared buffer.
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

// A region that does not end with attn.yield.
// expected-error @+1 {{'score' region must end with attn.yield}}
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  llvm.unreachable
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// The score region must yield f32.
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  %x = arith.truncf %s : f32 to f16
  // expected-error @+1 {{'attn.yield' op in the 'score' region must yield 'f32', got 'f16'}}
  attn.yield %x : f16
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// -----

// The mask region must yield i1.
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant 1 : i32
  // expected-error @+1 {{'attn.yield' op in the 'mask' region must yield 'i1', got 'i32'}}
  attn.yield %t : i32
}

// -----

// Blocks region: a summary argument missing for the rank-1 integer buffer.
// expected-error @+1 {{'blocks' region must have 8 arguments (6 index arguments, one per buffer and one per buffer summary), got 7}}
attn.variant @v buffers(["doc"] : [memref<?xi32>]) shapes [["Skv"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %d: memref<?xi32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %d: memref<?xi32>):
  %t = arith.constant true
  attn.yield %t : i1
} blocks {
^bb0(%b: index, %h: index, %qlo: index, %qhi: index, %kvlo: index, %kvhi: index, %d: memref<?xi32>):
  %c = arith.constant 1 : i8
  attn.yield %c : i8
}

// -----

// Blocks region: a summary must be memref<?x?x2xi64>.
// expected-error @+1 {{'blocks' region argument #7 must be a buffer summary 'memref<?x?x2xi64>'}}
attn.variant @v buffers(["doc"] : [memref<?xi32>]) shapes [["Skv"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %d: memref<?xi32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %d: memref<?xi32>):
  %t = arith.constant true
  attn.yield %t : i1
} blocks {
^bb0(%b: index, %h: index, %qlo: index, %qhi: index, %kvlo: index, %kvhi: index, %d: memref<?xi32>, %sum: memref<?x2xi64>):
  %c = arith.constant 1 : i8
  attn.yield %c : i8
}

// -----

// Blocks region: the box corners must be index.
// expected-error @+1 {{'blocks' region argument #3 must be 'index'}}
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
} blocks {
^bb0(%b: index, %h: index, %qlo: index, %qhi: i64, %kvlo: index, %kvhi: index):
  %c = arith.constant 1 : i8
  attn.yield %c : i8
}

// -----

// Blocks region: a buffer argument of the wrong type.
// expected-error @+1 {{'blocks' region argument #6 must be 'memref<?xf32>'}}
attn.variant @v buffers(["a"] : [memref<?xf32>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %a: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %a: memref<?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
} blocks {
^bb0(%b: index, %h: index, %qlo: index, %qhi: index, %kvlo: index, %kvhi: index, %a: memref<?xf16>):
  %c = arith.constant 1 : i8
  attn.yield %c : i8
}

// -----

// Blocks region: must yield an i8 block class.
// expected-error @+1 {{'blocks' region must yield an i8 block class}}
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
} blocks {
^bb0(%b: index, %h: index, %qlo: index, %qhi: index, %kvlo: index, %kvhi: index):
  %c = arith.constant true
  attn.yield %c : i1
}

// -----

// attn.load needs one index per dimension.
attn.variant @v buffers(["t"] : [memref<?x?xf32>]) shapes [["H", "H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %t: memref<?x?xf32>):
  // expected-error @+1 {{'attn.load' op needs 2 indices for a buffer of rank 2, got 1}}
  %x = attn.load %t[%h] : memref<?x?xf32> -> f32
  attn.yield %x : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %t: memref<?x?xf32>):
  %c = arith.constant true
  attn.yield %c : i1
}

// -----

// Integer elements are read as i64.
attn.variant @v buffers(["t"] : [memref<?xi32>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %t: memref<?xi32>):
  // expected-error @+1 {{'attn.load' op reading 'i32' must produce 'i64'}}
  %x = attn.load %t[%h] : memref<?xi32> -> f32
  attn.yield %x : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %t: memref<?xi32>):
  %c = arith.constant true
  attn.yield %c : i1
}

// -----

// Float elements (f16 here) are read as f32.
attn.variant @v buffers(["t"] : [memref<?xf16>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %t: memref<?xf16>):
  // expected-error @+1 {{'attn.load' op reading 'f16' must produce 'f32'}}
  %x = attn.load %t[%h] : memref<?xf16> -> i64
  %y = arith.sitofp %x : i64 to f32
  attn.yield %y : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %t: memref<?xf16>):
  %c = arith.constant true
  attn.yield %c : i1
}

// -----

// The variant symbol does not exist.
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  // expected-error @+1 {{'attn.attention' op refers to 'missing', which is not an attn.variant}}
  attn.attention @missing ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

// Serving layouts: a page table needs the lengths and a static page size.
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x16x?x64xf32>, %o: memref<?x?x?x64xf32>, %pt: memref<?x?xi32>) {
  // expected-error @+1 {{'attn.attention' op a page_table needs kv_lens (a page table has no lengths)}}
  attn.attention @v ins(%q, %k, %k : memref<?x?x?x64xf32>, memref<?x16x?x64xf32>, memref<?x16x?x64xf32>) page_table(%pt : memref<?x?xi32>) outs(%o : memref<?x?x?x64xf32>) {layout = #attn.layout<bshd>, scale = 1.250000e-01 : f32}
  return
}

func.func @g(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %lens: memref<?xi32>, %pt: memref<?x?xi32>) {
  // expected-error @+1 {{'attn.attention' op a paged key/value cache needs a static page size (dim 1 of key and value)}}
  attn.attention @v ins(%q, %k, %k : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) kv_lens(%lens : memref<?xi32>) page_table(%pt : memref<?x?xi32>) outs(%o : memref<?x?x?x64xf32>) {layout = #attn.layout<bshd>, scale = 1.250000e-01 : f32}
  return
}

func.func @h(%q: memref<2x?x?x64xf32>, %k: memref<2x?x?x64xf32>, %o: memref<2x?x?x64xf32>, %lens: memref<3xi32>) {
  // expected-error @+1 {{'attn.attention' op q_lens must hold one length per batch entry: got 'memref<3xi32>' for query 'memref<2x?x?x64xf32>'}}
  attn.attention @v ins(%q, %k, %k : memref<2x?x?x64xf32>, memref<2x?x?x64xf32>, memref<2x?x?x64xf32>) q_lens(%lens : memref<3xi32>) outs(%o : memref<2x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}

func.func @packed_q_with_q_lens(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %lens: memref<?xi32>, %cu: memref<?xi32>) {
  // expected-error @+1 {{'attn.attention' op takes q_lens or cu_seqlens_q, not both (cu_seqlens_q gives each entry's queries)}}
  attn.attention @v ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) q_lens(%lens : memref<?xi32>) cu_seqlens_q(%cu : memref<?xi32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}

func.func @packed_kv_with_kv_lens(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %lens: memref<?xi32>, %cu: memref<?xi32>) {
  // expected-error @+1 {{'attn.attention' op takes cu_seqlens_kv without kv_lens or a page_table (packed keys give each entry's length; a paged cache is not packed)}}
  attn.attention @v ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) kv_lens(%lens : memref<?xi32>) cu_seqlens_kv(%cu : memref<?xi32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}

func.func @packed_offsets_per_entry(%q: memref<2x?x?x64xf32>, %o: memref<2x?x?x64xf32>, %cu: memref<2xi32>) {
  // expected-error @+1 {{'attn.attention' op cu_seqlens_q must hold batch + 1 offsets: got 'memref<2xi32>' for query 'memref<2x?x?x64xf32>'}}
  attn.attention @v ins(%q, %q, %q : memref<2x?x?x64xf32>, memref<2x?x?x64xf32>, memref<2x?x?x64xf32>) cu_seqlens_q(%cu : memref<2xi32>) outs(%o : memref<2x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

// The symbol exists but is not a variant.
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  // expected-error @+1 {{refers to 'f', which is not an attn.variant}}
  attn.attention @f ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

// Fewer buffers than the variant reads.
attn.variant @v buffers(["t"] : [memref<?xf32>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %buf: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %buf: memref<?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  // expected-error @+1 {{variant 'v' reads 1 buffer(s), but 0 were given}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

// More buffers than the variant reads.
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %t: memref<?xf32>) {
  // expected-error @+1 {{variant 'v' reads 0 buffer(s), but 1 were given}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) buffers(%t : memref<?xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

// A buffer of the wrong element type.
attn.variant @v buffers(["t"] : [memref<?xf32>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %buf: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %buf: memref<?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %t: memref<?xi32>) {
  // expected-error @+1 {{buffer #0 ('t') must be a rank-1 memref of 'f32', got 'memref<?xi32>'}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) buffers(%t : memref<?xi32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

// A buffer of the wrong rank (static sizes may differ, rank may not).
attn.variant @v buffers(["t"] : [memref<?xf32>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %buf: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %buf: memref<?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %t: memref<4x4xf32>) {
  // expected-error @+1 {{buffer #0 ('t') must be a rank-1 memref of 'f32', got 'memref<4x4xf32>'}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) buffers(%t : memref<4x4xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

// Summaries: one per rank-1 integer buffer (doc), not per buffer.
attn.variant @v buffers(["doc", "slopes"] : [memref<?xi32>, memref<?xf32>]) shapes [["Skv"], ["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %d: memref<?xi32>, %sl: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %d: memref<?xi32>, %sl: memref<?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %d: memref<?xi32>, %sl: memref<?xf32>, %s0: memref<?x?x2xi64>) {
  // expected-error @+1 {{variant 'v' has 1 summarized buffer(s), but 2 summaries were given}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) buffers(%d, %sl : memref<?xi32>, memref<?xf32>) summaries(%s0, %s0 : memref<?x?x2xi64>, memref<?x?x2xi64>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

// Summaries must be memref<?x?x2xi64>.
attn.variant @v buffers(["doc", "slopes"] : [memref<?xi32>, memref<?xf32>]) shapes [["Skv"], ["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %d: memref<?xi32>, %sl: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %d: memref<?xi32>, %sl: memref<?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %d: memref<?xi32>, %sl: memref<?xf32>, %s0: memref<?x?x2xi32>) {
  // expected-error @+1 {{summaries must be 'memref<?x?x2xi64>'}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) buffers(%d, %sl : memref<?xi32>, memref<?xf32>) summaries(%s0 : memref<?x?x2xi32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

// Unknown layout.
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  // expected-error @+2 {{expected ::heed::attn::Layout to be one of: bhsd, bshd}}
  // expected-error @+1 {{failed to parse Attn_LayoutAttr parameter 'value'}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32, layout = #attn.layout<sbhd>}
  return
}

// -----

// The scale must be finite: +inf.
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  // expected-error @+1 {{scale must be finite}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 0x7F800000 : f32}
  return
}

// -----

// The scale must be finite: NaN.
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  // expected-error @+1 {{scale must be finite}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 0x7FC00000 : f32}
  return
}

// -----

// Rank 4: a rank-3 query.
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

// Rank 4: a rank-5 key.
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  // expected-error @+1 {{key must have rank 4, got rank 5}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

// Rank 4: a rank-3 out.
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x64xf32>) {
  // expected-error @+1 {{out must have rank 4, got rank 3}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x64xf32>) {scale = 1.0 : f32}
  return
}

// -----

// Storage must be a float: an integer query.
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

// Storage must be f32, f16 or bf16: an f64 out.
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf64>) {
  // expected-error @+1 {{out must hold f32, f16 or bf16, got 'f64'}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf64>) {scale = 1.0 : f32}
  return
}

// -----

// The head dimension must be static (query).
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

// The head dimension must be static (value).
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x?xf32>, %o: memref<?x?x?x64xf32>) {
  // expected-error @+1 {{value must have a static head dimension}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x?xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

// q, k and v share an element type.
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

// Query and key head dims agree.
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

// Value and out head dims agree.
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

// Static batch sizes agree.
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

// Batch of out against query.
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<2x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<1x?x?x64xf32>) {
  // expected-error @+1 {{batch sizes of query, key, value and out differ}}
  attn.attention @v ins(%q, %k, %v : memref<2x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<1x?x?x64xf32>) {scale = 1.0 : f32}
  return
}

// -----

// Key and value have the same heads.
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

// Key and value have the same length (bshd: dimension 1).
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x128x?x64xf32>, %v: memref<?x256x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  // expected-error @+1 {{key and value must have the same heads and length}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x128x?x64xf32>, memref<?x256x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.0 : f32, layout = #attn.layout<bshd>}
  return
}

// -----

// Query and out have the same heads.
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
  attn.attention @v ins(%q, %k, %v : memref<?x8x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x4x?x64xf32>) {scale = 1.0 : f32}
  return
}

// -----

// Query and out have the same length.
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x100x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x99x64xf32>) {
  // expected-error @+1 {{query and out must have the same heads and length}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x100x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x99x64xf32>) {scale = 1.0 : f32}
  return
}

// -----

// GQA: query heads a multiple of key/value heads (bhsd).
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
  attn.attention @v ins(%q, %k, %v : memref<?x6x?x64xf32>, memref<?x4x?x64xf32>, memref<?x4x?x64xf32>) outs(%o : memref<?x6x?x64xf32>) {scale = 1.0 : f32}
  return
}

// -----

// GQA in bshd: the heads are dimension 2.
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x8x64xf32>, %k: memref<?x?x3x64xf32>, %v: memref<?x?x3x64xf32>, %o: memref<?x?x8x64xf32>) {
  // expected-error @+1 {{query heads (8) must be a multiple of key/value heads (3)}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x8x64xf32>, memref<?x?x3x64xf32>, memref<?x?x3x64xf32>) outs(%o : memref<?x?x8x64xf32>) {scale = 1.0 : f32, layout = #attn.layout<bshd>}
  return
}

// -----

// lse must have rank 3.
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %l: memref<?x?xf32>) {
  // expected-error @+1 {{lse must be a rank-3 memref of f32 [B, Hq, Sq]}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) lse(%l : memref<?x?xf32>) {scale = 1.0 : f32}
  return
}

// -----

// lse must hold f32.
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %l: memref<?x?x?xf16>) {
  // expected-error @+1 {{lse must be a rank-3 memref of f32 [B, Hq, Sq]}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) lse(%l : memref<?x?x?xf16>) {scale = 1.0 : f32}
  return
}

// -----

// lse sizes must match the query's [B, Hq, Sq] (bshd: heads are dim 2 of q).
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<2x100x8x64xf32>, %k: memref<2x100x8x64xf32>, %v: memref<2x100x8x64xf32>, %o: memref<2x100x8x64xf32>, %l: memref<2x100x8xf32>) {
  // expected-error @+1 {{lse must be [B, Hq, Sq] of the query: got 'memref<2x100x8xf32>' for query 'memref<2x100x8x64xf32>'}}
  attn.attention @v ins(%q, %k, %v : memref<2x100x8x64xf32>, memref<2x100x8x64xf32>, memref<2x100x8x64xf32>) outs(%o : memref<2x100x8x64xf32>) lse(%l : memref<2x100x8xf32>) {scale = 1.0 : f32, layout = #attn.layout<bshd>}
  return
}

// -----

// Zero key/value heads with query heads: no division by zero, an error.
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x4x?x64xf32>, %k: memref<?x0x?x64xf32>, %v: memref<?x0x?x64xf32>, %o: memref<?x4x?x64xf32>) {
  // expected-error @+1 {{key/value heads are 0 but query heads are not}}
  attn.attention @v ins(%q, %k, %v : memref<?x4x?x64xf32>, memref<?x0x?x64xf32>, memref<?x0x?x64xf32>) outs(%o : memref<?x4x?x64xf32>) {scale = 1.0 : f32}
  return
}

// -----

// status must be memref<1xi32>: two elements.
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %s: memref<2xi32>) {
  // expected-error @+1 {{status must be memref<1xi32>}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) status(%s : memref<2xi32>) {scale = 1.0 : f32}
  return
}

// -----

// status must be memref<1xi32>: a dynamic size.
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %s: memref<?xi32>) {
  // expected-error @+1 {{status must be memref<1xi32>}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) status(%s : memref<?xi32>) {scale = 1.0 : f32}
  return
}

// -----

// status must be memref<1xi32>: i64.
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %s: memref<1xi64>) {
  // expected-error @+1 {{status must be memref<1xi32>}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) status(%s : memref<1xi64>) {scale = 1.0 : f32}
  return
}

// -----

// stats must be memref<3xi64>.
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %k: memref<?x?x?x64xf32>, %v: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %s: memref<3xi32>) {
  // expected-error @+1 {{stats must be memref<3xi64>}}
  attn.attention @v ins(%q, %k, %v : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) stats(%s : memref<3xi32>) {scale = 1.0 : f32}
  return
}

// -----

// work needs both bounds (only the generic form can leave one out).
attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %begin: index) {
  // expected-error @+1 {{'attn.attention' op work needs both a begin and an end}}
  "attn.attention"(%q, %q, %q, %o, %begin) <{variant = @v, scale = 1.0 : f32, operandSegmentSizes = array<i32: 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0>}>
      : (memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, index) -> ()
  return
}

// -----

// A tiling's patches need one side per grid dim.
// expected-error @+1 {{each side's patch needs one side per grid dim (2), got 2 and 1}}
func.func @f() attributes {t = #attn.tiling<q = [4, 4], kv = [16], grid = [24]>} { return }

// -----

// expected-error @+1 {{a patch side cannot exceed its grid extent 8}}
func.func @f() attributes {t = #attn.tiling<q = [1, 16], kv = [2, 8], grid = [8]>} { return }

// -----

// expected-error @+1 {{tile sides must be in [1, 4096], got 0}}
func.func @f() attributes {t = #attn.tiling<q = [0], kv = [16]>} { return }

// -----

// expected-error @+1 {{grid extents must be in [1, 2^30], got 0}}
func.func @f() attributes {g = #attn.grid<[0]>} { return }

// -----

// expected-error @+1 {{a residue dim must be an inner dim in [1, 2], got 3}}
func.func @f() attributes {g = #attn.grid<[4, 8], residues = [3]>} { return }

// -----

attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%n: index) -> index {
  // expected-error @+1 {{refers to an unknown variant @w}}
  %c = attn.num_tiles %n of @w side <q> : index
  return %c : index
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

func.func @f(%q: memref<2x4x16x64xf32>, %o: memref<2x4x16x64xf32>, %kl: memref<2xi32>, %ord: memref<3xi32>) {
  // expected-error @+1 {{'attn.attention' op entry_order must name one entry per batch entry: got 'memref<3xi32>' for query 'memref<2x4x16x64xf32>'}}
  attn.attention @v ins(%q, %q, %q : memref<2x4x16x64xf32>, memref<2x4x16x64xf32>, memref<2x4x16x64xf32>) kv_lens(%kl : memref<2xi32>) entry_order(%ord : memref<3xi32>) outs(%o : memref<2x4x16x64xf32>) {scale = 1.0 : f32}
  return
}
