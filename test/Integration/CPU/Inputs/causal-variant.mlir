attn.variant @causal buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %0 = arith.cmpi sge, %q, %kv : index
  attn.yield %0 : i1
}
