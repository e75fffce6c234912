// RUN: heed-opt %s --split-input-file --verify-diagnostics
// Every verifier rule of the tile types and ops.

// expected-error @+1 {{a tile of role 'row' has rank 1}}
func.func @f(%t: !attn.tile<16x16xf32, row>) { return }

// -----

// expected-error @+1 {{a tile of role 'acc' holds f32}}
func.func @f(%t: !attn.tile<16x16xbf16, acc>) { return }

// -----

// expected-error @+1 {{a tile of role 'q' holds f32, f16 or bf16}}
func.func @f(%t: !attn.tile<16x16xi32, q>) { return }

// -----

// expected-error @+1 {{a tile of role 's' holds f32, f16 or bf16}}
func.func @f(%t: !attn.tile<16x16xi32, s>) { return }

// -----

// Only pv and convert take narrowed probabilities: the ops that compute on
// scores take f32.
func.func @f(%s: !attn.tile<16x16xbf16, s>, %m: !attn.tile<16xf32, row>) {
  // expected-error @+1 {{operand #0 must be attn tile of role S (f32)}}
  %m2, %l2, %p, %a = attn.tile.softmax %s, %m, %m : !attn.tile<16x16xbf16, s>, !attn.tile<16xf32, row>
  return
}

// -----

func.func @f(%p: !attn.tile<16x16xf32, s>) {
  // expected-error @+1 {{converts a tile's elements, not its shape}}
  %r = attn.tile.convert %p : !attn.tile<16x16xf32, s> to !attn.tile<16x32xbf16, s>
  return
}

// -----

func.func @f(%p: !attn.tile<16x16xf16, s>) {
  // expected-error @+1 {{converts between f32 and a 16-bit type, not 'f16' to 'bf16'}}
  %r = attn.tile.convert %p : !attn.tile<16x16xf16, s> to !attn.tile<16x16xbf16, s>
  return
}

// -----

func.func @f(%p: !attn.tile<16x16xf16, s>, %v: !attn.tile<16x64xbf16, v>, %acc: !attn.tile<16x64xf32, acc>) {
  // expected-error @+1 {{takes p in f32 or in v's type ('bf16')}}
  %r = attn.tile.pv %p, %v, %acc : !attn.tile<16x16xf16, s>, !attn.tile<16x64xbf16, v>, !attn.tile<16x64xf32, acc>
  return
}

// -----

// expected-error @+1 {{unknown tile role 'w'}}
func.func @f(%t: !attn.tile<16x16xf32, w>) { return }

// -----

func.func @f(%n: index) {
  // expected-error @+1 {{body must take three index arguments (batch, head, tile)}}
  attn.tile.work %n, %n, %n {
  ^bb0(%b: index, %h: index):
  }
  return
}

// -----

func.func @f(%n: index) {
  // expected-error @+1 {{takes one tile number or 2 patch coordinates, got 3}}
  %s = attn.tile.span %n[%n, %n, %n] tiling <q = [4, 4], kv = [4, 4], grid = [8]> side <q> : !attn.span<16>
  return
}

// -----

func.func @f(%n: index) {
  // expected-error @+1 {{span size 8 differs from the tile's 16 lanes}}
  %s = attn.tile.span %n[%n] tiling <q = [16], kv = [16]> side <q> : !attn.span<8>
  return
}

// -----

func.func @f(%Q: memref<?x?x?x64xf32>, %s: !attn.span<16>, %n: index) {
  // expected-error @+1 {{loads q, k or v tiles}}
  %t = attn.tile.load %Q[%n, %n] span(%s) : memref<?x?x?x64xf32>, !attn.span<16> -> !attn.tile<16x64xf32, acc>
  return
}

// -----

func.func @f(%Q: memref<?x?x?x64xf32>, %s: !attn.span<16>, %n: index) {
  // expected-error @+1 {{tile '!attn.tile<16x32xf32, q>' does not match the tensor's head dim and type}}
  %t = attn.tile.load %Q[%n, %n] span(%s) : memref<?x?x?x64xf32>, !attn.span<16> -> !attn.tile<16x32xf32, q>
  return
}

// -----

func.func @f(%Q: memref<?x?x?x64xf32>, %s: !attn.span<8>, %n: index) {
  // expected-error @+1 {{tile rows differ from the span's lanes}}
  %t = attn.tile.load %Q[%n, %n] span(%s) : memref<?x?x?x64xf32>, !attn.span<8> -> !attn.tile<16x64xf32, q>
  return
}

// -----

func.func @f(%Q: memref<?x16x?x64xf32>, %p: memref<?x?xi32>, %s: !attn.span<16>, %n: index) {
  // expected-error @+1 {{reads pages for k and v tiles loaded from the tensor only}}
  %t = attn.tile.load %Q[%n, %n] span(%s) pages(%p : memref<?x?xi32>) {layout = #attn.layout<bshd>} : memref<?x16x?x64xf32>, !attn.span<16> -> !attn.tile<16x64xf32, q>
  return
}

// -----

func.func @f(%K: memref<?x?x?x64xf32>, %p: memref<?x?xi32>, %s: !attn.span<16>, %n: index) {
  // expected-error @+1 {{needs a paged tensor whose page size (dim 2) is static}}
  %t = attn.tile.load %K[%n, %n] span(%s) pages(%p : memref<?x?xi32>) : memref<?x?x?x64xf32>, !attn.span<16> -> !attn.tile<16x64xf32, k>
  return
}

// -----

func.func @f(%q: !attn.tile<16x64xf32, q>, %k: !attn.tile<16x32xf32, k>) {
  // expected-error @+1 {{needs q [R x D], k [N x D] and a result [R x N]}}
  %s = attn.tile.qk %q, %k {scale = 1.0 : f32} : !attn.tile<16x64xf32, q>, !attn.tile<16x32xf32, k> -> !attn.tile<16x16xf32, s>
  return
}

// -----

func.func @f(%p: !attn.tile<16x16xf32, s>, %v: !attn.tile<32x64xf32, v>, %acc: !attn.tile<16x64xf32, acc>, %a: !attn.tile<16xf32, row>) {
  // expected-error @+1 {{needs p [R x N], v [N x Dv], acc [R x Dv] and alpha [R]}}
  %r = attn.tile.pv %p, %v, %acc, %a : !attn.tile<16x16xf32, s>, !attn.tile<32x64xf32, v>, !attn.tile<16x64xf32, acc>, !attn.tile<16xf32, row>
  return
}

// -----

func.func @f(%acc: !attn.tile<16x64xf32, acc>, %m: !attn.tile<16xf32, row>, %O: memref<?x?x?x64xf32>, %s: !attn.span<16>, %g: memref<?x?x?xf32>, %n: index) {
  // expected-error @+1 {{a gate needs gate_dims and gate_dims a gate}}
  attn.tile.store %acc, %m, %m to %O[%n, %n] span(%s) gate(%g : memref<?x?x?xf32>) : !attn.tile<16x64xf32, acc>, !attn.tile<16xf32, row>, !attn.tile<16xf32, row>, memref<?x?x?x64xf32>, !attn.span<16>
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

func.func @f(%n: index) {
  // expected-error @+1 {{needs the blocks region of @v (run --attn-analyze-mask)}}
  %c = attn.tile.classify @v[%n, %n] box(%n, %n, %n, %n)
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
} blocks {
^bb0(%b: index, %h: index, %ql: index, %qh: index, %kl: index, %kh: index):
  %p = arith.constant 1 : i8
  attn.yield %p : i8
}

func.func @f(%n: index) {
  // expected-error @+1 {{takes the coordinates of the 1 outer dim(s)}}
  %a, %b = attn.tile.kv_range @v[%n, %n] rows(%n, %n) of %n outer[] tiling <q = [4, 4], kv = [4, 4], grid = [8]> dim 1
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

func.func @f(%n: index) {
  // expected-error @+1 {{@v is not routed}}
  %r = attn.tile.route @v[%n, %n]
  return
}

// -----

attn.variant @v buffers(["x"] : [memref<?xf32>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %x: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %x: memref<?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}

func.func @f(%s: !attn.tile<16x16xf32, s>, %sp: !attn.span<16>, %n: index) {
  // expected-error @+1 {{takes 1 buffers for @v}}
  %r = attn.tile.apply @v(%s) [%n, %n] rows(%sp) cols(%sp) : !attn.tile<16x16xf32, s>, !attn.span<16>, !attn.span<16>
  return
}

// -----

func.func @f(%s: !attn.tile<16x16xf32, s>, %sp: !attn.span<16>, %n: index) {
  // expected-error @+1 {{refers to an unknown variant @w}}
  %r = attn.tile.apply @w(%s) [%n, %n] rows(%sp) cols(%sp) : !attn.tile<16x16xf32, s>, !attn.span<16>, !attn.span<16>
  return
}

// -----

// expected-error @+1 {{a tile of role 'col' has rank 1}}
func.func @f(%t: !attn.tile<16x16xf32, col>) { return }

// -----

func.func @f(%lse: memref<?x?x?xf32>, %b: index, %seq: index) {
  %rows = attn.tile.span %seq[%b] tiling <q = [16], kv = [32]> side <q> : <16>
  // expected-error @+1 {{loads a row or col tile}}
  %x = attn.tile.load_rows %lse[%b, %b] span(%rows) : memref<?x?x?xf32>, <16> -> !attn.tile<16x16xf32, s>
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
// A transposed (key-major) score tile takes its lse per column.
func.func @f(%s: !attn.tile<32x16xf32, s>, %lse: !attn.tile<16xf32, row>, %b: index, %seq: index) {
  %rows = attn.tile.span %seq[%b] tiling <q = [16], kv = [32]> side <q> : <16>
  %keys = attn.tile.span %seq[%b] tiling <q = [16], kv = [32]> side <kv> : <32>
  // expected-error @+1 {{needs a col tile of 16 lanes (one per query of the transposed score tile), not '!attn.tile<16xf32, row>'}}
  %p = attn.tile.probs @v(%s) lse(%lse) [%b, %b] rows(%rows) cols(%keys) transposed : !attn.tile<32x16xf32, s>, !attn.tile<16xf32, row>, <16>, <32>
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
// A query-major one per row.
func.func @f(%s: !attn.tile<16x32xf32, s>, %lse: !attn.tile<32xf32, row>, %b: index, %seq: index) {
  %rows = attn.tile.span %seq[%b] tiling <q = [16], kv = [32]> side <q> : <16>
  %keys = attn.tile.span %seq[%b] tiling <q = [16], kv = [32]> side <kv> : <32>
  // expected-error @+1 {{needs a row tile of 16 lanes (one per query of the score tile), not '!attn.tile<32xf32, row>'}}
  %p = attn.tile.probs @v(%s) lse(%lse) [%b, %b] rows(%rows) cols(%keys) : !attn.tile<16x32xf32, s>, !attn.tile<32xf32, row>, <16>, <32>
  return
}
