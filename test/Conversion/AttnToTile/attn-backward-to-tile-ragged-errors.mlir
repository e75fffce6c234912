// RUN: heed-opt %s --split-input-file --attn-differentiate --attn-backward-to-tile --verify-diagnostics

attn.variant @v buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %t = arith.constant true
  attn.yield %t : i1
}

// An entry's queries as lengths or as offsets, not both.
func.func @both(%q: memref<?x?x?x16xf32>, %ql: memref<?xi32>, %cu: memref<?xi32>,
                %lse: memref<?x?x?xf32>) {
  // expected-error @+1 {{takes an entry's lengths either as lengths (q_lens, kv_lens) or as packed offsets (cu_seqlens_q, cu_seqlens_kv), not both}}
  attn.attention_backward @v ins(%q, %q, %q, %q : memref<?x?x?x16xf32>, memref<?x?x?x16xf32>, memref<?x?x?x16xf32>, memref<?x?x?x16xf32>)
      q_lens(%ql : memref<?xi32>) cu_seqlens_q(%cu : memref<?xi32>)
      lse(%lse, %lse : memref<?x?x?xf32>, memref<?x?x?xf32>)
      grads(%q, %q, %q : memref<?x?x?x16xf32>, memref<?x?x?x16xf32>, memref<?x?x?x16xf32>)
      {scale = 0.25 : f32}
  return
}
