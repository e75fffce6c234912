// RUN: heed-opt %s --attn-lower-to-gpu --split-input-file | FileCheck %s
// RUN: heed-opt %s --attn-lower-to-gpu="block-rows=64" --split-input-file | FileCheck %s --check-prefix=ROWS
// --attn-lower-to-gpu on .mlir input: the SIMT baseline, one thread per query
// row, the variant inlined as scalar code with a bounds-checked buffer read.

attn.variant @alibi buffers(["slopes"] : [memref<?xf32>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %slopes: memref<?xf32>):
  %x = attn.load %slopes[%h] : memref<?xf32> -> f32
  %r = arith.addf %s, %x : f32
  attn.yield %r : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %slopes: memref<?xf32>):
  %m = arith.cmpi uge, %q, %kv : index
  attn.yield %m : i1
}

// CHECK-LABEL: gpu.module @heed_gpu
// CHECK: gpu.func @heed_kernel({{.*}}) kernel attributes {attn.launch = #attn.launch<block_rows = 128, threads = 128>}
// CHECK-DAG: gpu.block_id x
// CHECK-DAG: gpu.thread_id x
// The query row and the accumulator in private memory.
// CHECK: memref.alloca() : memref<64xf32, #gpu.address_space<private>>
// The keys, one at a time, masked ones skipped.
// CHECK: scf.for
// CHECK: arith.cmpi uge
// CHECK: scf.if
// The slope read is bounds-checked: out of range gives 0 and sets status.
// CHECK: memref.dim %{{.*}}, %{{.*}} : memref<?xf32>
// CHECK: scf.if
// CHECK: memref.load %{{.*}} : memref<?xf32>
// CHECK: } else {
// CHECK: memref.store %c1_i32, %{{.*}} : memref<1xi32>
// CHECK: math.exp
// CHECK: gpu.return
// CHECK-NOT: func.func @heed_kernel
// ROWS: attn.launch = #attn.launch<block_rows = 64, threads = 64>
func.func @heed_kernel(%q: memref<?x?x?x64xf16>, %k: memref<?x?x?x64xf16>, %v: memref<?x?x?x64xf16>, %slopes: memref<?xf32>, %o: memref<?x?x?x64xf16>, %status: memref<1xi32>) {
  attn.attention @alibi ins(%q, %k, %v : memref<?x?x?x64xf16>, memref<?x?x?x64xf16>, memref<?x?x?x64xf16>) buffers(%slopes : memref<?xf32>) outs(%o : memref<?x?x?x64xf16>) status(%status : memref<1xi32>) {scale = 1.250000e-01 : f32}
  return
}
