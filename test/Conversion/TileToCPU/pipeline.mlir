// RUN: heed-opt %s --heed-cpu-pipeline | FileCheck %s --implicit-check-not=llvm.call \
// RUN:   --implicit-check-not='{{[ "](attn|scf|vector|memref|arith|math|cf|func|index|ub|builtin)\.[a-z]}}'
// RUN: heed-opt %s --heed-cpu-tiling | heed-opt --heed-cpu-to-llvm | FileCheck %s --implicit-check-not=llvm.call \
// RUN:   --implicit-check-not='{{[ "](attn|scf|vector|memref|arith|math|cf|func|index|ub|builtin)\.[a-z]}}'
// RUN: heed-opt %s --heed-cpu-pipeline="block-q=8 block-kv=8 analyze-mask=false" | FileCheck %s --check-prefix=Q8 \
// RUN:   --implicit-check-not='{{[ "](attn|scf|vector|memref|arith|math|cf|func|index|ub|builtin)\.[a-z]}}'
// RUN: heed-opt %s --heed-cpu-tiling | FileCheck %s --check-prefix=TILED --implicit-check-not=' attn.'
// RUN: heed-opt %s --heed-cpu-tiling="analyze-mask=false" | FileCheck %s --check-prefix=NOANALYSIS --implicit-check-not=' attn.'
// RUN: heed-opt %s --heed-cpu-tile | FileCheck %s --check-prefix=TILE
// RUN: heed-opt %s --heed-cpu-tile | heed-opt --convert-attn-tile-to-cpu --canonicalize --cse | FileCheck %s --check-prefix=TILED --implicit-check-not=' attn.'

// heed-cpu-tile stops at the tile IR, after the CPU's schedule passes: the
// key loop narrowed (attn.tile.kv_range), its tiles classified, the routed
// variant specialized per case; --convert-attn-tile-to-cpu finishes it.
// TILE-LABEL: func.func @kernel
// TILE: attn.tile.work
// TILE: attn.tile.kv_range
// TILE: attn.tile.classify
// TILE: attn.tile.apply
// TILE: attn.tile.store

// The whole CPU pipeline leaves only the LLVM dialect (the implicit checks:
// no attn/scf/vector/memref/arith/math/cf/func/index/ub op, no unrealized
// cast, and no call: tanh and exp are polynomials, not libm calls). Running
// --heed-cpu-tiling then --heed-cpu-to-llvm gives the same result.

// A sliding window with a tanh soft-cap, bf16, lse.
// CHECK-LABEL: llvm.func @kernel(%{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: i64
// CHECK: llvm.alloca
// bf16 widens by a shift (no libcall: GCC 12's libgcc has no bf16 helpers)
// CHECK: llvm.zext %{{.*}} : i16 to i32
// CHECK: llvm.bitcast %{{.*}} : i32 to f32
// CHECK: llvm.intr.fmuladd(%{{.*}}, %{{.*}}, %{{.*}}) : (vector<16xf32>, vector<16xf32>, vector<16xf32>) -> vector<16xf32>
// CHECK: llvm.intr.fma(%{{.*}}, %{{.*}}, %{{.*}}) : (vector<16xf32>, vector<16xf32>, vector<16xf32>) -> vector<16xf32>
// CHECK: llvm.intr.fmuladd(%{{.*}}, %{{.*}}, %{{.*}}) : (vector<128xf32>, vector<128xf32>, vector<128xf32>) -> vector<128xf32>
// and narrows with round-to-nearest-even in integer arithmetic (NaN kept).
// CHECK: llvm.trunc %{{.*}} : vector<128xi32> to vector<128xi16>
// CHECK: llvm.bitcast %{{.*}} : vector<128xi16> to vector<128xbf16>
// CHECK: llvm.return

// ALiBi (a buffer read: a masked gather and a status word) over causal, bshd,
// GQA, with a work range.
// CHECK-LABEL: llvm.func @alibi_kernel(
// CHECK: llvm.intr.masked.gather %{{.*}}, %{{.*}}, %{{.*}} {alignment = 4 : i32} : (vector<16x!llvm.ptr>, vector<16xi1>, vector<16xf32>) -> vector<16xf32>
// CHECK: llvm.intr.vector.reduce.or
// CHECK: llvm.intr.fmuladd(%{{.*}}, %{{.*}}, %{{.*}}) : (vector<64xf32>, vector<64xf32>, vector<64xf32>) -> vector<64xf32>
// CHECK: llvm.return

// block-q=8: 8-lane vectors.
// Q8-LABEL: llvm.func @kernel(
// Q8-NOT: vector<16x
// Q8: llvm.intr.fmuladd(%{{.*}}, %{{.*}}, %{{.*}}) : (vector<8xf32>, vector<8xf32>, vector<8xf32>) -> vector<8xf32>
// Q8-LABEL: llvm.func @alibi_kernel(
// Q8: llvm.intr.masked.gather {{.*}} -> vector<8xf32>

// The tiled stage: the mask analysis' classifier is inlined and searched
// (scf.while) unless analyze-mask=false.
// TILED-LABEL: func.func @kernel
// TILED: scf.while
// TILED: scf.for
// TILED: vector.fma
// TILED-LABEL: func.func @alibi_kernel
// TILED: scf.while
// TILED: vector.gather
// NOANALYSIS-LABEL: func.func @kernel
// NOANALYSIS-NOT: scf.while
// NOANALYSIS: vector.fma
// NOANALYSIS-NOT: scf.while
// NOANALYSIS-LABEL: func.func @alibi_kernel
// NOANALYSIS-NOT: scf.while
// NOANALYSIS: vector.gather
// NOANALYSIS-NOT: scf.while

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

attn.variant @alibi buffers(["slopes"] : [memref<?xf32>]) shapes [["H"]] params {} score {
^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %slopes: memref<?xf32>):
  %m = attn.load %slopes[%h] : memref<?xf32> -> f32
  %d = arith.subi %q, %kv : index
  %di = arith.index_cast %d : index to i64
  %df = arith.sitofp %di : i64 to f32
  %bias = arith.mulf %m, %df : f32
  %r = arith.subf %s, %bias : f32
  attn.yield %r : f32
} mask {
^bb0(%b: index, %h: index, %q: index, %kv: index, %slopes: memref<?xf32>):
  %0 = arith.cmpi sge, %q, %kv : index
  attn.yield %0 : i1
}

func.func @kernel(%q: memref<?x?x?x128xbf16>, %o: memref<?x?x?x128xbf16>, %lse: memref<?x?x?xf32>) {
  attn.attention @window ins(%q, %q, %q : memref<?x?x?x128xbf16>, memref<?x?x?x128xbf16>, memref<?x?x?x128xbf16>)
      outs(%o : memref<?x?x?x128xbf16>) lse(%lse : memref<?x?x?xf32>) {scale = 0.0883883461 : f32}
  return
}

func.func @alibi_kernel(%q: memref<?x?x8x64xf32>, %k: memref<?x?x2x64xf32>, %o: memref<?x?x8x64xf32>,
                        %slopes: memref<?xf32>, %status: memref<1xi32>, %begin: index, %end: index) {
  attn.attention @alibi ins(%q, %k, %k : memref<?x?x8x64xf32>, memref<?x?x2x64xf32>, memref<?x?x2x64xf32>)
      buffers(%slopes : memref<?xf32>) outs(%o : memref<?x?x8x64xf32>) status(%status : memref<1xi32>)
      work(%begin, %end) {scale = 0.125 : f32, layout = #attn.layout<bshd>}
  return
}
