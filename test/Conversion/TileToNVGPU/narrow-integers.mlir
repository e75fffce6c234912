// RUN: heed-opt %s --attn-choose-tiling="block-q=64 block-kv=0 patches=false" --attn-to-tile --attn-pipeline-kv --convert-attn-tile-to-nvgpu --canonicalize --cse | FileCheck %s
// The GPU kernels' integer code in 32 bits where that is exact
// (RegionInlining::narrow, lib/Conversion/TileCommon/VariantRegions.h): the
// positions are i32 (below 2^31, a dimension's limit), and each integer op
// of the variant whose operands and result provably fit in i32 computes in
// i32. The rest stays 64-bit: a product of two positions, a sum with a
// large constant, values read from an i64 buffer. Ids read from an i32
// buffer are compared in 32 bits.

// CHECK-LABEL: gpu.func @heed_kernel
// The element's key, clamped to the last real one, in 32 bits.
// CHECK: arith.minui %{{.*}}, %{{.*}} : i32
// The mask: i32 ids, i64 ids, causal.
// CHECK: arith.cmpi eq, %{{.*}}, %{{.*}} : i32
// CHECK: arith.cmpi eq, %{{.*}}, %{{.*}} : i64
// CHECK: arith.cmpi sge, %{{.*}}, %{{.*}} : i32
// The score: kv - q and kv floordiv 128 in 32 bits (a non-negative
// dividend: unsigned, a shift), (kv - q) floordiv 128 signed; q * kv and
// kv + 2147483647 in 64.
// CHECK: %[[D:.*]] = arith.subi %[[KV:.*]], %[[Q:.*]] : i32
// CHECK-NEXT: arith.sitofp %[[D]] : i32 to f32
// CHECK-NEXT: %[[Q64:.*]] = arith.extsi %[[Q]] : i32 to i64
// CHECK-NEXT: %[[KV64:.*]] = arith.extsi %[[KV]] : i32 to i64
// CHECK-NEXT: %[[P:.*]] = arith.muli %[[Q64]], %[[KV64]] : i64
// CHECK-NEXT: arith.sitofp %[[P]] : i64 to f32
// CHECK-NEXT: %[[FAR:.*]] = arith.addi %[[KV64]], %{{.*}} : i64
// CHECK-NEXT: arith.sitofp %[[FAR]] : i64 to f32
// CHECK-NEXT: %[[BLK:.*]] = arith.divui %[[KV]], %{{.*}} : i32
// CHECK-NEXT: arith.sitofp %[[BLK]] : i32 to f32
// CHECK-NEXT: %[[RB:.*]] = arith.floordivsi %[[D]], %{{.*}} : i32
// CHECK-NEXT: arith.sitofp %[[RB]] : i32 to f32
// CHECK: gpu.return

module {
  attn.variant @narrow buffers(["ids", "ids64"] : [memref<?xi32>, memref<?xi64>]) shapes [["Skv"], ["Skv"]] params {} score {
  ^bb0(%s: f32, %b: index, %h: index, %q: index, %kv: index, %ids: memref<?xi32>, %ids64: memref<?xi64>):
    %qi = arith.index_cast %q : index to i64
    %kvi = arith.index_cast %kv : index to i64
    %d = arith.subi %kvi, %qi : i64
    %df = arith.sitofp %d : i64 to f32
    %p = arith.muli %qi, %kvi : i64
    %pf = arith.sitofp %p : i64 to f32
    %big = arith.constant 2147483647 : i64
    %far = arith.addi %kvi, %big : i64
    %farf = arith.sitofp %far : i64 to f32
    %c128 = arith.constant 128 : i64
    %blk = arith.floordivsi %kvi, %c128 : i64
    %blkf = arith.sitofp %blk : i64 to f32
    %rb = arith.floordivsi %d, %c128 : i64
    %rbf = arith.sitofp %rb : i64 to f32
    %x0 = arith.addf %s, %df : f32
    %x1 = arith.addf %x0, %pf : f32
    %x2 = arith.addf %x1, %farf : f32
    %x3 = arith.addf %x2, %blkf : f32
    %x4 = arith.addf %x3, %rbf : f32
    attn.yield %x4 : f32
  } mask {
  ^bb0(%b: index, %h: index, %q: index, %kv: index, %ids: memref<?xi32>, %ids64: memref<?xi64>):
    %qi = arith.index_cast %q : index to i64
    %kvi = arith.index_cast %kv : index to i64
    %a = attn.load %ids[%q] : memref<?xi32> -> i64
    %c = attn.load %ids[%kv] : memref<?xi32> -> i64
    %same = arith.cmpi eq, %a, %c : i64
    %a64 = attn.load %ids64[%q] : memref<?xi64> -> i64
    %c64 = attn.load %ids64[%kv] : memref<?xi64> -> i64
    %same64 = arith.cmpi eq, %a64, %c64 : i64
    %causal = arith.cmpi sge, %qi, %kvi : i64
    %m0 = arith.andi %same, %same64 : i1
    %m = arith.andi %m0, %causal : i1
    attn.yield %m : i1
  }
  func.func @heed_kernel(%q: memref<?x?x?x64xbf16>, %k: memref<?x?x?x64xbf16>, %v: memref<?x?x?x64xbf16>, %ids: memref<?xi32>, %ids64: memref<?xi64>, %o: memref<?x?x?x64xbf16>) {
    attn.attention @narrow ins(%q, %k, %v : memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>, memref<?x?x?x64xbf16>) buffers(%ids, %ids64 : memref<?xi32>, memref<?xi64>) outs(%o : memref<?x?x?x64xbf16>) {scale = 1.250000e-01 : f32}
    return
  }
}
