// RUN: heed-opt %s --heed-cpu-pipeline | FileCheck %s

// The whole CPU pipeline leaves only the LLVM dialect.
// CHECK-NOT: attn.
// CHECK-NOT: scf.
// CHECK-NOT: vector.
// CHECK-NOT: memref.
// CHECK: llvm.func @kernel
// CHECK: llvm.intr.fmuladd{{.*}}vector<16xf32>
attn.variant @window buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  %c = arith.constant 2.0 : f32
  %x = arith.divf %s, %c : f32
  %t = math.tanh %x : f32
  %r = arith.mulf %t, %c : f32
  attn.yield %r : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %qi = arith.index_cast %q : index to i64
  %ki = arith.index_cast %kv : index to i64
  %d = arith.subi %qi, %ki : i64
  %w = arith.constant 128 : i64
  %z = arith.constant 0 : i64
  %a = arith.cmpi sge, %d, %z : i64
  %b2 = arith.cmpi slt, %d, %w : i64
  %m = arith.andi %a, %b2 : i1
  attn.yield %m : i1
}
func.func @kernel(%q: memref<?x?x?x128xbf16>, %o: memref<?x?x?x128xbf16>, %lse: memref<?x?x?xf32>) {
  attn.attention @window ins(%q, %q, %q : memref<?x?x?x128xbf16>, memref<?x?x?x128xbf16>, memref<?x?x?x128xbf16>)
      outs(%o : memref<?x?x?x128xbf16>) lse(%lse : memref<?x?x?xf32>) {scale = 0.0883883461 : f32}
  return
}
