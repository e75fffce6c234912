// RUN: heed-opt %s --attn-to-tile --split-input-file --verify-diagnostics
// What --attn-to-tile needs from the passes before it.

attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}
func.func @no_tiling(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  // expected-error @+1 {{'attn.attention' op has no tiling: run --attn-choose-tiling first}}
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
func.func @patches_without_grid(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  // expected-error @+1 {{'attn.attention' op is tiled by patches of a grid its variant's classifier does not use (run --attn-choose-tiling before --attn-analyze-mask)}}
  attn.attention @v ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.0 : f32, tiling = #attn.tiling<q = [4, 4], kv = [4, 4], grid = [24]>}
  return
}

// -----

attn.variant @doc buffers(["doc"] : [memref<?xi32>]) shapes [["Skv"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %doc: memref<?xi32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %doc: memref<?xi32>):
  %t = arith.constant true
  attn.yield %t : i1
} blocks {
^bb0(%b: index, %h: index, %ql: index, %qh: index, %kl: index, %kh: index, %doc: memref<?xi32>, %s: memref<?x?x2xi64>):
  %p = arith.constant 1 : i8
  attn.yield %p : i8
}
func.func @missing_summaries(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %doc: memref<?xi32>) {
  // expected-error @+1 {{'attn.attention' op needs the summaries of the variant's rank-1 integer buffers for its block classifier (run --attn-runtime-abi, or run without --attn-analyze-mask)}}
  attn.attention @doc ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) buffers(%doc : memref<?xi32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.0 : f32, tiling = #attn.tiling<q = [16], kv = [16]>}
  return
}

// -----

attn.variant @g buffers(["r"] : [memref<?x?x?xf32>]) shapes [["B", "Sq", "H"]] params {} gate [0, 0, 1, 2] score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %r: memref<?x?x?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %r: memref<?x?x?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}
func.func @gated_without_rows(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %r: memref<?x?x?xf32>) {
  // expected-error @+1 {{'attn.attention' op needs gate_rows and gate_counts: variant 'g' is gated (run --attn-runtime-abi)}}
  attn.attention @g ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>) buffers(%r : memref<?x?x?xf32>) outs(%o : memref<?x?x?x64xf32>) {scale = 1.0 : f32, tiling = #attn.tiling<q = [16], kv = [16]>}
  return
}
