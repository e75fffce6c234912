// RUN: heed-opt %s --attn-lower-to-cpu --split-input-file --verify-diagnostics | FileCheck %s
// RUN: heed-opt %s --attn-lower-to-cpu="block-q=8 block-kv=4" --split-input-file --verify-diagnostics | FileCheck %s --check-prefix=SMALL

attn.variant @causal buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %0 = arith.cmpi sge, %q, %kv : index
  attn.yield %0 : i1
}

// The work-item loop, the KV-block loop carrying the running max and sum of
// every row (one lane each), outer-product scores, the mask inlined on a
// vector of query rows, and P.V into the accumulator tile.
// CHECK-LABEL: func.func @lower_causal
// CHECK-NOT: attn.attention
// CHECK-DAG: memref.alloca() : memref<64x16xf32>
// CHECK-DAG: memref.alloca() : memref<16x64xf32>
// CHECK: scf.for
// CHECK: scf.for {{.*}} iter_args(%{{.*}} = %{{.*}}, %{{.*}} = %{{.*}}) -> (vector<16xf32>, vector<16xf32>)
// CHECK: vector.fma {{.*}} : vector<16xf32>
// CHECK: arith.cmpi sge, {{.*}} : vector<16xindex>
// CHECK: arith.maxnumf {{.*}} : vector<16xf32>
// CHECK: vector.fma {{.*}} : vector<64xf32>
// SMALL-LABEL: func.func @lower_causal
// SMALL: vector.fma {{.*}} : vector<8xf32>
// SMALL: arith.cmpi sge, {{.*}} : vector<8xindex>
func.func @lower_causal(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>, %lse: memref<?x?x?xf32>) {
  attn.attention @causal ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>)
      outs(%o : memref<?x?x?x64xf32>) lse(%lse : memref<?x?x?xf32>) {scale = 1.250000e-01 : f32}
  return
}

// -----

// A buffer read becomes a masked gather; an out-of-range index is recorded
// in the status word.
attn.variant @alibi buffers(["slopes"] : [memref<?xf32>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %slopes: memref<?xf32>):
  %m = attn.load %slopes[%h] : memref<?xf32> -> f32
  %r = arith.addf %s, %m : f32
  attn.yield %r : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %slopes: memref<?xf32>):
  %t = arith.constant true
  attn.yield %t : i1
}
// CHECK-LABEL: func.func @lower_alibi
// CHECK: vector.gather
// CHECK: vector.reduction <or>
// CHECK: scf.if
// CHECK: memref.store %{{.*}}, %{{.*}}[%{{.*}}] : memref<1xi32>
func.func @lower_alibi(%q: memref<?x?x?x64xbf16>, %o: memref<?x?x?x64xbf16>, %slopes: memref<?xf32>, %status: memref<1xi32>) {
  attn.attention @alibi ins(%q, %q, %q : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>)
      buffers(%slopes : memref<?xf32>) outs(%o : memref<?x?x?x64xbf16>) status(%status : memref<1xi32>)
      {scale = 1.250000e-01 : f32, layout = "bshd"}
  return
}

// -----

attn.variant @bad buffers([] : []) shapes [] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index):
  attn.yield %s : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index):
  %c = arith.cmpi sge, %q, %kv : index
  // expected-error @+1 {{'scf.if' op in the 'mask' region cannot be lowered to the CPU}}
  %r = scf.if %c -> i1 {
    scf.yield %c : i1
  } else {
    scf.yield %c : i1
  }
  attn.yield %r : i1
}
func.func @lower_bad(%q: memref<?x?x?x64xf32>, %o: memref<?x?x?x64xf32>) {
  attn.attention @bad ins(%q, %q, %q : memref<?x?x?x64xf32>, memref<?x?x?x64xf32>, memref<?x?x?x64xf32>)
      outs(%o : memref<?x?x?x64xf32>) {scale = 1.0 : f32}
  return
}
