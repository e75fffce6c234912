// Shared input of the GPU targets' sizes.mlir tests (test/Conversion/TileTo*):
// a decode variant that reads the run-time sizes in each of its regions. The
// mask is causal_bottom_right() (q + (Skv - Sq) >= kv), the score a recency
// bias from the end of the keys (Skv - kv), the sink logit reads Hkv, and
// --attn-analyze-mask derives a blocks classifier that reads Sq and Skv.
attn.variant @decode buffers([] : []) shapes [] params {} sink {
^bb0(%b: index, %h: index):
  %hkv = attn.shape <Hkv> : i64
  %f = arith.sitofp %hkv : i64 to f32
  attn.yield %f : f32
} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  %skv = attn.shape <Skv> : i64
  %kvi = arith.index_cast %kv : index to i64
  %back = arith.subi %skv, %kvi : i64
  %backf = arith.sitofp %back : i64 to f32
  %c = arith.constant 0.01 : f32
  %bias = arith.mulf %c, %backf : f32
  %r = arith.subf %s, %bias : f32
  attn.yield %r : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %qi = arith.index_cast %q : index to i64
  %kvi = arith.index_cast %kv : index to i64
  %skv = attn.shape <Skv> : i64
  %sq = attn.shape <Sq> : i64
  %shift = arith.subi %skv, %sq : i64
  %last = arith.addi %qi, %shift : i64
  %m = arith.cmpi sge, %last, %kvi : i64
  attn.yield %m : i1
}
func.func @heed_kernel(%q: memref<?x?x?x64xbf16>, %k: memref<?x?x?x64xbf16>, %v: memref<?x?x?x64xbf16>, %o: memref<?x?x?x64xbf16>) {
  attn.attention @decode ins(%q, %k, %v : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>) outs(%o : memref<?x?x?x64xbf16>) {scale = 1.250000e-01 : f32}
  return
}
