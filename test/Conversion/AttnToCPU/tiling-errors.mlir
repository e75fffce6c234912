// RUN: heed-opt %s --attn-lower-to-cpu --split-input-file --verify-diagnostics
// The CPU lowering takes the tiling --attn-choose-tiling records: without
// one, or with patches of a grid the classifier does not use, it stops.

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
  attn.attention @v ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>)
      outs(%o : memref<?x?x?x64xf32>) {scale = 1.0 : f32}
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
  attn.attention @v ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>)
      outs(%o : memref<?x?x?x64xf32>) {scale = 1.0 : f32, tiling = #attn.tiling<q = [4, 4], kv = [4, 4], grid = [24]>}
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
func.func @count_without_tiling(%n: index) -> index {
  // expected-error @+1 {{'attn.num_tiles' op has no tiling: run --attn-choose-tiling first}}
  %c = attn.num_tiles %n of @v side <q> : index
  return %c : index
}
