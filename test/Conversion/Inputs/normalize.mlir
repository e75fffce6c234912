// Input of the targets' normalization tests (test/Conversion/TileTo*/
// normalize.mlir): a sigmoid and a sink-logit attention, f16 at head dim 64.

attn.variant @sigmoid buffers([] : []) shapes [] params {} normalize <sigmoid> sigmoid_bias -2.500000e+00 score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %m = arith.cmpi uge, %q, %kv : index
  attn.yield %m : i1
}

func.func @sigmoid_kernel(%q: memref<?x?x?x64xf16>, %k: memref<?x?x?x64xf16>, %v: memref<?x?x?x64xf16>, %o: memref<?x?x?x64xf16>, %lse: memref<?x?x?xf32>) {
  attn.attention @sigmoid ins(%q, %k, %v : memref<?x?x?x64xf16>, memref<?x?x?x64xf16>, memref<?x?x?x64xf16>) outs(%o : memref<?x?x?x64xf16>) lse(%lse : memref<?x?x?xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

attn.variant @sink_logits buffers(["sinks"] : [memref<?xf32>]) shapes [["H"]] params {} sink {
^bb0(%b: index, %h: index, %sinks: memref<?xf32>):
  %x = attn.load %sinks[%h] : memref<?xf32> -> f32
  attn.yield %x : f32
} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %sinks: memref<?xf32>):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %sinks: memref<?xf32>):
  %m = arith.cmpi uge, %q, %kv : index
  attn.yield %m : i1
}

func.func @sink_kernel(%q: memref<?x?x?x64xf16>, %k: memref<?x?x?x64xf16>, %v: memref<?x?x?x64xf16>, %o: memref<?x?x?x64xf16>, %lse: memref<?x?x?xf32>, %sinks: memref<?xf32>) {
  attn.attention @sink_logits ins(%q, %k, %v : memref<?x?x?x64xf16>, memref<?x?x?x64xf16>, memref<?x?x?x64xf16>) buffers(%sinks : memref<?xf32>) outs(%o : memref<?x?x?x64xf16>) lse(%lse : memref<?x?x?xf32>) {scale = 1.250000e-01 : f32}
  return
}
